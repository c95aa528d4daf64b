package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/careflow/careflow/internal/audit"
	"github.com/careflow/careflow/internal/auth"
	"github.com/careflow/careflow/internal/store"
	"github.com/careflow/careflow/internal/store/storetest"
)

// settableClock is the access services' clock in scenario tests.
type settableClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *settableClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *settableClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func decodeInto(t *testing.T, resp authzResponse, v any) {
	t.Helper()
	if err := json.Unmarshal(resp.body, v); err != nil {
		t.Fatalf("body %s: %v", resp.body, err)
	}
}

func wantStatus(t *testing.T, resp authzResponse, status int) {
	t.Helper()
	if resp.status != status {
		t.Fatalf("status %d, want %d: %s", resp.status, status, resp.body)
	}
}

// A physician outside the patient's care breaks the glass: the record
// opens to them alone, for the grant's time, every access is high
// severity, and the auditor sees the grant for review.
func TestBreakGlassOpensOneRecordForALimitedTime(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		clk := &settableClock{t: time.Now().UTC()}
		f := newAuthzFixture(t, db, clk.Now)
		doc := f.principal(t, "doc-glass", auth.Physician, "")
		colleague := f.principal(t, "doc-colleague", auth.Physician, "")
		auditor := f.principal(t, "auditor-1", auth.Auditor, "")
		check := "/api/v1/access/check?resource=Observation&action=read&patient=" + otherPatient
		consents := "/api/v1/patients/" + otherPatient + "/consents"

		wantStatus(t, f.do(t, doc, "GET", check, ""), http.StatusNotFound)
		wantStatus(t, f.do(t, doc, "GET", consents, ""), http.StatusNotFound)

		resp := f.do(t, doc, "POST", "/api/v1/patients/"+otherPatient+"/break-glass", `{"reason":"patient_unresponsive","minutes":30}`)
		wantStatus(t, resp, http.StatusCreated)
		var grant auth.Grant
		decodeInto(t, resp, &grant)
		if grant.UserID != doc || grant.PatientID != otherPatient || grant.ExpiresAt.Sub(grant.OpenedAt) != 30*time.Minute || grant.AuditSeq == nil {
			t.Fatalf("grant %+v", grant)
		}
		entry, err := audit.Get(context.Background(), db, *grant.AuditSeq)
		if err != nil || entry.Severity != audit.SeverityHigh || entry.Action != audit.ActionBreakGlass || entry.PatientID != otherPatient || entry.Actor != doc {
			t.Fatalf("grant audit entry %+v %v", entry, err)
		}

		resp = f.do(t, doc, "GET", check, "")
		wantStatus(t, resp, http.StatusOK)
		var d accessDecision
		decodeInto(t, resp, &d)
		if d.Via != "break_glass" || !d.BreakGlass {
			t.Fatalf("decision during the grant %+v", d)
		}
		resp = f.do(t, doc, "GET", consents, "")
		wantStatus(t, resp, http.StatusOK)
		if es := f.auditOf(t, resp.requestID); len(es) != 1 || es[0].Severity != audit.SeverityHigh || es[0].Purpose != audit.PurposeEmergencyTreatment {
			t.Fatalf("access under the grant audited as %+v", es)
		}
		// The grant is the physician's alone.
		wantStatus(t, f.do(t, colleague, "GET", check, ""), http.StatusNotFound)
		// A treatment refusal does not stop emergency care under the grant.
		f.setConsent(t, otherPatient, "treatment=deny")
		wantStatus(t, f.do(t, doc, "GET", check, ""), http.StatusOK)
		f.setConsent(t, otherPatient, "none")

		// The auditor's review list.
		resp = f.do(t, auditor, "GET", "/api/v1/audit/break-glass?active=true", "")
		wantStatus(t, resp, http.StatusOK)
		var page auth.GrantPage
		decodeInto(t, resp, &page)
		if len(page.Grants) != 1 || page.Grants[0].ID != grant.ID || page.Grants[0].Reason != "patient_unresponsive" {
			t.Fatalf("review list %+v", page)
		}
		resp = f.do(t, auditor, "GET", "/api/v1/audit?severity=high&actor="+doc, "")
		wantStatus(t, resp, http.StatusOK)
		var apage audit.Page
		decodeInto(t, resp, &apage)
		if len(apage.Entries) != 2 {
			t.Fatalf("high-severity entries of the physician: %+v", apage.Entries)
		}

		// At expiry the record closes again.
		clk.Advance(30 * time.Minute)
		wantStatus(t, f.do(t, doc, "GET", check, ""), http.StatusNotFound)
		resp = f.do(t, auditor, "GET", "/api/v1/audit/break-glass?active=true", "")
		page = auth.GrantPage{}
		decodeInto(t, resp, &page)
		if len(page.Grants) != 0 {
			t.Fatalf("expired grant still listed as active: %+v", page)
		}
	})
}

