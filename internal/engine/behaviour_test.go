package engine

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/careflow/careflow/internal/errs"
	"github.com/careflow/careflow/internal/events"
	"github.com/careflow/careflow/internal/store"
	"github.com/careflow/careflow/internal/store/storetest"
)

func noopStep(name string) Step {
	return Step{Name: name, Do: func(context.Context, *StepContext) (Result, error) { return Result{}, nil }}
}

func signalDef() *Definition {
	return &Definition{Name: "test-signal", Version: 1, Steps: []Step{
		noopStep("before"),
		{Name: "await", Wait: func(*Input) (Wait, error) { return Wait{Signal: "approved"}, nil }},
		{Name: "after", Do: func(_ context.Context, sc *StepContext) (Result, error) {
			var got map[string]any
			if _, err := sc.Output("await", &got); err != nil {
				return Result{}, Permanent(err)
			}
			return Result{Output: map[string]any{"saw": got["by"]}}, nil
		}},
	}}
}

func TestSignalArrivingBeforeTheWaitIsKept(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		n := newNode(t, db, nodeOpts{defs: []*Definition{signalDef()}, noStart: true})
		r, _, err := n.StartRun(ctx, StartOptions{Definition: "test-signal"})
		if err != nil {
			t.Fatal(err)
		}
		res, err := n.SendSignal(ctx, r.ID, Signal{ID: "cb-1", Name: "approved", Payload: map[string]string{"by": "payer-a"}})
		if err != nil {
			t.Fatal(err)
		}
		if res.Delivered || res.Duplicate {
			t.Fatalf("a signal before the wait must be stored, not delivered: %+v", res)
		}
		// A second, later signal of the same name stays for a later wait.
		if _, err := n.SendSignal(ctx, r.ID, Signal{ID: "cb-2", Name: "approved", Payload: map[string]string{"by": "payer-b"}}); err != nil {
			t.Fatal(err)
		}
		n.start(t)
		r = waitStatus(t, n.Engine, r.ID, StatusCompleted, 30*time.Second)
		if got := string(r.Outputs["after"]); got != `{"saw":"payer-a"}` {
			t.Fatalf("after step saw %s, want the first signal's payload", got)
		}
		sigs, err := n.Signals(ctx, r.ID)
		if err != nil {
			t.Fatal(err)
		}
		if len(sigs) != 2 || sigs[0].ConsumedAt == nil || sigs[1].ConsumedAt != nil {
			t.Fatalf("signals: %+v", sigs)
		}
	})
}

func TestSignalAfterTheWaitResumesAndDuplicatesAreDropped(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		n := newNode(t, db, nodeOpts{defs: []*Definition{signalDef()}})
		r, _, err := n.StartRun(ctx, StartOptions{Definition: "test-signal"})
		if err != nil {
			t.Fatal(err)
		}
		r = waitStatus(t, n.Engine, r.ID, StatusWaiting, 30*time.Second)
		if r.Wait == nil || r.Wait.Kind != "signal" || r.Wait.Signal != "approved" || r.CurrentStep != "await" {
			t.Fatalf("waiting run: %+v", r)
		}
		res, err := n.SendSignal(ctx, r.ID, Signal{ID: "cb-1", Name: "approved", Payload: json.RawMessage(`{"by":"payer-a"}`)})
		if err != nil {
			t.Fatal(err)
		}
		if !res.Delivered || res.RunStatus != StatusRunning {
			t.Fatalf("signal to a waiting run: %+v", res)
		}
		again, err := n.SendSignal(ctx, r.ID, Signal{ID: "cb-1", Name: "approved", Payload: json.RawMessage(`{"by":"payer-x"}`)})
		if err != nil {
			t.Fatal(err)
		}
		if !again.Duplicate || again.Delivered {
			t.Fatalf("repeated signal id: %+v", again)
		}
		r = waitStatus(t, n.Engine, r.ID, StatusCompleted, 30*time.Second)
		if got := string(r.Outputs["after"]); got != `{"saw":"payer-a"}` {
			t.Fatalf("after step saw %s", got)
		}
		if _, err := n.SendSignal(ctx, r.ID, Signal{ID: "", Name: "approved"}); !errs.Is(err, errs.Invalid) {
			t.Fatalf("signal without id: %v", err)
		}
		if _, err := n.SendSignal(ctx, "no-such-run", Signal{ID: "x", Name: "approved"}); !errs.Is(err, errs.NotFound) {
			t.Fatalf("signal to unknown run: %v", err)
		}
	})
}

