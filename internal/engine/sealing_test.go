package engine

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/careflow/careflow/internal/phi"
	"github.com/careflow/careflow/internal/store"
	"github.com/careflow/careflow/internal/store/storetest"
)

// payloadDef carries a caller's values through every payload column: the
// input, a step output computed from it, a signal payload, and a human
// task's free decision and result.
func payloadDef() *Definition {
	return &Definition{Name: "test-payloads", Version: 1, Steps: []Step{
		{Name: "echo", Do: func(_ context.Context, sc *StepContext) (Result, error) {
			var in struct {
				Note string `json:"note"`
			}
			if err := sc.Decode(&in); err != nil {
				return Result{}, Permanent(err)
			}
			return Result{Output: map[string]string{"echo": strings.TrimSuffix(in.Note, "-input") + "-output"}}, nil
		}},
		{Name: "await", Wait: func(*Input) (Wait, error) { return Wait{Signal: "result"}, nil }},
		{Name: "decide", Wait: func(*Input) (Wait, error) {
			return Wait{Task: &TaskSpec{Title: "Review the result", Role: "physician"}}, nil
		}},
		noopStep("after"),
	}}
}

func newMarker(t *testing.T) string {
	t.Helper()
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	return "MRK" + hex.EncodeToString(b[:])
}

// TestDatabaseDumpHoldsNoWorkflowPayload runs a workflow whose input, step
// output, signal payload, task decision and task result all carry a
// recognisable marker, checks that the engine's API returns every one of
// them, and then that a dump of the database holds none: the SQLite file and
// its WAL byte for byte, and on PostgreSQL pg_dump's output and every row of
// every table as text.
func TestDatabaseDumpHoldsNoWorkflowPayload(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		mark := newMarker(t)
		n := newNode(t, db, nodeOpts{defs: []*Definition{payloadDef()}})
		r, _, err := n.StartRun(ctx, StartOptions{Definition: "test-payloads", PatientID: "pat-1",
			Input: map[string]string{"note": mark + "-input"}})
		if err != nil {
			t.Fatal(err)
		}
		waitFor(t, 30*time.Second, "the run to wait for its signal", func() (bool, error) {
			cur, err := n.GetRun(ctx, r.ID)
			return err == nil && cur.Wait != nil && cur.Wait.Kind == "signal", err
		})
		if _, err := n.SendSignal(ctx, r.ID, Signal{ID: "cb-1", Name: "result", Payload: map[string]string{"value": mark + "-signal"}}); err != nil {
			t.Fatal(err)
		}
		var taskID string
		waitFor(t, 30*time.Second, "the run to wait for its task", func() (bool, error) {
			cur, err := n.GetRun(ctx, r.ID)
			if err == nil && cur.Wait != nil && cur.Wait.Kind == "task" {
				taskID = cur.Wait.TaskID
			}
			return taskID != "", err
		})
		if _, err := n.CompleteTask(ctx, taskID, Actor{User: "dr-a", Roles: []string{"physician"}}, mark+"-decision",
			map[string]string{"note": mark + "-result"}, 0); err != nil {
			t.Fatal(err)
		}
		r = waitStatus(t, n.Engine, r.ID, StatusCompleted, 30*time.Second)

		// What the API gives back: every value, readable.
		var api bytes.Buffer
		steps, err := n.Steps(ctx, r.ID)
		if err != nil {
			t.Fatal(err)
		}
		sigs, err := n.Signals(ctx, r.ID)
		if err != nil {
			t.Fatal(err)
		}
		task, err := n.GetTask(ctx, taskID)
		if err != nil {
			t.Fatal(err)
		}
		for _, v := range []any{r, steps, sigs, task} {
			b, _ := json.Marshal(v)
			api.Write(b)
		}
		for _, part := range []string{"-input", "-output", "-signal", "-decision", "-result"} {
			if !strings.Contains(api.String(), mark+part) {
				t.Fatalf("the API does not give back the %s value: %s", part, api.String())
			}
		}
		if task.Decision != mark+"-decision" {
			t.Fatalf("task decision %q", task.Decision)
		}

		// The raw columns are ciphertexts.
		var raw []byte
		if err := db.Reader().QueryRow(ctx, `SELECT input FROM engine_runs WHERE id = $1`, r.ID).Scan(&raw); err != nil {
			t.Fatal(err)
		}
		if _, err := phi.KeyIDOf(raw); err != nil {
			t.Fatalf("engine_runs.input is not a ciphertext: %v", err)
		}

		// PostgreSQL prints BYTEA as hex, so the marker is looked for in hex
		// too: a plain value in a BYTEA column is no less readable.
		dump := storetest.Dump(t, db)
		for _, m := range [][]byte{[]byte(mark), []byte(hex.EncodeToString([]byte(mark)))} {
			if i := bytes.Index(dump, m); i >= 0 {
				t.Fatalf("the database dump holds a workflow payload: …%q…", dump[max(0, i-80):min(len(dump), i+len(m)+40)])
			}
		}
		// The dump is not vacuous: it holds the run's plain columns.
		if !bytes.Contains(dump, []byte(r.ID)) || !bytes.Contains(dump, []byte("test-payloads")) {
			t.Fatalf("the dump (%d bytes) does not even hold the run's id", len(dump))
		}
	})
}

