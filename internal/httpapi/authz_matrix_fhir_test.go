package httpapi

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/careflow/careflow/internal/audit"
	"github.com/careflow/careflow/internal/auth"
	"github.com/careflow/careflow/internal/fhir"
	"github.com/careflow/careflow/internal/record"
	"github.com/careflow/careflow/internal/store"
	"github.com/careflow/careflow/internal/store/storetest"
)

// fhirMatrixRow is one line of testdata/authz_matrix_fhir.csv.
type fhirMatrixRow struct {
	matrixRow
	entries, total, audit string
}

// fhirMatrixPatients are the patients of the FHIR matrix by the patient
// column's name; missing is the patient that does not exist.
var fhirMatrixPatients = map[string]string{"own": ownPatient, "other": otherPatient, "assigned": "pat-assigned",
	"glass": "pat-glass", "expired": "pat-expired"}

const missingPatient = "pat-missing"

// fhirMatrixBodies are the request bodies (and headers) the body column
// names; {patient} is the row's patient.
var fhirMatrixBodies = map[string]struct {
	body   string
	header map[string]string
}{
	"tx": {body: `{"resourceType":"Bundle","type":"transaction","entry":[
		{"fullUrl":"urn:uuid:9b2e1c44-0d1f-4c55-9a39-5d0f3f1b6a01","request":{"method":"POST","url":"Procedure"},
		 "resource":{"resourceType":"Procedure","status":"completed","subject":{"reference":"Patient/{patient}"}}},
		{"request":{"method":"GET","url":"Observation?subject=Patient/{patient}"}}]}`},
	"ifnone": {body: `{"resourceType":"Procedure","status":"completed","subject":{"reference":"Patient/` + ownPatient + `"}}`,
		header: map[string]string{"If-None-Exist": "identifier=urn:proc|{patient}"}},
	"obs": {body: `{"resourceType":"Observation","id":"obs.{patient}","status":"amended","code":{"text":"x"},"subject":{"reference":"Patient/{patient}"}}`},
	// Field rules of writes (finding 2 of issue #8): a PUT of the Patient's
	// demographics as seeded (family from fhirMatrixFamily), the same with
	// an element clinical_admin may not write, a transaction holding that
	// PUT, a Coverage and a Practitioner as seeded.
	"demographics": {body: `{"resourceType":"Patient","id":"{patient}","name":[{"family":"{family}"}],"identifier":[{"system":"urn:eg:nid","value":"NID-{patient}"}],"gender":"female"}`},
	"deceased":     {body: `{"resourceType":"Patient","id":"{patient}","name":[{"family":"{family}"}],"identifier":[{"system":"urn:eg:nid","value":"NID-{patient}"}],"gender":"female","deceasedBoolean":true}`},
	"narrative":    {body: `{"resourceType":"Patient","id":"{patient}","name":[{"family":"{family}"}],"identifier":[{"system":"urn:eg:nid","value":"NID-{patient}"}],"gender":"female","text":{"status":"generated","div":"<div xmlns=\"http://www.w3.org/1999/xhtml\">note</div>"}}`},
	"narrative-tx": {body: `{"resourceType":"Bundle","type":"transaction","entry":[{"request":{"method":"PUT","url":"Patient/{patient}"},"resource":{"resourceType":"Patient","id":"{patient}","name":[{"family":"{family}"}],"identifier":[{"system":"urn:eg:nid","value":"NID-{patient}"}],"gender":"female","text":{"status":"generated","div":"<div xmlns=\"http://www.w3.org/1999/xhtml\">note</div>"}}}]}`},
	// A patient registered by billing (a revenue-cycle journey's
	// registration).
	"registration":   {body: `{"resourceType":"Patient","name":[{"family":"Registered"}],"identifier":[{"system":"urn:eg:nid","value":"NID-registered"}],"gender":"female"}`},
	"coverage":       {body: `{"resourceType":"Coverage","id":"cov.{patient}","status":"active","beneficiary":{"reference":"Patient/{patient}"},"payor":[{"reference":"Organization/org-1"}]}`},
	"practitioner-1": {body: `{"resourceType":"Practitioner","id":"prac-1","name":[{"family":"Doc"}]}`},
	// Records of no patient (issue #9): a PaymentNotice (none by design),
	// a Task for a ward, an Observation whose subject is contained, and a
	// Consent naming no patient, which no role may read and is refused.
	"paymentnotice":     {body: `{"resourceType":"PaymentNotice","status":"active","created":"2026-01-02","payment":{"reference":"PaymentReconciliation/pr-1"},"recipient":{"reference":"Organization/org-1"},"amount":{"value":10,"currency":"SAR"}}`},
	"task-org":          {body: `{"resourceType":"Task","status":"requested","intent":"order","description":"clean bed 4"}`},
	"obs-contained":     {body: `{"resourceType":"Observation","status":"final","code":{"text":"Apgar 1 min"},"contained":[{"resourceType":"Patient","id":"newborn","gender":"male"}],"subject":{"reference":"#newborn"}}`},
	"obs-nosubject":     {body: `{"resourceType":"Observation","id":"obs.{patient}","status":"amended","code":{"text":"x"}}`},
	"consent-nopatient": {body: `{"resourceType":"Consent","status":"active","scope":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/consentscope","code":"patient-privacy"}]},"category":[{"text":"x"}],"policyRule":{"text":"x"}}`},
}

