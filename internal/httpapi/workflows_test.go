package httpapi

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/careflow/careflow/internal/audit"
	"github.com/careflow/careflow/internal/auth"
	"github.com/careflow/careflow/internal/clinical"
	"github.com/careflow/careflow/internal/engine"
	"github.com/careflow/careflow/internal/phi"
	"github.com/careflow/careflow/internal/record"
	"github.com/careflow/careflow/internal/store"
	"github.com/careflow/careflow/internal/store/storetest"
)

// approvalDefinition is a test workflow: a human task for a physician, then
// a final step. The built-in diagnostics definition covers signals and
// timers.
const approvalDefinition = "test.approval"

func approvalDef() *engine.Definition {
	return &engine.Definition{Name: approvalDefinition, Version: 1, Steps: []engine.Step{
		{Name: "approve", Wait: func(*engine.Input) (engine.Wait, error) {
			return engine.Wait{Task: &engine.TaskSpec{Title: "Approve the test request", Role: "physician", Decisions: []string{"approve", "reject"}, Due: time.Hour}}, nil
		}},
		{Name: "done", Timeout: 5 * time.Second, Do: func(context.Context, *engine.StepContext) (engine.Result, error) {
			return engine.Result{Output: map[string]any{"done": true}}, nil
		}},
	}}
}

// offsetClock is the wall clock plus an offset the test moves forward, so
// that "stuck for 15 minutes" can be reached without waiting for it.
type offsetClock struct {
	mu  sync.Mutex
	off time.Duration
}

func (c *offsetClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Now().Add(c.off)
}

func (c *offsetClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.off += d
}

// engineDeps is what a test engine checks against: the local accounts
// (the people tasks are handed to) and the FHIR record (the records a
// run's input references), both real and on the engine's database.
type engineDeps struct {
	accounts *auth.Accounts
	rec      *record.Service
	ring     *phi.Ring
}

// newTestEngine starts a real engine on db with the built-in definitions
// and the approval definition; it stops before the database closes.
func newTestEngine(t *testing.T, db *store.DB, clock func() time.Time) *engine.Engine {
	t.Helper()
	eng, _ := newTestEngineWith(t, db, clock)
	return eng
}

// newTestEngineWith is newTestEngine returning the accounts and record it
// checks against.
//
// before, if any, run after the engine is built and before it starts: a
// module whose definitions need the engine (the revenue cycle) registers
// them there.
func newTestEngineWith(t *testing.T, db *store.DB, clock func() time.Time, before ...func(*engine.Registry, *engine.Engine, engineDeps)) (*engine.Engine, engineDeps) {
	t.Helper()
	ctx := context.Background()
	if _, err := engine.MigrateRiver(ctx, db, nil); err != nil {
		t.Fatalf("river migrations: %v", err)
	}
	reg := engine.NewRegistry()
	if err := engine.RegisterBuiltins(reg, engine.BuiltinOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := clinical.Register(reg, clinical.Deps{}); err != nil {
		t.Fatal(err)
	}
	if err := reg.Register(approvalDef()); err != nil {
		t.Fatal(err)
	}
	ring := newTestRing(t, db)
	accounts, err := auth.NewAccounts(db, auth.AccountsConfig{Params: auth.Argon2Params{MemoryKiB: 64, Time: 1, Threads: 1, SaltLen: 16, KeyLen: 32}})
	if err != nil {
		t.Fatal(err)
	}
	deps := engineDeps{accounts: accounts, rec: record.New(db, ring, record.Options{}), ring: ring}
	e, err := engine.New(engine.Config{DB: db, Registry: reg, Ring: ring, Clock: clock, HousekeepingInterval: 200 * time.Millisecond,
		Staff: auth.TaskStaff{Accounts: accounts}, Records: deps.rec})
	if err != nil {
		t.Fatal(err)
	}
	for _, fn := range before {
		fn(reg, e, deps)
	}
	if err := e.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if err := e.Stop(ctx); err != nil {
			t.Errorf("engine stop: %v", err)
		}
	})
	return e, deps
}

// pollUntil polls cond until it holds or the deadline passes.
func pollUntil(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	delay := 5 * time.Millisecond
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		timer := time.NewTimer(delay)
		<-timer.C
		delay = min(2*delay, 100*time.Millisecond)
	}
}

// wfFixture is the authorization fixture (care team A holds ownPatient and
// every user it makes; team B holds otherPatient) serving a real engine.
type wfFixture struct {
	*authzFixture
	eng   *engine.Engine
	deps  engineDeps
	clock *offsetClock
}

func newWFFixture(t *testing.T, db *store.DB) *wfFixture {
	t.Helper()
	f := newAuthzFixture(t, db, nil)
	clock := &offsetClock{}
	eng, deps := newTestEngineWith(t, db, clock.Now)
	// The same fixture, served by a server that has the engine.
	f.srv = New(Options{
		DB:     db,
		Access: f.access,
		Audit:  f.log,
		Engine: eng,
		TestPrincipal: func(r *http.Request) *auth.Principal {
			f.mu.Lock()
			defer f.mu.Unlock()
			return f.principals[r.Header.Get(testPrincipalHeader)]
		},
	})
	f.ts = httptest.NewServer(f.srv.Handler())
	t.Cleanup(f.ts.Close)
	return &wfFixture{authzFixture: f, eng: eng, deps: deps, clock: clock}
}

// call sends a request as who with a JSON body (a string, or a value to
// encode) and returns the response.
func (f *wfFixture) call(t *testing.T, who, method, path string, body any) authzResponse {
	t.Helper()
	var s string
	switch b := body.(type) {
	case nil:
	case string:
		s = b
	default:
		enc, err := json.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		s = string(enc)
	}
	return f.do(t, who, method, path, s)
}

