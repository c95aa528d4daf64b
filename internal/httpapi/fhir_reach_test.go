package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/careflow/careflow/internal/audit"
	"github.com/careflow/careflow/internal/auth"
	"github.com/careflow/careflow/internal/fhir"
	"github.com/careflow/careflow/internal/store"
	"github.com/careflow/careflow/internal/store/storetest"
)

// fhirGet sends a GET as who and decodes a Bundle.
func (f *fhirMatrixFixture) fhirGet(t *testing.T, who, url string) (authzResponse, *fhir.Bundle) {
	t.Helper()
	resp := f.do(t, who, "GET", strings.TrimPrefix(url, f.ts.URL), "")
	if resp.status != http.StatusOK {
		t.Fatalf("GET %s: %d %s", url, resp.status, resp.body)
	}
	var b fhir.Bundle
	if err := json.Unmarshal(resp.body, &b); err != nil {
		t.Fatal(err)
	}
	return resp, &b
}

func nextLink(b *fhir.Bundle) string {
	for _, l := range b.Link {
		if l.Relation == "next" {
			return l.URL
		}
	}
	return ""
}

// Paging a clinician's search walks exactly the records they may see:
// every page is full until the last, no next link leads to an empty page,
// and the total is the number of records walked. Each page is audited
// against the patients it returns, so the audit log's listing by patient
// finds the search.
func TestFHIRSearchPagesAndAuditsWhatTheCallerMaySee(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		f := newFHIRMatrixFixture(t, db)
		doc := f.principal(t, "pager", auth.Physician, "")
		f.relate(t, doc, "physician", "assigned", "pat-assigned")
		f.relate(t, doc, "physician", "glass", "pat-glass")
		url := f.ts.URL + "/fhir/R4/Procedure?_count=1&_total=accurate"
		var seen []string
		var requests []string
		for url != "" {
			resp, b := f.fhirGet(t, doc, url)
			if b.Total == nil || *b.Total != 3 {
				t.Fatalf("total %v, want 3", b.Total)
			}
			if len(b.Entry) != 1 {
				t.Fatalf("page %d holds %d entries", len(seen), len(b.Entry))
			}
			seen = append(seen, b.Entry[0].FullURL)
			requests = append(requests, resp.requestID)
			url = nextLink(b)
			if strings.Contains(url, "pat-") {
				t.Fatalf("a paging link names a patient: %s", url)
			}
		}
		if len(seen) != 3 {
			t.Fatalf("walked %v", seen)
		}
		// The auditor finds each page under the patient it returned.
		auditor := f.principal(t, "pager-auditor", auth.Auditor, "")
		for i, p := range []string{"pat-assigned", "pat-glass", ownPatient} { // the pages' order
			resp := f.do(t, auditor, "GET", "/api/v1/audit?action=search&resource_type=Procedure&patient="+p, "")
			var page audit.Page
			decodeInto(t, resp, &page)
			if len(page.Entries) != 1 || page.Entries[0].Actor != doc || page.Entries[0].ResourceID != "proc."+p || page.Entries[0].RequestID != requests[i] {
				t.Fatalf("audit of patient %s (page %d, request %s): %+v", p, i, requests[i], page.Entries)
			}
		}
	})
}

// perPatientSources hide the listing look-ups of the database sources,
// as a relationship or consent source that can only decide one patient at
// a time would.
type perPatientRelations struct{ rel auth.RelationshipSource }

func (p perPatientRelations) Relationships(ctx context.Context, user, patient string, at time.Time) (auth.Vias, error) {
	return p.rel.Relationships(ctx, user, patient, at)
}

type perPatientConsents struct{ c auth.ConsentSource }

func (p perPatientConsents) ConsentAt(ctx context.Context, patient string, purpose auth.Purpose, at time.Time) (auth.ConsentDecision, error) {
	return p.c.ConsentAt(ctx, patient, purpose, at)
}

