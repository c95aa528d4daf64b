package auth_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/careflow/careflow/internal/auth"
)

// policyNow is the fixed clock of the policy tests.
var policyNow = time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)

// memRelations is an in-memory RelationshipSource keyed "user|patient".
type memRelations struct {
	mu    sync.Mutex
	vias  map[string]auth.Vias
	calls int
	fail  map[string]bool // patients whose look-up fails
}

func (m *memRelations) Relationships(_ context.Context, user, patient string, _ time.Time) (auth.Vias, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.calls++
	if m.fail[patient] {
		return 0, errors.New("database down")
	}
	return m.vias[user+"|"+patient], nil
}

// memConsents is an in-memory ConsentSource keyed "patient|purpose".
type memConsents struct {
	mu    sync.Mutex
	c     map[string]auth.ConsentDecision
	calls int
	fail  map[string]bool
}

func (m *memConsents) ConsentAt(_ context.Context, patient string, purpose auth.Purpose, _ time.Time) (auth.ConsentDecision, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.calls++
	if m.fail[patient] {
		return "", errors.New("database down")
	}
	if d, ok := m.c[patient+"|"+string(purpose)]; ok {
		return d, nil
	}
	return auth.ConsentNone, nil
}

func user(role auth.Role, scopes ...string) *auth.Principal {
	if scopes == nil {
		scopes = []string{"openid", "user/*.cruds"}
	}
	return &auth.Principal{Subject: "u-" + string(role), Kind: auth.KindUser, Role: role, Scopes: scopes}
}

// session is a careflow login session's principal: a session id, and the
// token's scopes as given (none by default).
func session(role auth.Role, scopes ...string) *auth.Principal {
	return &auth.Principal{Subject: "u-" + string(role), Kind: auth.KindUser, Role: role, Scopes: scopes, SessionID: "s-1", Issuer: "careflow"}
}

func client(scopes ...string) *auth.Principal {
	if scopes == nil {
		scopes = []string{"system/*.cruds"}
	}
	return &auth.Principal{Subject: "c-integration", Kind: auth.KindClient, Role: auth.Integration, Scopes: scopes}
}

func TestDefaultPolicyLoadsAndCoversEveryRole(t *testing.T) {
	t.Parallel()
	p := auth.DefaultPolicy()
	for _, r := range auth.Roles() {
		if p.DefaultPurpose(r) == "" {
			t.Errorf("role %s is not in the default policy", r)
		}
	}
	if got := p.DefaultConsent(auth.PurposeResearch); got != auth.ConsentDeny {
		t.Fatalf("research default consent = %s", got)
	}
	if got := p.DefaultConsent(auth.PurposeTreatment); got != auth.ConsentPermit {
		t.Fatalf("treatment default consent = %s", got)
	}
	bg := p.BreakGlass()
	if bg.DefaultMinutes != 60 || bg.MaxMinutes < 60 || len(bg.Reasons) == 0 {
		t.Fatalf("break-glass settings %+v", bg)
	}
	if !bytes.Equal(auth.DefaultPolicyJSON(), auth.DefaultPolicyJSON()) || len(auth.DefaultPolicyJSON()) == 0 {
		t.Fatal("DefaultPolicyJSON")
	}
}