func must[T any](t *testing.T, resp authzResponse, want int) T {
	t.Helper()
	if resp.status != want {
		t.Fatalf("status %d, want %d: %s", resp.status, want, resp.body)
	}
	var v T
	if err := json.Unmarshal(resp.body, &v); err != nil {
		t.Fatalf("decode %s: %v", resp.body, err)
	}
	return v
}

func problemOf(t *testing.T, resp authzResponse, want int) Problem {
	t.Helper()
	return must[Problem](t, resp, want)
}

// startRun starts a run through the engine (test set-up, not the API).
func (f *wfFixture) startRun(t *testing.T, def, patient string, input any) *engine.Run {
	t.Helper()
	run, _, err := f.eng.StartRun(context.Background(), engine.StartOptions{Definition: def, PatientID: patient, Input: input})
	if err != nil {
		t.Fatal(err)
	}
	return run
}

// waitRun polls the engine until the run satisfies cond.
func (f *wfFixture) waitRun(t *testing.T, id, what string, cond func(*engine.Run) bool) *engine.Run {
	t.Helper()
	var run *engine.Run
	pollUntil(t, 20*time.Second, "run "+id+" "+what, func() bool {
		var err error
		run, err = f.eng.GetRun(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		return cond(run)
	})
	return run
}

func waitingFor(kind string) func(*engine.Run) bool {
	return func(r *engine.Run) bool {
		return r.Status == engine.StatusWaiting && r.Wait != nil && r.Wait.Kind == kind
	}
}

// taskOf waits for the open task of a run waiting on one.
func (f *wfFixture) taskOf(t *testing.T, runID string) *engine.Task {
	t.Helper()
	run := f.waitRun(t, runID, "to wait for a task", waitingFor("task"))
	task, err := f.eng.GetTask(context.Background(), run.Wait.TaskID)
	if err != nil {
		t.Fatal(err)
	}
	return task
}

// A physician starts a diagnostics run for their patient, signals it and
// watches it complete; its history, steps and signals say what happened,
// and every step was audited under the patient.
func TestWorkflowRunStartSignalComplete(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		f := newWFFixture(t, db)
		doc := f.principal(t, "wf-physician", auth.Physician, "")

		defs := must[struct {
			Definitions []definitionJSON `json:"definitions"`
		}](t, f.call(t, doc, "GET", "/api/v1/workflow-definitions", nil), 200)
		var diag *definitionJSON
		for i := range defs.Definitions {
			if defs.Definitions[i].Name == engine.DiagnosticsDefinition {
				diag = &defs.Definitions[i]
			}
		}
		if diag == nil || diag.NewestVersion != 1 || len(diag.Versions) != 1 {
			t.Fatalf("definitions %+v lack diagnostics v1", defs)
		}
		kinds := map[string]stepJSON{}
		for _, st := range diag.Versions[0].Steps {
			kinds[st.Name] = st
		}
		if s := kinds["check"]; s.Kind != "action" || s.Conditional || s.MaxAttempts != 10 || s.TimeoutSeconds != 5 {
			t.Errorf("check step described as %+v", s)
		}
		if s := kinds["signal"]; s.Kind != "wait" || !s.Conditional {
			t.Errorf("signal step described as %+v", s)
		}

		start := map[string]any{"definition": engine.DiagnosticsDefinition, "patient_id": ownPatient,
			"input": map[string]any{"signal": "payer.answer"}, "start_key": "order-1"}
		resp := f.call(t, doc, "POST", "/api/v1/workflow-runs", start)
		run := must[engine.Run](t, resp, 201)
		if loc := resp.header.Get("Location"); loc != "/api/v1/workflow-runs/"+run.ID {
			t.Errorf("Location %q", loc)
		}
		if run.PatientID != ownPatient || run.Definition != engine.DiagnosticsDefinition || run.Version != 1 {
			t.Errorf("started %+v", run)
		}
		again := must[engine.Run](t, f.call(t, doc, "POST", "/api/v1/workflow-runs", start), 200)
		if again.ID != run.ID {
			t.Fatalf("the same start_key started a second run %s", again.ID)
		}

		path := "/api/v1/workflow-runs/" + run.ID
		pollUntil(t, 20*time.Second, "the run to wait for its signal", func() bool {
			r := must[engine.Run](t, f.call(t, doc, "GET", path, nil), 200)
			return r.Status == engine.StatusWaiting && r.Wait != nil && r.Wait.Signal == "payer.answer"
		})

		for _, id := range []string{"", "Jane Doe's callback", strings.Repeat("x", 201)} {
			if p := problemOf(t, f.call(t, doc, "POST", path+"/signals", map[string]any{"id": id, "name": "payer.answer"}), 400); p.Field != "id" {
				t.Errorf("signal id %q: %+v", id, p)
			}
		}
		sig := map[string]any{"id": "callback-1", "name": "payer.answer", "payload": map[string]any{"outcome": "approved"}}
		resp = f.call(t, doc, "POST", path+"/signals", sig)
		res := must[engine.SignalResult](t, resp, 200)
		if res.Duplicate || !res.Delivered {
			t.Fatalf("signal result %+v", res)
		}
		entries := f.auditOf(t, resp.requestID)
		if len(entries) != 1 || entries[0].Action != "signal" || entries[0].ResourceType != runType || entries[0].ResourceID != run.ID ||
			entries[0].PatientID != ownPatient || entries[0].Outcome != audit.OutcomeSuccess || entries[0].Actor != doc {
			t.Fatalf("signal audited as %+v", entries)
		}
		if res := must[engine.SignalResult](t, f.call(t, doc, "POST", path+"/signals", sig), 200); !res.Duplicate || res.Delivered {
			t.Fatalf("a repeated signal id: %+v", res)
		}

		pollUntil(t, 20*time.Second, "the run to complete", func() bool {
			return must[engine.Run](t, f.call(t, doc, "GET", path, nil), 200).Status == engine.StatusCompleted
		})
		final := must[engine.Run](t, f.call(t, doc, "GET", path, nil), 200)
		if string(final.Outputs["signal"]) != `{"outcome":"approved"}` || final.FinishedAt == nil {
			t.Errorf("completed run %+v", final)
		}

		hist := must[struct {
			RunID       string              `json:"run_id"`
			Transitions []engine.Transition `json:"transitions"`
		}](t, f.call(t, doc, "GET", path+"/history", nil), 200)
		var events []string
		for _, tr := range hist.Transitions {
			events = append(events, tr.Event)
		}
		got := strings.Join(events, " ")
		for _, want := range []string{"run.started", "signal.received", "run.completed"} {
			if !strings.Contains(got, want) {
				t.Errorf("history %q lacks %s", got, want)
			}
		}
		if hist.RunID != run.ID || hist.Transitions[0].Event != "run.started" || hist.Transitions[len(hist.Transitions)-1].ToStatus != engine.StatusCompleted {
			t.Errorf("history %+v", hist)
		}

		steps := must[struct {
			Steps []engine.StepExecution `json:"steps"`
		}](t, f.call(t, doc, "GET", path+"/steps", nil), 200)
		done := map[string]bool{}
		for _, st := range steps.Steps {
			done[st.Step] = st.Status != ""
		}
		for _, want := range []string{"check", "prepare", "finish"} {
			if !done[want] {
				t.Errorf("steps %+v lack %s", steps.Steps, want)
			}
		}

		sigs := must[struct {
			Signals []engine.SignalRecord `json:"signals"`
		}](t, f.call(t, doc, "GET", path+"/signals", nil), 200)
		if len(sigs.Signals) != 1 || sigs.Signals[0].ID != "callback-1" || sigs.Signals[0].ConsumedAt == nil || sigs.Signals[0].ConsumedBy == "" {
			t.Errorf("signals %+v", sigs.Signals)
		}
	})
}

