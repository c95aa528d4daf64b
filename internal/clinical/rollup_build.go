package clinical

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/careflow/careflow/internal/store"
)

// The rollup is built once from the rows: by the migration for a database
// without workflows (it marks clinical_rollup_state built), and otherwise
// by the first EnsureRollup (careflow serve calls it before it serves; the
// analytics call it too), for a database whose workflows were written
// before the rollup existed, or whose rollup an operator cleared (deleting
// the state row asks for a rebuild).

// rollupBatch is how many workflows a rebuild reads at a time.
const rollupBatch = 1000

// EnsureRollup builds the analytics rollup from the workflows stored when
// it is not built yet, in one transaction: on PostgreSQL with the rollup's
// tables locked against writers, so a change committed while it reads is
// either in what it reads or added after it; on SQLite the write
// transaction excludes writers anyway. Nodes starting together build it
// once: the others wait for the lock and find it built.
func (s *Service) EnsureRollup(ctx context.Context) error {
	if s.rollupBuilt.Load() {
		return nil
	}
	built, err := rollupBuilt(ctx, s.cfg.DB.Reader())
	if err != nil {
		return err
	}
	if !built {
		err = s.cfg.DB.Tx(ctx, func(tx store.Tx) error {
			if tx.Dialect() == store.Postgres {
				if _, err := tx.Exec(ctx, `LOCK TABLE clinical_rollup_state, clinical_rollup, clinical_rollup_patients IN EXCLUSIVE MODE`); err != nil {
					return err
				}
			}
			if built, err := rollupBuilt(ctx, tx); err != nil || built {
				return err
			}
			if err := rebuildRollup(ctx, tx); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, `INSERT INTO clinical_rollup_state (id, built_at) VALUES (1, $1)`, s.clock())
			return err
		})
		if err != nil {
			return fmt.Errorf("clinical: build the analytics rollup: %w", err)
		}
	}
	s.rollupBuilt.Store(true)
	return nil
}

func rollupBuilt(ctx context.Context, q store.Querier) (bool, error) {
	var n int
	if err := q.QueryRow(ctx, `SELECT count(*) FROM clinical_rollup_state`).Scan(&n); err != nil {
		return false, err
	}
	return n > 0, nil
}

// rebuildRollup replaces the rollup's rows with the sum of the stored
// workflows' contributions.
func rebuildRollup(ctx context.Context, tx store.Tx) error {
	global, patient, err := rollupFromRows(ctx, tx, tx.Dialect())
	if err != nil {
		return err
	}
	for _, t := range []string{"clinical_rollup", "clinical_rollup_patients"} {
		if _, err := tx.Exec(ctx, `DELETE FROM `+t); err != nil {
			return err
		}
	}
	for k, cs := range global {
		if _, err := tx.Exec(ctx, `INSERT INTO clinical_rollup (day, type, priority_rank, provider_id, cells) VALUES ($1, $2, $3, $4, $5)`,
			k.day, string(k.key.typ), k.key.rank, k.key.provider, encodeCellset(*cs)); err != nil {
			return err
		}
	}
	for k, cs := range patient {
		if _, err := tx.Exec(ctx, `INSERT INTO clinical_rollup_patients (patient_id, day, cells) VALUES ($1, $2, $3)`,
			k.patient, k.day, encodeCellset(*cs)); err != nil {
			return err
		}
	}
	return nil
}

// rollupFromRows sums the contributions of every stored workflow, reading
// them and their steps a batch at a time in id order.
func rollupFromRows(ctx context.Context, q store.Querier, dialect store.Dialect) (map[globalKey]*cellset, map[patientKey]*cellset, error) {
	d := &rollupDelta{global: map[globalKey]*cellset{}, patient: map[patientKey]*cellset{}}
	after := ""
	for {
		ws, err := workflowBatch(ctx, q, after)
		if err != nil || len(ws) == 0 {
			return d.global, d.patient, err
		}
		ids := make([]string, len(ws))
		for i, w := range ws {
			ids[i] = w.ID
		}
		steps, err := stepsOf(ctx, q, dialect, ids)
		if err != nil {
			return nil, nil, err
		}
		for _, w := range ws {
			c := contributionOf(w, steps[w.ID])
			d.add(&c, 1)
		}
		after = ws[len(ws)-1].ID
	}
}

// workflowBatch reads the next workflows after an id: the columns a
// contribution needs.
func workflowBatch(ctx context.Context, q store.Querier, after string) ([]*workflowRow, error) {
	rows, err := q.Query(ctx, `SELECT id, type, priority, status, patient_id, provider_id, created_at, completed_at
		FROM clinical_workflows WHERE id > $1 ORDER BY id LIMIT `+fmt.Sprint(rollupBatch), after)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []*workflowRow
	for rows.Next() {
		var w workflowRow
		if err := rows.Scan(&w.ID, &w.Type, &w.Priority, &w.Status, &w.PatientID, &w.ProviderID, &w.CreatedAt, &w.CompletedAt); err != nil {
			return nil, err
		}
		out = append(out, &w)
	}
	return out, rows.Err()
}