// fhirMatrixFamily is the family name each patient is seeded with (and
// the one a request for the missing patient sends).
var fhirMatrixFamily = map[string]string{ownPatient: "Own", "pat-assigned": "Assigned", "pat-glass": "Glass", "pat-expired": "Expired", otherPatient: "Hidden",
	missingPatient: "Missing"}

func readFHIRMatrix(t *testing.T) []fhirMatrixRow {
	t.Helper()
	fh, err := os.Open("testdata/authz_matrix_fhir.csv")
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	cr := csv.NewReader(fh)
	cr.Comment = '#'
	cr.FieldsPerRecord = 12
	want := "role,method,path,patient,consent,scopes,expect,reason,entries,total,audit,body"
	header, err := cr.Read()
	if err != nil || strings.Join(header, ",") != want {
		t.Fatalf("authz_matrix_fhir.csv header %v (%v), want %s", header, err, want)
	}
	var rows []fhirMatrixRow
	for {
		rec, err := cr.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("authz_matrix_fhir.csv: %v", err)
		}
		line, _ := cr.FieldPos(0)
		r := fhirMatrixRow{matrixRow: matrixRow{line: line, role: rec[0], method: rec[1], path: rec[2], patient: rec[3],
			consent: rec[4], scopes: rec[5], reason: rec[7], body: rec[11]}, entries: rec[8], total: rec[9], audit: rec[10]}
		if r.expect, err = strconv.Atoi(rec[6]); err != nil {
			t.Fatalf("line %d: expect %q is not a status", line, rec[6])
		}
		if _, ok := fhirMatrixPatients[r.patient]; !ok && r.patient != "none" {
			t.Fatalf("%s: patient must be own, assigned, glass, expired, other or none", r)
		}
		if _, ok := fhirMatrixBodies[r.body]; r.body != "" && !ok && !strings.HasPrefix(r.body, "purpose:") {
			t.Fatalf("%s: no request body named %q", r, r.body)
		}
		rows = append(rows, r)
	}
	return rows
}

// TestFHIRAuthorizationMatrix drives every row of
// testdata/authz_matrix_fhir.csv through the real server on every backend:
// the status, the reason of a 403, a 404 identical to that of a patient
// that does not exist, the resources and total the response carries, and
// the audit entries it left.
func TestFHIRAuthorizationMatrix(t *testing.T) {
	t.Parallel()
	rows := readFHIRMatrix(t)
	covered := map[string]bool{}
	for _, r := range rows {
		covered[r.role] = true
		covered[r.patient] = true
		path, query, _ := strings.Cut(r.path, "?")
		switch {
		case r.method == "POST" && path == "/fhir/R4":
			covered["transaction"] = true
		case strings.Contains(path, "/_history/"):
			covered["vread"] = true
		case strings.HasSuffix(path, "}/_history"):
			covered["history-instance"] = true
		case strings.HasSuffix(path, "/_history"):
			covered["history-type"] = true
		case strings.Count(path, "/") == 4 && r.method == "GET":
			covered["read"] = true
		case r.method == "GET" || strings.HasSuffix(path, "/_search"):
			covered["search"] = true
		}
		for _, k := range []string{"_include", "_revinclude", "_summary=count", "_total", "_sort"} {
			if strings.Contains(query, k) {
				covered[k] = true
			}
		}
		if strings.Contains(r.consent, "=deny") {
			covered["consent deny"] = true
		}
	}
	for _, want := range []string{"physician", "nurse", "billing", "auditor", "admin", "clinical_admin", "integration", "anonymous",
		"own", "assigned", "glass", "expired", "other", "consent deny",
		"read", "vread", "search", "_include", "_revinclude", "_summary=count", "_total", "_sort", "history-instance", "history-type", "transaction"} {
		if !covered[want] {
			t.Errorf("the FHIR matrix has no row for %s", want)
		}
	}
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		f := newFHIRMatrixFixture(t, db)
		for i, row := range rows {
			t.Run(fmt.Sprintf("line%03d_%s_%s", row.line, row.role, row.method), func(t *testing.T) {
				runFHIRMatrixRow(t, f, i, row)
			})
		}
	})
}

