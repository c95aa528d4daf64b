package auth

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/careflow/careflow/internal/errs"
)

// testIdP is an OpenID provider in the test: discovery and a JWKS with
// whatever keys the test puts there, over TLS.
type testIdP struct {
	srv        *httptest.Server
	mu         sync.Mutex
	jwks       []map[string]any
	issuer     string // what discovery claims; defaults to the server URL
	jwksHits   atomic.Int64
	discovered atomic.Int64
}

func newTestIdP(t *testing.T) *testIdP {
	t.Helper()
	idp := &testIdP{}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		idp.discovered.Add(1)
		idp.mu.Lock()
		iss := idp.issuer
		idp.mu.Unlock()
		if iss == "" {
			iss = idp.srv.URL
		}
		_ = json.NewEncoder(w).Encode(map[string]string{"issuer": iss, "jwks_uri": idp.srv.URL + "/keys"})
	})
	mux.HandleFunc("GET /keys", func(w http.ResponseWriter, r *http.Request) {
		idp.jwksHits.Add(1)
		idp.mu.Lock()
		defer idp.mu.Unlock()
		_ = json.NewEncoder(w).Encode(map[string]any{"keys": idp.jwks})
	})
	idp.srv = httptest.NewTLSServer(mux)
	t.Cleanup(idp.srv.Close)
	return idp
}

func (p *testIdP) setKeys(keys ...map[string]any) {
	p.mu.Lock()
	p.jwks = keys
	p.mu.Unlock()
}

func bigB64(n *big.Int) string { return b64.EncodeToString(n.Bytes()) }

func rsaJWK(kid string, k *rsa.PrivateKey) map[string]any {
	return map[string]any{"kty": "RSA", "kid": kid, "use": "sig", "n": bigB64(k.N), "e": bigB64(big.NewInt(int64(k.E)))}
}

func ecJWK(kid string, k *ecdsa.PrivateKey) map[string]any {
	pub, _ := k.PublicKey.ECDH()
	raw := pub.Bytes() // 0x04 || X || Y
	return map[string]any{"kty": "EC", "kid": kid, "crv": "P-256", "x": b64.EncodeToString(raw[1:33]), "y": b64.EncodeToString(raw[33:])}
}

func rsSigner(k *rsa.PrivateKey) func([]byte) []byte {
	return func(in []byte) []byte {
		h := sha256.Sum256(in)
		sig, _ := rsa.SignPKCS1v15(rand.Reader, k, crypto.SHA256, h[:])
		return sig
	}
}

func esSigner(k *ecdsa.PrivateKey) func([]byte) []byte {
	return func(in []byte) []byte {
		h := sha256.Sum256(in)
		r, s, _ := ecdsa.Sign(rand.Reader, k, h[:])
		out := make([]byte, 64)
		r.FillBytes(out[:32])
		s.FillBytes(out[32:])
		return out
	}
}

type oidcFixture struct {
	idp   *testIdP
	clock *testClock
	prov  *OIDCProvider
	v     *Verifier
	rsa   *rsa.PrivateKey
	ec    *ecdsa.PrivateKey
}

