package engine

import (
	"context"
	"time"

	"github.com/careflow/careflow/internal/errs"
	"github.com/careflow/careflow/internal/store"
)

// Staff tells the engine who the people are that tasks may be handed to.
// The engine asks it for the role a user holds now when a task is
// reassigned to that user; it is declared here and satisfied by the
// accounts (wired in cmd/careflow).
type Staff interface {
	// ActiveRole returns the role userID holds now; ok is false when no
	// enabled account has that id. The engine gives every such "no" the
	// same answer, so a reassignment is no way to learn which ids exist.
	ActiveRole(ctx context.Context, userID string) (role string, ok bool, err error)
}

// errIneligibleUser is the one answer for a reassignment to a user who may
// not take the task: no such account, a disabled one, or one without the
// task's role. Telling them apart would make reassignment an oracle of
// which account ids exist.
func errIneligibleUser() error {
	return errs.E(errs.Unprocessable, "must be the id of an enabled account that holds the task's role").InField("user")
}

// ReassignTask moves an unfinished task to another user and/or role,
// releasing any claim. It changes who decides, never what it takes to
// decide:
//
//   - A user it is handed to must hold the task's role now (an enabled
//     account, asked of Config.Staff); mayWork checks the role again when
//     they claim or complete, so a later change of role still counts.
//   - The task's role is its definition's. It may move only to the
//     definition's escalation role (escalating by hand, early); any other
//     role is refused, or a manager could hand a physician's decision to a
//     role the definition never trusted with it, their own included.
func (e *Engine) ReassignTask(ctx context.Context, id string, role, user string, expectVersion int64) (*Task, error) {
	if role == "" && user == "" {
		return nil, errs.E(errs.Invalid, "a role or a user is required").InField("role")
	}
	// The user's role is looked up before the write transaction: it is a
	// read of another table, and the comparison under the task's lock below
	// is what decides.
	var (
		userRole string
		userOK   bool
	)
	if user != "" {
		if e.staff == nil {
			return nil, errs.E(errs.Unavailable, "this server cannot look up accounts, so a task cannot be reassigned to a user")
		}
		var err error
		if userRole, userOK, err = e.staff.ActiveRole(ctx, user); err != nil {
			return nil, errs.Wrap(errs.Unavailable, err, "the account directory is unavailable; try again")
		}
	}
	return e.taskOp(ctx, id, expectVersion, func(tx store.Tx, r *Run, t *Task, now time.Time) error {
		if role != "" && role != t.Role {
			if role != t.EscalateTo {
				return errs.E(errs.Unprocessable, "a task's role is set by its workflow definition; it may only be moved to the task's escalation role").InField("role")
			}
			t.Role = role
		}
		if user != "" && (!userOK || (t.Role != "" && userRole != t.Role)) {
			return errIneligibleUser()
		}
		t.Assignee = user
		t.Status = TaskOpen
		extra := map[string]any{}
		if role != "" {
			extra["role"] = role
		}
		return e.taskEvent(ctx, tx, r, t, "task.reassigned", extra)
	})
}