// fhirMatrixFixture is the authorization fixture with a FHIR record.
type fhirMatrixFixture struct {
	*authzFixture
	rec       *record.Service
	consented map[string]bool // patients with a consent recorded
}

func newFHIRMatrixFixture(t testing.TB, db *store.DB) *fhirMatrixFixture {
	t.Helper()
	ctx := context.Background()
	ring := newTestRing(t, db)
	rec := record.New(db, ring, record.Options{})
	f := &fhirMatrixFixture{authzFixture: newAuthzFixtureWith(t, db, nil, rec), rec: rec, consented: map[string]bool{}}
	put := func(typ, id, body string) {
		t.Helper()
		if _, _, err := rec.Update(ctx, nil, typ, id, []byte(body), ""); err != nil {
			t.Fatalf("seed %s/%s: %v", typ, id, err)
		}
	}
	put("Practitioner", "prac-1", `{"resourceType":"Practitioner","id":"prac-1","name":[{"family":"Doc"}]}`)
	put("Organization", "org-1", `{"resourceType":"Organization","id":"org-1","name":"Payer"}`)
	put("Observation", "obs-device", `{"resourceType":"Observation","id":"obs-device","status":"final","code":{"text":"x"}}`)
	put("PaymentNotice", "pn-1", `{"resourceType":"PaymentNotice","id":"pn-1","status":"active","created":"2026-01-02","payment":{"reference":"PaymentReconciliation/pr-1"},"recipient":{"reference":"Organization/org-1"},"amount":{"value":10,"currency":"SAR"}}`)
	put("Task", "task-org", `{"resourceType":"Task","id":"task-org","status":"requested","intent":"order"}`)
	// pat-other alone has the elements field rules hide from billing or
	// clinical_admin (finding 1 of issue #8): a general practitioner, an
	// HIV reason on an Encounter and a Procedure, a Condition's asserter.
	hiv := `"reasonCode":[{"coding":[{"system":"http://snomed.info/sct","code":"86406008"}]}]`
	for _, p := range fhirMatrixPatients {
		gp, reason := "", ""
		if p == otherPatient {
			gp, reason = `,"generalPractitioner":[{"reference":"Practitioner/prac-1"}]`, ","+hiv
		}
		put("Patient", p, fmt.Sprintf(`{"resourceType":"Patient","id":"%s","name":[{"family":"%s"}],"identifier":[{"system":"urn:eg:nid","value":"NID-%s"}],"gender":"female"%s}`, p, fhirMatrixFamily[p], p, gp))
		put("Observation", "obs."+p, fmt.Sprintf(`{"resourceType":"Observation","id":"obs.%s","status":"final","code":{"text":"x"},"subject":{"reference":"Patient/%s"},"performer":[{"reference":"Practitioner/prac-1"}]}`, p, p))
		put("Coverage", "cov."+p, fmt.Sprintf(`{"resourceType":"Coverage","id":"cov.%s","status":"active","beneficiary":{"reference":"Patient/%s"},"payor":[{"reference":"Organization/org-1"}]}`, p, p))
		put("Procedure", "proc."+p, fmt.Sprintf(`{"resourceType":"Procedure","id":"proc.%s","status":"completed","identifier":[{"system":"urn:proc","value":"%s"}],"subject":{"reference":"Patient/%s"}%s}`, p, p, p, reason))
	}
	put("Encounter", "enc.pat-other", `{"resourceType":"Encounter","id":"enc.pat-other","status":"finished","class":{"code":"AMB"},"subject":{"reference":"Patient/pat-other"},`+hiv+`}`)
	put("Condition", "cond.pat-other", `{"resourceType":"Condition","id":"cond.pat-other","code":{"coding":[{"system":"http://snomed.info/sct","code":"86406008"}]},"subject":{"reference":"Patient/pat-other"},"asserter":{"reference":"Practitioner/prac-1"}}`)
	return f
}

