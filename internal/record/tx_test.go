package record

import (
	"context"
	"errors"
	"net/url"
	"testing"

	"github.com/careflow/careflow/internal/errs"
	"github.com/careflow/careflow/internal/store"
	"github.com/careflow/careflow/internal/store/storetest"
)

// The *Tx calls write, read and search inside the caller's transaction:
// each sees the transaction's own writes, and a rollback of the caller's
// transaction leaves none of them (nor their history or index rows).
func TestTxCallsCommitAndRollBackWithTheCallersTransaction(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		s := newService(t, db)
		body := []byte(`{"resourceType":"Observation","id":"o1","status":"final","code":{"text":"x"},"subject":{"reference":"Patient/p1"},"identifier":[{"system":"urn:t","value":"v1"}]}`)
		errStop := errors.New("the caller's work failed")
		run := func(commit bool) {
			err := db.Tx(ctx, func(tx store.Tx) error {
				rec, created, err := s.UpdateTx(ctx, tx, nil, "Observation", "o1", body, "")
				if err != nil || !created {
					t.Fatalf("UpdateTx: %v %v", created, err)
				}
				got, err := s.ReadTx(ctx, tx, nil, "Observation", "o1")
				if err != nil || got.Version != rec.Version || got.PatientID != "p1" {
					t.Fatalf("ReadTx in the transaction: %+v %v", got, err)
				}
				q, err := s.ParseQuery("Observation", url.Values{"identifier": {"urn:t|v1"}})
				if err != nil {
					t.Fatal(err)
				}
				res, err := s.SearchTx(ctx, tx, nil, q)
				if err != nil || len(res.Matches) != 1 {
					t.Fatalf("SearchTx in the transaction: %v %v", res, err)
				}
				created2, _, err := s.CreateTx(ctx, tx, nil, "Observation", []byte(`{"resourceType":"Observation","status":"final","code":{"text":"y"},"subject":{"reference":"Patient/p1"}}`), "")
				if err != nil || created2.ID == "" {
					t.Fatalf("CreateTx: %v", err)
				}
				if !commit {
					return errStop
				}
				return nil
			})
			if commit && err != nil || !commit && err != errStop {
				t.Fatalf("transaction: %v", err)
			}
		}
		run(false)
		if _, err := s.Read(ctx, nil, "Observation", "o1"); !errs.Is(err, errs.NotFound) {
			t.Fatalf("after a rollback: %v, want not found", err)
		}
		var rows int
		if err := db.Reader().QueryRow(ctx, `SELECT (SELECT count(*) FROM resources) + (SELECT count(*) FROM resource_history)`).Scan(&rows); err != nil || rows != 0 {
			t.Fatalf("%d rows left by a rolled-back transaction (%v)", rows, err)
		}
		run(true)
		if rec, err := s.Read(ctx, nil, "Observation", "o1"); err != nil || rec.Version != 1 {
			t.Fatalf("after the commit: %+v %v", rec, err)
		}
		if _, _, err := s.UpdateTx(ctx, nil, nil, "Observation", "not a valid id!", body, ""); !errs.Is(err, errs.Invalid) {
			t.Fatalf("UpdateTx of an invalid id: %v", err)
		}
	})
}
