package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/careflow/careflow/internal/errs"
	"github.com/careflow/careflow/internal/store"
)

// evaluateWait handles a wait step for a job delivery (wake 0 on entering
// the step or on Resume, 1.. for timer and deadline wake-ups): on first
// arrival it computes and stores what the run waits for; then, if that has
// already happened, the step completes at once; otherwise the run is left
// waiting with a wake-up job at its timer or deadline.
func (e *Engine) evaluateWait(ctx context.Context, tx store.Tx, r *Run, def *Definition, idx int, wake int) error {
	step := &def.Steps[idx]
	now := e.now()
	first := r.Wait == nil
	if first {
		in := r.input()
		in.Now = now
		w, err := step.Wait(in)
		if err != nil {
			return e.failRun(ctx, tx, r, fmt.Sprintf("step %s: %s", step.Name, errorText(err)))
		}
		ws, err := e.armWait(ctx, tx, r, step, w, now)
		if err != nil || ws == nil {
			// nil, nil: the wait was malformed and the run has failed.
			return err
		}
		r.Wait = ws
	}
	resolved, err := e.resolveWait(ctx, tx, r, def, idx, now)
	if err != nil || resolved {
		return err
	}
	from := r.Status
	r.Status = StatusWaiting
	if err := e.saveRun(ctx, tx, r, now); err != nil {
		return err
	}
	if first {
		extra := map[string]any{"wait": r.Wait.Kind}
		if r.Wait.Signal != "" {
			extra["signal"] = r.Wait.Signal
		}
		if r.Wait.TaskID != "" {
			extra["task_id"] = r.Wait.TaskID
		}
		if r.Wait.Until != nil {
			extra["until"] = r.Wait.Until.Format(time.RFC3339Nano)
		}
		if err := e.transition(ctx, tx, r, "run.waiting", from, step.Name, 0, "", extra); err != nil {
			return err
		}
	}
	if r.Wait.Until != nil {
		if err := e.planTimer(tx, *r.Wait.Until); err != nil {
			return err
		}
		return e.q.insertTx(ctx, tx, r.args(wake+1), *r.Wait.Until)
	}
	return nil
}

// armWait validates a step's Wait and creates what it needs (the task).
func (e *Engine) armWait(ctx context.Context, tx store.Tx, r *Run, step *Step, w Wait, now time.Time) (*WaitState, error) {
	kinds := 0
	ws := &WaitState{}
	if !w.Until.IsZero() {
		kinds++
		u := w.Until.UTC()
		ws.Kind, ws.Until = "timer", &u
	}
	if w.Signal != "" {
		kinds++
		ws.Kind, ws.Signal = "signal", w.Signal
	}
	if w.Task != nil {
		kinds++
		ws.Kind = "task"
		if w.Task.Title == "" || (w.Task.Role == "" && w.Task.User == "") {
			return nil, e.failRun(ctx, tx, r, fmt.Sprintf("step %s: a task needs a title and a role or a user", step.Name))
		}
	}
	if kinds != 1 {
		return nil, e.failRun(ctx, tx, r, fmt.Sprintf("step %s: a wait needs exactly one of a time, a signal or a task", step.Name))
	}
	if ws.Kind != "timer" && w.Timeout > 0 {
		u := now.Add(w.Timeout)
		ws.Until = &u
	}
	if w.Task != nil {
		id, err := e.createTask(ctx, tx, r, step.Name, w.Task, now)
		if err != nil {
			return nil, err
		}
		ws.TaskID = id
	}
	return ws, nil
}

// resolveWait completes the current wait step if what it waits for has
// happened (or its deadline passed), moving the run on. It reports whether
// it did.
func (e *Engine) resolveWait(ctx context.Context, tx store.Tx, r *Run, def *Definition, idx int, now time.Time) (bool, error) {
	w := r.Wait
	var output []byte
	switch w.Kind {
	case "signal":
		var (
			id      string
			payload []byte
		)
		err := tx.QueryRow(ctx, `SELECT id, payload FROM engine_signals WHERE run_id = $1 AND name = $2 AND consumed_at IS NULL
			ORDER BY received_at, id LIMIT 1`, r.ID, w.Signal).Scan(&id, &payload)
		switch {
		case err == nil:
			if output, err = e.open(ctx, signalAAD(r.ID, id), payload); err != nil {
				return false, err
			}
			if _, err := tx.Exec(ctx, `UPDATE engine_signals SET consumed_at = $1, consumed_by = $2 WHERE run_id = $3 AND id = $4`,
				now, fmt.Sprintf("%s#%d", r.CurrentStep, r.Visit), r.ID, id); err != nil {
				return false, err
			}
		case !errors.Is(err, store.ErrNoRows):
			return false, err
		}
	case "task":
		t, err := e.getTask(ctx, tx, w.TaskID)
		if err != nil {
			return false, err
		}
		if t.Status == TaskCompleted {
			output, _ = json.Marshal(map[string]any{"task_id": t.ID, "decision": t.Decision, "result": t.Result, "completed_by": t.CompletedBy})
		}
	case "timer":
		if !now.Before(*w.Until) {
			output, _ = json.Marshal(map[string]any{"fired_at": now})
		}
	}
	if output == nil && w.Kind != "timer" && w.Until != nil && !now.Before(*w.Until) {
		output = []byte(`{"timed_out":true}`)
		if w.Kind == "task" {
			if _, err := tx.Exec(ctx, `UPDATE engine_tasks SET status = 'cancelled', updated_at = $1, row_version = row_version + 1
				WHERE id = $2 AND status IN ('open', 'claimed')`, now, w.TaskID); err != nil {
				return false, err
			}
		}
	}
	if output == nil {
		return false, nil
	}
	started := r.UpdatedAt
	if err := e.recordExecution(ctx, tx, stepExecution{runID: r.ID, step: r.CurrentStep, visit: r.Visit, attempt: r.Attempt,
		deliveries: 1, node: e.nodeID, status: "waited", started: started, finished: now, output: output}); err != nil {
		return false, err
	}
	e.metrics.executions.WithLabelValues(def.Name, r.CurrentStep, "waited").Inc()
	return true, e.finishStep(ctx, tx, r, def, idx, output, "")
}

