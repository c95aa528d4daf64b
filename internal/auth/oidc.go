package auth

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/careflow/careflow/internal/errs"
)

// OIDCConfig names an external identity provider whose access tokens
// careflow accepts.
type OIDCConfig struct {
	// Issuer is the provider's issuer URL (https), exactly as its tokens'
	// iss claim and its discovery document say it.
	Issuer string
	// Audience must be among the token's aud values.
	Audience string
	// RoleClaim is the claim holding careflow role names: a name or a dotted
	// path into nested objects (e.g. "realm_access.roles"); a string or an
	// array of strings. Default "roles".
	RoleClaim string
	// HTTPClient fetches discovery and JWKS (default: 10 s timeout).
	HTTPClient *http.Client
	// JWKSTTL is how long fetched keys are used before being fetched again
	// (default 1 h); MinRefetch is the least time between two fetches, which
	// bounds how often tokens with unknown kids can make us call the
	// provider (default 30 s).
	JWKSTTL    time.Duration
	MinRefetch time.Duration
	ClockSkew  time.Duration
	// MaxTokenLifetime bounds how long a provider's access token may claim
	// to live (exp after iat, or after now when it has no iat), default
	// 24 h. Providers issue minutes to hours; a longer one is a
	// misconfigured or compromised provider, refused rather than trusted
	// for years.
	MaxTokenLifetime time.Duration
	Now              func() time.Time
}

// DefaultOIDCMaxTokenLifetime is OIDCConfig.MaxTokenLifetime's default.
const DefaultOIDCMaxTokenLifetime = 24 * time.Hour

// OIDCProvider verifies access tokens of one external OpenID Connect
// provider against its published keys. The keys come from the jwks_uri of
// the provider's discovery document, are cached, and are fetched again when
// they are older than the TTL or a token names a kid we do not know (key
// rotation at the provider), but never more often than MinRefetch.
type OIDCProvider struct {
	cfg OIDCConfig

	// fetchMu serialises fetches so that a burst of tokens with a new kid
	// makes one request, not one each.
	fetchMu sync.Mutex

	mu          sync.RWMutex
	jwksURI     string
	keys        map[string]oidcKey
	fetchedAt   time.Time
	lastAttempt time.Time
}

// oidcKey is a provider key with the one algorithm it may verify, decided
// from the key's type (and its "alg" member where present), never from a
// token's header.
type oidcKey struct {
	alg jose.SignatureAlgorithm
	key any
}

// NewOIDCProvider checks the configuration; it does not call the provider
// (the first token does, or Discover).
func NewOIDCProvider(cfg OIDCConfig) (*OIDCProvider, error) {
	u, err := url.Parse(cfg.Issuer)
	if err != nil || u.Scheme != "https" || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		return nil, errors.New("OIDC issuer must be an https URL without query or fragment")
	}
	if strings.TrimSpace(cfg.Audience) == "" {
		return nil, errors.New("OIDC audience must be set")
	}
	if cfg.RoleClaim == "" {
		cfg.RoleClaim = "roles"
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Timeout: 10 * time.Second}
	}
	if cfg.JWKSTTL <= 0 {
		cfg.JWKSTTL = time.Hour
	}
	if cfg.MinRefetch <= 0 {
		cfg.MinRefetch = 30 * time.Second
	}
	if cfg.ClockSkew <= 0 {
		cfg.ClockSkew = DefaultClockSkew
	}
	if cfg.MaxTokenLifetime <= 0 {
		cfg.MaxTokenLifetime = DefaultOIDCMaxTokenLifetime
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &OIDCProvider{cfg: cfg}, nil
}

// Issuer returns the configured issuer URL.
func (p *OIDCProvider) Issuer() string { return p.cfg.Issuer }

// maxOIDCDocument bounds discovery and JWKS responses.
const maxOIDCDocument = 1 << 20

func (p *OIDCProvider) getJSON(ctx context.Context, u string, dst any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := p.cfg.HTTPClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: status %d", u, resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxOIDCDocument+1))
	if err != nil {
		return err
	}
	if len(body) > maxOIDCDocument {
		return fmt.Errorf("GET %s: response larger than %d bytes", u, maxOIDCDocument)
	}
	return json.Unmarshal(body, dst)
}