// TestPlainPayloadsFromBeforeSealingAreSealedAtStart builds a database the
// way careflow left it before payloads were sealed (migrations up to 0008,
// plain JSON in every payload column), migrates it, and starts a node: the
// start seals every plain value in place, the API reads them as before, the
// run goes on from where it was (its stored signal and state opened), and
// afterwards a plain value planted in a payload column is refused.
func TestPlainPayloadsFromBeforeSealingAreSealedAtStart(t *testing.T) {
	t.Parallel()
	for _, d := range storetest.Backends() {
		t.Run(string(d), func(t *testing.T) {
			ctx := context.Background()
			db := storetest.OpenUnmigrated(t, d)
			storetest.MigrateTo(t, db, 8)
			mark := newMarker(t)
			runID, taskID := "01a21300-0000-7000-8000-000000000001", "01a21300-0000-7000-8000-000000000002"
			now := time.Now().UTC().Truncate(time.Millisecond)
			input := `{"note":"` + mark + `-input"}`
			echo := `{"echo":"` + mark + `-output"}`
			state := `{"outputs":{"echo":` + echo + `},"visits":{"echo":1,"await":1}}`
			signal := `{"value":"` + mark + `-signal"}`
			result := `{"note":"` + mark + `-result"}`
			legacy := []struct {
				q    string
				args []any
			}{
				{`INSERT INTO engine_runs (id, definition, version, status, input, state, current_step, visit, attempt, epoch,
					wait_kind, wait_signal, patient_id, row_version, created_at, updated_at)
					VALUES ($1, 'test-payloads', 1, 'waiting', $2, $3, 'await', 1, 1, 1, 'signal', 'result', 'pat-1', 3, $4, $4)`,
					[]any{runID, input, state, now}},
				{`INSERT INTO engine_step_executions (run_id, step, visit, attempt, status, idempotency_key, deliveries, node, started_at, finished_at, output)
					VALUES ($1, 'echo', 1, 1, 'succeeded', $2, 1, 'node-old', $3, $3, $4)`,
					[]any{runID, idempotencyKey(runID, "echo", 1), now, echo}},
				{`INSERT INTO engine_signals (run_id, id, name, payload, received_at) VALUES ($1, 'cb-old', 'result', $2, $3)`,
					[]any{runID, signal, now}},
				{`INSERT INTO engine_tasks (id, run_id, step, visit, title, role, status, decisions, decision, result, completed_by,
					row_version, created_at, updated_at, completed_at)
					VALUES ($1, $2, 'old-review', 1, 'Old review', 'physician', 'completed', '[]', $3, $4, 'dr-old', 2, $5, $5, $5)`,
					[]any{taskID, runID, mark + "-decision", result, now}},
			}
			for _, l := range legacy {
				if _, err := db.Writer().Exec(ctx, l.q, l.args...); err != nil {
					t.Fatal(err)
				}
			}
			if _, err := db.Migrate(ctx); err != nil {
				t.Fatal(err)
			}
			var pending int
			if err := db.Reader().QueryRow(ctx, `SELECT count(*) FROM engine_unsealed_payloads`).Scan(&pending); err != nil || pending != 4 {
				t.Fatalf("tables listed as unsealed after the migration: %d (%v), want 4", pending, err)
			}
			var raw []byte
			if err := db.Reader().QueryRow(ctx, `SELECT input FROM engine_runs WHERE id = $1`, runID).Scan(&raw); err != nil || string(raw) != input {
				t.Fatalf("the migration changed the stored input: %q (%v)", raw, err)
			}

			n := newNode(t, db, nodeOpts{defs: []*Definition{payloadDef()}})
			if err := db.Reader().QueryRow(ctx, `SELECT count(*) FROM engine_unsealed_payloads`).Scan(&pending); err != nil || pending != 0 {
				t.Fatalf("tables still listed as unsealed after the start: %d (%v)", pending, err)
			}
			for _, c := range []struct{ table, column, where string }{
				{"engine_runs", "input", "id"}, {"engine_runs", "state", "id"}, {"engine_step_executions", "output", "run_id"},
				{"engine_signals", "payload", "run_id"}, {"engine_tasks", "decision", "run_id"}, {"engine_tasks", "result", "run_id"},
			} {
				var v []byte
				if err := db.Reader().QueryRow(ctx, `SELECT `+c.column+` FROM `+c.table+` WHERE `+c.where+` = $1`, runID).Scan(&v); err != nil {
					t.Fatal(err)
				}
				if _, err := phi.KeyIDOf(v); err != nil {
					t.Errorf("%s.%s is still plain after the start: %v", c.table, c.column, err)
				}
			}

			r, err := n.GetRun(ctx, runID)
			if err != nil {
				t.Fatal(err)
			}
			if string(r.Input) != input || string(r.Outputs["echo"]) != echo {
				t.Fatalf("run reads input %s, echo output %s", r.Input, r.Outputs["echo"])
			}
			steps, err := n.Steps(ctx, runID)
			if err != nil || len(steps) != 1 || string(steps[0].Output) != echo {
				t.Fatalf("steps %+v (%v)", steps, err)
			}
			task, err := n.GetTask(ctx, taskID)
			if err != nil || task.Decision != mark+"-decision" || string(task.Result) != result {
				t.Fatalf("task %+v (%v)", task, err)
			}

			// The waiting run goes on: its step is delivered again, finds the
			// stored signal (sealed at start) and moves to the task.
			if _, err := n.Retry(ctx, runID, r.RowVersion); err != nil {
				t.Fatal(err)
			}
			var waitingTask string
			waitFor(t, 30*time.Second, "the run to reach its task", func() (bool, error) {
				cur, err := n.GetRun(ctx, runID)
				if err == nil && cur.Wait != nil && cur.Wait.Kind == "task" {
					waitingTask = cur.Wait.TaskID
					if string(cur.Outputs["await"]) != signal {
						return false, fmt.Errorf("the wait's output is %s, want the stored signal", cur.Outputs["await"])
					}
				}
				return waitingTask != "", err
			})
			if _, err := n.CompleteTask(ctx, waitingTask, Actor{User: "dr-a", Roles: []string{"physician"}}, "done", nil, 0); err != nil {
				t.Fatal(err)
			}
			waitStatus(t, n.Engine, runID, StatusCompleted, 30*time.Second)

			// Once sealed, a plain value in a payload column is not input.
			if _, err := db.Writer().Exec(ctx, `UPDATE engine_tasks SET result = $1 WHERE id = $2`, []byte(`{"planted":true}`), taskID); err != nil {
				t.Fatal(err)
			}
			if _, err := n.GetTask(ctx, taskID); err == nil || strings.Contains(err.Error(), "planted") {
				t.Fatalf("a planted plain result was read (%v)", err)
			}
		})
	}
}

