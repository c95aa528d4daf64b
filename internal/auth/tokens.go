package auth

import (
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/careflow/careflow/internal/errs"
)

// Defaults for careflow's own access tokens.
const (
	DefaultIssuer    = "careflow"
	DefaultAudience  = "careflow"
	DefaultAccessTTL = 15 * time.Minute
	// DefaultClockSkew is how far clocks (ours, other nodes', an identity
	// provider's) may disagree before exp, nbf and iat checks fail.
	DefaultClockSkew = 60 * time.Second
	// MaxTokenBytes bounds a bearer token before any parsing; real access
	// tokens are a few hundred bytes to a few kilobytes.
	MaxTokenBytes = 8 << 10
	// accessTokenType is the JWT "typ" of careflow access tokens (RFC 9068),
	// so that no other kind of JWT signed with the same key passes as one.
	accessTokenType = "at+jwt"
)

// TokenConfig shapes careflow's token issuer and verifier.
type TokenConfig struct {
	Issuer    string
	Audience  string
	AccessTTL time.Duration
	ClockSkew time.Duration
	Now       func() time.Time
	Random    io.Reader
}

// Tokens issues and verifies careflow's own access tokens: JWS compact
// serialisation, alg EdDSA (Ed25519) only, kid in the header.
type Tokens struct {
	keys *KeySet
	cfg  TokenConfig
}

// NewTokens builds the issuer and verifier over a key set.
func NewTokens(keys *KeySet, cfg TokenConfig) *Tokens {
	if cfg.Issuer == "" {
		cfg.Issuer = DefaultIssuer
	}
	if cfg.Audience == "" {
		cfg.Audience = DefaultAudience
	}
	if cfg.AccessTTL <= 0 {
		cfg.AccessTTL = DefaultAccessTTL
	}
	if cfg.ClockSkew <= 0 {
		cfg.ClockSkew = DefaultClockSkew
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Tokens{keys: keys, cfg: cfg}
}

// Keys returns the key set (for the JWKS endpoint).
func (t *Tokens) Keys() *KeySet { return t.keys }

// AccessTTL is the lifetime of issued access tokens.
func (t *Tokens) AccessTTL() time.Duration { return t.cfg.AccessTTL }

// Issuer is the iss of issued tokens.
func (t *Tokens) Issuer() string { return t.cfg.Issuer }

// claims is the payload of careflow's access tokens and the registered
// claims read from an identity provider's.
type claims struct {
	Issuer    string   `json:"iss"`
	Subject   string   `json:"sub"`
	Audience  audience `json:"aud"`
	Expiry    *float64 `json:"exp"`
	NotBefore *float64 `json:"nbf,omitempty"`
	IssuedAt  *float64 `json:"iat,omitempty"`
	ID        string   `json:"jti,omitempty"`
	// careflow's private claims.
	Kind      PrincipalKind `json:"cf_kind,omitempty"`
	Role      Role          `json:"cf_role,omitempty"`
	Scope     string        `json:"scope,omitempty"`
	SessionID string        `json:"sid,omitempty"`
}

// audience accepts the two shapes RFC 7519 allows: a string or an array.
type audience []string

func (a *audience) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err == nil {
		*a = audience{s}
		return nil
	}
	var l []string
	if err := json.Unmarshal(b, &l); err != nil {
		return errors.New("aud must be a string or an array of strings")
	}
	*a = l
	return nil
}

func (a audience) MarshalJSON() ([]byte, error) {
	if len(a) == 1 {
		return json.Marshal(a[0])
	}
	return json.Marshal([]string(a))
}

func (a audience) has(want string) bool {
	for _, v := range a {
		if v == want {
			return true
		}
	}
	return false
}

func errInvalidToken() *errs.Error { return errs.E(errs.Unauthenticated, "access token is invalid") }