// Starting a run checks its body strictly and keeps PHI-shaped input out.
func TestWorkflowRunStartValidation(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		f := newWFFixture(t, db)
		doc := f.principal(t, "wf-doc", auth.Physician, "")
		admin := f.principal(t, "wf-ops", auth.ClinicalAdmin, "")
		for _, c := range []struct {
			name, body, field string
			want              int
		}{
			{"input must be an object", `{"definition":"diagnostics","patient_id":"pat-own","input":["x"]}`, "input", 400},
			{"input may not be null", `{"definition":"diagnostics","patient_id":"pat-own","input":null}`, "input", 400},
			{"input is bounded", `{"definition":"diagnostics","patient_id":"pat-own","input":{"x":"` + strings.Repeat("a", maxJSONMember) + `"}}`, "input", 400},
			{"unknown members are refused", `{"definition":"diagnostics","patient_id":"pat-own","priority":1}`, "priority", 400},
			{"the definition is required", `{"patient_id":"pat-own"}`, "definition", 400},
			{"an unknown definition is named", `{"definition":"nope","patient_id":"pat-own"}`, "definition", 400},
			{"a malformed patient id", `{"definition":"diagnostics","patient_id":"Jane Doe"}`, "patient_id", 400},
			{"a malformed start key", `{"definition":"diagnostics","patient_id":"pat-own","start_key":"a b"}`, "start_key", 400},
		} {
			t.Run(c.name, func(t *testing.T) {
				p := problemOf(t, f.call(t, doc, "POST", "/api/v1/workflow-runs", c.body), c.want)
				if p.Field != c.field {
					t.Errorf("field %q, want %q (%s)", p.Field, c.field, p.Detail)
				}
				if strings.Contains(p.Detail, "Jane") {
					t.Errorf("the problem echoes input: %s", p.Detail)
				}
			})
		}
		// A run that names no patient is outside a patient-bound grant, but
		// an operator may start one (a smoke test).
		p := problemOf(t, f.call(t, doc, "POST", "/api/v1/workflow-runs", `{"definition":"diagnostics"}`), 403)
		if !strings.Contains(p.Detail, "(patient_required)") {
			t.Errorf("patientless start by a physician: %s", p.Detail)
		}
		ops := must[engine.Run](t, f.call(t, admin, "POST", "/api/v1/workflow-runs", `{"definition":"diagnostics"}`), 201)
		if ops.PatientID != "" {
			t.Errorf("operator run %+v", ops)
		}
		// A start key names one run: reusing it for another patient does
		// not hand that run out.
		must[engine.Run](t, f.call(t, admin, "POST", "/api/v1/workflow-runs", `{"definition":"diagnostics","patient_id":"pat-other","start_key":"k-7"}`), 201)
		p = problemOf(t, f.call(t, doc, "POST", "/api/v1/workflow-runs", `{"definition":"diagnostics","patient_id":"pat-own","start_key":"k-7"}`), 409)
		if p.Field != "start_key" || strings.Contains(p.Detail, otherPatient) {
			t.Errorf("start key reuse: %+v", p)
		}
	})
}

