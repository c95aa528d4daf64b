package main

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/careflow/careflow/internal/events"
	"github.com/careflow/careflow/internal/events/webhook"
	"github.com/careflow/careflow/internal/store/storetest"
)

// killReceiver is a webhook receiver that holds its first delivery open
// (the events are committed, the delivery in flight, the positions not
// moved) until the test has killed careflow, then takes every delivery,
// each event once by id, checking the signature.
type killReceiver struct {
	inflight chan struct{} // closed when the first delivery arrives
	release  chan struct{} // closed to let held deliveries fail

	mu     sync.Mutex
	secret []byte
	open   bool
	seen   map[int64]bool
	got    []events.Event
	badSig int
}

func (k *killReceiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	k.mu.Lock()
	if webhook.Verify(k.secret, r.Header, body, time.Now(), 5*time.Minute) != nil {
		k.badSig++
		k.mu.Unlock()
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	if !k.open {
		select {
		case <-k.inflight:
		default:
			close(k.inflight)
		}
		k.mu.Unlock()
		<-k.release // careflow dies meanwhile: this answer reaches nobody
		w.WriteHeader(http.StatusServiceUnavailable)
		return
	}
	defer k.mu.Unlock()
	var b webhook.Body
	if err := json.Unmarshal(body, &b); err != nil {
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	for _, ev := range b.Events {
		if !k.seen[ev.ID] {
			k.seen[ev.ID] = true
			k.got = append(k.got, ev)
		}
	}
	w.WriteHeader(http.StatusNoContent)
}

// TestSIGKILLBetweenCommitAndDeliveryLosesNoEvent: a real `careflow serve`
// is killed with SIGKILL while its publisher's delivery of committed
// record events to a webhook is in flight (the receiver holds it), with
// more events committed behind it; the next `careflow serve` on the same
// database delivers every one of them (after the dead node's lease
// expires), each once by event id and in order per aggregate.
func TestSIGKILLBetweenCommitAndDeliveryLosesNoEvent(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("waits out a dead node's publisher lease (30 s)")
	}
	for _, d := range storetest.Backends() {
		t.Run(string(d), func(t *testing.T) {
			t.Parallel()
			env := newImportEnv(t, d)
			pwFile := filepath.Join(env.dir, "pw")
			const password = "a long enough passphrase"
			if err := os.WriteFile(pwFile, []byte(password+"\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			for _, u := range [][2]string{{"ops.admin", "admin"}, {"ops.sara", "clinical_admin"}} {
				if code, _, errOut := env.run(t, "user", "add", u[0], "--role", u[1], "--password-file", pwFile); code != 0 {
					t.Fatalf("user add = %d: %s", code, errOut)
				}
			}
			recv := &killReceiver{inflight: make(chan struct{}), release: make(chan struct{}), seen: map[int64]bool{}}
			ts := httptest.NewServer(recv)
			defer ts.Close()
			defer close(recv.release)
			host, _ := url.Parse(ts.URL)
			args := append(append([]string{"serve", "--listen", "127.0.0.1:0", "--webhook-allow", host.Host}, env.settings...), "--log-level", "info")

			c := startChild(t, env.dir, "run", nil, args...)
			base := "http://" + c.addr(t)
			login := func(user string) apiClient {
				b := apiClient{t: t, base: base}.do("POST", "/api/v1/auth/login", map[string]string{"username": user, "password": password}, 200)
				return apiClient{t: t, base: base, token: decodeInto[struct {
					AccessToken string `json:"access_token"`
				}](t, b).AccessToken}
			}
			reg := decodeInto[webhook.Registered](t, login("ops.admin").do("POST", "/api/v1/webhooks",
				map[string]any{"url": ts.URL + "/hook", "event_types": []string{"record.*"}}, 201))
			recv.mu.Lock()
			recv.secret = []byte(reg.Secret)
			recv.mu.Unlock()

			ops := login("ops.sara")
			var patients []string
			create := func() {
				p := decodeInto[struct {
					ID string `json:"id"`
				}](t, ops.do("POST", "/fhir/R4/Patient", map[string]any{"resourceType": "Patient", "active": true}, 201))
				patients = append(patients, p.ID)
			}
			for range 4 {
				create()
			}
			select {
			case <-recv.inflight:
			case <-time.After(30 * time.Second):
				t.Fatal("no delivery reached the receiver")
			}
			// Committed while the first delivery is in flight.
			for range 3 {
				create()
			}
			if err := c.cmd.Process.Signal(syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			c.exitCode(t, 10*time.Second)
			recv.mu.Lock()
			recv.open = true
			delivered := len(recv.got)
			recv.mu.Unlock()
			if delivered != 0 {
				t.Fatalf("the receiver took %d events before the kill", delivered)
			}

			// The next start delivers them all, once the dead node's lease
			// (30 s) has expired.
			c2 := startChild(t, env.dir, "run", nil, args...)
			c2.addr(t)
			deadline := time.Now().Add(90 * time.Second)
			for {
				recv.mu.Lock()
				n := len(recv.got)
				recv.mu.Unlock()
				if n >= len(patients) {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("after the restart the receiver has %d of %d events", n, len(patients))
				}
				time.Sleep(100 * time.Millisecond)
			}
			recv.mu.Lock()
			defer recv.mu.Unlock()
			got := map[string]events.Event{}
			for _, ev := range recv.got {
				if ev.AggregateType != "Patient" || ev.Kind != events.RecordCreated || ev.Sequence != 1 {
					t.Fatalf("unexpected event %+v", ev)
				}
				got[ev.AggregateID] = ev
			}
			for _, id := range patients {
				if _, ok := got[id]; !ok {
					t.Fatalf("the record.created of Patient/%s was lost", id)
				}
			}
			if len(recv.got) != len(patients) || recv.badSig != 0 {
				t.Fatalf("%d events for %d patients, %d bad signatures", len(recv.got), len(patients), recv.badSig)
			}
			if err := c2.cmd.Process.Signal(syscall.SIGTERM); err != nil {
				t.Fatal(err)
			}
			if code := c2.exitCode(t, 30*time.Second); code != 0 {
				t.Fatalf("serve exited %d after SIGTERM", code)
			}
		})
	}
}
