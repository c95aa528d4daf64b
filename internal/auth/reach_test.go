package auth_test

import (
	"context"
	"encoding/json"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/careflow/careflow/internal/auth"
	"github.com/careflow/careflow/internal/store"
	"github.com/careflow/careflow/internal/store/storetest"
)

// mixedPolicy is the default policy with clinical_admin given three rules
// on Observation, so that Reach has to unite them: any patient subject to
// consent, its compartment whatever the consent, and records of no
// patient.
func mixedPolicy(t *testing.T) *auth.Policy {
	t.Helper()
	var doc map[string]any
	if err := json.Unmarshal(auth.DefaultPolicyJSON(), &doc); err != nil {
		t.Fatal(err)
	}
	admin := doc["roles"].(map[string]any)["clinical_admin"].(map[string]any)
	rule := func(patients string, exempt bool) map[string]any {
		return map[string]any{"resources": []string{"Observation"}, "actions": []string{"read", "search"},
			"fields": []string{"*"}, "patients": patients, "purposes": []string{"operations"}, "consent_exempt": exempt}
	}
	admin["rules"] = append(admin["rules"].([]any), rule("any", false), rule("compartment", true), rule("none", false))
	raw, _ := json.Marshal(doc)
	p, err := auth.ParsePolicy(raw)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// Reach must let through exactly the records Decide allows one by one,
// for every role, type, purpose and kind of patient: the search is
// confined by the one and its results checked by the other, and a
// disagreement is either a leak or a total that counts dropped records.
func TestReachAgreesWithDecide(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		clk := &clock{t: policyNow}
		for name, policy := range map[string]*auth.Policy{"default": auth.DefaultPolicy(), "mixed": mixedPolicy(t)} {
			t.Run(name, func(t *testing.T) {
				access := auth.NewAccess(db, policy, clk.Now)
				patients := seedReach(t, ctx, db, access, clk, name)
				principals := []*auth.Principal{
					user(auth.Physician), user(auth.Nurse), user(auth.Billing), user(auth.ClinicalAdmin),
					user(auth.Admin), user(auth.Auditor), client(),
					user(auth.Physician, "user/Observation.rs"),
					session(auth.Physician),
				}
				for i, p := range principals {
					// The principals act as distinct users of the test
					// teams (subject u-<role>), each related as seeded.
					p.Subject = name + "-" + p.Subject
					if i == 7 {
						p.Subject += "-narrow"
					}
				}
				types := []string{"Patient", "Observation", "Claim", "Consent", "Location", "CareTeam", "AuditEvent", "Basic"}
				purposes := []auth.Purpose{"", auth.PurposeTreatment, auth.PurposePayment, auth.PurposeOperations, auth.PurposeResearch}
				checked := 0
				for _, p := range principals {
					for _, typ := range types {
						for k, purpose := range append(purposes, purposes[1:]...) {
							req := auth.Request{Action: auth.ActionRead, ResourceType: typ, Purpose: purpose}
							ctx := ctx
							if k >= len(purposes) {
								// The purpose stated for the request
								// (X-Purpose-Of-Use), not in the Request.
								ctx = auth.WithPurpose(ctx, purpose)
								req.Purpose = ""
							}
							// The reach primes a decision cache; decisions
							// are checked with it and without it.
							cached := auth.WithDecisionCache(ctx)
							r, err := access.Authorizer.Reach(cached, p, req)
							if err != nil {
								t.Fatalf("%s %s %s: %v", p.Role, typ, purpose, err)
							}
							before, err := access.Authorizer.ReachBeforeConsent(ctx, p, req)
							if err != nil {
								t.Fatal(err)
							}
							for _, patient := range append(patients, "", "p-unknown") {
								one := req
								one.PatientID = patient
								for _, c := range []context.Context{cached, ctx} {
									d := access.Authorizer.Decide(c, p, one)
									if r.Contains(patient) != d.Allowed {
										t.Fatalf("%s (%s) %s for %q patient %q: reach %v, decision %+v (reach %+v)",
											p.Role, p.Subject, typ, purpose, patient, r.Contains(patient), d, r)
									}
									// Before consent: everything Decide
									// allows, and what only consent refused.
									want := d.Allowed || d.Reason == auth.ReasonConsentDenied
									if before.Contains(patient) != want {
										t.Fatalf("%s %s for %q patient %q: reach before consent %v, decision %+v", p.Role, typ, purpose, patient, before.Contains(patient), d)
									}
								}
								checked++
							}
						}
					}
				}
				if checked < 5000 {
					t.Fatalf("only %d decisions compared", checked)
				}
			})
		}
	})
}

