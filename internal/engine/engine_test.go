package engine

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/careflow/careflow/internal/events"
	"github.com/careflow/careflow/internal/store"
	"github.com/careflow/careflow/internal/store/storetest"
)

func TestNoopRunCompletesWithHistoryAndOutbox(t *testing.T) {
	t.Parallel()
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
		evs, err := events.Since(ctx, db.Reader(), 0, 100)
		if err != nil {
			t.Fatal(err)
		}
		if len(evs) != 12 || evs[0].Kind != "workflow.run.started" || evs[11].Kind != "workflow.run.completed" {
			t.Fatalf("events: %d events, first %v", len(evs), evs[0].Kind)
		}
		for i, ev := range evs {
			if ev.AggregateType != events.WorkflowRun || ev.AggregateID != r.ID || ev.Sequence != int64(i+1) {
				t.Fatalf("event %d: %+v, want the run's event %d", i, ev, i+1)
			}
		}
		byPatient, err := n.ListRuns(ctx, RunFilter{PatientID: "pat-1"})
		if err != nil || len(byPatient) != 1 {
			t.Fatalf("by patient: %v %v", len(byPatient), err)
		}
	})
}

func TestMetricsAreExposed(t *testing.T) {
	t.Parallel()
	db := storetest.Open(t, store.SQLite)
	n := newNode(t, db, nodeOpts{})
	if err := n.Ready(); err != nil {
		t.Fatalf("started node not ready: %v", err)
	}
	r, _, err := n.StartRun(context.Background(), StartOptions{Definition: NoopDefinition})
	if err != nil {
		t.Fatal(err)
	}
	waitStatus(t, n.Engine, r.ID, StatusCompleted, 30*time.Second)
	families, err := n.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for _, f := range families {
		got[f.GetName()] = true
		if f.GetName() == "careflow_engine_runs" {
			for _, m := range f.GetMetric() {
				for _, l := range m.GetLabel() {
					if l.GetName() == "status" && l.GetValue() == "completed" && m.GetGauge().GetValue() != 1 {
						t.Errorf("completed runs gauge %v", m.GetGauge().GetValue())
					}
				}
			}
		}
	}
	for _, name := range []string{"careflow_engine_runs", "careflow_engine_queue_jobs", "careflow_engine_step_duration_seconds",
		"careflow_engine_step_executions_total", "careflow_engine_runs_started_total", "careflow_engine_open_tasks"} {
		if !got[name] {
			t.Errorf("metric %s is not exposed", name)
		}
	}
}

// TestRunEventsCommitWithTheRunAndCarryNoInput: starting a run writes its
// run.started event with the run (the run's aggregate, sequence 1), and
// its payload names the run and carries no input.
func TestRunEventsCommitWithTheRunAndCarryNoInput(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		n := newNode(t, db, nodeOpts{noStart: true})
		r, _, err := n.StartRun(ctx, StartOptions{Definition: NoopDefinition, PatientID: "pat-7731"})
		if err != nil {
			t.Fatal(err)
		}
		evs, err := events.Since(ctx, db.Reader(), 0, 10)
		if err != nil || len(evs) != 1 || evs[0].AggregateID != r.ID || evs[0].Kind != "workflow.run.started" || evs[0].Sequence != 1 {
			t.Fatalf("events: %+v %v", evs, err)
		}
		if strings.Contains(string(evs[0].Payload), "input") {
			t.Fatalf("event payload carries the run input: %s", evs[0].Payload)
		}
	})
}

// TestRiverMigrationsFromTwoHandlesAtOnce: two handles on one SQLite file
// (as two processes would have) migrate River together; PostgreSQL's case
// is in TestTwoNodesShareTheWorkWithoutRunningAStepTwice.
func TestRiverMigrationsFromTwoHandlesAtOnce(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := storetest.Open(t, store.SQLite)
	other, err := store.Open(ctx, store.Config{URL: db.SQLitePath()})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	errc := make(chan error, 2)
	for _, h := range []*store.DB{db, other} {
		go func() { _, err := MigrateRiver(ctx, h, nil); errc <- err }()
	}
	for range 2 {
		if err := <-errc; err != nil {
			t.Fatalf("concurrent river migration: %v", err)
		}
	}
	again, err := MigrateRiver(ctx, db, nil)
	if err != nil || len(again) != 0 {
		t.Fatalf("third migration applied %v, %v", again, err)
	}
}
