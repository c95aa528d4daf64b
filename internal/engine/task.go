package engine

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/careflow/careflow/internal/errs"
	"github.com/careflow/careflow/internal/store"
)

// TaskStatus is a human task's state.
type TaskStatus string

// Task states; completed and cancelled are final.
const (
	TaskOpen      TaskStatus = "open"
	TaskClaimed   TaskStatus = "claimed"
	TaskCompleted TaskStatus = "completed"
	TaskCancelled TaskStatus = "cancelled"
)

// Task is a decision a person must make for a run to go on.
type Task struct {
	ID          string          `json:"id"`
	RunID       string          `json:"run_id"`
	Step        string          `json:"step"`
	Visit       int             `json:"visit"`
	Title       string          `json:"title"`
	Role        string          `json:"role,omitempty"`
	Assignee    string          `json:"assignee,omitempty"`
	Status      TaskStatus      `json:"status"`
	Decisions   []string        `json:"decisions,omitempty"`
	Decision    string          `json:"decision,omitempty"`
	Result      json.RawMessage `json:"result,omitempty"`
	CompletedBy string          `json:"completed_by,omitempty"`
	DueAt       *time.Time      `json:"due_at,omitempty"`
	EscalateAt  *time.Time      `json:"escalate_at,omitempty"`
	EscalateTo  string          `json:"escalate_to,omitempty"`
	EscalatedAt *time.Time      `json:"escalated_at,omitempty"`
	RowVersion  int64           `json:"version"`
	CreatedAt   time.Time       `json:"created_at"`
	UpdatedAt   time.Time       `json:"updated_at"`
	CompletedAt *time.Time      `json:"completed_at,omitempty"`
}

// Actor is the person acting on a task: their user id and the roles they
// hold now, as authenticated by the caller (for a careflow token, the
// session check ends a token whose account's role changed within seconds).
type Actor struct {
	User  string
	Roles []string
}

// mayWork reports whether the actor is someone the task is meant for: a
// task with a role is worked only by someone who holds that role now, and
// a task with an assignee only by that person. Both hold at once: being
// handed (or having claimed) a task does not stand in for the role, so a
// user whose role changed loses the tasks they held under the old one, and
// a reassignment cannot make a task someone's who lacks its role.
func (t *Task) mayWork(a Actor) bool {
	if t.Role != "" && !slices.Contains(a.Roles, t.Role) {
		return false
	}
	return t.Assignee == "" || t.Assignee == a.User
}

const taskColumns = `id, run_id, step, visit, title, role, assignee, status, decisions, decision, result, completed_by,
	due_at, escalate_at, escalate_to, escalated_at, row_version, created_at, updated_at, completed_at`

// sealedTask is a task row as read, its decision and result still sealed.
type sealedTask struct {
	task             *Task
	decision, result []byte
}

func scanSealedTask(s scanner) (sealedTask, error) {
	var (
		t                              Task
		role, assignee, by, escalateTo sql.NullString
		decision, result               []byte
		status, decisions              string
	)
	if err := s.Scan(&t.ID, &t.RunID, &t.Step, &t.Visit, &t.Title, &role, &assignee, &status, &decisions, &decision, &result, &by,
		&t.DueAt, &t.EscalateAt, &escalateTo, &t.EscalatedAt, &t.RowVersion, &t.CreatedAt, &t.UpdatedAt, &t.CompletedAt); err != nil {
		return sealedTask{}, err
	}
	t.Role, t.Assignee, t.Status, t.CompletedBy, t.EscalateTo = role.String, assignee.String, TaskStatus(status), by.String, escalateTo.String
	if err := json.Unmarshal([]byte(decisions), &t.Decisions); err != nil {
		return sealedTask{}, fmt.Errorf("task %s: decode decisions: %w", t.ID, err)
	}
	return sealedTask{task: &t, decision: decision, result: result}, nil
}

// openTask opens a task's sealed decision and result.
func (e *Engine) openTask(ctx context.Context, st sealedTask) (*Task, error) {
	t := st.task
	d, err := e.open(ctx, taskAAD(t.ID, "decision"), st.decision)
	if err != nil {
		return nil, err
	}
	t.Decision = string(d)
	res, err := e.open(ctx, taskAAD(t.ID, "result"), st.result)
	if err != nil {
		return nil, err
	}
	if res != nil {
		t.Result = json.RawMessage(res)
	}
	return t, nil
}

