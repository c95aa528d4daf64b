package events_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/careflow/careflow/internal/events"
	"github.com/careflow/careflow/internal/store"
	"github.com/careflow/careflow/internal/store/storetest"
)

// source names the sinks its test sets, as a SinkSource.
type source struct {
	mu    sync.Mutex
	sinks []events.NamedSink
}

func (s *source) set(sinks ...events.NamedSink) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sinks = sinks
}

func (s *source) Sinks(context.Context) ([]events.NamedSink, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]events.NamedSink(nil), s.sinks...), nil
}

// A sink a source starts naming is delivered to from the next pass, the
// events after its After only; pruning waits for every named sink (the
// source's too) but not for events at or before a sink's After; a sink
// the source stops naming is handed nothing more.
func TestSourceSinksArePickedUpEveryPass(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		old := write(t, db, "a", "k")
		now := time.Now()
		src := &source{}
		p := events.NewPublisher(db, events.Options{Node: "one", Retention: time.Hour, Clock: func() time.Time { return now }})
		p.RegisterSource(src)
		if n, err := p.PublishOnce(ctx); err != nil || n != 0 {
			t.Fatalf("no sink yet: %d, %v", n, err)
		}
		late := &events.MemorySink{}
		src.set(events.NamedSink{Name: "late", Sink: late, After: old.ID})
		a2, b1 := write(t, db, "a", "k"), write(t, db, "b", "k")
		if _, err := p.PublishOnce(ctx); err != nil {
			t.Fatal(err)
		}
		if got := late.Events(); len(got) != 2 || got[0].ID != a2.ID || got[1].ID != b1.ID {
			t.Fatalf("the late sink got %+v, want the events after its After", got)
		}
		// A second source sink that refuses b keeps b's event from the
		// pruning; a's events (the first before both Afters) go.
		refuser := &events.MemorySink{Fail: func(batch []events.Event) error {
			for _, ev := range batch {
				if ev.AggregateID == "b" {
					return errors.New("not b")
				}
			}
			return nil
		}}
		src.set(events.NamedSink{Name: "late", Sink: late, After: old.ID}, events.NamedSink{Name: "refuser", Sink: refuser, After: old.ID})
		now = now.Add(2 * time.Hour)
		if _, err := p.PublishOnce(ctx); err != nil {
			t.Fatal(err)
		}
		left, err := events.Since(ctx, db.Reader(), 0, 10)
		if err != nil || len(left) != 1 || left[0].ID != b1.ID {
			t.Fatalf("left after pruning: %+v (%v), want only b's", left, err)
		}
		src.set()
		write(t, db, "c", "k")
		if n, err := p.PublishOnce(ctx); err != nil || n != 0 || len(late.Events()) != 2 {
			t.Fatalf("a sink no longer named was handed %d events (%v)", n, err)
		}
	})
}

// deadSink is a DeadLetterSink refusing aggregate "bad", keeping what it
// dead-letters (in the publisher's transaction: a table of the test's).
type deadSink struct {
	events.MemorySink
	mu   sync.Mutex
	dead []events.Event
	fail int
}

func (d *deadSink) DeadLetter(ctx context.Context, tx store.Tx, evs []events.Event, failures int, _ error) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.dead = append(d.dead, evs...)
	d.fail = failures
	return nil
}

// A DeadLetterSink that keeps refusing an aggregate has its events
// dead-lettered after DeadLetterAfter failures (or DeadLetterAge since
// the first), its position moved past them, and the aggregate's later
// events flow; an ordinary sink is only ever backed off.
func TestDeadLetterSinkGivesUpAndDeliveryGoesOn(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		now := time.Now()
		refuseBad := func(batch []events.Event) error {
			for _, ev := range batch {
				if ev.AggregateID == "bad" {
					return errors.New("receiver answered 500")
				}
			}
			return nil
		}
		dl := &deadSink{MemorySink: events.MemorySink{Fail: refuseBad}}
		plain := &events.MemorySink{Fail: refuseBad}
		p := events.NewPublisher(db, events.Options{Node: "one", MinBackoff: time.Second, MaxBackoff: time.Second,
			DeadLetterAfter: 3, DeadLetterAge: time.Hour, Clock: func() time.Time { return now }})
		p.Register("dl", dl)
		p.Register("plain", plain)
		bad1, bad2 := write(t, db, "bad", "k"), write(t, db, "bad", "k")
		write(t, db, "good", "k")
		for range 3 {
			if _, err := p.PublishOnce(ctx); err != nil {
				t.Fatal(err)
			}
			now = now.Add(2 * time.Second)
		}
		if len(dl.dead) != 2 || dl.dead[0].ID != bad1.ID || dl.dead[1].ID != bad2.ID || dl.fail != 3 {
			t.Fatalf("dead letters %+v after %d failures", dl.dead, dl.fail)
		}
		dl.Fail = nil
		bad3 := write(t, db, "bad", "k")
		if _, err := p.PublishOnce(ctx); err != nil {
			t.Fatal(err)
		}
		if got := dl.Events(); len(got) != 2 || got[1].ID != bad3.ID {
			t.Fatalf("after the dead letters the sink took %+v", got)
		}
		if got := plain.Events(); len(got) != 1 {
			t.Fatalf("the plain sink took %+v; it must still be backing off bad", got)
		}
		// By age: one failure an hour after the first is enough.
		dl.Fail = refuseBad
		write(t, db, "bad", "k")
		if _, err := p.PublishOnce(ctx); err != nil {
			t.Fatal(err)
		}
		now = now.Add(time.Hour)
		if _, err := p.PublishOnce(ctx); err != nil {
			t.Fatal(err)
		}
		if len(dl.dead) != 3 || dl.fail != 2 {
			t.Fatalf("after an hour of refusals: %d dead letters, %d failures", len(dl.dead), dl.fail)
		}
	})
}