// The response filter rechecks every record a handler returns: another
// patient's record is dropped (and audited as a denial), and fields the
// role may not see are removed, whatever the handler's query returned.
func TestResponseFilterDropsOtherPatientsAndHiddenFields(t *testing.T) {
	t.Parallel()
	db := storetest.Open(t, store.SQLite)
	f := newAuthzFixture(t, db, nil)
	records := []patientRecord{
		{ResourceType: "Patient", ResourceID: ownPatient, PatientID: ownPatient,
			JSON: []byte(`{"resourceType":"Patient","id":"pat-own","text":{"div":"<div>history of depression</div>"},"name":[{"family":"Own"}],"gender":"male"}`)},
		{ResourceType: "Observation", ResourceID: "obs-1", PatientID: ownPatient,
			JSON: []byte(`{"resourceType":"Observation","id":"obs-1","status":"final","subject":{"reference":"Patient/pat-own"}}`)},
		{ResourceType: "Patient", ResourceID: otherPatient, PatientID: otherPatient,
			JSON: []byte(`{"resourceType":"Patient","id":"pat-other","text":{"div":"<div>secret</div>"},"name":[{"family":"Other"}]}`)},
		{ResourceType: "Claim", ResourceID: "claim-9", PatientID: otherPatient,
			JSON: []byte(`{"resourceType":"Claim","id":"claim-9","status":"active","patient":{"reference":"Patient/pat-other"}}`)},
		{ResourceType: "Location", ResourceID: "loc-1",
			JSON: []byte(`{"resourceType":"Location","id":"loc-1","name":"Ward A"}`)},
	}
	// A handler whose "query" returns records of two patients, as a buggy
	// search or an _include might.
	f.srv.handleFunc("GET /api/v1/test/records", f.srv.withAccess(func(w http.ResponseWriter, r *http.Request, p *auth.Principal) {
		out, err := f.srv.recheckRecords(r, p, "", records)
		if err != nil {
			f.srv.writeError(w, r, err)
			return
		}
		writeJSON(w, "application/json", http.StatusOK, map[string]any{"entry": out})
	}))
	cases := []struct {
		role    auth.Role
		want    []string // ids kept, in order
		hidden  []string // text that must not appear
		present []string
	}{
		{auth.Physician, []string{"pat-own", "obs-1", "loc-1"}, []string{"pat-other", "claim-9", "secret"}, []string{"history of depression"}},
		{auth.Billing, []string{"pat-own", "pat-other", "claim-9", "loc-1"}, []string{"history of depression", "secret", "obs-1"}, []string{`"family":"Other"`}},
		{auth.Auditor, nil, []string{"pat-own", "pat-other", "obs-1", "claim-9", "loc-1"}, nil},
	}
	for _, c := range cases {
		t.Run(string(c.role), func(t *testing.T) {
			who := f.principal(t, "filter-"+string(c.role), c.role, "")
			resp := f.do(t, who, "GET", "/api/v1/test/records", "")
			wantStatus(t, resp, http.StatusOK)
			var body struct {
				Entry []struct {
					ID string `json:"id"`
				} `json:"entry"`
			}
			decodeInto(t, resp, &body)
			var got []string
			for _, e := range body.Entry {
				got = append(got, e.ID)
			}
			if strings.Join(got, ",") != strings.Join(c.want, ",") {
				t.Fatalf("kept %v, want %v: %s", got, c.want, resp.body)
			}
			for _, h := range c.hidden {
				if bytes.Contains(resp.body, []byte(h)) {
					t.Fatalf("response carries %q: %s", h, resp.body)
				}
			}
			for _, p := range c.present {
				if !bytes.Contains(resp.body, []byte(p)) {
					t.Fatalf("response lacks %q: %s", p, resp.body)
				}
			}
			denied := 0
			for _, e := range f.auditOf(t, resp.requestID) {
				if e.Outcome == audit.OutcomeDenied {
					denied++
				}
			}
			if denied != len(records)-len(c.want) {
				t.Fatalf("%d dropped records audited as denied, want %d", denied, len(records)-len(c.want))
			}
		})
	}
}

