package auth

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/careflow/careflow/internal/errs"
	"github.com/careflow/careflow/internal/store"
)

// A FHIR R4 Consent resource of scope patient-privacy is a patient's
// privacy consent, and careflow enforces it: writing one records its
// decisions in the consent store, in the same transaction as the record,
// so that what the FHIR record says and what access decisions use never
// disagree. The mapping:
//
//   - Only status "active" Consents with scope patient-privacy
//     (http://terminology.hl7.org/CodeSystem/consentscope) and a
//     patient reference Patient/{id} take effect; any other status
//     (draft, proposed, rejected, inactive, entered-in-error) or a delete
//     withdraws what an earlier version recorded.
//   - provision.type (permit | deny) applies to the purposes in
//     provision.purpose (HL7 v3 ActReason: TREAT and ETREAT → treatment,
//     HPAYMT → payment, HOPERAT → operations, HRESCH and CLINTRCH →
//     research), for provision.period. Without purposes, a deny covers
//     every purpose and a permit every purpose but research: research
//     needs a permit that names it.
//   - Nested provisions (one level) override the base for the purposes
//     they name, with their own period.
//   - Each (patient, purpose) holds one decision: the Consent written last
//     wins over earlier ones and over the consents API, and the record's
//     source names it (Consent/{id}). The patient's consent version is
//     bumped, so an API client holding an older version gets a conflict.

// SystemConsentScope and SystemActReason are the code systems read.
const (
	SystemConsentScope = "http://terminology.hl7.org/CodeSystem/consentscope"
	SystemActReason    = "http://terminology.hl7.org/CodeSystem/v3-ActReason"
)

type fhirCoding struct {
	System string `json:"system"`
	Code   string `json:"code"`
}

type fhirPeriod struct {
	Start string `json:"start"`
	End   string `json:"end"`
}

type fhirProvision struct {
	Type      string          `json:"type"`
	Period    *fhirPeriod     `json:"period"`
	Purpose   []fhirCoding    `json:"purpose"`
	Provision []fhirProvision `json:"provision"`
}

type fhirConsent struct {
	ResourceType string `json:"resourceType"`
	Status       string `json:"status"`
	Scope        struct {
		Coding []fhirCoding `json:"coding"`
	} `json:"scope"`
	Patient *struct {
		Reference string `json:"reference"`
	} `json:"patient"`
	Provision *fhirProvision `json:"provision"`
}

// ConsentDecisions reads a FHIR Consent's privacy decisions: the patient
// id and one input per purpose. ok is false when the resource records no
// privacy consent careflow enforces (another scope, not active, no patient,
// no provision type).
func ConsentDecisions(raw []byte) (patientID string, in []ConsentInput, ok bool, err error) {
	var c fhirConsent
	if err := json.Unmarshal(raw, &c); err != nil || c.ResourceType != "Consent" {
		return "", nil, false, fmt.Errorf("not a Consent resource")
	}
	if c.Status != "active" || c.Patient == nil || c.Provision == nil {
		return "", nil, false, nil
	}
	privacy := false
	for _, cd := range c.Scope.Coding {
		if cd.System == SystemConsentScope && cd.Code == "patient-privacy" {
			privacy = true
		}
	}
	pid, isPatient := strings.CutPrefix(c.Patient.Reference, "Patient/")
	if !privacy || !isPatient || !ValidPatientID(pid) {
		return "", nil, false, nil
	}
	decided := map[Purpose]ConsentInput{}
	apply := func(p fhirProvision, base bool) error {
		var d ConsentDecision
		switch p.Type {
		case "permit":
			d = ConsentPermit
		case "deny":
			d = ConsentDeny
		default:
			return nil
		}
		start, end, err := consentPeriod(p.Period)
		if err != nil {
			return err
		}
		var purposes []Purpose
		for _, cd := range p.Purpose {
			if pu, ok := purposeCodes[cd.Code]; ok && cd.System == SystemActReason {
				purposes = append(purposes, pu)
			}
		}
		if len(p.Purpose) > 0 && len(purposes) == 0 {
			return nil // purposes careflow does not decide for
		}
		if len(purposes) == 0 && base {
			purposes = Purposes()
			if d == ConsentPermit {
				purposes = []Purpose{PurposeTreatment, PurposePayment, PurposeOperations}
			}
		}
		for _, pu := range purposes {
			decided[pu] = ConsentInput{Purpose: pu, Decision: d, Start: start, End: end}
		}
		return nil
	}
	if err := apply(*c.Provision, true); err != nil {
		return "", nil, false, err
	}
	for _, nested := range c.Provision.Provision {
		if err := apply(nested, false); err != nil {
			return "", nil, false, err
		}
	}
	for _, pu := range Purposes() {
		if r, ok := decided[pu]; ok {
			in = append(in, r)
		}
	}
	return pid, in, len(in) > 0, nil
}

