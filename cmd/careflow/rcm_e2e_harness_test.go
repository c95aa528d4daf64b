package main

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/careflow/careflow/internal/payer/sim"
	"github.com/careflow/careflow/internal/rcm"
	"github.com/careflow/careflow/internal/store"
	"github.com/careflow/careflow/internal/store/storetest"
)

// rcmHarness is the revenue cycle as a user meets it: `careflow payer-sim`
// (in-process, on an httptest server, with testdata/rcm_e2e_rules.yaml)
// and careflow's real serve (in-process, on a real listener, wired to the
// simulator with --hcx-gateway), a fee schedule loaded with `careflow fees
// load`, a billing clerk signed in with a password. Everything the tests
// do goes through HTTP.
type rcmHarness struct {
	t       *testing.T
	sim     *sim.Simulator
	simURL  string
	simDir  string // the simulator's data folder: its participants' keys
	dir     string
	dbURL   string
	addr    string // careflow's listen address, kept across restarts
	billing apiClient

	// failures counts the simulator's 5xx answers (only payer-flaky has
	// an error rate).
	failures *atomic.Int64
	// served stops the running serve; shared by the harness's per-test
	// copies (see on).
	served *struct{ stop func() }
}

// on is the harness as test t uses it: failures are t's, the state shared.
func (h *rcmHarness) on(t *testing.T) *rcmHarness {
	c := *h
	c.t = t
	c.billing.t = t
	return &c
}

// rcmE2EWaits are short payer waits: a late payer is checked on in
// seconds, and nothing in these tests waits on a healthy payer that long.
var rcmE2EWaits = rcm.Waits{Eligibility: 30 * time.Second, Preauth: 30 * time.Second, Claim: 30 * time.Second,
	StatusPolls: 2, Payment: 30 * time.Second, Attention: time.Hour}

const rcmE2EPassword = "a long enough passphrase"