func TestConsentAPIGovernsAccess(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		f := newAuthzFixture(t, db, nil)
		admin := f.principal(t, "cadmin", auth.ClinicalAdmin, "")
		doc := f.principal(t, "doc", auth.Physician, "")
		path := "/api/v1/patients/" + ownPatient + "/consents"
		check := "/api/v1/access/check?resource=Observation&action=read&patient=" + ownPatient

		resp := f.do(t, admin, "GET", path, "")
		wantStatus(t, resp, http.StatusOK)
		var set auth.ConsentSet
		decodeInto(t, resp, &set)
		if set.Version != 0 || len(set.Consents) != 0 || set.PatientID != ownPatient {
			t.Fatalf("initial set %+v", set)
		}
		wantStatus(t, f.do(t, doc, "GET", check, ""), http.StatusOK)

		resp = f.do(t, admin, "PUT", path, `{"version":0,"consents":[{"purpose":"treatment","decision":"deny","start":"2020-01-01T00:00:00Z"}]}`)
		wantStatus(t, resp, http.StatusOK)
		decodeInto(t, resp, &set)
		if set.Version != 1 || len(set.Consents) != 1 || set.Consents[0].RecordedBy != admin {
			t.Fatalf("after PUT %+v", set)
		}
		resp = f.do(t, doc, "GET", check, "")
		wantStatus(t, resp, http.StatusForbidden)
		if !strings.Contains(string(resp.body), "consent_denied") {
			t.Fatalf("denial %s", resp.body)
		}

		// A stale version, an unknown field, a missing version, a bad
		// decision.
		for _, c := range []struct {
			body   string
			status int
			field  string
		}{
			{`{"version":0,"consents":[]}`, http.StatusConflict, "version"},
			{`{"version":1,"consents":[],"extra":1}`, http.StatusBadRequest, "extra"},
			{`{"consents":[]}`, http.StatusBadRequest, "version"},
			{`{"version":1}`, http.StatusBadRequest, "consents"},
			{`{"version":1,"consents":[{"purpose":"treatment","decision":"maybe"}]}`, http.StatusBadRequest, "consents[0].decision"},
		} {
			resp := f.do(t, admin, "PUT", path, c.body)
			wantStatus(t, resp, c.status)
			var p Problem
			decodeInto(t, resp, &p)
			if p.Field != c.field {
				t.Fatalf("%s: field %q, want %q", c.body, p.Field, c.field)
			}
			// The authorized attempt and its failure are both on record.
			es := f.auditOf(t, resp.requestID)
			if len(es) != 2 || es[0].Outcome != audit.OutcomeSuccess || es[1].Outcome != audit.OutcomeError || es[1].PatientID != ownPatient {
				t.Fatalf("%s: audit %+v", c.body, es)
			}
		}
		wantStatus(t, f.do(t, admin, "PUT", path, `{"version":1,"consents":[]}`), http.StatusOK)
		wantStatus(t, f.do(t, doc, "GET", check, ""), http.StatusOK)
		wantStatus(t, f.do(t, admin, "GET", "/api/v1/patients/not%20an%20id/consents", ""), http.StatusBadRequest)
		wantStatus(t, f.do(t, admin, "GET", path+"?purpose=treatment", ""), http.StatusBadRequest)
	})
}

