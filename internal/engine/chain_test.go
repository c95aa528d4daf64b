package engine

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/careflow/careflow/internal/store"
	"github.com/careflow/careflow/internal/store/storetest"
)

// txSeen records which transaction each step's Apply ran in.
type txSeen struct {
	mu   sync.Mutex
	byTx map[string]string // step → the transaction's identity
}

func (s *txSeen) note(step string, tx store.Tx) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.byTx == nil {
		s.byTx = map[string]string{}
	}
	s.byTx[step] = fmt.Sprintf("%p", tx)
}

func (s *txSeen) get(step string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.byTx[step]
}

// The steps after an action that need nothing outside the database run in
// the action's own transaction, a satisfied wait among them, each recorded
// as its own execution; the chain stops at the next step with a Do, and a
// run started (StartRun) or resumed by a signal is not run by its caller.
func TestChainedStepsRunInTheTransactionOfTheStepBefore(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		rec := newTestRecord(t, db)
		var seen txSeen
		apply := func(name string) Step {
			return Step{Name: name, Apply: func(ctx context.Context, sc *StepContext, tx store.Tx, _ Result) (Result, error) {
				seen.note(name, tx)
				return Result{Output: name}, nil
			}}
		}
		def := &Definition{Name: "test-chain", Version: 1, Steps: []Step{
			apply("first"), // its own job: a start never runs a step
			{Name: "call", Do: func(context.Context, *StepContext) (Result, error) { return Result{}, nil },
				Apply: func(ctx context.Context, sc *StepContext, tx store.Tx, _ Result) (Result, error) {
					seen.note("call", tx)
					return Result{}, nil
				}},
			{Name: "write", Apply: func(ctx context.Context, sc *StepContext, tx store.Tx, _ Result) (Result, error) {
				seen.note("write", tx)
				body, _ := diagnosticsObservation("p1", sc.RunID+"/chain")
				_, _, err := rec.CreateTx(ctx, tx, nil, "Observation", body, "")
				return Result{}, err
			}},
			{Name: "skipped", When: func(*Input) bool { return false }, Apply: func(context.Context, *StepContext, store.Tx, Result) (Result, error) {
				return Result{}, errors.New("a skipped step ran")
			}},
			apply("reads"),
			{Name: "pause", Wait: func(*Input) (Wait, error) { return Wait{Signal: "go"}, nil }},
			apply("after-signal"),
			noopStep("last-call"),
			apply("tail"),
		}}
		n := newNode(t, db, nodeOpts{defs: []*Definition{def}})
		r, _, err := n.StartRun(ctx, StartOptions{Definition: "test-chain", PatientID: "p1"})
		if err != nil {
			t.Fatal(err)
		}
		if r.CurrentStep != "first" {
			t.Fatalf("a started run is at %s, want first", r.CurrentStep)
		}
		r = waitStatus(t, n.Engine, r.ID, StatusWaiting, 30*time.Second)
		if r.CurrentStep != "pause" {
			t.Fatalf("run waits at %s", r.CurrentStep)
		}
		if a, b, c := seen.get("call"), seen.get("write"), seen.get("reads"); a == "" || a != b || b != c {
			t.Fatalf("call, write and reads ran in transactions %s, %s, %s: want one", a, b, c)
		}
		if seen.get("first") == seen.get("call") {
			t.Fatal("the step with a Do ran in the transaction of the step before it")
		}
		if got := countByIdentifier(t, rec, r.ID+"/chain"); got != 1 {
			t.Fatalf("%d Observations written by the chained step", got)
		}
		res, err := n.SendSignal(ctx, r.ID, Signal{ID: "s1", Name: "go"})
		if err != nil || !res.Delivered {
			t.Fatalf("signal: %+v %v", res, err)
		}
		r = waitStatus(t, n.Engine, r.ID, StatusCompleted, 30*time.Second)
		if seen.get("after-signal") == "" || seen.get("after-signal") == seen.get("reads") {
			t.Fatal("the step after the signal ran in the signal's transaction or not at all")
		}
		got := executions(t, n.Engine, r.ID)
		want := "first:succeeded call:succeeded write:succeeded reads:succeeded pause:waited after-signal:succeeded last-call:succeeded tail:succeeded"
		if got != want {
			t.Fatalf("executions\n got %s\nwant %s", got, want)
		}
		// write, reads and the wait in call's transaction; tail in last-call's.
		if got := counterValue(t, n.metrics.chained); got != 4 {
			t.Fatalf("%v chained steps, want 4", got)
		}
		// call and last-call were run by the workers that committed the
		// steps before them, and their standby jobs went with their results.
		if got := counterValue(t, n.metrics.handoffs); got != 2 {
			t.Fatalf("%v steps handed off, want 2", got)
		}
		// (The worker's own job completes just after the run does.)
		waitFor(t, 10*time.Second, "no step job left", func() (bool, error) { return pendingJobs(t, db, r.ID) == 0, nil })
	})
}