// stepsOf reads the steps of some workflows: the columns a contribution
// needs, by workflow.
func stepsOf(ctx context.Context, q store.Querier, d store.Dialect, ids []string) (map[string][]*stepRow, error) {
	rows, err := q.Query(ctx, `SELECT workflow_id, code, role, status, created_at, started_at, due_at FROM clinical_steps
		WHERE `+d.InList("workflow_id", "$1"), d.PlanEach([]any{d.ListArg(ids)})...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string][]*stepRow{}
	for rows.Next() {
		var st stepRow
		if err := rows.Scan(&st.WorkflowID, &st.Code, &st.Role, &st.Status, &st.CreatedAt, &st.StartedAt, &st.DueAt); err != nil {
			return nil, err
		}
		out[st.WorkflowID] = append(out[st.WorkflowID], &st)
	}
	return out, rows.Err()
}

// rollupDump is a rollup's rows as comparable text (for the tests that
// hold the rollup to the rows).
func rollupDump(global map[globalKey]*cellset, patient map[patientKey]*cellset) []string {
	var out []string
	for k, cs := range global {
		if len(*cs) == 0 {
			continue
		}
		out = append(out, fmt.Sprintf("g %s %v %s", dayTime(k.day).Format(time.DateOnly), k.key, dumpCells(*cs)))
	}
	for k, cs := range patient {
		if len(*cs) == 0 {
			continue
		}
		out = append(out, fmt.Sprintf("p %s %s %s", k.patient, dayTime(k.day).Format(time.DateOnly), dumpCells(*cs)))
	}
	slices.Sort(out)
	return out
}

func dumpCells(cs cellset) string {
	var b strings.Builder
	for _, e := range cs {
		fmt.Fprintf(&b, "[%v status%v ttc%v done%v", e.key, e.c.status, e.c.ttc, e.c.done)
		for _, sc := range e.c.steps {
			fmt.Fprintf(&b, " %s/%s wait%v pending%v due%v", sc.code, sc.role, sc.wait, sc.pending, sc.due)
		}
		b.WriteString("]")
	}
	return b.String()
}

// readRollup reads the rollup's rows as stored.
func readRollup(ctx context.Context, q store.Querier) (map[globalKey]*cellset, map[patientKey]*cellset, error) {
	global, patient := map[globalKey]*cellset{}, map[patientKey]*cellset{}
	rows, err := q.Query(ctx, `SELECT day, type, priority_rank, provider_id, cells FROM clinical_rollup`)
	if err != nil {
		return nil, nil, err
	}
	for rows.Next() {
		var (
			k    globalKey
			blob []byte
		)
		if err := rows.Scan(&k.day, &k.key.typ, &k.key.rank, &k.key.provider, &blob); err != nil {
			rows.Close()
			return nil, nil, err
		}
		cs, err := decodeCellset(blob)
		if err != nil {
			rows.Close()
			return nil, nil, err
		}
		global[k] = &cs
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, nil, err
	}
	rows, err = q.Query(ctx, `SELECT patient_id, day, cells FROM clinical_rollup_patients`)
	if err != nil {
		return nil, nil, err
	}
	defer rows.Close()
	for rows.Next() {
		var (
			k    patientKey
			blob []byte
		)
		if err := rows.Scan(&k.patient, &k.day, &blob); err != nil {
			return nil, nil, err
		}
		cs, err := decodeCellset(blob)
		if err != nil {
			return nil, nil, err
		}
		patient[k] = &cs
	}
	return global, patient, rows.Err()
}

// CheckRollup compares the stored rollup with one recomputed from the
// workflows and their steps, and reports the first row that differs (ids,
// codes and counts only): the invariant every write path keeps. A
// database being written while it reads may differ for that reason.
func (s *Service) CheckRollup(ctx context.Context) error {
	stored, storedP, err := readRollup(ctx, s.cfg.DB.Reader())
	if err != nil {
		return err
	}
	want, wantP, err := rollupFromRows(ctx, s.cfg.DB.Reader(), s.cfg.DB.Dialect())
	if err != nil {
		return err
	}
	got, exp := rollupDump(stored, storedP), rollupDump(want, wantP)
	for i := range max(len(got), len(exp)) {
		g, e := "(none)", "(none)"
		if i < len(got) {
			g = got[i]
		}
		if i < len(exp) {
			e = exp[i]
		}
		if g != e {
			return fmt.Errorf("clinical rollup: row %d is\n  %s\nwhere the workflows give\n  %s", i, g, e)
		}
	}
	return nil
}