// When the reach cannot be listed the search runs unconfined and the
// response filter does the work alone: what may not be seen is dropped,
// each record decided (and audited as a denial) once, and no total is
// reported, since the count included what was dropped.
func TestFHIRSearchWithoutAReachOmitsTheTotal(t *testing.T) {
	t.Parallel()
	db := storetest.Open(t, store.SQLite)
	f := newFHIRMatrixFixture(t, db)
	doc := f.principal(t, "unlisted", auth.Physician, "")
	access := *f.access
	access.Authorizer = auth.NewAuthorizer(f.access.Policy, perPatientRelations{auth.NewRelationships(db)},
		perPatientConsents{f.access.Consents}, nil)
	opts := f.srv.opts
	opts.Access, opts.Registry = &access, nil
	ts := httptest.NewServer(New(opts).Handler())
	t.Cleanup(ts.Close)
	g := &fhirMatrixFixture{authzFixture: &authzFixture{db: db, access: &access, log: f.log, ts: ts, principals: f.principals}}
	resp, b := g.fhirGet(t, doc, ts.URL+"/fhir/R4/Patient?_total=accurate")
	if b.Total != nil || len(b.Entry) != 1 || !strings.HasSuffix(b.Entry[0].FullURL, "/Patient/"+ownPatient) {
		t.Fatalf("total %v, %d entries: %s", b.Total, len(b.Entry), resp.body)
	}
	denied := 0
	for _, e := range f.auditOf(t, resp.requestID) {
		if e.Outcome == audit.OutcomeDenied {
			denied++
			if e.ResourceID != e.PatientID || e.Action != audit.ActionRead {
				t.Fatalf("denial %+v", e)
			}
		}
	}
	if denied != 4 {
		t.Fatalf("%d denials for 4 patients out of reach, want one each", denied)
	}
}

// failingAudit is an audit log whose multi-entry appends fail.
type failingAudit struct{ AuditLog }

func (failingAudit) AppendAll(context.Context, []audit.Entry) ([]audit.Entry, error) {
	return nil, errors.New("disk full")
}

// A response whose audit entries cannot be appended is not sent: the FHIR
// search (whose entries are appended together) and the JSON API's
// response filter (whose denials are) both answer 503.
func TestResponsesFailClosedWhenTheirAuditFails(t *testing.T) {
	t.Parallel()
	db := storetest.Open(t, store.SQLite)
	f := newFHIRMatrixFixture(t, db)
	doc := f.principal(t, "closed", auth.Physician, "")
	opts := f.srv.opts
	opts.Audit, opts.Registry = failingAudit{f.log}, nil
	srv := New(opts)
	srv.handleFunc("GET /api/v1/test/records", srv.withAccess(func(w http.ResponseWriter, r *http.Request, p *auth.Principal) {
		out, err := srv.recheckRecords(r, p, "", []patientRecord{
			{ResourceType: "Patient", ResourceID: ownPatient, PatientID: ownPatient, JSON: []byte(`{"resourceType":"Patient","id":"pat-own"}`)},
			{ResourceType: "Patient", ResourceID: otherPatient, PatientID: otherPatient, JSON: []byte(`{"resourceType":"Patient","id":"pat-other"}`)},
		})
		if err != nil {
			srv.writeError(w, r, err)
			return
		}
		writeJSON(w, "application/json", http.StatusOK, out)
	}))
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(ts.Close)
	g := &authzFixture{ts: ts, principals: f.principals}
	for _, path := range []string{"/fhir/R4/Patient", "/fhir/R4/Observation?_include=Observation:subject", "/fhir/R4/Patient/" + ownPatient, "/api/v1/test/records"} {
		resp := g.do(t, doc, "GET", path, "")
		if resp.status != http.StatusServiceUnavailable || strings.Contains(string(resp.body), ownPatient) {
			t.Fatalf("GET %s with a failing audit log: %d %s", path, resp.status, resp.body)
		}
	}
}
