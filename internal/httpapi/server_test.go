package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/careflow/careflow/internal/errs"
	"github.com/careflow/careflow/internal/store"
	"github.com/careflow/careflow/internal/store/storetest"
)

// syncBuffer is a log sink safe for the server's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

type fixture struct {
	srv  *Server
	ts   *httptest.Server
	logs *syncBuffer
}

func newFixture(t *testing.T, db *store.DB, maxBody int64) *fixture {
	t.Helper()
	logs := &syncBuffer{}
	logger := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	srv := New(Options{Logger: logger, DB: db, MaxBodyBytes: maxBody, Version: "test"})
	// Routes that exist only in tests, to exercise the middleware; public,
	// so that these tests need no token.
	srv.handlePublicFunc("GET /api/v1/test/panic", func(w http.ResponseWriter, r *http.Request) {
		panic("a handler bug with secret detail")
	})
	// Waits for its client to hang up, then fails as an interrupted query
	// does.
	srv.handlePublicFunc("GET /api/v1/test/hangup", func(w http.ResponseWriter, r *http.Request) {
		<-r.Context().Done()
		srv.writeError(w, r, fmt.Errorf("query interrupted: %w", r.Context().Err()))
	})
	srv.handlePublicFunc("POST /api/v1/test/echo", func(w http.ResponseWriter, r *http.Request) {
		var in struct {
			Name string `json:"name"`
		}
		if err := decodeJSON(r, &in); err != nil {
			srv.writeError(w, r, err)
			return
		}
		writeJSON(w, "application/json", http.StatusOK, in)
	})
	srv.handlePublicFunc("POST /fhir/R4/test/read", func(w http.ResponseWriter, r *http.Request) {
		if _, err := io.ReadAll(r.Body); err != nil {
			srv.writeError(w, r, bodyError(err))
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(ts.Close)
	return &fixture{srv: srv, ts: ts, logs: logs}
}

func (f *fixture) do(t *testing.T, method, path string, body io.Reader, hdr map[string]string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, f.ts.URL+path, body)
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
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, b
}

func decodeProblem(t *testing.T, resp *http.Response, body []byte) Problem {
	t.Helper()
	if ct := resp.Header.Get("Content-Type"); ct != "application/problem+json" {
		t.Fatalf("Content-Type = %q, want application/problem+json; body %s", ct, body)
	}
	var p Problem
	if err := json.Unmarshal(body, &p); err != nil {
		t.Fatalf("problem body %s: %v", body, err)
	}
	if p.Status != resp.StatusCode {
		t.Fatalf("problem status %d, response status %d", p.Status, resp.StatusCode)
	}
	if p.RequestID == "" || p.RequestID != resp.Header.Get("X-Request-ID") {
		t.Fatalf("problem request_id %q, header %q", p.RequestID, resp.Header.Get("X-Request-ID"))
	}
	return p
}

func TestHealthz(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil, 0)
	resp, body := f.do(t, "GET", "/healthz", nil, nil)
	if resp.StatusCode != 200 || strings.TrimSpace(string(body)) != `{"status":"ok"}` {
		t.Fatalf("GET /healthz = %d %s", resp.StatusCode, body)
	}
	if resp.Header.Get("X-Request-ID") == "" {
		t.Fatal("no X-Request-ID on the response")
	}
	if resp.Header.Get("Cache-Control") != "no-store" || resp.Header.Get("X-Content-Type-Options") != "nosniff" {
		t.Fatalf("security headers missing: %v", resp.Header)
	}
}

func TestRequestIDIsHonouredOnlyWhenValid(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil, 0)
	cases := []struct {
		name, in string
		echoed   bool
	}{
		// Only the form careflow issues is kept (issuedRequestID); the PHI
		// side of this is TestIncomingRequestIDIsKeptOnlyWhenCareflowCouldHaveIssuedIt.
		{"a careflow uuid v7 is kept", "0193a4b2-7c1d-7f00-8a00-000000000001", true},
		{"a uuid v4 is kept", "3b241101-e2bb-4255-8caf-4136c566a962", true},
		{"a dotted trace id is replaced", "trace.abc_123:4-5", false},
		{"spaces are replaced", "two words", false},
		{"quotes are replaced", `x"y`, false},
		{"an over-long id is replaced", strings.Repeat("a", 129), false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			resp, _ := f.do(t, "GET", "/healthz", nil, map[string]string{"X-Request-ID": c.in})
			got := resp.Header.Get("X-Request-ID")
			if (got == c.in) != c.echoed || got == "" {
				t.Fatalf("X-Request-ID in %q out %q, echoed want %v", c.in, got, c.echoed)
			}
		})
	}
}

