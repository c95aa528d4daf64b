package auth

import (
	"context"
	"sync"
	"time"

	"github.com/careflow/careflow/internal/errs"
)

// SessionChecker says whether a careflow token still speaks for its
// holder: a user's login session is live and the user still has the role
// the token names; a machine client is enabled and still has that role.
type SessionChecker interface {
	Active(ctx context.Context, userID, sessionID string, role Role) (bool, error)
	ClientActive(ctx context.Context, clientID string, role Role) (bool, error)
}

// SessionCache answers SessionChecker from the database, remembering live
// sessions and clients for a short TTL. With it, logout, `careflow user
// disable`, `careflow user set-role` and `careflow client disable` end the
// tokens already issued within the TTL instead of at their expiry, for the
// price of one indexed read per session (or client) per TTL. Only live
// answers are cached: an ended session never comes back.
type SessionCache struct {
	accounts *Accounts
	ttl      time.Duration
	max      int
	now      func() time.Time

	mu   sync.Mutex
	live map[string]time.Time // "u|user|session|role" or "c|client|role" → when the answer goes stale
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
func (c *SessionCache) Active(ctx context.Context, userID, sessionID string, role Role) (bool, error) {
	return c.cached(ctx, "u|"+userID+"|"+sessionID+"|"+string(role), func() (bool, error) {
		return c.accounts.SessionActive(ctx, userID, sessionID, role)
	})
}

// ClientActive implements SessionChecker.
func (c *SessionCache) ClientActive(ctx context.Context, clientID string, role Role) (bool, error) {
	return c.cached(ctx, "c|"+clientID+"|"+string(role), func() (bool, error) {
		return c.accounts.ClientActive(ctx, clientID, role)
	})
}

func (c *SessionCache) cached(_ context.Context, key string, ask func() (bool, error)) (bool, error) {
	now := c.now()
	if c.ttl > 0 {
		c.mu.Lock()
		until, ok := c.live[key]
		c.mu.Unlock()
		if ok && now.Before(until) {
			return true, nil
		}
	}
	ok, err := ask()
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

// WithSessionCheck makes the verifier refuse careflow tokens whose session
// has ended, whose user's role changed, or whose client was disabled or
// given another role. The database being unreachable fails closed (503).
func (v *Verifier) WithSessionCheck(c SessionChecker) *Verifier {
	v.sessions = c
	return v
}

func (v *Verifier) checkSession(ctx context.Context, p *Principal) error {
	if v.sessions == nil {
		return nil
	}
	var (
		ok  bool
		err error
		msg string
	)
	switch p.Kind {
	case KindUser:
		ok, err = v.sessions.Active(ctx, p.Subject, p.SessionID, p.Role)
		msg = "the session of this access token has ended or the account's role has changed; log in again or refresh"
	case KindClient:
		ok, err = v.sessions.ClientActive(ctx, p.Subject, p.Role)
		msg = "this client was disabled or its role has changed; request a new token"
	default:
		return nil
	}
	if err != nil {
		return errs.Wrap(errs.Unavailable, err, "the session store is unavailable; try again")
	}
	if !ok {
		return errs.E(errs.Unauthenticated, "%s", msg)
	}
	return nil
}
