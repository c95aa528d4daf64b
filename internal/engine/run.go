package engine

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/careflow/careflow/internal/errs"
	"github.com/careflow/careflow/internal/store"
)

// Status is a run's state.
type Status string

// The run states. completed, failed and cancelled are final.
const (
	StatusRunning   Status = "running"
	StatusWaiting   Status = "waiting"
	StatusPaused    Status = "paused"
	StatusCompleted Status = "completed"
	StatusFailed    Status = "failed"
	StatusCancelled Status = "cancelled"
)

// Statuses lists every run state, for metrics and validation.
var Statuses = []Status{StatusRunning, StatusWaiting, StatusPaused, StatusCompleted, StatusFailed, StatusCancelled}

// Final reports whether no further transition is possible.
func (s Status) Final() bool {
	return s == StatusCompleted || s == StatusFailed || s == StatusCancelled
}

// Valid reports whether s is a known state.
func (s Status) Valid() bool {
	for _, v := range Statuses {
		if s == v {
			return true
		}
	}
	return false
}

// WaitState is what a waiting run waits for.
type WaitState struct {
	Kind   string     `json:"kind"` // timer | signal | task
	Signal string     `json:"signal,omitempty"`
	Until  *time.Time `json:"until,omitempty"` // the timer, or the give-up deadline
	TaskID string     `json:"task_id,omitempty"`
}

// Run is a workflow run as stored.
type Run struct {
	ID          string                     `json:"id"`
	Definition  string                     `json:"definition"`
	Version     int                        `json:"definition_version"`
	Status      Status                     `json:"status"`
	CurrentStep string                     `json:"current_step,omitempty"`
	Visit       int                        `json:"visit,omitempty"`
	Attempt     int                        `json:"attempt,omitempty"`
	Wait        *WaitState                 `json:"wait,omitempty"`
	PatientID   string                     `json:"patient_id,omitempty"`
	Input       json.RawMessage            `json:"input"`
	Outputs     map[string]json.RawMessage `json:"outputs"`
	Error       string                     `json:"error,omitempty"`
	// RowVersion increases with every change; pass it back to Cancel, Pause
	// and Resume for optimistic concurrency.
	RowVersion int64      `json:"version"`
	CreatedAt  time.Time  `json:"created_at"`
	UpdatedAt  time.Time  `json:"updated_at"`
	FinishedAt *time.Time `json:"finished_at,omitempty"`

	// Internal bookkeeping.
	epoch      int
	pausedFrom Status
	visits     map[string]int
}

// runState is the JSON kept in engine_runs.state.
type runState struct {
	Outputs map[string]json.RawMessage `json:"outputs"`
	Visits  map[string]int             `json:"visits"`
}

const runColumns = `id, definition, version, status, paused_from, input, state, current_step, visit, attempt, epoch,
	wait_kind, wait_signal, wait_until, wait_task_id, patient_id, error, row_version, created_at, updated_at, finished_at`

type scanner interface{ Scan(dest ...any) error }

// sealedRun is a run row as read, its input and state still sealed.
type sealedRun struct {
	run          *Run
	input, state []byte
}

// scanRun reads a run row (runColumns) and opens its sealed input and state.
func (e *Engine) scanRun(ctx context.Context, s scanner) (*Run, error) {
	sr, err := scanSealedRun(s)
	if err != nil {
		return nil, err
	}
	return e.openRun(ctx, sr)
}

// scanSealedRun reads a run row without opening anything, so that a
// listing can close its rows before it decrypts (opening may reload the key
// ring, which needs a connection of its own).
func scanSealedRun(s scanner) (sealedRun, error) {
	var (
		r                                              Run
		pausedFrom, step, wk, ws, wt, patient, errText sql.NullString
		input, state                                   []byte
		waitUntil, finished                            *time.Time
		status                                         string
	)
	if err := s.Scan(&r.ID, &r.Definition, &r.Version, &status, &pausedFrom, &input, &state, &step, &r.Visit, &r.Attempt, &r.epoch,
		&wk, &ws, &waitUntil, &wt, &patient, &errText, &r.RowVersion, &r.CreatedAt, &r.UpdatedAt, &finished); err != nil {
		return sealedRun{}, err
	}
	r.Status = Status(status)
	r.pausedFrom = Status(pausedFrom.String)
	r.CurrentStep = step.String
	r.PatientID = patient.String
	r.Error = errText.String
	r.FinishedAt = finished
	if wk.Valid && wk.String != "" {
		r.Wait = &WaitState{Kind: wk.String, Signal: ws.String, Until: waitUntil, TaskID: wt.String}
	}
	return sealedRun{run: &r, input: input, state: state}, nil
}