// checkRegistered validates the registered claims every token must pass:
// issuer and audience exactly, exp present and not passed, nbf and iat not in
// the future, all with skew.
func checkRegistered(c *claims, iss, aud string, now time.Time, skew time.Duration) error {
	if c.Issuer != iss || !c.Audience.has(aud) || c.Subject == "" || len(c.Subject) > 255 {
		return errInvalidToken()
	}
	if c.Expiry == nil {
		return errInvalidToken()
	}
	// NumericDates outside 1970..5138 are nonsense; refusing them also keeps
	// the conversion below from overflowing.
	for _, f := range []*float64{c.Expiry, c.NotBefore, c.IssuedAt} {
		if f != nil && (*f < 0 || *f > 1e11) {
			return errInvalidToken()
		}
	}
	unix := func(f float64) time.Time { return time.Unix(0, 0).Add(time.Duration(f * float64(time.Second))) }
	if !now.Before(unix(*c.Expiry).Add(skew)) {
		return errs.E(errs.Unauthenticated, "access token has expired")
	}
	if c.NotBefore != nil && now.Add(skew).Before(unix(*c.NotBefore)) {
		return errs.E(errs.Unauthenticated, "access token is not valid yet")
	}
	if c.IssuedAt != nil && now.Add(skew).Before(unix(*c.IssuedAt)) {
		return errs.E(errs.Unauthenticated, "access token is not valid yet")
	}
	return nil
}

// checkLifetime refuses a token without iat, or whose exp lies more than
// maxTTL (plus skew) after its iat. checkRegistered has already bounded the
// dates and refused an iat in the future.
func checkLifetime(c *claims, maxTTL, skew time.Duration) error {
	if c.IssuedAt == nil {
		return errInvalidToken()
	}
	lifetime := time.Duration((*c.Expiry - *c.IssuedAt) * float64(time.Second))
	if lifetime > maxTTL+skew {
		return errs.E(errs.Unauthenticated, "access token lives longer than this server issues tokens for")
	}
	return nil
}

// rejectUnusualHeaders refuses JWS features no access token of ours or of a
// mainstream identity provider uses and that change how a token is read:
// critical extensions and unencoded payloads (RFC 7797).
func rejectUnusualHeaders(h jose.Header) error {
	for _, k := range []jose.HeaderKey{"crit", "b64"} {
		if _, ok := h.ExtraHeaders[k]; ok {
			return errInvalidToken()
		}
	}
	return nil
}

// sign builds a compact JWS by hand: the header is fixed, and Ed25519 has
// no parameters, so there is nothing for a library to get right here that
// the few lines below do not.
func (t *Tokens) sign(c claims) (string, error) {
	hdr, err := json.Marshal(struct {
		Alg string `json:"alg"`
		Typ string `json:"typ"`
		Kid string `json:"kid"`
	}{"EdDSA", accessTokenType, t.keys.signingID})
	if err != nil {
		return "", err
	}
	payload, err := json.Marshal(c)
	if err != nil {
		return "", err
	}
	enc := base64.RawURLEncoding
	input := enc.EncodeToString(hdr) + "." + enc.EncodeToString(payload)
	sig := ed25519.Sign(t.keys.signing, []byte(input))
	return input + "." + enc.EncodeToString(sig), nil
}

// IssuedToken is an access token and when it expires.
type IssuedToken struct {
	Token     string
	ExpiresAt time.Time
}

func (t *Tokens) issue(p Principal) (IssuedToken, error) {
	now := t.cfg.Now()
	exp := now.Add(t.cfg.AccessTTL)
	secs := func(tm time.Time) *float64 { f := float64(tm.Unix()); return &f }
	c := claims{
		Issuer: t.cfg.Issuer, Subject: p.Subject, Audience: audience{t.cfg.Audience},
		Expiry: secs(exp), NotBefore: secs(now), IssuedAt: secs(now), ID: newID(),
		Kind: p.Kind, Role: p.Role, Scope: strings.Join(p.Scopes, " "), SessionID: p.SessionID,
	}
	tok, err := t.sign(c)
	if err != nil {
		return IssuedToken{}, fmt.Errorf("sign access token: %w", err)
	}
	return IssuedToken{Token: tok, ExpiresAt: time.Unix(exp.Unix(), 0)}, nil
}

// IssueUser issues an access token for a user in a session.
func (t *Tokens) IssueUser(u User, sessionID string) (IssuedToken, error) {
	return t.issue(Principal{Subject: u.ID, Kind: KindUser, Role: u.Role, SessionID: sessionID})
}

