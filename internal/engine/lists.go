package engine

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/careflow/careflow/internal/errs"
	"github.com/careflow/careflow/internal/store"
)

// Listing runs and tasks for a caller is confined to the caller's reach in
// the query, as a FHIR search is (record.Reacher): a run belongs to its
// patient (patient_id, NULL for a run of no patient) and a task to its
// run's, joined in the same statement. A page then holds only what the
// caller may see, so it is full whenever that many such records exist, and
// whether a next page exists says nothing about records out of reach. The
// caller still decides every listed record again on the way out.

// DefaultPageSize and MaxPageSize are the one page-size rule of run and
// task listings: the API refuses a limit above MaxPageSize (naming it), and
// a listing asked for none or more gets DefaultPageSize or MaxPageSize.
const (
	DefaultPageSize = 100
	MaxPageSize     = 500
)

func pageLimit(n int) int {
	switch {
	case n <= 0:
		return DefaultPageSize
	case n > MaxPageSize:
		return MaxPageSize
	}
	return n
}

// Reach is the part of the runs (and their tasks) a caller may see, by the
// run's patient: store.Reach, into which auth.Reach converts.
type Reach = store.Reach

// RunFilter selects runs; zero fields do not filter.
type RunFilter struct {
	Status     Status
	Definition string
	PatientID  string
	// StuckFor selects runs that should be moving but have not for this
	// long: running with no transition, or waiting on a timer or deadline
	// that passed this long ago. Runs waiting for a person or a payer
	// without a deadline are not stuck, they are waiting.
	StuckFor time.Duration
	// Reach confines the runs to those of the patients a caller may see;
	// nil lists every run (the engine's own and an operator's listings).
	Reach *Reach
	// Limit caps the page (DefaultPageSize, at most MaxPageSize); After is
	// the last id of the previous page (ids are time-ordered).
	Limit int
	After string
}

// ListRuns lists runs in creation order.
func (e *Engine) ListRuns(ctx context.Context, f RunFilter) ([]*Run, error) {
	var (
		where []string
		args  []any
	)
	arg := func(v any) string {
		args = append(args, v)
		return fmt.Sprintf("$%d", len(args))
	}
	if f.Status != "" {
		if !f.Status.Valid() {
			return nil, errs.E(errs.Invalid, "unknown run status %q", f.Status).InField("status")
		}
		where = append(where, "status = "+arg(string(f.Status)))
	}
	if f.Definition != "" {
		where = append(where, "definition = "+arg(f.Definition))
	}
	if f.PatientID != "" {
		where = append(where, "patient_id = "+arg(f.PatientID))
	}
	if f.StuckFor > 0 {
		cutoff := arg(e.now().Add(-f.StuckFor))
		where = append(where, "((status = 'running' AND updated_at < "+cutoff+") OR (status = 'waiting' AND wait_until < "+cutoff+"))")
	}
	if f.After != "" {
		where = append(where, "id > "+arg(f.After))
	}
	d := e.db.Dialect()
	lists := false
	if f.Reach != nil {
		n := len(args)
		if cond := d.ReachCondition("patient_id", *f.Reach, &args); cond != "" {
			where = append(where, cond)
		}
		lists = len(args) > n
	}
	q := `SELECT ` + runColumns + ` FROM engine_runs`
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	q += fmt.Sprintf(" ORDER BY id LIMIT %d", pageLimit(f.Limit))
	if lists {
		args = d.PlanEach(args)
	}
	rows, err := e.db.Reader().Query(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	var page []sealedRun
	for rows.Next() {
		sr, err := scanSealedRun(rows)
		if err != nil {
			rows.Close()
			return nil, err
		}
		page = append(page, sr)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	out := make([]*Run, 0, len(page))
	for _, sr := range page {
		r, err := e.openRun(ctx, sr)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, nil
}

// TaskFilter selects tasks; zero fields do not filter.
type TaskFilter struct {
	Status   TaskStatus
	Role     string
	Assignee string
	RunID    string
	// Overdue selects unfinished tasks past their due date.
	Overdue bool
	// Reach confines the tasks to those whose run's patient a caller may
	// see; nil lists every task.
	Reach *Reach
	// Limit caps the page (DefaultPageSize, at most MaxPageSize); After is
	// the last id of the previous page.
	Limit int
	After string
}

// ListedTask is a listed task with the patient of its run ("" for a run of
// no patient), read in the same query: the patient a task is decided
// against.
type ListedTask struct {
	*Task
	PatientID string
}

// listedTaskColumns are taskColumns of the task table aliased t.
var listedTaskColumns = func() string {
	cols := strings.Split(taskColumns, ",")
	for i, c := range cols {
		cols[i] = "t." + strings.TrimSpace(c)
	}
	return strings.Join(cols, ", ")
}()

// withPatient scans a task row followed by its run's patient.
type withPatient struct {
	s       scanner
	patient **string
}

func (w withPatient) Scan(dest ...any) error { return w.s.Scan(append(dest, w.patient)...) }

// ListTasks lists tasks in creation order (ids are time-ordered), each
// with its run's patient, joined in the query.
func (e *Engine) ListTasks(ctx context.Context, f TaskFilter) ([]ListedTask, error) {
	var (
		where []string
		args  []any
	)
	add := func(cond string, v any) {
		args = append(args, v)
		where = append(where, fmt.Sprintf(cond, len(args)))
	}
	if f.Status != "" {
		add("t.status = $%d", string(f.Status))
	}
	if f.Role != "" {
		add("t.role = $%d", f.Role)
	}
	if f.Assignee != "" {
		add("t.assignee = $%d", f.Assignee)
	}
	if f.RunID != "" {
		add("t.run_id = $%d", f.RunID)
	}
	if f.Overdue {
		add("t.status IN ('open', 'claimed') AND t.due_at < $%d", e.now())
	}
	if f.After != "" {
		add("t.id > $%d", f.After)
	}
	d := e.db.Dialect()
	lists := false
	if f.Reach != nil {
		n := len(args)
		if cond := d.ReachCondition("r.patient_id", *f.Reach, &args); cond != "" {
			where = append(where, cond)
		}
		lists = len(args) > n
	}
	q := `SELECT ` + listedTaskColumns + `, r.patient_id FROM engine_tasks t JOIN engine_runs r ON r.id = t.run_id`
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	q += fmt.Sprintf(" ORDER BY t.id LIMIT %d", pageLimit(f.Limit))
	if lists {
		args = d.PlanEach(args)
	}
	rows, err := e.db.Reader().Query(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	var (
		page     []sealedTask
		patients []string
	)
	for rows.Next() {
		var patient *string
		st, err := scanSealedTask(withPatient{rows, &patient})
		if err != nil {
			rows.Close()
			return nil, err
		}
		page = append(page, st)
		if patient != nil {
			patients = append(patients, *patient)
		} else {
			patients = append(patients, "")
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	// Opened after the rows are closed (see scanSealedRun).
	out := make([]ListedTask, 0, len(page))
	for i, st := range page {
		t, err := e.openTask(ctx, st)
		if err != nil {
			return nil, err
		}
		out = append(out, ListedTask{Task: t, PatientID: patients[i]})
	}
	return out, nil
}
