package httpapi

import (
	"bytes"
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"

	"github.com/careflow/careflow/internal/auth"
	"github.com/careflow/careflow/internal/store"
	"github.com/careflow/careflow/internal/store/storetest"
)

// existenceProbe is one interaction sent for an id: {id} is the
// Observation's id and {patient} the patient its body names.
type existenceProbe struct {
	name, method, path, body string
	header                   map[string]string
}

var (
	existenceObs = `{"resourceType":"Observation","id":"{id}","status":"amended","code":{"text":"x"},"subject":{"reference":"Patient/{patient}"}}`
	// existenceProbes are every interaction by id of the FHIR surface, in
	// each of its forms: plain, conditional and as Bundle entries.
	existenceProbes = []existenceProbe{
		{name: "read", method: "GET", path: "/fhir/R4/Observation/{id}"},
		{name: "vread", method: "GET", path: "/fhir/R4/Observation/{id}/_history/1"},
		{name: "vread-2", method: "GET", path: "/fhir/R4/Observation/{id}/_history/2"},
		{name: "history", method: "GET", path: "/fhir/R4/Observation/{id}/_history"},
		{name: "history-since", method: "GET", path: "/fhir/R4/Observation/{id}/_history?_since=2000-01-01T00:00:00Z"},
		{name: "history-offset", method: "GET", path: "/fhir/R4/Observation/{id}/_history?_offset=1"},
		{name: "search-id", method: "GET", path: "/fhir/R4/Observation?_id={id}"},
		{name: "update", method: "PUT", path: "/fhir/R4/Observation/{id}", body: existenceObs},
		{name: "update-if-match-1", method: "PUT", path: "/fhir/R4/Observation/{id}", body: existenceObs, header: map[string]string{"If-Match": `W/"1"`}},
		{name: "update-if-match-9", method: "PUT", path: "/fhir/R4/Observation/{id}", body: existenceObs, header: map[string]string{"If-Match": `W/"9"`}},
		{name: "conditional-update", method: "PUT", path: "/fhir/R4/Observation?_id={id}", body: existenceObs},
		{name: "delete", method: "DELETE", path: "/fhir/R4/Observation/{id}"},
		{name: "conditional-delete", method: "DELETE", path: "/fhir/R4/Observation?_id={id}"},
		{name: "conditional-create", method: "POST", path: "/fhir/R4/Observation", body: existenceObs, header: map[string]string{"If-None-Exist": "_id={id}"}},
		{name: "batch", method: "POST", path: "/fhir/R4", body: `{"resourceType":"Bundle","type":"batch","entry":[
			{"request":{"method":"GET","url":"Observation/{id}"}},
			{"request":{"method":"GET","url":"Observation/{id}/_history/1"}},
			{"request":{"method":"DELETE","url":"Observation/{id}"}},
			{"request":{"method":"DELETE","url":"Observation?_id={id}"}},
			{"request":{"method":"PUT","url":"Observation/{id}"},"resource":` + existenceObs + `},
			{"request":{"method":"PUT","url":"Observation?_id={id}"},"resource":` + existenceObs + `}]}`},
		{name: "transaction-delete", method: "POST", path: "/fhir/R4", body: `{"resourceType":"Bundle","type":"transaction","entry":[
			{"request":{"method":"DELETE","url":"Observation/{id}"}}]}`},
		{name: "transaction-get", method: "POST", path: "/fhir/R4", body: `{"resourceType":"Bundle","type":"transaction","entry":[
			{"request":{"method":"GET","url":"Observation/{id}"}}]}`},
		{name: "transaction-put", method: "POST", path: "/fhir/R4", body: `{"resourceType":"Bundle","type":"transaction","entry":[
			{"request":{"method":"PUT","url":"Observation/{id}"},"resource":` + existenceObs + `}]}`},
	}
)

// The roles of the default policy, each with a record it may not act on
// (out of its reach, or of a type or interaction its role or token never
// grants) and the token scopes it acts with.
var existenceRoles = []struct {
	role    auth.Role
	scopes  string
	patient string
}{
	{auth.Physician, "", otherPatient},                   // Observations of its care teams' patients only
	{auth.Nurse, "", otherPatient},                       // as a physician
	{auth.Billing, "", ownPatient},                       // no Observation rule
	{auth.ClinicalAdmin, "", ownPatient},                 // no Observation rule
	{auth.Admin, "", ownPatient},                         // no PHI
	{auth.Auditor, "", ownPatient},                       // the audit log only
	{auth.Integration, "system/Claim.cruds", ownPatient}, // every patient, but a token for Claims alone
}

