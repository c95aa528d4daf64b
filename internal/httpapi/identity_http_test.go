package httpapi

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/redis/go-redis/v9"

	"github.com/careflow/careflow/internal/auth"
	"github.com/careflow/careflow/internal/errs"
	"github.com/careflow/careflow/internal/ratelimit"
	"github.com/careflow/careflow/internal/store"
	"github.com/careflow/careflow/internal/store/storetest"
)

const testPassword = "correct horse battery"

type idFixture struct {
	*fixture
	accounts *auth.Accounts
	tokens   *auth.Tokens
}

// newIDFixture is a server with real accounts (cheap argon2 parameters),
// real Ed25519 tokens and the real middleware chain, over HTTP.
func newIDFixture(t testing.TB, db *store.DB, mod func(*Identity)) *idFixture {
	t.Helper()
	if db == nil {
		db = storetest.Open(t, store.SQLite)
	}
	accounts, err := auth.NewAccounts(db, auth.AccountsConfig{Params: auth.Argon2Params{MemoryKiB: 64, Time: 1, Threads: 1, SaltLen: 16, KeyLen: 32}})
	if err != nil {
		t.Fatal(err)
	}
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	ks, err := auth.NewKeySet(key)
	if err != nil {
		t.Fatal(err)
	}
	tokens := auth.NewTokens(ks, auth.TokenConfig{})
	id := Identity{Authenticator: auth.NewVerifier(tokens, nil).WithSessionCheck(auth.NewSessionCache(accounts, 0, 0)), Accounts: accounts, Tokens: tokens}
	if mod != nil {
		mod(&id)
	}
	logs := &syncBuffer{}
	srv := New(Options{Logger: slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})), DB: db, Identity: id})
	whoami := func(w http.ResponseWriter, r *http.Request) {
		p, ok := auth.PrincipalFrom(r.Context())
		if !ok {
			t.Error("a protected handler ran without a principal")
			return
		}
		writeJSON(w, "application/json", 200, map[string]string{"subject": p.Subject, "role": string(p.Role), "addr": ClientAddr(r.Context())})
	}
	srv.handleFunc("GET /api/v1/test/whoami", whoami)
	srv.handleFunc("GET /fhir/R4/test/whoami", whoami)
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(ts.Close)
	return &idFixture{fixture: &fixture{srv: srv, ts: ts, logs: logs}, accounts: accounts, tokens: tokens}
}

func (f *idFixture) addUser(t testing.TB, name string, role auth.Role) {
	t.Helper()
	if _, err := f.accounts.AddUser(context.Background(), name, testPassword, role); err != nil {
		t.Fatal(err)
	}
}

func (f *idFixture) doT(t testing.TB, method, path, body string, hdr map[string]string) (*http.Response, []byte) {
	t.Helper()
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, f.ts.URL+path, r)
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
	return resp, b
}

func (f *idFixture) login(t testing.TB, name string) TokenResponse {
	t.Helper()
	resp, body := f.doT(t, "POST", "/api/v1/auth/login", fmt.Sprintf(`{"username":%q,"password":%q}`, name, testPassword),
		map[string]string{"Content-Type": "application/json"})
	if resp.StatusCode != 200 {
		t.Fatalf("login %s = %d %s", name, resp.StatusCode, body)
	}
	var tr TokenResponse
	if err := json.Unmarshal(body, &tr); err != nil {
		t.Fatal(err)
	}
	return tr
}

