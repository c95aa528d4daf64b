package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/careflow/careflow/internal/rcm"
	"github.com/careflow/careflow/internal/store"
	"github.com/careflow/careflow/internal/store/storetest"
)

// The revenue cycle's fault soak (issue 11, "Faults"): a batch of claims
// against `careflow payer-sim` failing 30% of careflow's calls (503s, and
// calls held past careflow's patience), duplicating callbacks and
// delivering payment notices before claim responses, while careflow — a
// child process on its own data — is SIGKILLed twice mid-batch and started
// again. It ends when every journey is final, then holds careflow to the
// promise: every entry has a journey, none is lost or stuck, each has one
// Claim in the FHIR record, and the payer saw no claim twice.
//
// `make test` runs soakSmall claims (soakRace under the race detector,
// whose RSA operations are many times slower); `make soak`
// (CAREFLOW_SOAK=1) runs soakFull; CAREFLOW_SOAK_N sets any size. Every
// outcome is known from the scenario mix, so the counts are asserted
// exactly.
const (
	soakSmall = 80
	soakRace  = 12
	soakFull  = 10000
)

// soakScenario is one kind of claim the batch mixes, in turn.
type soakScenario struct {
	name      string
	kind      string
	procedure string
	preauth   bool
	outcome   string // the journey's expected outcome
	simClaim  string // the payer's outcome in its ledger
}

var soakScenarios = []soakScenario{
	{name: "paid", kind: "standard", procedure: "99213", outcome: rcm.OutcomePaid, simClaim: "approved"},
	{name: "partial", kind: "standard", procedure: "97110", outcome: rcm.OutcomePartiallyPaid, simClaim: "partial"},
	{name: "denied", kind: "standard", procedure: "S9999", outcome: rcm.OutcomeDenied, simClaim: "denied"},
	{name: "preauth", kind: "scheduled", procedure: "27447", preauth: true, outcome: rcm.OutcomePaid, simClaim: "approved"},
}

// soakRules is payer-nile with the faults on. The plan has no co-pay and
// no co-insurance: careflow counts a payment short against what was
// billed, so only then is a covered claim paid in full. timeout_hold exceeds
// careflow's outbound patience (outbound.DefaultTimeout, 10s), so a held
// call is abandoned by careflow and sent again, and the payer, having
// recorded nothing, processes the retry as the first try.
func soakRules(errorRate, timeoutRate float64) string {
	return fmt.Sprintf(`seed: 1111
gateway:
  code: hcx-gateway
  name: Soak gateway
payers:
  - code: payer-nile
    name: Nile Health Insurance (soak)
    currency: EGP
    payment_delay: 50ms
    plans:
      - id: gold
        name: Gold
        member_patterns: ["GOLD-*"]
        covered: ["*"]
        copay: "0.00"
        coinsurance_percent: 0
    preauth_required: ["27447"]
    denials:
      - codes: ["S9999"]
        reason: "96"
        display: Non-covered charge(s).
    partial_payments:
      - codes: ["97110"]
        fraction: 0.5
        reason: "45"
    faults:
      error_rate: %g
      timeout_rate: %g
      timeout_hold: 11s
      duplicate_callbacks: 0.3
      out_of_order_callbacks: 0.5
`, errorRate, timeoutRate)
}

const soakFees = `system,code,description,price,currency,preauth,effective_from,effective_to
CPT,99213,Office visit established patient level 3,450.00,,no,2026-01-01,
CPT,97110,Therapeutic exercises,300.00,,no,2026-01-01,
HCPCS,S9999,Sales tax,120.00,,no,2026-01-01,
CPT,27447,Total knee arthroplasty,52000.00,,yes,2026-01-01,
`

// soakNationalID is a well-formed Egyptian national ID, distinct per i
// (i < 100,000), its sex digit (13th) agreeing with soakGender(i).
func soakNationalID(i int) string {
	return fmt.Sprintf("2%02d0101%s%04d1", 60+i/10000, "01", i%10000)
}

func soakGender(i int) string {
	if (i%10)%2 == 1 {
		return "male"
	}
	return "female"
}

func soakEntry(i int) string {
	sc := soakScenarios[i%len(soakScenarios)]
	preauth := ""
	if sc.preauth {
		preauth = `,"preauth_required":true`
	}
	return fmt.Sprintf(`{"kind":%q,"patient":{"national_id":%q,"family":"Soak-%d","given":["Amal"],"gender":%q},"encounter":{"start":"2026-03-02"},"diagnosis_codes":["E11.9"],"procedure_codes":[%q],"insurance":{"payer":"payer-nile","member_id":"GOLD-%d"}%s}`,
		sc.kind, soakNationalID(i), i, soakGender(i), sc.procedure, i, preauth)
}

