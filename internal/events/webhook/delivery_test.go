package webhook_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/careflow/careflow/internal/events"
	"github.com/careflow/careflow/internal/events/webhook"
	"github.com/careflow/careflow/internal/store"
	"github.com/careflow/careflow/internal/store/storetest"
)

// A receiver that answers 503 for its first 30 seconds (real time, while
// events keep being written) gets every event afterwards: each once by
// event id, every aggregate's in sequence order, each delivery signed. The
// publisher's backoff is the real one, capped at 4 s so the catch-up after
// the outage is quick; nothing is dead-lettered within the outage.
func TestReceiverDownFor30SecondsGetsEveryEventOnceInOrder(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("waits out a 30-second outage")
	}
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		t.Parallel() // the backends wait out their outages side by side
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		r := newReceiver(t)
		up := time.Now().Add(30 * time.Second)
		r.setStatus(func(webhook.Body) int {
			if time.Now().Before(up) {
				return http.StatusServiceUnavailable
			}
			return http.StatusOK
		})
		write(t, db, "Run", "before", "clinical.workflow.created") // before the registration: not sent
		svc := webhook.New(db, testRing(t, db), client(t, r.host()), webhook.Options{})
		register(t, svc, r, "clinical.*", "rcm.journey.status_changed")

		p := events.NewPublisher(db, events.Options{Node: "n1", Interval: 100 * time.Millisecond,
			MinBackoff: 500 * time.Millisecond, MaxBackoff: 4 * time.Second})
		p.RegisterSource(svc)
		var wg sync.WaitGroup
		wg.Add(1)
		go func() { defer wg.Done(); p.Run(ctx) }()
		defer wg.Wait()
		defer cancel()

		// 6 aggregates, written through the outage and after it; one kind
		// the webhook does not subscribe to, counted as delivered.
		want := 0
		for i := 0; time.Now().Before(up.Add(3 * time.Second)); i++ {
			agg := fmt.Sprintf("agg-%d", i%6)
			kind := "clinical.step.completed"
			switch i % 4 {
			case 1:
				kind = "rcm.journey.status_changed"
			case 3:
				kind = "record.updated"
			}
			write(t, db, "Run", agg, kind)
			if kind != "record.updated" {
				want++
			}
			time.Sleep(150 * time.Millisecond)
		}
		waitFor(t, 30*time.Second, "every subscribed event", func() bool { return len(r.events()) >= want })
		got := r.events()
		// The unsubscribed kind leaves gaps in the sequences the receiver
		// sees, never a reordering.
		last := map[string]int64{}
		for _, ev := range got {
			if ev.Kind == "record.updated" || ev.AggregateID == "before" {
				t.Fatalf("sent %s of %s, which the webhook does not want", ev.Kind, ev.AggregateID)
			}
			if ev.Sequence <= last[ev.AggregateID] {
				t.Fatalf("%s: sequence %d after %d", ev.AggregateID, ev.Sequence, last[ev.AggregateID])
			}
			last[ev.AggregateID] = ev.Sequence
		}
		if len(got) != want {
			t.Fatalf("the receiver has %d events, want %d", len(got), want)
		}
		r.mu.Lock()
		defer r.mu.Unlock()
		if r.badSig != 0 {
			t.Fatalf("%d deliveries failed the signature check", r.badSig)
		}
		if r.requests < 10 {
			t.Fatalf("only %d requests: the outage was not retried", r.requests)
		}
		var dead int
		if err := db.Reader().QueryRow(ctx, `SELECT count(*) FROM webhook_dead_letters`).Scan(&dead); err != nil || dead != 0 {
			t.Fatalf("%d dead letters (%v) after an outage shorter than the bound", dead, err)
		}
	})
}