// Cancel, pause and resume take the run's version: a stale one is 412, a
// change the run's state does not allow is 409, and only a manager of runs
// (clinical_admin) may do them.
func TestWorkflowRunControlWithVersions(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		f := newWFFixture(t, db)
		ops := f.principal(t, "wf-ops", auth.ClinicalAdmin, "")
		doc := f.principal(t, "wf-doc", auth.Physician, "")
		run := f.startRun(t, engine.DiagnosticsDefinition, ownPatient, map[string]any{"signal": "never"})
		cur := f.waitRun(t, run.ID, "to wait", waitingFor("signal"))
		path := "/api/v1/workflow-runs/" + run.ID

		p := problemOf(t, f.call(t, doc, "POST", path+"/pause", map[string]any{"version": cur.RowVersion}), 403)
		if !strings.Contains(p.Detail, "(no_rule)") {
			t.Errorf("physician pause: %s", p.Detail)
		}
		if p := problemOf(t, f.call(t, ops, "POST", path+"/pause", `{}`), 400); p.Field != "version" {
			t.Errorf("missing version: %+v", p)
		}
		if p := problemOf(t, f.call(t, ops, "POST", path+"/pause", map[string]any{"version": cur.RowVersion, "reason": "x"}), 400); p.Field != "reason" {
			t.Errorf("a pause takes no reason: %+v", p)
		}
		problemOf(t, f.call(t, ops, "POST", path+"/pause", map[string]any{"version": cur.RowVersion - 1}), 412)

		paused := must[engine.Run](t, f.call(t, ops, "POST", path+"/pause", map[string]any{"version": cur.RowVersion}), 200)
		if paused.Status != engine.StatusPaused || paused.RowVersion != cur.RowVersion+1 {
			t.Fatalf("paused %+v", paused)
		}
		problemOf(t, f.call(t, ops, "POST", path+"/pause", map[string]any{"version": paused.RowVersion}), 409)
		problemOf(t, f.call(t, ops, "POST", path+"/resume", map[string]any{"version": cur.RowVersion}), 412)

		resumed := must[engine.Run](t, f.call(t, ops, "POST", path+"/resume", map[string]any{"version": paused.RowVersion}), 200)
		if resumed.Status != engine.StatusWaiting {
			t.Fatalf("resumed %+v", resumed)
		}
		// Resuming hands the wait back to a job that looks at it again (a
		// signal may have come meanwhile) and saves the run once more.
		cur = f.waitRun(t, run.ID, "to wait again", func(r *engine.Run) bool {
			return waitingFor("signal")(r) && r.RowVersion > resumed.RowVersion
		})

		if p := problemOf(t, f.call(t, ops, "POST", path+"/cancel", map[string]any{"version": cur.RowVersion, "reason": "Patient said no"}), 400); p.Field != "reason" {
			t.Errorf("free-text reason: %+v", p)
		}
		resp := f.call(t, ops, "POST", path+"/cancel", map[string]any{"version": cur.RowVersion, "reason": "duplicate_order"})
		cancelled := must[engine.Run](t, resp, 200)
		if cancelled.Status != engine.StatusCancelled || cancelled.Error != "duplicate_order" || cancelled.FinishedAt == nil {
			t.Fatalf("cancelled %+v", cancelled)
		}
		if e := f.auditOf(t, resp.requestID); len(e) != 1 || e[0].Action != "cancel" || e[0].PatientID != ownPatient || e[0].Outcome != audit.OutcomeSuccess {
			t.Errorf("cancel audited as %+v", e)
		}
		resp = f.call(t, ops, "POST", path+"/cancel", map[string]any{"version": cancelled.RowVersion})
		problemOf(t, resp, 409)
		// The failed change is on record as such after its authorization.
		if e := f.auditOf(t, resp.requestID); len(e) != 2 || e[1].Outcome != audit.OutcomeError {
			t.Errorf("a refused cancel audited as %+v", e)
		}
		problemOf(t, f.call(t, ops, "POST", path+"/retry", map[string]any{"version": cancelled.RowVersion}), 409)

		// The signal that never came is still accepted and kept, and the
		// run stays cancelled.
		res := must[engine.SignalResult](t, f.call(t, ops, "POST", path+"/signals", `{"id":"late-1","name":"never"}`), 200)
		if res.Delivered || res.RunStatus != engine.StatusCancelled {
			t.Errorf("late signal %+v", res)
		}
		hist := must[struct {
			Transitions []engine.Transition `json:"transitions"`
		}](t, f.call(t, ops, "GET", path+"/history", nil), 200)
		var events []string
		for _, tr := range hist.Transitions {
			events = append(events, tr.Event)
		}
		if got := strings.Join(events, " "); !strings.Contains(got, "run.paused run.resumed") || !strings.Contains(got, "run.cancelled") {
			t.Errorf("history %s", got)
		}
	})
}

