package engine

import (
	"context"
	"testing"
	"time"

	"github.com/careflow/careflow/internal/store"
	"github.com/careflow/careflow/internal/store/storetest"
)

func TestNoopRunCompletesWithHistoryAndOutbox(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		n := newNode(t, db, nodeOpts{})
		r, created, err := n.StartRun(ctx, StartOptions{Definition: NoopDefinition, PatientID: "pat-1"})
		if err != nil || !created {
			t.Fatalf("start: %v %v", created, err)
		}
		r = waitStatus(t, n.Engine, r.ID, StatusCompleted, 30*time.Second)
		steps, err := n.Steps(ctx, r.ID)
		if err != nil {
			t.Fatal(err)
		}
		if len(steps) != 10 {
			t.Fatalf("got %d step executions, want 10", len(steps))
		}
		for i, s := range steps {
			if s.Status != "succeeded" || s.Attempt != 1 || s.Visit != 1 {
				t.Errorf("step %d: %+v", i, s)
			}
		}
		h, err := n.History(ctx, r.ID)
		if err != nil {
			t.Fatal(err)
		}
		if h[0].Event != "run.started" || h[len(h)-1].Event != "run.completed" || len(h) != 12 {
			t.Fatalf("history: %+v", h)
		}
		evs, err := UndeliveredEvents(ctx, db.Reader(), 0, 100)
		if err != nil {
			t.Fatal(err)
		}
		if len(evs) != 12 || evs[0].Type != "workflow.run.started" || evs[11].Type != "workflow.run.completed" {
			t.Fatalf("outbox: %d events, first %v", len(evs), evs[0].Type)
		}
		byPatient, err := n.ListRuns(ctx, RunFilter{PatientID: "pat-1"})
		if err != nil || len(byPatient) != 1 {
			t.Fatalf("by patient: %v %v", len(byPatient), err)
		}
	})
}
