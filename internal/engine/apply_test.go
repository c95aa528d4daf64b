package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"sync/atomic"
	"testing"
	"time"

	"github.com/careflow/careflow/internal/record"
	"github.com/careflow/careflow/internal/store"
	"github.com/careflow/careflow/internal/store/storetest"
)

// recordWriter is StepRecords over a real FHIR record with no guard (the
// guard acting for a run is serve's; the crash test runs it).
type recordWriter struct{ rec *record.Service }

func (w recordWriter) CreateTx(ctx context.Context, tx store.Tx, _ RunActor, typ string, body []byte) (string, error) {
	rec, _, err := w.rec.CreateTx(ctx, tx, nil, typ, body, "")
	return rec.ID, err
}

func newTestRecord(t *testing.T, db *store.DB) *record.Service {
	return record.New(db, testRing(t, db), record.Options{})
}

// countByIdentifier searches the record for Observations carrying the
// identifier value of DiagnosticsRecordSystem.
func countByIdentifier(t *testing.T, rec *record.Service, value string) int {
	t.Helper()
	q, err := rec.ParseQuery("Observation", url.Values{"identifier": {DiagnosticsRecordSystem + "|" + value}, "_total": {"accurate"}})
	if err != nil {
		t.Fatal(err)
	}
	res, err := rec.Search(context.Background(), nil, q)
	if err != nil {
		t.Fatal(err)
	}
	return len(res.Matches)
}

// A step's Apply writes in the transaction that records its result: an
// attempt whose Apply fails after writing leaves nothing behind, the retry
// writes once, and the write is visible to a search in the same
// transaction. Do's result reaches Apply, and Apply's result is the step's.
func TestApplyWritesCommitWithTheStepResult(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		rec := newTestRecord(t, db)
		var applies atomic.Int32
		def := &Definition{Name: "test-apply", Version: 1, Steps: []Step{
			{Name: "write", Retry: RetryPolicy{MaxAttempts: 3, Initial: 10 * time.Millisecond, Jitter: -1},
				Do: func(_ context.Context, sc *StepContext) (Result, error) {
					return Result{Output: sc.RunID + "/1"}, nil
				},
				Apply: func(ctx context.Context, sc *StepContext, tx store.Tx, done Result) (Result, error) {
					value := done.Output.(string)
					body, err := diagnosticsObservation("p1", value)
					if err != nil {
						return Result{}, err
					}
					created, _, err := rec.CreateTx(ctx, tx, nil, "Observation", body, "")
					if err != nil {
						return Result{}, err
					}
					q, err := rec.ParseQuery("Observation", url.Values{"identifier": {DiagnosticsRecordSystem + "|" + value}})
					if err != nil {
						return Result{}, err
					}
					seen, err := rec.SearchTx(ctx, tx, nil, q)
					if err != nil {
						return Result{}, err
					}
					if len(seen.Matches) != 1 {
						return Result{}, Permanent(fmt.Errorf("the transaction sees %d of its own writes", len(seen.Matches)))
					}
					if applies.Add(1) == 1 {
						// As a crash after the write and before the commit.
						return Result{}, errors.New("first attempt fails after writing")
					}
					return Result{Output: map[string]string{"written": "Observation/" + created.ID}}, nil
				}},
			noopStep("after"),
		}}
		n := newNode(t, db, nodeOpts{defs: []*Definition{def}})
		r, _, err := n.StartRun(ctx, StartOptions{Definition: "test-apply"})
		if err != nil {
			t.Fatal(err)
		}
		r = waitStatus(t, n.Engine, r.ID, StatusCompleted, 30*time.Second)
		if got := countByIdentifier(t, rec, r.ID+"/1"); got != 1 {
			t.Fatalf("%d Observations written, want 1 (the failed attempt's write must roll back)", got)
		}
		var total int
		if err := db.Reader().QueryRow(ctx, `SELECT (SELECT count(*) FROM resource_history WHERE type = 'Observation') + (SELECT count(*) FROM resources WHERE type = 'Observation')`).Scan(&total); err != nil {
			t.Fatal(err)
		}
		if total != 1 || applies.Load() != 2 {
			t.Fatalf("%d stored versions after %d applies, want 1 after 2", total, applies.Load())
		}
		steps, err := n.Steps(ctx, r.ID)
		if err != nil {
			t.Fatal(err)
		}
		if len(steps) != 3 || steps[0].Status != "retrying" || steps[1].Status != "succeeded" {
			t.Fatalf("executions: %+v", steps)
		}
		var out struct{ Written string }
		if err := json.Unmarshal(r.Outputs["write"], &out); err != nil || out.Written == "" {
			t.Fatalf("the step's output is not Apply's: %s", r.Outputs["write"])
		}
	})
}

// An Apply that fails for good leaves no write and fails the run; a step
// with only an Apply is an action.
func TestApplyPermanentFailureRollsBackItsWrites(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		rec := newTestRecord(t, db)
		def := &Definition{Name: "test-apply-fail", Version: 1, Steps: []Step{
			{Name: "write", Apply: func(ctx context.Context, sc *StepContext, tx store.Tx, _ Result) (Result, error) {
				body, _ := diagnosticsObservation("p1", sc.RunID+"/1")
				if _, _, err := rec.CreateTx(ctx, tx, nil, "Observation", body, ""); err != nil {
					return Result{}, err
				}
				return Result{}, Permanent(errors.New("refused after writing"))
			}},
		}}
		n := newNode(t, db, nodeOpts{defs: []*Definition{def}})
		r, _, err := n.StartRun(ctx, StartOptions{Definition: "test-apply-fail"})
		if err != nil {
			t.Fatal(err)
		}
		r = waitStatus(t, n.Engine, r.ID, StatusFailed, 30*time.Second)
		if got := countByIdentifier(t, rec, r.ID+"/1"); got != 0 {
			t.Fatalf("%d Observations left by a failed Apply, want 0", got)
		}
	})
}

// diagnostics.record writes its two Observations once per run.
func TestDiagnosticsRecordWritesTwoObservationsOnce(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		rec := newTestRecord(t, db)
		n := newNode(t, db, nodeOpts{stepRecords: recordWriter{rec: rec}})
		if _, _, err := n.StartRun(ctx, StartOptions{Definition: DiagnosticsRecordDefinition}); err == nil {
			t.Fatal("a diagnostics.record run naming no patient was started")
		}
		r, _, err := n.StartRun(ctx, StartOptions{Definition: DiagnosticsRecordDefinition, PatientID: "p1"})
		if err != nil {
			t.Fatal(err)
		}
		waitStatus(t, n.Engine, r.ID, StatusCompleted, 30*time.Second)
		for _, v := range []string{r.ID + "/1", r.ID + "/2"} {
			if got := countByIdentifier(t, rec, v); got != 1 {
				t.Errorf("identifier %s: %d Observations, want 1", v, got)
			}
		}
	})
}
