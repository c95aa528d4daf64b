package httpapi

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"

	"github.com/careflow/careflow/internal/auth"
	"github.com/careflow/careflow/internal/errs"
	"github.com/careflow/careflow/internal/store"
	"github.com/careflow/careflow/internal/store/storetest"
	"github.com/careflow/careflow/internal/terminology"
)

// termFixture is a server with the terminology routes, the real
// authentication middleware and careflow's own EdDSA tokens, over HTTP,
// with the 2026 ICD-10-CM test release and an HCPCS list loaded.
type termFixture struct {
	ts     *httptest.Server
	srv    *Server
	tokens *auth.Tokens
	logs   *syncBuffer
}

func newTermFixture(t *testing.T, db *store.DB) *termFixture {
	t.Helper()
	ctx := context.Background()
	svc := terminology.NewService(db, terminology.Options{})
	f, err := os.Open("../terminology/testdata/icd10cm_order_2026.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := svc.LoadICD10CM(ctx, f, "2026", terminology.Window{}, nil); err != nil {
		t.Fatal(err)
	}
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	ks, err := auth.NewKeySet(key)
	if err != nil {
		t.Fatal(err)
	}
	tokens := auth.NewTokens(ks, auth.TokenConfig{})
	logs := &syncBuffer{}
	srv := New(Options{
		Logger:      slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		DB:          db,
		Identity:    Identity{Authenticator: auth.NewVerifier(tokens, nil)},
		Terminology: svc,
	})
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(ts.Close)
	return &termFixture{ts: ts, srv: srv, tokens: tokens, logs: logs}
}

// token mints an access token for a user with the role.
func (f *termFixture) token(t *testing.T, role auth.Role) string {
	t.Helper()
	tok, err := f.tokens.IssueUser(auth.User{ID: "user-" + string(role), Username: string(role), Role: role}, "session-"+string(role))
	if err != nil {
		t.Fatal(err)
	}
	return tok.Token
}

type termResponse struct {
	status      int
	contentType string
	body        []byte
	json        map[string]any
}

func (f *termFixture) do(t *testing.T, method, path, body string, hdr map[string]string) termResponse {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, f.ts.URL+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := f.ts.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	out := termResponse{status: resp.StatusCode, contentType: resp.Header.Get("Content-Type"), body: b}
	_ = json.Unmarshal(b, &out.json)
	return out
}

// param returns the value of the named output parameter, or nil.
func (r termResponse) param(name string) any {
	ps, _ := r.json["parameter"].([]any)
	for _, p := range ps {
		m := p.(map[string]any)
		if m["name"] != name {
			continue
		}
		for k, v := range m {
			if strings.HasPrefix(k, "value") {
				return v
			}
		}
	}
	return nil
}

// issue returns the first OperationOutcome issue's code and diagnostics.
func (r termResponse) issue() (code, diagnostics string) {
	is, _ := r.json["issue"].([]any)
	if len(is) == 0 {
		return "", ""
	}
	m := is[0].(map[string]any)
	code, _ = m["code"].(string)
	diagnostics, _ = m["diagnostics"].(string)
	return code, diagnostics
}

func (r termResponse) mediaType() string {
	mt, _, _ := mime.ParseMediaType(r.contentType)
	return mt
}

const icd = "http://hl7.org/fhir/sid/icd-10-cm"

