package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/careflow/careflow/internal/store"
	"github.com/careflow/careflow/internal/store/storetest"
)

// The clinical workflows' latency benchmark (BENCHMARKS.md, "Clinical
// workflows (issue 12)"): p50 and p99 of every route under
// /api/v1/clinical-workflows, measured by the client over HTTP against
// careflow as a child process (the test binary running main, as the revenue
// cycle's benchmarks do) holding N workflows, one request at a time and
// over several connections at once, with GET /healthz as the floor.
//
//	CAREFLOW_BENCH_CLINICAL=1 go test -run 'TestClinicalBench/sqlite' -v -timeout 300m ./cmd/careflow/
//
// or scripts/bench-clinical.sh. It is a test gated by
// CAREFLOW_BENCH_CLINICAL=1, not a Go benchmark, so neither `make test` nor
// `go test -bench .` seeds 100,000 workflows. Settings (environment):
//
//	CAREFLOW_BENCH_CLINICAL_N          workflows seeded (100000)
//	CAREFLOW_BENCH_CLINICAL_REQUESTS   requests per route and concurrency (2000)
//	CAREFLOW_BENCH_CLINICAL_CONNS      concurrencies measured ("1 8")
//	CAREFLOW_BENCH_CLINICAL_SEED_CONNS connections the seeding uses (8)
//	CAREFLOW_BENCH_CLINICAL_BUDGET     at most this long per route and concurrency (60s):
//	                                   a route slower than budget/REQUESTS reports fewer samples
//	CAREFLOW_BENCH_CLINICAL_PATIENTS   patients the workflows are spread over (300)
//
// The seed goes through the real API (POST /workflows and the step and
// cancel routes, in parallel), so each workflow costs what it costs a
// client: its row, its engine run and tasks, five FHIR Tasks with their
// indexes, its events and audit entries, one transaction. The API stamps
// every workflow with the server's clock, so afterwards, with careflow
// stopped, each workflow and its steps are moved back in time together by
// an offset of 0-60 days (shiftWorkflows): the date filters and analytics
// then see 60 days of work, and every duration within a workflow (time to
// complete, waits) stays what it was. The engine's own rows (runs, tasks,
// timers) and the FHIR Tasks keep the real times.
//
// Every figure is what the client saw, connection set-up excluded (the
// connections are kept alive), the server's logs at warn and its rate
// limits off (benchServeFlags). Nothing the benchmark prints is PHI: the
// patients are synthetic and only routes, counts and times are printed.

// clinicalBenchSettings are the benchmark's knobs, read from the
// environment.
type clinicalBenchSettings struct {
	n, requests, seedConns, patients int
	conns                            []int
	budget                           time.Duration
}

func clinicalBenchConfig(t *testing.T) clinicalBenchSettings {
	t.Helper()
	num := func(name string, def int) int {
		v := os.Getenv(name)
		if v == "" {
			return def
		}
		n, err := strconv.Atoi(strings.ReplaceAll(v, "_", ""))
		if err != nil || n < 1 {
			t.Fatalf("%s=%q: want a positive number", name, v)
		}
		return n
	}
	s := clinicalBenchSettings{
		n:         num("CAREFLOW_BENCH_CLINICAL_N", 100000),
		requests:  num("CAREFLOW_BENCH_CLINICAL_REQUESTS", 2000),
		seedConns: num("CAREFLOW_BENCH_CLINICAL_SEED_CONNS", 8),
		patients:  num("CAREFLOW_BENCH_CLINICAL_PATIENTS", 300),
		budget:    time.Minute,
	}
	for _, f := range strings.Fields(cmpOr(os.Getenv("CAREFLOW_BENCH_CLINICAL_CONNS"), "1 8")) {
		c, err := strconv.Atoi(f)
		if err != nil || c < 1 {
			t.Fatalf("CAREFLOW_BENCH_CLINICAL_CONNS: %q is not a positive number", f)
		}
		s.conns = append(s.conns, c)
	}
	if v := os.Getenv("CAREFLOW_BENCH_CLINICAL_BUDGET"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			t.Fatalf("CAREFLOW_BENCH_CLINICAL_BUDGET=%q: want a duration", v)
		}
		s.budget = d
	}
	// The ward physician's team holds every tenth patient: it needs some.
	s.patients = max(s.patients, 20)
	return s
}

func cmpOr(v, def string) string {
	if v == "" {
		return def
	}
	return v
}

func TestClinicalBench(t *testing.T) {
	if os.Getenv("CAREFLOW_BENCH_CLINICAL") != "1" {
		t.Skip("set CAREFLOW_BENCH_CLINICAL=1 to run the clinical workflows' benchmark (scripts/bench-clinical.sh)")
	}
	cfg := clinicalBenchConfig(t)
	for _, d := range storetest.Backends() {
		t.Run(string(d), func(t *testing.T) {
			e := newClinicalBenchEnv(t, d)
			began := time.Now()
			e.setUp(cfg)
			setup := time.Since(began)
			began = time.Now()
			e.seed(cfg)
			seeded := time.Since(began)
			fmt.Printf("# %s: %d workflows over %d patients and %d providers; set-up %v; seeded in %v (%.1f workflows/s, %d connections)\n",
				d, cfg.n, cfg.patients, len(e.providers), setup.Round(time.Second), seeded.Round(time.Second),
				float64(cfg.n)/seeded.Seconds(), cfg.seedConns)
			began = time.Now()
			e.restartShifted()
			fmt.Printf("# %s: workflows spread over 60 days and careflow restarted in %v\n", d, time.Since(began).Round(time.Second))
			e.measureAll(cfg)
		})
	}
}