// Signal is an external event for a run: a payer callback, a result.
type Signal struct {
	// ID is the sender's id for the event; a second signal with the same id
	// for the same run is ignored, so senders may retry freely.
	ID string
	// Name is what a wait step waits for.
	Name string
	// Payload becomes the output of the wait step it resolves (JSON, stored
	// sealed).
	Payload any
}

// SignalResult says what happened to a signal.
type SignalResult struct {
	// Duplicate: a signal with this id was already received; nothing changed.
	Duplicate bool `json:"duplicate"`
	// Delivered: the run was waiting for it and has moved on.
	Delivered bool `json:"delivered"`
	// RunStatus is the run's state after the signal.
	RunStatus Status `json:"run_status"`
}

// SendSignal records a signal for a run. If the run waits for it, the wait
// step completes and the next step is enqueued in the same transaction;
// otherwise the signal is kept until the run reaches a wait for its name.
func (e *Engine) SendSignal(ctx context.Context, runID string, sig Signal) (SignalResult, error) {
	var res SignalResult
	err := e.db.Tx(ctx, func(tx store.Tx) error {
		var err error
		res, err = e.SendSignalTx(ctx, tx, runID, sig)
		return err
	})
	return res, err
}

// SendSignalTx is SendSignal inside the caller's transaction (a callback
// handler that also stores the callback).
func (e *Engine) SendSignalTx(ctx context.Context, tx store.Tx, runID string, sig Signal) (SignalResult, error) {
	if sig.ID == "" || len(sig.ID) > 200 {
		return SignalResult{}, errs.E(errs.Invalid, "signal id is required (at most 200 characters)").InField("id")
	}
	if !namePattern.MatchString(sig.Name) {
		return SignalResult{}, errs.E(errs.Invalid, "signal name must be lower-case letters, digits, _ . -").InField("name")
	}
	var payload []byte
	switch v := sig.Payload.(type) {
	case nil:
		payload = []byte("{}")
	case json.RawMessage:
		if !json.Valid(v) {
			return SignalResult{}, errs.E(errs.Invalid, "signal payload is not valid JSON").InField("payload")
		}
		payload = v
	default:
		b, err := json.Marshal(v)
		if err != nil {
			return SignalResult{}, errs.Wrap(errs.Invalid, err, "signal payload cannot be encoded as JSON").InField("payload")
		}
		payload = b
	}
	// The run is locked first, always, so that signal, task and step
	// transactions take locks in one order.
	r, err := e.lockRun(ctx, tx, runID)
	if err != nil {
		return SignalResult{}, err
	}
	now := e.now()
	sealedPayload, err := e.seal(signalAAD(r.ID, sig.ID), payload)
	if err != nil {
		return SignalResult{}, err
	}
	n, err := tx.Exec(ctx, `INSERT INTO engine_signals (run_id, id, name, payload, received_at) VALUES ($1, $2, $3, $4, $5)
		ON CONFLICT (run_id, id) DO NOTHING`, r.ID, sig.ID, sig.Name, sealedPayload, now)
	if err != nil {
		return SignalResult{}, fmt.Errorf("store signal: %w", err)
	}
	if n == 0 {
		e.metrics.signals.WithLabelValues("duplicate").Inc()
		return SignalResult{Duplicate: true, RunStatus: r.Status}, nil
	}
	if err := e.transition(ctx, tx, r, "signal.received", r.Status, r.CurrentStep, 0, "",
		map[string]any{"signal": sig.Name, "signal_id": sig.ID}); err != nil {
		return SignalResult{}, err
	}
	res := SignalResult{RunStatus: r.Status}
	if r.Status == StatusWaiting && r.Wait != nil && r.Wait.Kind == "signal" && r.Wait.Signal == sig.Name {
		delivered, err := e.resolveNow(ctx, tx, r)
		if err != nil {
			return SignalResult{}, err
		}
		res.Delivered, res.RunStatus = delivered, r.Status
	}
	e.metrics.signals.WithLabelValues(map[bool]string{true: "delivered", false: "stored"}[res.Delivered]).Inc()
	return res, nil
}

// resolveNow tries to complete the current wait of a locked, waiting run
// from outside a job (a signal, a task decision). A node that does not know
// the run's definition version leaves it to a job that a node which does
// will pick up.
func (e *Engine) resolveNow(ctx context.Context, tx store.Tx, r *Run) (bool, error) {
	def, ok := e.reg.Get(r.Definition, r.Version)
	if !ok {
		return false, e.q.insertTx(ctx, tx, r.args(0), time.Time{})
	}
	idx, step := def.step(r.CurrentStep)
	if step == nil || step.Wait == nil {
		return false, nil
	}
	return e.resolveWait(ctx, tx, r, def, idx, e.now())
}
