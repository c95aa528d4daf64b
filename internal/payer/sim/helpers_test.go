package sim_test

import (
	"bytes"
	"context"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/careflow/careflow/internal/fhir"
	"github.com/careflow/careflow/internal/payer"
	"github.com/careflow/careflow/internal/payer/hcx"
	"github.com/careflow/careflow/internal/payer/sim"
	"github.com/careflow/careflow/internal/phi"
	"github.com/careflow/careflow/internal/store"
)

// keyDir holds the development identities every test shares: RSA keys are
// slow to make, so TestMain makes them once.
var keyDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "payer-sim-keys-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	keyDir = dir
	now := time.Now()
	for _, code := range []string{"hcx-gateway-test", "payer-a", "payer-b", "provider-1", "provider-2"} {
		if _, _, err := hcx.DevIdentity(filepath.Join(dir, "keys", code), code, now); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// testRules: payer-a decides by rule; payer-b misbehaves as each test
// sets it.
const testRules = `
seed: 7
gateway: {code: hcx-gateway-test, name: Test gateway}
payers:
  - code: payer-a
    name: Payer A
    currency: EGP
    payment_delay: 0s
    plans:
      - id: gold
        name: Gold
        members: [M-100]
        member_patterns: ["GOLD-*"]
        covered: ["*"]
        copay: "50"
        coinsurance_percent: 10
        annual_limit: "1000"
      - id: basic
        name: Basic
        member_patterns: ["BASIC-*"]
        covered: ["992*"]
        copay: "0"
    preauth_required: ["27447"]
    preauth_refused: ["15830"]
    denials:
      - {codes: ["99499"], reason: "50", first_submission_only: true}
      - {codes: ["S9999"], reason: "96"}
    partial_payments:
      - {codes: ["97110"], fraction: 0.5}
    information_requests:
      - {codes: ["43239"], question: Please send the procedure report.}
  - code: payer-b
    name: Payer B
    plans:
      - {id: all, name: All, member_patterns: ["*"], covered: ["*"]}
`

func rules(t testing.TB, mutate func(r *sim.Rules)) *sim.Rules {
	t.Helper()
	r, err := sim.ParseRules([]byte(testRules))
	if err != nil {
		t.Fatal(err)
	}
	if mutate != nil {
		mutate(r)
	}
	return r
}

// harness is a simulator on an httptest server.
type harness struct {
	t    *testing.T
	sim  *sim.Simulator
	srv  *httptest.Server
	db   *store.DB
	ring *phi.Ring
}

func startSim(t *testing.T, db *store.DB, r *sim.Rules) *harness {
	t.Helper()
	return newSim(t, db, r, true, t.TempDir())
}

// newSim starts a simulator on db; with deliver false its deliverer does
// not run (the callbacks stay stored).
func newSim(t *testing.T, db *store.DB, r *sim.Rules, deliver bool, masterDir string) *harness {
	t.Helper()
	ctx := context.Background()
	master, err := phi.LoadOrCreateMasterKey(masterDir)
	if err != nil {
		t.Fatal(err)
	}
	ring, err := phi.OpenRing(ctx, db, master, phi.Options{})
	if err != nil {
		t.Fatal(err)
	}
	s, err := sim.New(ctx, sim.Config{Rules: r, DataDir: keyDir, DB: db, Ring: ring, PollInterval: 10 * time.Millisecond, MaxBackoff: 100 * time.Millisecond, CallbackTimeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(s.Handler())
	if deliver {
		s.Start(ctx)
	}
	h := &harness{t: t, sim: s, srv: srv, db: db, ring: ring}
	t.Cleanup(h.stop)
	return h
}

// stop stops the simulator and its server (again is harmless).
func (h *harness) stop() {
	_ = h.sim.Stop(context.Background())
	h.srv.CloseClientConnections()
	h.srv.Close()
	_ = h.sim.Close()
}

// received is one callback a provider got.
type received struct {
	action payer.Action
	header hcx.Header
	bundle []byte
}

// provider is a tiny HCX provider: its own key pair, registered with the
// gateway, an endpoint that verifies the gateway's token, decrypts and
// keeps every callback (after checking that every FHIR resource in it is
// valid R4).
type provider struct {
	t       *testing.T
	code    string
	key     *rsa.PrivateKey
	cert    *x509.Certificate
	srv     *httptest.Server
	gateway string // base URL
	gwCode  string
	gwKey   *rsa.PublicKey
	payers  map[string]*x509.Certificate

	mu       sync.Mutex
	got      []received
	arrived  chan struct{}
	failNext int // answer 503 to this many callbacks first
}

func newProvider(t *testing.T, h *harness, code string) *provider {
	t.Helper()
	key, cert, err := hcx.DevIdentity(filepath.Join(keyDir, "keys", code), code, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	p := &provider{t: t, code: code, key: key, cert: cert, gateway: h.srv.URL, gwCode: h.sim.GatewayCode(), payers: map[string]*x509.Certificate{}, arrived: make(chan struct{}, 1000)}
	p.srv = httptest.NewServer(http.HandlerFunc(p.serve))
	t.Cleanup(p.srv.Close)
	pem := string(hcx.EncodeCertificatePEM(cert))
	status, body := p.post("/participant/create", "", map[string]any{
		"participant_code": code, "participant_name": "Provider " + code, "roles": []string{"provider"},
		"endpoint_url": p.srv.URL + "/hcx/v1", "encryption_cert": pem, "signing_cert_path": pem,
	})
	if status != http.StatusOK {
		t.Fatalf("register %s: %d %s", code, status, body)
	}
	// Learn the gateway's and payers' certificates from the registry.
	status, body = p.post("/participant/search", "", map[string]any{"filters": map[string]any{}})
	if status != http.StatusOK {
		t.Fatalf("search: %d %s", status, body)
	}
	var res struct {
		Participants []struct {
			Code  string   `json:"participant_code"`
			Roles []string `json:"roles"`
			Enc   string   `json:"encryption_cert"`
			Sign  string   `json:"signing_cert_path"`
		} `json:"participants"`
	}
	if err := json.Unmarshal(body, &res); err != nil {
		t.Fatal(err)
	}
	for _, r := range res.Participants {
		c, err := hcx.ParseCertificatePEM([]byte(r.Enc))
		if err != nil {
			t.Fatalf("registry certificate of %s: %v", r.Code, err)
		}
		if r.Code == p.gwCode {
			sc, err := hcx.ParseCertificatePEM([]byte(r.Sign))
			if err != nil {
				t.Fatal(err)
			}
			p.gwKey = sc.PublicKey.(*rsa.PublicKey)
		} else {
			p.payers[r.Code] = c
		}
	}
	if p.gwKey == nil || p.payers["payer-a"] == nil {
		t.Fatalf("the registry does not list the gateway and payer-a: %s", body)
	}
	return p
}

func (p *provider) post(path, token string, v any) (int, []byte) {
	p.t.Helper()
	b, _ := json.Marshal(v)
	return p.postRaw(path, token, b)
}

func (p *provider) postRaw(path, token string, b []byte) (int, []byte) {
	p.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, p.gateway+path, bytes.NewReader(b))
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, []byte(err.Error())
	}
	defer resp.Body.Close()
	var buf bytes.Buffer
	_, _ = buf.ReadFrom(resp.Body)
	return resp.StatusCode, buf.Bytes()
}

func (p *provider) token() string {
	tok, err := hcx.SignToken(p.key, p.code, p.gwCode, time.Now())
	if err != nil {
		p.t.Fatal(err)
	}
	return tok
}

// message is what a provider sends.
type message struct {
	action      payer.Action
	recipient   string
	apiCallID   string
	correlation string
	workflow    string
	bundle      []byte
	encryptFor  *x509.Certificate // default: the recipient's certificate
}

// send encrypts and posts a message; it returns the HTTP status and the
// protocol's error code (if any).
func (p *provider) send(m message) (int, string) {
	p.t.Helper()
	if m.apiCallID == "" {
		m.apiCallID = uuid.NewString()
	}
	if m.correlation == "" {
		m.correlation = uuid.NewString()
	}
	h := hcx.Header{SenderCode: p.code, RecipientCode: m.recipient, APICallID: m.apiCallID, CorrelationID: m.correlation,
		WorkflowID: m.workflow, Timestamp: time.Now(), Status: payer.StatusRequestInitiated}
	cert := m.encryptFor
	if cert == nil {
		cert = p.payers[m.recipient]
		if cert == nil {
			cert = p.payers["payer-a"]
		}
	}
	compact, err := hcx.Encrypt(h, m.bundle, cert)
	if err != nil {
		p.t.Fatal(err)
	}
	status, body := p.postRaw("/"+string(m.action), p.token(), hcx.MarshalBody(compact))
	var pr hcx.ProtocolResponse
	_ = json.Unmarshal(body, &pr)
	if pr.Error != nil {
		return status, pr.Error.Code
	}
	return status, ""
}

func (p *provider) serve(w http.ResponseWriter, r *http.Request) {
	now := time.Now()
	_, err := hcx.VerifyToken(r.Context(), hcx.BearerToken(r), p.code, now, func(_ context.Context, code string) (*rsa.PublicKey, error) {
		if code != p.gwCode {
			return nil, fmt.Errorf("not the gateway")
		}
		return p.gwKey, nil
	})
	if err != nil {
		hcx.WriteError(w, hcx.Header{}, &payer.Error{Code: hcx.ErrAccessDenied, Message: "token", HTTPStatus: 401}, now)
		p.t.Errorf("a callback without a valid gateway token: %v", err)
		return
	}
	p.mu.Lock()
	if p.failNext > 0 {
		p.failNext--
		p.mu.Unlock()
		w.WriteHeader(http.StatusServiceUnavailable)
		return
	}
	p.mu.Unlock()
	var buf bytes.Buffer
	_, _ = buf.ReadFrom(r.Body)
	compact, err := hcx.ParseBody(buf.Bytes())
	if err != nil {
		p.t.Errorf("callback body: %v", err)
		return
	}
	h, payload, err := hcx.Decrypt(compact, []*rsa.PrivateKey{p.key})
	if err != nil {
		p.t.Errorf("callback decrypt: %v", err)
		return
	}
	if len(payload) > 0 {
		if is := fhir.Validate(payload); is.HasErrors() {
			p.t.Errorf("the simulator sent a Bundle that is not valid R4 on %s: %+v", r.URL.Path, is)
		}
	}
	action := payer.Action(strings.TrimPrefix(r.URL.Path, "/hcx/v1/"))
	p.mu.Lock()
	p.got = append(p.got, received{action: action, header: h, bundle: payload})
	p.mu.Unlock()
	p.arrived <- struct{}{}
	hcx.WriteAck(w, h, now)
}

// waitFor waits until the provider holds n callbacks matching keep, and
// returns them in arrival order.
func (p *provider) waitFor(n int, keep func(received) bool) []received {
	p.t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		p.mu.Lock()
		var out []received
		for _, r := range p.got {
			if keep == nil || keep(r) {
				out = append(out, r)
			}
		}
		p.mu.Unlock()
		if len(out) >= n {
			return out
		}
		select {
		case <-p.arrived:
		case <-deadline:
			p.t.Fatalf("waited 10s for %d callbacks, have %d", n, len(out))
		}
	}
}

func onCorrelation(c string) func(received) bool {
	return func(r received) bool { return r.header.CorrelationID == c }
}

// resources returns a Bundle's resources of a type, decoded.
func resources(t *testing.T, bundle []byte, typ string) []map[string]any {
	t.Helper()
	b, err := fhir.ParseBundle(bundle)
	if err != nil {
		t.Fatal(err)
	}
	var out []map[string]any
	for _, e := range b.Entry {
		var m map[string]any
		dec := json.NewDecoder(bytes.NewReader(e.Resource))
		dec.UseNumber() // amounts stay exact: "225.00", not 225
		if err := dec.Decode(&m); err != nil {
			t.Fatal(err)
		}
		if m["resourceType"] == typ {
			out = append(out, m)
		}
	}
	return out
}

// claimBundle is a provider's claim (or pre-authorization) in an HCX
// v0.7.1 collection Bundle: Claim first, then Patient and Coverage.
func claimBundle(use, identifier, member string, related string, preAuthRef string, items ...[2]string) []byte {
	claimID, patID, covID := uuid.NewString(), uuid.NewString(), uuid.NewString()
	var its []map[string]any
	for i, it := range items {
		its = append(its, map[string]any{
			"sequence":         i + 1,
			"productOrService": map[string]any{"coding": []map[string]any{{"system": "http://www.ama-assn.org/go/cpt", "code": it[0]}}},
			"net":              map[string]any{"value": json.Number(it[1]), "currency": "EGP"},
		})
	}
	insurance := map[string]any{"sequence": 1, "focal": true, "coverage": map[string]any{"reference": "urn:uuid:" + covID}}
	if preAuthRef != "" {
		insurance["preAuthRef"] = []string{preAuthRef}
	}
	claim := map[string]any{
		"resourceType": "Claim", "id": claimID, "status": "active",
		"identifier": []map[string]any{{"system": "https://careflow.example/claim", "value": identifier}},
		"type":       map[string]any{"coding": []map[string]any{{"system": "http://terminology.hl7.org/CodeSystem/claim-type", "code": "professional"}}},
		"use":        use, "patient": map[string]any{"reference": "urn:uuid:" + patID}, "created": "2026-01-05",
		"insurer":   map[string]any{"identifier": map[string]any{"value": "payer-a"}},
		"provider":  map[string]any{"identifier": map[string]any{"value": "provider-1"}},
		"priority":  map[string]any{"coding": []map[string]any{{"system": "http://terminology.hl7.org/CodeSystem/processpriority", "code": "normal"}}},
		"insurance": []map[string]any{insurance}, "item": its,
	}
	if related != "" {
		claim["related"] = []map[string]any{{"claim": map[string]any{"identifier": map[string]any{"system": "https://careflow.example/claim", "value": related}},
			"relationship": map[string]any{"coding": []map[string]any{{"system": "http://terminology.hl7.org/CodeSystem/related-claim-relationship", "code": "prior"}}}}}
	}
	return bundleOf(
		[2]any{claimID, claim},
		[2]any{patID, map[string]any{"resourceType": "Patient", "id": patID, "name": []map[string]any{{"family": "Test"}}}},
		[2]any{covID, map[string]any{"resourceType": "Coverage", "id": covID, "status": "active", "subscriberId": member,
			"beneficiary": map[string]any{"reference": "urn:uuid:" + patID}, "payor": []map[string]any{{"identifier": map[string]any{"value": "payer-a"}}}}},
	)
}

func bundleOf(entries ...[2]any) []byte {
	var es []map[string]any
	for _, e := range entries {
		es = append(es, map[string]any{"fullUrl": "urn:uuid:" + e[0].(string), "resource": e[1]})
	}
	id := uuid.NewString()
	b, _ := json.Marshal(map[string]any{"resourceType": "Bundle", "id": id, "type": "collection", "timestamp": "2026-01-05T10:00:00Z", "entry": es})
	return b
}

func eligibilityBundle(member string, codes ...string) []byte {
	reqID, patID, covID := uuid.NewString(), uuid.NewString(), uuid.NewString()
	req := map[string]any{
		"resourceType": "CoverageEligibilityRequest", "id": reqID, "status": "active", "purpose": []string{"benefits", "validation"},
		"patient": map[string]any{"reference": "urn:uuid:" + patID}, "created": "2026-01-05",
		"insurer":   map[string]any{"identifier": map[string]any{"value": "payer-a"}},
		"insurance": []map[string]any{{"coverage": map[string]any{"reference": "urn:uuid:" + covID}}},
	}
	var items []map[string]any
	for _, c := range codes {
		items = append(items, map[string]any{"productOrService": map[string]any{"coding": []map[string]any{{"system": "http://www.ama-assn.org/go/cpt", "code": c}}}})
	}
	if items != nil {
		req["item"] = items
	}
	return bundleOf(
		[2]any{reqID, req},
		[2]any{patID, map[string]any{"resourceType": "Patient", "id": patID}},
		[2]any{covID, map[string]any{"resourceType": "Coverage", "id": covID, "status": "active", "subscriberId": member,
			"beneficiary": map[string]any{"reference": "urn:uuid:" + patID}, "payor": []map[string]any{{"identifier": map[string]any{"value": "payer-a"}}}}},
	)
}

func communicationBundle() []byte {
	id := uuid.NewString()
	return bundleOf([2]any{id, map[string]any{"resourceType": "Communication", "id": id, "status": "completed",
		"payload": []map[string]any{{"contentString": "The report is attached."}}}})
}

func timeNow() time.Time { return time.Now() }

func encodeCert(p *provider) []byte { return hcx.EncodeCertificatePEM(p.cert) }