// clinicalBenchEnv is careflow as a child process on its own data, the
// people and the client who use it, and what the seed made (ids, versions
// and owners of the workflows), which the routes draw on.
type clinicalBenchEnv struct {
	t      *testing.T
	d      store.Dialect
	dir    string
	dbURL  string // empty on SQLite
	base   string
	args   []string
	cur    *child
	client *http.Client

	// The people: seedDoctor and seedNurse are in a care team holding
	// every patient (they seed and write); wardDoctor's team holds every
	// tenth patient (the reads: a ward physician's reach, confined in
	// SQL); admin is clinical_admin (any patient, no clinical text);
	// research is an integration client stating the research purpose (the
	// export), integration the same client for its default purpose.
	seedDoctor, seedNurse, wardDoctor, admin, research, integration *benchCaller

	providers  []string
	patients   []string
	encounters []string // encounters[i] is patients[i]'s
	consented  func(patient int) bool
	ward       func(patient int) bool

	workflows []*seededWorkflow
}

// seededWorkflow is what the benchmark knows of a workflow it made. Only
// one goroutine at a time owns a workflow after the seed (pools are
// disjoint per route and per connection), so its fields need no lock.
type seededWorkflow struct {
	id       string
	patient  int
	priority string
	version  int
	state    string // untouched, started, completed, cancelled
	steps    []benchStep
}

type benchStep struct {
	ID      string `json:"id"`
	Role    string `json:"role"`
	Status  string `json:"status"`
	Version int    `json:"version"`
}

// benchWorkflowJSON is what the benchmark reads of a workflow answered.
type benchWorkflowJSON struct {
	ID       string      `json:"id"`
	Priority string      `json:"priority"`
	Status   string      `json:"status"`
	Version  int         `json:"version"`
	Steps    []benchStep `json:"steps"`
}

const clinicalBenchPassword = "clinical-bench-passphrase-2026"