// A receiver that refuses one aggregate's events has them dead-lettered
// after the bounded failures, while the other aggregates flow and the
// refused aggregate's later events flow again; the dead letters are listed
// and, once the receiver takes them, re-driven and gone.
func TestRefusedEventsAreDeadLetteredAndRedriven(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		r := newReceiver(t)
		var refuse atomic.Bool
		refuse.Store(true)
		r.setStatus(func(b webhook.Body) int {
			for _, ev := range b.Events {
				if refuse.Load() && ev.AggregateID == "bad" && !b.Redrive {
					return http.StatusInternalServerError
				}
			}
			return http.StatusOK
		})
		svc := webhook.New(db, testRing(t, db), client(t, r.host()), webhook.Options{})
		reg := register(t, svc, r, "*")
		now := time.Now()
		p := events.NewPublisher(db, events.Options{Node: "n1", MinBackoff: time.Second, MaxBackoff: time.Second,
			DeadLetterAfter: 3, Clock: func() time.Time { return now }})
		p.RegisterSource(svc)

		bad1, bad2 := write(t, db, "Journey", "bad", "rcm.journey.status_changed"), write(t, db, "Journey", "bad", "rcm.claim.status_changed")
		write(t, db, "Journey", "good", "rcm.journey.status_changed")
		for i := range 3 {
			if _, err := p.PublishOnce(ctx); err != nil {
				t.Fatal(err)
			}
			now = now.Add(2 * time.Second) // past the backoff: the next pass retries
			if i == 0 && len(r.events()) != 1 {
				t.Fatalf("the good aggregate waited for the bad one: %d events", len(r.events()))
			}
		}
		page, err := svc.DeadLetters(ctx, reg.ID, 0, 0)
		if err != nil {
			t.Fatal(err)
		}
		if len(page.DeadLetters) != 2 || page.DeadLetters[0].Event.ID != bad1.ID || page.DeadLetters[1].Event.ID != bad2.ID ||
			page.DeadLetters[0].Failures != 3 || !strings.Contains(page.DeadLetters[0].LastError, "answered 500") {
			t.Fatalf("dead letters %+v", page.DeadLetters)
		}
		if strings.Contains(page.DeadLetters[0].LastError, r.srv.URL) {
			t.Fatalf("the error repeats the URL: %s", page.DeadLetters[0].LastError)
		}
		if w, err := svc.Get(ctx, reg.ID); err != nil || w.DeadLetters != 2 {
			t.Fatalf("webhook %+v (%v), want 2 dead letters", w, err)
		}
		// Delivery goes on: the bad aggregate's next event is sent.
		bad3 := write(t, db, "Journey", "bad", "rcm.journey.status_changed")
		refuse.Store(false)
		if _, err := p.PublishOnce(ctx); err != nil {
			t.Fatal(err)
		}
		if got := r.events(); len(got) != 2 || got[1].ID != bad3.ID {
			t.Fatalf("after the dead letters the receiver has %+v", got)
		}
		// A re-drive the receiver refuses leaves them; one it takes ends them.
		r.setStatus(func(webhook.Body) int { return http.StatusBadGateway })
		if _, err := svc.Redrive(ctx, reg.ID, nil); err == nil || !strings.Contains(err.Error(), "answered 502") {
			t.Fatalf("refused re-drive: %v", err)
		}
		r.setStatus(func(webhook.Body) int { return http.StatusOK })
		out, err := svc.Redrive(ctx, reg.ID, []int64{page.DeadLetters[0].ID})
		if err != nil || out.Redelivered != 1 || out.Remaining != 1 {
			t.Fatalf("re-drive of one: %+v, %v", out, err)
		}
		if out, err = svc.Redrive(ctx, reg.ID, nil); err != nil || out.Redelivered != 1 || out.Remaining != 0 {
			t.Fatalf("re-drive of the rest: %+v, %v", out, err)
		}
		seen := map[int64]bool{}
		for _, ev := range r.events() {
			seen[ev.ID] = true
		}
		if !seen[bad1.ID] || !seen[bad2.ID] || len(seen) != 4 {
			t.Fatalf("after the re-drive the receiver has %v", seen)
		}
		r.mu.Lock()
		defer r.mu.Unlock()
		if r.redrives != 2 {
			t.Fatalf("%d deliveries marked as re-drives, want 2", r.redrives)
		}
	})
}

// A webhook registered, changed or deleted through one Service (one node)
// is delivered to, re-targeted or dropped by a publisher built beside
// another, at its next pass: the publisher reads the registrations from
// the database. A deleted webhook's positions go with it.
func TestRegistrationOnAnyNodeTakesEffectAtTheNextPass(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		r1, r2 := newReceiver(t), newReceiver(t)
		ring := testRing(t, db)
		cl := client(t, r1.host(), r2.host())
		apiNode := webhook.New(db, ring, cl, webhook.Options{})
		publisherNode := webhook.New(db, ring, cl, webhook.Options{})
		p := events.NewPublisher(db, events.Options{Node: "n2"})
		p.RegisterSource(publisherNode)

		reg := register(t, apiNode, r1, "rcm.*")
		write(t, db, "Journey", "j1", "rcm.journey.status_changed")
		if _, err := p.PublishOnce(ctx); err != nil {
			t.Fatal(err)
		}
		checkInOrder(t, r1.events(), 1)

		// A new secret and URL: the next delivery goes to r2, signed anew.
		secret := strings.Repeat("s", 32)
		w, err := apiNode.Update(ctx, reg.ID, webhook.Input{URL: r2.srv.URL, EventTypes: []string{"rcm.*"}, Secret: secret, Version: 1})
		if err != nil || w.Version != 2 {
			t.Fatalf("update: %+v, %v", w, err)
		}
		r2.mu.Lock()
		r2.secret = []byte(secret)
		r2.mu.Unlock()
		write(t, db, "Journey", "j1", "rcm.journey.status_changed")
		if _, err := p.PublishOnce(ctx); err != nil {
			t.Fatal(err)
		}
		if got := r2.events(); len(got) != 1 || got[0].Sequence != 2 {
			t.Fatalf("after the update r2 has %+v", got)
		}
		if err := apiNode.Delete(ctx, reg.ID); err != nil {
			t.Fatal(err)
		}
		var positions int
		if err := db.Reader().QueryRow(ctx, `SELECT count(*) FROM event_sink_positions WHERE sink = $1`, webhook.SinkPrefix+reg.ID).Scan(&positions); err != nil || positions != 0 {
			t.Fatalf("%d positions left (%v)", positions, err)
		}
		write(t, db, "Journey", "j1", "rcm.journey.status_changed")
		if n, err := p.PublishOnce(ctx); err != nil || n != 0 {
			t.Fatalf("a deleted webhook was handed %d events (%v)", n, err)
		}
	})
}
