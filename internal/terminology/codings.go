package terminology

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/careflow/careflow/internal/errs"
	"github.com/careflow/careflow/internal/fhir"
	"github.com/careflow/careflow/internal/store"
)

// Use says what a coding is for, which decides whether an ICD-10-CM header
// code is acceptable.
type Use int

const (
	// UseBilling is a claim: every diagnosis must be billable on the date of
	// service, so a header code is an error.
	UseBilling Use = iota
	// UseClinical is clinical documentation (a Condition): a header code is
	// a real, if vague, diagnosis, so it is a warning.
	UseClinical
)

// CodingAt is a coding found in a resource, with its FHIRPath location and
// the date of service it must be valid on (zero: none known).
type CodingAt struct {
	Path   string
	Coding fhir.Coding
	Date   time.Time
}

// CheckCodings validates codings of the systems careflow knows and returns
// one OperationOutcome issue per problem, with the coding's path as the
// expression. Codings of other systems are left alone: a resource may carry
// any number of local codes. Coding.version is not used to pick a release;
// the date of service does, because that is what the payer checks.
func (s *Service) CheckCodings(ctx context.Context, codings []CodingAt, use Use) ([]fhir.OutcomeIssue, error) {
	var issues []fhir.OutcomeIssue
	for _, c := range codings {
		info, known := knownSystems[c.Coding.System]
		if !known || info.phi || c.Coding.Code == "" {
			continue
		}
		v, err := s.ValidateCode(ctx, c.Coding.System, c.Coding.Code, ValidateOptions{
			Date:     c.Date,
			Abstract: use == UseClinical,
		})
		if err != nil {
			return nil, err
		}
		path := c.Path + ".code"
		switch {
		case !v.Valid:
			issues = append(issues, issue("error", "code-invalid", v.Message, path))
			continue
		case v.Basis == BasisStarterSet && c.Coding.System == SystemICD10CM:
			issues = append(issues, issue("warning", "code-invalid", v.Message, path))
		case !v.Billable:
			issues = append(issues, issue("warning", "business-rule",
				v.Code+" is an ICD-10-CM header code; a claim will need a more specific code", path))
		}
		if c.Date.IsZero() && v.Basis == BasisRelease && c.Coding.System == SystemICD10CM {
			issues = append(issues, issue("warning", "incomplete",
				"no date of service was found, so the newest ICD-10-CM release was used", path))
		}
		// A wrong display is a warning: the code is what is billed, and
		// displays drift between releases.
		if c.Coding.Display != "" && v.Display != "" && !sameDisplay(c.Coding.Display, v.Display) {
			issues = append(issues, issue("warning", "value",
				fmt.Sprintf("the display is not the display of %s in %s (%q)", v.Code, v.Version, v.Display), c.Path+".display"))
		}
	}
	return issues, nil
}

func issue(severity, code, diagnostics, expression string) fhir.OutcomeIssue {
	return fhir.OutcomeIssue{Severity: severity, Code: code, Diagnostics: diagnostics, Expression: []string{expression}}
}

// The slices of Claim and Condition that hold codes and dates. They are
// decoded here rather than taken from package fhir's views so that this
// check depends only on the FHIR R4 element names.
type codeableConcept struct {
	Coding []fhir.Coding `json:"coding"`
}

type period struct {
	Start string `json:"start"`
}

type claimCodes struct {
	ResourceType   string  `json:"resourceType"`
	Created        string  `json:"created"`
	BillablePeriod *period `json:"billablePeriod"`
	Diagnosis      []struct {
		DiagnosisCodeableConcept *codeableConcept `json:"diagnosisCodeableConcept"`
	} `json:"diagnosis"`
	Procedure []struct {
		Date                     string           `json:"date"`
		ProcedureCodeableConcept *codeableConcept `json:"procedureCodeableConcept"`
	} `json:"procedure"`
	Item []struct {
		ProductOrService codeableConcept `json:"productOrService"`
		ServicedDate     string          `json:"servicedDate"`
		ServicedPeriod   *period         `json:"servicedPeriod"`
	} `json:"item"`
}

type conditionCodes struct {
	ResourceType  string          `json:"resourceType"`
	Code          codeableConcept `json:"code"`
	OnsetDateTime string          `json:"onsetDateTime"`
	RecordedDate  string          `json:"recordedDate"`
}

