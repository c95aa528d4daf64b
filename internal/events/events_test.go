package events_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/careflow/careflow/internal/events"
	"github.com/careflow/careflow/internal/store"
	"github.com/careflow/careflow/internal/store/storetest"
)

// write stores one event of aggregate agg in its own transaction.
func write(t *testing.T, db *store.DB, agg, kind string) events.Event {
	t.Helper()
	var ev events.Event
	err := db.Tx(context.Background(), func(tx store.Tx) error {
		var err error
		ev, err = events.Write(context.Background(), tx, events.Event{AggregateType: "Test", AggregateID: agg, Kind: kind})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return ev
}

// checkOrder fails unless got holds every event of want exactly once and
// each aggregate's events in sequence order.
func checkOrder(t *testing.T, got []events.Event, want int) {
	t.Helper()
	seen := map[int64]bool{}
	last := map[string]int64{}
	for _, ev := range got {
		if seen[ev.ID] {
			t.Fatalf("event %d delivered twice", ev.ID)
		}
		seen[ev.ID] = true
		if ev.Sequence != last[ev.AggregateID]+1 {
			t.Fatalf("aggregate %s: sequence %d after %d", ev.AggregateID, ev.Sequence, last[ev.AggregateID])
		}
		last[ev.AggregateID] = ev.Sequence
	}
	if len(got) != want {
		t.Fatalf("delivered %d events, want %d", len(got), want)
	}
}

// drain runs passes until the sink holds n events or the time is up.
func drain(t *testing.T, p *events.Publisher, sink *events.MemorySink, n int) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for len(sink.Events()) < n && time.Now().Before(deadline) {
		if _, err := p.PublishOnce(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
}

// TestWriteNumbersEachAggregateAndRollsBackWithItsTransaction: sequences
// count per aggregate from 1; an event written in a transaction that rolls
// back is not stored, and its number is given again.
func TestWriteNumbersEachAggregateAndRollsBackWithItsTransaction(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		a1 := write(t, db, "a", "k")
		b1 := write(t, db, "b", "k")
		errRollback := errors.New("roll back")
		err := db.Tx(ctx, func(tx store.Tx) error {
			if _, err := events.Write(ctx, tx, events.Event{AggregateType: "Test", AggregateID: "a", Kind: "lost"}); err != nil {
				return err
			}
			return errRollback
		})
		if !errors.Is(err, errRollback) {
			t.Fatal(err)
		}
		a2 := write(t, db, "a", "k")
		if a1.Sequence != 1 || b1.Sequence != 1 || a2.Sequence != 2 {
			t.Fatalf("sequences a1 %d b1 %d a2 %d", a1.Sequence, b1.Sequence, a2.Sequence)
		}
		all, err := events.Since(ctx, db.Reader(), 0, 100)
		if err != nil || len(all) != 3 {
			t.Fatalf("stored %+v %v", all, err)
		}
		for _, ev := range all {
			if ev.Kind == "lost" {
				t.Fatal("a rolled-back event was stored")
			}
		}
		if _, err := events.Write(ctx, nil, events.Event{AggregateType: "Test", AggregateID: "a", Kind: "k", Payload: []byte(`"text"`)}); err == nil {
			t.Fatal("a payload that is not an object was accepted")
		}
	})
}

// TestPublisherDeliversInOrderAcrossARestart: a publisher delivers what is
// stored, stops, more is written, a new publisher (the restart) delivers
// the rest: every event once, each aggregate's in order.
func TestPublisherDeliversInOrderAcrossARestart(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		sink := &events.MemorySink{}
		for i := range 30 {
			write(t, db, fmt.Sprintf("agg-%d", i%4), "first")
		}
		p := events.NewPublisher(db, events.Options{Node: "one", Interval: 10 * time.Millisecond, Batch: 7})
		p.Register("test", sink)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { p.Run(ctx); close(done) }()
		deadline := time.Now().Add(20 * time.Second)
		for len(sink.Events()) < 30 && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		cancel()
		<-done
		checkOrder(t, sink.Events(), 30)

		for i := range 30 {
			write(t, db, fmt.Sprintf("agg-%d", i%5), "second")
		}
		// The restart: another node name, so the lease given up on stop is
		// what lets it in at once.
		p2 := events.NewPublisher(db, events.Options{Node: "two", Batch: 7})
		p2.Register("test", sink)
		drain(t, p2, sink, 60)
		checkOrder(t, sink.Events(), 60)
		if n, err := p2.PublishOnce(context.Background()); err != nil || n != 0 {
			t.Fatalf("a pass after everything was delivered delivered %d, %v", n, err)
		}
	})
}