func TestUnknownRoutesAnswerInTheSurfacesErrorShape(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil, 0)

	resp, body := f.do(t, "GET", "/api/v1/nothing-here?name=Secret", nil, nil)
	if resp.StatusCode != 404 {
		t.Fatalf("status %d, want 404", resp.StatusCode)
	}
	p := decodeProblem(t, resp, body)
	if p.Type != "urn:careflow:problem:not_found" || p.Instance != "/api/v1/nothing-here" {
		t.Fatalf("problem %+v", p)
	}
	if strings.Contains(string(body), "Secret") {
		t.Fatal("the query string leaked into the error body")
	}

	resp, body = f.do(t, "GET", "/fhir/R4/NoSuchThing/1", nil, nil)
	if resp.StatusCode != 404 || resp.Header.Get("Content-Type") != "application/fhir+json" {
		t.Fatalf("FHIR 404: %d %s %s", resp.StatusCode, resp.Header.Get("Content-Type"), body)
	}
	var oo struct {
		ResourceType string `json:"resourceType"`
		Issue        []struct {
			Severity, Code string
		} `json:"issue"`
	}
	if err := json.Unmarshal(body, &oo); err != nil || oo.ResourceType != "OperationOutcome" || len(oo.Issue) != 1 || oo.Issue[0].Code != "not-found" {
		t.Fatalf("FHIR 404 body %s (%v)", body, err)
	}

	resp, body = f.do(t, "DELETE", "/healthz", nil, nil)
	if resp.StatusCode != 405 {
		t.Fatalf("DELETE /healthz = %d, want 405", resp.StatusCode)
	}
	if allow := resp.Header.Get("Allow"); !strings.Contains(allow, "GET") {
		t.Fatalf("Allow = %q", allow)
	}
	decodeProblem(t, resp, body)
	if !strings.Contains(f.logs.String(), `"route":"unmatched"`) {
		t.Fatal("unmatched requests are not logged as such")
	}
}

func TestBodyOverTheLimitGives413(t *testing.T) {
	t.Parallel()
	const limit = 1024
	f := newFixture(t, nil, limit)
	big := strings.Repeat("x", limit+1)

	// Declared length over the limit: refused before any handler runs, on
	// any route, known or not.
	for _, path := range []string{"/api/v1/test/echo", "/api/v1/unknown"} {
		resp, body := f.do(t, "POST", path, strings.NewReader(big), map[string]string{"Content-Type": "application/json"})
		if resp.StatusCode != 413 {
			t.Fatalf("POST %s with %d bytes = %d, want 413", path, len(big), resp.StatusCode)
		}
		p := decodeProblem(t, resp, body)
		if p.Type != "urn:careflow:problem:too_large" {
			t.Fatalf("problem %+v", p)
		}
	}

	// Chunked (no declared length): the handler's read fails at the limit.
	chunked := io.MultiReader(strings.NewReader(`{"name":"`), strings.NewReader(big), strings.NewReader(`"}`))
	resp, body := f.do(t, "POST", "/api/v1/test/echo", chunked, map[string]string{"Content-Type": "application/json"})
	if resp.StatusCode != 413 {
		t.Fatalf("chunked over the limit = %d %s, want 413", resp.StatusCode, body)
	}
	resp, body = f.do(t, "POST", "/fhir/R4/test/read", io.MultiReader(strings.NewReader(big)), nil)
	if resp.StatusCode != 413 || resp.Header.Get("Content-Type") != "application/fhir+json" || !strings.Contains(string(body), `"too-long"`) {
		t.Fatalf("FHIR chunked over the limit = %d %s", resp.StatusCode, body)
	}

	// Under the limit is fine.
	resp, body = f.do(t, "POST", "/api/v1/test/echo", strings.NewReader(`{"name":"ok"}`), map[string]string{"Content-Type": "application/json"})
	if resp.StatusCode != 200 || strings.TrimSpace(string(body)) != `{"name":"ok"}` {
		t.Fatalf("small body = %d %s", resp.StatusCode, body)
	}
}