// Discover reads the discovery document and the keys now (at start, to fail
// early on a misconfigured provider); tokens call it lazily otherwise.
func (p *OIDCProvider) Discover(ctx context.Context) error {
	return p.fetch(ctx, true)
}

// fetch reads discovery (once) and the JWKS. Unless force, it does nothing
// when the last attempt was less than MinRefetch ago.
func (p *OIDCProvider) fetch(ctx context.Context, force bool) error {
	p.fetchMu.Lock()
	defer p.fetchMu.Unlock()
	now := p.cfg.Now()
	p.mu.RLock()
	last, jwksURI := p.lastAttempt, p.jwksURI
	p.mu.RUnlock()
	if !force && !last.IsZero() && now.Sub(last) < p.cfg.MinRefetch {
		return errors.New("JWKS was fetched moments ago")
	}
	p.mu.Lock()
	p.lastAttempt = now
	p.mu.Unlock()

	if jwksURI == "" {
		var doc struct {
			Issuer  string `json:"issuer"`
			JWKSURI string `json:"jwks_uri"`
		}
		if err := p.getJSON(ctx, strings.TrimSuffix(p.cfg.Issuer, "/")+"/.well-known/openid-configuration", &doc); err != nil {
			return fmt.Errorf("OIDC discovery: %w", err)
		}
		// OpenID Connect Discovery 1.0 §4.3: the document's issuer must be
		// the one we asked, or someone else's keys could be slipped in.
		if doc.Issuer != p.cfg.Issuer {
			return errors.New("OIDC discovery: the document's issuer differs from the configured one")
		}
		u, err := url.Parse(doc.JWKSURI)
		if err != nil || u.Scheme != "https" || u.Host == "" {
			return errors.New("OIDC discovery: jwks_uri is not an https URL")
		}
		jwksURI = doc.JWKSURI
	}
	var raw struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := p.getJSON(ctx, jwksURI, &raw); err != nil {
		return fmt.Errorf("OIDC JWKS: %w", err)
	}
	keys := map[string]oidcKey{}
	for _, r := range raw.Keys {
		// One key we cannot use (an encryption key, an unsupported type)
		// must not make the whole set unusable.
		var jwk jose.JSONWebKey
		if err := jwk.UnmarshalJSON(r); err != nil {
			continue
		}
		if k, ok := usableOIDCKey(jwk); ok {
			keys[jwk.KeyID] = k
		}
	}
	if len(keys) == 0 {
		return errors.New("OIDC JWKS: no usable signing key")
	}
	p.mu.Lock()
	p.jwksURI, p.keys, p.fetchedAt = jwksURI, keys, now
	p.mu.Unlock()
	return nil
}

// usableOIDCKey decides the one algorithm a provider key verifies: RS256 for
// RSA (2048 bits or more), ES256 for P-256, EdDSA for Ed25519. A key whose
// "alg" says otherwise, or that is for encryption, is not used.
func usableOIDCKey(jwk jose.JSONWebKey) (oidcKey, bool) {
	if jwk.Use != "" && jwk.Use != "sig" {
		return oidcKey{}, false
	}
	if !jwk.IsPublic() {
		jwk = jwk.Public() // a provider publishing private keys is broken, but verify with the public half only
	}
	var k oidcKey
	switch key := jwk.Key.(type) {
	case *rsa.PublicKey:
		if key.N.BitLen() < 2048 {
			return oidcKey{}, false
		}
		k = oidcKey{alg: jose.RS256, key: key}
	case *ecdsa.PublicKey:
		if key.Curve != elliptic.P256() {
			return oidcKey{}, false
		}
		k = oidcKey{alg: jose.ES256, key: key}
	case ed25519.PublicKey:
		k = oidcKey{alg: jose.EdDSA, key: key}
	default:
		return oidcKey{}, false
	}
	if jwk.Algorithm != "" && jwk.Algorithm != string(k.alg) {
		return oidcKey{}, false
	}
	return k, true
}