// openRun opens a run's sealed input and state.
func (e *Engine) openRun(ctx context.Context, sr sealedRun) (*Run, error) {
	r := sr.run
	in, err := e.open(ctx, runAAD(r.ID, "input"), sr.input)
	if err != nil {
		return nil, err
	}
	r.Input = json.RawMessage(in)
	plain, err := e.open(ctx, runAAD(r.ID, "state"), sr.state)
	if err != nil {
		return nil, err
	}
	var st runState
	if err := json.Unmarshal(plain, &st); err != nil {
		return nil, fmt.Errorf("run %s: decode state: %w", r.ID, err)
	}
	r.Outputs = st.Outputs
	if r.Outputs == nil {
		r.Outputs = map[string]json.RawMessage{}
	}
	r.visits = st.Visits
	if r.visits == nil {
		r.visits = map[string]int{}
	}
	return r, nil
}

func (r *Run) input() *Input {
	return &Input{Now: time.Now().UTC(), RunID: r.ID, Definition: r.Definition, Version: r.Version, PatientID: r.PatientID, raw: r.Input, outputs: r.Outputs}
}

// at reports whether a job for args may act on the run now.
func (r *Run) at(a stepArgs) bool {
	return r.epoch == a.Epoch && r.CurrentStep == a.Step && r.Visit == a.Visit && r.Attempt == a.Attempt
}

func (r *Run) args(wake int) stepArgs {
	return stepArgs{RunID: r.ID, Epoch: r.epoch, Step: r.CurrentStep, Visit: r.Visit, Attempt: r.Attempt, Wake: wake}
}

// lockRun reads a run inside a write transaction, locking its row on
// PostgreSQL (SQLite's write transaction already excludes other writers).
func (e *Engine) lockRun(ctx context.Context, tx store.Tx, id string) (*Run, error) {
	r, err := e.scanRun(ctx, tx.QueryRow(ctx, `SELECT `+runColumns+` FROM engine_runs WHERE id = $1`+tx.Dialect().ForUpdate(), id))
	if errors.Is(err, store.ErrNoRows) {
		return nil, errs.E(errs.NotFound, "workflow run not found")
	}
	return r, err
}

// saveRun writes every mutable column of r (the state sealed) and bumps its
// row version.
func (e *Engine) saveRun(ctx context.Context, tx store.Tx, r *Run, now time.Time) error {
	plain, err := json.Marshal(runState{Outputs: r.Outputs, Visits: r.visits})
	if err != nil {
		return err
	}
	state, err := e.seal(runAAD(r.ID, "state"), plain)
	if err != nil {
		return err
	}
	var wk, ws, wt any
	var wu *time.Time
	if r.Wait != nil {
		wk, ws, wt, wu = r.Wait.Kind, store.NullIfEmpty(r.Wait.Signal), store.NullIfEmpty(r.Wait.TaskID), r.Wait.Until
	}
	r.RowVersion++
	r.UpdatedAt = now
	_, err = tx.Exec(ctx, `UPDATE engine_runs SET status = $1, paused_from = $2, state = $3, current_step = $4, visit = $5,
		attempt = $6, epoch = $7, wait_kind = $8, wait_signal = $9, wait_until = $10, wait_task_id = $11, error = $12,
		row_version = $13, updated_at = $14, finished_at = $15 WHERE id = $16`,
		string(r.Status), store.NullIfEmpty(string(r.pausedFrom)), state, store.NullIfEmpty(r.CurrentStep), r.Visit,
		r.Attempt, r.epoch, wk, ws, wu, wt, store.NullIfEmpty(r.Error),
		r.RowVersion, now, r.FinishedAt, r.ID)
	return err
}