func runFHIRMatrixRow(t *testing.T, f *fhirMatrixFixture, i int, row fhirMatrixRow) {
	who := ""
	if row.role != "anonymous" {
		who = f.principal(t, fmt.Sprintf("frow%03d-%s", i, row.role), auth.Role(row.role), row.scopes)
	}
	patient := fhirMatrixPatients[row.patient]
	f.relate(t, who, row.role, row.patient, patient)
	// Only the row's patient has a consent recorded.
	for p := range f.consented {
		if p != patient {
			f.setConsent(t, p, "none")
			delete(f.consented, p)
		}
	}
	if patient != "" {
		f.setConsent(t, patient, row.consent)
		f.consented[patient] = row.consent != "none"
	} else if row.consent != "none" {
		t.Fatalf("%s: a consent needs a patient", row)
	}

	resp := f.doFHIR(t, who, row, patient)
	if resp.status != row.expect {
		t.Fatalf("%s\nstatus %d, want %d: %s", row, resp.status, row.expect, resp.body)
	}
	switch row.expect {
	case http.StatusForbidden:
		var oo fhir.OperationOutcome
		if err := json.Unmarshal(resp.body, &oo); err != nil || len(oo.Issue) != 1 || !strings.Contains(oo.Issue[0].Diagnostics, "("+row.reason+")") {
			t.Fatalf("%s\noutcome %s does not name the reason %s", row, resp.body, row.reason)
		}
		// A refusal of the type, decided before any id is looked up, is
		// the same for ids that do not exist (issue #9).
		if typeLevelReason(row.reason) && strings.Contains(row.path, "{patient}") {
			missing := f.doFHIR(t, who, row, missingPatient)
			if missing.status != resp.status || !bytes.Equal(missing.body, resp.body) {
				t.Fatalf("%s\nexisting: %d %s\ndoes not exist: %d %s", row, resp.status, resp.body, missing.status, missing.body)
			}
		}
	case http.StatusBadRequest:
		// The reason column names the parameter refused; the answer never
		// echoes the row's search value.
		var oo fhir.OperationOutcome
		if err := json.Unmarshal(resp.body, &oo); err != nil || len(oo.Issue) != 1 || !slices.Equal(oo.Issue[0].Expression, []string{row.reason}) {
			t.Fatalf("%s\noutcome %s does not name the parameter %s", row, resp.body, row.reason)
		}
		if _, query, _ := strings.Cut(row.path, "?"); strings.Contains(string(resp.body), "86406008") || strings.Contains(string(resp.body), "prac-1") {
			t.Fatalf("%s\nthe outcome echoes a search value of %s: %s", row, query, resp.body)
		}
	case http.StatusNotFound:
		if row.reason == "not-supported" {
			// A type the server does not serve (fhir_types.go).
			var oo fhir.OperationOutcome
			if err := json.Unmarshal(resp.body, &oo); err != nil || len(oo.Issue) != 1 || oo.Issue[0].Code != "not-supported" {
				t.Fatalf("%s\noutcome %s is not not-supported", row, resp.body)
			}
			break
		}
		if row.reason == "patient_required" {
			// A stored record of no patient that the role reaches only in
			// a patient's compartment: exactly what an id that was never
			// stored gets.
			never := row
			i := strings.LastIndex(never.path, "/")
			never.path = never.path[:i+1] + "never-" + never.path[i+1:]
			missing := f.doFHIR(t, who, never, patient)
			id := never.path[i+1:]
			if missing.status != resp.status || !bytes.Equal(bytes.ReplaceAll(missing.body, []byte(id), []byte(row.path[i+1:])), resp.body) {
				t.Fatalf("%s\nout of reach: %d %s\nnever stored: %d %s", row, resp.status, resp.body, missing.status, missing.body)
			}
			break
		}
		if row.reason != "not_related" {
			t.Fatalf("%s: a 404 row's reason is not_related, patient_required or not-supported", row)
		}
		// Exactly what a patient that does not exist gets (for a PUT, a
		// create for that patient).
		if row.method == "GET" || row.method == "DELETE" || row.method == "PUT" || row.body == "tx" {
			missing := f.doFHIR(t, who, row, missingPatient)
			if missing.status != resp.status || !bytes.Equal(bytes.ReplaceAll(missing.body, []byte(missingPatient), []byte(patient)), resp.body) {
				t.Fatalf("%s\nout of reach: %d %s\ndoes not exist: %d %s", row, resp.status, resp.body, missing.status, missing.body)
			}
		}
	}
	// {created} is the id of the resource a POST created.
	var created struct {
		ID string `json:"id"`
	}
	_ = json.Unmarshal(resp.body, &created)
	repl := strings.NewReplacer("{patient}", patient, "{created}", created.ID)
	if row.expect < 300 {
		checkFHIRMatrixBody(t, row, repl, resp.body)
	}

	var want []string
	if row.audit != "" {
		want = strings.Fields(repl.Replace(row.audit))
	}
	var got []string
	for _, e := range f.auditOf(t, resp.requestID) {
		p := e.PatientID
		if p == "" {
			p = "-"
		}
		got = append(got, fmt.Sprintf("%s:%s:%s:%s", e.Action, e.ResourceType, p, e.Outcome))
		if e.Actor != who || e.Role != row.role {
			t.Fatalf("%s\naudit entry %+v by %s, want %s", row, e, e.Actor, who)
		}
		glass := e.PatientID == "pat-glass" && e.Outcome == audit.OutcomeSuccess && (row.role == "physician" || row.role == "nurse")
		if high := e.Severity == audit.SeverityHigh && e.Purpose == audit.PurposeEmergencyTreatment; high != glass {
			t.Fatalf("%s\naudit entry %+v: break-the-glass severity %v, want %v", row, e, high, glass)
		}
	}
	sort.Strings(got)
	sort.Strings(want)
	if !slices.Equal(got, want) {
		t.Fatalf("%s\naudit entries\n  %v\nwant\n  %v", row, got, want)
	}
}