// keyFor returns the key a token names, fetching the JWKS when the cache is
// stale or does not know the kid.
func (p *OIDCProvider) keyFor(ctx context.Context, kid string) (oidcKey, error) {
	lookup := func() (oidcKey, bool, bool) {
		p.mu.RLock()
		defer p.mu.RUnlock()
		k, ok := p.keys[kid]
		if !ok && kid == "" && len(p.keys) == 1 {
			// A token without kid from a provider with one key.
			for _, only := range p.keys {
				k, ok = only, true
			}
		}
		fresh := !p.fetchedAt.IsZero() && p.cfg.Now().Sub(p.fetchedAt) < p.cfg.JWKSTTL
		return k, ok, fresh
	}
	k, ok, fresh := lookup()
	if ok && fresh {
		return k, nil
	}
	fetchErr := p.fetch(ctx, false)
	if k2, ok2, _ := lookup(); ok2 {
		// Keys still listed (or newly listed) are used even if the refetch
		// failed: a provider outage should not log everyone out at once.
		return k2, nil
	}
	p.mu.RLock()
	never := p.fetchedAt.IsZero()
	p.mu.RUnlock()
	if never && fetchErr != nil {
		return oidcKey{}, errs.Wrap(errs.Unavailable, fetchErr, "the identity provider's keys cannot be fetched")
	}
	return oidcKey{}, errInvalidToken()
}

// verifyParsed checks a parsed token against the provider's keys and maps
// it to a principal.
func (p *OIDCProvider) verifyParsed(ctx context.Context, jws *jose.JSONWebSignature) (*Principal, error) {
	if len(jws.Signatures) != 1 {
		return nil, errInvalidToken()
	}
	h := jws.Signatures[0].Header
	if rejectUnusualHeaders(h) != nil {
		return nil, errInvalidToken()
	}
	k, err := p.keyFor(ctx, h.KeyID)
	if err != nil {
		return nil, err
	}
	// The key decides the algorithm; the header must agree with it. This is
	// what stops an RSA public key being used as an HMAC secret.
	if h.Algorithm != string(k.alg) {
		return nil, errInvalidToken()
	}
	payload, err := jws.Verify(k.key)
	if err != nil {
		return nil, errInvalidToken()
	}
	var c claims
	if err := json.Unmarshal(payload, &c); err != nil {
		return nil, errInvalidToken()
	}
	now := p.cfg.Now()
	if err := checkRegistered(&c, p.cfg.Issuer, p.cfg.Audience, now, p.cfg.ClockSkew); err != nil {
		return nil, err
	}
	if c.IssuedAt == nil {
		// Without iat, measure from now: what is left must fit the cap.
		f := float64(now.Unix())
		c.IssuedAt = &f
	}
	if err := checkLifetime(&c, p.cfg.MaxTokenLifetime, p.cfg.ClockSkew); err != nil {
		return nil, err
	}
	var all map[string]any
	if err := json.Unmarshal(payload, &all); err != nil {
		return nil, errInvalidToken()
	}
	role, ok := RoleFromClaims(all, p.cfg.RoleClaim)
	if !ok {
		return nil, errs.E(errs.Forbidden, "the identity provider's token grants no careflow role")
	}
	return &Principal{Subject: c.Subject, Kind: KindUser, Role: role, Scopes: scopesFromClaims(all), Issuer: c.Issuer}, nil
}

// RoleFromClaims reads the role claim at a dotted path and returns the
// careflow role it names. Names careflow does not know are ignored; when
// several known roles are named, the first in Roles() order wins, so the
// result does not depend on the order the provider lists them in.
func RoleFromClaims(all map[string]any, path string) (Role, bool) {
	var v any = all
	for _, part := range strings.Split(path, ".") {
		m, ok := v.(map[string]any)
		if !ok {
			return "", false
		}
		if v, ok = m[part]; !ok {
			return "", false
		}
	}
	named := map[Role]bool{}
	switch x := v.(type) {
	case string:
		named[Role(x)] = true
	case []any:
		for _, e := range x {
			if s, ok := e.(string); ok {
				named[Role(s)] = true
			}
		}
	}
	for _, r := range Roles() {
		if named[r] {
			return r, true
		}
	}
	return "", false
}

// scopesFromClaims reads "scope" (space-separated, RFC 9068) or "scp" (an
// array, as some providers send).
func scopesFromClaims(all map[string]any) []string {
	if s, ok := all["scope"].(string); ok {
		return strings.Fields(s)
	}
	if l, ok := all["scp"].([]any); ok {
		var out []string
		for _, e := range l {
			if s, ok := e.(string); ok {
				out = append(out, s)
			}
		}
		return out
	}
	return nil
}