func TestTimerFiresAfterARestart(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		first := newNode(t, db, nodeOpts{noStart: true})
		first.start(t)
		r, _, err := first.StartRun(ctx, StartOptions{Definition: DiagnosticsDefinition, Input: DiagnosticsInput{TimerMS: 1500}})
		if err != nil {
			t.Fatal(err)
		}
		r = waitStatus(t, first.Engine, r.ID, StatusWaiting, 30*time.Second)
		if r.Wait == nil || r.Wait.Kind != "timer" || r.Wait.Until == nil {
			t.Fatalf("waiting run: %+v", r.Wait)
		}
		until := *r.Wait.Until
		sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		if err := first.Stop(sctx); err != nil {
			t.Fatal(err)
		}
		cancel()
		second := newNode(t, db, nodeOpts{})
		r = waitStatus(t, second.Engine, r.ID, StatusCompleted, 30*time.Second)
		steps, err := second.Steps(ctx, r.ID)
		if err != nil {
			t.Fatal(err)
		}
		var timer *StepExecution
		for i := range steps {
			if steps[i].Step == "timer" {
				timer = &steps[i]
			}
		}
		if timer == nil || timer.Status != "waited" {
			t.Fatalf("no timer step execution: %+v", steps)
		}
		if timer.FinishedAt.Before(until) {
			t.Fatalf("timer fired at %s, before its time %s", timer.FinishedAt, until)
		}
		if timer.Node != second.NodeID() {
			t.Fatalf("timer fired on %s, want the restarted node", timer.Node)
		}
	})
}

// Timers fire on time with nothing polling: the node's fallback polls are
// an hour long, so each timer and each step after it ran because the node
// was told (its timer loop woken by the commit that scheduled the timer,
// River's producers by the insert of the next job).
func TestTimersFireOnTimeWithoutPolling(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		n := newNode(t, db, nodeOpts{fetchPoll: time.Hour, timerFallback: time.Hour})
		// River's listener connects in the background after Start; a job
		// inserted before it listens would wait for the fallback poll.
		waitListening(t, db)
		for _, ms := range []int{300, 700} {
			r, _, err := n.StartRun(ctx, StartOptions{Definition: DiagnosticsDefinition, Input: DiagnosticsInput{TimerMS: ms}})
			if err != nil {
				t.Fatal(err)
			}
			r = waitStatus(t, n.Engine, r.ID, StatusCompleted, 10*time.Second)
			steps, err := n.Steps(ctx, r.ID)
			if err != nil {
				t.Fatal(err)
			}
			for _, s := range steps {
				if s.Step != "timer" {
					continue
				}
				if late := s.FinishedAt.Sub(s.StartedAt) - time.Duration(ms)*time.Millisecond; late < 0 || late > 500*time.Millisecond {
					t.Errorf("a %dms timer fired %v after its time", ms, late)
				}
			}
		}
	})
}

// waitListening waits, on PostgreSQL, until a session of db's database
// has run LISTEN (River's notifier).
func waitListening(t *testing.T, db *store.DB) {
	t.Helper()
	if db.Dialect() != store.Postgres {
		return
	}
	waitFor(t, 10*time.Second, "River's listener", func() (bool, error) {
		var n int
		err := db.Reader().QueryRow(context.Background(), `SELECT count(*) FROM pg_stat_activity
			WHERE datname = current_database() AND query ILIKE 'listen %river%'`).Scan(&n)
		return n > 0, err
	})
}

func TestRetriesHonourBackoffAndKeepTheIdempotencyKey(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		var calls atomic.Int32
		var keys [4]atomic.Value
		policy := RetryPolicy{MaxAttempts: 5, Initial: 300 * time.Millisecond, Multiplier: 2, Jitter: -1}
		def := &Definition{Name: "test-retry", Version: 1, Steps: []Step{{
			Name: "flaky", Retry: policy,
			Do: func(_ context.Context, sc *StepContext) (Result, error) {
				n := calls.Add(1)
				keys[min(int(n), 3)].Store(sc.IdempotencyKey())
				if sc.Attempt < 3 {
					return Result{}, errors.New("payer unavailable")
				}
				return Result{Output: map[string]int{"attempt": sc.Attempt}}, nil
			},
		}}}
		n := newNode(t, db, nodeOpts{defs: []*Definition{def}})
		r, _, err := n.StartRun(ctx, StartOptions{Definition: "test-retry"})
		if err != nil {
			t.Fatal(err)
		}
		waitStatus(t, n.Engine, r.ID, StatusCompleted, 30*time.Second)
		steps, err := n.Steps(ctx, r.ID)
		if err != nil {
			t.Fatal(err)
		}
		if len(steps) != 3 || steps[0].Status != "retrying" || steps[1].Status != "retrying" || steps[2].Status != "succeeded" {
			t.Fatalf("executions: %+v", steps)
		}
		if steps[0].Error != "payer unavailable" {
			t.Fatalf("recorded error %q", steps[0].Error)
		}
		for i, want := range []time.Duration{300 * time.Millisecond, 600 * time.Millisecond} {
			gap := steps[i+1].StartedAt.Sub(steps[i].FinishedAt)
			if gap < want {
				t.Errorf("attempt %d started %s after attempt %d failed; backoff is %s", i+2, gap, i+1, want)
			}
			if gap > want+5*time.Second {
				t.Errorf("attempt %d started %s after attempt %d failed; far beyond the backoff %s", i+2, gap, i+1, want)
			}
		}
		if keys[1].Load() != keys[3].Load() || steps[0].IdempotencyKey != steps[2].IdempotencyKey {
			t.Fatalf("idempotency key changed across retries: %v %v", keys[1].Load(), keys[3].Load())
		}
		if got := counterValue(t, n.metrics.retries.WithLabelValues("test-retry", "flaky")); got != 2 {
			t.Fatalf("retries metric %v, want 2", got)
		}
	})
}

