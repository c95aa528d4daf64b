package hcx

import (
	"context"
	"crypto/rsa"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/google/uuid"
)

// Every HTTP call between a participant and the gateway carries
// "Authorization: Bearer <JWT>": RS256, signed with the caller's own
// private key (the one its registry signing certificate certifies), iss =
// the caller's participant code, aud = the callee's, a jti, and a lifetime
// of at most TokenLifetime. The callee verifies it against the caller's
// certificate from the registry; a call without a valid token is refused
// with ERR_ACCESS_DENIED.
const (
	TokenLifetime = 5 * time.Minute
	// tokenLeeway tolerates clock skew between participants.
	tokenLeeway = 30 * time.Second
)

// TokenClaims are the claims of a participant's bearer token.
type TokenClaims struct {
	Issuer   string
	Audience string
	ID       string
	IssuedAt time.Time
	Expiry   time.Time
}

// SignToken makes the bearer token of a call from participant iss to
// participant aud, valid from now for TokenLifetime.
func SignToken(key *rsa.PrivateKey, iss, aud string, now time.Time) (string, error) {
	if iss == "" || aud == "" {
		return "", errors.New("hcx: a token names its issuer and its audience")
	}
	sig, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: key}, (&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		return "", fmt.Errorf("hcx: token signer: %w", err)
	}
	claims := jwt.Claims{
		Issuer:   iss,
		Audience: jwt.Audience{aud},
		ID:       uuid.NewString(),
		IssuedAt: jwt.NewNumericDate(now),
		Expiry:   jwt.NewNumericDate(now.Add(TokenLifetime)),
	}
	return jwt.Signed(sig).Claims(claims).Serialize()
}

// SigningKeyOf returns the public key that verifies participant code's
// tokens (its registry signing certificate's); an unknown or inactive
// participant is an error.
type SigningKeyOf func(ctx context.Context, code string) (*rsa.PublicKey, error)

// VerifyToken checks a bearer token presented to participant aud: RS256
// only, signed by the key of the participant it names as issuer, for aud,
// within its lifetime (at most TokenLifetime long, with a little clock
// leeway), with a jti. It returns the verified claims. Errors say which
// rule failed, never the token.
func VerifyToken(ctx context.Context, token, aud string, now time.Time, keyOf SigningKeyOf) (TokenClaims, error) {
	tok, err := jwt.ParseSigned(token, []jose.SignatureAlgorithm{jose.RS256})
	if err != nil {
		return TokenClaims{}, errors.New("hcx: the bearer token is not an RS256 JWT")
	}
	var unverified jwt.Claims
	if err := tok.UnsafeClaimsWithoutVerification(&unverified); err != nil || unverified.Issuer == "" {
		return TokenClaims{}, errors.New("hcx: the bearer token names no issuer")
	}
	pub, err := keyOf(ctx, unverified.Issuer)
	if err != nil {
		return TokenClaims{}, fmt.Errorf("hcx: the bearer token's issuer: %w", err)
	}
	var c jwt.Claims
	if err := tok.Claims(pub, &c); err != nil {
		return TokenClaims{}, ErrTokenSignature
	}
	if c.Expiry == nil || c.IssuedAt == nil || c.ID == "" {
		return TokenClaims{}, errors.New("hcx: the bearer token lacks exp, iat or jti")
	}
	if err := c.ValidateWithLeeway(jwt.Expected{Issuer: unverified.Issuer, AnyAudience: jwt.Audience{aud}, Time: now}, tokenLeeway); err != nil {
		return TokenClaims{}, fmt.Errorf("hcx: the bearer token: %w", err)
	}
	if c.Expiry.Time().Sub(c.IssuedAt.Time()) > TokenLifetime {
		return TokenClaims{}, errors.New("hcx: the bearer token lives longer than five minutes")
	}
	return TokenClaims{Issuer: c.Issuer, Audience: aud, ID: c.ID, IssuedAt: c.IssuedAt.Time(), Expiry: c.Expiry.Time()}, nil
}

// ErrTokenSignature is a token whose signature does not verify with the
// issuer's registered key: the one failure a fresher certificate (a
// rotation) may cure.
var ErrTokenSignature = errors.New("hcx: the bearer token's signature does not verify with its issuer's key")

// BearerToken returns the token of a request's Authorization header, or
// "" when it has none.
func BearerToken(r *http.Request) string {
	v := r.Header.Get("Authorization")
	scheme, tok, ok := strings.Cut(v, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return ""
	}
	return strings.TrimSpace(tok)
}

// tokenReuse is how long a signed token is handed out again: half its
// lifetime, so every token a caller sends has at least half its life left,
// far more than any call lasts and than the callee's clock leeway.
const tokenReuse = TokenLifetime / 2

// Tokens signs one participant's bearer tokens and reuses each for
// tokenReuse. A token is bound to its issuer, audience and lifetime, not to
// one call (the callee checks the signature, iss, aud, iat/exp and that a
// jti is present, never that it is new: VerifyToken), so signing one per
// call spent an RSA private-key operation per message for nothing. One
// signature now serves every call to the same audience for a few
// minutes. The cache holds only tokens this process signed with its own
// key; a different key (a rotation) signs afresh.
type Tokens struct {
	iss string
	now func() time.Time

	mu    sync.Mutex
	byAud map[string]cachedToken
}

type cachedToken struct {
	key      *rsa.PrivateKey
	token    string
	signedAt time.Time
}

// NewTokens returns the token source of participant iss; now is the clock
// (nil: time.Now).
func NewTokens(iss string, now func() time.Time) *Tokens {
	if now == nil {
		now = time.Now
	}
	return &Tokens{iss: iss, now: now, byAud: map[string]cachedToken{}}
}

// For returns a bearer token for a call to aud signed with key: the one
// signed for aud within tokenReuse, else a new one.
func (t *Tokens) For(key *rsa.PrivateKey, aud string) (string, error) {
	now := t.now()
	t.mu.Lock()
	c, ok := t.byAud[aud]
	t.mu.Unlock()
	// A token signed "in the future" (the clock stepped back) is not
	// reused: its iat could be refused by the callee.
	if ok && c.key == key && !now.Before(c.signedAt) && now.Sub(c.signedAt) < tokenReuse {
		return c.token, nil
	}
	tok, err := SignToken(key, t.iss, aud, now)
	if err != nil {
		return "", err
	}
	t.mu.Lock()
	t.byAud[aud] = cachedToken{key: key, token: tok, signedAt: now}
	t.mu.Unlock()
	return tok, nil
}