func (e *Engine) scanTask(ctx context.Context, s scanner) (*Task, error) {
	st, err := scanSealedTask(s)
	if err != nil {
		return nil, err
	}
	return e.openTask(ctx, st)
}

// sealTaskPayload seals a task's decision and result for its row (NULL
// when absent).
func (e *Engine) sealTaskPayload(t *Task) (decision, result any, err error) {
	if t.Decision != "" {
		if decision, err = e.seal(taskAAD(t.ID, "decision"), []byte(t.Decision)); err != nil {
			return nil, nil, err
		}
	}
	if result, err = e.sealNullable(taskAAD(t.ID, "result"), t.Result); err != nil {
		return nil, nil, err
	}
	return decision, result, nil
}

func (e *Engine) getTask(ctx context.Context, q store.Querier, id string) (*Task, error) {
	t, err := e.scanTask(ctx, q.QueryRow(ctx, `SELECT `+taskColumns+` FROM engine_tasks WHERE id = $1`, id))
	if errors.Is(err, store.ErrNoRows) {
		return nil, errs.E(errs.NotFound, "task not found")
	}
	return t, err
}

func (e *Engine) createTask(ctx context.Context, tx store.Tx, r *Run, step string, spec *TaskSpec, now time.Time) (string, error) {
	if spec.Title == "" || (spec.Role == "" && spec.User == "") {
		return "", fmt.Errorf("step %s: a task needs a title and a role or a user", step)
	}
	id, err := uuid.NewV7()
	if err != nil {
		return "", err
	}
	decisions, _ := json.Marshal(spec.Decisions)
	if spec.Decisions == nil {
		decisions = []byte("[]")
	}
	var due, escalate *time.Time
	if spec.Due > 0 {
		d := now.Add(spec.Due)
		due = &d
	}
	if spec.EscalateAfter > 0 && spec.EscalateTo != "" {
		x := now.Add(spec.EscalateAfter)
		escalate = &x
	}
	if _, err := tx.Exec(ctx, `INSERT INTO engine_tasks (id, run_id, step, visit, title, role, assignee, status, decisions,
		due_at, escalate_at, escalate_to, row_version, created_at, updated_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, 'open', $8, $9, $10, $11, 1, $12, $12)`,
		id.String(), r.ID, step, r.Visit, spec.Title, store.NullIfEmpty(spec.Role), store.NullIfEmpty(spec.User), string(decisions),
		due, escalate, store.NullIfEmpty(spec.EscalateTo), now); err != nil {
		return "", fmt.Errorf("create task: %w", err)
	}
	extra := map[string]any{"task_id": id.String(), "step": step}
	if spec.Role != "" {
		extra["role"] = spec.Role
	}
	if err := writeEvent(ctx, tx, "workflow.task.created", r.ID, taskEventPayload(r, id.String(), extra), now); err != nil {
		return "", err
	}
	return id.String(), nil
}

func taskEventPayload(r *Run, taskID string, extra map[string]any) map[string]any {
	p := map[string]any{"run_id": r.ID, "definition": r.Definition, "version": r.Version, "task_id": taskID, "step": r.CurrentStep}
	for k, v := range extra {
		p[k] = v
	}
	return p
}

func cancelOpenTasks(ctx context.Context, tx store.Tx, runID string, now time.Time) error {
	_, err := tx.Exec(ctx, `UPDATE engine_tasks SET status = 'cancelled', updated_at = $1, row_version = row_version + 1
		WHERE run_id = $2 AND status IN ('open', 'claimed')`, now, runID)
	return err
}

// GetTask returns a task.
func (e *Engine) GetTask(ctx context.Context, id string) (*Task, error) {
	return e.getTask(ctx, e.db.Reader(), id)
}

// taskOp runs fn on a task with its run locked, in a transaction of its
// own (taskOpTx).
func (e *Engine) taskOp(ctx context.Context, id string, expectVersion int64, fn func(tx store.Tx, r *Run, t *Task, now time.Time) error) (*Task, error) {
	var out *Task
	err := e.db.Tx(ctx, func(tx store.Tx) error {
		var err error
		out, err = e.taskOpTx(ctx, tx, id, expectVersion, fn)
		return err
	})
	return out, err
}