// A step handed to the worker that committed the step before it survives
// that worker's stop: its standby job is made due, and the next node runs
// the step at once rather than when the job was scheduled (the step's
// timeout and a margin, a minute here).
func TestAHandedOffStepRunsAfterItsWorkerStopped(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		var calls atomic.Int32
		entered := make(chan struct{}, 1)
		noop := func(context.Context, *StepContext, store.Tx, Result) (Result, error) { return Result{}, nil }
		def := &Definition{Name: "test-handoff", Version: 1, Steps: []Step{
			noopStep("prepare"),
			{Name: "record", Apply: noop},
			{Name: "send", Do: func(ctx context.Context, sc *StepContext) (Result, error) {
				if calls.Add(1) == 1 {
					entered <- struct{}{}
					<-ctx.Done()
					return Result{}, ctx.Err()
				}
				return Result{}, nil
			}},
			{Name: "after", Apply: noop},
		}}
		n1 := newNode(t, db, nodeOpts{defs: []*Definition{def}, noStart: true, nodeID: "handoff-node-1"})
		if err := n1.Start(ctx); err != nil {
			t.Fatal(err)
		}
		r, _, err := n1.StartRun(ctx, StartOptions{Definition: "test-handoff"})
		if err != nil {
			t.Fatal(err)
		}
		select {
		case <-entered:
		case <-time.After(30 * time.Second):
			t.Fatal("the send step never ran")
		}
		if got := counterValue(t, n1.metrics.handoffs); got != 1 {
			t.Fatalf("%v steps handed off, want the send step", got)
		}
		stopCtx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
		_ = n1.Stop(stopCtx) // cut short: the send step is cancelled
		cancel()

		n2 := newNode(t, db, nodeOpts{defs: []*Definition{def}, nodeID: "handoff-node-2"})
		r = waitStatus(t, n2.Engine, r.ID, StatusCompleted, 20*time.Second)
		got := executions(t, n2.Engine, r.ID)
		if got != "prepare:succeeded record:succeeded send:succeeded after:succeeded" {
			t.Fatalf("executions %s", got)
		}
		if calls.Load() != 2 {
			t.Fatalf("send ran %d times, want 2 (the cancelled one and the one after the restart)", calls.Load())
		}
		waitFor(t, 10*time.Second, "no step job left", func() (bool, error) { return pendingJobs(t, db, r.ID) == 0, nil })
	})
}

// A chained step that fails does not take the step before it down: that
// step commits alone, its Do is not repeated, and the failing step gets a
// job of its own where its retry policy applies; when it fails for good the
// run fails naming it, with the earlier step's writes kept.
func TestAChainedStepsFailureLeavesTheStepBeforeItCommitted(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		rec := newTestRecord(t, db)
		var dos, flaky atomic.Int32
		def := func(name string, permanent bool) *Definition {
			return &Definition{Name: name, Version: 1, Steps: []Step{
				{Name: "call",
					Do: func(context.Context, *StepContext) (Result, error) { dos.Add(1); return Result{}, nil },
					Apply: func(ctx context.Context, sc *StepContext, tx store.Tx, _ Result) (Result, error) {
						body, _ := diagnosticsObservation("p1", sc.RunID+"/call")
						_, _, err := rec.CreateTx(ctx, tx, nil, "Observation", body, "")
						return Result{}, err
					}},
				{Name: "flaky", Retry: RetryPolicy{MaxAttempts: 3, Initial: 10 * time.Millisecond, Jitter: -1},
					Apply: func(context.Context, *StepContext, store.Tx, Result) (Result, error) {
						if permanent {
							return Result{}, Permanent(errors.New("refused for good"))
						}
						if flaky.Add(1) <= 2 {
							return Result{}, errors.New("not yet")
						}
						return Result{}, nil
					}},
			}}
		}
		n := newNode(t, db, nodeOpts{defs: []*Definition{def("test-chain-retry", false), def("test-chain-fail", true)}})

		r, _, err := n.StartRun(ctx, StartOptions{Definition: "test-chain-retry", PatientID: "p1"})
		if err != nil {
			t.Fatal(err)
		}
		r = waitStatus(t, n.Engine, r.ID, StatusCompleted, 30*time.Second)
		if dos.Load() != 1 {
			t.Fatalf("the first step's Do ran %d times, want 1", dos.Load())
		}
		if got := countByIdentifier(t, rec, r.ID+"/call"); got != 1 {
			t.Fatalf("%d Observations of the first step, want 1", got)
		}
		got := executions(t, n.Engine, r.ID)
		// The chained attempt rolled back with the chain; the step's own
		// job failed once more and then succeeded.
		if got != "call:succeeded flaky:retrying flaky:succeeded" {
			t.Fatalf("executions %s", got)
		}
		if got := counterValue(t, n.metrics.chainBreaks); got != 1 {
			t.Fatalf("%v chain breaks, want 1", got)
		}

		r, _, err = n.StartRun(ctx, StartOptions{Definition: "test-chain-fail", PatientID: "p1"})
		if err != nil {
			t.Fatal(err)
		}
		r = waitStatus(t, n.Engine, r.ID, StatusFailed, 30*time.Second)
		if !strings.Contains(r.Error, "step flaky failed: refused for good") {
			t.Fatalf("run error %q", r.Error)
		}
		if got := countByIdentifier(t, rec, r.ID+"/call"); got != 1 {
			t.Fatalf("%d Observations of the step before the failed one, want 1", got)
		}
	})
}

// executions lists a run's step executions as "step:status", in order.
func executions(t *testing.T, e *Engine, runID string) string {
	t.Helper()
	steps, err := e.Steps(context.Background(), runID)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range steps {
		names = append(names, s.Step+":"+s.Status)
	}
	return strings.Join(names, " ")
}
