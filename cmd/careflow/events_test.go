package main

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/careflow/careflow/internal/engine"
	"github.com/careflow/careflow/internal/events"
	"github.com/careflow/careflow/internal/store/storetest"
)

// TestImportAndServeWriteEventsServeDelivers: `careflow import` writes a
// record.created event per resource through the hook the commands share;
// a real `careflow serve` then hands a sink (registered through
// serveHooks) that event, the record.created of a Patient created over the
// API, and every transition of a workflow run started over the API, each
// aggregate's in sequence order, by the publisher's loop serve runs, woken
// by the commits (well before its 30-second fallback pass).
func TestImportAndServeWriteEventsServeDelivers(t *testing.T) {
	t.Parallel()
	for _, d := range storetest.Backends() {
		t.Run(string(d), func(t *testing.T) {
			env := newImportEnv(t, d)
			pats := env.write(t, "bulk/Patient.ndjson", []byte(`{"resourceType":"Patient","id":"imported-1","active":true}`+"\n"))
			if code, _, errOut := env.run(t, "import", pats); code != 0 {
				t.Fatalf("import = %d: %s", code, errOut)
			}
			pwFile := filepath.Join(env.dir, "pw")
			const password = "a long enough passphrase"
			if err := os.WriteFile(pwFile, []byte(password+"\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			if code, _, errOut := env.run(t, "user", "add", "ops.sara", "--role", "clinical_admin", "--password-file", pwFile); code != 0 {
				t.Fatalf("user add = %d: %s", code, errOut)
			}

			sink := &events.MemorySink{}
			cfg, _, err := parseConfig("serve", append([]string{"--listen", "127.0.0.1:0"}, env.settings...), func(string) string { return "" })
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			listening := make(chan string, 1)
			done := make(chan int, 1)
			go func() {
				done <- serve(ctx, cfg, io.Discard, serveHooks{listening: listening, sinks: map[string]events.Sink{"test": sink}})
			}()
			defer func() { cancel(); <-done }()
			var base string
			select {
			case addr := <-listening:
				base = "http://" + addr
			case code := <-done:
				t.Fatalf("serve exited %d", code)
			case <-time.After(30 * time.Second):
				t.Fatal("serve did not start")
			}
			b := apiClient{t: t, base: base}.do("POST", "/api/v1/auth/login", map[string]string{"username": "ops.sara", "password": password}, 200)
			ops := apiClient{t: t, base: base, token: decodeInto[struct {
				AccessToken string `json:"access_token"`
			}](t, b).AccessToken}
			written := time.Now()
			pat := decodeInto[struct {
				ID string `json:"id"`
			}](t, ops.do("POST", "/fhir/R4/Patient", map[string]any{"resourceType": "Patient", "active": true}, 201))
			run := decodeInto[engine.Run](t, ops.do("POST", "/api/v1/workflow-runs", map[string]any{"definition": engine.NoopDefinition}, 201))

			// The noop run makes 12 transitions (run.started ... run.completed).
			want := map[string]int{"Patient/imported-1": 1, "Patient/" + pat.ID: 1, events.WorkflowRun + "/" + run.ID: 12}
			deadline := time.Now().Add(30 * time.Second)
			var got map[string][]events.Event
			for {
				got = map[string][]events.Event{}
				for _, ev := range sink.Events() {
					k := ev.AggregateType + "/" + ev.AggregateID
					got[k] = append(got[k], ev)
				}
				if len(got["Patient/imported-1"]) >= 1 && len(got["Patient/"+pat.ID]) >= 1 && len(got[events.WorkflowRun+"/"+run.ID]) >= 12 {
					break
				}
				if time.Now().After(deadline) {
					counts := map[string]int{}
					for k, evs := range got {
						counts[k] = len(evs)
					}
					t.Fatalf("the sink got %v events per aggregate, want %v", counts, want)
				}
				time.Sleep(50 * time.Millisecond)
			}
			// The passes ran because the writes' commits woke the
			// publisher: its fallback pass comes only every 30 seconds.
			if took := time.Since(written); took > 10*time.Second {
				t.Errorf("the events took %v to reach the sink", took)
			}
			for k, n := range want {
				evs := got[k]
				if len(evs) != n {
					t.Errorf("%s: %d events, want %d", k, len(evs), n)
				}
				for i, ev := range evs {
					if ev.Sequence != int64(i+1) {
						t.Errorf("%s: event %d has sequence %d", k, i, ev.Sequence)
					}
				}
			}
			if evs := got["Patient/"+pat.ID]; len(evs) > 0 && evs[0].Kind != events.RecordCreated {
				t.Errorf("the API's create is %s", evs[0].Kind)
			}
			if evs := got[events.WorkflowRun+"/"+run.ID]; len(evs) > 0 && (evs[0].Kind != "workflow.run.started" || evs[len(evs)-1].Kind != "workflow.run.completed") {
				t.Errorf("run events from %s to %s", evs[0].Kind, evs[len(evs)-1].Kind)
			}
		})
	}
}
