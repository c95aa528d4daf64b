package access

import (
	"context"
	"testing"

	"github.com/careflow/careflow/internal/errs"
	"github.com/careflow/careflow/internal/store"
	"github.com/careflow/careflow/internal/store/storetest"
)

// A step's caller (WorkflowStep) is the system bound to its run's patient:
// it writes and reads that patient's records, its searches reach them
// alone, any other patient's record or one of no patient is refused, and
// a run of no patient touches nothing.
func TestWorkflowStepCaller(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		e := newEnv(t, db)
		obs := func(patient string) []byte {
			return []byte(`{"resourceType":"Observation","status":"final","code":{"text":"x"},"subject":{"reference":"Patient/` + patient + `"}}`)
		}
		other, _, err := e.rec.Create(ctx, e.svc.For(Importer("seed")), "Observation", obs("p2"), "")
		if err != nil {
			t.Fatal(err)
		}
		g := e.svc.For(WorkflowStep("run-1", "s", "p1"))
		own, _, err := e.rec.Create(ctx, g, "Observation", obs("p1"), "")
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := e.rec.Create(ctx, g, "Observation", obs("p2"), ""); !errs.Is(err, errs.Forbidden) {
			t.Errorf("a write to another patient: %v, want forbidden", err)
		}
		if _, err := e.rec.Read(ctx, g, "Observation", own.ID); err != nil {
			t.Errorf("a read of its patient's record: %v", err)
		}
		if _, err := e.rec.Read(ctx, g, "Observation", other.ID); !errs.Is(err, errs.Forbidden) {
			t.Errorf("a read of another patient's record: %v, want forbidden", err)
		}
		if r, err := g.Reach(ctx, "Observation"); err != nil || r.Every || len(r.Patients) != 1 || r.Patients[0] != "p1" || r.NoPatient || r.AllPatients {
			t.Errorf("reach %+v, %v; want patient p1 alone", r, err)
		}

		none := e.svc.For(WorkflowStep("run-2", "s", ""))
		if _, _, err := e.rec.Create(ctx, none, "Observation", obs("p1"), ""); !errs.Is(err, errs.Forbidden) {
			t.Errorf("a run of no patient writes: %v, want forbidden", err)
		}
		q, err := e.rec.ParseQuery("Observation", nil)
		if err != nil {
			t.Fatal(err)
		}
		res, err := e.rec.Search(ctx, none, q)
		if err != nil || len(res.Matches) != 0 {
			t.Errorf("a run of no patient lists %d Observations (%v), want none", len(res.Matches), err)
		}
	})
}
