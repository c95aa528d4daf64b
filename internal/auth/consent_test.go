package auth_test

import (
	"context"
	"testing"
	"time"

	"github.com/careflow/careflow/internal/auth"
	"github.com/careflow/careflow/internal/errs"
	"github.com/careflow/careflow/internal/store"
	"github.com/careflow/careflow/internal/store/storetest"
)

func TestConsents(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		c := auth.NewConsents(db, func() time.Time { return policyNow })
		at := func(patient string, pu auth.Purpose, when time.Time) auth.ConsentDecision {
			t.Helper()
			d, err := c.ConsentAt(ctx, patient, pu, when)
			if err != nil {
				t.Fatal(err)
			}
			return d
		}
		if got := at("p1", auth.PurposeResearch, policyNow); got != auth.ConsentNone {
			t.Fatalf("nothing recorded: %s", got)
		}
		empty, err := c.Get(ctx, "p1")
		if err != nil || empty.Version != 0 || len(empty.Consents) != 0 {
			t.Fatalf("empty set %+v %v", empty, err)
		}

		start, end := policyNow.Add(24*time.Hour), policyNow.Add(48*time.Hour)
		set, err := c.Put(ctx, "p1", 0, []auth.ConsentInput{
			{Purpose: auth.PurposeResearch, Decision: auth.ConsentPermit, Start: &start, End: &end},
			{Purpose: auth.PurposeTreatment, Decision: auth.ConsentDeny},
		}, "admin-1", "api")
		if err != nil {
			t.Fatal(err)
		}
		if set.Version != 1 || len(set.Consents) != 2 || set.Consents[0].Purpose != auth.PurposeTreatment ||
			set.Consents[1].Start == nil || !set.Consents[1].Start.Equal(start) || set.Consents[1].RecordedBy != "admin-1" {
			t.Fatalf("set %+v", set)
		}
		if got := at("p1", auth.PurposeTreatment, policyNow); got != auth.ConsentDeny {
			t.Fatalf("treatment: %s", got)
		}
		// The research permit is in force only within its period.
		for _, c := range []struct {
			when time.Time
			want auth.ConsentDecision
		}{
			{policyNow, auth.ConsentNone},
			{start, auth.ConsentPermit},
			{end.Add(-time.Microsecond), auth.ConsentPermit},
			{end, auth.ConsentNone},
		} {
			if got := at("p1", auth.PurposeResearch, c.when); got != c.want {
				t.Fatalf("research at %s: %s, want %s", c.when, got, c.want)
			}
		}
		// Another patient is untouched.
		if got := at("p2", auth.PurposeTreatment, policyNow); got != auth.ConsentNone {
			t.Fatalf("p2: %s", got)
		}

		// A stale version is a conflict and changes nothing.
		if _, err := c.Put(ctx, "p1", 0, nil, "admin-2", "api"); !errs.Is(err, errs.Conflict) {
			t.Fatalf("stale version: %v", err)
		}
		if got := at("p1", auth.PurposeTreatment, policyNow); got != auth.ConsentDeny {
			t.Fatalf("after a conflict: %s", got)
		}
		// Replacing the set removes what is left out.
		set, err = c.Put(ctx, "p1", 1, []auth.ConsentInput{{Purpose: auth.PurposePayment, Decision: auth.ConsentDeny}}, "admin-2", "api")
		if err != nil || set.Version != 2 || len(set.Consents) != 1 {
			t.Fatalf("replace: %+v %v", set, err)
		}
		if got := at("p1", auth.PurposeTreatment, policyNow); got != auth.ConsentNone {
			t.Fatalf("treatment after replace: %s", got)
		}

		bad := []struct {
			name string
			in   []auth.ConsentInput
			pid  string
		}{
			{"an unknown purpose", []auth.ConsentInput{{Purpose: "marketing", Decision: auth.ConsentDeny}}, "p3"},
			{"an unknown decision", []auth.ConsentInput{{Purpose: auth.PurposePayment, Decision: "maybe"}}, "p3"},
			{"a purpose twice", []auth.ConsentInput{{Purpose: auth.PurposePayment, Decision: auth.ConsentDeny}, {Purpose: auth.PurposePayment, Decision: auth.ConsentPermit}}, "p3"},
			{"an end before the start", []auth.ConsentInput{{Purpose: auth.PurposePayment, Decision: auth.ConsentDeny, Start: &end, End: &start}}, "p3"},
			{"a bad patient id", nil, "a b"},
		}
		for _, b := range bad {
			if _, err := c.Put(ctx, b.pid, 0, b.in, "admin", "api"); !errs.Is(err, errs.Invalid) {
				t.Errorf("%s: %v", b.name, err)
			}
		}
	})
}