func TestStrictJSONNamesTheField(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil, 0)
	cases := []struct {
		name, body string
		status     int
		field      string
	}{
		{"unknown field", `{"name":"a","nmae":"b"}`, 400, "nmae"},
		{"wrong type", `{"name":5}`, 400, "name"},
		// The strict check names the member the body broke off in.
		{"malformed", `{"name":`, 400, "name"},
		{"malformed outside any member", `{"name" "a"}`, 400, ""},
		{"trailing data", `{"name":"a"} {}`, 400, ""},
		{"empty", ``, 400, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			resp, body := f.do(t, "POST", "/api/v1/test/echo", strings.NewReader(c.body), map[string]string{"Content-Type": "application/json"})
			if resp.StatusCode != c.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, c.status, body)
			}
			p := decodeProblem(t, resp, body)
			if p.Field != c.field {
				t.Fatalf("field %q, want %q (%+v)", p.Field, c.field, p)
			}
		})
	}
	resp, body := f.do(t, "POST", "/api/v1/test/echo", strings.NewReader(`{}`), map[string]string{"Content-Type": "text/plain"})
	if resp.StatusCode != 415 {
		t.Fatalf("text/plain body = %d %s, want 415", resp.StatusCode, body)
	}
}

func TestPanicGives500WithRequestIDAndNoStack(t *testing.T) {
	t.Parallel()
	const panicReqID = "0193a4b2-7c1d-7f00-8a00-0000000000a1"
	f := newFixture(t, nil, 0)
	resp, body := f.do(t, "GET", "/api/v1/test/panic", nil, map[string]string{"X-Request-ID": panicReqID})
	if resp.StatusCode != 500 {
		t.Fatalf("status %d, want 500", resp.StatusCode)
	}
	p := decodeProblem(t, resp, body)
	if p.RequestID != panicReqID || !strings.Contains(p.Detail, panicReqID) {
		t.Fatalf("problem %+v does not carry the request id", p)
	}
	for _, leak := range []string{"goroutine", ".go:", "secret detail", "handler bug"} {
		if strings.Contains(string(body), leak) {
			t.Fatalf("body leaks %q: %s", leak, body)
		}
	}
	logs := f.logs.String()
	if !strings.Contains(logs, "handler panic") || !strings.Contains(logs, panicReqID) {
		t.Fatal("the panic was not logged with its request id")
	}
	// The server keeps serving.
	if resp, _ := f.do(t, "GET", "/healthz", nil, nil); resp.StatusCode != 200 {
		t.Fatalf("after a panic /healthz = %d", resp.StatusCode)
	}
}