func TestCareTeamAPIGovernsAccess(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		f := newAuthzFixture(t, db, nil)
		admin := f.principal(t, "cadmin", auth.ClinicalAdmin, "")
		nurse := f.principal(t, "nurse-7", auth.Nurse, "")
		check := "/api/v1/access/check?resource=Observation&action=update&patient=pat-new"

		resp := f.do(t, admin, "POST", "/api/v1/care-teams", `{"name":"Night shift"}`)
		wantStatus(t, resp, http.StatusCreated)
		var team auth.CareTeam
		decodeInto(t, resp, &team)
		if resp.header.Get("Location") != "/api/v1/care-teams/"+team.ID {
			t.Fatalf("Location %q", resp.header.Get("Location"))
		}
		wantStatus(t, f.do(t, admin, "POST", "/api/v1/care-teams", `{"name":"Night shift"}`), http.StatusConflict)
		wantStatus(t, f.do(t, admin, "POST", "/api/v1/care-teams", `{"name":""}`), http.StatusBadRequest)

		wantStatus(t, f.do(t, nurse, "GET", check, ""), http.StatusNotFound)
		base := "/api/v1/care-teams/" + team.ID
		wantStatus(t, f.do(t, admin, "PUT", base+"/members/"+nurse, `{"role":"nurse"}`), http.StatusNoContent)
		wantStatus(t, f.do(t, admin, "PUT", base+"/patients/pat-new", ""), http.StatusNoContent)
		wantStatus(t, f.do(t, nurse, "GET", check, ""), http.StatusOK)

		resp = f.do(t, admin, "GET", base, "")
		wantStatus(t, resp, http.StatusOK)
		decodeInto(t, resp, &team)
		if len(team.Members) != 1 || team.Members[0].UserID != nurse || len(team.Patients) != 1 || team.Patients[0] != "pat-new" {
			t.Fatalf("team %+v", team)
		}
		resp = f.do(t, admin, "GET", "/api/v1/care-teams", "")
		wantStatus(t, resp, http.StatusOK)
		var list struct {
			CareTeams []auth.CareTeamSummary `json:"care_teams"`
		}
		decodeInto(t, resp, &list)
		if len(list.CareTeams) != 4 {
			t.Fatalf("teams %+v", list)
		}

		wantStatus(t, f.do(t, admin, "DELETE", base+"/patients/pat-new", ""), http.StatusNoContent)
		wantStatus(t, f.do(t, nurse, "GET", check, ""), http.StatusNotFound)
		wantStatus(t, f.do(t, admin, "PUT", base+"/patients/pat-new", ""), http.StatusNoContent)
		wantStatus(t, f.do(t, admin, "DELETE", base+"/members/"+nurse, ""), http.StatusNoContent)
		wantStatus(t, f.do(t, nurse, "GET", check, ""), http.StatusNotFound)

		wantStatus(t, f.do(t, admin, "GET", "/api/v1/care-teams/no-such-team", ""), http.StatusNotFound)
		wantStatus(t, f.do(t, admin, "PUT", "/api/v1/care-teams/no-such-team/patients/p1", ""), http.StatusNotFound)
		wantStatus(t, f.do(t, admin, "PUT", base+"/patients/bad..%20id", ""), http.StatusBadRequest)
		wantStatus(t, f.do(t, admin, "PUT", base+"/members/"+nurse, `{"role":"Head Nurse"}`), http.StatusBadRequest)
		// The patient change is audited under the patient.
		resp = f.do(t, admin, "PUT", base+"/patients/pat-audited", "")
		wantStatus(t, resp, http.StatusNoContent)
		if es := f.auditOf(t, resp.requestID); len(es) != 1 || es[0].PatientID != "pat-audited" || es[0].ResourceID != team.ID || es[0].Action != audit.ActionUpdate {
			t.Fatalf("audit %+v", es)
		}
	})
}