func newOIDCFixture(t *testing.T, roleClaim string) *oidcFixture {
	t.Helper()
	idp := newTestIdP(t)
	rk, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	ek, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	idp.setKeys(rsaJWK("rsa-1", rk), ecJWK("ec-1", ek))
	clock := newTestClock()
	prov, err := NewOIDCProvider(OIDCConfig{Issuer: idp.srv.URL, Audience: "careflow-api", RoleClaim: roleClaim,
		HTTPClient: idp.srv.Client(), Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	ours := newTestTokens(t, clock.Now, newKey(t))
	return &oidcFixture{idp: idp, clock: clock, prov: prov, v: NewVerifier(ours, prov), rsa: rk, ec: ek}
}

func (f *oidcFixture) claims(extra map[string]any) map[string]any {
	now := f.clock.Now()
	c := map[string]any{"iss": f.idp.srv.URL, "aud": []string{"careflow-api", "account"}, "sub": "idp-user-7",
		"exp": now.Add(5 * time.Minute).Unix(), "iat": now.Unix(), "roles": []string{"nurse"}, "scope": "openid user/Patient.rs"}
	for k, v := range extra {
		if v == nil {
			delete(c, k)
		} else {
			c[k] = v
		}
	}
	return c
}

func TestOIDCTokensOfRSAAndECKeysAreAccepted(t *testing.T) {
	t.Parallel()
	f := newOIDCFixture(t, "")
	ctx := context.Background()
	for _, c := range []struct {
		name  string
		token string
	}{
		{"RS256", forge(map[string]any{"alg": "RS256", "kid": "rsa-1", "typ": "JWT"}, f.claims(nil), rsSigner(f.rsa))},
		{"ES256", forge(map[string]any{"alg": "ES256", "kid": "ec-1"}, f.claims(nil), esSigner(f.ec))},
	} {
		p, err := f.v.Authenticate(ctx, c.token)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if p.Subject != "idp-user-7" || p.Role != Nurse || p.Issuer != f.idp.srv.URL || p.Kind != KindUser ||
			strings.Join(p.Scopes, " ") != "openid user/Patient.rs" {
			t.Fatalf("%s principal %+v", c.name, p)
		}
	}
	if f.idp.discovered.Load() != 1 || f.idp.jwksHits.Load() != 1 {
		t.Fatalf("discovery %d, JWKS %d fetches; want one each (cached)", f.idp.discovered.Load(), f.idp.jwksHits.Load())
	}
}

func TestOIDCAttacksAreRejected(t *testing.T) {
	t.Parallel()
	f := newOIDCFixture(t, "")
	rsaPubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: func() []byte { b, _ := x509.MarshalPKIXPublicKey(&f.rsa.PublicKey); return b }()})
	hmacWith := func(key []byte) func([]byte) []byte {
		return func(in []byte) []byte { m := hmac.New(sha256.New, key); m.Write(in); return m.Sum(nil) }
	}
	otherRSA, _ := rsa.GenerateKey(rand.Reader, 2048)
	now := f.clock.Now()
	cases := []struct {
		name  string
		token string
		kind  errs.Kind
	}{
		{"alg none", forge(map[string]any{"alg": "none", "kid": "rsa-1"}, f.claims(nil), nil), errs.Unauthenticated},
		{"HS256 keyed with the RSA public key PEM", forge(map[string]any{"alg": "HS256", "kid": "rsa-1"}, f.claims(nil), hmacWith(rsaPubPEM)), errs.Unauthenticated},
		{"HS256 keyed with the RSA modulus", forge(map[string]any{"alg": "HS256", "kid": "rsa-1"}, f.claims(nil), hmacWith(f.rsa.N.Bytes())), errs.Unauthenticated},
		{"ES256 header naming the RSA key", forge(map[string]any{"alg": "ES256", "kid": "rsa-1"}, f.claims(nil), esSigner(f.ec)), errs.Unauthenticated},
		{"RS256 header naming the EC key", forge(map[string]any{"alg": "RS256", "kid": "ec-1"}, f.claims(nil), rsSigner(f.rsa)), errs.Unauthenticated},
		{"PS256 (not allowed)", forge(map[string]any{"alg": "PS256", "kid": "rsa-1"}, f.claims(nil), rsSigner(f.rsa)), errs.Unauthenticated},
		{"signed by another RSA key", forge(map[string]any{"alg": "RS256", "kid": "rsa-1"}, f.claims(nil), rsSigner(otherRSA)), errs.Unauthenticated},
		{"wrong issuer", forge(map[string]any{"alg": "RS256", "kid": "rsa-1"}, f.claims(map[string]any{"iss": "https://evil.example"}), rsSigner(f.rsa)), errs.Unauthenticated},
		{"wrong audience", forge(map[string]any{"alg": "RS256", "kid": "rsa-1"}, f.claims(map[string]any{"aud": "other"}), rsSigner(f.rsa)), errs.Unauthenticated},
		{"expired", forge(map[string]any{"alg": "RS256", "kid": "rsa-1"}, f.claims(map[string]any{"exp": now.Add(-5 * time.Minute).Unix()}), rsSigner(f.rsa)), errs.Unauthenticated},
		{"living ten years", forge(map[string]any{"alg": "RS256", "kid": "rsa-1"}, f.claims(map[string]any{"exp": now.AddDate(10, 0, 0).Unix()}), rsSigner(f.rsa)), errs.Unauthenticated},
		{"no iat and ten years left", forge(map[string]any{"alg": "RS256", "kid": "rsa-1"}, f.claims(map[string]any{"iat": nil, "exp": now.AddDate(10, 0, 0).Unix()}), rsSigner(f.rsa)), errs.Unauthenticated},
		{"not yet valid", forge(map[string]any{"alg": "RS256", "kid": "rsa-1"}, f.claims(map[string]any{"nbf": now.Add(5 * time.Minute).Unix()}), rsSigner(f.rsa)), errs.Unauthenticated},
		{"a careflow-issuer token signed by the provider", forge(map[string]any{"alg": "RS256", "kid": "rsa-1"}, f.claims(map[string]any{"iss": DefaultIssuer, "aud": DefaultAudience}), rsSigner(f.rsa)), errs.Unauthenticated},
		{"no careflow role", forge(map[string]any{"alg": "RS256", "kid": "rsa-1"}, f.claims(map[string]any{"roles": []string{"offline_access", "uma_authorization"}}), rsSigner(f.rsa)), errs.Forbidden},
		{"no role claim at all", forge(map[string]any{"alg": "RS256", "kid": "rsa-1"}, f.claims(map[string]any{"roles": nil}), rsSigner(f.rsa)), errs.Forbidden},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p, err := f.v.Authenticate(context.Background(), c.token)
			if p != nil || errs.KindOf(err) != c.kind {
				t.Fatalf("Authenticate = %+v, %v; want %s", p, err, c.kind)
			}
		})
	}
}

