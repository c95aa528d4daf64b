package rcm

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/careflow/careflow/internal/errs"
	"github.com/careflow/careflow/internal/payer"
	"github.com/careflow/careflow/internal/store"
)

// The journey states in rcm_journeys.status.
const (
	StatusActive    = "active"    // moving, or waiting on the payer
	StatusAttention = "attention" // stopped with a work item for billing
	StatusClosed    = "closed"    // reached its outcome
	StatusCancelled = "cancelled"
)

// The journey outcomes.
const (
	OutcomePaid           = "paid"
	OutcomePartiallyPaid  = "partially_paid"
	OutcomeDenied         = "denied"
	OutcomePreauthRefused = "preauth_refused"
	OutcomeNotCovered     = "not_covered"
	OutcomeInvalidCodes   = "invalid_codes"
	OutcomePayerTimeout   = "payer_timeout"
	OutcomeCancelled      = "cancelled"
)

// journeyRow is a row of rcm_journeys: plain, non-PHI columns only.
type journeyRow struct {
	ID, Kind, PatientID, Payer, Status string
	Outcome, Reason                    string
	Currency                           string
	Billed                             int64
	Approved, Paid, Variance           *int64
	// PatientShare is what the payer's adjudication leaves to the patient
	// (co-pay, co-insurance, deductible): part of what was billed that the
	// payer never owed.
	PatientShare                 *int64
	ClaimID, PreauthID, AppealOf string
	BatchID, Needs               string
	Refs                         map[string]string
	StartedAt, UpdatedAt         time.Time
	LastContact                  *time.Time
}

const journeyColumns = `id, kind, patient_id, payer, status, outcome, reason, currency, billed, approved, paid, variance,
	patient_share, claim_id, preauth_id, appeal_of, batch_id, needs, refs, started_at, updated_at, last_contact_at`

func scanJourney(s interface{ Scan(...any) error }) (*journeyRow, error) {
	var (
		j                                                   journeyRow
		outcome, reason, claim, preauth, appeal, batch, nds sql.NullString
		refs                                                string
	)
	if err := s.Scan(&j.ID, &j.Kind, &j.PatientID, &j.Payer, &j.Status, &outcome, &reason, &j.Currency, &j.Billed,
		&j.Approved, &j.Paid, &j.Variance, &j.PatientShare, &claim, &preauth, &appeal, &batch, &nds, &refs, &j.StartedAt, &j.UpdatedAt, &j.LastContact); err != nil {
		return nil, err
	}
	j.Outcome, j.Reason, j.ClaimID, j.PreauthID = outcome.String, reason.String, claim.String, preauth.String
	j.AppealOf, j.BatchID, j.Needs = appeal.String, batch.String, nds.String
	j.Refs = map[string]string{}
	if err := json.Unmarshal([]byte(refs), &j.Refs); err != nil {
		return nil, fmt.Errorf("journey %s: refs: %w", j.ID, err)
	}
	return &j, nil
}

func insertJourney(ctx context.Context, tx store.Tx, j *journeyRow, idemKey string) error {
	refs, _ := json.Marshal(j.Refs)
	_, err := tx.Exec(ctx, `INSERT INTO rcm_journeys (id, kind, patient_id, payer, status, currency, billed, appeal_of, batch_id,
		idempotency_key, refs, started_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, 0, $7, $8, $9, $10, $11, $11)`,
		j.ID, j.Kind, j.PatientID, j.Payer, j.Status, j.Currency, store.NullIfEmpty(j.AppealOf), store.NullIfEmpty(j.BatchID), store.NullIfEmpty(idemKey), string(refs), j.StartedAt)
	if err != nil {
		return err
	}
	return writeJourneyEvents(ctx, tx, journeyState{}, j, j.StartedAt)
}

// loadJourney reads a journey row; in a transaction it locks it (on
// PostgreSQL) so the step that changes it is the only writer.
func loadJourney(ctx context.Context, q store.Querier, id string, lock string) (*journeyRow, error) {
	j, err := scanJourney(q.QueryRow(ctx, `SELECT `+journeyColumns+` FROM rcm_journeys WHERE id = $1`+lock, id))
	if errors.Is(err, store.ErrNoRows) {
		return nil, errs.E(errs.NotFound, "no such journey")
	}
	return j, err
}