// seedReach relates the test users to patients in every way there is and
// records consents in and out of force; it returns the patients.
func seedReach(t *testing.T, ctx context.Context, db *store.DB, access *auth.Access, clk *clock, prefix string) []string {
	t.Helper()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	pat := func(s string) string { return prefix + "-" + s }
	team, err := access.CareTeams.Create(ctx, prefix+" ward")
	must(err)
	now := clk.Now()
	for _, role := range auth.Roles() {
		u := prefix + "-u-" + string(role)
		must(access.CareTeams.AddMember(ctx, team.ID, u, "member"))
		must(access.CareTeams.Assign(ctx, u, pat("assigned"), now.Add(time.Hour)))
		must(access.CareTeams.Assign(ctx, u, pat("ended"), now.Add(-time.Minute)))
		for _, g := range []struct {
			patient string
			opened  time.Duration
			minutes int
		}{{pat("glass"), 0, 60}, {pat("glass-deny"), 0, 60}, {pat("glass-old"), -3 * time.Hour, 60}} {
			clk.Advance(g.opened)
			_, err := access.BreakGlass.Open(ctx, auth.BreakGlassRequest{Principal: &auth.Principal{Subject: u, Role: role}, PatientID: g.patient, Reason: "emergency_treatment", Minutes: g.minutes},
				func(context.Context, store.Tx, auth.Grant) (int64, error) { return 1, nil })
			clk.Advance(-g.opened)
			must(err)
		}
	}
	// The narrow-scoped physician is in the team too.
	must(access.CareTeams.AddMember(ctx, team.ID, prefix+"-u-physician-narrow", "member"))
	for _, p := range []string{"team", "team-deny", "team-ops-deny", "team-research", "glass-deny"} {
		must(access.CareTeams.AddPatient(ctx, team.ID, pat(p)))
	}
	must(access.CareTeams.RemovePatient(ctx, team.ID, pat("glass-deny")))
	past, future := now.Add(-48*time.Hour), now.Add(48*time.Hour)
	consents := map[string][]auth.ConsentInput{
		"team-deny":      {{Purpose: auth.PurposeTreatment, Decision: auth.ConsentDeny}},
		"team-ops-deny":  {{Purpose: auth.PurposeOperations, Decision: auth.ConsentDeny}, {Purpose: auth.PurposePayment, Decision: auth.ConsentDeny}},
		"team-research":  {{Purpose: auth.PurposeResearch, Decision: auth.ConsentPermit}},
		"glass-deny":     {{Purpose: auth.PurposeTreatment, Decision: auth.ConsentDeny}},
		"other-research": {{Purpose: auth.PurposeResearch, Decision: auth.ConsentPermit}},
		"other-pay-deny": {{Purpose: auth.PurposePayment, Decision: auth.ConsentDeny}, {Purpose: auth.PurposeOperations, Decision: auth.ConsentDeny}},
		"other-later":    {{Purpose: auth.PurposePayment, Decision: auth.ConsentDeny, Start: &future}},
		"other-lapsed":   {{Purpose: auth.PurposePayment, Decision: auth.ConsentDeny, End: &past}, {Purpose: auth.PurposeResearch, Decision: auth.ConsentPermit, End: &past}},
	}
	for p, in := range consents {
		_, err := access.Consents.Put(ctx, pat(p), 0, in, "test", "test")
		must(err)
	}
	var out []string
	for _, p := range []string{"team", "team-deny", "team-ops-deny", "team-research", "assigned", "ended", "glass", "glass-deny", "glass-old",
		"other", "other-research", "other-pay-deny", "other-later", "other-lapsed"} {
		out = append(out, pat(p))
	}
	return out
}