// Lists filter by status, definition, patient and "stuck for", page by a
// cursor, reject what they do not understand, and never carry another
// team's patient's runs.
func TestWorkflowRunQueries(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		f := newWFFixture(t, db)
		ops := f.principal(t, "wf-ops", auth.ClinicalAdmin, "")
		doc := f.principal(t, "wf-doc", auth.Physician, "")
		billing := f.principal(t, "wf-billing", auth.Billing, "")

		signalRun := f.startRun(t, engine.DiagnosticsDefinition, ownPatient, map[string]any{"signal": "payer.answer"})
		timerRun := f.startRun(t, engine.DiagnosticsDefinition, ownPatient, map[string]any{"timer_ms": int((2 * time.Hour).Milliseconds())})
		otherRun := f.startRun(t, engine.DiagnosticsDefinition, otherPatient, map[string]any{"signal": "payer.answer"})
		opsRun := f.startRun(t, engine.NoopDefinition, "", nil)
		f.waitRun(t, signalRun.ID, "to wait", waitingFor("signal"))
		f.waitRun(t, timerRun.ID, "to wait", waitingFor("timer"))
		f.waitRun(t, otherRun.ID, "to wait", waitingFor("signal"))
		f.waitRun(t, opsRun.ID, "to complete", func(r *engine.Run) bool { return r.Status == engine.StatusCompleted })

		ids := func(who, query string) []string {
			t.Helper()
			page := must[runPage](t, f.call(t, who, "GET", "/api/v1/workflow-runs"+query, nil), 200)
			var out []string
			for _, raw := range page.Runs {
				var r engine.Run
				if err := json.Unmarshal(raw, &r); err != nil {
					t.Fatal(err)
				}
				out = append(out, r.ID)
			}
			return out
		}
		same := func(got []string, want ...string) bool { return strings.Join(got, ",") == strings.Join(want, ",") }

		if got := ids(ops, "?status=waiting"); !same(got, signalRun.ID, timerRun.ID, otherRun.ID) {
			t.Errorf("waiting runs %v", got)
		}
		if got := ids(ops, "?definition=diagnostics-noop"); !same(got, opsRun.ID) {
			t.Errorf("noop runs %v", got)
		}
		if got := ids(ops, "?patient="+otherPatient); !same(got, otherRun.ID) {
			t.Errorf("runs of the other patient %v", got)
		}

		// Paging: one at a time, the cursor walks every run once, in order.
		var walked []string
		after := ""
		for range 10 {
			q := "?limit=1"
			if after != "" {
				q += "&after=" + after
			}
			page := must[runPage](t, f.call(t, ops, "GET", "/api/v1/workflow-runs"+q, nil), 200)
			for _, raw := range page.Runs {
				var r engine.Run
				_ = json.Unmarshal(raw, &r)
				walked = append(walked, r.ID)
			}
			if page.Next == "" {
				break
			}
			after = page.Next
		}
		if !same(walked, signalRun.ID, timerRun.ID, otherRun.ID, opsRun.ID) {
			t.Errorf("paged through %v", walked)
		}

		// Stuck: nothing yet; two hours on, the run whose timer passed is
		// stuck, the ones waiting for a payer are just waiting.
		if got := ids(ops, "?stuck_for=15m"); len(got) != 0 {
			t.Errorf("stuck before time moved: %v", got)
		}
		f.clock.Advance(3 * time.Hour)
		if got := ids(ops, "?stuck_for=15m"); !same(got, timerRun.ID) {
			t.Errorf("stuck for 15m: %v", got)
		}
		if got := ids(ops, "?stuck_for=2h"); len(got) != 0 {
			t.Errorf("stuck for 2h: %v", got)
		}

		// The physician's list holds their patient's runs only; billing's
		// every patient's, but not the operator's patientless run.
		if got := ids(doc, ""); !same(got, signalRun.ID, timerRun.ID) {
			t.Errorf("physician sees %v", got)
		}
		if got := ids(doc, "?limit=1&after="+timerRun.ID); len(got) != 0 {
			t.Errorf("physician's next page %v", got)
		}
		if got := ids(billing, ""); !same(got, signalRun.ID, timerRun.ID, otherRun.ID) {
			t.Errorf("billing sees %v", got)
		}
		p := problemOf(t, f.call(t, doc, "GET", "/api/v1/workflow-runs?patient="+otherPatient, nil), 404)
		if p.Detail != "no such patient" {
			t.Errorf("physician listing another team's patient: %+v", p)
		}

		for _, c := range []struct{ query, field string }{
			{"?sort=id", "sort"},
			{"?status=stuck", "status"},
			{"?stuck_for=fifteen", "stuck_for"},
			{"?stuck_for=-5m", "stuck_for"},
			{"?limit=0", "limit"},
			{"?limit=501", "limit"},
			{"?after=123", "after"},
			{"?patient=a%20b", "patient"},
			{"?definition=Diagnostics", "definition"},
			{"?status=waiting&status=running", "status"},
		} {
			if p := problemOf(t, f.call(t, ops, "GET", "/api/v1/workflow-runs"+c.query, nil), 400); p.Field != c.field {
				t.Errorf("%s: field %q, want %q", c.query, p.Field, c.field)
			}
		}
		if p := problemOf(t, f.call(t, ops, "GET", "/api/v1/tasks?overdue=yes", nil), 400); p.Field != "overdue" {
			t.Errorf("overdue=yes: %+v", p)
		}
		if p := problemOf(t, f.call(t, ops, "GET", "/api/v1/workflow-runs/"+signalRun.ID+"?verbose=1", nil), 400); p.Field != "verbose" {
			t.Errorf("a run with a query parameter: %+v", p)
		}
	})
}

