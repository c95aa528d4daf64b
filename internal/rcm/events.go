package rcm

import (
	"context"
	"encoding/json"
	"time"

	"github.com/careflow/careflow/internal/events"
	"github.com/careflow/careflow/internal/store"
)

// The kinds of the revenue cycle's events (internal/events), written in
// the transaction that changes the journey's row, on the journey's
// aggregate (JourneyType, the journey id), so a journey's and its claim's
// changes are numbered and delivered in the order they committed. Their
// payloads are the row's plain columns: ids, codes, states and amounts in
// minor units, the patient by opaque id only, never PHI.
const (
	// EventJourneyStatus: the journey started (previous_status empty), or
	// its status, outcome or reason changed.
	EventJourneyStatus = "rcm.journey.status_changed"
	// EventClaimStatus: the journey's claim moved (ClaimStatus).
	EventClaimStatus = "rcm.claim.status_changed"
)

// ClaimStatus is where a journey's claim stands: "" before there is one;
// created (built and on its way to the payer); approved (adjudicated, an
// amount approved, not yet paid); denied; paid or partially_paid.
func ClaimStatus(claimID, outcome string, approved, paid *int64) string {
	switch {
	case claimID == "":
		return ""
	case paid != nil && outcome == OutcomePartiallyPaid:
		return OutcomePartiallyPaid
	case paid != nil:
		return OutcomePaid
	case outcome == OutcomeDenied:
		return OutcomeDenied
	case approved != nil:
		return "approved"
	default:
		return "created"
	}
}

// stateOf is what a change compares to decide its events.
type journeyState struct{ status, outcome, reason, claim string }

func stateOf(j *journeyRow) journeyState {
	if j == nil {
		return journeyState{}
	}
	return journeyState{status: j.Status, outcome: j.Outcome, reason: j.Reason,
		claim: ClaimStatus(j.ClaimID, j.Outcome, j.Approved, j.Paid)}
}

// writeJourneyEvents writes, in tx, the events of the change of a journey
// from before to j's state: none when neither its status nor its claim's
// moved.
func writeJourneyEvents(ctx context.Context, tx store.Tx, before journeyState, j *journeyRow, at time.Time) error {
	after := stateOf(j)
	if after.status != before.status || after.outcome != before.outcome || after.reason != before.reason {
		p, _ := json.Marshal(map[string]any{"journey_id": j.ID, "kind": j.Kind, "patient_id": j.PatientID, "payer": j.Payer,
			"status": j.Status, "previous_status": before.status, "outcome": j.Outcome, "reason": j.Reason,
			"claim_id": j.ClaimID, "appeal_of": j.AppealOf, "batch_id": j.BatchID})
		if _, err := events.Write(ctx, tx, events.Event{AggregateType: JourneyType, AggregateID: j.ID, Kind: EventJourneyStatus,
			OccurredAt: at, Payload: p}); err != nil {
			return err
		}
	}
	if after.claim != before.claim {
		p, _ := json.Marshal(map[string]any{"journey_id": j.ID, "claim_id": j.ClaimID, "payer": j.Payer,
			"status": after.claim, "previous_status": before.claim, "outcome": j.Outcome, "currency": j.Currency,
			"billed": j.Billed, "approved": j.Approved, "paid": j.Paid, "variance": j.Variance})
		if _, err := events.Write(ctx, tx, events.Event{AggregateType: JourneyType, AggregateID: j.ID, Kind: EventClaimStatus,
			OccurredAt: at, Payload: p}); err != nil {
			return err
		}
	}
	return nil
}