// consentPeriod reads a provision period; dates without a time start at
// the beginning of their day (UTC) and end at its end.
func consentPeriod(p *fhirPeriod) (start, end *time.Time, err error) {
	if p == nil {
		return nil, nil, nil
	}
	parse := func(v string, isEnd bool) (*time.Time, error) {
		if v == "" {
			return nil, nil
		}
		if t, err := time.Parse(time.RFC3339Nano, v); err == nil {
			return &t, nil
		}
		// FHIR dates may be partial: a day, a month or a year, which
		// start at their first instant and end at their last.
		for _, l := range []struct {
			layout string
			next   func(time.Time) time.Time
		}{
			{time.DateOnly, func(t time.Time) time.Time { return t.AddDate(0, 0, 1) }},
			{"2006-01", func(t time.Time) time.Time { return t.AddDate(0, 1, 0) }},
			{"2006", func(t time.Time) time.Time { return t.AddDate(1, 0, 0) }},
		} {
			if t, err := time.Parse(l.layout, v); err == nil {
				if isEnd {
					t = l.next(t).Add(-time.Microsecond)
				}
				return &t, nil
			}
		}
		return nil, errs.E(errs.Invalid, "Consent.provision.period is not a date or a dateTime with a time zone").InField("Consent.provision.period")
	}
	if start, err = parse(p.Start, false); err != nil {
		return nil, nil, err
	}
	if end, err = parse(p.End, true); err != nil {
		return nil, nil, err
	}
	return start, end, nil
}

// SyncFHIRConsent records (or, with deleted or a Consent that no longer
// enforces anything, withdraws) a FHIR Consent's decisions in tx: the
// record's write transaction.
func (c *Consents) SyncFHIRConsent(ctx context.Context, tx store.Tx, id string, raw []byte, deleted bool) error {
	source := "Consent/" + id
	now := c.now().UTC().Truncate(time.Microsecond)
	bump := func(patientID string) error {
		n, err := tx.Exec(ctx, `UPDATE consent_versions SET version = version + 1, updated_at = $2 WHERE patient_id = $1`, patientID, now)
		if err == nil && n == 0 {
			_, err = tx.Exec(ctx, `INSERT INTO consent_versions (patient_id, version, updated_at) VALUES ($1, 1, $2)`, patientID, now)
		}
		if err != nil {
			return fmt.Errorf("bump consent version: %w", err)
		}
		return nil
	}
	// Withdraw what earlier versions of this Consent recorded.
	rows, err := tx.Query(ctx, `SELECT DISTINCT patient_id FROM consents WHERE source = $1`, source)
	if err != nil {
		return fmt.Errorf("read consents of %s: %w", source, err)
	}
	var before []string
	for rows.Next() {
		var p string
		if err := rows.Scan(&p); err != nil {
			rows.Close()
			return err
		}
		before = append(before, p)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	if len(before) > 0 {
		if _, err := tx.Exec(ctx, `DELETE FROM consents WHERE source = $1`, source); err != nil {
			return fmt.Errorf("withdraw consents of %s: %w", source, err)
		}
	}
	var patientID string
	var in []ConsentInput
	if !deleted {
		var ok bool
		if patientID, in, ok, err = ConsentDecisions(raw); err != nil {
			return err
		} else if !ok {
			in = nil
		}
	}
	for _, r := range in {
		_, err := tx.Exec(ctx, `
			INSERT INTO consents (patient_id, purpose, decision, period_start, period_end, source, recorded_by, recorded_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
			ON CONFLICT (patient_id, purpose) DO UPDATE SET decision = excluded.decision, period_start = excluded.period_start,
				period_end = excluded.period_end, source = excluded.source, recorded_by = excluded.recorded_by, recorded_at = excluded.recorded_at`,
			patientID, string(r.Purpose), string(r.Decision), utcPtr(r.Start), utcPtr(r.End), source, "fhir", now)
		if err != nil {
			return fmt.Errorf("record consent from %s: %w", source, err)
		}
	}
	touched := map[string]bool{}
	for _, p := range before {
		touched[p] = true
	}
	if len(in) > 0 {
		touched[patientID] = true
	}
	for p := range touched {
		if err := bump(p); err != nil {
			return err
		}
	}
	return nil
}

// ConsentHook is the FHIR record's write hook that keeps the consent store
// in step with FHIR Consent resources (record.Options.Hooks).
type ConsentHook struct{ Consents *Consents }

// Written implements the record's WriteHook.
func (h ConsentHook) Written(ctx context.Context, tx store.Tx, typ, id string, raw []byte) error {
	if typ != "Consent" {
		return nil
	}
	return h.Consents.SyncFHIRConsent(ctx, tx, id, raw, raw == nil)
}