// TestTwoPublishersDeliverEachEventOnce: two publishers on one database
// (two nodes) run while events are written; the lease lets one deliver at
// a time, so the sink sees each event once, each aggregate's in order.
func TestTwoPublishersDeliverEachEventOnce(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		sink := &events.MemorySink{}
		ctx, cancel := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		for _, node := range []string{"node-a", "node-b"} {
			p := events.NewPublisher(db, events.Options{Node: node, Interval: 5 * time.Millisecond, Batch: 10})
			p.Register("test", sink)
			wg.Add(1)
			go func() { defer wg.Done(); p.Run(ctx) }()
		}
		const n = 200
		var writers sync.WaitGroup
		for w := range 4 {
			writers.Add(1)
			go func() {
				defer writers.Done()
				for i := range n / 4 {
					write(t, db, fmt.Sprintf("agg-%d", (w*n/4+i)%9), "k")
				}
			}()
		}
		writers.Wait()
		deadline := time.Now().Add(30 * time.Second)
		for len(sink.Events()) < n && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		time.Sleep(100 * time.Millisecond) // room for a duplicate to show
		cancel()
		wg.Wait()
		checkOrder(t, sink.Events(), n)
	})
}

// TestAFailingAggregateBacksOffWhileOthersFlow: the sink refuses one
// aggregate; the others are delivered in the same pass, the refused one is
// handed again after its backoff and then delivered in order.
func TestAFailingAggregateBacksOffWhileOthersFlow(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		var (
			mu     sync.Mutex
			refuse = true
		)
		sink := &events.MemorySink{Fail: func(batch []events.Event) error {
			mu.Lock()
			defer mu.Unlock()
			for _, ev := range batch {
				if refuse && ev.AggregateID == "bad" {
					return errors.New("sink down for this one")
				}
			}
			return nil
		}}
		for i := range 12 {
			write(t, db, []string{"bad", "good-1", "good-2"}[i%3], "k")
		}
		now := time.Now()
		clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
		p := events.NewPublisher(db, events.Options{Node: "one", Clock: clock, MinBackoff: time.Minute})
		p.Register("test", sink)
		ctx := context.Background()
		if n, err := p.PublishOnce(ctx); err != nil || n != 8 {
			t.Fatalf("first pass delivered %d, %v; want the 8 good events", n, err)
		}
		calls := sink.Calls()
		mu.Lock()
		refuse = false
		mu.Unlock()
		if n, err := p.PublishOnce(ctx); err != nil || n != 0 || sink.Calls() != calls {
			t.Fatalf("within its backoff the refused aggregate was handed again: %d events, %d calls, %v", n, sink.Calls()-calls, err)
		}
		mu.Lock()
		now = now.Add(2 * time.Minute)
		mu.Unlock()
		if n, err := p.PublishOnce(ctx); err != nil || n != 4 {
			t.Fatalf("after its backoff: %d, %v", n, err)
		}
		checkOrder(t, sink.Events(), 12)
	})
}

// TestDeliveredEventsArePrunedAfterTheRetention: an event every sink has
// had is deleted once older than the retention; one a sink still lacks
// stays.
func TestDeliveredEventsArePrunedAfterTheRetention(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		write(t, db, "kept", "k")
		write(t, db, "done", "k")
		var now time.Time
		refuseKept := func(batch []events.Event) error {
			for _, ev := range batch {
				if ev.AggregateID == "kept" {
					return errors.New("not this one")
				}
			}
			return nil
		}
		now = time.Now().Add(48 * time.Hour)
		p := events.NewPublisher(db, events.Options{Node: "one", Retention: 24 * time.Hour, Clock: func() time.Time { return now }})
		p.Register("test", &events.MemorySink{Fail: refuseKept})
		if _, err := p.PublishOnce(ctx); err != nil {
			t.Fatal(err)
		}
		left, err := events.Since(ctx, db.Reader(), 0, 10)
		if err != nil || len(left) != 1 || left[0].AggregateID != "kept" {
			t.Fatalf("left after pruning: %+v %v", left, err)
		}
	})
}

// TestALeaseOfAStoppedNodeIsTakenOverAfterItsTTL: a node that holds the
// lease and stops renewing it (it died) keeps the others out until the
// lease expires; then another node delivers what is pending.
func TestALeaseOfAStoppedNodeIsTakenOverAfterItsTTL(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		var mu sync.Mutex
		now := time.Now()
		clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
		dead := events.NewPublisher(db, events.Options{Node: "dead", Clock: clock, LeaseTTL: 30 * time.Second})
		if _, err := dead.PublishOnce(ctx); err != nil { // takes the lease, then never runs again
			t.Fatal(err)
		}
		write(t, db, "a", "k")
		sink := &events.MemorySink{}
		alive := events.NewPublisher(db, events.Options{Node: "alive", Clock: clock, LeaseTTL: 30 * time.Second})
		alive.Register("test", sink)
		if n, err := alive.PublishOnce(ctx); err != nil || n != 0 || sink.Calls() != 0 {
			t.Fatalf("delivered %d (%d calls) while another node held the lease: %v", n, sink.Calls(), err)
		}
		mu.Lock()
		now = now.Add(31 * time.Second)
		mu.Unlock()
		if n, err := alive.PublishOnce(ctx); err != nil || n != 1 {
			t.Fatalf("after the lease expired: %d, %v", n, err)
		}
	})
}