func newRCMHarness(t *testing.T, backend store.Dialect) *rcmHarness {
	t.Helper()
	h := &rcmHarness{t: t, dir: t.TempDir(), failures: new(atomic.Int64), served: new(struct{ stop func() })}
	h.dbURL = filepath.Join(h.dir, store.DefaultSQLiteFile)
	if backend == store.Postgres {
		h.dbURL = storetest.NewPostgresDatabase(t)
	}

	raw, err := os.ReadFile(filepath.Join("testdata", "rcm_e2e_rules.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	rules, err := sim.ParseRules(raw)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	h.simDir = t.TempDir()
	s, err := sim.New(ctx, sim.Config{Rules: rules, DataDir: h.simDir, PollInterval: 20 * time.Millisecond,
		MaxBackoff: 500 * time.Millisecond, CallbackTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	h.sim = s
	// The simulator's 5xx answers are counted, so a scenario can show
	// that careflow met them and went on (the payer a message is for is
	// inside its JWE, so the count is the gateway's).
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
		s.Handler().ServeHTTP(rec, r)
		if rec.status >= 500 {
			h.failures.Add(1)
		}
	}))
	h.simURL = ts.URL
	s.Start(ctx)
	t.Cleanup(func() {
		// careflow first (its cleanup was registered later and runs
		// earlier), then the simulator.
		cancel()
		ts.Close()
		sctx, scancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer scancel()
		_ = s.Stop(sctx)
		_ = s.Close()
	})

	env := h.env()
	pwFile := filepath.Join(h.dir, "pw")
	if err := os.WriteFile(pwFile, []byte(rcmE2EPassword+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if code, out, errOut := runCmd(t, env, "user", "add", "billing.nour", "--role", "billing", "--password-file", pwFile); code != 0 {
		t.Fatalf("user add = %d %q %q", code, out, errOut)
	}
	for _, p := range []string{"payer-nile", "payer-slow", "payer-flaky"} {
		if code, out, errOut := runCmd(t, env, "fees", "load", p, filepath.Join("..", "..", "examples", "fee-schedule.csv")); code != 0 {
			t.Fatalf("fees load %s = %d %q %q", p, code, out, errOut)
		}
	}

	// One port for the harness's life: a restarted careflow is reached
	// at the callback address it registered.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h.addr = l.Addr().String()
	l.Close()
	h.start()
	t.Cleanup(func() { h.stopServe() })

	base := "http://" + h.addr
	b := apiClient{t: t, base: base}.do("POST", "/api/v1/auth/login", map[string]string{"username": "billing.nour", "password": rcmE2EPassword}, 200)
	h.billing = apiClient{t: t, base: base, token: decodeInto[struct {
		AccessToken string `json:"access_token"`
	}](t, b).AccessToken}
	return h
}

func (h *rcmHarness) env() map[string]string {
	return map[string]string{"CAREFLOW_DATABASE": h.dbURL, "CAREFLOW_DATA_DIR": h.dir}
}

// start runs serve in-process on the harness's address.
func (h *rcmHarness) start() {
	t := h.t
	t.Helper()
	cfg, _, err := parseConfig("serve", []string{"--listen", h.addr, "--data-dir", h.dir, "--database", h.dbURL,
		"--hcx-gateway", h.simURL, "--log-level", "error",
		// One clerk polls every scenario's journey at once.
		"--rate-limit-user", "100000/m"}, func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	listening := make(chan string, 1)
	done := make(chan int, 1)
	waits := rcmE2EWaits
	// The server's errors go to a file in its data folder, shown when
	// the test fails.
	logs, err := os.OpenFile(filepath.Join(h.dir, "serve.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	go func() { done <- serve(ctx, cfg, logs, serveHooks{listening: listening, rcmWaits: &waits}) }()
	select {
	case <-listening:
	case code := <-done:
		cancel()
		t.Fatalf("serve exited %d", code)
	case <-time.After(60 * time.Second):
		cancel()
		t.Fatal("serve did not start")
	}
	h.served.stop = func() {
		cancel()
		if code := <-done; code != 0 {
			t.Errorf("serve exit %d", code)
		}
		logs.Close()
		if t.Failed() {
			if b, err := os.ReadFile(logs.Name()); err == nil {
				t.Logf("serve's log:\n%s", b)
			}
		}
	}
	// careflow registers itself with the simulator as it starts; a
	// journey started before that would wait on the gateway's refusals.
	h.eventually("careflow registered with the simulator", func() bool {
		resp, err := http.Post(h.simURL+"/participant/search", "application/json",
			strings.NewReader(`{"filters":{"participant_code":{"eq":"careflow-provider"}}}`))
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode == 200 && strings.Contains(string(body), "http://"+h.addr+"/hcx/v1")
	})
}

func (h *rcmHarness) stopServe() {
	if h.served.stop != nil {
		h.served.stop()
		h.served.stop = nil
	}
}

// serverErrors is how many 5xx answers the simulator gave.
func (h *rcmHarness) serverErrors() int {
	return int(h.failures.Load())
}

// eventually polls cond until it holds, or fails the test after three
// minutes: a journey takes about a second on an idle machine, but a shared
// 2-core runner under -race can be many times slower.
func (h *rcmHarness) eventually(what string, cond func() bool) {
	h.t.Helper()
	deadline := time.Now().Add(3 * time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			h.t.Fatalf("%s: not within three minutes", what)
		}
		<-time.After(150 * time.Millisecond)
	}
}

// journeyJSON is a journey as GET /api/v1/rcm/journeys/{id} shows it.
type journeyJSON struct {
	ID         string            `json:"id"`
	Kind       string            `json:"kind"`
	Status     string            `json:"status"`
	Outcome    string            `json:"outcome"`
	Reason     string            `json:"reason"`
	Patient    string            `json:"patient"`
	Payer      string            `json:"payer"`
	Amounts    rcm.Amounts       `json:"amounts"`
	References map[string]string `json:"references"`
	AppealOf   string            `json:"appeal_of"`
	NeedsInfo  bool              `json:"needs_information"`
	Steps      []rcm.StepView    `json:"steps"`
}

// visit is a journey request for a patient of the tests.
func visitOf(kind, payer, member string, dx, px []string) rcm.JourneyRequest {
	return rcm.JourneyRequest{Kind: kind,
		Patient:        rcm.PatientInput{NationalID: "29001011234567", Family: "Hassan", Given: []string{"Mona"}, Gender: "female"},
		Encounter:      rcm.EncounterInput{Start: "2026-03-02"},
		DiagnosisCodes: dx, ProcedureCodes: px,
		Insurance: rcm.InsuranceInput{Payer: payer, MemberID: member}}
}

func (h *rcmHarness) startJourney(c apiClient, req rcm.JourneyRequest, want int) journeyJSON {
	h.t.Helper()
	return decodeInto[journeyJSON](h.t, c.do("POST", "/api/v1/rcm/journeys", req, want))
}

func (h *rcmHarness) journey(c apiClient, id string) journeyJSON {
	h.t.Helper()
	return decodeInto[journeyJSON](h.t, c.do("GET", "/api/v1/rcm/journeys/"+id, nil, 200))
}

// waitFinal polls the journey until it leaves active.
func (h *rcmHarness) waitFinal(c apiClient, id string) journeyJSON {
	h.t.Helper()
	var j journeyJSON
	h.eventually("journey "+id+" reaching an outcome", func() bool {
		j = h.journey(c, id)
		return j.Status != rcm.StatusActive
	})
	return j
}

// fhir reads a resource at /fhir/R4 by its reference.
func (h *rcmHarness) fhir(c apiClient, reference string) map[string]any {
	h.t.Helper()
	if reference == "" {
		h.t.Fatal("no reference to read")
	}
	return decodeInto[map[string]any](h.t, c.do("GET", "/fhir/R4/"+reference, nil, 200))
}

// ledgerClean checks that the simulator adjudicated no claim twice.
func (h *rcmHarness) ledgerClean() {
	h.t.Helper()
	sum, err := h.sim.Ledger().Summary(context.Background())
	if err != nil {
		h.t.Fatal(err)
	}
	if len(sum.ProcessedTwice) != 0 {
		h.t.Errorf("claims processed twice by the payer: %v", sum.ProcessedTwice)
	}
}

// expectAmounts compares a journey's amounts.
func expectAmounts(t *testing.T, j journeyJSON, billed, approved, share, paid, variance string) {
	t.Helper()
	want := rcm.Amounts{Billed: billed, Approved: approved, PatientShare: share, Paid: paid, Variance: variance}
	if j.Amounts != want {
		t.Errorf("amounts %+v, want %+v", j.Amounts, want)
	}
}

type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (r *statusRecorder) WriteHeader(code int) {
	r.status = code
	r.ResponseWriter.WriteHeader(code)
}

func (r *statusRecorder) Flush() {
	if f, ok := r.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// jsonString is a compact rendering for failure messages.
func jsonString(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

func readAll(t *testing.T, resp *http.Response) string {
	t.Helper()
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