// change applies fn to the journey's row under the step's transaction and
// stores it: every change of a journey's state is made here, by the step
// (or the signal, or the cancel) whose transaction it belongs to, and so
// are the events of a change of its status or its claim's (events.go).
func change(ctx context.Context, tx store.Tx, id string, now time.Time, fn func(j *journeyRow)) (*journeyRow, error) {
	j, err := loadJourney(ctx, tx, id, tx.Dialect().ForUpdate())
	if err != nil {
		return nil, err
	}
	before := stateOf(j)
	fn(j)
	j.UpdatedAt = now
	refs, _ := json.Marshal(j.Refs)
	_, err = tx.Exec(ctx, `UPDATE rcm_journeys SET status = $2, outcome = $3, reason = $4, currency = $5, billed = $6, approved = $7,
		paid = $8, variance = $9, claim_id = $10, preauth_id = $11, needs = $12, refs = $13, updated_at = $14, last_contact_at = $15,
		patient_share = $16
		WHERE id = $1`, j.ID, j.Status, store.NullIfEmpty(j.Outcome), store.NullIfEmpty(j.Reason), j.Currency, j.Billed, j.Approved, j.Paid, j.Variance,
		store.NullIfEmpty(j.ClaimID), store.NullIfEmpty(j.PreauthID), store.NullIfEmpty(j.Needs), string(refs), now, j.LastContact, j.PatientShare)
	if err != nil {
		return nil, err
	}
	return j, writeJourneyEvents(ctx, tx, before, j, now)
}

// stop ends a journey's normal course with an outcome that needs billing's
// attention (a work item), or closes it when attention is false.
func stop(j *journeyRow, outcome, reason string, attention bool) {
	j.Outcome, j.Reason = outcome, reason
	j.Status = StatusClosed
	if attention {
		j.Status = StatusAttention
	}
}

// exchangeRow is a row of rcm_exchanges.
type exchangeRow struct {
	CorrelationID, JourneyID, Action, Payer, ClaimID, State string
	AnsweredAt                                              *time.Time
}

// recordExchange writes the exchange before the request is sent (the
// sending step commits after this one): a fast answer then always finds
// it. Re-recording the same correlation (a step re-applied after a crash
// rolled the first back) cannot happen twice in committed state.
func recordExchange(ctx context.Context, tx store.Tx, corr, journey string, action payer.Action, payerCode, claimID string, now time.Time) error {
	_, err := tx.Exec(ctx, `INSERT INTO rcm_exchanges (correlation_id, journey_id, action, payer, claim_id, state, recorded_at)
		VALUES ($1, $2, $3, $4, $5, 'recorded', $6)`, corr, journey, string(action), payerCode, store.NullIfEmpty(claimID), now)
	return err
}

func markExchange(ctx context.Context, tx store.Tx, corr, state string, now time.Time) error {
	// A fast answer may be recorded before the sending step commits: sent
	// never overwrites answered.
	q := `UPDATE rcm_exchanges SET state = $2, sent_at = $3 WHERE correlation_id = $1 AND state = 'recorded'`
	if state == "answered" {
		q = `UPDATE rcm_exchanges SET state = $2, answered_at = $3 WHERE correlation_id = $1`
	}
	_, err := tx.Exec(ctx, q, corr, state, now)
	return err
}

func findExchange(ctx context.Context, q store.Querier, corr string) (*exchangeRow, error) {
	var (
		x     exchangeRow
		claim sql.NullString
	)
	err := q.QueryRow(ctx, `SELECT correlation_id, journey_id, action, payer, claim_id, state, answered_at FROM rcm_exchanges
		WHERE correlation_id = $1`, corr).Scan(&x.CorrelationID, &x.JourneyID, &x.Action, &x.Payer, &claim, &x.State, &x.AnsweredAt)
	if err != nil {
		return nil, err
	}
	x.ClaimID = claim.String
	return &x, nil
}