// typeLevelReason reports whether a denial is decided from the role, the
// purpose and the token alone (auth.Authorizer.DecideType).
func typeLevelReason(r string) bool {
	return r == string(auth.ReasonNoRule) || r == string(auth.ReasonScope) || r == string(auth.ReasonPurposeNotAllowed)
}

// doFHIR sends the row's request for a patient.
func (f *fhirMatrixFixture) doFHIR(t *testing.T, who string, row fhirMatrixRow, patient string) authzResponse {
	t.Helper()
	repl := strings.NewReplacer("{patient}", patient, "{family}", fhirMatrixFamily[patient])
	var body io.Reader
	b := fhirMatrixBodies[row.body]
	if b.body != "" {
		body = strings.NewReader(repl.Replace(b.body))
	}
	req, err := http.NewRequest(row.method, f.ts.URL+repl.Replace(row.path), body)
	if err != nil {
		t.Fatal(err)
	}
	if who != "" {
		req.Header.Set(testPrincipalHeader, who)
	}
	if b.body != "" {
		req.Header.Set("Content-Type", fhirJSON)
	}
	for k, v := range b.header {
		req.Header.Set(k, repl.Replace(v))
	}
	if purpose, ok := strings.CutPrefix(row.body, "purpose:"); ok {
		req.Header.Set("X-Purpose-Of-Use", purpose)
	}
	resp, err := f.ts.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return authzResponse{status: resp.StatusCode, header: resp.Header, body: out, requestID: resp.Header.Get("X-Request-ID")}
}

// checkFHIRMatrixBody checks the resources and the total of a response.
func checkFHIRMatrixBody(t *testing.T, row fhirMatrixRow, repl *strings.Replacer, body []byte) {
	t.Helper()
	var env struct {
		ResourceType string             `json:"resourceType"`
		ID           string             `json:"id"`
		Type         string             `json:"type"`
		Total        *int               `json:"total"`
		Entry        []fhir.BundleEntry `json:"entry"`
	}
	if err := json.Unmarshal(body, &env); err != nil {
		t.Fatalf("%s\nnot JSON: %s", row, body)
	}
	var got []string
	if env.ResourceType == "Bundle" && (env.Type == "searchset" || env.Type == "history") {
		for _, e := range env.Entry {
			_, ref, _ := strings.Cut(e.FullURL, "/fhir/R4/")
			got = append(got, ref)
		}
	} else if env.ResourceType != "Bundle" {
		got = []string{env.ResourceType + "/" + env.ID}
	}
	if row.entries != "*" {
		var want []string
		if row.entries != "none" {
			want = strings.Fields(repl.Replace(row.entries))
		}
		sort.Strings(got)
		sort.Strings(want)
		if !slices.Equal(got, want) {
			t.Fatalf("%s\nentries %v, want %v: %s", row, got, want, body)
		}
	}
	switch row.total {
	case "*":
	case "absent":
		if env.Total != nil {
			t.Fatalf("%s\ntotal %d, want none", row, *env.Total)
		}
	default:
		n, err := strconv.Atoi(row.total)
		if err != nil {
			t.Fatalf("%s: total %q is not a number, absent or *", row, row.total)
		}
		if env.Total == nil || *env.Total != n {
			t.Fatalf("%s\ntotal %v, want %d: %s", row, env.Total, n, body)
		}
	}
}