// userToken makes a user with a live session (no HTTP, so no rate-limit
// bucket is touched) and returns an access token for it.
func (f *idFixture) userToken(t testing.TB, role auth.Role) auth.IssuedToken {
	t.Helper()
	var b [4]byte
	_, _ = rand.Read(b[:])
	u, err := f.accounts.AddUser(context.Background(), "u"+hex.EncodeToString(b[:]), testPassword, role)
	if err != nil {
		t.Fatal(err)
	}
	s, err := f.accounts.StartSession(context.Background(), u)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := f.tokens.IssueUser(u, s.ID)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func bearer(tok string) map[string]string { return map[string]string{"Authorization": "Bearer " + tok} }

var pathParam = regexp.MustCompile(`\{[^}]+\}`)

// Deny by default: every registered route that is not on the public list
// answers 401 without a token, whoever registered it.
func TestEveryNonPublicRouteNeedsAToken(t *testing.T) {
	t.Parallel()
	f := newIDFixture(t, nil, nil)
	protected := 0
	for _, p := range f.srv.Patterns() {
		method, path, _ := strings.Cut(p, " ")
		path = pathParam.ReplaceAllString(path, "x")
		resp, body := f.doT(t, method, path, "", nil)
		if f.srv.isPublic(p) {
			if resp.StatusCode == 401 {
				t.Errorf("public route %s answered 401", p)
			}
			continue
		}
		protected++
		if resp.StatusCode != 401 || resp.Header.Get("WWW-Authenticate") != `Bearer realm="careflow"` {
			t.Errorf("%s without a token = %d (WWW-Authenticate %q) %s", p, resp.StatusCode, resp.Header.Get("WWW-Authenticate"), body)
		}
	}
	if protected < 3 {
		t.Fatalf("only %d protected routes checked", protected)
	}
	for _, p := range []string{"GET /healthz", "GET /readyz", "GET /metrics", "GET /api/v1/openapi.json", "POST /api/v1/auth/login",
		"POST /api/v1/auth/refresh", "POST /api/v1/auth/token", "GET /api/v1/auth/jwks.json"} {
		if !f.srv.isPublic(p) {
			t.Errorf("%s should be public", p)
		}
	}
	for _, p := range []string{"GET /api/v1/auth/me", "POST /api/v1/auth/logout", "GET /api/v1/test/whoami", "GET /fhir/R4/Patient/{id}"} {
		if f.srv.isPublic(p) {
			t.Errorf("%s should be protected", p)
		}
	}
}

func TestLoginMeRefreshLogout(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		f := newIDFixture(t, db, nil)
		f.addUser(t, "dr.amal", auth.Physician)
		tr := f.login(t, "Dr.Amal")
		if tr.TokenType != "Bearer" || tr.ExpiresIn < 890 || tr.ExpiresIn > 900 || !strings.HasPrefix(tr.RefreshToken, "cfr_") || tr.RefreshExpiresIn <= 0 {
			t.Fatalf("token response %+v", tr)
		}
		resp, body := f.doT(t, "GET", "/api/v1/auth/me", "", bearer(tr.AccessToken))
		var me Me
		_ = json.Unmarshal(body, &me)
		if resp.StatusCode != 200 || me.Username != "dr.amal" || me.Role != "physician" || me.Kind != "user" || me.Issuer != "careflow" || me.SessionID == "" {
			t.Fatalf("me = %d %s", resp.StatusCode, body)
		}
		resp, body = f.doT(t, "POST", "/api/v1/auth/refresh", `{"refresh_token":"`+tr.RefreshToken+`"}`, map[string]string{"Content-Type": "application/json"})
		var tr2 TokenResponse
		_ = json.Unmarshal(body, &tr2)
		if resp.StatusCode != 200 || tr2.RefreshToken == tr.RefreshToken || tr2.AccessToken == "" {
			t.Fatalf("refresh = %d %s", resp.StatusCode, body)
		}
		// Reuse of the first refresh token: 401, and the rotated one is dead too.
		resp, body = f.doT(t, "POST", "/api/v1/auth/refresh", `{"refresh_token":"`+tr.RefreshToken+`"}`, map[string]string{"Content-Type": "application/json"})
		if resp.StatusCode != 401 {
			t.Fatalf("reuse = %d %s", resp.StatusCode, body)
		}
		decodeProblem(t, resp, body)
		resp, _ = f.doT(t, "POST", "/api/v1/auth/refresh", `{"refresh_token":"`+tr2.RefreshToken+`"}`, map[string]string{"Content-Type": "application/json"})
		if resp.StatusCode != 401 {
			t.Fatalf("rotated token after reuse = %d", resp.StatusCode)
		}
		// Logout ends a fresh session's refresh token.
		tr3 := f.login(t, "dr.amal")
		resp, body = f.doT(t, "POST", "/api/v1/auth/logout", "", bearer(tr3.AccessToken))
		if resp.StatusCode != 204 {
			t.Fatalf("logout = %d %s", resp.StatusCode, body)
		}
		resp, _ = f.doT(t, "POST", "/api/v1/auth/refresh", `{"refresh_token":"`+tr3.RefreshToken+`"}`, map[string]string{"Content-Type": "application/json"})
		if resp.StatusCode != 401 {
			t.Fatalf("refresh after logout = %d", resp.StatusCode)
		}
		// And its access token with it (no cache in this fixture).
		if resp, _ := f.doT(t, "GET", "/api/v1/auth/me", "", bearer(tr3.AccessToken)); resp.StatusCode != 401 {
			t.Fatalf("access token after logout = %d", resp.StatusCode)
		}
		// Wrong password, unknown user: the same 401 body apart from ids.
		r1, b1 := f.doT(t, "POST", "/api/v1/auth/login", `{"username":"dr.amal","password":"not the password"}`, map[string]string{"Content-Type": "application/json"})
		r2, b2 := f.doT(t, "POST", "/api/v1/auth/login", `{"username":"nobody","password":"not the password"}`, map[string]string{"Content-Type": "application/json"})
		p1, p2 := decodeProblem(t, r1, b1), decodeProblem(t, r2, b2)
		if r1.StatusCode != 401 || p1.Detail != p2.Detail || p1.Type != p2.Type {
			t.Fatalf("bad logins differ: %+v / %+v", p1, p2)
		}
		// Credential bodies are small.
		resp, _ = f.doT(t, "POST", "/api/v1/auth/login", `{"username":"a","password":"`+strings.Repeat("x", 70<<10)+`"}`, map[string]string{"Content-Type": "application/json"})
		if resp.StatusCode != 413 {
			t.Fatalf("70 KiB login body = %d, want 413", resp.StatusCode)
		}
		// Strict JSON on login.
		resp, body = f.doT(t, "POST", "/api/v1/auth/login", `{"username":"a","password":"b","admin":true}`, map[string]string{"Content-Type": "application/json"})
		if resp.StatusCode != 400 || decodeProblem(t, resp, body).Field != "admin" {
			t.Fatalf("unknown field = %d %s", resp.StatusCode, body)
		}
		// Nothing secret reached the log.
		logs := f.logs.String()
		for _, secret := range []string{testPassword, tr.RefreshToken, tr.AccessToken, "dr.amal"} {
			if strings.Contains(logs, secret) {
				t.Fatalf("the log holds a secret or username: %.12q", secret)
			}
		}
	})
}