// BOLA: a physician cannot see, signal or probe another team's patient's
// run; the answer is the same as for a run that does not exist, and the
// attempt is on the audit record.
func TestWorkflowRunsOfAnotherTeamsPatientAreInvisible(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		f := newWFFixture(t, db)
		doc := f.principal(t, "wf-doc", auth.Physician, "")
		admin := f.principal(t, "wf-admin", auth.Admin, "")
		other := f.startRun(t, approvalDefinition, otherPatient, nil)
		task := f.taskOf(t, other.ID)
		missing := uuid.Must(uuid.NewV7()).String()

		for _, c := range []struct{ method, path, body string }{
			{"GET", "/api/v1/workflow-runs/%s", ""},
			{"GET", "/api/v1/workflow-runs/%s/history", ""},
			{"GET", "/api/v1/workflow-runs/%s/steps", ""},
			{"GET", "/api/v1/workflow-runs/%s/signals", ""},
			{"POST", "/api/v1/workflow-runs/%s/signals", `{"id":"x-1","name":"payer.answer"}`},
		} {
			got := problemOf(t, f.call(t, doc, c.method, fmt.Sprintf(c.path, other.ID), c.body), 404)
			none := problemOf(t, f.call(t, doc, c.method, fmt.Sprintf(c.path, missing), c.body), 404)
			if got.Detail != none.Detail || got.Type != none.Type || got.Detail != "workflow run not found" {
				t.Errorf("%s %s: another team's run %+v, a missing run %+v", c.method, c.path, got, none)
			}
		}
		for _, c := range []struct{ method, path, body string }{
			{"GET", "/api/v1/tasks/%s", ""},
			{"POST", "/api/v1/tasks/%s/claim", `{"version":1}`},
			{"POST", "/api/v1/tasks/%s/complete", `{"version":1,"decision":"approve"}`},
		} {
			got := problemOf(t, f.call(t, doc, c.method, fmt.Sprintf(c.path, task.ID), c.body), 404)
			none := problemOf(t, f.call(t, doc, c.method, fmt.Sprintf(c.path, missing), c.body), 404)
			if got.Detail != none.Detail || got.Detail != "task not found" {
				t.Errorf("%s %s: another team's task %+v, a missing task %+v", c.method, c.path, got, none)
			}
		}
		resp := f.call(t, doc, "GET", "/api/v1/workflow-runs/"+other.ID, nil)
		if e := f.auditOf(t, resp.requestID); len(e) != 1 || e[0].Outcome != audit.OutcomeDenied || e[0].PatientID != otherPatient || e[0].ResourceID != other.ID {
			t.Errorf("the BOLA attempt audited as %+v", e)
		}
		// Nothing changed: no signal stored, the task still open.
		if sigs, _ := f.eng.Signals(context.Background(), other.ID); len(sigs) != 0 {
			t.Errorf("a refused signal was stored: %+v", sigs)
		}
		if tk, _ := f.eng.GetTask(context.Background(), task.ID); tk.Status != engine.TaskOpen {
			t.Errorf("task %+v", tk)
		}
		// The task list leaves it out.
		page := must[taskPage](t, f.call(t, doc, "GET", "/api/v1/tasks?run_id="+other.ID, nil), 200)
		if len(page.Tasks) != 0 {
			t.Errorf("the physician lists another team's task: %s", page.Tasks)
		}
		// A role with no access at all gets its 403 for a real id and a
		// made-up one alike.
		a := problemOf(t, f.call(t, admin, "GET", "/api/v1/workflow-runs/"+other.ID, nil), 403)
		b := problemOf(t, f.call(t, admin, "GET", "/api/v1/workflow-runs/"+missing, nil), 403)
		if a.Detail != b.Detail || !strings.Contains(a.Detail, "(no_rule)") {
			t.Errorf("admin: %+v vs %+v", a, b)
		}
	})
}

// A task is claimed and completed through HTTP by the physician the task is
// for, as the authenticated principal; the run then completes.
func TestWorkflowTaskClaimComplete(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		f := newWFFixture(t, db)
		doc := f.principal(t, "wf-doc", auth.Physician, "")
		colleague := f.principal(t, "wf-colleague", auth.Physician, "")
		billing := f.principal(t, "wf-billing", auth.Billing, "")
		ops := f.principal(t, "wf-ops", auth.ClinicalAdmin, "")

		run := must[engine.Run](t, f.call(t, doc, "POST", "/api/v1/workflow-runs",
			map[string]any{"definition": approvalDefinition, "patient_id": ownPatient}), 201)
		f.taskOf(t, run.ID)
		page := must[taskPage](t, f.call(t, doc, "GET", "/api/v1/tasks?status=open&role=physician&run_id="+run.ID, nil), 200)
		if len(page.Tasks) != 1 {
			t.Fatalf("open tasks %s", page.Tasks)
		}
		var task engine.Task
		if err := json.Unmarshal(page.Tasks[0], &task); err != nil {
			t.Fatal(err)
		}
		path := "/api/v1/tasks/" + task.ID
		if got := must[engine.Task](t, f.call(t, doc, "GET", path, nil), 200); got.ID != task.ID || got.Role != "physician" || got.Title == "" {
			t.Fatalf("task %+v", got)
		}

		// Billing may work tasks by policy, but this one is a physician's.
		p := problemOf(t, f.call(t, billing, "POST", path+"/claim", map[string]any{"version": task.RowVersion}), 403)
		if !strings.Contains(p.Detail, "another role") {
			t.Errorf("billing claim: %s", p.Detail)
		}
		problemOf(t, f.call(t, doc, "POST", path+"/claim", map[string]any{"version": task.RowVersion + 5}), 412)
		if p := problemOf(t, f.call(t, doc, "POST", path+"/claim", map[string]any{"version": task.RowVersion, "user": colleague}), 400); p.Field != "user" {
			t.Errorf("a claim for someone else: %+v", p)
		}
		claimed := must[engine.Task](t, f.call(t, doc, "POST", path+"/claim", map[string]any{"version": task.RowVersion}), 200)
		if claimed.Status != engine.TaskClaimed || claimed.Assignee != doc {
			t.Fatalf("claimed %+v", claimed)
		}
		problemOf(t, f.call(t, colleague, "POST", path+"/claim", map[string]any{"version": claimed.RowVersion}), 409)
		if p := problemOf(t, f.call(t, doc, "POST", path+"/complete", map[string]any{"version": claimed.RowVersion, "decision": "maybe"}), 400); p.Field != "decision" {
			t.Errorf("a decision the task does not offer: %+v", p)
		}
		if p := problemOf(t, f.call(t, doc, "POST", path+"/complete", map[string]any{"version": claimed.RowVersion, "decision": "approve", "result": "ok"}), 400); p.Field != "result" {
			t.Errorf("a result that is not an object: %+v", p)
		}
		problemOf(t, f.call(t, doc, "POST", path+"/reassign", map[string]any{"version": claimed.RowVersion, "role": "nurse"}), 403)

		resp := f.call(t, doc, "POST", path+"/complete", map[string]any{"version": claimed.RowVersion, "decision": "approve", "result": map[string]any{"code": "A1"}})
		done := must[engine.Task](t, resp, 200)
		if done.Status != engine.TaskCompleted || done.Decision != "approve" || done.CompletedBy != doc {
			t.Fatalf("completed %+v", done)
		}
		if e := f.auditOf(t, resp.requestID); len(e) != 1 || e[0].Action != "complete" || e[0].ResourceType != taskType || e[0].PatientID != ownPatient {
			t.Errorf("completion audited as %+v", e)
		}
		pollUntil(t, 20*time.Second, "the run to complete", func() bool {
			return must[engine.Run](t, f.call(t, doc, "GET", "/api/v1/workflow-runs/"+run.ID, nil), 200).Status == engine.StatusCompleted
		})
		problemOf(t, f.call(t, doc, "POST", path+"/complete", map[string]any{"version": done.RowVersion, "decision": "approve"}), 409)

		// An operator may not hand a second run's task to nurses: the task's
		// role is its definition's (this one names no escalation role).
		second := f.startRun(t, approvalDefinition, ownPatient, nil)
		t2 := f.taskOf(t, second.ID)
		if p := problemOf(t, f.call(t, ops, "POST", "/api/v1/tasks/"+t2.ID+"/reassign", map[string]any{"version": t2.RowVersion, "role": "nurse"}), 422); p.Field != "role" {
			t.Errorf("a physician's task moved to nurses: %+v", p)
		}
		if p := problemOf(t, f.call(t, ops, "POST", "/api/v1/tasks/"+t2.ID+"/reassign", map[string]any{"version": t2.RowVersion, "role": "surgeon"}), 400); p.Field != "role" {
			t.Errorf("an unknown role: %+v", p)
		}
		// Overdue: the tasks are due an hour after they open; two hours on,
		// the unfinished one is overdue and the completed one is not.
		if page := must[taskPage](t, f.call(t, ops, "GET", "/api/v1/tasks?overdue=true", nil), 200); len(page.Tasks) != 0 {
			t.Errorf("overdue before time moved: %s", page.Tasks)
		}
		f.clock.Advance(2 * time.Hour)
		page = must[taskPage](t, f.call(t, ops, "GET", "/api/v1/tasks?overdue=true", nil), 200)
		if len(page.Tasks) != 1 || !strings.Contains(string(page.Tasks[0]), t2.ID) {
			t.Errorf("overdue tasks %s, want %s", page.Tasks, t2.ID)
		}
	})
}

