package auth

import (
	"context"

	"github.com/careflow/careflow/internal/errs"
)

// TaskStaff answers, from the local accounts, the workflow engine's
// question about a person a task is handed to (engine.Staff): the role the
// user holds now. The engine is not imported here; the method matches the
// interface it declares.
type TaskStaff struct {
	Accounts *Accounts
}

// ActiveRole returns the role of the enabled account userID; ok is false
// for an id no account has and for a disabled account alike.
func (s TaskStaff) ActiveRole(ctx context.Context, userID string) (role string, ok bool, err error) {
	u, err := s.Accounts.UserByID(ctx, userID)
	if errs.Is(err, errs.NotFound) {
		return "", false, nil
	}
	if err != nil {
		return "", false, err
	}
	if u.Disabled {
		return "", false, nil
	}
	return string(u.Role), true, nil
}
