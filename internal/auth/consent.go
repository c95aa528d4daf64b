package auth

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/careflow/careflow/internal/errs"
	"github.com/careflow/careflow/internal/store"
)

// Consent is kept per patient and purpose: one decision (permit or deny)
// with an optional period. Outside its period, or without a row, the
// decision is "none" and the policy's default for the purpose applies (a
// policy document states those defaults; research is always deny). The
// Authorizer asks before every patient-scoped access and treats any error
// as a denial: consent fails closed.
//
// The set is replaced as a whole under a version number, so two
// administrators editing the same patient's consent cannot silently
// overwrite each other. A FHIR Consent resource will feed the same table
// later (its id then goes into Source).

// ConsentRecord is one decision in force or scheduled.
type ConsentRecord struct {
	Purpose  Purpose         `json:"purpose"`
	Decision ConsentDecision `json:"decision"`
	// Start and End bound the period; nil is open-ended.
	Start *time.Time `json:"start,omitempty"`
	End   *time.Time `json:"end,omitempty"`
	// Source says what recorded it ("api" for the JSON API).
	Source     string    `json:"source"`
	RecordedBy string    `json:"recorded_by"`
	RecordedAt time.Time `json:"recorded_at"`
}

// ConsentSet is a patient's consent records.
type ConsentSet struct {
	PatientID string `json:"patient_id"`
	// Version is 0 for a patient with no consent ever recorded.
	Version  int             `json:"version"`
	Consents []ConsentRecord `json:"consents"`
}

// ConsentInput is one decision to record.
type ConsentInput struct {
	Purpose  Purpose
	Decision ConsentDecision
	Start    *time.Time
	End      *time.Time
}

// Consents is the consent store.
type Consents struct {
	db  *store.DB
	now func() time.Time
}

// NewConsents returns the consent store of db. now defaults to time.Now.
func NewConsents(db *store.DB, now func() time.Time) *Consents {
	if now == nil {
		now = time.Now
	}
	return &Consents{db: db, now: now}
}

// ConsentAt returns the patient's decision for a purpose at a time:
// permit, deny, or none when nothing is in force.
func (c *Consents) ConsentAt(ctx context.Context, patientID string, purpose Purpose, at time.Time) (ConsentDecision, error) {
	return consentAt(ctx, c.db.Reader(), patientID, purpose, at)
}

// ConsentAtTx is ConsentAt read through tx (TxConsentSource): it sees
// tx's own writes and takes no second connection.
func (c *Consents) ConsentAtTx(ctx context.Context, tx store.Tx, patientID string, purpose Purpose, at time.Time) (ConsentDecision, error) {
	return consentAt(ctx, tx, patientID, purpose, at)
}

func consentAt(ctx context.Context, q store.Querier, patientID string, purpose Purpose, at time.Time) (ConsentDecision, error) {
	var d string
	var start, end *time.Time
	err := q.QueryRow(ctx,
		`SELECT decision, period_start, period_end FROM consents WHERE patient_id = $1 AND purpose = $2`,
		patientID, string(purpose)).Scan(&d, &start, &end)
	if err == store.ErrNoRows {
		return ConsentNone, nil
	}
	if err != nil {
		return "", fmt.Errorf("read consent: %w", err)
	}
	if start != nil && at.Before(*start) || end != nil && !at.Before(*end) {
		return ConsentNone, nil
	}
	switch ConsentDecision(d) {
	case ConsentPermit, ConsentDeny:
		return ConsentDecision(d), nil
	}
	return "", fmt.Errorf("read consent: unknown decision in the database")
}

// Get returns a patient's consent set (version 0 and no records when none
// was ever recorded).
func (c *Consents) Get(ctx context.Context, patientID string) (ConsentSet, error) {
	return c.get(ctx, c.db.Reader(), patientID)
}