func TestRevenueCycleSoak(t *testing.T) {
	t.Parallel()
	n, errorRate, timeoutRate := soakSmall, 0.25, 0.05
	if raceDetector {
		n = soakRace
	}
	if os.Getenv("CAREFLOW_SOAK") == "1" {
		// Each held call keeps one of careflow's step workers for 10s;
		// at 10,000 claims fewer of them keep the soak within make soak's timeout.
		n, errorRate, timeoutRate = soakFull, 0.28, 0.02
	}
	if v := os.Getenv("CAREFLOW_SOAK_N"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n < len(soakScenarios) {
			t.Fatalf("CAREFLOW_SOAK_N=%q: want a number of claims of at least %d", v, len(soakScenarios))
		}
	}
	// One backend after the other: each runs a race-instrumented careflow
	// and the simulator, which is all two cores take.
	for _, d := range storetest.Backends() {
		t.Run(string(d), func(t *testing.T) {
			res := runSoak(t, d, n, errorRate, timeoutRate)
			t.Logf("soak %s: %d claims in %v (%.1f claims/s); %d kills; careflow step retries %d, duplicate callbacks refused %d; payer messages %d, identical re-sends %d",
				d, n, res.wall.Round(time.Millisecond), float64(n)/res.wall.Seconds(), res.kills, res.retries, res.duplicates, res.messages, res.resends)
		})
	}
}

type soakResult struct {
	wall                  time.Duration
	kills                 int
	retries, duplicates   int
	messages, resends     int
	outcomes, simOutcomes map[string]int
}

// rcmEnv is careflow as a child process on its own data, wired to an
// in-process `careflow payer-sim`, with a billing clerk signed in: what
// the soak and the benchmarks share.
type rcmEnv struct {
	t      testing.TB
	dir    string
	simURL string
	dbURL  string // careflow's PostgreSQL database; empty on SQLite
	client *soakClient
	args   []string
	cur    *child
	lives  []*child
}

// newRCMEnv starts the simulator with rules, loads soakFees for
// payer-nile, adds the clerk and starts careflow on d.
func newRCMEnv(t testing.TB, d store.Dialect, rules string, serveFlags ...string) *rcmEnv {
	ctx := context.Background()
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	simURL, stopSim := startPayerSim(t, "--data-dir", filepath.Join(dir, "sim"), "--rules", write("rules.yaml", rules))
	t.Cleanup(func() { stopSim() })

	settings := []string{"--data-dir", filepath.Join(dir, "careflow")}
	var dbURL string
	if d == store.Postgres {
		dbURL = storetest.NewPostgresDatabase(t)
		settings = append(settings, "--database", dbURL)
	}
	noEnv := func(string) string { return "" }
	var out bytes.Buffer
	if code := run(ctx, append([]string{"fees", "load", "payer-nile", write("fees.csv", soakFees)}, settings...), &out, &out, noEnv); code != 0 {
		t.Fatalf("fees load: %d %s", code, out.String())
	}
	const password = "soak-billing-clerk-passphrase-2026"
	if code := run(ctx, append([]string{"user", "add", "bill", "--role", "billing", "--password-file", write("pw", password)}, settings...), &out, &out, noEnv); code != 0 {
		t.Fatalf("user add: %d %s", code, out.String())
	}
	// One port for every life of careflow: the gateway's callbacks keep
	// going to the registered endpoint while careflow is down.
	port := freeSoakPort(t)
	base := "http://127.0.0.1:" + port
	e := &rcmEnv{t: t, dir: dir, simURL: simURL, dbURL: dbURL, client: &soakClient{t: t, base: base, password: password},
		args: append(append([]string{"serve", "--listen", "127.0.0.1:" + port, "--hcx-gateway", simURL, "--log-level", "warn"}, settings...), serveFlags...)}
	e.start()
	return e
}

// start starts careflow and waits until it serves and has registered
// with the gateway.
func (e *rcmEnv) start() {
	e.cur = startChild(e.t, e.dir, "run", nil, e.args...)
	e.lives = append(e.lives, e.cur)
	waitHealthy(e.t, e.cur, e.client.base)
	waitRegistered(e.t, e.simURL, e.client.base)
}

