package auth

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/careflow/careflow/internal/errs"
	"github.com/careflow/careflow/internal/store"
)

// Login throttling slows password guessing without handing anyone a way to
// lock somebody else out. A lock-out that anyone can trigger by typing a
// name is a denial of service against that person: a clinician locked out
// at the start of a shift cannot treat. So failures are charged to the
// party that can be identified as guessing, and only there do they lock:
//
//   - Per (account, client address): five failures within the window lock
//     that pair, 15 minutes doubling to a day. The guesser's own address
//     is stopped; the account's owner elsewhere is not.
//   - Per client address, across accounts: twenty failures lock the
//     address (one address trying many names), except for accounts that
//     recently signed in from it, which keep their pair rule alone. A ward
//     behind one NAT address is therefore not locked out by a stranger on
//     the same network guessing at other names.
//   - Per account, failures from addresses the account has not recently
//     signed in from ("unknown addresses"): the first ten within the
//     window are free; after that each attempt from any unknown address
//     must wait a delay that doubles with every further failure, up to
//     half a minute. A guesser spread over many addresses thus gets at most
//     one guess per 30 s per account (under 3,000 a day), while the owner,
//     from an address they signed in from before, is never delayed, and
//     from a fresh one waits at most the current delay. Nothing here ever
//     locks an account.
//
// Known addresses are kept per account, at most KnownMax, for KnownFor
// after their last successful sign-in, as SHA-256 digests of the account
// key and the address (IPv6 by /64, as the rate limiter counts them). The
// digest keeps addresses from being read off the table at a glance; it is
// not a secret (the audit log holds the same addresses in plain).
//
// All state is in the database (auth_login_throttle and
// auth_login_known_addrs), so every node of a cluster applies the same
// counts. Reading the state and charging a failure are separate
// statements: concurrent attempts may each pass the gate once, which the
// argon2id slots already bound.

// LockoutPolicy says how failed logins are throttled. The zero value picks
// DefaultLockoutPolicy.
type LockoutPolicy struct {
	// PairThreshold failures for one account from one client address within
	// Window lock that pair.
	PairThreshold int
	// AddrThreshold failures from one client address within Window, over all
	// accounts, lock the address for accounts that have not recently signed
	// in from it.
	AddrThreshold int
	// Window is how long failures are counted before the count restarts.
	Window time.Duration
	// BaseLock is a pair's or an address's first lock-out; each consecutive
	// one doubles it, up to MaxLock.
	BaseLock time.Duration
	MaxLock  time.Duration
	// UnknownFree failures for one account from unknown addresses pass
	// without delay; each further one makes the next attempt from any
	// unknown address wait UnknownDelay, doubled per failure beyond the
	// first, up to UnknownMaxDelay. The count is forgotten after Window
	// without such a failure.
	UnknownFree     int
	UnknownDelay    time.Duration
	UnknownMaxDelay time.Duration
	// KnownFor is how long a successful sign-in keeps its address known to
	// the account; KnownMax bounds how many addresses one account keeps
	// (the least recently used is dropped).
	KnownFor time.Duration
	KnownMax int
}

// DefaultLockoutPolicy: 5 failures per (account, address) or 20 per address
// within 15 minutes lock that pair or address for 15 minutes, then 30,
// 60, ... up to a day; an account's 11th and later failures from unknown
// addresses delay the next unknown-address attempt by 1, 2, 4, ... up to
// 30 seconds; a sign-in keeps its address known for 90 days, 8 per account.
func DefaultLockoutPolicy() LockoutPolicy {
	return LockoutPolicy{PairThreshold: 5, AddrThreshold: 20, Window: 15 * time.Minute,
		BaseLock: 15 * time.Minute, MaxLock: 24 * time.Hour,
		UnknownFree: 10, UnknownDelay: time.Second, UnknownMaxDelay: 30 * time.Second,
		KnownFor: 90 * 24 * time.Hour, KnownMax: 8}
}