// taskOpTx runs fn on a task with its run locked (run first, then task: the
// same order as every other writer), in the caller's transaction.
func (e *Engine) taskOpTx(ctx context.Context, tx store.Tx, id string, expectVersion int64, fn func(tx store.Tx, r *Run, t *Task, now time.Time) error) (*Task, error) {
	var runID string
	if err := tx.QueryRow(ctx, `SELECT run_id FROM engine_tasks WHERE id = $1`, id).Scan(&runID); err != nil {
		if errors.Is(err, store.ErrNoRows) {
			return nil, errs.E(errs.NotFound, "task not found")
		}
		return nil, err
	}
	r, err := e.lockRun(ctx, tx, runID)
	if err != nil {
		return nil, err
	}
	t, err := e.scanTask(ctx, tx.QueryRow(ctx, `SELECT `+taskColumns+` FROM engine_tasks WHERE id = $1`+tx.Dialect().ForUpdate(), id))
	if err != nil {
		return nil, err
	}
	if expectVersion != 0 && t.RowVersion != expectVersion {
		return nil, errs.E(errs.PreconditionFailed, "task changed (version %d, expected %d)", t.RowVersion, expectVersion)
	}
	if t.Status == TaskCompleted || t.Status == TaskCancelled {
		return nil, errs.E(errs.Conflict, "task is already %s", t.Status)
	}
	now := e.now()
	if err := fn(tx, r, t, now); err != nil {
		return nil, err
	}
	t.RowVersion++
	t.UpdatedAt = now
	decision, result, err := e.sealTaskPayload(t)
	if err != nil {
		return nil, err
	}
	if _, err := tx.Exec(ctx, `UPDATE engine_tasks SET role = $1, assignee = $2, status = $3, decision = $4, result = $5,
		completed_by = $6, escalated_at = $7, row_version = $8, updated_at = $9, completed_at = $10 WHERE id = $11`,
		store.NullIfEmpty(t.Role), store.NullIfEmpty(t.Assignee), string(t.Status), decision, result,
		store.NullIfEmpty(t.CompletedBy), t.EscalatedAt, t.RowVersion, now, t.CompletedAt, t.ID); err != nil {
		return nil, err
	}
	return t, nil
}

func (e *Engine) taskEvent(ctx context.Context, tx store.Tx, r *Run, t *Task, event string, extra map[string]any) error {
	if extra == nil {
		extra = map[string]any{}
	}
	extra["task_id"] = t.ID
	return e.transition(ctx, tx, r, event, r.Status, t.Step, 0, "", extra)
}

// errNotYourTask refuses an actor the task is not meant for (mayWork).
func errNotYourTask() error {
	return errs.E(errs.Forbidden, "task is assigned to another role or user")
}

// ClaimTask assigns an open task to the actor, who must hold its role (when
// it has one) and be its assignee (when it has one).
func (e *Engine) ClaimTask(ctx context.Context, id string, actor Actor, expectVersion int64) (*Task, error) {
	var out *Task
	err := e.db.Tx(ctx, func(tx store.Tx) error {
		var err error
		out, err = e.ClaimTaskTx(ctx, tx, id, actor, expectVersion)
		return err
	})
	return out, err
}

// ClaimTaskTx is ClaimTask in the caller's transaction: a module that keeps
// its own state beside a task (a clinical step) moves both in one commit.
func (e *Engine) ClaimTaskTx(ctx context.Context, tx store.Tx, id string, actor Actor, expectVersion int64) (*Task, error) {
	return e.taskOpTx(ctx, tx, id, expectVersion, func(tx store.Tx, r *Run, t *Task, now time.Time) error {
		if actor.User == "" {
			return errs.E(errs.Invalid, "a user is required to claim a task").InField("user")
		}
		if t.Role != "" && !slices.Contains(actor.Roles, t.Role) {
			return errNotYourTask()
		}
		if t.Status == TaskClaimed {
			if t.Assignee == actor.User {
				return nil
			}
			return errs.E(errs.Conflict, "task is claimed by someone else")
		}
		if !t.mayWork(actor) {
			return errNotYourTask()
		}
		t.Status, t.Assignee = TaskClaimed, actor.User
		return e.taskEvent(ctx, tx, r, t, "task.claimed", nil)
	})
}

// CompleteTask records the actor's decision (one of the task's decisions,
// when it lists any) and an optional result (JSON); both are stored sealed.
// A run waiting for the task moves on in the same transaction. The actor
// must have claimed the task, or be eligible to (the claim is then
// implicit), and must hold the task's role now, claim or not.
func (e *Engine) CompleteTask(ctx context.Context, id string, actor Actor, decision string, result any, expectVersion int64) (*Task, error) {
	var out *Task
	err := e.db.Tx(ctx, func(tx store.Tx) error {
		var err error
		out, err = e.CompleteTaskTx(ctx, tx, id, actor, decision, result, expectVersion)
		return err
	})
	return out, err
}