func TestTerminologyOperations(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		f := newTermFixture(t, db)
		tok := f.token(t, auth.Nurse)
		withToken := func(h map[string]string) map[string]string {
			out := map[string]string{"Authorization": "Bearer " + tok}
			for k, v := range h {
				out[k] = v
			}
			return out
		}
		fhirBody := map[string]string{"Content-Type": "application/fhir+json"}

		t.Run("every role may ask, and no token is 401", func(t *testing.T) {
			for _, role := range auth.Roles() {
				r := f.do(t, "GET", validateCodePath+"?url="+icd+"&code=E11.9", "", map[string]string{"Authorization": "Bearer " + f.token(t, role)})
				if r.status != 200 || r.param("result") != true {
					t.Errorf("%s: %d %s", role, r.status, r.body)
				}
			}
			for _, path := range []string{validateCodePath + "?url=" + icd + "&code=E11.9", lookupPath + "?system=" + icd + "&code=E11.9"} {
				r := f.do(t, "GET", path, "", nil)
				code, _ := r.issue()
				if r.status != 401 || r.mediaType() != "application/fhir+json" || code != "login" {
					t.Errorf("GET %s without a token = %d %s %s", path, r.status, r.contentType, r.body)
				}
			}
		})

		cases := []struct {
			name        string
			method      string
			path        string
			body        string
			hdr         map[string]string
			wantStatus  int
			wantResult  any    // $validate-code result, when 200
			wantDisplay string // output display, when 200
			wantIssue   string // OperationOutcome issue code, when not 200
			wantText    string // in the message or diagnostics
		}{
			{name: "a billable code is valid", method: "GET", path: validateCodePath + "?url=" + icd + "&code=E11.9&date=2026-03-01",
				wantStatus: 200, wantResult: true, wantDisplay: "Type 2 diabetes mellitus without complications"},
			{name: "the undotted form is accepted", method: "GET", path: validateCodePath + "?url=" + icd + "&code=E119",
				wantStatus: 200, wantResult: true, wantDisplay: "Type 2 diabetes mellitus without complications"},
			{name: "a header code is an answer, not an error", method: "GET", path: validateCodePath + "?url=" + icd + "&code=E11",
				wantStatus: 200, wantResult: false, wantDisplay: "Type 2 diabetes mellitus", wantText: "not billable"},
			{name: "a date outside every release says so", method: "GET", path: validateCodePath + "?url=" + icd + "&code=E11.9&date=2019-05-01",
				wantStatus: 200, wantResult: false, wantText: "2019-05-01"},
			{name: "a wrong display is reported", method: "GET", path: validateCodePath + "?url=" + icd + "&code=I10&display=Hypotension",
				wantStatus: 200, wantResult: false, wantText: "display"},
			{name: "system is taken as url", method: "GET", path: validateCodePath + "?system=" + icd + "&code=I10",
				wantStatus: 200, wantResult: true, wantDisplay: "Essential (primary) hypertension"},
			{name: "url and system together are refused", method: "GET", path: validateCodePath + "?system=" + icd + "&url=" + icd + "&code=I10",
				wantStatus: 400, wantIssue: "invalid", wantText: "not both"},
			{name: "a percent-encoded dollar reaches the operation", method: "GET", path: "/fhir/R4/CodeSystem/%24validate-code?url=" + icd + "&code=I10",
				wantStatus: 200, wantResult: true},
			{name: "POST with a Parameters body", method: "POST", path: validateCodePath, hdr: fhirBody,
				body:       `{"resourceType":"Parameters","parameter":[{"name":"url","valueUri":"` + icd + `"},{"name":"code","valueCode":"J18.9"},{"name":"date","valueDate":"2026-01-15"}]}`,
				wantStatus: 200, wantResult: true, wantDisplay: "Pneumonia, unspecified organism"},
			{name: "POST with a coding", method: "POST", path: validateCodePath, hdr: map[string]string{"Content-Type": "application/json; charset=utf-8"},
				body:       `{"resourceType":"Parameters","id":"q1","parameter":[{"name":"coding","valueCoding":{"system":"` + icd + `","code":"U07.1"}}]}`,
				wantStatus: 200, wantResult: true, wantDisplay: "COVID-19"},
			{name: "POST with system as a parameter", method: "POST", path: validateCodePath, hdr: fhirBody,
				body:       `{"resourceType":"Parameters","parameter":[{"name":"system","valueUri":"` + icd + `"},{"name":"code","valueCode":"Z23"}]}`,
				wantStatus: 200, wantResult: true},
			{name: "lookup by GET", method: "GET", path: lookupPath + "?system=" + icd + "&code=E11.65",
				wantStatus: 200, wantDisplay: "Type 2 diabetes mellitus with hyperglycemia"},
			{name: "lookup by POST", method: "POST", path: lookupPath, hdr: fhirBody,
				body:       `{"resourceType":"Parameters","parameter":[{"name":"system","valueUri":"` + icd + `"},{"name":"code","valueCode":"R05.9"},{"name":"version","valueString":"2026"}]}`,
				wantStatus: 200, wantDisplay: "Cough, unspecified"},
			{name: "lookup of a code in no release is 404", method: "GET", path: lookupPath + "?system=" + icd + "&code=Z99.89",
				wantStatus: 404, wantIssue: "not-found", wantText: "Z99.89"},
			{name: "lookup of an unknown system is 404", method: "GET", path: lookupPath + "?system=http://example.org/codes&code=1",
				wantStatus: 404, wantIssue: "not-found"},
			{name: "a missing code is 400 naming it", method: "GET", path: validateCodePath + "?url=" + icd,
				wantStatus: 400, wantIssue: "invalid", wantText: "code"},
			{name: "an unsupported input is refused by name", method: "GET", path: validateCodePath + "?url=" + icd + "&code=I10&codeableConcept=x",
				wantStatus: 400, wantIssue: "invalid", wantText: "codeableConcept"},
			{name: "a malformed date is 400", method: "GET", path: lookupPath + "?system=" + icd + "&code=I10&date=March",
				wantStatus: 400, wantIssue: "invalid", wantText: "date"},
			{name: "POST needs a Content-Type", method: "POST", path: lookupPath,
				body:       `{"resourceType":"Parameters"}`,
				wantStatus: 415, wantIssue: "not-supported"},
			{name: "POST refuses form bodies", method: "POST", path: lookupPath, hdr: map[string]string{"Content-Type": "application/x-www-form-urlencoded"},
				body:       "system=" + icd + "&code=I10",
				wantStatus: 415, wantIssue: "not-supported"},
			{name: "POST refuses a charset other than UTF-8", method: "POST", path: lookupPath, hdr: map[string]string{"Content-Type": "application/fhir+json; charset=latin1"},
				body:       `{"resourceType":"Parameters"}`,
				wantStatus: 415, wantIssue: "not-supported"},
			{name: "an XML Accept is 415", method: "GET", path: lookupPath + "?system=" + icd + "&code=I10", hdr: map[string]string{"Accept": "application/fhir+xml"},
				wantStatus: 415, wantIssue: "not-supported"},
			{name: "_format=xml is 415", method: "GET", path: lookupPath + "?system=" + icd + "&code=I10&_format=xml",
				wantStatus: 415, wantIssue: "not-supported"},
			{name: "_format=json is fine", method: "GET", path: lookupPath + "?system=" + icd + "&code=I10&_format=json",
				wantStatus: 200, wantDisplay: "Essential (primary) hypertension"},
			{name: "POST inputs in the query string are refused", method: "POST", path: lookupPath + "?code=I10", hdr: fhirBody,
				body:       `{"resourceType":"Parameters","parameter":[{"name":"system","valueUri":"` + icd + `"}]}`,
				wantStatus: 400, wantIssue: "invalid", wantText: "Parameters body"},
			{name: "a body that is not Parameters is refused", method: "POST", path: lookupPath, hdr: fhirBody,
				body:       `{"resourceType":"Patient"}`,
				wantStatus: 400, wantIssue: "invalid", wantText: "Parameters"},
			{name: "an unknown member is refused", method: "POST", path: lookupPath, hdr: fhirBody,
				body:       `{"resourceType":"Parameters","parameter":[{"name":"code","valueInteger":5}]}`,
				wantStatus: 400, wantIssue: "invalid", wantText: "valueInteger"},
			{name: "an empty body is refused", method: "POST", path: lookupPath, hdr: fhirBody,
				wantStatus: 400, wantIssue: "invalid", wantText: "empty"},
			{name: "malformed JSON is refused", method: "POST", path: lookupPath, hdr: fhirBody,
				body:       `{"resourceType":`,
				wantStatus: 400, wantIssue: "invalid"},
			{name: "a huge body is 413", method: "POST", path: lookupPath, hdr: fhirBody,
				body:       `{"resourceType":"Parameters","parameter":[{"name":"code","valueCode":"` + strings.Repeat("A", maxParametersBytes) + `"}]}`,
				wantStatus: 413, wantIssue: "too-long"},
			{name: "DELETE is 405", method: "DELETE", path: lookupPath,
				wantStatus: 405, wantIssue: "not-supported"},
		}
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				r := f.do(t, c.method, c.path, c.body, withToken(c.hdr))
				if r.status != c.wantStatus {
					t.Fatalf("status %d, want %d: %s", r.status, c.wantStatus, r.body)
				}
				if r.mediaType() != "application/fhir+json" {
					t.Fatalf("Content-Type %q, want application/fhir+json", r.contentType)
				}
				if c.wantStatus == 200 {
					if r.json["resourceType"] != "Parameters" {
						t.Fatalf("answer is not Parameters: %s", r.body)
					}
					if c.wantResult != nil && r.param("result") != c.wantResult {
						t.Errorf("result %v, want %v: %s", r.param("result"), c.wantResult, r.body)
					}
					if c.wantDisplay != "" && r.param("display") != c.wantDisplay {
						t.Errorf("display %v, want %q", r.param("display"), c.wantDisplay)
					}
					if msg, _ := r.param("message").(string); !strings.Contains(msg, c.wantText) {
						t.Errorf("message %q does not mention %q", msg, c.wantText)
					}
					return
				}
				if r.json["resourceType"] != "OperationOutcome" {
					t.Fatalf("error is not an OperationOutcome: %s", r.body)
				}
				code, diag := r.issue()
				if code != c.wantIssue || !strings.Contains(diag, c.wantText) {
					t.Errorf("issue %q %q, want %q mentioning %q", code, diag, c.wantIssue, c.wantText)
				}
			})
		}

		// The lookup answer carries the properties the service knows: the
		// parent of E11.65 in the loaded release, and the release version.
		t.Run("lookup returns version and parent", func(t *testing.T) {
			r := f.do(t, "GET", lookupPath+"?system="+icd+"&code=E1165", "", withToken(nil))
			if r.param("version") != "2026" || r.param("name") != "ICD-10-CM" {
				t.Fatalf("lookup %s", r.body)
			}
			if !strings.Contains(string(r.body), `"valueCode":"E11.6"`) {
				t.Errorf("lookup lacks the parent E11.6: %s", r.body)
			}
		})
	})
}

