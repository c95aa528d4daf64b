package hcx

import (
	"bytes"
	"context"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/careflow/careflow/internal/outbound"
	"github.com/careflow/careflow/internal/payer"
	"github.com/careflow/careflow/internal/phi"
	"github.com/careflow/careflow/internal/store"
)

// testGateway is the other end of careflow in these tests: a registry and
// a gateway speaking the protocol over real HTTP with real crypto. Where a
// real gateway forwards the encrypted message to the payer, this one holds
// the payer's key and decrypts it, so tests see what the payer would.
type testGateway struct {
	t        *testing.T
	srv      *httptest.Server
	key      *rsa.PrivateKey // the gateway's
	cert     *x509.Certificate
	payerKey *rsa.PrivateKey // payer.sim@hcx's
	now      func() time.Time

	mu           sync.Mutex
	participants map[string]RegistryEntry
	searches     int
	received     []receivedMessage
	seen         map[string]bool
	// answer, when set, answers a message instead of the acknowledgement.
	answer func(h Header) (int, []byte)
}

type receivedMessage struct {
	action  string
	header  Header
	payload []byte
}

const (
	careflowCode = "provider.careflow@hcx"
	payerCode    = "payer.sim@hcx"
)

func newTestGateway(t *testing.T) *testGateway {
	t.Helper()
	now := time.Now()
	g := &testGateway{t: t, key: testKeys()[2], payerKey: testKeys()[1], now: time.Now,
		participants: map[string]RegistryEntry{}, seen: map[string]bool{}}
	var err error
	if g.cert, err = selfSign(g.key, DefaultGatewayCode, now); err != nil {
		t.Fatal(err)
	}
	payerCert, err := selfSign(g.payerKey, payerCode, now)
	if err != nil {
		t.Fatal(err)
	}
	g.participants[DefaultGatewayCode] = RegistryEntry{Participant: payer.Participant{Code: DefaultGatewayCode, Name: "Gateway",
		Roles: []string{"HIE/HIO.HCX"}, Status: StatusActive}, EncryptionCert: string(EncodeCertificatePEM(g.cert))}
	g.participants[payerCode] = RegistryEntry{Participant: payer.Participant{Code: payerCode, Name: "Payer Sim",
		Roles: []string{RolePayer}, Status: StatusActive}, EncryptionCert: string(EncodeCertificatePEM(payerCert))}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /participant/search", g.search)
	mux.HandleFunc("POST /participant/create", g.create)
	mux.HandleFunc("POST /{entity}/{op}", g.message)
	g.srv = httptest.NewServer(mux)
	t.Cleanup(g.srv.Close)
	return g
}

func (g *testGateway) keyOf(_ context.Context, code string) (*rsa.PublicKey, error) {
	g.mu.Lock()
	e, ok := g.participants[code]
	g.mu.Unlock()
	if !ok {
		return nil, errors.New("unknown participant")
	}
	c, err := ParseCertificatePEM([]byte(e.EncryptionCert))
	if err != nil {
		return nil, err
	}
	return c.PublicKey.(*rsa.PublicKey), nil
}

func (g *testGateway) authenticated(w http.ResponseWriter, r *http.Request) bool {
	if _, err := VerifyToken(r.Context(), BearerToken(r), DefaultGatewayCode, g.now(), g.keyOf); err != nil {
		WriteError(w, Header{}, &payer.Error{Code: ErrAccessDenied, Message: "token", HTTPStatus: 401}, g.now())
		return false
	}
	return true
}

func (g *testGateway) search(w http.ResponseWriter, r *http.Request) {
	if !g.authenticated(w, r) {
		return
	}
	var req struct {
		Filters map[string]map[string]string `json:"filters"`
	}
	_ = json.NewDecoder(r.Body).Decode(&req)
	g.mu.Lock()
	g.searches++
	var out []RegistryEntry
	for _, e := range g.participants {
		if f, ok := req.Filters["participant_code"]; ok && f["eq"] != e.Code {
			continue
		}
		if f, ok := req.Filters["roles"]; ok && !hasRole(e.Roles, f["eq"]) {
			continue
		}
		out = append(out, e)
	}
	g.mu.Unlock()
	_ = json.NewEncoder(w).Encode(map[string]any{"participants": out})
}

