package engine

import (
	"context"
	"errors"
	"fmt"

	"github.com/careflow/careflow/internal/store"
)

// Chaining: a step's transaction also runs the steps after it that need
// nothing outside the database, instead of enqueueing a job for each.
//
// A step job costs a fetch, a transaction and a completion, and the wait
// between one step's commit and the next step's fetch; a journey of sixteen
// steps spent most of its time there. So when a worker's transaction moves
// the run to a step that has no Do (an Apply-only step, or a wait), it runs
// that step in the same transaction, and the one after it, up to
// maxChainedSteps, stopping at the first step with a Do (which must run
// outside any transaction) or a wait that is not yet satisfied (which
// parks the run as before).
//
// The guarantees of apply.go hold unchanged, because the whole chain is one
// transaction: every chained step's writes, execution record, transition
// and the job (or wait) the chain ends on commit together, or none do and
// the job that began the chain is delivered again. Each chained step is
// recorded as its own execution, with its own times, as if it had had a
// job of its own.
//
// A chained step that fails (its Apply returns an error, panics, times out,
// or a database error comes back) must not take the step that began the
// chain down with it: the transaction is rolled back and done again
// without chaining, so the first step commits alone and the failing one
// gets its own job, where its retry policy applies as for any step.
//
// Chaining happens only in a worker's transaction: never in StartRunTx,
// a signal's or a task's transaction (the caller's request would do the
// run's work), or Resume and Retry.

// maxChainedSteps bounds one transaction's chain: on SQLite the
// transaction holds the one writer, and a definition may loop.
const maxChainedSteps = 16

type chainKey struct{}

// chain is the budget of steps a worker transaction may still run inline
// for the one run it locked (an Apply that starts or signals another run
// gets that run's first step a job, as a caller outside the engine would),
// and the step with a Do it hands to its worker (handoff.go).
type chain struct {
	run      string
	left     int
	handoffs int      // steps the worker may still follow after this one
	handoff  *handoff // the step handed to the worker, once committed
}

func withChain(ctx context.Context, run string, handoffs int) (context.Context, *chain) {
	c := &chain{run: run, left: maxChainedSteps, handoffs: handoffs}
	return context.WithValue(ctx, chainKey{}, c), c
}

// take reports whether the transaction of ctx may run one more step of run
// inline, and counts it.
func take(ctx context.Context, run string) bool {
	c, _ := ctx.Value(chainKey{}).(*chain)
	if c == nil || c.run != run || c.left <= 0 {
		return false
	}
	c.left--
	return true
}

// chainBroken carries the error of a chained step out of the transaction.
// It deliberately does not unwrap: an *applyFailed of a chained step is not
// the first step's failure.
type chainBroken struct {
	step string
	err  error
}

func (c *chainBroken) Error() string {
	return fmt.Sprintf("chained step %s: %v", c.step, c.err)
}

// chainable reports whether step i may run inside another step's
// transaction.
func chainable(def *Definition, i int) bool {
	return def.Steps[i].Do == nil
}

// runChained runs step idx of a run that moveTo just entered (saved, at
// attempt 1 of a new visit) in the transaction tx.
func (e *Engine) runChained(ctx context.Context, tx store.Tx, r *Run, def *Definition, idx int) error {
	step := &def.Steps[idx]
	if step.Wait != nil {
		if err := e.evaluateWait(ctx, tx, r, def, idx, 0); err != nil {
			return &chainBroken{step: step.Name, err: err}
		}
		return nil
	}
	started := e.now()
	labels := []string{def.Name, step.Name}
	e.metrics.executions.WithLabelValues(append(labels, "started")...).Inc()
	sc := &StepContext{Input: r.input(), Step: step.Name, Visit: r.Visit, Attempt: r.Attempt, Deliveries: 1}
	sc.Now = started
	res, err := e.applyStep(ctx, step, sc, tx, Result{})
	if err != nil {
		return &chainBroken{step: step.Name, err: err}
	}
	exec := stepExecution{runID: r.ID, step: step.Name, visit: r.Visit, attempt: r.Attempt, deliveries: 1,
		node: e.nodeID, started: started, status: "succeeded", output: res.output, finished: e.now()}
	if err := e.recordExecution(ctx, tx, exec); err != nil {
		return &chainBroken{step: step.Name, err: err}
	}
	e.metrics.stepSeconds.WithLabelValues(labels...).Observe(exec.finished.Sub(started).Seconds())
	e.metrics.executions.WithLabelValues(append(labels, "succeeded")...).Inc()
	if err := e.finishStep(ctx, tx, r, def, idx, res.output, res.Goto); err != nil {
		var cb *chainBroken
		if errors.As(err, &cb) {
			return err
		}
		return &chainBroken{step: step.Name, err: err}
	}
	return nil
}

// commitChained is commit with chaining, falling back to commit without it
// when a chained step failed. It returns the step the committed
// transaction handed to the worker, if any.
func (e *Engine) commitChained(ctx context.Context, d delivery, fn func(ctx context.Context, tx store.Tx, r *Run) error) (*handoff, error) {
	var c *chain
	err := e.commit(ctx, d, func(tx store.Tx, r *Run) error {
		var cctx context.Context
		cctx, c = withChain(ctx, r.ID, d.handoffs)
		return fn(cctx, tx, r)
	})
	var cb *chainBroken
	if !errors.As(err, &cb) {
		if err != nil || c == nil {
			return nil, err
		}
		return c.handoff, nil
	}
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	e.metrics.chainBreaks.Inc()
	e.logger.Debug("engine: a chained step failed; committing the step alone", "step", cb.step, "error", cb.err)
	return nil, e.commit(ctx, d, func(tx store.Tx, r *Run) error { return fn(ctx, tx, r) })
}