func TestBackoffGrowsWithJitterInsideItsBounds(t *testing.T) {
	t.Parallel()
	p := RetryPolicy{Initial: 100 * time.Millisecond, Max: time.Second, Multiplier: 2, Jitter: 0.5}
	e := &Engine{}
	e.rand = newTestRand()
	for attempt, base := range map[int]time.Duration{1: 100 * time.Millisecond, 2: 200 * time.Millisecond, 3: 400 * time.Millisecond, 10: time.Second} {
		for i := 0; i < 100; i++ {
			d := e.backoff(p, attempt)
			if d > base || d < base/2 {
				t.Fatalf("attempt %d: delay %s outside [%s, %s]", attempt, d, base/2, base)
			}
		}
	}
	if d := (RetryPolicy{Initial: time.Second, Jitter: -1}).Backoff(3, nil); d != 4*time.Second {
		t.Fatalf("no-jitter delay %s, want 4s", d)
	}
}

func TestPermanentErrorFailsTheRunWithItsReason(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		var calls atomic.Int32
		exhaust := &Definition{Name: "test-exhaust", Version: 1, Steps: []Step{{
			Name: "always", Retry: RetryPolicy{MaxAttempts: 2, Initial: 10 * time.Millisecond},
			Do: func(context.Context, *StepContext) (Result, error) {
				calls.Add(1)
				return Result{}, errors.New("still down")
			},
		}}}
		n := newNode(t, db, nodeOpts{defs: []*Definition{exhaust}})
		r, _, err := n.StartRun(ctx, StartOptions{Definition: DiagnosticsDefinition, Input: DiagnosticsInput{FailPermanently: true}})
		if err != nil {
			t.Fatal(err)
		}
		r = waitStatus(t, n.Engine, r.ID, StatusFailed, 30*time.Second)
		if r.Error != "step check failed: failure requested by the input" {
			t.Fatalf("failure reason %q", r.Error)
		}
		steps, _ := n.Steps(ctx, r.ID)
		if len(steps) != 1 || steps[0].Status != "failed" {
			t.Fatalf("a permanent error must not be retried: %+v", steps)
		}
		h, _ := n.History(ctx, r.ID)
		if last := h[len(h)-1]; last.Event != "run.failed" || last.Detail != r.Error {
			t.Fatalf("last transition %+v", last)
		}

		r2, _, err := n.StartRun(ctx, StartOptions{Definition: "test-exhaust"})
		if err != nil {
			t.Fatal(err)
		}
		r2 = waitStatus(t, n.Engine, r2.ID, StatusFailed, 30*time.Second)
		if r2.Error != "step always failed after 2 attempts: still down" || calls.Load() != 2 {
			t.Fatalf("exhausted: %q after %d calls", r2.Error, calls.Load())
		}
	})
}

