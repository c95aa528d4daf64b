package engine

import (
	"context"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"testing"
	"time"

	"github.com/careflow/careflow/internal/store"
	"github.com/careflow/careflow/internal/store/storetest"
)

// TestCrashLeavesEachStepWriteOnce starts diagnostics.record runs (a step
// whose Apply creates two Observations in the step's transaction, through
// serve's guard acting for the run, then a no-op step) on a real `careflow
// serve`, SIGKILLs it at random moments while runs are in flight, restarts
// it, and checks that every run completed and each of its two
// Observations exists exactly once (found by the identifier derived from
// the run id), each with one audit entry of the step's write. A write that
// committed apart from its step would be written again by the re-delivery;
// one that rolled back with it and was not re-applied would be missing.
func TestCrashLeavesEachStepWriteOnce(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	kills, perKill := 20, 5
	if soak() {
		kills, perKill = 200, 5
	}
	for _, d := range storetest.Backends() {
		t.Run(string(d), func(t *testing.T) {
			ctx := context.Background()
			dir := t.TempDir()
			var dbURL string
			if d == store.Postgres {
				dbURL = storetest.NewPostgresDatabase(t)
			} else {
				dbURL = filepath.Join(dir, store.DefaultSQLiteFile)
			}
			db, err := store.Open(ctx, store.Config{URL: dbURL})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { db.Close() })
			if _, err := db.Migrate(ctx); err != nil {
				t.Fatal(err)
			}
			rec := newTestRecord(t, db)
			// This process starts runs and reads the record; the child, a
			// real careflow serve, does all the work and all the writes.
			starter := newNode(t, db, nodeOpts{noStart: true, stepRecords: recordWriter{rec: rec}})
			child := &crashChild{t: t, dbURL: dbURL, dir: dir, binary: serveBinary(t), args: []string{"--diagnostics-record-writes", "true"}}
			child.start()

			rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 11))
			var ids []string
			startBatch := func(n int) {
				for i := 0; i < n; i++ {
					r, _, err := starter.StartRun(ctx, StartOptions{Definition: DiagnosticsRecordDefinition, PatientID: fmt.Sprintf("crash-p%d", rng.IntN(5))})
					if err != nil {
						t.Fatalf("start run: %v", err)
					}
					ids = append(ids, r.ID)
				}
			}
			began := time.Now()
			for k := 0; k < kills; k++ {
				// A random moment while the batch's steps are in flight:
				// before, during or after their transactions.
				startBatch(perKill)
				time.Sleep(time.Duration(rng.IntN(60)) * time.Millisecond)
				child.kill()
				child.start()
			}
			defer child.stop()

			waitFor(t, 5*time.Minute, "every run to complete", func() (bool, error) {
				counts, err := starter.CountRuns(ctx)
				if err != nil {
					return false, err
				}
				if counts[StatusFailed] > 0 || counts[StatusCancelled] > 0 {
					return false, fmt.Errorf("runs ended badly: %v", counts)
				}
				return counts[StatusCompleted] == int64(len(ids)), nil
			})
			elapsed := time.Since(began)

			for _, id := range ids {
				for _, v := range []string{id + "/1", id + "/2"} {
					if got := countByIdentifier(t, rec, v); got != 1 {
						t.Errorf("run %s: %d Observations with identifier %s, want exactly 1", id, got, v)
					}
				}
				var audited int
				if err := db.Reader().QueryRow(ctx, `SELECT count(*) FROM audit_entries WHERE request_id = $1 AND action = 'create'`, "run-"+id).Scan(&audited); err != nil {
					t.Fatal(err)
				}
				if audited != 2 {
					t.Errorf("run %s: %d audited creates, want 2", id, audited)
				}
			}
			var stored, redelivered int
			if err := db.Reader().QueryRow(ctx, `SELECT (SELECT count(*) FROM resource_history WHERE type = 'Observation') + (SELECT count(*) FROM resources WHERE type = 'Observation')`).Scan(&stored); err != nil {
				t.Fatal(err)
			}
			if stored != 2*len(ids) {
				t.Errorf("%d Observation versions stored, want %d", stored, 2*len(ids))
			}
			if err := db.Reader().QueryRow(ctx, `SELECT count(*) FROM engine_step_executions WHERE deliveries > 1`).Scan(&redelivered); err != nil {
				t.Fatal(err)
			}
			t.Logf("%s: %d runs, %d kills, %s; %d Observations, each once; %d step executions were re-deliveries after a crash",
				d, len(ids), kills, elapsed.Round(time.Millisecond), stored, redelivered)
		})
	}
}
