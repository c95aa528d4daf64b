package auth

import (
	"context"

	jose "github.com/go-jose/go-jose/v4"
)

// Verifier authenticates bearer tokens: careflow's own (EdDSA, our keys) and,
// when configured, an external OIDC provider's. The token header's kid picks
// which: a kid of ours goes to our verifier, anything else to the provider.
// Either way the algorithm is pinned by the chosen key, so the header cannot
// steer verification to a weaker algorithm or a different key type.
type Verifier struct {
	local    *Tokens
	oidc     *OIDCProvider
	algs     []jose.SignatureAlgorithm
	sessions SessionChecker
	// verified caches careflow's own tokens once verified (tokencache.go);
	// the session check still runs on every request.
	verified *verifiedTokens
}

// NewVerifier combines the verifiers; oidc may be nil.
func NewVerifier(local *Tokens, oidc *OIDCProvider) *Verifier {
	v := &Verifier{local: local, oidc: oidc, algs: []jose.SignatureAlgorithm{jose.EdDSA}, verified: newVerifiedTokens(maxVerifiedTokens)}
	if oidc != nil {
		v.algs = append(v.algs, jose.RS256, jose.ES256)
	}
	return v
}

// Authenticate verifies a bearer token and returns who it is for. Errors are
// Unauthenticated (401), Forbidden (403: a valid provider token without a
// careflow role) or Unavailable (the provider's keys could never be fetched).
func (v *Verifier) Authenticate(ctx context.Context, token string) (*Principal, error) {
	if len(token) > MaxTokenBytes {
		return nil, errInvalidToken()
	}
	if v.local != nil {
		if p, ok := v.verified.get(token, v.local.keys, v.local.cfg.Now()); ok {
			if err := v.checkSession(ctx, p); err != nil {
				return nil, err
			}
			return p, nil
		}
	}
	jws, err := jose.ParseSignedCompact(token, v.algs)
	if err != nil || len(jws.Signatures) != 1 {
		return nil, errInvalidToken()
	}
	kid := jws.Signatures[0].Header.KeyID
	if v.local != nil && v.local.keys.Has(kid) {
		p, w, err := v.local.verifyWindow(jws)
		if err != nil {
			return nil, err
		}
		v.verified.put(token, kid, p, w, v.local.cfg.Now())
		if err := v.checkSession(ctx, p); err != nil {
			return nil, err
		}
		return p, nil
	}
	if v.oidc != nil {
		return v.oidc.verifyParsed(ctx, jws)
	}
	return nil, errInvalidToken()
}