// A national ID is PHI: refused in a URL, checked in a POST body, and never
// echoed in an answer or a log line.
func TestTerminologyNeverEchoesANationalID(t *testing.T) {
	t.Parallel()
	f := newTermFixture(t, storetest.Open(t, store.SQLite))
	hdr := map[string]string{"Authorization": "Bearer " + f.token(t, auth.ClinicalAdmin), "Content-Type": "application/fhir+json"}
	const id = "29001010100015" // synthetic
	r := f.do(t, "GET", validateCodePath+"?url="+terminology.SystemEgyptNationalID+"&code="+id, "", hdr)
	if code, _ := r.issue(); r.status != 400 || code != "invalid" {
		t.Fatalf("GET with a national ID = %d %s", r.status, r.body)
	}
	for _, body := range []string{
		`{"resourceType":"Parameters","parameter":[{"name":"url","valueUri":"` + terminology.SystemEgyptNationalID + `"},{"name":"code","valueCode":"` + id + `"}]}`,
		`{"resourceType":"Parameters","parameter":[{"name":"url","valueUri":"` + terminology.SystemEgyptNationalID + `"},{"name":"code","valueCode":"2900101010001"}]}`,
	} {
		r = f.do(t, "POST", validateCodePath, body, hdr)
		if r.status != 200 || r.param("result") == nil {
			t.Fatalf("POST with a national ID = %d %s", r.status, r.body)
		}
		if strings.Contains(string(r.body), "900101") {
			t.Fatalf("the answer echoes the national ID: %s", r.body)
		}
	}
	r = f.do(t, "POST", lookupPath, `{"resourceType":"Parameters","parameter":[{"name":"system","valueUri":"`+terminology.SystemEgyptNationalID+`"},{"name":"code","valueCode":"`+id+`"}]}`, hdr)
	if r.status != 400 || strings.Contains(string(r.body), "900101") {
		t.Fatalf("lookup of a national ID = %d %s", r.status, r.body)
	}
	if strings.Contains(f.logs.String(), "900101") {
		t.Fatal("a log line holds the national ID")
	}
}

