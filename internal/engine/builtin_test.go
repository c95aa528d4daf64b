package engine

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/careflow/careflow/internal/errs"
	"github.com/careflow/careflow/internal/store"
	"github.com/careflow/careflow/internal/store/storetest"
)

// TestDiagnosticsEffectIsConfinedToTheAllowList drives the diagnostics
// definition: a run naming a host off the list (or any host, when the list
// is empty) is refused at start; an allowed host is called once; a
// redirect from an allowed host is not followed, and the run fails.
func TestDiagnosticsEffectIsConfinedToTheAllowList(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		var elsewhere atomic.Int32
		target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { elsewhere.Add(1) }))
		t.Cleanup(target.Close)
		var calls atomic.Int32
		allowed := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			calls.Add(1)
			if r.URL.Path == "/redirect" {
				http.Redirect(w, r, target.URL+"/stolen", http.StatusTemporaryRedirect)
			}
		}))
		t.Cleanup(allowed.Close)
		host := strings.TrimPrefix(allowed.URL, "http://")

		closed := newNode(t, db, nodeOpts{noStart: true})
		_, _, err := closed.StartRun(ctx, StartOptions{Definition: DiagnosticsDefinition, Input: DiagnosticsInput{EffectURL: allowed.URL}})
		if e, ok := errs.As(err); !ok || e.Kind != errs.Invalid || e.Field != "input.effect_url" || !strings.Contains(e.Message, "disabled") {
			t.Fatalf("start with no allowed hosts: %v, want invalid input.effect_url (disabled)", err)
		}

		n := newNode(t, db, nodeOpts{effectHosts: []string{host}})
		_, _, err = n.StartRun(ctx, StartOptions{Definition: DiagnosticsDefinition, Input: DiagnosticsInput{EffectURL: target.URL}})
		if !errs.Is(err, errs.Invalid) {
			t.Fatalf("start naming a host off the list: %v, want invalid", err)
		}
		_, _, err = n.StartRun(ctx, StartOptions{Definition: DiagnosticsDefinition, Input: map[string]any{"effect_url": allowed.URL, "extra": 1}})
		if !errs.Is(err, errs.Invalid) {
			t.Fatalf("start with an unknown input member: %v, want invalid", err)
		}
		_, _, err = n.StartRun(ctx, StartOptions{Definition: DiagnosticsDefinition, PatientID: "pat-1", Input: DiagnosticsInput{EffectURL: allowed.URL}})
		if e, ok := errs.As(err); !ok || e.Kind != errs.Invalid || !strings.Contains(e.Message, "no patient") {
			t.Fatalf("an effect run about a patient: %v, want invalid", err)
		}

		ok, _, err := n.StartRun(ctx, StartOptions{Definition: DiagnosticsDefinition, Input: DiagnosticsInput{EffectURL: allowed.URL + "/effect"}})
		if err != nil {
			t.Fatal(err)
		}
		waitStatus(t, n.Engine, ok.ID, StatusCompleted, 30*time.Second)
		if calls.Load() != 1 {
			t.Fatalf("the allowed host got %d calls, want 1", calls.Load())
		}

		redirected, _, err := n.StartRun(ctx, StartOptions{Definition: DiagnosticsDefinition, Input: DiagnosticsInput{EffectURL: allowed.URL + "/redirect"}})
		if err != nil {
			t.Fatal(err)
		}
		r := waitStatus(t, n.Engine, redirected.ID, StatusFailed, 30*time.Second)
		if !strings.Contains(r.Error, "answered 307") {
			t.Fatalf("run error %q, want the 307 answer", r.Error)
		}
		if elsewhere.Load() != 0 {
			t.Fatalf("the redirect was followed: the other host got %d calls", elsewhere.Load())
		}
	})
}

// The effect step's status decides its outcome even when the answer's body
// is over the outbound client's 64 KiB limit: a 2xx completes the run (the
// call was made and taken), a 4xx fails it, as when the body was discarded.
func TestDiagnosticsEffectJudgesALargeAnswerByItsStatus(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		big := strings.Repeat("x", 64<<10+1)
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/refused" {
				w.WriteHeader(http.StatusUnprocessableEntity)
			}
			_, _ = w.Write([]byte(big))
		}))
		t.Cleanup(srv.Close)
		n := newNode(t, db, nodeOpts{effectHosts: []string{strings.TrimPrefix(srv.URL, "http://")}})
		ok, _, err := n.StartRun(ctx, StartOptions{Definition: DiagnosticsDefinition, Input: DiagnosticsInput{EffectURL: srv.URL + "/taken"}})
		if err != nil {
			t.Fatal(err)
		}
		waitStatus(t, n.Engine, ok.ID, StatusCompleted, 30*time.Second)
		refused, _, err := n.StartRun(ctx, StartOptions{Definition: DiagnosticsDefinition, Input: DiagnosticsInput{EffectURL: srv.URL + "/refused"}})
		if err != nil {
			t.Fatal(err)
		}
		if r := waitStatus(t, n.Engine, refused.ID, StatusFailed, 30*time.Second); !strings.Contains(r.Error, "answered 422") {
			t.Fatalf("run error %q, want the 422 answer", r.Error)
		}
	})
}
