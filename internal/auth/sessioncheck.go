package auth

import (
	"context"
	"sync"
	"time"

	"github.com/careflow/careflow/internal/errs"
)

// SessionChecker says whether a local user's login session is still live.
type SessionChecker interface {
	Active(ctx context.Context, userID, sessionID string) (bool, error)
}

// SessionCache answers SessionChecker from the database, remembering live
// sessions for a short TTL. With it, logout and `careflow user disable` end
// a user's access tokens within the TTL instead of at their expiry, for the
// price of one indexed read per session per TTL. Only live answers are
// cached: an ended session never comes back.
type SessionCache struct {
	accounts *Accounts
	ttl      time.Duration
	max      int
	now      func() time.Time

	mu   sync.Mutex
	live map[string]time.Time // session id → when the answer goes stale
}

// NewSessionCache caches for ttl (zero: ask the database every time) and
// at most max sessions (the cache is emptied when full, which only costs
// reads).
func NewSessionCache(a *Accounts, ttl time.Duration, max int) *SessionCache {
	if max <= 0 {
		max = 10_000
	}
	return &SessionCache{accounts: a, ttl: ttl, max: max, now: a.cfg.Now, live: map[string]time.Time{}}
}

// Active implements SessionChecker.
func (c *SessionCache) Active(ctx context.Context, userID, sessionID string) (bool, error) {
	key := userID + "|" + sessionID
	now := c.now()
	if c.ttl > 0 {
		c.mu.Lock()
		until, ok := c.live[key]
		c.mu.Unlock()
		if ok && now.Before(until) {
			return true, nil
		}
	}
	ok, err := c.accounts.SessionActive(ctx, userID, sessionID)
	if err != nil || c.ttl <= 0 {
		return ok, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if !ok {
		delete(c.live, key)
		return false, nil
	}
	if len(c.live) >= c.max {
		clear(c.live)
	}
	c.live[key] = now.Add(c.ttl)
	return true, nil
}

// WithSessionCheck makes the verifier refuse careflow user tokens whose
// session has ended. The database being unreachable fails closed (503).
func (v *Verifier) WithSessionCheck(c SessionChecker) *Verifier {
	v.sessions = c
	return v
}

func (v *Verifier) checkSession(ctx context.Context, p *Principal) error {
	if v.sessions == nil || p.Kind != KindUser {
		return nil
	}
	ok, err := v.sessions.Active(ctx, p.Subject, p.SessionID)
	if err != nil {
		return errs.Wrap(errs.Unavailable, err, "the session store is unavailable; try again")
	}
	if !ok {
		return errs.E(errs.Unauthenticated, "the session of this access token has ended; log in again")
	}
	return nil
}
