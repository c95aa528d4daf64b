package webhook_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/careflow/careflow/internal/events"
	"github.com/careflow/careflow/internal/events/webhook"
	"github.com/careflow/careflow/internal/outbound"
	"github.com/careflow/careflow/internal/phi"
	"github.com/careflow/careflow/internal/store"
)

// testRing opens db's PHI key ring under a fixed test master key.
func testRing(t testing.TB, db *store.DB) *phi.Ring {
	t.Helper()
	mk, err := phi.ParseMasterKey(bytes.Repeat([]byte{0x5a}, 32))
	if err != nil {
		t.Fatal(err)
	}
	ring, err := phi.OpenRing(context.Background(), db, mk, phi.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return ring
}

// receiver is a real HTTP webhook receiver: it checks every delivery's
// signature (5-minute tolerance), answers with status(), and keeps each
// event once by id, in the order first taken.
type receiver struct {
	t      testing.TB
	srv    *httptest.Server
	secret []byte

	mu       sync.Mutex
	status   func(b webhook.Body) int
	seen     map[int64]bool
	taken    []events.Event
	requests int
	dups     int
	redrives int
	badSig   int
}

func newReceiver(t testing.TB) *receiver {
	r := &receiver{t: t, seen: map[int64]bool{}, status: func(webhook.Body) int { return http.StatusOK }}
	r.srv = httptest.NewServer(http.HandlerFunc(r.serve))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *receiver) serve(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(req.Body)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.requests++
	if err := webhook.Verify(r.secret, req.Header, body, time.Now(), 5*time.Minute); err != nil {
		r.badSig++
		http.Error(w, "bad signature", http.StatusUnauthorized)
		return
	}
	var b webhook.Body
	if err := json.Unmarshal(body, &b); err != nil {
		http.Error(w, "bad body", http.StatusBadRequest)
		return
	}
	if code := r.status(b); code != http.StatusOK {
		w.WriteHeader(code)
		return
	}
	if b.Redrive {
		r.redrives++
	}
	for _, ev := range b.Events {
		if r.seen[ev.ID] {
			r.dups++
			continue
		}
		r.seen[ev.ID] = true
		r.taken = append(r.taken, ev)
	}
	w.WriteHeader(http.StatusNoContent)
}

func (r *receiver) setStatus(f func(webhook.Body) int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.status = f
}

func (r *receiver) events() []events.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]events.Event(nil), r.taken...)
}

// host is the receiver's host:port, for the allow-list.
func (r *receiver) host() string {
	u, _ := url.Parse(r.srv.URL)
	return u.Host
}

// client is an outbound client allowing hosts.
func client(t testing.TB, hosts ...string) *outbound.Client {
	t.Helper()
	c, err := outbound.New(outbound.Config{Hosts: hosts, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// register registers a webhook to r for types and keeps its secret in r.
func register(t testing.TB, svc *webhook.Service, r *receiver, types ...string) webhook.Registered {
	t.Helper()
	reg, err := svc.Register(context.Background(), "admin-1", webhook.Input{URL: r.srv.URL + "/hook", EventTypes: types})
	if err != nil {
		t.Fatal(err)
	}
	r.mu.Lock()
	r.secret = []byte(reg.Secret)
	r.mu.Unlock()
	return reg
}

// write stores one event of aggregate agg in its own transaction.
func write(t testing.TB, db *store.DB, typ, agg, kind string) events.Event {
	t.Helper()
	var ev events.Event
	err := db.Tx(context.Background(), func(tx store.Tx) error {
		var err error
		ev, err = events.Write(context.Background(), tx, events.Event{AggregateType: typ, AggregateID: agg, Kind: kind,
			Payload: json.RawMessage(`{"status":"x"}`)})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return ev
}

// checkInOrder fails unless every aggregate's events in got come in
// sequence order from 1 without gaps, and got holds want events.
func checkInOrder(t testing.TB, got []events.Event, want int) {
	t.Helper()
	last := map[string]int64{}
	for _, ev := range got {
		k := ev.AggregateType + "/" + ev.AggregateID
		if ev.Sequence != last[k]+1 {
			t.Fatalf("%s: sequence %d after %d", k, ev.Sequence, last[k])
		}
		last[k] = ev.Sequence
	}
	if len(got) != want {
		t.Fatalf("the receiver has %d events, want %d", len(got), want)
	}
}

// waitFor polls cond until it holds or d passes.
func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
