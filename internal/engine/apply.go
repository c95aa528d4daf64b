package engine

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/careflow/careflow/internal/store"
)

// A step's effects come in two kinds, and each has one way to happen once:
//
//   - Effects on the outside world (Step.Do) cannot share a transaction
//     with careflow's database. They run before the step's transaction, and
//     a crash or retry repeats them with the same IdempotencyKey, which the
//     receiver deduplicates.
//   - Effects on careflow's own database (Step.Apply: FHIR resources
//     through record's *Tx functions, rows of a domain module) are written
//     in the step's transaction, the one that also records the execution,
//     moves the run on and enqueues the next step's job. That transaction
//     first locks the run and checks it is still at the job's step, visit
//     and attempt; so the writes commit exactly when the step's result
//     does. A crash before the commit leaves nothing, and the re-delivered
//     job applies again; a re-delivery after the commit finds the run moved
//     on and is dropped before Apply runs.
//
// Apply holds the write transaction, and on SQLite the database has one
// writer connection: anything slow in Apply stalls every write of the
// node. It is bounded by the step's Timeout like Do.

// applyFailed carries an error of Apply (or of storing the step's output)
// out of the step's transaction, which it rolls back; the worker then
// records it as the attempt's failure in a transaction of its own.
type applyFailed struct{ err error }

func (e *applyFailed) Error() string { return e.err.Error() }
func (e *applyFailed) Unwrap() error { return e.err }

// applied is a successful step's result as it is stored.
type applied struct {
	output []byte // JSON, nil when the step returned no Output
	Goto   string
}

// applyStep runs step's Apply, if any, in tx with Do's result, and encodes
// the step's output. Its errors are *applyFailed.
func (e *Engine) applyStep(ctx context.Context, step *Step, sc *StepContext, tx store.Tx, res Result) (applied, error) {
	if step.Apply != nil {
		actx, cancel := context.WithTimeout(ctx, step.timeout())
		var err error
		res, err = callApply(actx, step, sc, tx, res)
		timedOut := actx.Err() == context.DeadlineExceeded
		cancel()
		if err != nil {
			if timedOut {
				err = fmt.Errorf("step timed out after %s: %w", step.timeout(), err)
			}
			return applied{}, &applyFailed{err: err}
		}
	}
	out := applied{Goto: res.Goto}
	if res.Output != nil {
		b, err := json.Marshal(res.Output)
		if err != nil {
			return applied{}, &applyFailed{err: Permanent(fmt.Errorf("step output cannot be encoded as JSON: %w", err))}
		}
		out.output = b
	}
	return out, nil
}

// callApply runs the step's Apply, turning a panic into an error like
// callAction.
func callApply(ctx context.Context, step *Step, sc *StepContext, tx store.Tx, done Result) (res Result, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("step panicked: %v", p)
		}
	}()
	return step.Apply(ctx, sc, tx, done)
}