// mutate returns the default policy document with one change applied.
func mutate(t *testing.T, change func(doc map[string]any)) []byte {
	t.Helper()
	var doc map[string]any
	if err := json.Unmarshal(auth.DefaultPolicyJSON(), &doc); err != nil {
		t.Fatal(err)
	}
	change(doc)
	b, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func firstRule(doc map[string]any, role string) map[string]any {
	roles := doc["roles"].(map[string]any)
	return roles[role].(map[string]any)["rules"].([]any)[0].(map[string]any)
}

func TestPolicyValidationNamesWhatIsWrong(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name   string
		change func(doc map[string]any)
		want   string
	}{
		{"an unknown role", func(d map[string]any) {
			d["roles"].(map[string]any)["surgeon"] = map[string]any{"principals": []any{"people"}, "default_purpose": "treatment", "rules": []any{}}
		}, `unknown role "surgeon"`},
		{"an unknown resource type", func(d map[string]any) {
			firstRule(d, "physician")["resources"] = []any{"Patient", "Observaton"}
		}, `unknown resource type "Observaton"`},
		{"an unknown action", func(d map[string]any) {
			firstRule(d, "nurse")["actions"] = []any{"read", "purge"}
		}, `unknown action "purge"`},
		{"an unknown purpose in a rule", func(d map[string]any) {
			firstRule(d, "billing")["purposes"] = []any{"marketing"}
		}, `unknown purpose "marketing"`},
		{"an unknown patient scope", func(d map[string]any) {
			firstRule(d, "billing")["patients"] = "everyone"
		}, `patients must be compartment, any or none, not "everyone"`},
		{"a rule without fields", func(d map[string]any) {
			delete(firstRule(d, "auditor"), "fields")
		}, `roles.auditor.rules[0]: fields must be`},
		{"a star among other fields", func(d map[string]any) {
			firstRule(d, "auditor")["fields"] = []any{"*", "id"}
		}, `"*" must stand alone`},
		{"a misspelt key", func(d map[string]any) {
			firstRule(d, "auditor")["action"] = []any{"read"}
		}, `unknown field "action"`},
		{"research presumed", func(d map[string]any) {
			d["purposes"].(map[string]any)["research"].(map[string]any)["default_consent"] = "permit"
		}, "research always requires the patient's explicit permit"},
		{"a purpose without a default", func(d map[string]any) {
			delete(d["purposes"].(map[string]any), "payment")
		}, `purpose "payment" is missing`},
		{"break-the-glass into research", func(d map[string]any) {
			d["break_glass"].(map[string]any)["purposes"] = []any{"treatment", "research"}
		}, "research cannot be reached by breaking the glass"},
		{"a break-the-glass default over the maximum", func(d map[string]any) {
			d["break_glass"].(map[string]any)["default_minutes"] = 500
		}, "break_glass: need"},
		{"a free-text reason", func(d map[string]any) {
			d["break_glass"].(map[string]any)["reasons"] = []any{"patient collapsed in the lobby"}
		}, "is not a code"},
		{"a role that does not say whether people or clients may have it", func(d map[string]any) {
			delete(d["roles"].(map[string]any)["integration"].(map[string]any), "principals")
		}, `roles.integration.principals is required`},
		{"an unknown kind of principal", func(d map[string]any) {
			d["roles"].(map[string]any)["nurse"].(map[string]any)["principals"] = []any{"people", "robots"}
		}, `roles.nurse.principals: "robots" is neither`},
		{"a wrong version", func(d map[string]any) { d["version"] = 3 }, "version must be 2"},
		{"system session scopes", func(d map[string]any) { d["session_scopes"] = []any{"system/*.cruds"} }, `session_scopes: "system/*.cruds"`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			_, err := auth.ParsePolicy(mutate(t, c.change))
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want it to contain %q", err, c.want)
			}
		})
	}
}

