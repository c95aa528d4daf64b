package engine

import (
	"context"
	"errors"
	"time"

	"github.com/careflow/careflow/internal/store"
)

// Hand-off: the worker whose transaction moved a run to a step with a Do
// runs that step itself, right after the commit, instead of leaving it to
// River's next fetch.
//
// Chaining (chain.go) runs the steps that need only the database inside
// the transaction; a step with a Do cannot join it (Do runs outside any
// transaction). Its job used to wait for a fetch, a few to tens of
// milliseconds each time, three or four times a claim. Now the transaction
// inserts the step's job as a standby, scheduled well after the step could
// have finished (its timeout and standbyMargin), and the worker goes on
// with the step in the same goroutine once the transaction has committed.
// The step's own transaction deletes the standby job with its result, so
// River never runs it.
//
// What makes it safe is what makes any delivery safe: the step commits
// only if the run is still at its step, visit and attempt (the at() check
// under the run's lock), and Do carries the step's IdempotencyKey. The
// standby job is the step's durability: if the process dies or stops
// between the commit and the step's own commit, the standby job runs the
// step, exactly as a re-delivered job would, and finds the run moved on if
// it had committed after all. It is made due at once when this process
// starts again (SQLite: rescueAllRunning), when another node finds this one
// dead (PostgreSQL: rescueNode), or when the worker gives up on it
// (releaseStandbyJob); otherwise at its scheduled time.
//
// A worker follows at most maxHandoffs steps of one run so that it comes
// back to River's queue; the step after the last is an ordinary job.

// maxHandoffs bounds the steps one worker runs after its own job.
const maxHandoffs = 8

// standbyMargin is added to a step's timeout to schedule its standby job:
// the worker's own run of the step has committed long before.
const standbyMargin = 30 * time.Second

// handoff is a step the worker runs itself after its transaction commits.
type handoff struct {
	args  stepArgs
	jobID int64 // the standby job
}

// standbyJob inserts the standby job of the step the locked run r has
// just entered and hands the step to the worker of ctx's chain. It reports
// false (and inserts nothing) when ctx's transaction is not a worker's for
// r, its hand-offs are used up, or it has already handed a step off.
func (e *Engine) standbyJob(ctx context.Context, tx store.Tx, r *Run, step *Step) (bool, error) {
	c, _ := ctx.Value(chainKey{}).(*chain)
	if c == nil || c.run != r.ID || c.handoffs <= 0 || c.handoff != nil {
		return false, nil
	}
	args := r.args(0)
	args.Standby = e.nodeID
	at := time.Now().Add(step.timeout() + standbyMargin)
	if err := e.planTimer(tx, at); err != nil {
		return false, err
	}
	id, inserted, err := e.q.insertStandbyTx(ctx, tx, args, at)
	if err != nil {
		return false, err
	}
	if inserted {
		c.handoff = &handoff{args: args, jobID: id}
	}
	return true, nil
}

// followHandoffs runs the steps handed to this worker, one after another,
// until none is handed on or the budget is spent. A step that cannot run
// here is released to River.
func (e *Engine) followHandoffs(ctx context.Context, h *handoff) {
	for left := maxHandoffs; h != nil; left-- {
		if ctx.Err() != nil {
			e.releaseStandbyJob(ctx, h.jobID)
			return
		}
		next, err := e.runHandoff(ctx, h, left-1)
		if err != nil {
			if ctx.Err() == nil {
				e.logger.Warn("engine: a step handed to this worker did not run; its job will", "run_id", h.args.RunID, "step", h.args.Step, "error", err.Error())
			}
			e.releaseStandbyJob(ctx, h.jobID)
			return
		}
		h = next
	}
}

// runHandoff runs one handed-off step as a delivery of its standby job.
func (e *Engine) runHandoff(ctx context.Context, h *handoff, handoffsLeft int) (*handoff, error) {
	a := h.args
	r, err := e.scanRun(ctx, e.db.Reader().QueryRow(ctx, `SELECT `+runColumns+` FROM engine_runs WHERE id = $1`, a.RunID))
	if err != nil {
		return nil, err
	}
	if !r.at(a) || r.Status != StatusRunning {
		// Paused or cancelled since: the standby job is dropped when due,
		// like any stale job.
		e.metrics.stale.Inc()
		return nil, nil
	}
	def, ok := e.reg.Get(r.Definition, r.Version)
	if !ok {
		return nil, errors.New("definition version not known to this node")
	}
	idx, step := def.step(a.Step)
	if step == nil || step.Do == nil {
		return nil, errors.New("the step handed off has no action")
	}
	e.metrics.handoffs.Inc()
	return e.runAction(ctx, delivery{args: a, deliveries: 1, standby: h.jobID, handoffs: handoffsLeft}, r, def, idx)
}

// releaseStandbyJob makes a standby job due now, so that River runs the
// step it stands by for. Best effort, outside the caller's context (which
// may be what ended): failing that, the job runs at its scheduled time.
func (e *Engine) releaseStandbyJob(ctx context.Context, id int64) {
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if _, err := e.dueNow(rctx, e.db.Writer(), `id = $2`, id); err != nil {
		e.logger.Warn("engine: could not release a standby job; it runs at its scheduled time", "job_id", id, "error", err.Error())
	}
}

// releaseStandby makes due now the standby jobs of node (every node's when
// node is empty).
func (e *Engine) releaseStandby(ctx context.Context, q store.Querier, node string) (int64, error) {
	standby := `args->>'standby'`
	if e.db.Dialect() == store.SQLite {
		standby = `json_extract(args, '$.standby')`
	}
	if node == "" {
		return e.dueNow(ctx, q, standby+` IS NOT NULL`)
	}
	return e.dueNow(ctx, q, standby+` = $2`, node)
}

// dueNow reschedules the engine's scheduled jobs that match cond (whose
// parameters start at $2) to now, and wakes this node's promoteLoop (at
// the commit when q is a transaction), which makes them available and
// tells the producers.
func (e *Engine) dueNow(ctx context.Context, q store.Querier, cond string, args ...any) (int64, error) {
	n, err := q.Exec(ctx, `UPDATE river_job SET scheduled_at = `+riverNow(e.db.Dialect())+`
		WHERE state = 'scheduled' AND queue = $1 AND `+cond, append([]any{queueName}, args...)...)
	if err != nil || n == 0 {
		return n, err
	}
	if tx, ok := q.(store.Tx); ok {
		return n, store.AfterCommit(tx, e.kickTimers)
	}
	e.kickTimers()
	return n, nil
}