// pendingJobs counts the run's step jobs River still holds.
func pendingJobs(t *testing.T, db *store.DB, runID string) int {
	t.Helper()
	var n int
	q := `SELECT count(*) FROM river_job WHERE state IN ('available', 'scheduled', 'retryable', 'running') AND `
	if db.Dialect() == store.Postgres {
		q += `args->>'run_id' = $1`
	} else {
		q += `json_extract(args, '$.run_id') = $1`
	}
	if err := db.Reader().QueryRow(context.Background(), q, runID).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestCancellationMidWait(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		n := newNode(t, db, nodeOpts{})
		// Waiting on a signal.
		r, _, err := n.StartRun(ctx, StartOptions{Definition: DiagnosticsDefinition, Input: DiagnosticsInput{Signal: "go"}})
		if err != nil {
			t.Fatal(err)
		}
		r = waitStatus(t, n.Engine, r.ID, StatusWaiting, 30*time.Second)
		if _, err := n.Cancel(ctx, r.ID, r.RowVersion+1, "wrong version"); !errs.Is(err, errs.PreconditionFailed) {
			t.Fatalf("cancel with a stale version: %v", err)
		}
		c, err := n.Cancel(ctx, r.ID, r.RowVersion, "patient withdrew")
		if err != nil {
			t.Fatal(err)
		}
		if c.Status != StatusCancelled || c.Error != "patient withdrew" || c.FinishedAt == nil {
			t.Fatalf("cancelled run: %+v", c)
		}
		res, err := n.SendSignal(ctx, r.ID, Signal{ID: "late", Name: "go"})
		if err != nil || res.Delivered || res.RunStatus != StatusCancelled {
			t.Fatalf("signal after cancel: %+v %v", res, err)
		}
		if _, err := n.Cancel(ctx, r.ID, 0, ""); !errs.Is(err, errs.Conflict) {
			t.Fatalf("second cancel: %v", err)
		}

		// Waiting on a timer: the wake-up job finds the run cancelled.
		r2, _, err := n.StartRun(ctx, StartOptions{Definition: DiagnosticsDefinition, Input: DiagnosticsInput{TimerMS: 300}})
		if err != nil {
			t.Fatal(err)
		}
		waitStatus(t, n.Engine, r2.ID, StatusWaiting, 30*time.Second)
		if _, err := n.Cancel(ctx, r2.ID, 0, "no longer needed"); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 30*time.Second, "the timer job to be worked", func() (bool, error) { return pendingJobs(t, db, r2.ID) == 0, nil })
		got, _ := n.GetRun(ctx, r2.ID)
		steps, _ := n.Steps(ctx, r2.ID)
		for _, s := range steps {
			if s.Step == "timer" || s.Step == "finish" {
				t.Fatalf("a cancelled run went on: %+v", s)
			}
		}
		if got.Status != StatusCancelled {
			t.Fatalf("status %s after the timer", got.Status)
		}
	})
}

func TestPauseKeepsSignalsAndResumeContinues(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		n := newNode(t, db, nodeOpts{})
		r, _, err := n.StartRun(ctx, StartOptions{Definition: DiagnosticsDefinition, Input: DiagnosticsInput{Signal: "go"}})
		if err != nil {
			t.Fatal(err)
		}
		waitStatus(t, n.Engine, r.ID, StatusWaiting, 30*time.Second)
		p, err := n.Pause(ctx, r.ID, 0)
		if err != nil || p.Status != StatusPaused {
			t.Fatalf("pause: %v %v", p, err)
		}
		res, err := n.SendSignal(ctx, r.ID, Signal{ID: "s1", Name: "go"})
		if err != nil || res.Delivered {
			t.Fatalf("signal while paused: %+v %v", res, err)
		}
		if _, err := n.Resume(ctx, r.ID, 0); err != nil {
			t.Fatal(err)
		}
		waitStatus(t, n.Engine, r.ID, StatusCompleted, 30*time.Second)

		// Paused before its first step ran: the job is dropped, Resume
		// enqueues again.
		stopped := newNode(t, db, nodeOpts{noStart: true})
		r2, _, err := stopped.StartRun(ctx, StartOptions{Definition: NoopDefinition})
		if err != nil {
			t.Fatal(err)
		}
		p2, err := stopped.Pause(ctx, r2.ID, 0)
		if err != nil {
			t.Fatal(err)
		}
		waitFor(t, 30*time.Second, "the stale job to be dropped", func() (bool, error) { return pendingJobs(t, db, r2.ID) == 0, nil })
		if got, _ := n.GetRun(ctx, r2.ID); got.Status != StatusPaused || got.CurrentStep != p2.CurrentStep {
			t.Fatalf("paused run moved: %+v", got)
		}
		if _, err := n.Resume(ctx, r2.ID, 0); err != nil {
			t.Fatal(err)
		}
		waitStatus(t, n.Engine, r2.ID, StatusCompleted, 30*time.Second)
		if _, err := n.Resume(ctx, r2.ID, 0); !errs.Is(err, errs.Conflict) {
			t.Fatalf("resume of a completed run: %v", err)
		}
	})
}

func taskDef() *Definition {
	return &Definition{Name: "test-task", Version: 1, Steps: []Step{
		{Name: "review", Wait: func(*Input) (Wait, error) {
			return Wait{Task: &TaskSpec{Title: "Review pre-authorization", Role: "billing", Decisions: []string{"approve", "deny"},
				Due: time.Hour, EscalateAfter: 2 * time.Hour, EscalateTo: "billing_lead"}}, nil
		}},
		{Name: "submit", When: func(in *Input) bool {
			var out struct{ Decision string }
			ok, _ := in.Output("review", &out)
			return ok && out.Decision == "approve"
		}, Do: func(context.Context, *StepContext) (Result, error) { return Result{Output: "submitted"}, nil }},
	}}
}

