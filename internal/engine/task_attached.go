package engine

import (
	"context"
	"fmt"

	"github.com/careflow/careflow/internal/errs"
	"github.com/careflow/careflow/internal/store"
)

// AttachTaskTx opens a human task on a run that the run does not wait for:
// work a module tracks step by step itself (a clinical workflow's steps,
// added while it runs), which still wants the engine's task machinery —
// the role that may work it, claims, due dates and escalation that survive
// a restart (EscalateDueTasks), the work lists (ListTasks) and the task
// events. Completing such a task resolves nothing in the run; the module
// moves its own state in the same transaction (ClaimTaskTx,
// CompleteTaskTx) and ends the run when its work is done. Cancelling the
// run cancels its attached tasks with its own.
//
// step names the task's place in the module's work ("step:<id>"), as the
// task's step; it follows the definitions' name rule. The run is locked
// first, as by every writer.
func (e *Engine) AttachTaskTx(ctx context.Context, tx store.Tx, runID, step string, spec TaskSpec) (*Task, error) {
	if !namePattern.MatchString(step) {
		return nil, fmt.Errorf("attach task: step name %q breaks the name rule", step)
	}
	r, err := e.lockRun(ctx, tx, runID)
	if err != nil {
		return nil, err
	}
	if r.Status.Final() {
		return nil, errs.E(errs.Conflict, "workflow run is already %s", r.Status)
	}
	id, err := e.createTask(ctx, tx, r, step, &spec, e.now())
	if err != nil {
		return nil, err
	}
	return e.getTask(ctx, tx, id)
}
