package events_test

import (
	"context"
	"errors"
	"testing"

	"github.com/careflow/careflow/internal/events"
	"github.com/careflow/careflow/internal/store"
	"github.com/careflow/careflow/internal/store/storetest"
)

// A pass stopped (its context cancelled, as River cancels a job that
// outlives the client's stop, or Run's loop on stop) right after a sink
// took a batch still records that delivery: the next pass hands the sink
// nothing again.
func TestStoppedPassRecordsWhatTheSinkTook(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		for range 3 {
			write(t, db, "agg", "k")
		}
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		sink := &events.MemorySink{Fail: func([]events.Event) error { cancel(); return nil }}
		p := events.NewPublisher(db, events.Options{Node: "one"})
		p.Register("test", sink)
		// The pass may report the stop (its pruning), after recording.
		if n, err := p.PublishOnce(ctx); n != 3 || (err != nil && !errors.Is(err, context.Canceled)) {
			t.Fatalf("the stopped pass: %d delivered, %v; want its 3 recorded", n, err)
		}
		sink.Fail = nil
		if n, err := p.PublishOnce(context.Background()); err != nil || n != 0 {
			t.Fatalf("the next pass handed the sink %d events again (%v)", n, err)
		}
		checkOrder(t, sink.Events(), 3)
	})
}