func TestBadTokensGet401WithAChallenge(t *testing.T) {
	t.Parallel()
	f := newIDFixture(t, nil, nil)
	cases := []struct {
		name, header, challenge string
	}{
		{"no header", "", `Bearer realm="careflow"`},
		{"garbage token", "Bearer abc.def.ghi", `Bearer realm="careflow", error="invalid_token"`},
		{"basic scheme", "Basic dXNlcjpwYXNz", `Bearer realm="careflow", error="invalid_request"`},
		{"bearer without token", "Bearer ", `Bearer realm="careflow", error="invalid_request"`},
		{"token with a space inside", "Bearer abc def", `Bearer realm="careflow", error="invalid_request"`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			hdr := map[string]string{}
			if c.header != "" {
				hdr["Authorization"] = c.header
			}
			resp, body := f.doT(t, "GET", "/api/v1/test/whoami", "", hdr)
			if resp.StatusCode != 401 || resp.Header.Get("WWW-Authenticate") != c.challenge {
				t.Fatalf("= %d %q", resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
			}
			p := decodeProblem(t, resp, body)
			if p.Type != "urn:careflow:problem:unauthenticated" {
				t.Fatalf("problem %+v", p)
			}
		})
	}
	// Two Authorization headers.
	req, _ := http.NewRequest("GET", f.ts.URL+"/api/v1/test/whoami", nil)
	req.Header.Add("Authorization", "Bearer a")
	req.Header.Add("Authorization", "Bearer b")
	resp, err := f.ts.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 401 || !strings.Contains(resp.Header.Get("WWW-Authenticate"), "invalid_request") {
		t.Fatalf("two headers = %d", resp.StatusCode)
	}
	// On FHIR the 401 is an OperationOutcome.
	resp, body := f.doT(t, "GET", "/fhir/R4/test/whoami", "", nil)
	if resp.StatusCode != 401 || resp.Header.Get("Content-Type") != "application/fhir+json" || !strings.Contains(string(body), `"login"`) {
		t.Fatalf("FHIR 401 = %d %s", resp.StatusCode, body)
	}
	// An authenticator's 403 (an OIDC token without a careflow role) and
	// 503 pass through.
	g := newIDFixture(t, nil, func(id *Identity) {
		id.Authenticator = AuthenticatorFunc(func(ctx context.Context, tok string) (*auth.Principal, error) {
			if tok == "down" {
				return nil, errs.E(errs.Unavailable, "the identity provider's keys cannot be fetched")
			}
			return nil, errs.E(errs.Forbidden, "the identity provider's token grants no careflow role")
		})
	})
	if resp, _ := g.doT(t, "GET", "/api/v1/test/whoami", "", bearer("x")); resp.StatusCode != 403 {
		t.Fatalf("no role = %d, want 403", resp.StatusCode)
	}
	if resp, _ := g.doT(t, "GET", "/api/v1/test/whoami", "", bearer("down")); resp.StatusCode != 503 {
		t.Fatalf("provider down = %d, want 503", resp.StatusCode)
	}
	// No authenticator at all: deny.
	h := newIDFixture(t, nil, func(id *Identity) { id.Authenticator = nil })
	if resp, _ := h.doT(t, "GET", "/api/v1/test/whoami", "", bearer("x")); resp.StatusCode != 401 {
		t.Fatalf("no authenticator = %d, want 401", resp.StatusCode)
	}
}