func TestRolesComeFromAConfigurableClaim(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name  string
		path  string
		claim map[string]any
		want  Role
		ok    bool
	}{
		{"array at the top", "roles", map[string]any{"roles": []any{"billing"}}, Billing, true},
		{"string at the top", "role", map[string]any{"role": "auditor"}, Auditor, true},
		{"dotted path", "realm_access.roles", map[string]any{"realm_access": map[string]any{"roles": []any{"default-roles", "physician"}}}, Physician, true},
		{"unknown names are ignored", "roles", map[string]any{"roles": []any{"superuser", "nurse", 7}}, Nurse, true},
		{"several known: careflow's order decides", "roles", map[string]any{"roles": []any{"admin", "physician"}}, Physician, true},
		{"path through a non-object", "a.b", map[string]any{"a": "x"}, "", false},
		{"missing", "roles", map[string]any{}, "", false},
		{"wrong type", "roles", map[string]any{"roles": 3}, "", false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, ok := RoleFromClaims(c.claim, c.path)
			if got != c.want || ok != c.ok {
				t.Fatalf("RoleFromClaims = %q %v", got, ok)
			}
		})
	}
	// And end to end with a dotted path.
	f := newOIDCFixture(t, "realm_access.roles")
	tok := forge(map[string]any{"alg": "RS256", "kid": "rsa-1"}, f.claims(map[string]any{"roles": nil,
		"realm_access": map[string]any{"roles": []string{"billing"}}}), rsSigner(f.rsa))
	if p, err := f.v.Authenticate(context.Background(), tok); err != nil || p.Role != Billing {
		t.Fatalf("dotted role claim: %+v %v", p, err)
	}
}

// The provider rotates: a new kid appears in its JWKS. The first token with
// it makes us refetch; a flood of unknown kids makes at most one fetch per
// MinRefetch; and keys are refetched after the TTL.
func TestOIDCKeyRotationRefetchesWithinLimits(t *testing.T) {
	t.Parallel()
	f := newOIDCFixture(t, "")
	ctx := context.Background()
	ok := forge(map[string]any{"alg": "RS256", "kid": "rsa-1"}, f.claims(nil), rsSigner(f.rsa))
	if _, err := f.v.Authenticate(ctx, ok); err != nil {
		t.Fatal(err)
	}
	// Unknown kids, many of them: one refetch at most within MinRefetch.
	f.clock.Advance(time.Minute)
	for i := 0; i < 20; i++ {
		bogus := forge(map[string]any{"alg": "RS256", "kid": "nope-" + string(rune('a'+i))}, f.claims(nil), rsSigner(f.rsa))
		if _, err := f.v.Authenticate(ctx, bogus); !errs.Is(err, errs.Unauthenticated) {
			t.Fatalf("unknown kid: %v", err)
		}
	}
	if got := f.idp.jwksHits.Load(); got != 2 {
		t.Fatalf("JWKS fetched %d times; want 2 (start + one refetch)", got)
	}
	// The provider adds rsa-2 and starts signing with it.
	rk2, _ := rsa.GenerateKey(rand.Reader, 2048)
	f.idp.setKeys(rsaJWK("rsa-1", f.rsa), ecJWK("ec-1", f.ec), rsaJWK("rsa-2", rk2))
	rotated := forge(map[string]any{"alg": "RS256", "kid": "rsa-2"}, f.claims(nil), rsSigner(rk2))
	if _, err := f.v.Authenticate(ctx, rotated); !errs.Is(err, errs.Unauthenticated) {
		t.Fatalf("within MinRefetch of the last fetch the new kid must wait: %v", err)
	}
	f.clock.Advance(31 * time.Second)
	if _, err := f.v.Authenticate(ctx, rotated); err != nil {
		t.Fatalf("new kid after MinRefetch: %v", err)
	}
	if got := f.idp.jwksHits.Load(); got != 3 {
		t.Fatalf("JWKS fetched %d times; want 3", got)
	}
	// The provider drops rsa-1; after the TTL we notice.
	f.idp.setKeys(rsaJWK("rsa-2", rk2))
	if _, err := f.v.Authenticate(ctx, forge(map[string]any{"alg": "RS256", "kid": "rsa-1"}, f.claims(nil), rsSigner(f.rsa))); err != nil {
		t.Fatalf("rsa-1 still cached: %v", err)
	}
	f.clock.Advance(time.Hour + time.Second)
	if _, err := f.v.Authenticate(ctx, forge(map[string]any{"alg": "RS256", "kid": "rsa-1"}, f.claims(nil), rsSigner(f.rsa))); !errs.Is(err, errs.Unauthenticated) {
		t.Fatalf("rsa-1 after the TTL and its removal: %v", err)
	}
	if f.idp.discovered.Load() != 1 {
		t.Fatalf("discovery read %d times; want once", f.idp.discovered.Load())
	}
}