func TestAuditListingFiltersAndPages(t *testing.T) {
	t.Parallel()
	db := storetest.Open(t, store.SQLite)
	f := newAuthzFixture(t, db, nil)
	auditor := f.principal(t, "auditor-7", auth.Auditor, "")
	billing := f.principal(t, "billing-7", auth.Billing, "")
	for i := 0; i < 3; i++ {
		wantStatus(t, f.do(t, billing, "GET", "/api/v1/patients/"+ownPatient+"/consents", ""), http.StatusForbidden)
	}
	resp := f.do(t, auditor, "GET", "/api/v1/audit?actor="+billing+"&outcome=denied&limit=2", "")
	wantStatus(t, resp, http.StatusOK)
	var page audit.Page
	decodeInto(t, resp, &page)
	if len(page.Entries) != 2 || page.Next == nil {
		t.Fatalf("first page %+v", page)
	}
	for _, e := range page.Entries {
		if e.Actor != billing || e.Outcome != audit.OutcomeDenied || e.PatientID != ownPatient || e.ResourceType != "Consent" {
			t.Fatalf("entry %+v", e)
		}
	}
	resp = f.do(t, auditor, "GET", fmt.Sprintf("/api/v1/audit?actor=%s&outcome=denied&limit=2&after=%d", billing, *page.Next), "")
	wantStatus(t, resp, http.StatusOK)
	page = audit.Page{}
	decodeInto(t, resp, &page)
	if len(page.Entries) != 1 || page.Next != nil {
		t.Fatalf("second page %+v", page)
	}
	resp = f.do(t, auditor, "GET", "/api/v1/audit?order=newest&limit=1", "")
	page = audit.Page{}
	decodeInto(t, resp, &page)
	// The newest entry is the auditor's own previous listing: reading the
	// audit log is audited.
	if len(page.Entries) != 1 || page.Entries[0].Actor != auditor || page.Entries[0].ResourceType != "AuditLog" {
		t.Fatalf("newest %+v", page)
	}
	for _, bad := range []string{"?actr=x", "?limit=0", "?since=yesterday", "?order=random", "?after=-1", "?severity=extreme", "?actor=a&actor=b"} {
		wantStatus(t, f.do(t, auditor, "GET", "/api/v1/audit"+bad, ""), http.StatusBadRequest)
	}
	for _, bad := range []string{"?active=maybe", "?limit=5000", "?patient=a%20b"} {
		wantStatus(t, f.do(t, auditor, "GET", "/api/v1/audit/break-glass"+bad, ""), http.StatusBadRequest)
	}
}

// Without the audit log nothing audited is served (503), and denials stay
// denials; without the access services every protected route is 503.
func TestAuthorizationFailsClosed(t *testing.T) {
	t.Parallel()
	db := storetest.Open(t, store.SQLite)
	access := auth.NewAccess(db, nil, nil)
	ctx := context.Background()
	team, err := access.CareTeams.Create(ctx, "A")
	if err != nil {
		t.Fatal(err)
	}
	if err := access.CareTeams.AddMember(ctx, team.ID, "doc", "attending"); err != nil {
		t.Fatal(err)
	}
	if err := access.CareTeams.AddPatient(ctx, team.ID, ownPatient); err != nil {
		t.Fatal(err)
	}
	var logs syncLog
	doc := &auth.Principal{Subject: "doc", Kind: auth.KindUser, Role: auth.Physician, Scopes: []string{"user/*.cruds"}}
	serve := func(opts Options, method, path, body string) *httptest.ResponseRecorder {
		opts.DB = db
		opts.Logger = slog.New(slog.NewJSONHandler(&logs, nil))
		opts.TestPrincipal = func(*http.Request) *auth.Principal { return doc }
		rec := httptest.NewRecorder()
		var rd *strings.Reader
		if body != "" {
			rd = strings.NewReader(body)
		}
		req := httptest.NewRequest(method, path, nil)
		if rd != nil {
			req = httptest.NewRequest(method, path, rd)
			req.Header.Set("Content-Type", "application/json")
		}
		New(opts).Handler().ServeHTTP(rec, req)
		return rec
	}
	own := "/api/v1/patients/" + ownPatient + "/consents"
	if rec := serve(Options{Access: access}, "GET", own, ""); rec.Code != http.StatusServiceUnavailable {
		t.Fatalf("allowed read without the audit log: %d %s", rec.Code, rec.Body)
	}
	if rec := serve(Options{Access: access}, "GET", "/api/v1/patients/"+otherPatient+"/consents", ""); rec.Code != http.StatusNotFound {
		t.Fatalf("denied read without the audit log: %d %s", rec.Code, rec.Body)
	}
	if rec := serve(Options{Access: access}, "POST", "/api/v1/patients/"+otherPatient+"/break-glass", `{"reason":"emergency_treatment"}`); rec.Code != http.StatusServiceUnavailable {
		t.Fatalf("break-the-glass without the audit log: %d %s", rec.Code, rec.Body)
	}
	if rec := serve(Options{}, "GET", own, ""); rec.Code != http.StatusServiceUnavailable {
		t.Fatalf("no access services: %d %s", rec.Code, rec.Body)
	}
	// No grant was stored by the refused break-the-glass.
	page, err := access.BreakGlass.List(ctx, auth.GrantFilter{})
	if err != nil || len(page.Grants) != 0 {
		t.Fatalf("grants %+v %v", page, err)
	}
	// The logs name no patient.
	if strings.Contains(logs.String(), ownPatient) || strings.Contains(logs.String(), otherPatient) {
		t.Fatalf("a patient id reached the log: %s", logs.String())
	}
}