// A client that hangs up mid-request is logged as a client's cancellation
// (499, at info), not as an internal error: a load run's end logged
// hundreds of those.
func TestClientHangupIsNotAnInternalError(t *testing.T) {
	t.Parallel()
	const hangupReqID = "0193a4b2-7c1d-7f00-8a00-0000000000c3"
	f := newFixture(t, nil, 0)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, "GET", f.ts.URL+"/api/v1/test/hangup", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("X-Request-ID", hangupReqID)
	if resp, err := f.ts.Client().Do(req); err == nil {
		resp.Body.Close()
		t.Fatalf("the request was answered (%d) instead of abandoned", resp.StatusCode)
	}
	var line map[string]any
	deadline := time.Now().Add(5 * time.Second)
	for line == nil && time.Now().Before(deadline) {
		for _, l := range strings.Split(f.logs.String(), "\n") {
			if strings.Contains(l, hangupReqID) && strings.Contains(l, `"msg":"request"`) {
				if err := json.Unmarshal([]byte(l), &line); err != nil {
					t.Fatal(err)
				}
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	if line == nil {
		t.Fatalf("no access log line for the abandoned request:\n%s", f.logs.String())
	}
	if line["status"] != float64(StatusClientClosedRequest) || line["level"] != "INFO" {
		t.Errorf("access log line %v, want status 499 at INFO", line)
	}
	if logs := f.logs.String(); strings.Contains(logs, "internal error") {
		t.Errorf("a client's hang-up was logged as an internal error:\n%s", logs)
	}
}

func TestAccessLogHasRouteAndNoQuery(t *testing.T) {
	t.Parallel()
	const logReqID = "0193a4b2-7c1d-7f00-8a00-0000000000b2"
	f := newFixture(t, nil, 0)
	f.do(t, "GET", "/healthz?patient=Fatma+Hassan", nil, map[string]string{"X-Request-ID": logReqID})
	var line map[string]any
	for _, l := range strings.Split(f.logs.String(), "\n") {
		if strings.Contains(l, logReqID) {
			if err := json.Unmarshal([]byte(l), &line); err != nil {
				t.Fatal(err)
			}
		}
	}
	if line == nil {
		t.Fatal("no access log line for the request")
	}
	if line["route"] != "GET /healthz" || line["method"] != "GET" || line["status"] != float64(200) {
		t.Fatalf("access log line %v", line)
	}
	if _, ok := line["duration_ms"]; !ok {
		t.Fatalf("no duration in %v", line)
	}
	if strings.Contains(f.logs.String(), "Fatma") {
		t.Fatal("the query string reached the log")
	}
}

func TestReadinessFollowsTheDatabase(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		f := newFixture(t, db, 0)
		resp, body := f.do(t, "GET", "/readyz", nil, nil)
		if resp.StatusCode != 200 || !strings.Contains(string(body), `"migrations":"ok"`) {
			t.Fatalf("migrated database: /readyz = %d %s", resp.StatusCode, body)
		}
		// A failing registered check makes the node unready.
		srv := New(Options{DB: db, ReadyChecks: []ReadyCheck{{Name: "workers", Check: func(context.Context) error {
			return errs.E(errs.Unavailable, "stopped")
		}}}})
		rec := httptest.NewRecorder()
		srv.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/readyz", nil))
		if rec.Code != 503 || !strings.Contains(rec.Body.String(), `"workers":"stopped"`) {
			t.Fatalf("failing check: /readyz = %d %s", rec.Code, rec.Body.String())
		}
	})
	for _, d := range storetest.Backends() {
		t.Run(string(d)+"/unmigrated", func(t *testing.T) {
			db := storetest.OpenUnmigrated(t, d)
			f := newFixture(t, db, 0)
			resp, body := f.do(t, "GET", "/readyz", nil, nil)
			if resp.StatusCode != 503 || !strings.Contains(string(body), `"migrations":"pending"`) {
				t.Fatalf("unmigrated database: /readyz = %d %s", resp.StatusCode, body)
			}
		})
	}
}

func TestMetricsExposeRoutesPoolsAndRuntime(t *testing.T) {
	t.Parallel()
	db := storetest.Open(t, store.SQLite)
	f := newFixture(t, db, 0)
	f.srv.opts.Registry.MustRegister(db.Collector())
	f.do(t, "GET", "/healthz", nil, nil)
	f.do(t, "GET", "/api/v1/none", nil, nil)
	resp, body := f.do(t, "GET", "/metrics", nil, nil)
	if resp.StatusCode != 200 {
		t.Fatalf("/metrics = %d", resp.StatusCode)
	}
	for _, want := range []string{
		`careflow_http_request_duration_seconds_count{route="GET /healthz",status="200"} 1`,
		`careflow_http_request_duration_seconds_count{route="unmatched",status="404"} 1`,
		`careflow_db_connections_max{pool="sqlite_writer"} 1`,
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

// Every registered /api route and operational endpoint is in the OpenAPI
// document, and the document names no route that does not exist.
func TestOpenAPIDocumentsEveryRoute(t *testing.T) {
	t.Parallel()
	srv := New(Options{})
	var doc struct {
		Paths map[string]map[string]json.RawMessage `json:"paths"`
	}
	if err := json.Unmarshal(openAPIDocument, &doc); err != nil {
		t.Fatalf("openapi.json: %v", err)
	}
	documented := map[string]bool{}
	for path, ops := range doc.Paths {
		for method := range ops {
			documented[strings.ToUpper(method)+" "+path] = true
		}
	}
	registered := map[string]bool{}
	for _, p := range srv.Patterns() {
		if strings.HasPrefix(p, "GET /fhir/") || strings.Contains(p, " /fhir/") {
			continue // the FHIR surface is described by its CapabilityStatement
		}
		registered[p] = true
		if !documented[p] {
			t.Errorf("route %s is not in openapi.json", p)
		}
	}
	for p := range documented {
		if !registered[p] {
			t.Errorf("openapi.json documents %s, which is not registered", p)
		}
	}
}