func TestHumanTaskClaimReassignComplete(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		n := newNode(t, db, nodeOpts{defs: []*Definition{taskDef()}, staff: staffMap{"bill1": "billing", "bill2": "billing"}})
		r, _, err := n.StartRun(ctx, StartOptions{Definition: "test-task"})
		if err != nil {
			t.Fatal(err)
		}
		r = waitStatus(t, n.Engine, r.ID, StatusWaiting, 30*time.Second)
		tasks, err := n.ListTasks(ctx, TaskFilter{Role: "billing", Status: TaskOpen})
		if err != nil || len(tasks) != 1 || tasks[0].ID != r.Wait.TaskID || tasks[0].DueAt == nil {
			t.Fatalf("open tasks: %+v %v", tasks, err)
		}
		id := tasks[0].ID
		if _, err := n.ClaimTask(ctx, id, Actor{User: "nurse1", Roles: []string{"nurse"}}, 0); !errs.Is(err, errs.Forbidden) {
			t.Fatalf("claim by another role: %v", err)
		}
		tk, err := n.ClaimTask(ctx, id, Actor{User: "bill1", Roles: []string{"billing"}}, tasks[0].RowVersion)
		if err != nil || tk.Status != TaskClaimed || tk.Assignee != "bill1" {
			t.Fatalf("claim: %+v %v", tk, err)
		}
		if _, err := n.CompleteTask(ctx, id, Actor{User: "bill2", Roles: []string{"billing"}}, "approve", nil, 0); !errs.Is(err, errs.Conflict) {
			t.Fatalf("complete by someone else: %v", err)
		}
		if _, err := n.CompleteTask(ctx, id, Actor{User: "bill1", Roles: []string{"billing"}}, "maybe", nil, 0); !errs.Is(err, errs.Invalid) {
			t.Fatalf("decision outside the list: %v", err)
		}
		tk, err = n.ReassignTask(ctx, id, "", "bill2", 0)
		if err != nil || tk.Status != TaskOpen || tk.Assignee != "bill2" {
			t.Fatalf("reassign: %+v %v", tk, err)
		}
		if _, err := n.CompleteTask(ctx, id, Actor{User: "bill1", Roles: []string{"billing"}}, "approve", nil, 0); !errs.Is(err, errs.Forbidden) {
			t.Fatalf("complete by the former assignee: %v", err)
		}
		// The assignee completes it under the task's role (an assignment
		// alone, without the role, is not enough: see task_rules_test.go).
		tk, err = n.CompleteTask(ctx, id, Actor{User: "bill2", Roles: []string{"billing"}}, "approve", map[string]string{"note_ref": "DocumentReference/9"}, 0)
		if err != nil || tk.Status != TaskCompleted || tk.CompletedBy != "bill2" {
			t.Fatalf("complete: %+v %v", tk, err)
		}
		r = waitStatus(t, n.Engine, r.ID, StatusCompleted, 30*time.Second)
		if string(r.Outputs["submit"]) != `"submitted"` {
			t.Fatalf("the approve branch did not run: %s", r.Outputs)
		}
		var review struct {
			Decision    string `json:"decision"`
			CompletedBy string `json:"completed_by"`
		}
		_ = json.Unmarshal(r.Outputs["review"], &review)
		if review.Decision != "approve" || review.CompletedBy != "bill2" {
			t.Fatalf("review output %s", r.Outputs["review"])
		}
		if _, err := n.ClaimTask(ctx, id, Actor{User: "bill2", Roles: []string{"billing"}}, 0); !errs.Is(err, errs.Conflict) {
			t.Fatalf("claim of a completed task: %v", err)
		}
	})
}