func TestLockOutAnswers429WithRetryAfter(t *testing.T) {
	t.Parallel()
	f := newIDFixture(t, nil, nil)
	f.addUser(t, "amal", auth.Nurse)
	var resp *http.Response
	var body []byte
	for i := 0; i < 5; i++ {
		resp, body = f.doT(t, "POST", "/api/v1/auth/login", `{"username":"amal","password":"wrong password!"}`, map[string]string{"Content-Type": "application/json"})
	}
	if resp.StatusCode != 429 || resp.Header.Get("Retry-After") != "900" {
		t.Fatalf("5th failure = %d Retry-After %q %s", resp.StatusCode, resp.Header.Get("Retry-After"), body)
	}
	if p := decodeProblem(t, resp, body); p.Type != "urn:careflow:problem:rate_limited" {
		t.Fatalf("problem %+v", p)
	}
	resp, _ = f.doT(t, "POST", "/api/v1/auth/login", `{"username":"amal","password":"`+testPassword+`"}`, map[string]string{"Content-Type": "application/json"})
	if resp.StatusCode != 429 {
		t.Fatalf("right password while locked = %d", resp.StatusCode)
	}
}

func TestClientCredentialsGrant(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		f := newIDFixture(t, db, nil)
		c, secret, err := f.accounts.AddClient(context.Background(), "gateway", auth.Integration, []string{"system/Claim.cruds", "system/Coverage.rs"})
		if err != nil {
			t.Fatal(err)
		}
		form := map[string]string{"Content-Type": "application/x-www-form-urlencoded"}
		basic := func(id, sec string) map[string]string {
			return map[string]string{"Content-Type": "application/x-www-form-urlencoded",
				"Authorization": "Basic " + base64.StdEncoding.EncodeToString([]byte(url.QueryEscape(id)+":"+url.QueryEscape(sec)))}
		}
		post := "grant_type=client_credentials&client_id=" + c.ID + "&client_secret=" + url.QueryEscape(secret)
		cases := []struct {
			name   string
			body   string
			hdr    map[string]string
			status int
			errStr string
			scope  string
		}{
			{"basic, all scopes", "grant_type=client_credentials", basic(c.ID, secret), 200, "", "system/Claim.cruds system/Coverage.rs"},
			{"post, one scope asked", post + "&scope=system/Coverage.rs", form, 200, "", "system/Coverage.rs"},
			{"asked for more than allowed: the intersection", post + "&scope=system/Coverage.rs+system/Patient.cruds", form, 200, "", "system/Coverage.rs"},
			{"only foreign scopes", post + "&scope=system/Patient.cruds", form, 400, "invalid_scope", ""},
			{"wrong secret", "grant_type=client_credentials", basic(c.ID, strings.ToUpper(secret[:len(secret)-3])+"zz9"), 401, "invalid_client", ""},
			{"unknown client", "grant_type=client_credentials&client_id=nobody&client_secret=" + url.QueryEscape(secret), form, 401, "invalid_client", ""},
			{"no credentials", "grant_type=client_credentials", form, 401, "invalid_client", ""},
			{"two methods at once", post, basic(c.ID, secret), 400, "invalid_request", ""},
			{"password grant", "grant_type=password&username=a&password=b", basic(c.ID, secret), 400, "unsupported_grant_type", ""},
			{"no grant type", "client_id=x", form, 400, "invalid_request", ""},
			{"repeated parameter", post + "&scope=a&scope=b", form, 400, "invalid_request", ""},
			{"JSON body", `{"grant_type":"client_credentials"}`, map[string]string{"Content-Type": "application/json"}, 400, "invalid_request", ""},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				resp, body := f.doT(t, "POST", "/api/v1/auth/token", tc.body, tc.hdr)
				if resp.StatusCode != tc.status {
					t.Fatalf("= %d %s", resp.StatusCode, body)
				}
				var out struct {
					TokenResponse
					Error string `json:"error"`
				}
				_ = json.Unmarshal(body, &out)
				if out.Error != tc.errStr || out.Scope != tc.scope {
					t.Fatalf("body %s", body)
				}
				if tc.status == 401 && !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Basic") {
					t.Fatalf("401 without a Basic challenge")
				}
				if tc.status != 200 {
					return
				}
				if resp.Header.Get("Cache-Control") != "no-store" || out.RefreshToken != "" {
					t.Fatalf("token response headers/body: %v %s", resp.Header, body)
				}
				r2, b2 := f.doT(t, "GET", "/api/v1/auth/me", "", bearer(out.AccessToken))
				var me Me
				_ = json.Unmarshal(b2, &me)
				if r2.StatusCode != 200 || me.Kind != "client" || me.Subject != c.ID || me.Role != "integration" || strings.Join(me.Scopes, " ") != tc.scope {
					t.Fatalf("me with the client token = %d %s", r2.StatusCode, b2)
				}
			})
		}
		// Secrets in the URL are refused before anything else.
		resp, _ := f.doT(t, "POST", "/api/v1/auth/token?client_secret=x", "grant_type=client_credentials", basic(c.ID, secret))
		if resp.StatusCode != 400 {
			t.Fatalf("secret in the URL = %d", resp.StatusCode)
		}
		if strings.Contains(f.logs.String(), secret) {
			t.Fatal("the client secret reached the log")
		}
	})
}

