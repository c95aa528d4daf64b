package engine

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/careflow/careflow/internal/events"
	"github.com/careflow/careflow/internal/store"
)

// writeEvent writes a run's event (internal/events) in the caller's
// transaction: the run is the aggregate, so a run's events keep their
// order. The payload holds ids, names and states only, never PHI.
func writeEvent(ctx context.Context, tx store.Tx, kind, runID string, payload map[string]any, now time.Time) error {
	b, err := json.Marshal(payload)
	if err != nil {
		return fmt.Errorf("encode %s event: %w", kind, err)
	}
	_, err = events.Write(ctx, tx, events.Event{AggregateType: events.WorkflowRun, AggregateID: runID, Kind: kind, OccurredAt: now, Payload: b})
	return err
}