func TestTasksEscalateAndOverdueOnTheInjectedClock(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		clock := &fakeClock{now: time.Now().UTC()}
		n := newNode(t, db, nodeOpts{defs: []*Definition{taskDef()}, clock: clock.Now})
		r, _, err := n.StartRun(ctx, StartOptions{Definition: "test-task"})
		if err != nil {
			t.Fatal(err)
		}
		r = waitStatus(t, n.Engine, r.ID, StatusWaiting, 30*time.Second)
		if got, _ := n.EscalateDueTasks(ctx); got != 0 {
			t.Fatalf("escalated %d tasks before their time", got)
		}
		if _, err := n.ClaimTask(ctx, r.Wait.TaskID, Actor{User: "bill1", Roles: []string{"billing"}}, 0); err != nil {
			t.Fatal(err)
		}
		clock.Advance(90 * time.Minute)
		overdue, err := n.ListTasks(ctx, TaskFilter{Overdue: true})
		if err != nil || len(overdue) != 1 {
			t.Fatalf("overdue: %d %v", len(overdue), err)
		}
		clock.Advance(time.Hour)
		got, err := n.EscalateDueTasks(ctx)
		if err != nil || got > 1 {
			t.Fatalf("escalated %d, %v", got, err)
		}
		tk, _ := n.GetTask(ctx, r.Wait.TaskID)
		if got == 0 && tk.EscalatedAt == nil {
			// The node's own escalation tick may have come first; either
			// way the task must be escalated now.
			t.Fatalf("the task was not escalated: %+v", tk)
		}
		if tk.Role != "billing_lead" || tk.Assignee != "" || tk.Status != TaskOpen || tk.EscalatedAt == nil {
			t.Fatalf("escalated task: %+v", tk)
		}
		if again, _ := n.EscalateDueTasks(ctx); again != 0 {
			t.Fatalf("escalated twice")
		}
		evs, _ := events.Since(ctx, db.Reader(), 0, 1000)
		found := false
		for _, ev := range evs {
			if ev.Kind == "workflow.task.escalated" && ev.AggregateID == r.ID {
				found = true
			}
		}
		if !found {
			t.Fatal("no task.escalated event in the outbox")
		}
		if _, err := n.CompleteTask(ctx, tk.ID, Actor{User: "lead", Roles: []string{"billing_lead"}}, "deny", nil, 0); err != nil {
			t.Fatal(err)
		}
		r = waitStatus(t, n.Engine, r.ID, StatusCompleted, 30*time.Second)
		if _, ran := r.Outputs["submit"]; ran {
			t.Fatal("the deny branch must skip submit")
		}
	})
}

func TestStuckRunsQuery(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		clock := &fakeClock{now: time.Now().UTC()}
		n := newNode(t, db, nodeOpts{clock: clock.Now, noStart: true})
		r, _, err := n.StartRun(ctx, StartOptions{Definition: NoopDefinition})
		if err != nil {
			t.Fatal(err)
		}
		clock.Advance(2 * time.Hour)
		stuck, err := n.ListRuns(ctx, RunFilter{StuckFor: time.Hour})
		if err != nil || len(stuck) != 1 || stuck[0].ID != r.ID {
			t.Fatalf("stuck for 1h: %v %v", stuck, err)
		}
		stuck, _ = n.ListRuns(ctx, RunFilter{StuckFor: 3 * time.Hour})
		if len(stuck) != 0 {
			t.Fatalf("stuck for 3h: %d runs", len(stuck))
		}
		running, _ := n.ListRuns(ctx, RunFilter{Status: StatusRunning, Definition: NoopDefinition})
		if len(running) != 1 {
			t.Fatalf("running: %d", len(running))
		}
		if _, err := n.ListRuns(ctx, RunFilter{Status: "bogus"}); !errs.Is(err, errs.Invalid) {
			t.Fatalf("unknown status: %v", err)
		}
	})
}

func TestRunKeepsItsDefinitionVersion(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		v := func(version int, steps ...string) *Definition {
			d := &Definition{Name: "test-versioned", Version: version}
			for _, s := range steps {
				d.Steps = append(d.Steps, noopStep(s))
			}
			return d
		}
		old := newNode(t, db, nodeOpts{defs: []*Definition{v(1, "a", "b")}, noStart: true})
		r1, _, err := old.StartRun(ctx, StartOptions{Definition: "test-versioned"})
		if err != nil {
			t.Fatal(err)
		}
		upgraded := newNode(t, db, nodeOpts{defs: []*Definition{v(1, "a", "b"), v(2, "a", "c", "d")}})
		r2, _, err := upgraded.StartRun(ctx, StartOptions{Definition: "test-versioned"})
		if err != nil {
			t.Fatal(err)
		}
		if r1.Version != 1 || r2.Version != 2 {
			t.Fatalf("versions %d and %d", r1.Version, r2.Version)
		}
		r1 = waitStatus(t, upgraded.Engine, r1.ID, StatusCompleted, 30*time.Second)
		r2 = waitStatus(t, upgraded.Engine, r2.ID, StatusCompleted, 30*time.Second)
		s1, _ := upgraded.Steps(ctx, r1.ID)
		s2, _ := upgraded.Steps(ctx, r2.ID)
		names := func(xs []StepExecution) string {
			var out []string
			for _, x := range xs {
				out = append(out, x.Step)
			}
			return strings.Join(out, ",")
		}
		if names(s1) != "a,b" || names(s2) != "a,c,d" {
			t.Fatalf("v1 ran %s, v2 ran %s", names(s1), names(s2))
		}
	})
}

