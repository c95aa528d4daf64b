package httpapi

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/careflow/careflow/internal/auth"
	"github.com/careflow/careflow/internal/store"
	"github.com/careflow/careflow/internal/store/storetest"
)

// Every JSON body on /api is held to I-JSON and R4's string rule before
// encoding/json decodes it: a member twice in one object (at any depth), an
// unpaired surrogate and a control character are a 400 naming the member,
// never repeating the value or a member name that is not a field name.
func TestAPIJSONRefusesDuplicateKeysLoneSurrogatesAndControlCharacters(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil, 0)
	type item struct {
		Code string         `json:"code"`
		Meta map[string]any `json:"meta"`
	}
	f.srv.handlePublicFunc("POST /api/v1/test/nested", func(w http.ResponseWriter, r *http.Request) {
		var in struct {
			Name  string `json:"name"`
			Items []item `json:"items"`
		}
		if err := decodeJSON(r, &in); err != nil {
			f.srv.writeError(w, r, err)
			return
		}
		writeJSON(w, "application/json", http.StatusOK, in)
	})
	cases := []struct {
		name, body string
		status     int
		field      string
	}{
		{"a duplicate top-level key", `{"name":"a","name":"b"}`, 400, "name"},
		{"a duplicate key two levels down", `{"items":[{"code":"x"},{"code":"y","meta":{"k":1,"k":2}}]}`, 400, "items[1].meta.k"},
		{"a duplicate key in an array of arrays", `{"items":[{"meta":{"deep":[[{"z":1,"z":1}]]}}]}`, 400, "items[0].meta.deep[0][0].z"},
		{"a duplicate key that is free text is not repeated", `{"items":[{"meta":{"Fatma Hassan 1961":1,"Fatma Hassan 1961":2}}]}`, 400, "items[0].meta.?"},
		{"an unpaired high surrogate", `{"name":"Fatma\ud800"}`, 400, "name"},
		{"an unpaired low surrogate", `{"items":[{"code":"\udc00x"}]}`, 400, "items[0].code"},
		{"surrogates in the wrong order", `{"name":"\udc00\ud800"}`, 400, "name"},
		{"a NUL", `{"name":"Fatma\u0000Hassan"}`, 400, "name"},
		{"an escape character", `{"items":[{"meta":{"note":"a\u001bb"}}]}`, 400, "items[0].meta.note"},
		{"a control character in a member name", `{"items":[{"meta":{"a\u0001":1}}]}`, 400, "items[0].meta.?"},
		{"a surrogate pair is one character", `{"name":"\ud83d\ude00"}`, 200, ""},
		{"tab, CR and LF are text", `{"name":"a\tb\r\nc"}`, 200, ""},
		{"equal keys in different objects are fine", `{"items":[{"code":"x"},{"code":"y"}]}`, 200, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			resp, body := f.do(t, "POST", "/api/v1/test/nested", strings.NewReader(c.body), map[string]string{"Content-Type": "application/json"})
			if resp.StatusCode != c.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, c.status, body)
			}
			if c.status == 200 {
				return
			}
			p := decodeProblem(t, resp, body)
			if p.Field != c.field || !strings.Contains(p.Detail, c.field) {
				t.Fatalf("field %q, want %q (%+v)", p.Field, c.field, p)
			}
			for _, leak := range []string{"Fatma", "Hassan", "\ufffd"} {
				if strings.Contains(string(body), leak) {
					t.Fatalf("the problem repeats %q: %s", leak, body)
				}
			}
		})
	}
}

// The JSON auth endpoints go through the same check: a login naming two
// usernames is refused, not decided by whichever one encoding/json keeps.
func TestLoginWithADuplicateKeyIsRefused(t *testing.T) {
	t.Parallel()
	f := newIDFixture(t, nil, nil)
	f.addUser(t, "amal.nurse", "nurse")
	resp, body := f.doT(t, "POST", "/api/v1/auth/login",
		`{"username":"someone.else","username":"amal.nurse","password":"`+testPassword+`"}`,
		map[string]string{"Content-Type": "application/json"})
	if resp.StatusCode != 400 {
		t.Fatalf("login with two usernames = %d %s, want 400", resp.StatusCode, body)
	}
	if p := decodeProblem(t, resp, body); p.Field != "username" {
		t.Fatalf("problem %+v does not name username", p)
	}
}

// The form-encoded token endpoint refuses a repeated parameter (RFC 6749
// §3.1), in the body or in the body and the URL, and names it only when it
// is one of its own: another name is the client's text.
func TestTokenEndpointRefusesRepeatedParametersWithoutEchoingTheirNames(t *testing.T) {
	t.Parallel()
	f := newIDFixture(t, nil, nil)
	form := map[string]string{"Content-Type": "application/x-www-form-urlencoded"}
	cases := []struct{ query, body, want string }{
		{"", "grant_type=client_credentials&scope=a&scope=b", "parameter scope is repeated"},
		{"", "grant_type=client_credentials&Fatma+Hassan=1&Fatma+Hassan=2", "a parameter is repeated"},
		{"", "grant_type=client_credentials&grant_type=client_credentials&x=1961", "parameter grant_type is repeated"},
		{"?scope=y", "grant_type=client_credentials&scope=x", "parameter scope is repeated"},
	}
	for _, c := range cases {
		resp, raw := f.doT(t, "POST", "/api/v1/auth/token"+c.query, c.body, form)
		var out struct {
			Error       string `json:"error"`
			Description string `json:"error_description"`
		}
		_ = json.Unmarshal(raw, &out)
		if resp.StatusCode != 400 || out.Error != "invalid_request" || out.Description != c.want {
			t.Fatalf("%s %s = %d %s, want 400 invalid_request %q", c.query, c.body, resp.StatusCode, raw, c.want)
		}
		if strings.Contains(string(raw), "Fatma") {
			t.Fatalf("the error repeats a parameter name: %s", raw)
		}
	}
}

// A terminology operation's Parameters body is FHIR JSON: a member twice in
// one parameter is refused with an OperationOutcome naming it, not decided
// by whichever value encoding/json keeps.
func TestTerminologyParametersRefuseDuplicateKeys(t *testing.T) {
	t.Parallel()
	f := newTermFixture(t, storetest.Open(t, store.SQLite))
	hdr := map[string]string{"Authorization": "Bearer " + f.token(t, auth.ClinicalAdmin), "Content-Type": "application/fhir+json"}
	r := f.do(t, "POST", lookupPath, `{"resourceType":"Parameters","parameter":[{"name":"system","valueUri":"`+icd+`"},{"name":"code","valueCode":"Z99.999","valueCode":"I10"}]}`, hdr)
	code, diag := r.issue()
	if r.status != 400 || code != "invalid" || !strings.Contains(diag, "parameter[1].valueCode") {
		t.Fatalf("a parameter with two values = %d %s, want 400 naming parameter[1].valueCode", r.status, r.body)
	}
	if expr, _ := r.json["issue"].([]any)[0].(map[string]any)["expression"].([]any); len(expr) != 1 || expr[0] != "parameter[1].valueCode" {
		t.Fatalf("expression %v", expr)
	}
}