// create is the development registration: the caller is not registered
// yet, so its token is verified with the certificate it registers.
func (g *testGateway) create(w http.ResponseWriter, r *http.Request) {
	var e RegistryEntry
	if err := json.NewDecoder(r.Body).Decode(&e); err != nil {
		http.Error(w, "bad", 400)
		return
	}
	c, err := ParseCertificatePEM([]byte(e.SigningCertPath))
	if err != nil {
		http.Error(w, "bad cert", 400)
		return
	}
	if _, err := VerifyToken(r.Context(), BearerToken(r), DefaultGatewayCode, g.now(),
		func(context.Context, string) (*rsa.PublicKey, error) { return c.PublicKey.(*rsa.PublicKey), nil }); err != nil {
		http.Error(w, "token", http.StatusUnauthorized)
		return
	}
	g.mu.Lock()
	g.participants[e.Code] = e
	g.mu.Unlock()
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write([]byte(`{}`))
}

func (g *testGateway) message(w http.ResponseWriter, r *http.Request) {
	if !g.authenticated(w, r) {
		return
	}
	raw, _ := io.ReadAll(r.Body)
	compact, err := ParseBody(raw)
	if err != nil {
		WriteError(w, Header{}, asProtocol(err), g.now())
		return
	}
	h, payload, err := Decrypt(compact, []*rsa.PrivateKey{g.payerKey})
	if err != nil {
		WriteError(w, Header{}, asProtocol(err), g.now())
		return
	}
	g.mu.Lock()
	answer := g.answer
	dup := g.seen[h.APICallID]
	g.seen[h.APICallID] = true
	if !dup {
		g.received = append(g.received, receivedMessage{action: r.PathValue("entity") + "/" + r.PathValue("op"), header: h, payload: payload})
	}
	g.mu.Unlock()
	if answer != nil {
		status, body := answer(h)
		w.WriteHeader(status)
		_, _ = w.Write(body)
		return
	}
	if dup {
		WriteError(w, h, &payer.Error{Code: ErrInvalidAPICallID, Message: MsgDuplicateAPICallID}, g.now())
		return
	}
	WriteAck(w, h, g.now())
}

// callback sends careflow a message as the gateway does: encrypted for
// careflow's certificate, with the gateway's bearer token (tok overrides
// it; "-" sends none).
func (g *testGateway) callback(t *testing.T, target string, action payer.Action, h Header, payload []byte, tok string) (int, ProtocolResponse) {
	t.Helper()
	g.mu.Lock()
	e := g.participants[careflowCode]
	g.mu.Unlock()
	cert, err := ParseCertificatePEM([]byte(e.EncryptionCert))
	if err != nil {
		t.Fatalf("careflow is not registered: %v", err)
	}
	compact, err := Encrypt(h, payload, cert)
	if err != nil {
		t.Fatal(err)
	}
	return g.post(t, target+Path+string(action), MarshalBody(compact), tok)
}

func (g *testGateway) post(t *testing.T, url string, body []byte, tok string) (int, ProtocolResponse) {
	t.Helper()
	if tok == "" {
		var err error
		if tok, err = SignToken(g.key, DefaultGatewayCode, careflowCode, g.now()); err != nil {
			t.Fatal(err)
		}
	}
	req, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if tok != "-" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var pr ProtocolResponse
	b, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(b, &pr); err != nil {
		t.Fatalf("answer %d is not a ProtocolResponse: %s", resp.StatusCode, b)
	}
	return resp.StatusCode, pr
}

// testParticipant builds careflow's participant against g, registered.
func testParticipant(t *testing.T, db *store.DB, g *testGateway, extraHosts ...string) *Participant {
	t.Helper()
	key := testKeys()[0]
	cert, err := selfSign(key, careflowCode, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	hosts, err := AllowHosts(g.srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	ob, err := outbound.New(outbound.Config{Hosts: append(hosts, extraHosts...), Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	p, err := NewParticipant(Config{
		Identity:   Identity{Code: careflowCode, Keys: []*rsa.PrivateKey{key}, Cert: cert},
		GatewayURL: g.srv.URL, Outbound: ob, DB: db, Ring: testRing(t, db),
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.RegisterDev(context.Background(), "http://careflow.invalid"); err != nil {
		t.Fatalf("RegisterDev: %v", err)
	}
	return p
}

func testRing(t testing.TB, db *store.DB) *phi.Ring {
	t.Helper()
	mk, err := phi.ParseMasterKey(bytes.Repeat([]byte{0x5a}, 32))
	if err != nil {
		t.Fatal(err)
	}
	ring, err := phi.OpenRing(context.Background(), db, mk, phi.Options{})
	if err != nil {
		t.Fatalf("open key ring: %v", err)
	}
	return ring
}

// countMessages counts the exchange log's rows.
func countMessages(t *testing.T, db *store.DB) int {
	t.Helper()
	var n int
	if err := db.Reader().QueryRow(context.Background(), `SELECT COUNT(*) FROM hcx_messages`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}