func TestStartKeyMakesStartIdempotent(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		n := newNode(t, db, nodeOpts{noStart: true})
		a, created, err := n.StartRun(ctx, StartOptions{Definition: NoopDefinition, StartKey: "claim-42"})
		if err != nil || !created {
			t.Fatal(created, err)
		}
		b, created, err := n.StartRun(ctx, StartOptions{Definition: NoopDefinition, StartKey: "claim-42"})
		if err != nil || created || b.ID != a.ID {
			t.Fatalf("second start: %v %v %v", b.ID, created, err)
		}
		if _, _, err := n.StartRun(ctx, StartOptions{Definition: "nope"}); !errs.Is(err, errs.Invalid) {
			t.Fatalf("unknown definition: %v", err)
		}
	})
}

func TestLoopingBackGivesANewVisitAndKey(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		def := &Definition{Name: "test-loop", Version: 1, Steps: []Step{
			{Name: "submit", Do: func(_ context.Context, sc *StepContext) (Result, error) {
				if sc.Visit < 3 {
					return Result{Output: sc.IdempotencyKey(), Goto: "submit"}, nil
				}
				return Result{Output: sc.IdempotencyKey()}, nil
			}},
		}}
		n := newNode(t, db, nodeOpts{defs: []*Definition{def}})
		r, _, err := n.StartRun(ctx, StartOptions{Definition: "test-loop"})
		if err != nil {
			t.Fatal(err)
		}
		waitStatus(t, n.Engine, r.ID, StatusCompleted, 30*time.Second)
		steps, _ := n.Steps(ctx, r.ID)
		seen := map[string]bool{}
		for i, s := range steps {
			if s.Visit != i+1 || seen[s.IdempotencyKey] {
				t.Fatalf("visit %d: %+v", i+1, s)
			}
			seen[s.IdempotencyKey] = true
		}
		if len(steps) != 3 {
			t.Fatalf("%d visits", len(steps))
		}
	})
}

// TestSignalsRacingTheWaitAreNeverLost sends each run's signal at a random
// moment around the time the run reaches its wait: before, during or after
// the wait step's own transaction. Every run must complete.
func TestSignalsRacingTheWaitAreNeverLost(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		n := newNode(t, db, nodeOpts{defs: []*Definition{signalDef()}})
		const runs = 60
		ids := make([]string, runs)
		errc := make(chan error, runs)
		for i := range ids {
			r, _, err := n.StartRun(ctx, StartOptions{Definition: "test-signal"})
			if err != nil {
				t.Fatal(err)
			}
			ids[i] = r.ID
			go func(id string, delay time.Duration) {
				<-time.After(delay)
				_, err := n.SendSignal(ctx, id, Signal{ID: "race", Name: "approved", Payload: map[string]string{"by": id}})
				errc <- err
			}(r.ID, time.Duration(i%7)*3*time.Millisecond)
		}
		for range runs {
			if err := <-errc; err != nil {
				t.Fatal(err)
			}
		}
		for _, id := range ids {
			r := waitStatus(t, n.Engine, id, StatusCompleted, 60*time.Second)
			if got := string(r.Outputs["after"]); got != `{"saw":"`+id+`"}` {
				t.Fatalf("run %s saw %s", id, got)
			}
		}
	})
}

func TestPauseDuringAStepDiscardsItsResultAndResumeRepeatsItWithTheSameKey(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		entered := make(chan string, 4)
		release := make(chan struct{})
		var calls atomic.Int32
		def := &Definition{Name: "test-inflight", Version: 1, Steps: []Step{{
			Name: "call",
			Do: func(_ context.Context, sc *StepContext) (Result, error) {
				if calls.Add(1) == 1 {
					entered <- sc.IdempotencyKey()
					<-release
				} else {
					entered <- sc.IdempotencyKey()
				}
				return Result{Output: calls.Load()}, nil
			},
		}}}
		n := newNode(t, db, nodeOpts{defs: []*Definition{def}})
		r, _, err := n.StartRun(ctx, StartOptions{Definition: "test-inflight"})
		if err != nil {
			t.Fatal(err)
		}
		first := <-entered
		if _, err := n.Pause(ctx, r.ID, 0); err != nil {
			t.Fatal(err)
		}
		close(release)
		waitFor(t, 30*time.Second, "the in-flight job to finish", func() (bool, error) { return pendingJobs(t, db, r.ID) == 0, nil })
		if steps, _ := n.Steps(ctx, r.ID); len(steps) != 0 {
			t.Fatalf("a paused run recorded %+v", steps)
		}
		if _, err := n.Resume(ctx, r.ID, 0); err != nil {
			t.Fatal(err)
		}
		second := <-entered
		r = waitStatus(t, n.Engine, r.ID, StatusCompleted, 30*time.Second)
		if first != second {
			t.Fatalf("keys differ: %s then %s", first, second)
		}
		if string(r.Outputs["call"]) != "2" {
			t.Fatalf("output %s, want the second call's", r.Outputs["call"])
		}
	})
}

