package events_test

import (
	"context"
	"testing"
	"time"

	"github.com/careflow/careflow/internal/events"
	"github.com/careflow/careflow/internal/store"
	"github.com/careflow/careflow/internal/store/storetest"
)

// TestTheEngineOutboxBecomesTheRunsEvents: a database from before 0014
// holds the engine's private outbox (never delivered); the migration makes
// its rows the first events of their runs, numbered per run in id order,
// and a run's next event takes the following number.
func TestTheEngineOutboxBecomesTheRunsEvents(t *testing.T) {
	t.Parallel()
	for _, d := range storetest.Backends() {
		t.Run(string(d), func(t *testing.T) {
			ctx := context.Background()
			db := storetest.OpenUnmigrated(t, d)
			storetest.MigrateTo(t, db, 13)
			at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
			for _, r := range []struct{ kind, run string }{
				{"workflow.run.started", "run-a"}, {"workflow.run.started", "run-b"}, {"workflow.step.completed", "run-a"},
			} {
				if _, err := db.Writer().Exec(ctx, `INSERT INTO outbox_events (event_type, run_id, payload, created_at) VALUES ($1, $2, $3, $4)`,
					r.kind, r.run, `{"run_id":"`+r.run+`"}`, at); err != nil {
					t.Fatal(err)
				}
			}
			if _, err := db.Migrate(ctx); err != nil {
				t.Fatal(err)
			}
			evs, err := events.Since(ctx, db.Reader(), 0, 10)
			if err != nil || len(evs) != 3 {
				t.Fatalf("events %+v %v", evs, err)
			}
			want := []struct {
				run  string
				seq  int64
				kind string
			}{{"run-a", 1, "workflow.run.started"}, {"run-b", 1, "workflow.run.started"}, {"run-a", 2, "workflow.step.completed"}}
			for i, w := range want {
				ev := evs[i]
				if ev.AggregateType != events.WorkflowRun || ev.AggregateID != w.run || ev.Sequence != w.seq || ev.Kind != w.kind ||
					!ev.OccurredAt.Equal(at) || string(ev.Payload) != `{"run_id":"`+w.run+`"}` {
					t.Errorf("event %d: %+v", i, ev)
				}
			}
			var next events.Event
			if err := db.Tx(ctx, func(tx store.Tx) error {
				next, err = events.Write(ctx, tx, events.Event{AggregateType: events.WorkflowRun, AggregateID: "run-a", Kind: "workflow.run.completed"})
				return err
			}); err != nil || next.Sequence != 3 {
				t.Fatalf("the run's next event: %+v %v", next, err)
			}
			if _, err := db.Reader().Query(ctx, `SELECT 1 FROM outbox_events`); err == nil {
				t.Fatal("outbox_events is still there")
			}
		})
	}
}