func TestOIDCDiscoveryMustNameTheConfiguredIssuer(t *testing.T) {
	t.Parallel()
	f := newOIDCFixture(t, "")
	f.idp.mu.Lock()
	f.idp.issuer = "https://someone-else.example"
	f.idp.mu.Unlock()
	if err := f.prov.Discover(context.Background()); err == nil || !strings.Contains(err.Error(), "issuer") {
		t.Fatalf("Discover = %v", err)
	}
	tok := forge(map[string]any{"alg": "RS256", "kid": "rsa-1"}, f.claims(nil), rsSigner(f.rsa))
	if _, err := f.v.Authenticate(context.Background(), tok); !errs.Is(err, errs.Unavailable) {
		t.Fatalf("no keys ever fetched: %v, want unavailable", err)
	}
	if _, err := NewOIDCProvider(OIDCConfig{Issuer: "http://plain.example", Audience: "a"}); err == nil {
		t.Fatal("an http issuer was accepted")
	}
}

// Keys a provider publishes that we must not use are skipped, not fatal.
func TestUnusableProviderKeysAreSkipped(t *testing.T) {
	t.Parallel()
	f := newOIDCFixture(t, "")
	small, _ := rsa.GenerateKey(rand.Reader, 1024)
	ek384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	enc := rsaJWK("enc-1", f.rsa)
	enc["use"] = "enc"
	pinned := rsaJWK("ps-1", f.rsa)
	pinned["alg"] = "PS256"
	raw384, _ := ek384.PublicKey.Bytes() // 0x04 || X || Y
	p384 := map[string]any{"kty": "EC", "kid": "ec-384", "crv": "P-384",
		"x": b64.EncodeToString(raw384[1:49]), "y": b64.EncodeToString(raw384[49:])}
	f.idp.setKeys(rsaJWK("small", small), enc, pinned, p384, map[string]any{"kty": "oct", "kid": "sym", "k": "c2VjcmV0"}, rsaJWK("rsa-1", f.rsa))
	for _, kid := range []string{"small", "enc-1", "ps-1", "ec-384", "sym"} {
		tok := forge(map[string]any{"alg": "RS256", "kid": kid}, f.claims(nil), rsSigner(f.rsa))
		if kid == "sym" {
			tok = forge(map[string]any{"alg": "HS256", "kid": kid}, f.claims(nil), func(in []byte) []byte { m := hmac.New(sha256.New, []byte("secret")); m.Write(in); return m.Sum(nil) })
		}
		if _, err := f.v.Authenticate(context.Background(), tok); err == nil {
			t.Errorf("a token on unusable key %s verified", kid)
		}
	}
	if _, err := f.v.Authenticate(context.Background(), forge(map[string]any{"alg": "RS256", "kid": "rsa-1"}, f.claims(nil), rsSigner(f.rsa))); err != nil {
		t.Fatalf("the usable key: %v", err)
	}
}