// IssueClient issues an access token for a machine client with the granted
// scopes.
func (t *Tokens) IssueClient(c Client, scopes []string) (IssuedToken, error) {
	return t.issue(Principal{Subject: c.ID, Kind: KindClient, Role: c.Role, Scopes: scopes})
}

// Verify checks one of careflow's access tokens and returns its principal.
func (t *Tokens) Verify(token string) (*Principal, error) {
	if len(token) > MaxTokenBytes {
		return nil, errInvalidToken()
	}
	jws, err := jose.ParseSignedCompact(token, []jose.SignatureAlgorithm{jose.EdDSA})
	if err != nil {
		return nil, errInvalidToken()
	}
	return t.verifyParsed(jws)
}

func (t *Tokens) verifyParsed(jws *jose.JSONWebSignature) (*Principal, error) {
	p, _, err := t.verifyWindow(jws)
	return p, err
}

// window is when a verified token's registered claims hold: checkRegistered
// passes from notBefore (nbf and iat, less the skew) until until (exp plus
// the skew). A token verified once is valid exactly in its window, so the
// verified-token cache (tokencache.go) checks the window instead of the
// signature again.
type window struct {
	notBefore time.Time
	until     time.Time
}

func (w window) holds(now time.Time) bool { return !now.Before(w.notBefore) && now.Before(w.until) }

// verifyWindow is verifyParsed, also returning the token's window.
func (t *Tokens) verifyWindow(jws *jose.JSONWebSignature) (*Principal, window, error) {
	p, c, err := t.verifyClaims(jws)
	if err != nil {
		return nil, window{}, err
	}
	unix := func(f float64) time.Time { return time.Unix(0, 0).Add(time.Duration(f * float64(time.Second))) }
	w := window{until: unix(*c.Expiry).Add(t.cfg.ClockSkew)}
	for _, f := range []*float64{c.NotBefore, c.IssuedAt} {
		if f != nil {
			if nb := unix(*f).Add(-t.cfg.ClockSkew); nb.After(w.notBefore) {
				w.notBefore = nb
			}
		}
	}
	return p, w, nil
}

// verifyClaims checks a parsed token of ours and returns its principal and
// claims.
func (t *Tokens) verifyClaims(jws *jose.JSONWebSignature) (*Principal, *claims, error) {
	if len(jws.Signatures) != 1 {
		return nil, nil, errInvalidToken()
	}
	h := jws.Signatures[0].Header
	// The algorithm is pinned to EdDSA by the parse allow-list and again
	// here, whatever else the header says.
	if h.Algorithm != string(jose.EdDSA) || rejectUnusualHeaders(h) != nil {
		return nil, nil, errInvalidToken()
	}
	if typ, _ := h.ExtraHeaders[jose.HeaderType].(string); !strings.EqualFold(typ, accessTokenType) {
		return nil, nil, errInvalidToken()
	}
	pub, ok := t.keys.verify[h.KeyID]
	if !ok {
		return nil, nil, errInvalidToken()
	}
	payload, err := jws.Verify(pub)
	if err != nil {
		return nil, nil, errInvalidToken()
	}
	var c claims
	if err := json.Unmarshal(payload, &c); err != nil {
		return nil, nil, errInvalidToken()
	}
	if err := checkRegistered(&c, t.cfg.Issuer, t.cfg.Audience, t.cfg.Now(), t.cfg.ClockSkew); err != nil {
		return nil, nil, err
	}
	// A token of ours lives AccessTTL, so one that claims to live longer
	// was not issued by this configuration: a signing key that leaked (or a
	// node misconfigured) must not be able to mint tokens that outlive
	// every rotation and revocation check. iat is always set by issue.
	if err := checkLifetime(&c, t.cfg.AccessTTL, t.cfg.ClockSkew); err != nil {
		return nil, nil, err
	}
	if (c.Kind != KindUser && c.Kind != KindClient) || !c.Role.Valid() {
		return nil, nil, errInvalidToken()
	}
	if c.Kind == KindUser && c.SessionID == "" {
		return nil, nil, errInvalidToken()
	}
	return &Principal{Subject: c.Subject, Kind: c.Kind, Role: c.Role, Scopes: strings.Fields(c.Scope),
		SessionID: c.SessionID, Issuer: c.Issuer}, &c, nil
}