// kill SIGKILLs careflow and waits for it to be gone.
func (e *rcmEnv) kill() {
	if err := e.cur.cmd.Process.Kill(); err != nil {
		e.t.Fatal(err)
	}
	<-e.cur.done
}

func runSoak(t *testing.T, d store.Dialect, n int, errorRate, timeoutRate float64) (res soakResult) {
	e := newRCMEnv(t, d, soakRules(errorRate, timeoutRate))
	c, simURL := e.client, e.simURL
	// A callback careflow already holds is refused as a replayed
	// api_call_id (400 ERR_INVALID_API_CALL_ID) and changes nothing; the
	// logs of careflow's lives count them.
	defer func() {
		for _, ch := range e.lives {
			for _, l := range ch.snapshot() {
				if strings.Contains(l, "hcx message refused") && strings.Contains(l, "ERR_INVALID_API_CALL_ID") {
					res.duplicates++
				}
			}
		}
	}()

	var body strings.Builder
	for i := range n {
		body.WriteString(soakEntry(i))
		body.WriteByte('\n')
	}
	began := time.Now()
	submitted := make(chan rcm.BatchStatus, 1)
	submitErr := make(chan error, 1)
	go func() {
		st, err := c.submit(body.String(), "soak-"+string(d))
		if err != nil {
			submitErr <- err
			return
		}
		submitted <- st
	}()

	// SIGKILL careflow twice, at points set by the payer's count of
	// messages received: the first while entries are still being started
	// (on a large batch) or journeys are at their first payer calls, the
	// second with journeys between submission and payment. A plain claim
	// exchanges about 3 messages, a pre-authorized one 4.
	// Bounds far above what the box has shown (about 3 claims/s, entries
	// started at about 12/s on a loaded 2-core box), so a timeout means
	// stuck, not slow.
	patience := 10*time.Minute + time.Duration(n)*300*time.Millisecond
	for _, at := range []int{n / 2, 2 * n} {
		waitSimMessages(t, simURL, at, submitErr, patience)
		res.retries += c.metric("careflow_engine_step_retries_total", "")
		e.kill()
		res.kills++
		e.start()
	}

	var st rcm.BatchStatus
	select {
	case st = <-submitted:
	case err := <-submitErr:
		t.Fatalf("submitting the batch: %v", err)
	case <-time.After(patience):
		t.Fatalf("the batch was not submitted within %v", patience)
	}
	if st.Total != n || st.Refused != 0 || st.Pending != 0 {
		t.Fatalf("batch %s: %d entries, %d started, %d refused (%v), %d pending; want %d started", st.ID, st.Total, st.Started, st.Refused, st.Failures, st.Pending, n)
	}
	// Wait for every journey to be final, failing when nothing moves for
	// a while (a stuck journey) rather than at a fixed time. The while
	// outlasts the longest wait a journey may legitimately be in: a payer
	// call retried after its 9th failure in a row waits 256 s (rcm's
	// payerRetry doubles from 1 s up to 10 min, ±30%), and at 30% failures
	// and 30,000 calls about one call in a 10,000-claim soak gets there.
	stall := 15 * time.Minute
	poll := 250 * time.Millisecond
	if n >= 1000 {
		poll = time.Second // the batch's status counts every entry's journey
	}
	last, lastMove := -1, time.Now()
	for {
		c.get("/api/v1/rcm/batches/"+st.ID, &st)
		if st.Done {
			break
		}
		if st.Final != last {
			last, lastMove = st.Final, time.Now()
		}
		if time.Since(lastMove) > stall {
			t.Fatalf("batch %s: no journey became final for %v; %d of %d final, states %v", st.ID, stall, st.Final, st.Total, st.States)
		}
		time.Sleep(poll)
	}
	res.wall = time.Since(began)
	res.retries += c.metric("careflow_engine_step_retries_total", "")
	if st.Final != n || len(st.Failures) != 0 {
		t.Fatalf("batch %s done with %d of %d final, states %v, failures %v", st.ID, st.Final, n, st.States, st.Failures)
	}

	// Every entry has its own journey, final with the scenario's outcome.
	res.outcomes = map[string]int{}
	seen := map[string]bool{}
	claims := map[string]bool{}
	cursor := ""
	for {
		var page rcm.JourneyPage
		c.get("/api/v1/rcm/journeys?batch="+st.ID+"&limit=200&cursor="+cursor, &page)
		for _, j := range page.Journeys {
			if seen[j.ID] {
				t.Fatalf("journey %s listed twice", j.ID)
			}
			seen[j.ID] = true
			switch {
			case j.Status == rcm.StatusClosed && j.Outcome != "":
			case j.Status == rcm.StatusAttention && j.Reason != "":
			default:
				t.Errorf("journey %s is %s (outcome %q, reason %q): not final", j.ID, j.Status, j.Outcome, j.Reason)
			}
			res.outcomes[j.Outcome]++
			claim := j.References["claim"]
			if claim == "" {
				t.Errorf("journey %s (%s) names no Claim", j.ID, j.Outcome)
			} else if claims[claim] {
				t.Errorf("Claim %s belongs to two journeys", claim)
			}
			claims[claim] = true
		}
		if cursor = page.NextCursor; cursor == "" {
			break
		}
	}
	want := map[string]int{}
	wantSim := map[string]int{}
	for i := range n {
		want[soakScenarios[i%len(soakScenarios)].outcome]++
		wantSim[soakScenarios[i%len(soakScenarios)].simClaim]++
	}
	if len(seen) != n || !equalCounts(res.outcomes, want) {
		t.Fatalf("%d journeys with outcomes %v; want %d with %v", len(seen), res.outcomes, n, want)
	}

	// The FHIR record holds one Claim per journey, and one
	// pre-authorization per pre-authorized journey.
	if got := c.fhirCount("Claim?use=claim"); got != n {
		t.Errorf("the record holds %d Claims (use claim), want %d: one per journey", got, n)
	}
	wantPre := 0
	for i := range n {
		if soakScenarios[i%len(soakScenarios)].preauth {
			wantPre++
		}
	}
	if got := c.fhirCount("Claim?use=preauthorization"); got != wantPre {
		t.Errorf("the record holds %d pre-authorization Claims, want %d", got, wantPre)
	}

	// The payer adjudicated each claim once.
	var ledger struct {
		Summary struct {
			Messages       int            `json:"messages"`
			Resends        int            `json:"resends"`
			Claims         map[string]int `json:"claims"`
			ProcessedTwice []string       `json:"processed_twice"`
		} `json:"summary"`
	}
	simGet(t, simURL+"/sim/ledger?identifier=-", &ledger)
	if len(ledger.Summary.ProcessedTwice) != 0 {
		t.Errorf("the payer processed %d claims twice: %v", len(ledger.Summary.ProcessedTwice), ledger.Summary.ProcessedTwice)
	}
	if !equalCounts(ledger.Summary.Claims, wantSim) {
		t.Errorf("the payer's ledger counts claims %v, want %v", ledger.Summary.Claims, wantSim)
	}
	res.messages, res.resends, res.simOutcomes = ledger.Summary.Messages, ledger.Summary.Resends, ledger.Summary.Claims
	return res
}

