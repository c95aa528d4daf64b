package auth

import (
	"crypto/sha256"
	"slices"
	"sync"
	"time"
)

// verifiedTokens remembers careflow tokens whose signature and claims were
// checked, so that a client sending the same bearer token on every request
// pays for one Ed25519 verification and one JSON parse per token, not per
// request (they were a fifth of an audited read's CPU).
//
// Why it is safe: a token's signature, issuer, audience, lifetime and
// private claims are fixed by its bytes, and the key set that verified it
// never changes while the process runs (keys rotate by restart). What can
// change is time and the holder's standing, and neither is cached here:
// every hit checks the token's window (nbf/iat/exp with the skew, exactly
// what checkRegistered checks) against the clock again, and Authenticate
// runs the session check (SessionCache, with its own short TTL) on every
// request whether the token came from here or not. Tokens are keyed by
// their SHA-256, so the cache holds no bearer token, only what verification
// derived from it. Only verified tokens enter; a refused one is verified
// (and refused) again each time.
type verifiedTokens struct {
	max int

	mu      sync.Mutex
	entries map[[sha256.Size]byte]verifiedToken
}

type verifiedToken struct {
	kid string
	p   Principal
	w   window
}

// maxVerifiedTokens bounds the cache; when it is full, expired entries go
// first and, if none had, the whole cache (which only costs verifications).
const maxVerifiedTokens = 10_000

func newVerifiedTokens(max int) *verifiedTokens {
	return &verifiedTokens{max: max, entries: map[[sha256.Size]byte]verifiedToken{}}
}

// get returns a copy of the principal of token if it was verified with a
// key of keys and its window holds at now.
func (c *verifiedTokens) get(token string, keys *KeySet, now time.Time) (*Principal, bool) {
	k := sha256.Sum256([]byte(token))
	c.mu.Lock()
	e, ok := c.entries[k]
	c.mu.Unlock()
	if !ok || !keys.Has(e.kid) || !e.w.holds(now) {
		return nil, false
	}
	p := e.p
	p.Scopes = slices.Clone(e.p.Scopes)
	return &p, true
}

// put remembers a token verified with kid.
func (c *verifiedTokens) put(token, kid string, p *Principal, w window, now time.Time) {
	k := sha256.Sum256([]byte(token))
	e := verifiedToken{kid: kid, p: *p, w: w}
	e.p.Scopes = slices.Clone(p.Scopes)
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.entries) >= c.max {
		for k, old := range c.entries {
			if !now.Before(old.w.until) {
				delete(c.entries, k)
			}
		}
		if len(c.entries) >= c.max {
			clear(c.entries)
		}
	}
	c.entries[k] = e
}
