package engine

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/riverqueue/river"

	"github.com/careflow/careflow/internal/store"
)

// stepWorker is the River worker of every step job.
type stepWorker struct {
	river.WorkerDefaults[stepArgs]
	e *Engine
}

func (w *stepWorker) Work(ctx context.Context, job *river.Job[stepArgs]) error {
	return w.e.work(ctx, job)
}

// maxErrorLen bounds a stored error message.
const maxErrorLen = 2000

func errorText(err error) string {
	s := err.Error()
	if len(s) > maxErrorLen {
		s = s[:maxErrorLen] + "…"
	}
	return s
}

// delivery is one run of a step: a River job, or a step handed to the
// worker that committed the step before it (handoff.go), which stands for
// its standby job.
type delivery struct {
	args       stepArgs
	deliveries int                  // how many times this attempt was handed to a worker
	job        *river.Job[stepArgs] // nil for a hand-off
	standby    int64                // a hand-off's standby job, deleted with the step's result
	handoffs   int                  // steps the worker may follow after this one
}

func jobDelivery(job *river.Job[stepArgs]) delivery {
	return delivery{args: job.Args, deliveries: job.Attempt, job: job, handoffs: maxHandoffs}
}

// work runs one step delivery, then the steps its transaction handed to
// this worker.
func (e *Engine) work(ctx context.Context, job *river.Job[stepArgs]) error {
	h, err := e.workJob(ctx, job)
	if err != nil {
		return err
	}
	e.followHandoffs(ctx, h)
	return nil
}

// workJob runs the step of a job. The step's Do (if any) runs outside any
// transaction; its outcome, the step's Apply (its writes to careflow's own
// database), the run's transition and the next job commit in one
// transaction that first re-checks, under the run's lock, that the job is
// still current.
func (e *Engine) workJob(ctx context.Context, job *river.Job[stepArgs]) (*handoff, error) {
	a := job.Args
	d := jobDelivery(job)
	r, err := e.scanRun(ctx, e.db.Reader().QueryRow(ctx, `SELECT `+runColumns+` FROM engine_runs WHERE id = $1`, a.RunID))
	if errors.Is(err, store.ErrNoRows) {
		return nil, nil // nothing to do for a run that does not exist
	}
	if err != nil {
		return nil, fmt.Errorf("load run: %w", err)
	}
	if !r.at(a) || (r.Status != StatusRunning && r.Status != StatusWaiting) {
		e.metrics.stale.Inc()
		return nil, nil
	}
	def, ok := e.reg.Get(r.Definition, r.Version)
	if !ok {
		// An older or newer node may know this version; come back later.
		e.logger.Warn("engine: definition version not known to this node", "definition", r.Definition, "version", r.Version)
		return nil, river.JobSnooze(time.Minute)
	}
	idx, step := def.step(a.Step)
	if step == nil {
		return nil, e.commit(ctx, d, func(tx store.Tx, r *Run) error {
			return e.failRun(ctx, tx, r, fmt.Sprintf("definition %s v%d has no step %s", def.Name, def.Version, a.Step))
		})
	}
	if step.Wait != nil {
		return e.commitChained(ctx, d, func(ctx context.Context, tx store.Tx, r *Run) error {
			return e.evaluateWait(ctx, tx, r, def, idx, a.Wake)
		})
	}
	return e.runAction(ctx, d, r, def, idx)
}

// commit runs fn in a transaction with the run locked, if the delivery is
// still current, and in the same transaction completes its job (or deletes
// a hand-off's standby job).
func (e *Engine) commit(ctx context.Context, d delivery, fn func(tx store.Tx, r *Run) error) error {
	return e.db.Tx(ctx, func(tx store.Tx) error {
		r, err := e.lockRun(ctx, tx, d.args.RunID)
		if err != nil {
			return err
		}
		if r.at(d.args) && (r.Status == StatusRunning || r.Status == StatusWaiting) {
			if err := fn(tx, r); err != nil {
				return err
			}
		} else {
			e.metrics.stale.Inc()
		}
		if d.job == nil {
			return e.q.deleteTx(ctx, tx, d.standby)
		}
		return e.q.completeTx(ctx, tx, d.job)
	})
}

