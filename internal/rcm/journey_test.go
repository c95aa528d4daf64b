package rcm

import (
	"context"
	"testing"

	"github.com/careflow/careflow/internal/store"
	"github.com/careflow/careflow/internal/store/storetest"
)

func final(j *Journey) bool { return j.Status != StatusActive }

func TestStandardOutpatientVisitIsPaid(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		e := newEnv(t, db, plan{inforce: true, claim: "approve", approvedPct: 100, paidPct: 100})
		ctx := context.Background()
		j, created, err := e.svc.StartJourney(ctx, billing(e), request(KindStandard, "29001011234567", []string{"E11.9"}, []string{"99213"}), StartOptions{})
		if err != nil || !created {
			t.Fatalf("start: %v %v", created, err)
		}
		j = e.wait(t, j.ID, "payment", final)
		if j.Outcome != OutcomePaid || j.Amounts.Billed != "450.00" || j.Amounts.Paid != "450.00" || j.Amounts.Variance != "0.00" || j.Currency != "EGP" {
			t.Fatalf("journey %+v", j)
		}
		for _, k := range []string{"patient", "coverage", "eligibility_request", "eligibility_response", "encounter", "claim", "claim_response"} {
			if j.References[k] == "" {
				t.Errorf("no %s reference: %v", k, j.References)
			}
		}
	})
}