// TestFHIRExistenceIsNoOracle sends every interaction by id (existenceProbes),
// for every role, for an Observation that exists but that the role may not
// act on, and for an id that was never used (its body naming a patient that
// does not exist): the two answers are the same, status, headers that name
// a version and body byte for byte, once the two ids and patients and the
// fields that differ per response (Bundle id, timestamps) are aligned.
// Before authorization came before existence, a role with no delete rule
// got 204 for a missing id and 403 for an existing one, a PUT with an
// If-Match of the hidden record's version got 404 where a missing id got
// 412, and an instance history with _since past the record read 200 for a
// missing id.
func TestFHIRExistenceIsNoOracle(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		f := newFHIRMatrixFixture(t, db)
		for _, r := range existenceRoles {
			who := f.principal(t, "exist-"+string(r.role), r.role, r.scopes)
			for _, pr := range existenceProbes {
				t.Run(string(r.role)+"/"+pr.name, func(t *testing.T) {
					existing := "obs." + r.patient
					got := existenceDo(t, f, who, pr, existing, r.patient)
					missing := existenceDo(t, f, who, pr, "obs.never-1", "pat-never")
					if got.status >= 200 && got.status < 300 && pr.method != "GET" && pr.method != "POST" {
						t.Fatalf("%s by %s on a record it may not act on: %d %s", pr.name, r.role, got.status, got.body)
					}
					norm := func(b []byte, id, patient string) string {
						s := strings.NewReplacer(id, "{id}", patient, "{patient}").Replace(string(b))
						s = existencePage.ReplaceAllString(s, "_page=*")
						return existenceVolatile.ReplaceAllString(s, `"$1":"*"`)
					}
					g, m := norm(got.body, existing, r.patient), norm(missing.body, "obs.never-1", "pat-never")
					if got.status != missing.status || g != m {
						t.Fatalf("%s by %s\nexisting: %d %s\nnever existed: %d %s", pr.name, r.role, got.status, g, missing.status, m)
					}
					for _, h := range []string{"ETag", "Location", "Content-Type"} {
						if a, b := got.header.Get(h) != "", missing.header.Get(h) != ""; a != b {
							t.Fatalf("%s by %s: header %s present %v for the existing id, %v for the missing one", pr.name, r.role, h, a, b)
						}
					}
				})
			}
		}
		// Nothing the probes sent changed a record.
		for _, p := range []string{ownPatient, otherPatient} {
			rec, err := f.rec.Read(t.Context(), nil, "Observation", "obs."+p)
			if err != nil || rec.Version != 1 {
				t.Fatalf("Observation/obs.%s: version %d, %v", p, rec.Version, err)
			}
		}
		if _, err := f.rec.Read(t.Context(), nil, "Observation", "obs.never-1"); err == nil {
			t.Fatal("a refused probe created Observation/obs.never-1")
		}
	})
}

// existenceVolatile and existencePage match what differs between two
// responses to the same request: a Bundle's id, the instants it is stamped
// with and sealed paging tokens (nonced).
var (
	existenceVolatile = regexp.MustCompile(`"(id|lastUpdated|lastModified)":"[0-9a-fT:.+Z-]{20,}"`)
	existencePage     = regexp.MustCompile(`_page=[A-Za-z0-9_-]+`)
)

func existenceDo(t *testing.T, f *fhirMatrixFixture, who string, pr existenceProbe, id, patient string) authzResponse {
	t.Helper()
	repl := strings.NewReplacer("{id}", id, "{patient}", patient)
	var body io.Reader
	if pr.body != "" {
		body = strings.NewReader(repl.Replace(pr.body))
	}
	req, err := http.NewRequest(pr.method, f.ts.URL+repl.Replace(pr.path), body)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set(testPrincipalHeader, who)
	if pr.body != "" {
		req.Header.Set("Content-Type", fhirJSON)
	}
	for k, v := range pr.header {
		req.Header.Set(k, repl.Replace(v))
	}
	resp, err := f.ts.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return authzResponse{status: resp.StatusCode, header: resp.Header, body: bytes.TrimSpace(b)}
}

// TestFHIRDeleteAnswers pins the delete answers the existence rule chose,
// over HTTP on both backends, with the one type the default policy lets a
// role delete (CareTeam, clinical_admin): a record the caller may delete is
// 204, and 204 again once deleted (R4's idempotent delete); an id that
// does not exist is 404 not known, the answer a record out of reach gets.
func TestFHIRDeleteAnswers(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		f := newFHIRMatrixFixture(t, db)
		if _, _, err := f.rec.Update(t.Context(), nil, "CareTeam", "ct-1", []byte(`{"resourceType":"CareTeam","id":"ct-1","status":"active","name":"Ward A"}`), ""); err != nil {
			t.Fatal(err)
		}
		admin := f.principal(t, "exist-ca", auth.ClinicalAdmin, "")
		for i, want := range []int{http.StatusNoContent, http.StatusNoContent} {
			if resp := f.do(t, admin, "DELETE", "/fhir/R4/CareTeam/ct-1", ""); resp.status != want {
				t.Fatalf("delete %d: %d %s", i+1, resp.status, resp.body)
			}
		}
		resp := f.do(t, admin, "DELETE", "/fhir/R4/CareTeam/ct-never", "")
		if resp.status != http.StatusNotFound || !strings.Contains(string(resp.body), "CareTeam/ct-never is not known") {
			t.Fatalf("delete of a missing id: %d %s", resp.status, resp.body)
		}
		physician := f.principal(t, "exist-doc", auth.Physician, "")
		for _, id := range []string{"ct-1", "ct-never"} {
			resp := f.do(t, physician, "DELETE", "/fhir/R4/CareTeam/"+id, "")
			if resp.status != http.StatusForbidden || !strings.Contains(string(resp.body), "(no_rule)") {
				t.Fatalf("a physician's delete of CareTeam/%s: %d %s", id, resp.status, resp.body)
			}
		}
	})
}