// The published JWKS verifies the tokens we issue, as another service would.
func TestJWKSVerifiesIssuedTokens(t *testing.T) {
	t.Parallel()
	f := newIDFixture(t, nil, nil)
	f.addUser(t, "amal", auth.Nurse)
	tr := f.login(t, "amal")
	resp, body := f.doT(t, "GET", "/api/v1/auth/jwks.json", "", nil)
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/jwk-set+json" || !strings.Contains(resp.Header.Get("Cache-Control"), "max-age") {
		t.Fatalf("jwks = %d %v", resp.StatusCode, resp.Header)
	}
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(body, &set); err != nil {
		t.Fatal(err)
	}
	jws, err := jose.ParseSignedCompact(tr.AccessToken, []jose.SignatureAlgorithm{jose.EdDSA})
	if err != nil {
		t.Fatal(err)
	}
	keys := set.Key(jws.Signatures[0].Header.KeyID)
	if len(keys) != 1 {
		t.Fatalf("kid %q not in the JWKS %s", jws.Signatures[0].Header.KeyID, body)
	}
	if _, err := jws.Verify(keys[0].Key); err != nil {
		t.Fatalf("the JWKS key does not verify our token: %v", err)
	}
}

func TestRateLimitsAnswer429WithRetryAfter(t *testing.T) {
	t.Parallel()
	f := newIDFixture(t, nil, func(id *Identity) {
		id.Limits = RateLimits{PerAddr: ratelimit.Rule{Rate: 0.01, Burst: 3}, PerUser: ratelimit.Rule{Rate: 0.01, Burst: 2},
			Credentials: ratelimit.Rule{Rate: 0.01, Burst: 1}}
	})
	f.addUser(t, "amal", auth.Nurse)
	tok := f.userToken(t, auth.Nurse)
	// Per user: the third request of the user is refused.
	var resp *http.Response
	var body []byte
	for i := 0; i < 3; i++ {
		resp, body = f.doT(t, "GET", "/api/v1/test/whoami", "", bearer(tok.Token))
	}
	if resp.StatusCode != 429 {
		t.Fatalf("3rd request of one user = %d %s", resp.StatusCode, body)
	}
	if ra, err := strconv.Atoi(resp.Header.Get("Retry-After")); err != nil || ra < 1 || ra > 100 {
		t.Fatalf("Retry-After %q", resp.Header.Get("Retry-After"))
	}
	if p := decodeProblem(t, resp, body); p.Type != "urn:careflow:problem:rate_limited" {
		t.Fatalf("problem %+v", p)
	}
	// Per address (the 4th request from 127.0.0.1), on FHIR as an OperationOutcome.
	resp, body = f.doT(t, "GET", "/fhir/R4/test/whoami", "", bearer(tok.Token))
	if resp.StatusCode != 429 || !strings.Contains(string(body), `"throttled"`) || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("4th request from one address = %d %s", resp.StatusCode, body)
	}
	// Credentials routes have their own, stricter bucket.
	resp, _ = f.doT(t, "POST", "/api/v1/auth/login", `{"username":"amal","password":"`+testPassword+`"}`, map[string]string{"Content-Type": "application/json"})
	if resp.StatusCode != 200 {
		t.Fatalf("first login = %d", resp.StatusCode)
	}
	resp, _ = f.doT(t, "POST", "/api/v1/auth/login", `{"username":"amal","password":"`+testPassword+`"}`, map[string]string{"Content-Type": "application/json"})
	if resp.StatusCode != 429 {
		t.Fatalf("second login = %d, want 429", resp.StatusCode)
	}
	// Probes are never limited.
	for i := 0; i < 5; i++ {
		if resp, _ := f.doT(t, "GET", "/healthz", "", nil); resp.StatusCode != 200 {
			t.Fatalf("/healthz = %d", resp.StatusCode)
		}
	}
}