func TestLoadPolicyFileReadsAnOverride(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	// An override that takes billing's access away entirely.
	b := mutate(t, func(d map[string]any) { delete(d["roles"].(map[string]any), "billing") })
	path := filepath.Join(dir, "policy.json")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	p, err := auth.LoadPolicyFile(path)
	if err != nil {
		t.Fatal(err)
	}
	a := auth.NewAuthorizer(p, &memRelations{}, &memConsents{}, func() time.Time { return policyNow })
	d := a.Decide(context.Background(), user(auth.Billing), auth.Request{Action: auth.ActionRead, ResourceType: "Claim", PatientID: "p1"})
	if d.Allowed || d.Reason != auth.ReasonUnknownRole {
		t.Fatalf("billing under the override: %+v", d)
	}
	if _, err := auth.LoadPolicyFile(filepath.Join(dir, "missing.json")); err == nil {
		t.Fatal("a missing file loaded")
	}
	if err := os.WriteFile(path, []byte(`{"version":1} {}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := auth.LoadPolicyFile(path); err == nil || !strings.Contains(err.Error(), path) {
		t.Fatalf("trailing data: %v", err)
	}
}

func TestDecide(t *testing.T) {
	t.Parallel()
	rel := &memRelations{
		vias: map[string]auth.Vias{
			"u-physician|own":     auth.RelCareTeam,
			"u-physician|work":    auth.RelAssignment,
			"u-physician|glass":   auth.RelBreakGlass,
			"u-physician|refuser": auth.RelCareTeam,
			"u-physician|glassno": auth.RelBreakGlass,
			"u-nurse|own":         auth.RelCareTeam,
		},
		fail: map[string]bool{"relfail": true},
	}
	cons := &memConsents{
		c: map[string]auth.ConsentDecision{
			"refuser|treatment": auth.ConsentDeny,
			"glassno|treatment": auth.ConsentDeny,
			"nopay|payment":     auth.ConsentDeny,
			"noops|operations":  auth.ConsentDeny,
			"study|research":    auth.ConsentPermit,
		},
		fail: map[string]bool{"consfail": true},
	}
	az := auth.NewAuthorizer(auth.DefaultPolicy(), rel, cons, func() time.Time { return policyNow })
	rq := func(a auth.Action, typ, patient string, pu auth.Purpose) auth.Request {
		return auth.Request{Action: a, ResourceType: typ, PatientID: patient, Purpose: pu}
	}
	cases := []struct {
		name       string
		p          *auth.Principal
		req        auth.Request
		allowed    bool
		reason     auth.Reason
		via        auth.Via
		breakGlass bool
	}{
		{"a physician reads an observation of a care-team patient", user(auth.Physician), rq(auth.ActionRead, "Observation", "own", ""), true, auth.ReasonAllowed, auth.ViaCareTeam, false},
		{"a physician may not read another patient's observation", user(auth.Physician), rq(auth.ActionRead, "Observation", "other", ""), false, auth.ReasonNotRelated, "", false},
		{"a physician reaches a patient of assigned work", user(auth.Physician), rq(auth.ActionUpdate, "Encounter", "work", ""), true, auth.ReasonAllowed, auth.ViaAssignment, false},
		{"a physician reaches a patient through break-the-glass, flagged", user(auth.Physician), rq(auth.ActionRead, "Condition", "glass", ""), true, auth.ReasonAllowed, auth.ViaBreakGlass, true},
		{"break-the-glass passes a treatment refusal", user(auth.Physician), rq(auth.ActionRead, "Condition", "glassno", ""), true, auth.ReasonAllowed, auth.ViaBreakGlass, true},
		{"a care-team physician is stopped by a treatment refusal", user(auth.Physician), rq(auth.ActionRead, "Condition", "refuser", ""), false, auth.ReasonConsentDenied, "", false},
		{"a refusing patient's consent stays readable to the care team", user(auth.Physician), rq(auth.ActionRead, "Consent", "refuser", ""), true, auth.ReasonAllowed, auth.ViaCareTeam, false},
		{"break-the-glass does not count for payment", user(auth.Physician), rq(auth.ActionRead, "Coverage", "glass", auth.PurposePayment), false, auth.ReasonPurposeNotAllowed, "", false},
		{"a physician may not delete", user(auth.Physician), rq(auth.ActionDelete, "Observation", "own", ""), false, auth.ReasonNoRule, "", false},
		{"a physician may break the glass for any patient", user(auth.Physician), rq(auth.ActionBreakGlass, "Patient", "other", ""), true, auth.ReasonAllowed, auth.ViaAny, false},
		{"a nurse does not prescribe", user(auth.Nurse), rq(auth.ActionCreate, "MedicationRequest", "own", ""), false, auth.ReasonNoRule, "", false},
		{"a nurse reads prescriptions", user(auth.Nurse), rq(auth.ActionRead, "MedicationRequest", "own", ""), true, auth.ReasonAllowed, auth.ViaCareTeam, false},
		{"billing reads any patient's claim", user(auth.Billing), rq(auth.ActionRead, "Claim", "other", ""), true, auth.ReasonAllowed, auth.ViaAny, false},
		{"billing is stopped by a payment refusal", user(auth.Billing), rq(auth.ActionRead, "Claim", "nopay", ""), false, auth.ReasonConsentDenied, "", false},
		{"billing reads no observations", user(auth.Billing), rq(auth.ActionRead, "Observation", "own", ""), false, auth.ReasonNoRule, "", false},
		{"billing reads no clinical notes", user(auth.Billing), rq(auth.ActionRead, "DocumentReference", "own", ""), false, auth.ReasonNoRule, "", false},
		{"billing may not act for treatment", user(auth.Billing), rq(auth.ActionRead, "Claim", "own", auth.PurposeTreatment), false, auth.ReasonPurposeNotAllowed, "", false},
		{"the auditor searches the audit log", user(auth.Auditor), rq(auth.ActionSearch, "AuditLog", "", ""), true, auth.ReasonAllowed, auth.ViaNone, false},
		{"the auditor reads nothing clinical", user(auth.Auditor), rq(auth.ActionRead, "Patient", "own", ""), false, auth.ReasonNoRule, "", false},
		{"admin manages users", user(auth.Admin), rq(auth.ActionCreate, "User", "", ""), true, auth.ReasonAllowed, auth.ViaNone, false},
		{"admin reads no PHI", user(auth.Admin), rq(auth.ActionRead, "Patient", "own", ""), false, auth.ReasonNoRule, "", false},
		{"admin does not read the audit log", user(auth.Admin), rq(auth.ActionSearch, "AuditLog", "", ""), false, auth.ReasonNoRule, "", false},
		{"clinical_admin records consent while operations are refused", user(auth.ClinicalAdmin), rq(auth.ActionUpdate, "Consent", "noops", ""), true, auth.ReasonAllowed, auth.ViaAny, false},
		{"clinical_admin is stopped from demographics by an operations refusal", user(auth.ClinicalAdmin), rq(auth.ActionRead, "Patient", "noops", ""), false, auth.ReasonConsentDenied, "", false},
		{"research needs an explicit permit", client(), rq(auth.ActionExport, "Patient", "other", auth.PurposeResearch), false, auth.ReasonConsentDenied, "", false},
		{"research with a permit", client(), rq(auth.ActionExport, "Patient", "study", auth.PurposeResearch), true, auth.ReasonAllowed, auth.ViaAny, false},
		{"a client's user/ scopes grant nothing", client("user/*.cruds"), rq(auth.ActionRead, "Patient", "own", ""), false, auth.ReasonScope, "", false},
		{"a user's system/ scopes grant nothing", user(auth.Physician, "system/*.cruds"), rq(auth.ActionRead, "Patient", "own", ""), false, auth.ReasonScope, "", false},
		{"patient/ scopes grant nothing without a launch context", user(auth.Physician, "patient/*.cruds"), rq(auth.ActionRead, "Patient", "own", ""), false, auth.ReasonScope, "", false},
		{"granular scopes grant nothing", user(auth.Physician, "user/Observation.rs?category=laboratory"), rq(auth.ActionRead, "Observation", "own", ""), false, auth.ReasonScope, "", false},
		{"no scopes, no access", user(auth.Physician, "openid"), rq(auth.ActionRead, "Patient", "own", ""), false, auth.ReasonScope, "", false},
		{"a read scope allows a read", user(auth.Physician, "user/Observation.rs"), rq(auth.ActionRead, "Observation", "own", ""), true, auth.ReasonAllowed, auth.ViaCareTeam, false},
		{"a read scope does not allow a create", user(auth.Physician, "user/Observation.rs"), rq(auth.ActionCreate, "Observation", "own", ""), false, auth.ReasonScope, "", false},
		{"a scope for one type does not cover another", user(auth.Physician, "user/Observation.rs"), rq(auth.ActionRead, "Condition", "own", ""), false, auth.ReasonScope, "", false},
		{"v1 read scopes work", user(auth.Physician, "user/Observation.read"), rq(auth.ActionSearch, "Observation", "own", ""), true, auth.ReasonAllowed, auth.ViaCareTeam, false},
		{"a search across patients is allowed and rechecked", user(auth.Physician), rq(auth.ActionSearch, "Condition", "", ""), true, auth.ReasonAllowed, "", false},
		{"a read names its patient", user(auth.Physician), rq(auth.ActionRead, "Condition", "", ""), false, auth.ReasonPatientRequired, "", false},
		// Records that name no patient (issue #9): reached by none rules,
		// and a write of one no rule could read back is refused.
		{"a physician reads an Observation of no stored patient", user(auth.Physician), rq(auth.ActionRead, "Observation", "", ""), true, auth.ReasonAllowed, auth.ViaNone, false},
		{"billing reads a PaymentNotice, which names no patient", user(auth.Billing), rq(auth.ActionRead, "PaymentNotice", "", ""), true, auth.ReasonAllowed, auth.ViaNone, false},
		{"billing updates a PaymentReconciliation", user(auth.Billing), rq(auth.ActionUpdate, "PaymentReconciliation", "", ""), true, auth.ReasonAllowed, auth.ViaNone, false},
		{"clinical_admin reads an organisational Task", user(auth.ClinicalAdmin), rq(auth.ActionRead, "Task", "", ""), true, auth.ReasonAllowed, auth.ViaNone, false},
		{"billing may not read a Bundle", user(auth.Billing), rq(auth.ActionRead, "Bundle", "", ""), false, auth.ReasonNoRule, "", false},
		{"a Consent of no patient would be write-only", user(auth.ClinicalAdmin), rq(auth.ActionCreate, "Consent", "", ""), false, auth.ReasonUnreachableRecord, "", false},
		{"so would its update", user(auth.ClinicalAdmin), rq(auth.ActionUpdate, "Consent", "", ""), false, auth.ReasonUnreachableRecord, "", false},
		{"a Consent of a patient is not", user(auth.ClinicalAdmin), rq(auth.ActionCreate, "Consent", "own", ""), true, auth.ReasonAllowed, auth.ViaAny, false},
		{"the write-only refusal comes after the role's rules", user(auth.Auditor), rq(auth.ActionCreate, "Consent", "", ""), false, auth.ReasonNoRule, "", false},
		{"a relationship look-up failure denies", user(auth.Physician), rq(auth.ActionRead, "Observation", "relfail", ""), false, auth.ReasonRelationshipUnavailable, "", false},
		{"a consent look-up failure denies", user(auth.Billing), rq(auth.ActionRead, "Claim", "consfail", ""), false, auth.ReasonConsentUnavailable, "", false},
		{"a person's session with the integration role reads no patient", session(auth.Integration), rq(auth.ActionRead, "Patient", "other", ""), false, auth.ReasonRoleNotForPrincipal, "", false},
		{"a person with the integration role and every user scope reads no patient", user(auth.Integration), rq(auth.ActionSearch, "Observation", "", ""), false, auth.ReasonRoleNotForPrincipal, "", false},
		{"a machine client with a physician's role reads nothing", &auth.Principal{Subject: "c-1", Kind: auth.KindClient, Role: auth.Physician, Scopes: []string{"system/*.cruds"}}, rq(auth.ActionRead, "Patient", "own", ""), false, auth.ReasonRoleNotForPrincipal, "", false},
		{"an unknown role is denied", &auth.Principal{Subject: "x", Kind: auth.KindUser, Role: "surgeon", Scopes: []string{"user/*.*"}}, rq(auth.ActionRead, "Patient", "own", ""), false, auth.ReasonUnknownRole, "", false},
		{"no principal is denied", nil, rq(auth.ActionRead, "Patient", "own", ""), false, auth.ReasonUnauthenticated, "", false},
		{"an unknown resource type is denied", user(auth.Physician), rq(auth.ActionRead, "Spaceship", "own", ""), false, auth.ReasonUnknownResource, "", false},
		{"an unknown action is denied", user(auth.Physician), rq("purge", "Patient", "own", ""), false, auth.ReasonUnknownAction, "", false},
		{"an unknown purpose is denied", user(auth.Physician), rq(auth.ActionRead, "Patient", "own", "marketing"), false, auth.ReasonUnknownPurpose, "", false},
		{"a careflow session without resource scopes acts with the session scopes", session(auth.Physician, "openid"), rq(auth.ActionUpdate, "Observation", "own", ""), true, auth.ReasonAllowed, auth.ViaCareTeam, false},
		{"session scopes do not widen the role", session(auth.Billing), rq(auth.ActionRead, "Observation", "own", ""), false, auth.ReasonNoRule, "", false},
		{"a careflow session that names scopes is held to them", session(auth.Physician, "user/Observation.rs"), rq(auth.ActionUpdate, "Observation", "own", ""), false, auth.ReasonScope, "", false},
		{"a token without a careflow session needs its own scopes", user(auth.Physician, "openid", "fhirUser"), rq(auth.ActionRead, "Observation", "own", ""), false, auth.ReasonScope, "", false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			d := az.Decide(context.Background(), c.p, c.req)
			if d.Allowed != c.allowed || d.Reason != c.reason || d.Via != c.via || d.BreakGlass != c.breakGlass {
				t.Fatalf("decision %+v; want allowed=%v reason=%s via=%q break_glass=%v", d, c.allowed, c.reason, c.via, c.breakGlass)
			}
		})
	}
}

// A "none" rule on a patient-data type reaches only records that name no
// patient: it is never a way around the compartment and consent.
func TestNoneRulesNeverReachAPatientsRecord(t *testing.T) {
	t.Parallel()
	p, err := auth.ParsePolicy(mutate(t, func(d map[string]any) {
		r := firstRule(d, "admin")
		r["resources"] = []any{"User", "Observation", "WorkflowRun"}
	}))
	if err != nil {
		t.Fatal(err)
	}
	cons := &memConsents{c: map[string]auth.ConsentDecision{"p1|operations": auth.ConsentDeny}}
	az := auth.NewAuthorizer(p, &memRelations{}, cons, nil)
	admin := user(auth.Admin)
	for _, c := range []struct {
		name    string
		req     auth.Request
		allowed bool
		reason  auth.Reason
		recheck bool
	}{
		{"a patient's observation is out of reach", auth.Request{Action: auth.ActionRead, ResourceType: "Observation", PatientID: "p1"}, false, auth.ReasonNotRelated, false},
		{"an observation of no patient", auth.Request{Action: auth.ActionRead, ResourceType: "Observation"}, true, auth.ReasonAllowed, true},
		{"a search, rechecked per record", auth.Request{Action: auth.ActionSearch, ResourceType: "Observation"}, true, auth.ReasonAllowed, true},
		{"a type that is not patient data ignores the patient", auth.Request{Action: auth.ActionRead, ResourceType: "WorkflowRun", PatientID: "p1"}, true, auth.ReasonAllowed, false},
	} {
		d := az.Decide(context.Background(), admin, c.req)
		if d.Allowed != c.allowed || d.Reason != c.reason || d.RecheckRecords != c.recheck {
			t.Errorf("%s: %+v", c.name, d)
		}
	}
	if !auth.PatientData("Observation") || auth.PatientData("AuditLog") || auth.PatientData("Spaceship") {
		t.Fatal("PatientData")
	}
}

func TestEmptySessionScopesMakeSessionsNeedScopes(t *testing.T) {
	t.Parallel()
	p, err := auth.ParsePolicy(mutate(t, func(d map[string]any) { d["session_scopes"] = []any{} }))
	if err != nil {
		t.Fatal(err)
	}
	az := auth.NewAuthorizer(p, &memRelations{vias: map[string]auth.Vias{"u-physician|own": auth.RelCareTeam}}, &memConsents{}, nil)
	req := auth.Request{Action: auth.ActionRead, ResourceType: "Observation", PatientID: "own"}
	if d := az.Decide(context.Background(), session(auth.Physician), req); d.Allowed || d.Reason != auth.ReasonScope {
		t.Fatalf("session without scopes under session_scopes []: %+v", d)
	}
	if d := az.Decide(context.Background(), session(auth.Physician, "user/Observation.r"), req); !d.Allowed {
		t.Fatalf("session with its own scope: %+v", d)
	}
}

func TestDecideFieldsAndRecheck(t *testing.T) {
	t.Parallel()
	az := auth.NewAuthorizer(auth.DefaultPolicy(), &memRelations{}, &memConsents{}, nil)
	d := az.Decide(context.Background(), user(auth.Billing), auth.Request{Action: auth.ActionRead, ResourceType: "Patient", PatientID: "p"})
	if !d.Allowed || d.Fields == nil {
		t.Fatalf("billing Patient read: %+v", d)
	}
	for _, f := range d.Fields {
		if f == "text" || f == "extension" || f == "photo" {
			t.Fatalf("billing sees Patient.%s", f)
		}
	}
	d = az.Decide(context.Background(), user(auth.Physician), auth.Request{Action: auth.ActionSearch, ResourceType: "Observation"})
	if !d.Allowed || !d.RecheckRecords || d.Fields != nil {
		t.Fatalf("physician search: %+v", d)
	}
}

func TestDecideCachesLookUpsPerRequest(t *testing.T) {
	t.Parallel()
	rel := &memRelations{vias: map[string]auth.Vias{"u-physician|p1": auth.RelCareTeam}}
	cons := &memConsents{}
	az := auth.NewAuthorizer(auth.DefaultPolicy(), rel, cons, nil)
	ctx := auth.WithDecisionCache(context.Background())
	if auth.WithDecisionCache(ctx) != ctx {
		t.Fatal("a second WithDecisionCache replaced the cache")
	}
	for _, typ := range []string{"Patient", "Observation", "Condition", "Observation"} {
		if d := az.Decide(ctx, user(auth.Physician), auth.Request{Action: auth.ActionRead, ResourceType: typ, PatientID: "p1"}); !d.Allowed {
			t.Fatalf("%s: %+v", typ, d)
		}
	}
	if rel.calls != 1 || cons.calls != 1 {
		t.Fatalf("look-ups: %d relationship, %d consent; want 1 each", rel.calls, cons.calls)
	}
	auth.ForgetRelationships(ctx)
	az.Decide(ctx, user(auth.Physician), auth.Request{Action: auth.ActionRead, ResourceType: "Patient", PatientID: "p1"})
	if rel.calls != 2 {
		t.Fatalf("after ForgetRelationships: %d look-ups", rel.calls)
	}
	// Without a cache every decision looks up.
	az.Decide(context.Background(), user(auth.Physician), auth.Request{Action: auth.ActionRead, ResourceType: "Patient", PatientID: "p1"})
	az.Decide(context.Background(), user(auth.Physician), auth.Request{Action: auth.ActionRead, ResourceType: "Patient", PatientID: "p1"})
	if rel.calls != 4 {
		t.Fatalf("uncached: %d look-ups", rel.calls)
	}
}

func TestRedact(t *testing.T) {
	t.Parallel()
	p := auth.DefaultPolicy()
	patient := []byte(`{"resourceType":"Patient","id":"p1","meta":{"versionId":"2"},"text":{"div":"<div>diabetic</div>"},` +
		`"extension":[{"url":"x"}],"name":[{"family":"Hassan"}],"birthDate":"1980-02-03","_birthDate":{"id":"b"},` +
		`"photo":[{"data":"AAAA"}],"gender":"female"}`)
	got, err := p.Redact(user(auth.Billing), "Patient", patient)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"resourceType":"Patient","id":"p1","meta":{"versionId":"2"},"name":[{"family":"Hassan"}],"birthDate":"1980-02-03","_birthDate":{"id":"b"},"gender":"female"}`
	if string(got) != want {
		t.Fatalf("billing's Patient:\n got %s\nwant %s", got, want)
	}
	// A role that sees every element gets the bytes unchanged.
	got, err = p.Redact(user(auth.Physician), "Patient", patient)
	if err != nil || !bytes.Equal(got, patient) {
		t.Fatalf("physician's Patient changed: %s %v", got, err)
	}
	// A role that may not read the type sees only what identifies it.
	got, err = p.Redact(user(auth.Auditor), "Patient", patient)
	if err != nil || string(got) != `{"resourceType":"Patient","id":"p1","meta":{"versionId":"2"}}` {
		t.Fatalf("auditor's Patient: %s %v", got, err)
	}
	for _, bad := range []string{`[1]`, `{"a":`, `{"a":1} x`, ``} {
		if _, err := p.RedactFields([]string{"a"}, []byte(bad)); err == nil {
			t.Errorf("RedactFields(%q) did not fail", bad)
		}
	}
	if _, err := p.Redact(nil, "Patient", patient); err == nil {
		t.Fatal("Redact without a principal did not fail")
	}
}