func TestRetryRestartsAFailedStepAsANewVisit(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		var fixed atomic.Bool
		def := &Definition{Name: "test-retry-run", Version: 1, Steps: []Step{
			{Name: "submit", Do: func(_ context.Context, sc *StepContext) (Result, error) {
				if !fixed.Load() {
					return Result{}, Permanent(errors.New("claim rejected: missing modifier"))
				}
				return Result{Output: sc.IdempotencyKey()}, nil
			}},
			noopStep("after"),
		}}
		n := newNode(t, db, nodeOpts{defs: []*Definition{def}})
		r, _, err := n.StartRun(ctx, StartOptions{Definition: "test-retry-run"})
		if err != nil {
			t.Fatal(err)
		}
		r = waitStatus(t, n.Engine, r.ID, StatusFailed, 30*time.Second)
		if _, err := n.Retry(ctx, r.ID, r.RowVersion+5); !errs.Is(err, errs.PreconditionFailed) {
			t.Fatalf("retry with a stale version: %v", err)
		}
		fixed.Store(true)
		if _, err := n.Retry(ctx, r.ID, r.RowVersion); err != nil {
			t.Fatal(err)
		}
		r = waitStatus(t, n.Engine, r.ID, StatusCompleted, 30*time.Second)
		if r.Error != "" || r.FinishedAt == nil {
			t.Fatalf("retried run: %+v", r)
		}
		steps, _ := n.Steps(ctx, r.ID)
		if len(steps) != 3 || steps[0].Visit != 1 || steps[1].Visit != 2 || steps[0].IdempotencyKey == steps[1].IdempotencyKey {
			t.Fatalf("executions: %+v", steps)
		}
		if _, err := n.Retry(ctx, r.ID, 0); !errs.Is(err, errs.Conflict) {
			t.Fatalf("retry of a completed run: %v", err)
		}
	})
}

func TestRetryRedeliversTheStepOfAStuckRun(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		stopped := newNode(t, db, nodeOpts{noStart: true})
		r, _, err := stopped.StartRun(ctx, StartOptions{Definition: NoopDefinition})
		if err != nil {
			t.Fatal(err)
		}
		// Lose the run's job, as an outage that made River discard it would.
		if _, err := db.Writer().Exec(ctx, `DELETE FROM river_job`); err != nil {
			t.Fatal(err)
		}
		if _, err := stopped.Retry(ctx, r.ID, 0); err != nil {
			t.Fatal(err)
		}
		n := newNode(t, db, nodeOpts{})
		waitStatus(t, n.Engine, r.ID, StatusCompleted, 30*time.Second)
	})
}

func TestWaitDeadlinesGiveUpAndTheRunGoesOn(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		def := &Definition{Name: "test-deadline", Version: 1, Steps: []Step{
			{Name: "callback", Wait: func(*Input) (Wait, error) { return Wait{Signal: "adjudicated", Timeout: 300 * time.Millisecond}, nil }},
			{Name: "review", Wait: func(*Input) (Wait, error) {
				return Wait{Task: &TaskSpec{Title: "Chase the payer", Role: "billing"}, Timeout: 300 * time.Millisecond}, nil
			}},
			{Name: "poll", When: func(in *Input) bool {
				var out struct {
					TimedOut bool `json:"timed_out"`
				}
				ok, _ := in.Output("callback", &out)
				return ok && out.TimedOut
			}, Do: func(context.Context, *StepContext) (Result, error) { return Result{Output: "polled"}, nil }},
		}}
		n := newNode(t, db, nodeOpts{defs: []*Definition{def}})
		r, _, err := n.StartRun(ctx, StartOptions{Definition: "test-deadline"})
		if err != nil {
			t.Fatal(err)
		}
		r = waitStatus(t, n.Engine, r.ID, StatusCompleted, 30*time.Second)
		if string(r.Outputs["callback"]) != `{"timed_out":true}` || string(r.Outputs["review"]) != `{"timed_out":true}` {
			t.Fatalf("outputs %s / %s", r.Outputs["callback"], r.Outputs["review"])
		}
		if string(r.Outputs["poll"]) != `"polled"` {
			t.Fatal("the fallback step did not run")
		}
		tasks, _ := n.ListTasks(ctx, TaskFilter{RunID: r.ID})
		if len(tasks) != 1 || tasks[0].Status != TaskCancelled {
			t.Fatalf("the timed-out task: %+v", tasks)
		}
		// A signal after the deadline is kept but changes nothing.
		res, err := n.SendSignal(ctx, r.ID, Signal{ID: "late", Name: "adjudicated"})
		if err != nil || res.Delivered {
			t.Fatalf("late signal: %+v %v", res, err)
		}
	})
}