// The built-in discharge sign-off: a physician claims the task and sits on
// it; two hours on (the injected clock) the engine escalates it: the claim
// is released and the task is flagged, still a physician's; a colleague
// then decides, and the run records the outcome.
func TestDischargeSignOffEscalatesAStaleClaim(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		f := newWFFixture(t, db)
		doc := f.principal(t, "so-doc", auth.Physician, "")
		colleague := f.principal(t, "so-colleague", auth.Physician, "")
		ops := f.principal(t, "so-ops", auth.ClinicalAdmin, "")

		encounter := f.encounter(t, ownPatient)
		start := map[string]any{"definition": clinical.DischargeSignOffDefinition, "patient_id": ownPatient,
			"input": map[string]any{"encounter": encounter}}
		if p := problemOf(t, f.call(t, doc, "POST", "/api/v1/workflow-runs", map[string]any{"definition": clinical.DischargeSignOffDefinition,
			"patient_id": ownPatient, "input": map[string]any{"encounter": "enc-7"}}), 400); p.Field != "input.encounter" {
			t.Errorf("an encounter that is not a reference: %+v", p)
		}
		run := must[engine.Run](t, f.call(t, doc, "POST", "/api/v1/workflow-runs", start), 201)
		task := f.taskOf(t, run.ID)
		path := "/api/v1/tasks/" + task.ID
		claimed := must[engine.Task](t, f.call(t, doc, "POST", path+"/claim", map[string]any{"version": task.RowVersion}), 200)
		if claimed.Assignee != doc {
			t.Fatalf("claimed %+v", claimed)
		}
		problemOf(t, f.call(t, colleague, "POST", path+"/complete", map[string]any{"version": claimed.RowVersion, "decision": "sign_off"}), 409)

		f.clock.Advance(2*time.Hour + time.Minute)
		var escalated engine.Task
		pollUntil(t, 20*time.Second, "the task to be escalated", func() bool {
			escalated = must[engine.Task](t, f.call(t, colleague, "GET", path, nil), 200)
			return escalated.EscalatedAt != nil
		})
		if escalated.Status != engine.TaskOpen || escalated.Assignee != "" || escalated.Role != "physician" {
			t.Fatalf("escalated %+v, want open for physicians with the claim released", escalated)
		}
		page := must[taskPage](t, f.call(t, ops, "GET", "/api/v1/tasks?overdue=true", nil), 200)
		if len(page.Tasks) != 0 {
			t.Errorf("due in 4 hours, overdue after 2: %s", page.Tasks)
		}
		if p := problemOf(t, f.call(t, colleague, "POST", path+"/complete", map[string]any{"version": escalated.RowVersion, "decision": "approve"}), 400); p.Field != "decision" {
			t.Errorf("a decision the sign-off does not offer: %+v", p)
		}
		done := must[engine.Task](t, f.call(t, colleague, "POST", path+"/complete", map[string]any{"version": escalated.RowVersion, "decision": "not_ready"}), 200)
		if done.CompletedBy != colleague || done.Decision != "not_ready" {
			t.Fatalf("completed %+v", done)
		}
		final := f.waitRun(t, run.ID, "to complete", func(r *engine.Run) bool { return r.Status == engine.StatusCompleted })
		var outcome map[string]string
		if err := json.Unmarshal(final.Outputs["record"], &outcome); err != nil {
			t.Fatal(err)
		}
		if outcome["outcome"] != "not_ready" || outcome["decided_by"] != colleague || outcome["encounter"] != encounter {
			t.Fatalf("recorded outcome %v", outcome)
		}
		hist := must[struct {
			Transitions []engine.Transition `json:"transitions"`
		}](t, f.call(t, doc, "GET", "/api/v1/workflow-runs/"+run.ID+"/history", nil), 200)
		var events []string
		for _, tr := range hist.Transitions {
			events = append(events, tr.Event)
		}
		if got := strings.Join(events, " "); !strings.Contains(got, "task.claimed task.escalated task.completed") {
			t.Errorf("history %s", got)
		}
	})
}