func newClinicalBenchEnv(t *testing.T, d store.Dialect) *clinicalBenchEnv {
	ctx := context.Background()
	dir := t.TempDir()
	e := &clinicalBenchEnv{t: t, d: d, dir: dir}
	settings := []string{"--data-dir", filepath.Join(dir, "careflow")}
	if d == store.Postgres {
		e.dbURL = storetest.NewPostgresDatabase(t)
		settings = append(settings, "--database", e.dbURL)
	}
	pw := filepath.Join(dir, "pw")
	if err := os.WriteFile(pw, []byte(clinicalBenchPassword+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	noEnv := func(string) string { return "" }
	cli := func(args ...string) string {
		var out, errOut bytes.Buffer
		if code := run(ctx, append(args, settings...), &out, &errOut, noEnv); code != 0 {
			t.Fatalf("careflow %s: %d %s", args[0], code, errOut.String())
		}
		return out.String()
	}
	userID := regexp.MustCompile(`\(id ([^,]+),`)
	person := func(name, role string) *benchCaller {
		m := userID.FindStringSubmatch(cli("user", "add", name, "--role", role, "--password-file", pw))
		if m == nil {
			t.Fatalf("user add %s: no id in its output", name)
		}
		return &benchCaller{env: e, name: name, userID: m[1]}
	}
	e.seedDoctor = person("dr.seed", "physician")
	e.seedNurse = person("rn.seed", "nurse")
	e.wardDoctor = person("dr.ward", "physician")
	e.admin = person("ca.admin", "clinical_admin")
	creds := cli("client", "add", "research-bench", "--scopes",
		"system/Patient.cruds system/Practitioner.cruds system/Encounter.cruds system/ClinicalWorkflow.rs")
	e.research = &benchCaller{env: e, name: "research-bench", purpose: "research"}
	for _, line := range strings.Split(creds, "\n") {
		if v, ok := strings.CutPrefix(line, "client_id: "); ok {
			e.research.clientID = v
		}
		if v, ok := strings.CutPrefix(line, "client_secret: "); ok {
			e.research.secret = v
		}
	}
	if e.research.clientID == "" || e.research.secret == "" {
		t.Fatal("client add: no credentials in its output")
	}
	// The same client registers the patients, providers and encounters,
	// for its default purpose (operations): research is for the export.
	e.integration = &benchCaller{env: e, name: "research-bench", clientID: e.research.clientID, secret: e.research.secret}

	port := freeSoakPort(t)
	e.base = "http://127.0.0.1:" + port
	e.args = append(append([]string{"serve", "--listen", "127.0.0.1:" + port, "--log-level", "warn"}, settings...), benchServeFlags...)
	// Keep-alive connections, enough for every concurrent caller: the
	// default transport keeps two per host, and the others would pay a
	// new TCP connection per request.
	e.client = &http.Client{Timeout: 2 * time.Minute, Transport: &http.Transport{
		MaxIdleConns: 256, MaxIdleConnsPerHost: 256, IdleConnTimeout: 5 * time.Minute}}
	e.start()
	return e
}

func (e *clinicalBenchEnv) start() {
	e.cur = startChild(e.t, e.dir, "run", nil, e.args...)
	waitHealthy(e.t, e.cur, e.base)
}

// stop stops careflow as an operator would (SIGTERM: drain, exit 0).
func (e *clinicalBenchEnv) stop() {
	if err := e.cur.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		e.t.Fatal(err)
	}
	select {
	case <-e.cur.done:
	case <-time.After(2 * time.Minute):
		e.t.Fatal("careflow did not stop within 2 minutes of SIGTERM")
	}
	if e.cur.err != nil {
		e.t.Fatalf("careflow exited: %v", e.cur.err)
	}
}

// benchCaller is one person or client signed in to careflow; a 401 (an
// access token past its 15 minutes) signs in again.
type benchCaller struct {
	env              *clinicalBenchEnv
	name, userID     string
	clientID, secret string
	// purpose is stated with every request (X-Purpose-Of-Use) when set.
	purpose string

	mu    sync.Mutex
	token string
}

func (c *benchCaller) signIn() error {
	var req *http.Request
	if c.clientID != "" {
		form := url.Values{"grant_type": {"client_credentials"}}
		req, _ = http.NewRequest(http.MethodPost, c.env.base+"/api/v1/auth/token", strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.SetBasicAuth(c.clientID, c.secret)
	} else {
		body, _ := json.Marshal(map[string]string{"username": c.name, "password": clinicalBenchPassword})
		req, _ = http.NewRequest(http.MethodPost, c.env.base+"/api/v1/auth/login", bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.env.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&tok); err != nil || resp.StatusCode != http.StatusOK || tok.AccessToken == "" {
		return fmt.Errorf("%s: sign-in answered %d", c.name, resp.StatusCode)
	}
	c.mu.Lock()
	c.token = tok.AccessToken
	c.mu.Unlock()
	return nil
}

// do sends one request as the caller and returns the status and body.
// Only a 401 is retried (once, after signing in again); the time of a
// retried request is not a sample (see measure).
func (c *benchCaller) do(method, path string, body []byte, contentType string) (int, []byte, bool, error) {
	retried := false
	for {
		c.mu.Lock()
		token := c.token
		c.mu.Unlock()
		if token == "" {
			if err := c.signIn(); err != nil {
				return 0, nil, retried, err
			}
			continue
		}
		status, b, err := c.env.send(method, path, body, contentType, token, c.purpose)
		if err == nil && status == http.StatusUnauthorized && !retried {
			retried = true
			if err := c.signIn(); err != nil {
				return 0, nil, retried, err
			}
			continue
		}
		return status, b, retried, err
	}
}

func (e *clinicalBenchEnv) send(method, path string, body []byte, contentType, token, purpose string) (int, []byte, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, e.base+path, rd)
	if err != nil {
		return 0, nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", contentType)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if purpose != "" {
		req.Header.Set("X-Purpose-Of-Use", purpose)
	}
	resp, err := e.client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

// call sends a set-up request and fails unless it is answered with want.
// Set-up bodies carry only synthetic data, and only the status and the
// server's problem (which never echoes PHI) are reported. Safe on any
// goroutine; must is call on the test's own.
func (c *benchCaller) call(method, path string, body any, want int) ([]byte, error) {
	var raw []byte
	ct := "application/json"
	switch b := body.(type) {
	case nil:
	case string:
		raw, ct = []byte(b), "application/fhir+json"
	default:
		var err error
		if raw, err = json.Marshal(b); err != nil {
			return nil, err
		}
	}
	status, out, _, err := c.do(method, path, raw, ct)
	if err != nil {
		return nil, fmt.Errorf("%s %s as %s: %w", method, path, c.name, err)
	}
	if status != want {
		return nil, fmt.Errorf("%s %s as %s: %d, want %d: %.300s", method, path, c.name, status, want, out)
	}
	return out, nil
}

func (c *benchCaller) must(method, path string, body any, want int) []byte {
	c.env.t.Helper()
	out, err := c.call(method, path, body, want)
	if err != nil {
		c.env.t.Fatal(err)
	}
	return out
}

// createdID sends a create and returns the new record's id.
func (c *benchCaller) createdID(path string, body any) (string, error) {
	b, err := c.call("POST", path, body, http.StatusCreated)
	if err != nil {
		return "", err
	}
	var v struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal(b, &v); err != nil || v.ID == "" {
		return "", fmt.Errorf("POST %s: no id in the answer", path)
	}
	return v.ID, nil
}

// parallel runs fn(i) for i in [0, n) on conns goroutines, stopping at the
// first failure (reported through t from the calling goroutine).
func parallel(t *testing.T, n, conns int, fn func(i int) error) {
	t.Helper()
	var next atomic.Int64
	var failed atomic.Pointer[error]
	var wg sync.WaitGroup
	for range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for failed.Load() == nil {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				if err := fn(i); err != nil {
					failed.CompareAndSwap(nil, &err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if err := failed.Load(); err != nil {
		t.Fatal(*err)
	}
}

// setUp makes the providers, the patients with an encounter each, the two
// care teams, and the research consents of every other patient.
func (e *clinicalBenchEnv) setUp(cfg clinicalBenchSettings) {
	t := e.t
	e.ward = func(p int) bool { return p%10 == 0 }
	e.consented = func(p int) bool { return p%2 == 0 }
	e.providers = make([]string, 12)
	parallel(t, len(e.providers), 4, func(i int) (err error) {
		body := fmt.Sprintf(`{"resourceType":"Practitioner","identifier":[{"system":"urn:bench:practitioner","value":"P-%d"}],"name":[{"family":"Provider%d","given":["Bench"]}]}`, i, i)
		e.providers[i], err = e.integration.createdID("/fhir/R4/Practitioner", body)
		return err
	})
	e.patients = make([]string, cfg.patients)
	e.encounters = make([]string, cfg.patients)
	parallel(t, cfg.patients, 4, func(i int) (err error) {
		body := fmt.Sprintf(`{"resourceType":"Patient","identifier":[{"system":"urn:bench:mrn","value":"MRN-%06d"}],"name":[{"family":"Patient%d","given":["Bench"]}],"gender":"%s","birthDate":"%d-0%d-1%d"}`,
			i, i, []string{"female", "male"}[i%2], 1930+i%80, 1+i%9, i%10)
		if e.patients[i], err = e.integration.createdID("/fhir/R4/Patient", body); err != nil {
			return err
		}
		enc := fmt.Sprintf(`{"resourceType":"Encounter","status":"in-progress","class":{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"IMP"},"subject":{"reference":"Patient/%s"},"participant":[{"individual":{"reference":"Practitioner/%s"}}],"period":{"start":"%s"}}`,
			e.patients[i], e.providers[i%len(e.providers)], time.Now().UTC().AddDate(0, 0, -i%60).Format(time.RFC3339))
		e.encounters[i], err = e.integration.createdID("/fhir/R4/Encounter", enc)
		return err
	})
	all, err := e.admin.createdID("/api/v1/care-teams", map[string]string{"name": "Bench all wards"})
	if err != nil {
		t.Fatal(err)
	}
	ward, err := e.admin.createdID("/api/v1/care-teams", map[string]string{"name": "Bench ward"})
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range []struct {
		team string
		who  *benchCaller
		role string
	}{{all, e.seedDoctor, "attending"}, {all, e.seedNurse, "nurse"}, {ward, e.wardDoctor, "attending"}} {
		e.admin.must("PUT", "/api/v1/care-teams/"+m.team+"/members/"+m.who.userID, map[string]string{"role": m.role}, http.StatusNoContent)
	}
	parallel(t, cfg.patients, 4, func(i int) error {
		if _, err := e.admin.call("PUT", "/api/v1/care-teams/"+all+"/patients/"+e.patients[i], nil, http.StatusNoContent); err != nil {
			return err
		}
		if e.ward(i) {
			if _, err := e.admin.call("PUT", "/api/v1/care-teams/"+ward+"/patients/"+e.patients[i], nil, http.StatusNoContent); err != nil {
				return err
			}
		}
		if e.consented(i) {
			_, err := e.admin.call("PUT", "/api/v1/patients/"+e.patients[i]+"/consents", map[string]any{"version": 0,
				"consents": []map[string]string{{"purpose": "research", "decision": "permit"}}}, http.StatusOK)
			return err
		}
		return nil
	})
}

var (
	benchTypes      = []string{"admission", "outpatient_consultation", "procedure", "discharge", "medication_reconciliation", "custom"}
	benchPriorities = []string{"routine", "routine", "routine", "routine", "urgent", "urgent", "emergency"}
)

// createBody is the i-th workflow a seed or the POST route creates:
// every type in turn, priorities 4:2:1 routine, urgent, emergency, the
// patients spread by a stride prime to their count, 12 providers, half
// with the patient's encounter, synthetic clinical text.
func (e *clinicalBenchEnv) createBody(i int) (map[string]any, int) {
	p := (i * 7919) % len(e.patients)
	body := map[string]any{
		"type": benchTypes[i%len(benchTypes)], "priority": benchPriorities[(i/len(benchTypes))%len(benchPriorities)],
		"patient": "Patient/" + e.patients[p], "provider": "Practitioner/" + e.providers[(i/3)%len(e.providers)],
		"chief_complaint":   fmt.Sprintf("Bench complaint %d: shortness of breath", i),
		"clinical_notes":    fmt.Sprintf("Bench note %d. Patient improving on oral antibiotics; review in the morning.", i),
		"working_diagnosis": "Community-acquired pneumonia",
	}
	if i%2 == 0 {
		body["encounter"] = "Encounter/" + e.encounters[p]
	}
	if body["type"] == "custom" {
		body["steps"] = []map[string]any{{"code": "wound_check", "role": "nurse", "due_minutes": 120}, {"code": "review", "role": "physician", "due_minutes": 240}}
	}
	return body, p
}

// seed creates cfg.n workflows over cfg.seedConns connections; of each ten,
// one is cancelled, one driven to completion (every step started and
// completed by its role), one has its first step started, and seven are
// left as created (the pools the write routes draw on). A fifth are
// created by the nurse.
func (e *clinicalBenchEnv) seed(cfg clinicalBenchSettings) {
	e.workflows = make([]*seededWorkflow, cfg.n)
	// A line a minute, so a long seed shows it is moving.
	var done atomic.Int64
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		began := time.Now()
		for {
			select {
			case <-stop:
				return
			case <-time.After(time.Minute):
				n := done.Load()
				fmt.Printf("# %s: seeded %d of %d (%.1f workflows/s), load %s\n", e.d, n, cfg.n, float64(n)/time.Since(began).Seconds(), loadAverage())
				e.standInForAutovacuum()
			}
		}
	}()
	parallel(e.t, cfg.n, cfg.seedConns, func(i int) error {
		defer done.Add(1)
		body, p := e.createBody(i)
		by := e.seedDoctor
		if i%5 == 4 {
			by = e.seedNurse
		}
		w := &seededWorkflow{patient: p, priority: body["priority"].(string), state: "untouched"}
		if err := w.apply(by.call("POST", clinicalWorkflow, body, http.StatusCreated)); err != nil {
			return err
		}
		switch i % 10 {
		case 7:
			if err := e.moveStep(w, 0, "in_progress"); err != nil {
				return err
			}
			w.state = "started"
		case 8:
			if err := w.apply(e.seedDoctor.call("PUT", clinicalWorkflow+"/"+w.id,
				map[string]any{"version": w.version, "status": "cancelled", "reason": "bench_cancelled"}, http.StatusOK)); err != nil {
				return err
			}
			w.state = "cancelled"
		case 9:
			for s := range w.steps {
				for _, to := range []string{"in_progress", "completed"} {
					if err := e.moveStep(w, s, to); err != nil {
						return err
					}
				}
			}
			if w.steps[len(w.steps)-1].Status != "completed" {
				return fmt.Errorf("workflow %s not completed after its steps", w.id)
			}
			w.state = "completed"
		}
		e.workflows[i] = w
		return nil
	})
}

const clinicalWorkflow = "/api/v1/clinical-workflows/workflows"

// apply takes a workflow's answer (or the error of the request) as the
// benchmark's knowledge of it.
func (w *seededWorkflow) apply(b []byte, err error) error {
	if err != nil {
		return err
	}
	var v benchWorkflowJSON
	if err := json.Unmarshal(b, &v); err != nil || v.ID == "" {
		return fmt.Errorf("a workflow answer that is not one (%d bytes)", len(b))
	}
	if w.id != "" && v.ID != w.id {
		return fmt.Errorf("asked for workflow %s, answered %s", w.id, v.ID)
	}
	w.id, w.version, w.priority, w.steps = v.ID, v.Version, v.Priority, v.Steps
	return nil
}

// stepCaller is who of the seeding team works a step of role.
func (e *clinicalBenchEnv) stepCaller(role string) *benchCaller {
	if role == "nurse" {
		return e.seedNurse
	}
	return e.seedDoctor
}

func (e *clinicalBenchEnv) moveStep(w *seededWorkflow, s int, to string) error {
	st := w.steps[s]
	return w.apply(e.stepCaller(st.Role).call("PUT", clinicalWorkflow+"/"+w.id+"/steps/"+st.ID,
		map[string]any{"status": to, "version": st.Version}, http.StatusOK))
}

// standInForAutovacuum vacuums and analyzes the benchmark's PostgreSQL
// database when the server runs with autovacuum off (the CI machines' own
// setting, for short-lived test databases): without it no table ever has
// statistics or loses its dead rows, and a 100,000-workflow seed measures
// that (the planner guessing sequential scans of tables it thinks empty)
// rather than careflow on a server as deployed. Once a minute of the seed
// and before the measurement it does what autovacuum would have done; with
// autovacuum on it does nothing. Printed, so the table's notes say so.
func (e *clinicalBenchEnv) standInForAutovacuum() {
	if e.dbURL == "" {
		return
	}
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, e.dbURL)
	if err != nil {
		e.t.Logf("stand in for autovacuum: %v", err)
		return
	}
	defer conn.Close(ctx)
	var on string
	if err := conn.QueryRow(ctx, `SHOW autovacuum`).Scan(&on); err != nil || on == "on" {
		return
	}
	began := time.Now()
	if _, err := conn.Exec(ctx, `VACUUM (ANALYZE)`); err != nil {
		e.t.Logf("stand in for autovacuum: %v", err)
		return
	}
	fmt.Printf("# %s: autovacuum is off on this server: VACUUM (ANALYZE) run in its place (%v)\n", e.d, time.Since(began).Round(100*time.Millisecond))
}

// restartShifted stops careflow, moves each workflow and its steps back by
// the same offset of up to 60 days (shiftWorkflows), and starts careflow
// again: every route is then measured on a server that has just started
// on a database it did not fill, as after a deployment.
func (e *clinicalBenchEnv) restartShifted() {
	e.stop()
	ctx := context.Background()
	db, err := store.Open(ctx, store.Config{URL: e.dbURL, DataDir: filepath.Join(e.dir, "careflow")})
	if err != nil {
		e.t.Fatal(err)
	}
	if err := shiftWorkflows(ctx, db); err != nil {
		db.Close()
		e.t.Fatal(err)
	}
	// The moved times are not what the analytics rollup was written from:
	// it is marked unbuilt, and careflow rebuilds it as it starts, as it
	// converts a database whose workflows predate the rollup.
	if err := db.Tx(ctx, func(tx store.Tx) error {
		_, err := tx.Exec(ctx, `DELETE FROM clinical_rollup_state`)
		return err
	}); err != nil {
		db.Close()
		e.t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		e.t.Fatal(err)
	}
	e.standInForAutovacuum()
	began := time.Now()
	e.start()
	fmt.Printf("# %s: careflow started in %v, the analytics rollup rebuilt from every workflow as it started\n", e.d, time.Since(began).Round(100*time.Millisecond))
}

// shiftOf is a workflow's offset into the past: 0 to 60 days, fixed by
// its id, so a workflow and its steps move together and a re-run of the
// shift (never done) would move them by the same amount again.
func shiftOf(id string) time.Duration {
	h := fnv.New64a()
	h.Write([]byte(id))
	return time.Duration(h.Sum64()%(60*24*60)) * time.Minute
}

// shiftWorkflows moves every clinical workflow's times, and its steps',
// back by shiftOf(id), in transactions of 500 workflows, through the
// store (whose time arguments and scans work on both dialects). It reads
// and writes only plain columns: ids and times.
func shiftWorkflows(ctx context.Context, db *store.DB) error {
	after := ""
	for {
		type times struct {
			id               string
			created, updated time.Time
			due, completed   *time.Time
		}
		var batch []*times
		rows, err := db.Reader().Query(ctx, `SELECT id, created_at, updated_at, due_at, completed_at FROM clinical_workflows
			WHERE id > $1 ORDER BY id LIMIT 500`, after)
		if err != nil {
			return err
		}
		for rows.Next() {
			w := &times{}
			if err := rows.Scan(&w.id, &w.created, &w.updated, &w.due, &w.completed); err != nil {
				rows.Close()
				return err
			}
			batch = append(batch, w)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		if len(batch) == 0 {
			return nil
		}
		after = batch[len(batch)-1].id
		back := func(t *time.Time, by time.Duration) *time.Time {
			if t == nil {
				return nil
			}
			v := t.Add(-by)
			return &v
		}
		err = db.Tx(ctx, func(tx store.Tx) error {
			for _, w := range batch {
				by := shiftOf(w.id)
				if _, err := tx.Exec(ctx, `UPDATE clinical_workflows SET created_at = $1, updated_at = $2, due_at = $3, completed_at = $4 WHERE id = $5`,
					w.created.Add(-by), w.updated.Add(-by), back(w.due, by), back(w.completed, by), w.id); err != nil {
					return err
				}
				srows, err := tx.Query(ctx, `SELECT id, created_at, updated_at, due_at, started_at, finished_at FROM clinical_steps WHERE workflow_id = $1`, w.id)
				if err != nil {
					return err
				}
				type step struct {
					id                     string
					created, updated       time.Time
					due, started, finished *time.Time
				}
				var steps []step
				for srows.Next() {
					var s step
					if err := srows.Scan(&s.id, &s.created, &s.updated, &s.due, &s.started, &s.finished); err != nil {
						srows.Close()
						return err
					}
					steps = append(steps, s)
				}
				srows.Close()
				if err := srows.Err(); err != nil {
					return err
				}
				for _, s := range steps {
					if _, err := tx.Exec(ctx, `UPDATE clinical_steps SET created_at = $1, updated_at = $2, due_at = $3, started_at = $4, finished_at = $5 WHERE id = $6`,
						s.created.Add(-by), s.updated.Add(-by), back(s.due, by), back(s.started, by), back(s.finished, by), s.id); err != nil {
						return err
					}
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
}

// benchRequest is one request of a route: who sends it, what, the status
// it must get, and what to learn from the answer (a write's new version).
type benchRequest struct {
	as           *benchCaller // nil: no token
	method, path string
	body         []byte
	contentType  string
	want         int
	learn        func(body []byte) error
}

// benchRoute makes the i-th request of connection conn of conns. Write
// routes hand each connection its own workflows (pools), so concurrent
// requests never race for a version.
type benchRoute struct {
	name string
	next func(conn, conns, i int) (benchRequest, error)
}

type benchResult struct {
	n, errors     int
	p50, p99, max time.Duration
	perSecond     float64
	firstError    string
}

// measure sends up to requests requests of r over conns connections (at
// most budget long; a route slower than that reports the samples it got),
// after a warm-up of a few requests per connection that are not counted.
// A sample is a request's round trip as the client saw it, on a kept-alive
// connection; a request that had to sign in again is not a sample.
func (e *clinicalBenchEnv) measure(r benchRoute, conns, requests int, budget time.Duration) benchResult {
	var (
		mu      sync.Mutex
		samples []time.Duration
		res     benchResult
		next    atomic.Int64
		wg      sync.WaitGroup
	)
	one := func(conn, i int, record bool) {
		req, err := r.next(conn, conns, i)
		var status int
		var body []byte
		retried := false
		began := time.Now()
		if err == nil {
			if req.as == nil {
				status, body, err = e.send(req.method, req.path, req.body, req.contentType, "", "")
			} else {
				status, body, retried, err = req.as.do(req.method, req.path, req.body, req.contentType)
			}
		}
		took := time.Since(began)
		if err == nil && status != req.want {
			err = fmt.Errorf("%s %s: %d, want %d: %.300s", req.method, req.path, status, req.want, body)
		}
		if err == nil && req.learn != nil {
			err = req.learn(body)
		}
		mu.Lock()
		defer mu.Unlock()
		if err != nil {
			res.errors++
			if res.firstError == "" {
				res.firstError = err.Error()
			}
			return
		}
		if record && !retried {
			samples = append(samples, took)
		}
	}
	warm := 3
	for c := range conns {
		for w := range warm {
			one(c, requests+c*warm+w, false)
		}
	}
	deadline := time.Now().Add(budget)
	began := time.Now()
	for c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(deadline) {
				i := int(next.Add(1) - 1)
				if i >= requests {
					return
				}
				one(c, i, true)
			}
		}()
	}
	wg.Wait()
	wall := time.Since(began)
	slices.Sort(samples)
	res.n = len(samples)
	res.p50, res.p99 = pct(samples, 0.50), pct(samples, 0.99)
	if len(samples) > 0 {
		res.max = samples[len(samples)-1]
	}
	res.perSecond = float64(res.n) / wall.Seconds()
	return res
}

func ms(d time.Duration) string { return strconv.FormatFloat(float64(d)/1e6, 'f', 1, 64) }

// measureAll measures every route at each concurrency and prints a
// Markdown table (rows start with "|"; scripts/bench-clinical.sh keeps
// them and the "#" lines).
func (e *clinicalBenchEnv) measureAll(cfg clinicalBenchSettings) {
	routes := e.routes(cfg)
	fmt.Printf("# %s: %d requests per route and concurrency (at most %v each), load %s\n", e.d, cfg.requests, cfg.budget, loadAverage())
	fmt.Println("| route | conns | n | p50 ms | p99 ms | max ms | req/s | errors |")
	fmt.Println("|---|---|---|---|---|---|---|---|")
	// A route that answers otherwise than it should is a finding, not the
	// end of the run: its row counts only the expected answers, its errors
	// column says how many were not, and a note gives the first (a
	// problem+json or a status: the server never echoes PHI in either).
	for _, r := range routes {
		for _, c := range cfg.conns {
			res := e.measure(r, c, cfg.requests, cfg.budget)
			fmt.Printf("| %s | %d | %d | %s | %s | %s | %.0f | %d |\n", r.name, c, res.n, ms(res.p50), ms(res.p99), ms(res.max), res.perSecond, res.errors)
			if res.errors > 0 {
				fmt.Printf("# %s at %d connections: %d errors; the first: %.400s\n", r.name, c, res.errors, strings.Join(strings.Fields(res.firstError), " "))
			}
		}
	}
	fmt.Printf("# %s: done, load %s\n", e.d, loadAverage())
}

func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	return strings.Join(strings.Fields(string(b))[:3], " ")
}

// pools splits the workflows left as created (state untouched) into k
// disjoint pools, one per write route, so no two routes change the same
// workflow.
func (e *clinicalBenchEnv) pools(k int) [][]*seededWorkflow {
	out := make([][]*seededWorkflow, k)
	j := 0
	for _, w := range e.workflows {
		if w.state == "untouched" {
			out[j%k] = append(out[j%k], w)
			j++
		}
	}
	for i := range out {
		if len(out[i]) == 0 {
			e.t.Fatal("no workflow left as created for a write route: seed more")
		}
	}
	return out
}

// shares hands each connection its own share of a write route's pool
// (pool[i] with i mod conns = conn) and walks it: round robin when every
// workflow takes any number of writes, or staying on one workflow until
// done says it is used up.
type shares struct {
	pool []*seededWorkflow
	mu   sync.Mutex
	pos  map[[2]int]int // (conns, conn) -> position within the share
}

func newShares(pool []*seededWorkflow) *shares {
	return &shares{pool: pool, pos: map[[2]int]int{}}
}

func (s *shares) take(conn, conns int, done func(*seededWorkflow) bool) (*seededWorkflow, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	size := (len(s.pool) - conn + conns - 1) / conns // the share's length
	if size <= 0 {
		return nil, fmt.Errorf("connection %d of %d has no workflow in its share of the pool", conn, conns)
	}
	k := [2]int{conns, conn}
	for range size {
		w := s.pool[conn+(s.pos[k]%size)*conns]
		if done == nil {
			s.pos[k]++
			return w, nil
		}
		if !done(w) {
			return w, nil
		}
		s.pos[k]++
	}
	return nil, fmt.Errorf("connection %d of %d has used up its share of the pool: seed more", conn, conns)
}

func (e *clinicalBenchEnv) routes(cfg clinicalBenchSettings) []benchRoute {
	t := e.t
	var wardIDs, consentedIDs []string
	wardPatients := []int{}
	for i := range e.patients {
		if e.ward(i) {
			wardPatients = append(wardPatients, i)
		}
	}
	for _, w := range e.workflows {
		if e.ward(w.patient) {
			wardIDs = append(wardIDs, w.id)
		}
		if e.consented(w.patient) {
			consentedIDs = append(consentedIDs, w.id)
		}
	}
	pick := func(list []string, i int) string { return list[(i*7919)%len(list)] }
	get := func(as *benchCaller, path string) benchRequest {
		return benchRequest{as: as, method: "GET", path: path, want: http.StatusOK}
	}
	base := "/api/v1/clinical-workflows"
	now := time.Now().UTC()

	// Later pages of the ward physician's list: the cursors of pages 2-6.
	var cursors []string
	cursor := ""
	for range 5 {
		path := clinicalWorkflow
		if cursor != "" {
			path += "?cursor=" + url.QueryEscape(cursor)
		}
		var page struct {
			NextCursor string `json:"next_cursor"`
		}
		if err := json.Unmarshal(e.wardDoctor.must("GET", path, nil, http.StatusOK), &page); err != nil || page.NextCursor == "" {
			break
		}
		cursor = page.NextCursor
		cursors = append(cursors, cursor)
	}
	if len(cursors) == 0 {
		t.Fatal("the ward physician's list has a single page: seed more workflows (N)")
	}

	pool := e.pools(3)
	putCur, addCur, stepCur := newShares(pool[0]), newShares(pool[1]), newShares(pool[2])
	var created atomic.Int64
	created.Store(int64(cfg.n))
	var encCreated atomic.Int64

	return []benchRoute{
		{"GET /healthz (floor)", func(_, _, _ int) (benchRequest, error) {
			return benchRequest{method: "GET", path: "/healthz", want: http.StatusOK}, nil
		}},
		{"GET /health", func(_, _, _ int) (benchRequest, error) {
			return benchRequest{method: "GET", path: base + "/health", want: http.StatusOK}, nil
		}},
		{"POST /workflows", func(_, _, _ int) (benchRequest, error) {
			body, _ := e.createBody(int(created.Add(1)))
			b, err := json.Marshal(body)
			return benchRequest{as: e.seedDoctor, method: "POST", path: clinicalWorkflow, body: b, contentType: "application/json", want: http.StatusCreated}, err
		}},
		{"GET /workflows (ward physician, first page)", func(_, _, _ int) (benchRequest, error) {
			return get(e.wardDoctor, clinicalWorkflow), nil
		}},
		{"GET /workflows (clinical_admin, first page)", func(_, _, _ int) (benchRequest, error) {
			return get(e.admin, clinicalWorkflow), nil
		}},
		{"GET /workflows?cursor= (pages 2-6)", func(_, _, i int) (benchRequest, error) {
			return get(e.wardDoctor, clinicalWorkflow+"?cursor="+url.QueryEscape(cursors[i%len(cursors)])), nil
		}},
		{"GET /workflows?patient=", func(_, _, i int) (benchRequest, error) {
			return get(e.wardDoctor, clinicalWorkflow+"?patient=Patient/"+e.patients[wardPatients[i%len(wardPatients)]]), nil
		}},
		{"GET /workflows?provider=&status=active", func(_, _, i int) (benchRequest, error) {
			return get(e.wardDoctor, clinicalWorkflow+"?status=active&provider=Practitioner/"+e.providers[i%len(e.providers)]), nil
		}},
		{"GET /workflows?status=&type=&priority=", func(_, _, i int) (benchRequest, error) {
			return get(e.wardDoctor, fmt.Sprintf("%s?status=active&type=%s&priority=%s", clinicalWorkflow,
				benchTypes[i%len(benchTypes)], []string{"emergency", "urgent", "routine"}[i%3])), nil
		}},
		{"GET /workflows?created_from=&created_to= (a week)", func(_, _, i int) (benchRequest, error) {
			to := now.AddDate(0, 0, -(i % 53))
			return get(e.wardDoctor, fmt.Sprintf("%s?created_from=%s&created_to=%s", clinicalWorkflow,
				to.AddDate(0, 0, -7).Format(time.RFC3339), to.Format(time.RFC3339))), nil
		}},
		{"GET /workflows?due_from=&due_to= (a day)", func(_, _, i int) (benchRequest, error) {
			to := now.AddDate(0, 0, -(i % 59))
			return get(e.wardDoctor, fmt.Sprintf("%s?due_from=%s&due_to=%s", clinicalWorkflow,
				to.AddDate(0, 0, -1).Format(time.RFC3339), to.Format(time.RFC3339))), nil
		}},
		{"GET /workflows/{id}", func(_, _, i int) (benchRequest, error) {
			return get(e.wardDoctor, clinicalWorkflow+"/"+pick(wardIDs, i)), nil
		}},
		{"PUT /workflows/{id} (priority)", func(conn, conns, _ int) (benchRequest, error) {
			w, err := putCur.take(conn, conns, nil)
			if err != nil {
				return benchRequest{}, err
			}
			to := "urgent"
			if w.priority == "urgent" {
				to = "routine"
			}
			b, _ := json.Marshal(map[string]any{"version": w.version, "priority": to})
			return benchRequest{as: e.seedDoctor, method: "PUT", path: clinicalWorkflow + "/" + w.id, body: b, contentType: "application/json",
				want: http.StatusOK, learn: func(b []byte) error { return w.apply(b, nil) }}, nil
		}},
		{"POST /workflows/{id}/steps", func(conn, conns, _ int) (benchRequest, error) {
			// A workflow holds at most 50 steps; the template's and 40 added.
			w, err := addCur.take(conn, conns, func(w *seededWorkflow) bool { return len(w.steps) >= 45 })
			if err != nil {
				return benchRequest{}, err
			}
			role := []string{"nurse", "physician"}[len(w.steps)%2]
			b, _ := json.Marshal(map[string]any{"code": "bench_check", "role": role, "due_minutes": 30})
			return benchRequest{as: e.seedDoctor, method: "POST", path: clinicalWorkflow + "/" + w.id + "/steps", body: b, contentType: "application/json",
				want: http.StatusCreated, learn: func(b []byte) error { return w.apply(b, nil) }}, nil
		}},
		{"PUT /workflows/{id}/steps/{step_id}", func(conn, conns, _ int) (benchRequest, error) {
			// Each workflow's steps in turn: pending → in_progress →
			// completed, by the step's role; a finished workflow is left.
			w, err := stepCur.take(conn, conns, func(w *seededWorkflow) bool {
				return !slices.ContainsFunc(w.steps, func(s benchStep) bool { return s.Status == "pending" || s.Status == "in_progress" })
			})
			if err != nil {
				return benchRequest{}, err
			}
			s := slices.IndexFunc(w.steps, func(s benchStep) bool { return s.Status == "pending" || s.Status == "in_progress" })
			st := w.steps[s]
			to := "in_progress"
			if st.Status == "in_progress" {
				to = "completed"
			}
			b, _ := json.Marshal(map[string]any{"status": to, "version": st.Version})
			return benchRequest{as: e.stepCaller(st.Role), method: "PUT", path: clinicalWorkflow + "/" + w.id + "/steps/" + st.ID, body: b,
				contentType: "application/json", want: http.StatusOK, learn: func(b []byte) error { return w.apply(b, nil) }}, nil
		}},
		{"POST /encounters", func(_, _, _ int) (benchRequest, error) {
			i := int(encCreated.Add(1))
			p := (i * 7919) % len(e.patients)
			b := fmt.Sprintf(`{"resourceType":"Encounter","status":"arrived","class":{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"AMB"},"subject":{"reference":"Patient/%s"},"participant":[{"individual":{"reference":"Practitioner/%s"}}],"period":{"start":"%s"}}`,
				e.patients[p], e.providers[i%len(e.providers)], now.Format(time.RFC3339))
			return benchRequest{as: e.seedDoctor, method: "POST", path: base + "/encounters", body: []byte(b), contentType: "application/fhir+json", want: http.StatusCreated}, nil
		}},
		{"GET /encounters/{id}", func(_, _, i int) (benchRequest, error) {
			return get(e.wardDoctor, base+"/encounters/"+e.encounters[wardPatients[i%len(wardPatients)]]), nil
		}},
		{"GET /search?patient=", func(_, _, i int) (benchRequest, error) {
			return get(e.wardDoctor, base+"/search?patient=Patient/"+e.patients[wardPatients[i%len(wardPatients)]]), nil
		}},
		{"GET /search?status=&from=&to= (a week)", func(_, _, i int) (benchRequest, error) {
			to := now.AddDate(0, 0, -(i % 53))
			return get(e.wardDoctor, fmt.Sprintf("%s/search?status=active&from=%s&to=%s", base,
				to.AddDate(0, 0, -7).Format(time.RFC3339), to.Format(time.RFC3339))), nil
		}},
		{"GET /search?type=&priority=", func(_, _, i int) (benchRequest, error) {
			return get(e.wardDoctor, fmt.Sprintf("%s/search?type=%s&priority=%s", base,
				benchTypes[i%len(benchTypes)], []string{"emergency", "urgent", "routine"}[i%3])), nil
		}},
		{"GET /analytics (ward physician, last 30 days)", func(_, _, _ int) (benchRequest, error) {
			return get(e.wardDoctor, base+"/analytics"), nil
		}},
		{"GET /analytics (clinical_admin, last 30 days)", func(_, _, _ int) (benchRequest, error) {
			return get(e.admin, base+"/analytics"), nil
		}},
		{"GET /analytics?type=&provider= (a week)", func(_, _, i int) (benchRequest, error) {
			to := now.AddDate(0, 0, -(i % 53))
			return get(e.admin, fmt.Sprintf("%s/analytics?type=%s&provider=Practitioner/%s&from=%s&to=%s", base,
				benchTypes[i%len(benchTypes)], e.providers[i%len(e.providers)], to.AddDate(0, 0, -7).Format(time.RFC3339), to.Format(time.RFC3339))), nil
		}},
		{"POST /ai-training-data/{id}", func(_, _, i int) (benchRequest, error) {
			return benchRequest{as: e.research, method: "POST", path: base + "/ai-training-data/" + pick(consentedIDs, i), want: http.StatusOK}, nil
		}},
		{"GET /metrics", func(_, _, _ int) (benchRequest, error) {
			return get(e.admin, base+"/metrics"), nil
		}},
	}
}
