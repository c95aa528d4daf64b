package engine

import (
	"context"
	"testing"
	"time"

	"github.com/careflow/careflow/internal/events"
	"github.com/careflow/careflow/internal/store"
	"github.com/careflow/careflow/internal/store/storetest"
)

// TestRunTransitionsReachASinkInOrderAcrossAPublisherRestart: the
// transitions of a run, written in the step transactions, are delivered by
// the events publisher to a sink; the publisher stops, a second run goes
// through, a new publisher delivers its events: each run's events once, in
// the order of its history.
func TestRunTransitionsReachASinkInOrderAcrossAPublisherRestart(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		n := newNode(t, db, nodeOpts{})
		sink := &events.MemorySink{}
		// publish runs a publisher until the sink holds want events, then
		// stops it (which gives its lease up, as serve's shutdown does).
		publish := func(node string, want int) {
			// A short lease: the restarted publisher takes over at once when
			// the first gave the lease up, and within 2 s if a stop left it.
			p := events.NewPublisher(db, events.Options{Node: node, Interval: 10 * time.Millisecond, LeaseTTL: 2 * time.Second})
			p.Register("test", sink)
			pctx, cancel := context.WithCancel(ctx)
			done := make(chan struct{})
			go func() { p.Run(pctx); close(done) }()
			deadline := time.Now().Add(20 * time.Second)
			for len(sink.Events()) < want && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
			}
			cancel()
			<-done
		}
		var runs []string
		for i, node := range []string{"first", "restarted"} {
			r, _, err := n.StartRun(ctx, StartOptions{Definition: NoopDefinition})
			if err != nil {
				t.Fatal(err)
			}
			waitStatus(t, n.Engine, r.ID, StatusCompleted, 30*time.Second)
			runs = append(runs, r.ID)
			publish(node, 12*(i+1))
		}
		got := map[string][]events.Event{}
		for _, ev := range sink.Events() {
			got[ev.AggregateID] = append(got[ev.AggregateID], ev)
		}
		if len(sink.Events()) != 24 || len(got) != 2 {
			t.Fatalf("delivered %d events of %d runs, want 12 of each of 2", len(sink.Events()), len(got))
		}
		for _, id := range runs {
			h, err := n.History(ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			evs := got[id]
			if len(evs) != len(h) {
				t.Fatalf("run %s: %d events for %d transitions", id, len(evs), len(h))
			}
			for i, ev := range evs {
				if ev.AggregateType != events.WorkflowRun || ev.Sequence != int64(i+1) || ev.Kind != "workflow."+h[i].Event {
					t.Fatalf("run %s event %d: %+v, want %s", id, i, ev, h[i].Event)
				}
			}
		}
	})
}