// CheckClaim validates the diagnosis, procedure and item codes of a Claim
// for billing: diagnoses on the claim's date of service (billablePeriod.start,
// else the earliest item serviced date, else created), items and procedures on
// their own dates when given. raw is the Claim's JSON.
func (s *Service) CheckClaim(ctx context.Context, raw []byte) ([]fhir.OutcomeIssue, error) {
	var c claimCodes
	if err := json.Unmarshal(raw, &c); err != nil || c.ResourceType != "Claim" {
		return nil, errs.E(errs.Invalid, "not a Claim resource")
	}
	var itemDates []time.Time
	for _, it := range c.Item {
		d := firstDate(it.ServicedDate, periodStart(it.ServicedPeriod))
		itemDates = append(itemDates, d)
	}
	claimDate := firstDate(periodStart(c.BillablePeriod))
	if claimDate.IsZero() {
		for _, d := range itemDates {
			if !d.IsZero() && (claimDate.IsZero() || d.Before(claimDate)) {
				claimDate = d
			}
		}
	}
	if claimDate.IsZero() {
		claimDate = firstDate(c.Created)
	}
	var codings []CodingAt
	for i, d := range c.Diagnosis {
		if d.DiagnosisCodeableConcept == nil {
			continue
		}
		codings = appendCodings(codings, fmt.Sprintf("Claim.diagnosis[%d].diagnosisCodeableConcept", i), d.DiagnosisCodeableConcept.Coding, claimDate)
	}
	for i, p := range c.Procedure {
		if p.ProcedureCodeableConcept == nil {
			continue
		}
		date := firstDate(p.Date)
		if date.IsZero() {
			date = claimDate
		}
		codings = appendCodings(codings, fmt.Sprintf("Claim.procedure[%d].procedureCodeableConcept", i), p.ProcedureCodeableConcept.Coding, date)
	}
	for i, it := range c.Item {
		date := itemDates[i]
		if date.IsZero() {
			date = claimDate
		}
		codings = appendCodings(codings, fmt.Sprintf("Claim.item[%d].productOrService", i), it.ProductOrService.Coding, date)
	}
	return s.CheckCodings(ctx, codings, UseBilling)
}

// CheckCondition validates Condition.code as clinical documentation, on the
// onset date, else the recorded date. raw is the Condition's JSON.
func (s *Service) CheckCondition(ctx context.Context, raw []byte) ([]fhir.OutcomeIssue, error) {
	var c conditionCodes
	if err := json.Unmarshal(raw, &c); err != nil || c.ResourceType != "Condition" {
		return nil, errs.E(errs.Invalid, "not a Condition resource")
	}
	date := firstDate(c.OnsetDateTime, c.RecordedDate)
	return s.CheckCodings(ctx, appendCodings(nil, "Condition.code", c.Code.Coding, date), UseClinical)
}

func appendCodings(out []CodingAt, base string, cs []fhir.Coding, date time.Time) []CodingAt {
	for j, c := range cs {
		out = append(out, CodingAt{Path: fmt.Sprintf("%s.coding[%d]", base, j), Coding: c, Date: date})
	}
	return out
}

func periodStart(p *period) string {
	if p == nil {
		return ""
	}
	return p.Start
}

// firstDate returns the calendar date of the first FHIR date or dateTime
// that parses. A dateTime's date is taken as written, in its own offset: a
// service on 2026-03-01T23:30+02:00 happened on 1 March where it happened.
// Partial dates (2026, 2026-03) carry no day of service and are skipped.
func firstDate(values ...string) time.Time {
	for _, v := range values {
		if len(v) < len("2006-01-02") {
			continue
		}
		if d, err := time.Parse(time.DateOnly, v[:10]); err == nil && (len(v) == 10 || v[10] == 'T') {
			return d
		}
	}
	return time.Time{}
}

// CheckResource checks the codes of a resource of type typ: a Claim for
// billing (CheckClaim), a Condition as clinical documentation
// (CheckCondition); other types carry no codes careflow checks and pass.
// It is the FHIR record's code checker.
//
// q, when not nil, is the transaction the resource is being written in:
// the code tables are then read through it. A caller holding a
// transaction must pass it — on PostgreSQL a read from the pool would
// wait for a second connection while holding the first, and enough such
// callers at once (workflow steps, each in its own transaction) exhaust
// the pool and wait on each other until their deadlines.
func (s *Service) CheckResource(ctx context.Context, q store.Querier, typ string, raw []byte) ([]fhir.OutcomeIssue, error) {
	if q != nil {
		within := *s
		within.q = q
		s = &within
	}
	switch typ {
	case "Claim":
		return s.CheckClaim(ctx, raw)
	case "Condition":
		return s.CheckCondition(ctx, raw)
	}
	return nil, nil
}