// TestKeyRotationReencryptsWorkflowPayloads rotates the data key after a
// run has filled every payload column and runs the re-encryptor over the
// engine's registered columns: every value moves to the new key (so the
// registration's associated data is the writer's), the old key retires, and
// the engine still reads everything.
func TestKeyRotationReencryptsWorkflowPayloads(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		n := newNode(t, db, nodeOpts{defs: []*Definition{payloadDef()}})
		r, _, err := n.StartRun(ctx, StartOptions{Definition: "test-payloads", Input: map[string]string{"note": "a-input"}})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := n.SendSignal(ctx, r.ID, Signal{ID: "cb-1", Name: "result", Payload: map[string]string{"value": "a-signal"}}); err != nil {
			t.Fatal(err)
		}
		var taskID string
		waitFor(t, 30*time.Second, "the run to wait for its task", func() (bool, error) {
			cur, err := n.GetRun(ctx, r.ID)
			if err == nil && cur.Wait != nil && cur.Wait.Kind == "task" {
				taskID = cur.Wait.TaskID
			}
			return taskID != "", err
		})
		if _, err := n.CompleteTask(ctx, taskID, Actor{User: "dr-a", Roles: []string{"physician"}}, "approve", map[string]int{"score": 3}, 0); err != nil {
			t.Fatal(err)
		}
		waitStatus(t, n.Engine, r.ID, StatusCompleted, 30*time.Second)

		ring := n.ring
		old := ring.Primary()
		next, err := ring.Rotate(ctx)
		if err != nil {
			t.Fatal(err)
		}
		reg := &phi.Registry{}
		if err := Register(reg); err != nil {
			t.Fatal(err)
		}
		p, err := phi.NewReencryptor(ring, reg, phi.ReencryptOptions{RetireGrace: time.Millisecond}).RunUntilDone(ctx)
		if err != nil {
			t.Fatal(err)
		}
		// input, state, three step outputs (echo, await, decide; after has none),
		// the signal, the task's decision and result.
		if p.Resealed < 8 || len(p.Retired) != 1 || p.Retired[0] != old {
			t.Fatalf("re-encryption %+v, want at least 8 values resealed and %s retired", p, old)
		}
		for _, c := range []struct{ table, column, where string }{
			{"engine_runs", "input", "id"}, {"engine_runs", "state", "id"}, {"engine_step_executions", "output", "run_id"},
			{"engine_signals", "payload", "run_id"}, {"engine_tasks", "decision", "run_id"}, {"engine_tasks", "result", "run_id"},
		} {
			rows, err := db.Reader().Query(ctx, `SELECT `+c.column+` FROM `+c.table+` WHERE `+c.where+` = $1 AND `+c.column+` IS NOT NULL`, r.ID)
			if err != nil {
				t.Fatal(err)
			}
			seen := 0
			for rows.Next() {
				var v []byte
				if err := rows.Scan(&v); err != nil {
					t.Fatal(err)
				}
				if id, err := phi.KeyIDOf(v); err != nil || id != next.ID {
					t.Errorf("%s.%s is on %v (%v), want %s", c.table, c.column, id, err, next.ID)
				}
				seen++
			}
			rows.Close()
			if seen == 0 {
				t.Errorf("no %s.%s value of the run", c.table, c.column)
			}
		}
		got, err := n.GetRun(ctx, r.ID)
		if err != nil || string(got.Input) != `{"note":"a-input"}` {
			t.Fatalf("run after rotation: %s (%v)", got.Input, err)
		}
		task, err := n.GetTask(ctx, taskID)
		if err != nil || task.Decision != "approve" || string(task.Result) != `{"score":3}` {
			t.Fatalf("task after rotation: %+v (%v)", task, err)
		}
	})
}
