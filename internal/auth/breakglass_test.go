package auth_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/careflow/careflow/internal/auth"
	"github.com/careflow/careflow/internal/errs"
	"github.com/careflow/careflow/internal/store"
	"github.com/careflow/careflow/internal/store/storetest"
)

func TestBreakGlassGrants(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		clk := &clock{t: policyNow}
		access := auth.NewAccess(db, nil, clk.Now)
		doc := user(auth.Physician)
		var recorded []auth.Grant
		record := func(_ context.Context, _ store.Tx, g auth.Grant) (int64, error) {
			recorded = append(recorded, g)
			return int64(100 + len(recorded)), nil
		}
		req := auth.BreakGlassRequest{Principal: doc, PatientID: "pat-9", Reason: "patient_unresponsive", RequestID: "req-1"}

		// Without the grant the physician does not reach the patient.
		decide := func() auth.Decision {
			return access.Authorizer.Decide(ctx, doc, auth.Request{Action: auth.ActionRead, ResourceType: "Observation", PatientID: "pat-9"})
		}
		if d := decide(); d.Allowed {
			t.Fatalf("before the grant: %+v", d)
		}

		// A failing audit record stores no grant.
		_, err := access.BreakGlass.Open(ctx, req, func(context.Context, store.Tx, auth.Grant) (int64, error) {
			return 0, errors.New("audit down")
		})
		if err == nil {
			t.Fatal("Open succeeded with a failing audit record")
		}
		if d := decide(); d.Allowed {
			t.Fatalf("a grant exists after a failed audit: %+v", d)
		}

		g, err := access.BreakGlass.Open(ctx, req, record)
		if err != nil {
			t.Fatal(err)
		}
		if g.ExpiresAt.Sub(g.OpenedAt) != 60*time.Minute || g.AuditSeq == nil || *g.AuditSeq != 101 || len(recorded) != 1 || recorded[0].ID != g.ID {
			t.Fatalf("grant %+v, recorded %+v", g, recorded)
		}
		if d := decide(); !d.Allowed || !d.BreakGlass || d.Via != auth.ViaBreakGlass {
			t.Fatalf("during the grant: %+v", d)
		}
		clk.Advance(59 * time.Minute)
		if d := decide(); !d.Allowed {
			t.Fatalf("a minute before expiry: %+v", d)
		}
		clk.Advance(time.Minute)
		if d := decide(); d.Allowed {
			t.Fatalf("at expiry: %+v", d)
		}

		// A second, shorter grant; then the review list.
		req.Minutes, req.Reason = 15, "emergency_treatment"
		g2, err := access.BreakGlass.Open(ctx, req, record)
		if err != nil {
			t.Fatal(err)
		}
		other := req
		other.Principal = user(auth.Nurse)
		other.PatientID = "pat-7"
		if _, err := access.BreakGlass.Open(ctx, other, record); err != nil {
			t.Fatal(err)
		}
		page, err := access.BreakGlass.List(ctx, auth.GrantFilter{})
		if err != nil || len(page.Grants) != 3 || page.Grants[1].ID != g2.ID || page.Next != "" {
			t.Fatalf("list: %+v %v", page, err)
		}
		page, err = access.BreakGlass.List(ctx, auth.GrantFilter{UserID: doc.Subject})
		if err != nil || len(page.Grants) != 2 {
			t.Fatalf("by user: %+v %v", page, err)
		}
		page, err = access.BreakGlass.List(ctx, auth.GrantFilter{ActiveAt: clk.Now(), PatientID: "pat-9"})
		if err != nil || len(page.Grants) != 1 || page.Grants[0].ID != g2.ID {
			t.Fatalf("active: %+v %v", page, err)
		}
		page, err = access.BreakGlass.List(ctx, auth.GrantFilter{Limit: 2})
		if err != nil || len(page.Grants) != 2 || page.Next == "" {
			t.Fatalf("first page: %+v %v", page, err)
		}
		page, err = access.BreakGlass.List(ctx, auth.GrantFilter{Limit: 2, After: page.Next})
		if err != nil || len(page.Grants) != 1 || page.Grants[0].ID != g.ID {
			t.Fatalf("second page: %+v %v", page, err)
		}

		// Grants are kept for review: the database refuses to delete them.
		if _, err := db.Writer().Exec(ctx, `DELETE FROM break_glass_grants WHERE id = $1`, g.ID); err == nil {
			t.Fatal("a grant was deleted")
		}

		for _, bad := range []struct {
			name string
			req  auth.BreakGlassRequest
			kind errs.Kind
		}{
			{"a free-text reason", auth.BreakGlassRequest{Principal: doc, PatientID: "p", Reason: "collapsed in lobby"}, errs.Invalid},
			{"too long", auth.BreakGlassRequest{Principal: doc, PatientID: "p", Reason: "emergency_treatment", Minutes: 241}, errs.Invalid},
			{"negative", auth.BreakGlassRequest{Principal: doc, PatientID: "p", Reason: "emergency_treatment", Minutes: -1}, errs.Invalid},
			{"a bad patient id", auth.BreakGlassRequest{Principal: doc, PatientID: "../x", Reason: "emergency_treatment"}, errs.Invalid},
			{"no principal", auth.BreakGlassRequest{PatientID: "p", Reason: "emergency_treatment"}, errs.Unauthenticated},
		} {
			if _, err := access.BreakGlass.Open(ctx, bad.req, record); !errs.Is(err, bad.kind) {
				t.Errorf("%s: %v, want %s", bad.name, err, bad.kind)
			}
		}
	})
}