// withDefaults fills the zero fields from DefaultLockoutPolicy.
func (p LockoutPolicy) withDefaults() LockoutPolicy {
	d := DefaultLockoutPolicy()
	fill := func(v *int, def int) {
		if *v <= 0 {
			*v = def
		}
	}
	fillD := func(v *time.Duration, def time.Duration) {
		if *v <= 0 {
			*v = def
		}
	}
	fill(&p.PairThreshold, d.PairThreshold)
	fill(&p.AddrThreshold, d.AddrThreshold)
	fill(&p.UnknownFree, d.UnknownFree)
	fill(&p.KnownMax, d.KnownMax)
	fillD(&p.Window, d.Window)
	fillD(&p.BaseLock, d.BaseLock)
	fillD(&p.MaxLock, d.MaxLock)
	fillD(&p.UnknownDelay, d.UnknownDelay)
	fillD(&p.UnknownMaxDelay, d.UnknownMaxDelay)
	fillD(&p.KnownFor, d.KnownFor)
	return p
}

// loginKeys are the throttle keys of one login attempt.
type loginKeys struct {
	// user is "user:" + SHA-256 of the normalised username, whether or not
	// the account exists, so that throttling reveals nothing about which
	// accounts exist and the table holds no username.
	user string
	// addrHash is the digest of (account, address bucket); "" without a
	// client address.
	addrHash string
	// pair is "pair:" + the account digest + ":" + addrHash, so that an
	// account's pairs can be found (and cleared) by prefix.
	pair string
	// addr is "addr:" + the address bucket.
	addr string
}

func loginKeysFor(username, clientAddr string) loginKeys {
	sum := sha256.Sum256([]byte(strings.ToLower(strings.TrimSpace(username))))
	userHex := hex.EncodeToString(sum[:])
	k := loginKeys{user: "user:" + userHex}
	if bucket := addrBucket(clientAddr); bucket != "" {
		ps := sha256.Sum256([]byte("careflow login address\x00" + userHex + "\x00" + bucket))
		k.addrHash = hex.EncodeToString(ps[:])
		k.pair = pairPrefix(userHex) + k.addrHash
		k.addr = "addr:" + bucket
	}
	return k
}

func pairPrefix(userHex string) string { return "pair:" + userHex + ":" }

// addrBucket is the unit an address is counted in: an IPv4 address, or the
// /64 of an IPv6 one (one subscriber's usual allocation: counting single
// IPv6 addresses would let one guesser pose as billions of addresses).
func addrBucket(clientAddr string) string {
	a, err := netip.ParseAddr(clientAddr)
	if err != nil {
		return ""
	}
	a = a.Unmap().WithZone("")
	if a.Is6() {
		p, _ := a.Prefix(64)
		return p.String()
	}
	return a.String()
}

func lockedError(wait time.Duration) *errs.Error {
	e := errs.E(errs.RateLimited, "too many failed logins; try again later")
	e.RetryAfterSeconds = int((wait + time.Second - 1) / time.Second)
	return e
}

// knownAddr reports whether the account signed in from the attempt's
// address within KnownFor.
func (a *Accounts) knownAddr(ctx context.Context, now time.Time, k loginKeys) (bool, error) {
	if k.addrHash == "" {
		return false, nil
	}
	var last time.Time
	err := a.db.Reader().QueryRow(ctx, `SELECT last_success_at FROM auth_login_known_addrs WHERE user_key = $1 AND addr_hash = $2`,
		k.user, k.addrHash).Scan(&last)
	if errors.Is(err, store.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("login throttle: %w", err)
	}
	return now.Sub(last) <= a.cfg.Lockout.KnownFor, nil
}

// throttleWait returns how long this attempt must wait before it may be
// tried at all: the pair's lock-out, and from an unknown address also the
// address's lock-out and the account's unknown-address delay.
func (a *Accounts) throttleWait(ctx context.Context, now time.Time, k loginKeys, known bool) (time.Duration, error) {
	keys := []string{k.pair}
	if !known {
		keys = append(keys, k.addr, k.user)
	}
	var longest time.Duration
	for _, key := range keys {
		if key == "" {
			continue
		}
		var until *time.Time
		err := a.db.Reader().QueryRow(ctx, `SELECT locked_until FROM auth_login_throttle WHERE throttle_key = $1`, key).Scan(&until)
		if errors.Is(err, store.ErrNoRows) {
			continue
		}
		if err != nil {
			return 0, fmt.Errorf("login throttle: %w", err)
		}
		if until != nil && until.After(now) {
			longest = max(longest, until.Sub(now))
		}
	}
	return longest, nil
}