func (c *Consents) get(ctx context.Context, q store.Querier, patientID string) (ConsentSet, error) {
	set := ConsentSet{PatientID: patientID, Consents: []ConsentRecord{}}
	err := q.QueryRow(ctx, `SELECT version FROM consent_versions WHERE patient_id = $1`, patientID).Scan(&set.Version)
	if err != nil && err != store.ErrNoRows {
		return ConsentSet{}, fmt.Errorf("read consents: %w", err)
	}
	rows, err := q.Query(ctx, `
		SELECT purpose, decision, period_start, period_end, source, recorded_by, recorded_at
		FROM consents WHERE patient_id = $1`, patientID)
	if err != nil {
		return ConsentSet{}, fmt.Errorf("read consents: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var r ConsentRecord
		var pu, d string
		if err := rows.Scan(&pu, &d, &r.Start, &r.End, &r.Source, &r.RecordedBy, &r.RecordedAt); err != nil {
			return ConsentSet{}, fmt.Errorf("read consents: %w", err)
		}
		r.Purpose, r.Decision = Purpose(pu), ConsentDecision(d)
		set.Consents = append(set.Consents, r)
	}
	if err := rows.Err(); err != nil {
		return ConsentSet{}, fmt.Errorf("read consents: %w", err)
	}
	slices.SortFunc(set.Consents, func(a, b ConsentRecord) int {
		return slices.Index(Purposes(), a.Purpose) - slices.Index(Purposes(), b.Purpose)
	})
	return set, nil
}

// Put replaces a patient's consent set. version must be the set's current
// version (0 for the first); a stale version is a conflict. A purpose left
// out has no record afterwards (the policy default applies to it).
func (c *Consents) Put(ctx context.Context, patientID string, version int, in []ConsentInput, recordedBy, source string) (ConsentSet, error) {
	if !ValidPatientID(patientID) {
		return ConsentSet{}, errs.E(errs.Invalid, "must be a patient id").InField("patient_id")
	}
	seen := map[Purpose]bool{}
	for i, r := range in {
		field := fmt.Sprintf("consents[%d]", i)
		if !r.Purpose.Valid() {
			return ConsentSet{}, errs.E(errs.Invalid, "must be treatment, payment, operations or research").InField(field + ".purpose")
		}
		if seen[r.Purpose] {
			return ConsentSet{}, errs.E(errs.Invalid, "purpose %s appears twice", r.Purpose).InField(field + ".purpose")
		}
		seen[r.Purpose] = true
		if r.Decision != ConsentPermit && r.Decision != ConsentDeny {
			return ConsentSet{}, errs.E(errs.Invalid, "must be permit or deny").InField(field + ".decision")
		}
		if r.Start != nil && r.End != nil && !r.End.After(*r.Start) {
			return ConsentSet{}, errs.E(errs.Invalid, "must be after start").InField(field + ".end")
		}
	}
	if version < 0 {
		return ConsentSet{}, errs.E(errs.Invalid, "must be 0 or more").InField("version")
	}
	now := c.now().UTC().Truncate(time.Microsecond)
	var out ConsentSet
	err := c.db.Tx(ctx, func(tx store.Tx) error {
		var cur int
		err := tx.QueryRow(ctx, `SELECT version FROM consent_versions WHERE patient_id = $1`+tx.Dialect().ForUpdate(), patientID).Scan(&cur)
		switch {
		case err == store.ErrNoRows:
			cur = 0
		case err != nil:
			return fmt.Errorf("read consent version: %w", err)
		}
		if cur != version {
			return errs.E(errs.Conflict, "the consents changed (version %d, not %d); read them again", cur, version).InField("version")
		}
		if cur == 0 {
			_, err = tx.Exec(ctx, `INSERT INTO consent_versions (patient_id, version, updated_at) VALUES ($1, 1, $2)`, patientID, now)
		} else {
			_, err = tx.Exec(ctx, `UPDATE consent_versions SET version = version + 1, updated_at = $2 WHERE patient_id = $1`, patientID, now)
		}
		if store.IsUniqueViolation(err) {
			return errs.E(errs.Conflict, "the consents changed; read them again").InField("version")
		}
		if err != nil {
			return fmt.Errorf("bump consent version: %w", err)
		}
		if _, err := tx.Exec(ctx, `DELETE FROM consents WHERE patient_id = $1`, patientID); err != nil {
			return fmt.Errorf("replace consents: %w", err)
		}
		for _, r := range in {
			_, err := tx.Exec(ctx, `
				INSERT INTO consents (patient_id, purpose, decision, period_start, period_end, source, recorded_by, recorded_at)
				VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
				patientID, string(r.Purpose), string(r.Decision), utcPtr(r.Start), utcPtr(r.End), source, recordedBy, now)
			if err != nil {
				return fmt.Errorf("record consent: %w", err)
			}
		}
		out, err = c.get(ctx, tx, patientID)
		return err
	})
	if err != nil {
		return ConsentSet{}, err
	}
	return out, nil
}

func utcPtr(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	u := t.UTC().Truncate(time.Microsecond)
	return &u
}