// The payer gateway, with a real client token, starts runs and sends them
// callbacks but may not read them.
func TestWorkflowIntegrationClientWithRealToken(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		key, _, err := auth.GenerateSigningKey(nil)
		if err != nil {
			t.Fatal(err)
		}
		keys, err := auth.NewKeySet(key)
		if err != nil {
			t.Fatal(err)
		}
		tokens := auth.NewTokens(keys, auth.TokenConfig{})
		signer, _, err := audit.GenerateSigner()
		if err != nil {
			t.Fatal(err)
		}
		log, err := audit.New(context.Background(), db, audit.Options{Signer: signer})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = log.Close(context.Background()) })
		eng := newTestEngine(t, db, nil)
		srv := New(Options{DB: db, Access: auth.NewAccess(db, nil, nil), Audit: log, Engine: eng,
			Identity: Identity{Authenticator: auth.NewVerifier(tokens, nil)}})
		ts := httptest.NewServer(srv.Handler())
		t.Cleanup(ts.Close)
		tok, err := tokens.IssueClient(auth.Client{ID: "gateway-1", Name: "payer gateway", Role: auth.Integration}, []string{"system/WorkflowRun.c"})
		if err != nil {
			t.Fatal(err)
		}
		call := func(method, path, body string) (int, []byte) {
			t.Helper()
			req, _ := http.NewRequest(method, ts.URL+path, strings.NewReader(body))
			req.Header.Set("Authorization", "Bearer "+tok.Token)
			req.Header.Set("Content-Type", "application/json")
			resp, err := ts.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			return resp.StatusCode, b
		}
		code, body := call("POST", "/api/v1/workflow-runs", `{"definition":"diagnostics","patient_id":"pat-9","input":{"signal":"payer.answer"}}`)
		if code != 201 {
			t.Fatalf("start = %d %s", code, body)
		}
		var run engine.Run
		_ = json.Unmarshal(body, &run)
		pollUntil(t, 20*time.Second, "the run to wait", func() bool {
			r, err := eng.GetRun(context.Background(), run.ID)
			return err == nil && r.Status == engine.StatusWaiting
		})
		if code, body := call("POST", "/api/v1/workflow-runs/"+run.ID+"/signals", `{"id":"hcx-cb-1","name":"payer.answer","payload":{"status":"complete"}}`); code != 200 {
			t.Fatalf("callback = %d %s", code, body)
		}
		if code, body := call("GET", "/api/v1/workflow-runs/"+run.ID, ""); code != 403 || !strings.Contains(string(body), "(no_rule)") {
			t.Errorf("gateway read = %d %s", code, body)
		}
		if code, body := call("POST", "/api/v1/workflow-runs/"+run.ID+"/cancel", `{"version":1}`); code != 403 {
			t.Errorf("gateway cancel = %d %s", code, body)
		}
		pollUntil(t, 20*time.Second, "the run to complete", func() bool {
			r, err := eng.GetRun(context.Background(), run.ID)
			return err == nil && r.Status == engine.StatusCompleted
		})
	})
}

// Without an engine the routes exist and say so.
func TestWorkflowRoutesWithoutEngine(t *testing.T) {
	t.Parallel()
	db := storetest.Open(t, store.SQLite)
	f := newAuthzFixture(t, db, nil)
	ops := f.principal(t, "wf-ops", auth.ClinicalAdmin, "")
	for _, path := range []string{"/api/v1/workflow-definitions", "/api/v1/workflow-runs", "/api/v1/tasks"} {
		if resp := f.do(t, ops, "GET", path, ""); resp.status != http.StatusServiceUnavailable {
			t.Errorf("%s = %d %s", path, resp.status, resp.body)
		}
	}
}

// The list filters parse whatever a client sends: never a panic, and what
// they accept is within bounds.
func FuzzWorkflowQuery(f *testing.F) {
	for _, seed := range []string{"", "status=waiting&stuck_for=15m&limit=500", "definition=diagnostics&patient=pat-1&after=01a213e3-7a2b-7b0f-a806-b5e585995f2d",
		"stuck_for=9999999h", "limit=-1", "overdue=true&role=billing&assignee=u1&run_id=x", "status=%zz", "status=open"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		q, err := url.ParseQuery(raw)
		if err != nil {
			return
		}
		if rf, err := runFilter(q); err == nil {
			if rf.Limit < 1 || rf.Limit > maxPage || (rf.Status != "" && !rf.Status.Valid()) || (rf.After != "" && !canonicalUUID(rf.After)) ||
				(rf.PatientID != "" && !auth.ValidPatientID(rf.PatientID)) || rf.StuckFor < 0 {
				t.Fatalf("runFilter(%q) accepted %+v", raw, rf)
			}
		}
		if tf, err := taskFilter(q); err == nil {
			if tf.Limit < 1 || tf.Limit > maxPage || (tf.RunID != "" && !canonicalUUID(tf.RunID)) || (tf.After != "" && !canonicalUUID(tf.After)) {
				t.Fatalf("taskFilter(%q) accepted %+v", raw, tf)
			}
		}
	})
}
