package auth_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/careflow/careflow/internal/auth"
	"github.com/careflow/careflow/internal/errs"
	"github.com/careflow/careflow/internal/store"
	"github.com/careflow/careflow/internal/store/storetest"
)

// clock is a settable test clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func TestCareTeamsAndRelationships(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		clk := &clock{t: policyNow}
		teams := auth.NewCareTeams(db, clk.Now)
		rel := auth.NewRelationships(db)

		ward, err := teams.Create(ctx, " Cardiology ward 3 ")
		if err != nil {
			t.Fatal(err)
		}
		if ward.Name != "Cardiology ward 3" || ward.Version != 1 {
			t.Fatalf("created %+v", ward)
		}
		if _, err := teams.Create(ctx, "Cardiology ward 3"); !errs.Is(err, errs.Conflict) {
			t.Fatalf("duplicate name: %v", err)
		}
		for _, bad := range []string{"", "a\x00b", string(make([]byte, 200))} {
			if _, err := teams.Create(ctx, bad); !errs.Is(err, errs.Invalid) {
				t.Fatalf("name %q: %v", bad, err)
			}
		}
		must := func(err error) {
			t.Helper()
			if err != nil {
				t.Fatal(err)
			}
		}
		must(teams.AddMember(ctx, ward.ID, "doc-1", "attending"))
		must(teams.AddMember(ctx, ward.ID, "doc-1", "consultant")) // idempotent; changes the role
		must(teams.AddMember(ctx, ward.ID, "nurse-1", "nurse"))
		must(teams.AddPatient(ctx, ward.ID, "pat-1"))
		must(teams.AddPatient(ctx, ward.ID, "pat-1"))
		if err := teams.AddMember(ctx, "no-such-team", "doc-1", "attending"); !errs.Is(err, errs.NotFound) {
			t.Fatalf("member of a missing team: %v", err)
		}
		if err := teams.AddPatient(ctx, ward.ID, "bad id"); !errs.Is(err, errs.Invalid) {
			t.Fatalf("bad patient id: %v", err)
		}
		if err := teams.AddMember(ctx, ward.ID, "doc-1", "Attending Physician"); !errs.Is(err, errs.Invalid) {
			t.Fatalf("bad member role: %v", err)
		}

		got, err := teams.Get(ctx, ward.ID)
		must(err)
		if len(got.Members) != 2 || got.Members[0].UserID != "doc-1" || got.Members[0].Role != "consultant" ||
			len(got.Patients) != 1 || got.Patients[0] != "pat-1" || got.Version != 6 {
			t.Fatalf("team %+v", got)
		}
		list, err := teams.List(ctx)
		must(err)
		if len(list) != 1 || list[0].MemberCount != 2 || list[0].PatientCount != 1 {
			t.Fatalf("list %+v", list)
		}
		if _, err := teams.Get(ctx, "missing"); !errs.Is(err, errs.NotFound) {
			t.Fatalf("missing team: %v", err)
		}

		check := func(user, patient string, want auth.Vias) {
			t.Helper()
			v, err := rel.Relationships(ctx, user, patient, clk.Now())
			if err != nil || v != want {
				t.Fatalf("Relationships(%s, %s) = %b, %v; want %b", user, patient, v, err, want)
			}
		}
		check("doc-1", "pat-1", auth.RelCareTeam)
		check("doc-1", "pat-2", 0)
		check("doc-2", "pat-1", 0)

		// An assignment reaches the patient until it ends.
		must(teams.Assign(ctx, "doc-2", "pat-2", clk.Now().Add(time.Hour)))
		check("doc-2", "pat-2", auth.RelAssignment)
		clk.Advance(time.Hour)
		check("doc-2", "pat-2", 0)
		// Re-assigning replaces the end.
		must(teams.Assign(ctx, "doc-2", "pat-2", clk.Now().Add(time.Minute)))
		check("doc-2", "pat-2", auth.RelAssignment)
		if err := teams.Assign(ctx, "doc-2", "pat-2", time.Time{}); !errs.Is(err, errs.Invalid) {
			t.Fatalf("assignment without an end: %v", err)
		}

		// Leaving the team or the patient leaving its care ends the reach.
		must(teams.RemovePatient(ctx, ward.ID, "pat-1"))
		check("doc-1", "pat-1", 0)
		must(teams.AddPatient(ctx, ward.ID, "pat-1"))
		must(teams.RemoveMember(ctx, ward.ID, "doc-1"))
		check("doc-1", "pat-1", 0)
		check("nurse-1", "pat-1", auth.RelCareTeam)
	})
}
