package rcm

import (
	"context"
	"strconv"
	"strings"

	"github.com/careflow/careflow/internal/access"
	"github.com/careflow/careflow/internal/auth"
	"github.com/careflow/careflow/internal/store"
)

// The states a batch counts its journeys by (BatchStatus.States): the
// journey's outcome once it has one, else where it stands.
const (
	BatchRunning        = "running"          // registering, checking, pricing, submitting
	BatchWaitingOnPayer = "waiting_on_payer" // the claim is with the payer, not yet paid
	BatchNeedsInfo      = "needs_information"
	BatchAttention      = "attention" // stopped with a work item and no outcome
)

// failedOutcomes are the outcomes a batch lists as failures: the journey
// ended without the payer deciding the claim (a code careflow refused, a
// payer that never answered). A denial is the payer's decision, not a
// failure.
var failedOutcomes = map[string]bool{OutcomeInvalidCodes: true, OutcomePayerTimeout: true}

// BatchJourneys binds the service to the caller g for a batch: each entry
// is started as g's own StartJourney (decided and audited as g), and the
// states are read within g's reach.
func (s *Service) BatchJourneys(g Guard) BatchJourneys { return serviceBatch{s: s, g: g} }

type serviceBatch struct {
	s *Service
	g Guard
}

func (b serviceBatch) StartEntry(ctx context.Context, req JourneyRequest, opts BatchEntryOptions) (string, error) {
	j, _, err := b.s.StartJourney(ctx, b.g, req, StartOptions(opts))
	if err != nil {
		return "", err
	}
	return j.ID, nil
}

// States reads the journeys' rows, confined in SQL to the caller's reach;
// the read is authorized (and audited) as a search of journeys.
func (b serviceBatch) States(ctx context.Context, ids []string) (map[string]JourneyState, error) {
	out := make(map[string]JourneyState, len(ids))
	if len(ids) == 0 {
		return out, nil
	}
	if _, err := b.g.Authorize(ctx, access.Action{Req: auth.Request{Action: auth.ActionSearch, ResourceType: JourneyType}}); err != nil {
		return nil, err
	}
	reach, err := b.g.Reach(ctx, JourneyType)
	if err != nil {
		return nil, err
	}
	d := b.s.cfg.DB.Dialect()
	args := make([]any, 0, len(ids)+4)
	marks := make([]string, len(ids))
	for i, id := range ids {
		args = append(args, id)
		marks[i] = "$" + strconv.Itoa(len(args))
	}
	q := `SELECT id, status, outcome, claim_id, paid, needs FROM rcm_journeys WHERE id IN (` + strings.Join(marks, ",") + `)`
	if c := d.ReachCondition("patient_id", store.Reach(reach), &args); c != "" {
		q += " AND (" + c + ")"
	}
	rows, err := b.s.cfg.DB.Reader().Query(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	for rows.Next() {
		var (
			id, status            string
			outcome, claim, needs *string
			paid                  *int64
		)
		if err := rows.Scan(&id, &status, &outcome, &claim, &paid, &needs); err != nil {
			return nil, err
		}
		out[id] = batchState(status, deref(outcome), claim != nil, paid != nil, needs != nil)
	}
	return out, rows.Err()
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// batchState names a journey's state for a batch's counts.
func batchState(status, outcome string, claimed, paid, needs bool) JourneyState {
	switch {
	case status == StatusCancelled:
		return JourneyState{State: OutcomeCancelled, Final: true}
	case outcome != "" && status != StatusActive:
		return JourneyState{State: outcome, Final: true, Failed: failedOutcomes[outcome]}
	case status == StatusAttention || status == StatusClosed:
		return JourneyState{State: BatchAttention, Final: true}
	case needs:
		return JourneyState{State: BatchNeedsInfo}
	case claimed && !paid:
		return JourneyState{State: BatchWaitingOnPayer}
	}
	return JourneyState{State: BatchRunning}
}
