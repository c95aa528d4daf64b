package fhirconformance

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/careflow/careflow/internal/store/storetest"
)

// clientScopes is what the test's machine client is given: the default
// policy's integration role may create, read, search and update Patients of
// any patient; the scope narrows the token to exactly that.
const clientScopes = "system/Patient.cruds"

// TestFHIRClientAgainstCareflowServe builds careflow, registers a machine
// client with `careflow client add`, starts `careflow serve` as a child
// process, gets a token from POST /api/v1/auth/token (client_credentials)
// and lets fhir-kit-client drive the FHIR API (tools/fhirdefs/client-e2e.mjs).
func TestFHIRClientAgainstCareflowServe(t *testing.T) {
	t.Parallel()
	tools := requireNodeTools(t)
	bin := careflowBinary(t)
	for _, d := range storetest.Backends() {
		t.Run(string(d), func(t *testing.T) {
			common := serveStorage(t, d)
			out := runCareflow(t, bin, append([]string{"client", "add", "fhir-conformance", "--scopes", clientScopes}, common...)...)
			id, secret := field(out, "client_id"), field(out, "client_secret")
			if id == "" || secret == "" {
				t.Fatalf("careflow client add printed no client_id/client_secret")
			}
			base := startServe(t, bin, common)
			token := clientToken(t, base, id, secret)

			// A first call of our own, so that a server that refuses the
			// token or the FHIR surface says so plainly before the script.
			if r := get(t, base+"/fhir/R4/Patient?_count=1", token); r.status != http.StatusOK {
				t.Fatalf("GET /fhir/R4/Patient with the client's token = %d: %s", r.status, r.body)
			}
			sum := runClientScript(t, tools, base+"/fhir/R4", token)
			checkServerState(t, base, token, sum)
		})
	}
}

// scriptSummary is the script's last line.
type scriptSummary struct {
	Created int      `json:"created"`
	Pages   []int    `json:"pages"`
	History []string `json:"history"`
	Target  string   `json:"target"`
}

// runClientScript runs client-e2e.mjs against fhirBase and checks that every
// step ran and passed, in order.
func runClientScript(t *testing.T, tools nodeTools, fhirBase, token string) scriptSummary {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := tools.node(ctx, "client-e2e.mjs", fhirBase)
	// The token goes in the environment (arguments are visible to every
	// user in the process list). DEBUG would make fhir-kit-client log
	// request headers, the token among them.
	cmd.Env = append(withoutEnv(os.Environ(), "DEBUG", "CAREFLOW_E2E_TOKEN"), "CAREFLOW_E2E_TOKEN="+token)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	runErr := cmd.Run()
	t.Logf("client-e2e.mjs:\n%s", stdout.Bytes())
	if runErr != nil {
		t.Fatalf("client-e2e.mjs failed: %v\nstderr: %s", runErr, stderr.Bytes())
	}
	var steps []string
	var sum scriptSummary
	haveSummary := false
	for _, line := range strings.Split(strings.TrimSpace(stdout.String()), "\n") {
		switch {
		case strings.HasPrefix(line, "ok "):
			name, _, _ := strings.Cut(strings.TrimPrefix(line, "ok "), ":")
			steps = append(steps, name)
		case strings.HasPrefix(line, "summary "):
			if err := json.Unmarshal([]byte(strings.TrimPrefix(line, "summary ")), &sum); err != nil {
				t.Fatalf("summary line: %v", err)
			}
			haveSummary = true
		default:
			t.Errorf("unexpected output line: %s", line)
		}
	}
	want := []string{"create", "read", "search-paging", "update-if-match", "update-stale-if-match", "history", "vread"}
	if !slices.Equal(steps, want) {
		t.Fatalf("steps passed: %v, want %v", steps, want)
	}
	if !haveSummary || sum.Created != 25 || !slices.Equal(sum.Pages, []int{10, 10, 5}) || !slices.Equal(sum.History, []string{"2", "1"}) || sum.Target == "" {
		t.Fatalf("summary %+v, want 25 created, pages 10+10+5, history 2,1", sum)
	}
	return sum
}

// checkServerState looks at what the client left, with our own HTTP calls:
// 25 Patients, the updated one at version 2 with version 1 still readable.
func checkServerState(t *testing.T, base, token string, sum scriptSummary) {
	t.Helper()
	r := get(t, base+"/fhir/R4/Patient?_summary=count", token)
	var count struct {
		Total *int `json:"total"`
	}
	if r.status != 200 || json.Unmarshal(r.body, &count) != nil || count.Total == nil || *count.Total != 25 {
		t.Errorf("Patient?_summary=count = %d %s, want total 25", r.status, r.body)
	}
	for _, c := range []struct {
		path, version string
		active        bool
	}{
		{"/fhir/R4/Patient/" + url.PathEscape(sum.Target), "2", false},
		{"/fhir/R4/Patient/" + url.PathEscape(sum.Target) + "/_history/1", "1", true},
	} {
		r := get(t, base+c.path, token)
		var p struct {
			Active bool `json:"active"`
			Meta   struct {
				VersionID string `json:"versionId"`
			} `json:"meta"`
		}
		if r.status != 200 || json.Unmarshal(r.body, &p) != nil || p.Meta.VersionID != c.version || p.Active != c.active {
			t.Errorf("GET %s = %d, version %q active %v; want version %s active %v", c.path, r.status, p.Meta.VersionID, p.Active, c.version, c.active)
		}
	}
}

// clientToken asks the token endpoint for a client_credentials token.
func clientToken(t *testing.T, base, id, secret string) string {
	t.Helper()
	form := url.Values{"grant_type": {"client_credentials"}, "client_id": {id}, "client_secret": {secret}}
	resp, err := http.Post(base+"/api/v1/auth/token", "application/x-www-form-urlencoded", strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var tr struct {
		AccessToken string `json:"access_token"`
		TokenType   string `json:"token_type"`
		Scope       string `json:"scope"`
	}
	if resp.StatusCode != 200 || json.Unmarshal(body, &tr) != nil || tr.AccessToken == "" || tr.TokenType != "Bearer" {
		t.Fatalf("POST /api/v1/auth/token = %d %s", resp.StatusCode, body)
	}
	if tr.Scope != clientScopes {
		t.Fatalf("token scope %q, want %q", tr.Scope, clientScopes)
	}
	return tr.AccessToken
}