// The gateway delivers every payer's callbacks from one address: the HCX
// route has its own bucket, and neither it nor the people's per-address
// bucket drains the other.
func TestHCXCallbacksHaveTheirOwnRateLimit(t *testing.T) {
	t.Parallel()
	db := storetest.Open(t, store.SQLite)
	hcx := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusAccepted) })
	srv := New(Options{DB: db, HCX: hcx, Identity: Identity{Limits: RateLimits{
		PerAddr: ratelimit.Rule{Rate: 0.01, Burst: 1}, Gateway: ratelimit.Rule{Rate: 0.01, Burst: 3}}}})
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(ts.Close)
	post := func(path string) int {
		resp, err := http.Post(ts.URL+path, "application/json", strings.NewReader(`{}`))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for i := range 3 {
		if got := post("/hcx/v1/claim/on_submit"); got != http.StatusAccepted {
			t.Fatalf("callback %d = %d, want 202", i+1, got)
		}
	}
	if got := post("/hcx/v1/claim/on_submit"); got != http.StatusTooManyRequests {
		t.Fatalf("4th callback = %d, want 429", got)
	}
	// The per-address bucket is untouched by the callbacks: one request
	// passes it (and is refused for want of a token), the next is limited.
	if got := post("/api/v1/rcm/journeys"); got != http.StatusUnauthorized {
		t.Fatalf("first API request = %d, want 401", got)
	}
	if got := post("/api/v1/rcm/journeys"); got != http.StatusTooManyRequests {
		t.Fatalf("second API request = %d, want 429", got)
	}
}