// recordLoginFailure charges a failure to the pair and the address, and to
// the account when the address is unknown to it, in one transaction. It
// returns how long the next attempt like this one must wait (0: none).
func (a *Accounts) recordLoginFailure(ctx context.Context, now time.Time, k loginKeys, known bool) (time.Duration, error) {
	pol := a.cfg.Lockout
	var wait time.Duration
	err := a.db.Tx(ctx, func(tx store.Tx) error {
		wait = 0
		if k.pair != "" {
			d, err := a.failAndLock(ctx, tx, now, k.pair, pol.PairThreshold)
			if err != nil {
				return err
			}
			wait = max(wait, d)
		}
		if k.addr != "" {
			d, err := a.failAndLock(ctx, tx, now, k.addr, pol.AddrThreshold)
			if err != nil {
				return err
			}
			if !known {
				wait = max(wait, d)
			}
		}
		if !known {
			d, err := a.failAndDelay(ctx, tx, now, k.user)
			if err != nil {
				return err
			}
			wait = max(wait, d)
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("login throttle: %w", err)
	}
	return wait, nil
}

type throttleRow struct {
	failures, lockouts int
	windowStart        time.Time
	lockedUntil        *time.Time
	updatedAt          time.Time
}

// lockThrottleRow reads (creating it if need be) and row-locks a counter.
func lockThrottleRow(ctx context.Context, tx store.Tx, now time.Time, key string) (throttleRow, error) {
	var r throttleRow
	sel := `SELECT failures, window_started_at, locked_until, lockouts, updated_at FROM auth_login_throttle
		WHERE throttle_key = $1` + tx.Dialect().ForUpdate()
	err := tx.QueryRow(ctx, sel, key).Scan(&r.failures, &r.windowStart, &r.lockedUntil, &r.lockouts, &r.updatedAt)
	if errors.Is(err, store.ErrNoRows) {
		_, err = tx.Exec(ctx, `INSERT INTO auth_login_throttle (throttle_key, failures, window_started_at, locked_until, lockouts, updated_at)
			VALUES ($1, 0, $2, NULL, 0, $2) ON CONFLICT (throttle_key) DO NOTHING`, key, now)
		if err != nil {
			return r, err
		}
		err = tx.QueryRow(ctx, sel, key).Scan(&r.failures, &r.windowStart, &r.lockedUntil, &r.lockouts, &r.updatedAt)
	}
	return r, err
}

func saveThrottleRow(ctx context.Context, tx store.Tx, now time.Time, key string, r throttleRow) error {
	_, err := tx.Exec(ctx, `UPDATE auth_login_throttle SET failures = $1, window_started_at = $2, locked_until = $3,
		lockouts = $4, updated_at = $5 WHERE throttle_key = $6`, r.failures, r.windowStart, r.lockedUntil, r.lockouts, now, key)
	return err
}

// failAndLock counts a failure against a pair or an address key and locks
// it when the count reaches threshold within the window; it returns the
// lock-out begun, if any.
func (a *Accounts) failAndLock(ctx context.Context, tx store.Tx, now time.Time, key string, threshold int) (time.Duration, error) {
	r, err := lockThrottleRow(ctx, tx, now, key)
	if err != nil {
		return 0, err
	}
	pol := a.cfg.Lockout
	if now.Sub(r.windowStart) > pol.Window {
		r.failures, r.windowStart = 0, now
	}
	// A quiet period as long as the longest lock-out forgives past ones.
	if r.lockedUntil != nil && now.Sub(*r.lockedUntil) > pol.MaxLock {
		r.lockouts = 0
	}
	r.failures++
	var wait time.Duration
	if r.failures >= threshold {
		d := pol.BaseLock
		for i := 0; i < r.lockouts && d < pol.MaxLock; i++ {
			d *= 2
		}
		d = min(d, pol.MaxLock)
		until := now.Add(d)
		r.lockedUntil = &until
		r.lockouts++
		r.failures, r.windowStart = 0, now
		wait = d
	}
	return wait, saveThrottleRow(ctx, tx, now, key, r)
}

// failAndDelay counts an account's failure from an unknown address and
// sets when the next unknown-address attempt may come. The count is
// forgotten after a whole Window without such failures (not at fixed
// window ends, so a steady guesser stays at the longest delay).
func (a *Accounts) failAndDelay(ctx context.Context, tx store.Tx, now time.Time, key string) (time.Duration, error) {
	r, err := lockThrottleRow(ctx, tx, now, key)
	if err != nil {
		return 0, err
	}
	pol := a.cfg.Lockout
	if r.failures > 0 && now.Sub(r.updatedAt) > pol.Window {
		r.failures, r.windowStart = 0, now
	}
	r.failures++
	var wait time.Duration
	if over := r.failures - pol.UnknownFree; over > 0 {
		wait = pol.UnknownDelay
		for i := 1; i < over && wait < pol.UnknownMaxDelay; i++ {
			wait *= 2
		}
		wait = min(wait, pol.UnknownMaxDelay)
		until := now.Add(wait)
		r.lockedUntil = &until
	}
	return wait, saveThrottleRow(ctx, tx, now, key, r)
}

// recordLoginSuccess clears the pair's failures and makes the address known
// to the account (keeping the KnownMax most recent). The address's and the
// account's unknown-address counts stay: one valid sign-in must not reset
// a guesser elsewhere.
func (a *Accounts) recordLoginSuccess(ctx context.Context, now time.Time, k loginKeys) error {
	if k.pair == "" {
		return nil
	}
	pol := a.cfg.Lockout
	err := a.db.Tx(ctx, func(tx store.Tx) error {
		if _, err := tx.Exec(ctx, `DELETE FROM auth_login_throttle WHERE throttle_key = $1 AND (locked_until IS NULL OR locked_until <= $2)`, k.pair, now); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `INSERT INTO auth_login_known_addrs (user_key, addr_hash, last_success_at) VALUES ($1, $2, $3)
			ON CONFLICT (user_key, addr_hash) DO UPDATE SET last_success_at = excluded.last_success_at`, k.user, k.addrHash, now); err != nil {
			return err
		}
		// Forget the oldest beyond KnownMax, and any past KnownFor.
		_, err := tx.Exec(ctx, `DELETE FROM auth_login_known_addrs WHERE user_key = $1 AND (last_success_at < $2 OR addr_hash NOT IN (
			SELECT addr_hash FROM auth_login_known_addrs WHERE user_key = $1 ORDER BY last_success_at DESC, addr_hash LIMIT $3))`,
			k.user, now.Add(-pol.KnownFor), pol.KnownMax)
		return err
	})
	if err != nil {
		return fmt.Errorf("login throttle: %w", err)
	}
	return nil
}

// Unlock clears every login throttle of an account: its pairs' lock-outs
// and its unknown-address delay (`careflow user unlock`). Address lock-outs
// are the addresses', not the account's, and stay. The account need not
// exist: throttles are kept for unknown names too. It reports whether
// anything was cleared.
func (a *Accounts) Unlock(ctx context.Context, username string) (bool, error) {
	name, err := NormalizeUsername(username)
	if err != nil {
		return false, err
	}
	k := loginKeysFor(name, "")
	userHex := strings.TrimPrefix(k.user, "user:")
	n, err := a.db.Writer().Exec(ctx, `DELETE FROM auth_login_throttle WHERE throttle_key = $1 OR throttle_key LIKE $2`,
		k.user, pairPrefix(userHex)+"%")
	if err != nil {
		return false, fmt.Errorf("unlock: %w", err)
	}
	return n > 0, nil
}