func equalCounts(a, b map[string]int) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

func freeSoakPort(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(l.Addr().String())
	_ = l.Close()
	return port
}

func simGet(t testing.TB, url string, v any) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("GET %s: %d %s", url, resp.StatusCode, b)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatal(err)
	}
}

// waitHealthy waits until careflow answers /healthz (its logs are kept
// at warn: a line per request would fill the test's memory).
func waitHealthy(t testing.TB, ch *child, base string) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		select {
		case <-ch.done:
			t.Fatalf("careflow exited: %v", ch.err)
		default:
		}
		if resp, err := http.Get(base + "/healthz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("careflow did not answer /healthz within 60s")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitRegistered waits until the simulator's registry lists careflow with
// an endpoint at base (careflow registers itself at start).
func waitRegistered(t testing.TB, simURL, base string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Post(simURL+"/participant/search", "application/json", strings.NewReader(`{"filters":{"participant_code":{"eq":"careflow-provider"}}}`))
		if err != nil {
			t.Fatal(err)
		}
		var res struct {
			Participants []struct {
				Endpoint string `json:"endpoint_url"`
			} `json:"participants"`
		}
		err = json.NewDecoder(resp.Body).Decode(&res)
		resp.Body.Close()
		if err == nil && len(res.Participants) == 1 && strings.HasPrefix(res.Participants[0].Endpoint, base) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("careflow did not register with the simulator within 30s: %+v", res)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitSimMessages waits until the simulator has accepted at least n
// messages.
func waitSimMessages(t testing.TB, simURL string, n int, failed <-chan error, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		var ledger struct {
			Summary struct {
				Messages int `json:"messages"`
			} `json:"summary"`
		}
		simGet(t, simURL+"/sim/ledger?identifier=-", &ledger)
		if ledger.Summary.Messages >= n {
			return
		}
		select {
		case err := <-failed:
			t.Fatalf("submitting the batch: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("the simulator received %d messages in %v, want %d", ledger.Summary.Messages, timeout, n)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// soakClient is the billing clerk's API client across careflow's lives:
// a refused connection or a 5xx is careflow restarting, so it tries again,
// as it does after a 429; a 401 signs in again.
type soakClient struct {
	t        testing.TB
	base     string
	password string
	mu       sync.Mutex
	token    string
}

var errSoakRetry = errors.New("careflow is not answering")

func (c *soakClient) do(method, path string, header http.Header, body string) (*http.Response, []byte, error) {
	deadline := time.Now().Add(2 * time.Minute)
	for {
		resp, b, err := c.once(method, path, header, body)
		if err == nil && resp.StatusCode == http.StatusUnauthorized && path != "/api/v1/auth/login" {
			if err = c.login(); err == nil {
				continue
			}
		}
		if err == nil && resp.StatusCode < 500 && resp.StatusCode != http.StatusTooManyRequests {
			return resp, b, nil
		}
		if time.Now().After(deadline) {
			if err == nil {
				err = fmt.Errorf("%s %s: %d %s", method, path, resp.StatusCode, b)
			}
			return nil, nil, fmt.Errorf("%w for 2 minutes: %v", errSoakRetry, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (c *soakClient) once(method, path string, header http.Header, body string) (*http.Response, []byte, error) {
	req, err := http.NewRequest(method, c.base+path, strings.NewReader(body))
	if err != nil {
		return nil, nil, err
	}
	for k, v := range header {
		req.Header[k] = v
	}
	c.mu.Lock()
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	c.mu.Unlock()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp, b, err
}

func (c *soakClient) login() error {
	body, _ := json.Marshal(map[string]string{"username": "bill", "password": c.password})
	resp, b, err := c.once(http.MethodPost, "/api/v1/auth/login", http.Header{"Content-Type": {"application/json"}}, string(body))
	if err != nil {
		return err
	}
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	if resp.StatusCode != http.StatusOK || json.Unmarshal(b, &tok) != nil || tok.AccessToken == "" {
		return fmt.Errorf("login: %d %s", resp.StatusCode, b)
	}
	c.mu.Lock()
	c.token = tok.AccessToken
	c.mu.Unlock()
	return nil
}

// submit posts the batch until no entry is pending, as `careflow claims
// batch` does, across careflow's restarts.
func (c *soakClient) submit(body, key string) (rcm.BatchStatus, error) {
	header := http.Header{"Content-Type": {"application/x-ndjson"}, "Idempotency-Key": {key}}
	for {
		resp, b, err := c.do(http.MethodPost, "/api/v1/rcm/batches", header, body)
		if err != nil {
			return rcm.BatchStatus{}, err
		}
		var st rcm.BatchStatus
		if resp.StatusCode != http.StatusAccepted && resp.StatusCode != http.StatusCreated && resp.StatusCode != http.StatusOK {
			return st, fmt.Errorf("POST batch: %d %s", resp.StatusCode, b)
		}
		if err := json.Unmarshal(b, &st); err != nil {
			return st, err
		}
		if st.Pending == 0 {
			return st, nil
		}
	}
}

func (c *soakClient) get(path string, v any) {
	c.t.Helper()
	resp, b, err := c.do(http.MethodGet, path, nil, "")
	if err != nil {
		c.t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		c.t.Fatalf("GET %s: %d %s", path, resp.StatusCode, b)
	}
	if err := json.Unmarshal(b, v); err != nil {
		c.t.Fatalf("GET %s: %v", path, err)
	}
}

// fhirCount is a FHIR search's total (_summary=count).
func (c *soakClient) fhirCount(query string) int {
	c.t.Helper()
	var bundle struct {
		Total *int `json:"total"`
	}
	c.get("/fhir/R4/"+query+"&_summary=count", &bundle)
	if bundle.Total == nil {
		c.t.Fatalf("%s: no total", query)
	}
	return *bundle.Total
}

// metric sums the samples of a counter on careflow's /metrics whose labels
// contain match: what this life of careflow counted.
func (c *soakClient) metric(name, match string) int {
	resp, err := http.Get(c.base + "/metrics")
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	total := 0.0
	for _, line := range strings.Split(string(b), "\n") {
		if !strings.HasPrefix(line, name) || !strings.Contains(line, match) {
			continue
		}
		if f := strings.Fields(line); len(f) == 2 {
			v, _ := strconv.ParseFloat(f[1], 64)
			total += v
		}
	}
	return int(total)
}