func TestForwardedForIsBelievedOnlyFromTrustedProxies(t *testing.T) {
	t.Parallel()
	trusted := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("fd00::/8")}
	cases := []struct {
		name, remote string
		xff          []string
		want         string
	}{
		{"direct client, header ignored", "203.0.113.5:4000", []string{"198.51.100.1"}, "203.0.113.5"},
		{"through our proxy", "10.0.0.2:80", []string{"198.51.100.1"}, "198.51.100.1"},
		{"client-supplied entries left of ours are ignored", "10.0.0.2:80", []string{"6.6.6.6, 198.51.100.1"}, "198.51.100.1"},
		{"two proxies of ours", "10.0.0.2:80", []string{"198.51.100.1, 10.0.0.9"}, "198.51.100.1"},
		{"several headers read as one list", "10.0.0.2:80", []string{"6.6.6.6", "198.51.100.1, 10.1.1.1"}, "198.51.100.1"},
		{"only proxies: the left-most", "10.0.0.2:80", []string{"10.0.0.7, 10.0.0.8"}, "10.0.0.7"},
		{"garbage stops at the last trusted hop", "10.0.0.2:80", []string{"198.51.100.1, bogus"}, "10.0.0.2"},
		{"ports and brackets", "10.0.0.2:80", []string{"[2001:db8::1]:443"}, "2001:db8::1"},
		{"IPv4-mapped IPv6 is IPv4", "[::ffff:10.0.0.2]:80", []string{"::ffff:198.51.100.1"}, "198.51.100.1"},
		{"no header from a proxy", "10.0.0.2:80", nil, "10.0.0.2"},
		{"IPv6 proxy", "[fd00::1]:80", []string{"2001:db8::7"}, "2001:db8::7"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := clientAddress(c.remote, c.xff, trusted)
			if got.String() != c.want {
				t.Fatalf("clientAddress = %v, want %s", got, c.want)
			}
		})
	}
	if got := clientAddress("10.0.0.2:80", []string{"198.51.100.1"}, nil); got.String() != "10.0.0.2" {
		t.Fatalf("no trusted proxies: %v", got)
	}
	if rateKeyOf(netip.MustParseAddr("2001:db8:1:2:3:4:5:6")) != "2001:db8:1:2::/64" {
		t.Fatal("IPv6 clients are not keyed by /64")
	}

	// Over HTTP: the per-address bucket follows the forwarded client.
	f := newIDFixture(t, nil, func(id *Identity) {
		id.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}
		id.Limits.PerAddr = ratelimit.Rule{Rate: 0.01, Burst: 1}
	})
	tok := f.userToken(t, auth.Nurse)
	for _, addr := range []string{"198.51.100.1", "198.51.100.2"} {
		hdr := bearer(tok.Token)
		hdr["X-Forwarded-For"] = addr
		resp, body := f.doT(t, "GET", "/api/v1/test/whoami", "", hdr)
		if resp.StatusCode != 200 || !strings.Contains(string(body), `"addr":"`+addr+`"`) {
			t.Fatalf("from %s = %d %s", addr, resp.StatusCode, body)
		}
	}
	hdr := bearer(tok.Token)
	hdr["X-Forwarded-For"] = "198.51.100.1"
	if resp, _ := f.doT(t, "GET", "/api/v1/test/whoami", "", hdr); resp.StatusCode != 429 {
		t.Fatalf("second request of 198.51.100.1 = %d, want 429", resp.StatusCode)
	}
}

func TestHSTSIsSentOnlyOverTLS(t *testing.T) {
	t.Parallel()
	srv := New(Options{})
	tlsSrv := httptest.NewTLSServer(srv.Handler())
	defer tlsSrv.Close()
	resp, err := tlsSrv.Client().Get(tlsSrv.URL + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if !strings.HasPrefix(resp.Header.Get("Strict-Transport-Security"), "max-age=63072000") {
		t.Fatalf("HSTS over TLS = %q", resp.Header.Get("Strict-Transport-Security"))
	}
	if resp.TLS == nil || resp.TLS.Version < tls.VersionTLS12 {
		t.Fatal("not TLS 1.2+")
	}
	plain := httptest.NewServer(srv.Handler())
	defer plain.Close()
	resp, err = http.Get(plain.URL + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.Header.Get("Strict-Transport-Security") != "" {
		t.Fatal("HSTS over plain HTTP")
	}
}

func TestMetricsCanRequireAToken(t *testing.T) {
	t.Parallel()
	open := newIDFixture(t, nil, nil)
	if resp, _ := open.doT(t, "GET", "/metrics", "", nil); resp.StatusCode != 200 {
		t.Fatalf("open /metrics = %d", resp.StatusCode)
	}
	closed := newIDFixture(t, nil, func(id *Identity) { id.MetricsAuth = true })
	if resp, _ := closed.doT(t, "GET", "/metrics", "", nil); resp.StatusCode != 401 {
		t.Fatalf("--metrics-auth /metrics without a token = %d", resp.StatusCode)
	}
	tok := closed.userToken(t, auth.Admin)
	if resp, _ := closed.doT(t, "GET", "/metrics", "", bearer(tok.Token)); resp.StatusCode != 200 {
		t.Fatalf("--metrics-auth /metrics with a token = %d", resp.StatusCode)
	}
}

// BenchmarkAuthenticateMiddleware is one authenticated request through the
// whole handler chain (request id, access log, headers, rate limits, token
// verification) to a handler that does nothing.
func BenchmarkAuthenticateMiddleware(b *testing.B) {
	f := newIDFixture(b, nil, func(id *Identity) {
		id.Limits = RateLimits{PerAddr: ratelimit.Rule{Rate: 1e9, Burst: 1e9}, PerUser: ratelimit.Rule{Rate: 1e9, Burst: 1e9}}
		// As serve wires it: sessions re-read every five seconds.
		id.Authenticator = auth.NewVerifier(id.Tokens, nil).WithSessionCheck(auth.NewSessionCache(id.Accounts, 5*time.Second, 0))
	})
	f.srv.handleFunc("GET /api/v1/test/noop", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(204) })
	tok := f.userToken(b, auth.Physician)
	h := f.srv.Handler()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			req := httptest.NewRequest("GET", "/api/v1/test/noop", nil)
			req.Header.Set("Authorization", "Bearer "+tok.Token)
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != 204 {
				b.Fatalf("status %d", rec.Code)
			}
		}
	})
}