// transition records one entry of the run's history and its event,
// in the caller's transaction.
func (e *Engine) transition(ctx context.Context, tx store.Tx, r *Run, event string, from Status, step string, attempt int, detail string, extra map[string]any) error {
	now := e.now()
	var att any
	if attempt > 0 {
		att = attempt
	}
	if _, err := tx.Exec(ctx, `INSERT INTO engine_transitions (run_id, event, from_status, to_status, step, attempt, detail, at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
		r.ID, event, store.NullIfEmpty(string(from)), string(r.Status), store.NullIfEmpty(step), att, store.NullIfEmpty(detail), now); err != nil {
		return fmt.Errorf("record transition: %w", err)
	}
	payload := map[string]any{
		"run_id":     r.ID,
		"definition": r.Definition,
		"version":    r.Version,
		"status":     r.Status,
	}
	if from != "" && from != r.Status {
		payload["from_status"] = from
	}
	if step != "" {
		payload["step"] = step
	}
	if attempt > 0 {
		payload["attempt"] = attempt
	}
	for k, v := range extra {
		payload[k] = v
	}
	return writeEvent(ctx, tx, "workflow."+event, r.ID, payload, now)
}

// StartOptions says what run to start.
type StartOptions struct {
	Definition string
	// Version pins a definition version; 0 takes the newest.
	Version int
	// Input is the run input, marshalled to JSON (a json.RawMessage is kept
	// as is). It is stored sealed; the definition's Validate, if any,
	// checks it first.
	Input any
	// PatientID is the opaque id of the patient the run is about, for
	// "runs of this patient" queries; optional.
	PatientID string
	// StartKey makes the start idempotent: a second start of the same
	// definition with the same key returns the first run.
	StartKey string
	// MayRead, when set, says whether the starter may read the patient's
	// records of a resource type; a record input of a type it refuses is
	// answered as a missing record (see checkRecordInputs).
	MayRead func(resourceType string) bool
}

// StartRun starts a run in its own transaction. The returned bool is false
// when StartKey matched an existing run, which is returned instead.
func (e *Engine) StartRun(ctx context.Context, opts StartOptions) (*Run, bool, error) {
	var (
		run     *Run
		created bool
	)
	err := e.db.Tx(ctx, func(tx store.Tx) error {
		var err error
		run, created, err = e.StartRunTx(ctx, tx, opts)
		return err
	})
	if err != nil {
		return nil, false, err
	}
	return run, created, nil
}

// StartRunTx starts a run inside the caller's transaction, so that a run and
// the record it is about (a claim, an encounter) are created together.
func (e *Engine) StartRunTx(ctx context.Context, tx store.Tx, opts StartOptions) (*Run, bool, error) {
	def, ok := e.reg.Get(opts.Definition, opts.Version)
	if !ok {
		if opts.Version != 0 {
			return nil, false, errs.E(errs.Invalid, "unknown workflow definition %q version %d", opts.Definition, opts.Version).InField("definition")
		}
		return nil, false, errs.E(errs.Invalid, "unknown workflow definition %q", opts.Definition).InField("definition")
	}
	var input []byte
	switch v := opts.Input.(type) {
	case nil:
		input = []byte("{}")
	case json.RawMessage:
		if !json.Valid(v) {
			return nil, false, errs.E(errs.Invalid, "input is not valid JSON").InField("input")
		}
		input = v
	default:
		b, err := json.Marshal(v)
		if err != nil {
			return nil, false, errs.Wrap(errs.Invalid, err, "input cannot be encoded as JSON").InField("input")
		}
		input = b
	}
	if def.Validate != nil {
		if err := def.Validate(&Input{Now: e.now(), Definition: def.Name, Version: def.Version, PatientID: opts.PatientID, raw: input}); err != nil {
			return nil, false, invalidInput(err)
		}
	}
	if err := e.checkRecordInputs(ctx, tx, def, input, opts.PatientID, opts.MayRead); err != nil {
		return nil, false, err
	}
	if opts.StartKey != "" {
		var id string
		err := tx.QueryRow(ctx, `SELECT id FROM engine_runs WHERE definition = $1 AND start_key = $2`, def.Name, opts.StartKey).Scan(&id)
		if err == nil {
			r, err := e.lockRun(ctx, tx, id)
			return r, false, err
		}
		if !errors.Is(err, store.ErrNoRows) {
			return nil, false, err
		}
	}
	id, err := uuid.NewV7()
	if err != nil {
		return nil, false, err
	}
	now := e.now()
	r := &Run{
		ID: id.String(), Definition: def.Name, Version: def.Version, Status: StatusRunning,
		PatientID: opts.PatientID, Input: input, Outputs: map[string]json.RawMessage{}, visits: map[string]int{},
		epoch: 1, CreatedAt: now, UpdatedAt: now,
	}
	sealedInput, err := e.seal(runAAD(r.ID, "input"), input)
	if err != nil {
		return nil, false, err
	}
	// The state is written again (sealed) by moveTo below, in this
	// transaction; the first value only has to be a valid one.
	sealedState, err := e.seal(runAAD(r.ID, "state"), []byte("{}"))
	if err != nil {
		return nil, false, err
	}
	if _, err := tx.Exec(ctx, `INSERT INTO engine_runs (id, definition, version, status, input, state, epoch, patient_id, start_key,
		row_version, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, 1, $7, $8, 0, $9, $9)`,
		r.ID, r.Definition, r.Version, string(r.Status), sealedInput, sealedState, store.NullIfEmpty(opts.PatientID), store.NullIfEmpty(opts.StartKey), now); err != nil {
		if store.IsUniqueViolation(err) {
			return nil, false, errs.Wrap(errs.Conflict, err, "a run with this start key is being created concurrently; retry")
		}
		return nil, false, fmt.Errorf("insert run: %w", err)
	}
	if err := e.transition(ctx, tx, r, "run.started", "", "", 0, "", nil); err != nil {
		return nil, false, err
	}
	if err := e.moveTo(ctx, tx, r, def, e.firstStep(def, r, 0)); err != nil {
		return nil, false, err
	}
	e.metrics.runsStarted.WithLabelValues(def.Name).Inc()
	return r, true, nil
}

// invalidInput turns a definition's Validate error into the start's
// answer: invalid, naming the input (or the field the validator named).
func invalidInput(err error) error {
	if e, ok := errs.As(err); ok && e.Kind == errs.Invalid {
		if e.Field == "" {
			return e.InField("input")
		}
		return e
	}
	return errs.Wrap(errs.Invalid, err, "%s", err.Error()).InField("input")
}

// firstStep returns the index of the first step at or after i whose
// condition holds, or -1.
func (e *Engine) firstStep(def *Definition, r *Run, i int) int {
	in := r.input()
	for ; i < len(def.Steps); i++ {
		if def.Steps[i].When == nil || def.Steps[i].When(in) {
			return i
		}
	}
	return -1
}

// moveTo enters step index i (or completes the run when i < 0), saving the
// run and enqueueing the step's job when the run is running.
func (e *Engine) moveTo(ctx context.Context, tx store.Tx, r *Run, def *Definition, i int) error {
	now := e.now()
	from := r.Status
	r.Wait = nil
	if i < 0 {
		r.Status = StatusCompleted
		r.CurrentStep, r.Visit, r.Attempt = "", 0, 0
		r.FinishedAt = &now
		if err := e.saveRun(ctx, tx, r, now); err != nil {
			return err
		}
		e.metrics.runsFinished.WithLabelValues(r.Definition, string(StatusCompleted)).Inc()
		return e.transition(ctx, tx, r, "run.completed", from, "", 0, "", nil)
	}
	name := def.Steps[i].Name
	r.visits[name]++
	r.CurrentStep, r.Visit, r.Attempt = name, r.visits[name], 1
	if r.Status == StatusWaiting {
		r.Status = StatusRunning
	}
	if err := e.saveRun(ctx, tx, r, now); err != nil {
		return err
	}
	if r.Status != StatusRunning {
		// Paused: Resume enqueues the step.
		return nil
	}
	if chainable(def, i) && take(ctx, r.ID) {
		e.metrics.chained.Inc()
		return e.runChained(ctx, tx, r, def, i)
	}
	if def.Steps[i].Do != nil {
		if handed, err := e.standbyJob(ctx, tx, r, &def.Steps[i]); err != nil || handed {
			return err
		}
	}
	return e.q.insertTx(ctx, tx, r.args(0), time.Time{})
}

// finishStep records a step's output and moves the run to the next step
// (the Goto target, or the next one whose condition holds).
func (e *Engine) finishStep(ctx context.Context, tx store.Tx, r *Run, def *Definition, idx int, output []byte, gotoStep string) error {
	step := def.Steps[idx].Name
	if output != nil {
		r.Outputs[step] = output
	}
	from := r.Status
	if err := e.transition(ctx, tx, r, "step.completed", from, step, r.Attempt, "", nil); err != nil {
		return err
	}
	next := e.firstStep(def, r, idx+1)
	if gotoStep != "" {
		gi, _ := def.step(gotoStep)
		if gi < 0 {
			return e.failRun(ctx, tx, r, fmt.Sprintf("step %s jumped to unknown step %s", step, gotoStep))
		}
		next = gi
	}
	return e.moveTo(ctx, tx, r, def, next)
}

// failRun ends the run as failed with a PHI-free reason.
func (e *Engine) failRun(ctx context.Context, tx store.Tx, r *Run, reason string) error {
	now := e.now()
	from := r.Status
	r.Status = StatusFailed
	r.Error = reason
	r.Wait = nil
	r.FinishedAt = &now
	if err := e.saveRun(ctx, tx, r, now); err != nil {
		return err
	}
	if err := cancelOpenTasks(ctx, tx, r.ID, now); err != nil {
		return err
	}
	e.metrics.runsFinished.WithLabelValues(r.Definition, string(StatusFailed)).Inc()
	return e.transition(ctx, tx, r, "run.failed", from, r.CurrentStep, r.Attempt, reason, nil)
}

func checkVersion(r *Run, want int64) error {
	if want != 0 && r.RowVersion != want {
		return errs.E(errs.PreconditionFailed, "workflow run changed (version %d, expected %d)", r.RowVersion, want)
	}
	return nil
}

// Cancel ends a run that is not final; open tasks are cancelled and pending
// jobs become stale. expectVersion, when not 0, must match RowVersion.
func (e *Engine) Cancel(ctx context.Context, runID string, expectVersion int64, reason string) (*Run, error) {
	var out *Run
	err := e.db.Tx(ctx, func(tx store.Tx) error {
		var err error
		out, err = e.CancelTx(ctx, tx, runID, expectVersion, reason)
		return err
	})
	return out, err
}

// CancelTx is Cancel in the caller's transaction: a module cancelling its
// own record of the work (a clinical workflow) with the run that keeps its
// timers and tasks.
func (e *Engine) CancelTx(ctx context.Context, tx store.Tx, runID string, expectVersion int64, reason string) (*Run, error) {
	r, err := e.lockRun(ctx, tx, runID)
	if err != nil {
		return nil, err
	}
	if err := checkVersion(r, expectVersion); err != nil {
		return nil, err
	}
	if r.Status.Final() {
		return nil, errs.E(errs.Conflict, "workflow run is already %s", r.Status)
	}
	now := e.now()
	from := r.Status
	r.Status = StatusCancelled
	r.Error = reason
	r.Wait = nil
	r.epoch++
	r.FinishedAt = &now
	if err := e.saveRun(ctx, tx, r, now); err != nil {
		return nil, err
	}
	if err := cancelOpenTasks(ctx, tx, r.ID, now); err != nil {
		return nil, err
	}
	e.metrics.runsFinished.WithLabelValues(r.Definition, string(StatusCancelled)).Inc()
	return r, e.transition(ctx, tx, r, "run.cancelled", from, r.CurrentStep, 0, reason, nil)
}

// Pause stops a running or waiting run from advancing; a step in flight
// finishes but its result is discarded (it runs again on Resume, with the
// same idempotency key). Signals and task decisions that arrive while
// paused are kept and take effect on Resume.
func (e *Engine) Pause(ctx context.Context, runID string, expectVersion int64) (*Run, error) {
	var out *Run
	err := e.db.Tx(ctx, func(tx store.Tx) error {
		r, err := e.lockRun(ctx, tx, runID)
		if err != nil {
			return err
		}
		if err := checkVersion(r, expectVersion); err != nil {
			return err
		}
		if r.Status != StatusRunning && r.Status != StatusWaiting {
			return errs.E(errs.Conflict, "only a running or waiting run can be paused; this one is %s", r.Status)
		}
		from := r.Status
		r.pausedFrom = r.Status
		r.Status = StatusPaused
		r.epoch++
		if err := e.saveRun(ctx, tx, r, e.now()); err != nil {
			return err
		}
		out = r
		return e.transition(ctx, tx, r, "run.paused", from, r.CurrentStep, 0, "", nil)
	})
	return out, err
}

// Resume continues a paused run where it stopped.
func (e *Engine) Resume(ctx context.Context, runID string, expectVersion int64) (*Run, error) {
	var out *Run
	err := e.db.Tx(ctx, func(tx store.Tx) error {
		r, err := e.lockRun(ctx, tx, runID)
		if err != nil {
			return err
		}
		if err := checkVersion(r, expectVersion); err != nil {
			return err
		}
		if r.Status != StatusPaused {
			return errs.E(errs.Conflict, "only a paused run can be resumed; this one is %s", r.Status)
		}
		back := r.pausedFrom
		if back == "" {
			back = StatusRunning
		}
		r.Status = back
		r.pausedFrom = ""
		r.epoch++
		out = r
		if r.CurrentStep == "" {
			// Paused just as its last step finished: the run is done.
			def, ok := e.reg.Get(r.Definition, r.Version)
			if !ok {
				return errs.E(errs.Unavailable, "definition %s v%d is not known to this node", r.Definition, r.Version)
			}
			return e.moveTo(ctx, tx, r, def, -1)
		}
		if err := e.saveRun(ctx, tx, r, e.now()); err != nil {
			return err
		}
		if err := e.transition(ctx, tx, r, "run.resumed", StatusPaused, r.CurrentStep, 0, "", nil); err != nil {
			return err
		}
		// The step job, or for a wait the job that re-checks it at once
		// (a signal may have come while paused); it re-arms its timer.
		return e.q.insertTx(ctx, tx, r.args(0), time.Time{})
	})
	return out, err
}

// Retry sets a run moving again. A failed run goes back to the step that
// failed, as a new visit (a new idempotency key: the failed call was
// answered, so a new request is wanted) with fresh attempts. A running or
// waiting run (one that "stuck" queries found, e.g. after its job was
// discarded by an outage) gets its current step delivered again, as the same
// visit and attempt, so an effect in doubt keeps its key.
func (e *Engine) Retry(ctx context.Context, runID string, expectVersion int64) (*Run, error) {
	var out *Run
	err := e.db.Tx(ctx, func(tx store.Tx) error {
		r, err := e.lockRun(ctx, tx, runID)
		if err != nil {
			return err
		}
		if err := checkVersion(r, expectVersion); err != nil {
			return err
		}
		from := r.Status
		switch r.Status {
		case StatusFailed:
			if r.CurrentStep == "" {
				return errs.E(errs.Conflict, "the failed run has no step to retry")
			}
			r.visits[r.CurrentStep]++
			r.Visit, r.Attempt = r.visits[r.CurrentStep], 1
			r.Status, r.Error, r.FinishedAt, r.Wait = StatusRunning, "", nil, nil
		case StatusRunning, StatusWaiting:
		default:
			return errs.E(errs.Conflict, "a %s run cannot be retried", r.Status)
		}
		r.epoch++
		if err := e.saveRun(ctx, tx, r, e.now()); err != nil {
			return err
		}
		if err := e.transition(ctx, tx, r, "run.retried", from, r.CurrentStep, r.Attempt, "", nil); err != nil {
			return err
		}
		out = r
		return e.q.insertTx(ctx, tx, r.args(0), time.Time{})
	})
	return out, err
}