type syncLog struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncLog) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncLog) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Real tokens from the identity half reach the authorizer unchanged: the
// token's scopes narrow the role, and a bad token never gets that far.
func TestRealClientTokensAreNarrowedByTheirScopes(t *testing.T) {
	t.Parallel()
	db := storetest.Open(t, store.SQLite)
	key, _, err := auth.GenerateSigningKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	keys, err := auth.NewKeySet(key)
	if err != nil {
		t.Fatal(err)
	}
	tokens := auth.NewTokens(keys, auth.TokenConfig{})
	signer, _, err := audit.GenerateSigner()
	if err != nil {
		t.Fatal(err)
	}
	log, err := audit.New(context.Background(), db, audit.Options{Signer: signer})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = log.Close(context.Background()) })
	srv := New(Options{DB: db, Access: auth.NewAccess(db, nil, nil), Audit: log,
		Identity: Identity{Authenticator: auth.NewVerifier(tokens, nil)}})
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(ts.Close)
	tok, err := tokens.IssueClient(auth.Client{ID: "gateway-1", Name: "payer gateway", Role: auth.Integration}, []string{"system/Claim.rs"})
	if err != nil {
		t.Fatal(err)
	}
	get := func(path, token string) int {
		t.Helper()
		req, _ := http.NewRequest("GET", ts.URL+path, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := ts.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	claim := "/api/v1/access/check?resource=Claim&action=read&purpose=payment&patient=" + otherPatient
	for _, c := range []struct {
		name, path, token string
		want              int
	}{
		{"a scoped client reads claims", claim, tok.Token, http.StatusOK},
		{"but not observations", "/api/v1/access/check?resource=Observation&action=read&patient=" + otherPatient, tok.Token, http.StatusForbidden},
		{"nor writes claims", "/api/v1/access/check?resource=Claim&action=update&purpose=payment&patient=" + otherPatient, tok.Token, http.StatusForbidden},
		{"nor reads the audit log", "/api/v1/audit", tok.Token, http.StatusForbidden},
		{"no token", claim, "", http.StatusUnauthorized},
		{"a tampered token", claim, tampered(tok.Token), http.StatusUnauthorized},
	} {
		if got := get(c.path, c.token); got != c.want {
			t.Errorf("%s: %d, want %d", c.name, got, c.want)
		}
	}
}

// tampered changes one character well inside a token's signature (the last
// character may carry only padding bits, which a decoder can ignore).
func tampered(tok string) string {
	b := []byte(tok)
	i := len(b) - 10
	if b[i] == 'A' {
		b[i] = 'B'
	} else {
		b[i] = 'A'
	}
	return string(b)
}