// CompleteTaskTx is CompleteTask in the caller's transaction (see
// ClaimTaskTx).
func (e *Engine) CompleteTaskTx(ctx context.Context, tx store.Tx, id string, actor Actor, decision string, result any, expectVersion int64) (*Task, error) {
	var resultJSON []byte
	if result != nil {
		switch v := result.(type) {
		case json.RawMessage:
			if !json.Valid(v) {
				return nil, errs.E(errs.Invalid, "result is not valid JSON").InField("result")
			}
			resultJSON = v
		default:
			b, err := json.Marshal(v)
			if err != nil {
				return nil, errs.Wrap(errs.Invalid, err, "result cannot be encoded as JSON").InField("result")
			}
			resultJSON = b
		}
	}
	return e.taskOpTx(ctx, tx, id, expectVersion, func(tx store.Tx, r *Run, t *Task, now time.Time) error {
		if actor.User == "" {
			return errs.E(errs.Invalid, "a user is required to complete a task").InField("user")
		}
		if t.Role != "" && !slices.Contains(actor.Roles, t.Role) {
			return errNotYourTask()
		}
		if decision == "" {
			return errs.E(errs.Invalid, "a decision is required").InField("decision")
		}
		if len(t.Decisions) > 0 && !slices.Contains(t.Decisions, decision) {
			return errs.E(errs.Invalid, "decision must be one of %s", strings.Join(t.Decisions, ", ")).InField("decision")
		}
		switch {
		case t.Status == TaskClaimed && t.Assignee != actor.User:
			return errs.E(errs.Conflict, "task is claimed by someone else")
		case !t.mayWork(actor):
			return errNotYourTask()
		}
		t.Status, t.Assignee, t.Decision, t.Result, t.CompletedBy, t.CompletedAt = TaskCompleted, actor.User, decision, resultJSON, actor.User, &now
		// The event names the decision only when the definition lists the
		// decisions: then it is one of the definition's codes. A free
		// decision is the person's own words and stays in the sealed row.
		extra := map[string]any{}
		if len(t.Decisions) > 0 {
			extra["decision"] = decision
		}
		if err := e.taskEvent(ctx, tx, r, t, "task.completed", extra); err != nil {
			return err
		}
		// The task row is written by taskOp after fn; write it now so that
		// resolving the wait below reads the completed task.
		sealedDecision, sealedResult, err := e.sealTaskPayload(t)
		if err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `UPDATE engine_tasks SET status = 'completed', assignee = $1, decision = $2, result = $3,
			completed_by = $1, completed_at = $4 WHERE id = $5`, actor.User, sealedDecision, sealedResult, now, t.ID); err != nil {
			return err
		}
		if r.Status == StatusWaiting && r.Wait != nil && r.Wait.Kind == "task" && r.Wait.TaskID == t.ID {
			_, err := e.resolveNow(ctx, tx, r)
			return err
		}
		return nil
	})
}

// EscalateDueTasks moves every unfinished task whose escalation time has
// passed to its escalation role, releasing any claim. Every node runs it
// periodically; each task is escalated once.
func (e *Engine) EscalateDueTasks(ctx context.Context) (int, error) {
	now := e.now()
	rows, err := e.db.Reader().Query(ctx, `SELECT id FROM engine_tasks WHERE status IN ('open', 'claimed')
		AND escalate_at <= $1 AND escalated_at IS NULL ORDER BY escalate_at LIMIT 500`, now)
	if err != nil {
		return 0, err
	}
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			rows.Close()
			return 0, err
		}
		ids = append(ids, id)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, err
	}
	n := 0
	for _, id := range ids {
		_, err := e.taskOp(ctx, id, 0, func(tx store.Tx, r *Run, t *Task, now time.Time) error {
			if t.EscalatedAt != nil {
				return errAlreadyEscalated
			}
			t.EscalatedAt = &now
			t.Role, t.Assignee, t.Status = t.EscalateTo, "", TaskOpen
			return e.taskEvent(ctx, tx, r, t, "task.escalated", map[string]any{"role": t.EscalateTo})
		})
		switch {
		case err == nil:
			n++
		case errors.Is(err, errAlreadyEscalated), errs.Is(err, errs.Conflict), errs.Is(err, errs.NotFound):
			// Another node got there first, or the task was finished.
		default:
			return n, err
		}
	}
	return n, nil
}

var errAlreadyEscalated = errors.New("task already escalated")