func (e *Engine) runAction(ctx context.Context, d delivery, r *Run, def *Definition, idx int) (*handoff, error) {
	step := &def.Steps[idx]
	a := d.args
	started := e.now()
	sc := &StepContext{Input: r.input(), Step: step.Name, Visit: a.Visit, Attempt: a.Attempt, Deliveries: d.deliveries}
	sc.Now = started
	labels := []string{def.Name, step.Name}
	e.metrics.executions.WithLabelValues(append(labels, "started")...).Inc()

	var res Result
	var aerr error
	if step.Do != nil {
		actx, cancel := context.WithTimeout(ctx, step.timeout())
		res, aerr = callAction(actx, step, sc)
		timedOut := actx.Err() == context.DeadlineExceeded
		cancel()
		if aerr != nil && ctx.Err() != nil {
			// The node is stopping: not the step's fault. River hands the job
			// back and the attempt runs again with the same key.
			return nil, ctx.Err()
		}
		if aerr != nil && timedOut {
			aerr = fmt.Errorf("step timed out after %s: %w", step.timeout(), aerr)
		}
	}

	policy := step.Retry.normalised()
	outcome := "stale"
	// record commits the attempt's outcome: on success the step's Apply
	// (when it has one) writes in the same transaction first, and an error
	// of Apply (or an output that cannot be stored) rolls everything back
	// as an *applyFailed, after which the failure is recorded in a second
	// transaction without the step's writes.
	record := func(aerr error) (*handoff, error) {
		return e.commitChained(ctx, d, func(ctx context.Context, tx store.Tx, r *Run) error {
			exec := stepExecution{runID: r.ID, step: step.Name, visit: a.Visit, attempt: a.Attempt, deliveries: d.deliveries,
				node: e.nodeID, started: started}
			switch {
			case aerr == nil:
				res, err := e.applyStep(ctx, step, sc, tx, res)
				if err != nil {
					return err
				}
				outcome = "succeeded"
				exec.status, exec.output, exec.finished = "succeeded", res.output, e.now()
				if err := e.recordExecution(ctx, tx, exec); err != nil {
					return err
				}
				return e.finishStep(ctx, tx, r, def, idx, res.output, res.Goto)
			case policy.isPermanent(aerr) || a.Attempt >= policy.MaxAttempts:
				outcome = "failed"
				exec.status, exec.err, exec.finished = "failed", errorText(aerr), e.now()
				if err := e.recordExecution(ctx, tx, exec); err != nil {
					return err
				}
				reason := fmt.Sprintf("step %s failed: %s", step.Name, exec.err)
				if !policy.isPermanent(aerr) {
					reason = fmt.Sprintf("step %s failed after %d attempts: %s", step.Name, a.Attempt, exec.err)
				}
				return e.failRun(ctx, tx, r, reason)
			default:
				outcome = "retrying"
				exec.status, exec.err, exec.finished = "retrying", errorText(aerr), e.now()
				if err := e.recordExecution(ctx, tx, exec); err != nil {
					return err
				}
				delay := e.backoff(policy, a.Attempt)
				r.Attempt++
				if err := e.saveRun(ctx, tx, r, exec.finished); err != nil {
					return err
				}
				if err := e.transition(ctx, tx, r, "step.retry_scheduled", r.Status, step.Name, a.Attempt, exec.err,
					map[string]any{"next_attempt": r.Attempt, "delay_ms": delay.Milliseconds()}); err != nil {
					return err
				}
				e.metrics.retries.WithLabelValues(labels...).Inc()
				// Scheduled on the wall clock: River wakes it.
				at := time.Now().Add(delay)
				if err := e.planTimer(tx, at); err != nil {
					return err
				}
				return e.q.insertTx(ctx, tx, r.args(0), at)
			}
		})
	}
	h, err := record(aerr)
	if af := (*applyFailed)(nil); errors.As(err, &af) {
		if ctx.Err() != nil {
			return nil, ctx.Err() // stopping: the attempt runs again, and applies again
		}
		h, err = record(af.err)
	}
	if err != nil {
		return nil, err
	}
	e.metrics.stepSeconds.WithLabelValues(labels...).Observe(e.now().Sub(started).Seconds())
	e.metrics.executions.WithLabelValues(append(labels, outcome)...).Inc()
	return h, nil
}

// callAction runs the step's action, turning a panic into an error so that
// one bad step cannot take the node down.
func callAction(ctx context.Context, step *Step, sc *StepContext) (res Result, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("step panicked: %v", p)
		}
	}()
	return step.Do(ctx, sc)
}

type stepExecution struct {
	runID, step                string
	visit, attempt, deliveries int
	status, node, err          string
	started, finished          time.Time
	output                     []byte
}

func (e *Engine) recordExecution(ctx context.Context, tx store.Tx, x stepExecution) error {
	out, err := e.sealNullable(executionAAD(x.runID, x.step, x.visit, x.attempt), x.output)
	if err != nil {
		return err
	}
	_, err = tx.Exec(ctx, `INSERT INTO engine_step_executions (run_id, step, visit, attempt, status, idempotency_key, deliveries,
		node, started_at, finished_at, error, output) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)`,
		x.runID, x.step, x.visit, x.attempt, x.status, idempotencyKey(x.runID, x.step, x.visit), x.deliveries,
		x.node, x.started, x.finished, store.NullIfEmpty(x.err), out)
	if err != nil {
		return fmt.Errorf("record step execution: %w", err)
	}
	return nil
}