// Without a terminology service the routes do not exist, and the record's
// routes are not shadowed by them.
func TestTerminologyRoutesNeedTheService(t *testing.T) {
	t.Parallel()
	srv := New(Options{})
	for _, p := range srv.Patterns() {
		if strings.Contains(p, "$") {
			t.Errorf("route %s registered without a terminology service", p)
		}
	}
	f := newTermFixture(t, storetest.Open(t, store.SQLite))
	want := map[string]bool{
		"GET " + validateCodePath: true, "POST " + validateCodePath: true,
		"GET " + lookupPath: true, "POST " + lookupPath: true,
	}
	for _, p := range f.srv.Patterns() {
		delete(want, p)
	}
	if len(want) > 0 {
		t.Errorf("routes missing: %v", want)
	}
}

// FuzzTerminologyInput feeds arbitrary query strings and bodies to the
// input side of both operations: it must never panic, and every refusal is
// the client's fault (400, 413 or 415), never a 500.
func FuzzTerminologyInput(f *testing.F) {
	f.Add("url="+icd+"&code=E11.9", "")
	f.Add("system="+icd+"&url=x", "")
	f.Add("_format=json", `{"resourceType":"Parameters","parameter":[{"name":"system","valueUri":"`+icd+`"},{"name":"code","valueCode":"I10"}]}`)
	f.Add("", `{"resourceType":"Parameters","parameter":[{"name":"coding","valueCoding":{"system":"`+icd+`","code":"E11"}},{"name":"abstract","valueBoolean":true}]}`)
	f.Fuzz(func(t *testing.T, query, body string) {
		for _, method := range []string{"GET", "POST"} {
			r := httptest.NewRequest(method, validateCodePath, strings.NewReader(body))
			r.URL.RawQuery = query
			r.Header.Set("Content-Type", "application/fhir+json")
			check := func(op string, err error) {
				switch k := errs.KindOf(err); {
				case err == nil, k == errs.Invalid, k == errs.TooLarge, k == errs.UnsupportedMedia:
				default:
					t.Fatalf("%s %s: error of kind %s: %v", method, op, k, err)
				}
			}
			_, err := terminologyInput(r, validateCodeQuery, validateCodeBody)
			check("$validate-code", err)
			r = httptest.NewRequest(method, lookupPath, strings.NewReader(body))
			r.URL.RawQuery = query
			r.Header.Set("Content-Type", "application/fhir+json")
			_, err = terminologyInput(r, terminology.ParseLookupQuery, terminology.ParseLookupParameters)
			check("$lookup", err)
		}
	})
}
