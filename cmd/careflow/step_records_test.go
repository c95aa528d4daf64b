package main

import (
	"bytes"
	"context"
	"path/filepath"
	"testing"

	"github.com/careflow/careflow/internal/access"
	"github.com/careflow/careflow/internal/audit"
	"github.com/careflow/careflow/internal/auth"
	"github.com/careflow/careflow/internal/engine"
	"github.com/careflow/careflow/internal/errs"
	"github.com/careflow/careflow/internal/phi"
	"github.com/careflow/careflow/internal/record"
	"github.com/careflow/careflow/internal/store"
	"github.com/careflow/careflow/internal/store/storetest"
)

// A workflow step writes, as the system acting for its run, only to the
// run's patient's record and only what the policy serves; each write's
// audit entry commits with it in the step's transaction, and a refused or
// rolled-back write leaves neither resource nor entry.
func TestStepRecordsWriteOnlyTheRunsPatientAndAuditInTheTransaction(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		mk, err := phi.ParseMasterKey(bytes.Repeat([]byte{7}, 32))
		if err != nil {
			t.Fatal(err)
		}
		ring, err := phi.OpenRing(ctx, db, mk, phi.Options{})
		if err != nil {
			t.Fatal(err)
		}
		signer, err := audit.LoadOrCreateSigner(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		log, err := audit.New(ctx, db, audit.Options{Signer: signer, CheckpointDir: filepath.Join(t.TempDir(), "cp")})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = log.Close(context.Background()) })
		rec := record.New(db, ring, record.Options{})
		svc := &access.Services{Policy: auth.DefaultPolicy(), Audit: log}
		recs := stepRecords{access.RunRecords{Record: rec, Access: svc}}
		who := engine.RunActor{RunID: "run-a", Definition: "d", Step: "s", PatientID: "p1"}
		obs := func(patient string) []byte {
			return []byte(`{"resourceType":"Observation","status":"final","code":{"text":"x"},"subject":{"reference":"Patient/` + patient + `"}}`)
		}
		count := func(q string, args ...any) int {
			var n int
			if err := db.Reader().QueryRow(ctx, q, args...).Scan(&n); err != nil {
				t.Fatal(err)
			}
			return n
		}

		// Allowed: committed with the transaction, audited as the run.
		var id string
		if err := db.Tx(ctx, func(tx store.Tx) error {
			var err error
			id, err = recs.CreateTx(ctx, tx, who, "Observation", obs("p1"))
			return err
		}); err != nil {
			t.Fatal(err)
		}
		if n := count(`SELECT count(*) FROM audit_entries WHERE request_id = $1 AND actor = $2 AND resource_id = $3 AND patient_id = 'p1'`, "run-run-a", "workflow-run:run-a", id); n != 1 {
			t.Fatalf("%d audit entries for the step's write, want 1", n)
		}

		// Another patient's record and a record of no patient: refused,
		// nothing written.
		for _, c := range []struct {
			typ  string
			body []byte
			kind errs.Kind
		}{
			{"Observation", obs("p2"), errs.Forbidden},
			{"Observation", []byte(`{"resourceType":"Observation","status":"final","code":{"text":"x"}}`), errs.Forbidden},
		} {
			err := db.Tx(ctx, func(tx store.Tx) error {
				_, err := recs.CreateTx(ctx, tx, who, c.typ, c.body)
				return err
			})
			if !errs.Is(err, c.kind) {
				t.Errorf("%s: %v, want %s", c.body, err, c.kind)
			}
		}
		// A rolled-back step transaction leaves neither the resource nor
		// its audit entry.
		errRollback := errs.E(errs.Unavailable, "the step failed after writing")
		err = db.Tx(ctx, func(tx store.Tx) error {
			if _, err := recs.CreateTx(ctx, tx, who, "Observation", obs("p1")); err != nil {
				return err
			}
			return errRollback
		})
		if err != errRollback {
			t.Fatalf("rollback: %v", err)
		}
		if n := count(`SELECT count(*) FROM resources WHERE type = 'Observation'`); n != 1 {
			t.Errorf("%d Observations stored, want the one committed", n)
		}
		if n := count(`SELECT count(*) FROM audit_entries WHERE request_id = $1`, "run-run-a"); n != 1 {
			t.Errorf("%d audit entries of the run, want the committed write's only", n)
		}
		// A step reads its run's patient's records, and no other
		// patient's: the guard is bound to the run's patient.
		other, _, err := rec.Create(ctx, svc.For(access.Importer("seed")), "Observation", obs("p2"), "")
		if err != nil {
			t.Fatal(err)
		}
		g := svc.For(access.StepCaller(runStep(who)))
		if _, err := rec.Read(ctx, g, "Observation", id); err != nil {
			t.Errorf("the step reads its run's patient's Observation: %v", err)
		}
		if _, err := rec.Read(ctx, g, "Observation", other.ID); !errs.Is(err, errs.Forbidden) {
			t.Errorf("the step reads another patient's Observation: %v, want forbidden", err)
		}
		// Its searches are confined to the run's patient.
		q, err := rec.ParseQuery("Observation", nil)
		if err != nil {
			t.Fatal(err)
		}
		res, err := rec.Search(ctx, g, q)
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Matches) != 1 || res.Matches[0].ID != id {
			t.Errorf("the step's search finds %d Observations, want its patient's one", len(res.Matches))
		}
		// A run of no patient touches no record.
		none := stepRecords{access.RunRecords{Record: rec, Access: svc}}
		err = db.Tx(ctx, func(tx store.Tx) error {
			_, err := none.CreateTx(ctx, tx, engine.RunActor{RunID: "run-b", Step: "s"}, "Observation", obs("p1"))
			return err
		})
		if !errs.Is(err, errs.Forbidden) {
			t.Errorf("a run of no patient writes: %v, want forbidden", err)
		}
	})
}