func FuzzParseBearer(f *testing.F) {
	for _, s := range []string{"Bearer abc.def.ghi", "bearer   x==", "Basic dXNlcg==", "Bearer", "Bearer a b", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, h string) {
		tok, err := parseBearer([]string{h})
		if err != nil {
			if tok != "" || !errs.Is(err, errs.Unauthenticated) || strings.Contains(err.Error(), h) && len(h) > 20 {
				t.Fatalf("parseBearer(%q) = %q, %v", h, tok, err)
			}
			return
		}
		if tok == "" || strings.ContainsAny(tok, " \t\r\n,\"") || len(tok) > auth.MaxTokenBytes {
			t.Fatalf("parseBearer(%q) accepted %q", h, tok)
		}
		if !strings.HasSuffix(h, tok) {
			t.Fatalf("token %q is not the end of the header %q", tok, h)
		}
	})
}

func FuzzForwardedFor(f *testing.F) {
	f.Add("10.0.0.2:80", "198.51.100.1, 10.0.0.9", "")
	f.Add("[fd00::1]:80", "[2001:db8::1]:443", "6.6.6.6")
	f.Add("203.0.113.5:1", "x,,y", "")
	trusted := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("fd00::/8")}
	f.Fuzz(func(t *testing.T, remote, xff1, xff2 string) {
		headers := []string{xff1, xff2}
		got := clientAddress(remote, headers, trusted)
		peer := clientAddress(remote, nil, nil)
		if !peer.IsValid() {
			if got.IsValid() {
				t.Fatalf("no peer address but a client %v", got)
			}
			return
		}
		if !trustedAddr(peer, trusted) && got != peer {
			t.Fatalf("untrusted peer %v, but client %v taken from the header", peer, got)
		}
		if got != peer {
			found := false
			for _, e := range strings.Split(xff1+","+xff2, ",") {
				if a, ok := parseHop(e); ok && a == got {
					found = true
				}
			}
			if !found {
				t.Fatalf("client %v is neither the peer nor a header entry", got)
			}
		}
		if got.Zone() != "" || got.Is4In6() {
			t.Fatalf("client %v is not canonical", got)
		}
	})
}

// Two nodes with one Redis share each client's bucket: the budget is per
// client, not per client per node.
func TestTwoNodesShareRateLimitsThroughRedis(t *testing.T) {
	t.Parallel()
	u := os.Getenv("CAREFLOW_TEST_REDIS")
	if u == "" {
		t.Skip("CAREFLOW_TEST_REDIS is not set; skipping the shared-limit test")
	}
	opts, err := redis.ParseURL(u)
	if err != nil {
		t.Fatal(err)
	}
	var b [6]byte
	_, _ = rand.Read(b[:])
	prefix := "careflow-test:" + t.Name() + ":" + hex.EncodeToString(b[:]) + ":"
	db := storetest.Open(t, store.SQLite)
	node := func() *idFixture {
		c := redis.NewClient(opts)
		t.Cleanup(func() { c.Close() })
		return newIDFixture(t, db, func(id *Identity) {
			id.Limiter = ratelimit.NewRedis(c, prefix)
			id.Limits.PerAddr = ratelimit.Rule{Rate: 0.01, Burst: 4}
		})
	}
	a, bNode := node(), node()
	tok := a.userToken(t, auth.Nurse)
	statuses := []int{}
	for i := 0; i < 6; i++ {
		f := a
		if i%2 == 1 {
			f = bNode
		}
		// Each node has its own key set; what is shared is the bucket of
		// 127.0.0.1, which the 401s and 200s draw from alike.
		resp, _ := f.doT(t, "GET", "/api/v1/test/whoami", "", bearer(tok.Token))
		statuses = append(statuses, resp.StatusCode)
	}
	limited := 0
	for _, s := range statuses {
		if s == 429 {
			limited++
		}
	}
	if limited != 2 || statuses[4] != 429 || statuses[5] != 429 {
		t.Fatalf("statuses %v: want the shared burst of 4 then 429s on both nodes", statuses)
	}
}