// Reach fails closed: a look-up that fails is an error, never a wider
// reach; sources that can only decide one patient at a time say so, and
// roles that need no look-up are answered without one.
func TestReachFailsClosed(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	rel := &memRelations{vias: map[string]auth.Vias{}}
	cons := &memConsents{c: map[string]auth.ConsentDecision{}}
	a := auth.NewAuthorizer(auth.DefaultPolicy(), rel, cons, func() time.Time { return policyNow })
	read := func(typ string) auth.Request { return auth.Request{Action: auth.ActionRead, ResourceType: typ} }
	for _, c := range []struct {
		p   *auth.Principal
		typ string
	}{{user(auth.Physician), "Observation"}, {user(auth.Billing), "Claim"}} {
		if _, err := a.Reach(ctx, c.p, read(c.typ)); !errors.Is(err, auth.ErrReachUnknown) {
			t.Fatalf("%s on %s with per-patient sources: %v", c.p.Role, c.typ, err)
		}
	}
	if r, err := a.Reach(ctx, user(auth.Physician), read("Location")); err != nil || !r.Every {
		t.Fatalf("a directory: %+v %v", r, err)
	}
	for _, c := range []struct {
		p   *auth.Principal
		typ string
	}{{user(auth.Admin), "Patient"}, {user(auth.Auditor), "Observation"}, {nil, "Patient"}, {user(auth.Physician), "Claim"},
		{user(auth.Physician, "user/Patient.s"), "Patient"}, {&auth.Principal{Subject: "x", Kind: auth.KindUser, Role: "chef"}, "Patient"}} {
		r, err := a.Reach(ctx, c.p, read(c.typ))
		if err != nil || r.Every || r.NoPatient || r.AllPatients || len(r.Patients) != 0 || r.Contains("anyone") || r.Contains("") {
			t.Fatalf("%v on %s reaches %+v (%v), want nothing", c.p, c.typ, r, err)
		}
	}

	storetest.Each(t, func(t *testing.T, db *store.DB) {
		access := auth.NewAccess(db, nil, func() time.Time { return policyNow })
		// A closed database fails every look-up.
		db.Close()
		for _, c := range []struct {
			p   *auth.Principal
			typ string
		}{{user(auth.Physician), "Observation"}, {user(auth.Billing), "Claim"}, {client(), "Patient"}} {
			r, err := access.Authorizer.Reach(ctx, c.p, read(c.typ))
			if err == nil || errors.Is(err, auth.ErrReachUnknown) {
				t.Fatalf("%s on %s over a closed database: %+v %v", c.p.Role, c.typ, r, err)
			}
		}
	})
}

func TestReachContains(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		r    auth.Reach
		in   []string
		out  []string
		name string
	}{
		{auth.Reach{}, nil, []string{"", "a"}, "nothing"},
		{auth.Reach{Every: true}, []string{"", "a"}, nil, "every"},
		{auth.Reach{NoPatient: true}, []string{""}, []string{"a"}, "no patient"},
		{auth.Reach{AllPatients: true, Except: []string{"b", "d"}}, []string{"a", "c", "e"}, []string{"", "b", "d"}, "all but"},
		{auth.Reach{Patients: []string{"a", "c"}, NoPatient: true}, []string{"", "a", "c"}, []string{"b", "d"}, "some"},
	} {
		for _, p := range c.in {
			if !c.r.Contains(p) {
				t.Errorf("%s: %q not contained", c.name, p)
			}
		}
		for _, p := range c.out {
			if c.r.Contains(p) {
				t.Errorf("%s: %q contained", c.name, p)
			}
		}
	}
}

// countingConsents counts the one-patient look-ups Decide makes.
type countingConsents struct {
	*auth.Consents
	calls atomic.Int64
}

func (c *countingConsents) ConsentAt(ctx context.Context, patient string, purpose auth.Purpose, at time.Time) (auth.ConsentDecision, error) {
	c.calls.Add(1)
	return c.Consents.ConsentAt(ctx, patient, purpose, at)
}

// Prefetch loads a page's consents in one look-up: deciding the page then
// asks the source nothing, and decides exactly as without it.
func TestPrefetchSavesLookupsAndChangesNoDecision(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		clk := &clock{t: policyNow}
		access := auth.NewAccess(db, nil, clk.Now)
		patients := seedReach(t, ctx, db, access, clk, "pf")
		counting := &countingConsents{Consents: access.Consents}
		a := auth.NewAuthorizer(access.Policy, auth.NewRelationships(db), counting, clk.Now)
		for _, c := range []struct {
			p       *auth.Principal
			typ     string
			purpose auth.Purpose
		}{{user(auth.Billing), "Patient", ""}, {client(), "Patient", auth.PurposeResearch}, {client(), "Observation", ""}} {
			req := auth.Request{Action: auth.ActionRead, ResourceType: c.typ, Purpose: c.purpose}
			want := map[string]auth.Decision{}
			for _, patient := range patients {
				one := req
				one.PatientID = patient
				want[patient] = a.Decide(ctx, c.p, one)
			}
			cached := auth.WithDecisionCache(ctx)
			a.Prefetch(cached, c.p, c.purpose, patients)
			before := counting.calls.Load()
			for _, patient := range patients {
				one := req
				one.PatientID = patient
				if d := a.Decide(cached, c.p, one); d.Allowed != want[patient].Allowed || d.Reason != want[patient].Reason || d.Consent != want[patient].Consent {
					t.Fatalf("%s %s patient %s: prefetched %+v, want %+v", c.p.Role, c.typ, patient, d, want[patient])
				}
			}
			if n := counting.calls.Load() - before; n != 0 {
				t.Fatalf("%s %s: %d consent look-ups after the prefetch", c.p.Role, c.typ, n)
			}
		}
	})
}
