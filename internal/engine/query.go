package engine

import (
	"context"
	"encoding/json"
	"time"

	"github.com/careflow/careflow/internal/errs"
	"github.com/careflow/careflow/internal/store"
)

// ControlledBy is the Definition.ControlledBy of a run's definition
// version: the module's API that drives it, or "".
func (e *Engine) ControlledBy(r *Run) string {
	if def, ok := e.reg.Get(r.Definition, r.Version); ok {
		return def.ControlledBy
	}
	return ""
}

// GetRun returns a run.
func (e *Engine) GetRun(ctx context.Context, id string) (*Run, error) {
	r, err := e.scanRun(ctx, e.db.Reader().QueryRow(ctx, `SELECT `+runColumns+` FROM engine_runs WHERE id = $1`, id))
	if err == store.ErrNoRows {
		return nil, errs.E(errs.NotFound, "workflow run not found")
	}
	return r, err
}

// CountRuns counts runs by status.
func (e *Engine) CountRuns(ctx context.Context) (map[Status]int64, error) {
	rows, err := e.db.Reader().Query(ctx, `SELECT status, count(*) FROM engine_runs GROUP BY status`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[Status]int64{}
	for rows.Next() {
		var s string
		var n int64
		if err := rows.Scan(&s, &n); err != nil {
			return nil, err
		}
		out[Status(s)] = n
	}
	return out, rows.Err()
}

// Transition is one entry of a run's history.
type Transition struct {
	ID         int64     `json:"id"`
	Event      string    `json:"event"`
	FromStatus Status    `json:"from_status,omitempty"`
	ToStatus   Status    `json:"to_status"`
	Step       string    `json:"step,omitempty"`
	Attempt    int       `json:"attempt,omitempty"`
	Detail     string    `json:"detail,omitempty"`
	At         time.Time `json:"at"`
}

// History returns every transition of a run, oldest first.
func (e *Engine) History(ctx context.Context, runID string) ([]Transition, error) {
	rows, err := e.db.Reader().Query(ctx, `SELECT id, event, from_status, to_status, step, attempt, detail, at
		FROM engine_transitions WHERE run_id = $1 ORDER BY id`, runID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Transition
	for rows.Next() {
		var (
			t                  Transition
			from, step, detail *string
			attempt            *int64
			to                 string
		)
		if err := rows.Scan(&t.ID, &t.Event, &from, &to, &step, &attempt, &detail, &t.At); err != nil {
			return nil, err
		}
		t.ToStatus = Status(to)
		if from != nil {
			t.FromStatus = Status(*from)
		}
		if step != nil {
			t.Step = *step
		}
		if attempt != nil {
			t.Attempt = int(*attempt)
		}
		if detail != nil {
			t.Detail = *detail
		}
		out = append(out, t)
	}
	return out, rows.Err()
}

// StepExecution is one recorded attempt of a step.
type StepExecution struct {
	ID             int64           `json:"id"`
	Step           string          `json:"step"`
	Visit          int             `json:"visit"`
	Attempt        int             `json:"attempt"`
	Status         string          `json:"status"`
	IdempotencyKey string          `json:"idempotency_key"`
	Deliveries     int             `json:"deliveries"`
	Node           string          `json:"node"`
	StartedAt      time.Time       `json:"started_at"`
	FinishedAt     time.Time       `json:"finished_at"`
	Error          string          `json:"error,omitempty"`
	Output         json.RawMessage `json:"output,omitempty"`
}

// Steps returns a run's step executions in order.
func (e *Engine) Steps(ctx context.Context, runID string) ([]StepExecution, error) {
	rows, err := e.db.Reader().Query(ctx, `SELECT id, step, visit, attempt, status, idempotency_key, deliveries, node,
		started_at, finished_at, error, output FROM engine_step_executions WHERE run_id = $1 ORDER BY id`, runID)
	if err != nil {
		return nil, err
	}
	var (
		out    []StepExecution
		sealed [][]byte
	)
	for rows.Next() {
		var (
			x       StepExecution
			errText *string
			o       []byte
		)
		if err := rows.Scan(&x.ID, &x.Step, &x.Visit, &x.Attempt, &x.Status, &x.IdempotencyKey, &x.Deliveries, &x.Node,
			&x.StartedAt, &x.FinishedAt, &errText, &o); err != nil {
			rows.Close()
			return nil, err
		}
		if errText != nil {
			x.Error = *errText
		}
		out = append(out, x)
		sealed = append(sealed, o)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	// Opened after the rows are closed (see scanSealedRun).
	for i := range out {
		o, err := e.open(ctx, executionAAD(runID, out[i].Step, out[i].Visit, out[i].Attempt), sealed[i])
		if err != nil {
			return nil, err
		}
		if o != nil {
			out[i].Output = json.RawMessage(o)
		}
	}
	return out, nil
}

// SignalRecord is a stored signal.
type SignalRecord struct {
	ID         string          `json:"id"`
	Name       string          `json:"name"`
	Payload    json.RawMessage `json:"payload"`
	ReceivedAt time.Time       `json:"received_at"`
	ConsumedAt *time.Time      `json:"consumed_at,omitempty"`
	ConsumedBy string          `json:"consumed_by,omitempty"`
}

// Signals returns a run's signals in arrival order.
func (e *Engine) Signals(ctx context.Context, runID string) ([]SignalRecord, error) {
	rows, err := e.db.Reader().Query(ctx, `SELECT id, name, payload, received_at, consumed_at, consumed_by
		FROM engine_signals WHERE run_id = $1 ORDER BY received_at, id`, runID)
	if err != nil {
		return nil, err
	}
	var (
		out    []SignalRecord
		sealed [][]byte
	)
	for rows.Next() {
		var (
			s       SignalRecord
			payload []byte
			by      *string
		)
		if err := rows.Scan(&s.ID, &s.Name, &payload, &s.ReceivedAt, &s.ConsumedAt, &by); err != nil {
			rows.Close()
			return nil, err
		}
		if by != nil {
			s.ConsumedBy = *by
		}
		out = append(out, s)
		sealed = append(sealed, payload)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	for i := range out {
		p, err := e.open(ctx, signalAAD(runID, out[i].ID), sealed[i])
		if err != nil {
			return nil, err
		}
		out[i].Payload = json.RawMessage(p)
	}
	return out, nil
}
