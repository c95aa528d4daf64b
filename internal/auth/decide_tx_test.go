package auth_test

import (
	"context"
	"testing"
	"time"

	"github.com/careflow/careflow/internal/auth"
	"github.com/careflow/careflow/internal/store"
	"github.com/careflow/careflow/internal/store/storetest"
)

// A decision made inside a transaction reads the patient's relationships
// and consent through that transaction. On a pool of one connection the
// transaction holds the only one: a decision that asked the pool for
// another would wait until its context ended and come back as
// relationship_unavailable. It also sees what the transaction wrote.
func TestDecideTxReadsThroughTheTransaction(t *testing.T) {
	t.Parallel()
	for _, d := range storetest.Backends() {
		t.Run(string(d), func(t *testing.T) {
			t.Parallel()
			db := storetest.OpenMaxConns(t, d, 1)
			ctx := context.Background()
			clk := &clock{t: policyNow}
			acc := auth.NewAccess(db, nil, clk.Now)
			teams := auth.NewCareTeams(db, clk.Now)
			for _, p := range []string{"pat-1", "pat-2"} {
				if err := teams.Assign(ctx, "u-doc", p, policyNow.Add(time.Hour)); err != nil {
					t.Fatal(err)
				}
			}
			if _, err := acc.Consents.Put(ctx, "pat-2", 0, []auth.ConsentInput{{Purpose: auth.PurposeTreatment, Decision: auth.ConsentDeny}},
				"u-admin", "test"); err != nil {
				t.Fatal(err)
			}
			doc := &auth.Principal{Subject: "u-doc", Kind: auth.KindUser, Role: auth.Physician, Scopes: []string{"user/*.cruds"}}
			read := func(patient string) auth.Request {
				return auth.Request{Action: auth.ActionRead, ResourceType: "Observation", PatientID: patient, Purpose: auth.PurposeTreatment}
			}
			tctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
			start := time.Now()
			err := db.Tx(tctx, func(tx store.Tx) error {
				if got := acc.Authorizer.DecideTx(tctx, tx, doc, read("pat-1")); !got.Allowed || got.Via != auth.ViaAssignment {
					t.Errorf("assigned patient: %+v", got)
				}
				if got := acc.Authorizer.DecideTx(tctx, tx, doc, read("pat-2")); got.Allowed || got.Reason != auth.ReasonConsentDenied {
					t.Errorf("refused consent: %+v", got)
				}
				if got := acc.Authorizer.DecideTx(tctx, tx, doc, read("pat-3")); got.Allowed || got.Reason != auth.ReasonNotRelated {
					t.Errorf("unrelated patient: %+v", got)
				}
				// An assignment written in the transaction counts in it.
				if _, err := tx.Exec(tctx, `INSERT INTO access_assignments (user_id, patient_id, ends_at, created_at, updated_at) VALUES ($1, $2, $3, $4, $4)`,
					"u-doc", "pat-3", policyNow.Add(time.Hour).UTC(), policyNow.UTC()); err != nil {
					return err
				}
				if got := acc.Authorizer.DecideTx(tctx, tx, doc, read("pat-3")); !got.Allowed {
					t.Errorf("patient assigned in the transaction: %+v", got)
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if took := time.Since(start); took > 2*time.Second {
				t.Errorf("four decisions in a transaction took %v: they waited for a second connection", took)
			}
			// Outside a transaction, Decide reads through the pool as before.
			if got := acc.Authorizer.Decide(ctx, doc, read("pat-1")); !got.Allowed {
				t.Errorf("Decide: %+v", got)
			}
		})
	}
}
