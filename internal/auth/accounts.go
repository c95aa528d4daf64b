package auth

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/careflow/careflow/internal/errs"
	"github.com/careflow/careflow/internal/store"
)

// User is a local account. It never carries the password hash out of this
// package.
type User struct {
	ID                string
	Username          string
	Role              Role
	Disabled          bool
	CreatedAt         time.Time
	UpdatedAt         time.Time
	PasswordChangedAt time.Time
}

// LockoutPolicy says when repeated failed logins lock a key (an account or a
// client address) and for how long.
type LockoutPolicy struct {
	// UserThreshold failures against one username within Window lock it.
	UserThreshold int
	// AddrThreshold failures from one client address within Window lock the
	// address. Higher than UserThreshold: a ward behind one NAT address
	// shares it.
	AddrThreshold int
	// Window is how long failures are counted before the count restarts.
	Window time.Duration
	// BaseLock is the first lock-out; each consecutive one doubles it, up to
	// MaxLock.
	BaseLock time.Duration
	MaxLock  time.Duration
}

// DefaultLockoutPolicy: 5 failures per account or 20 per address within 15
// minutes lock for 15 minutes, then 30, 60, ... up to a day.
func DefaultLockoutPolicy() LockoutPolicy {
	return LockoutPolicy{UserThreshold: 5, AddrThreshold: 20, Window: 15 * time.Minute,
		BaseLock: 15 * time.Minute, MaxLock: 24 * time.Hour}
}

// AccountsConfig shapes an Accounts service. Zero values pick production
// defaults.
type AccountsConfig struct {
	// Params are the argon2id parameters for new hashes; hashes weaker than
	// these are upgraded at login. Tests pass cheap ones.
	Params  Argon2Params
	Lockout LockoutPolicy
	// RefreshTTL is how long an unused refresh token stays valid;
	// SessionMaxAge bounds a session however often it is refreshed.
	RefreshTTL    time.Duration
	SessionMaxAge time.Duration
	Now           func() time.Time
	Random        io.Reader
	// MaxConcurrentHashes bounds argon2id computations in flight (each
	// holds MemoryKiB of memory): a flood of logins queues instead of
	// exhausting memory. Default 2 × GOMAXPROCS.
	MaxConcurrentHashes int
}

// Accounts holds local users, their login sessions and the login throttle.
type Accounts struct {
	db  *store.DB
	cfg AccountsConfig

	// dummyHash is made on first use (commands that never log anyone in
	// should not pay for it).
	dummyOnce sync.Once
	dummyHash string
	dummyErr  error

	hashSlots chan struct{}
}

// NewAccounts builds the service.
func NewAccounts(db *store.DB, cfg AccountsConfig) (*Accounts, error) {
	if cfg.Params == (Argon2Params{}) {
		cfg.Params = DefaultArgon2Params()
	}
	if cfg.Lockout == (LockoutPolicy{}) {
		cfg.Lockout = DefaultLockoutPolicy()
	}
	if cfg.RefreshTTL <= 0 {
		cfg.RefreshTTL = 12 * time.Hour
	}
	if cfg.SessionMaxAge <= 0 {
		cfg.SessionMaxAge = 7 * 24 * time.Hour
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Random == nil {
		cfg.Random = rand.Reader
	}
	if cfg.MaxConcurrentHashes <= 0 {
		cfg.MaxConcurrentHashes = 2 * runtime.GOMAXPROCS(0)
	}
	return &Accounts{db: db, cfg: cfg, hashSlots: make(chan struct{}, cfg.MaxConcurrentHashes)}, nil
}

// withHashSlot runs fn while holding one of the argon2id slots, waiting for
// one as long as ctx allows.
func (a *Accounts) withHashSlot(ctx context.Context, fn func()) error {
	select {
	case a.hashSlots <- struct{}{}:
	case <-ctx.Done():
		return errs.Wrap(errs.Unavailable, ctx.Err(), "the server is busy; try again")
	}
	defer func() { <-a.hashSlots }()
	fn()
	return nil
}

// dummy returns a hash of a random password made with the configured
// parameters, which logins of unknown users verify against so that they
// take as long as logins of real ones.
func (a *Accounts) dummy() (string, error) {
	a.dummyOnce.Do(func() {
		var pw [24]byte
		if _, err := io.ReadFull(a.cfg.Random, pw[:]); err != nil {
			a.dummyErr = err
			return
		}
		a.dummyHash, a.dummyErr = HashPassword(a.cfg.Params, hex.EncodeToString(pw[:]), a.cfg.Random)
	})
	return a.dummyHash, a.dummyErr
}

// Params returns the argon2id parameters new hashes use.
func (a *Accounts) Params() Argon2Params { return a.cfg.Params }

func (a *Accounts) now() time.Time { return a.cfg.Now().UTC() }

// NormalizeUsername lower-cases and checks a username: 2 to 64 of ASCII
// letters, digits and . _ - @ +, starting with a letter or digit. ASCII
// only, so look-alike letters cannot make two accounts that read the same.
func NormalizeUsername(s string) (string, error) {
	u := strings.ToLower(strings.TrimSpace(s))
	if len(u) < 2 || len(u) > 64 {
		return "", errs.E(errs.Invalid, "username must be 2 to 64 characters").InField("username")
	}
	for i := 0; i < len(u); i++ {
		c := u[i]
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
		case i > 0 && (c == '.' || c == '_' || c == '-' || c == '@' || c == '+'):
		default:
			return "", errs.E(errs.Invalid, "username may hold only letters, digits and . _ - @ + and must start with a letter or digit").InField("username")
		}
	}
	return u, nil
}

func newID() string {
	id, err := uuid.NewV7()
	if err != nil {
		// NewV7 fails only when the system random source does.
		panic(fmt.Sprintf("uuid: %v", err))
	}
	return id.String()
}

// AddUser creates an enabled account. The password must satisfy
// CheckPasswordPolicy.
func (a *Accounts) AddUser(ctx context.Context, username, password string, role Role) (User, error) {
	u, err := NormalizeUsername(username)
	if err != nil {
		return User{}, err
	}
	if !role.Valid() {
		return User{}, errs.E(errs.Invalid, "unknown role %q", string(role)).InField("role")
	}
	if err := CheckPasswordPolicy(u, password); err != nil {
		return User{}, err
	}
	var hash string
	if slotErr := a.withHashSlot(ctx, func() { hash, err = HashPassword(a.cfg.Params, password, a.cfg.Random) }); slotErr != nil {
		return User{}, slotErr
	}
	if err != nil {
		return User{}, err
	}
	now := a.now()
	user := User{ID: newID(), Username: u, Role: role, CreatedAt: now, UpdatedAt: now, PasswordChangedAt: now}
	_, err = a.db.Writer().Exec(ctx, `INSERT INTO auth_users
		(id, username, password_hash, role, disabled, created_at, updated_at, password_changed_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
		user.ID, user.Username, hash, string(role), false, now, now, now)
	if store.IsUniqueViolation(err) {
		return User{}, errs.E(errs.Conflict, "a user with that username already exists").InField("username")
	}
	if err != nil {
		return User{}, fmt.Errorf("add user: %w", err)
	}
	return user, nil
}

const userColumns = `id, username, role, disabled, created_at, updated_at, password_changed_at`

func scanUser(row interface{ Scan(...any) error }) (User, error) {
	var u User
	var role string
	err := row.Scan(&u.ID, &u.Username, &role, &u.Disabled, &u.CreatedAt, &u.UpdatedAt, &u.PasswordChangedAt)
	u.Role = Role(role)
	return u, err
}

// ListUsers returns every account, oldest first.
func (a *Accounts) ListUsers(ctx context.Context) ([]User, error) {
	rows, err := a.db.Reader().Query(ctx, `SELECT `+userColumns+` FROM auth_users ORDER BY id`)
	if err != nil {
		return nil, fmt.Errorf("list users: %w", err)
	}
	defer rows.Close()
	var out []User
	for rows.Next() {
		u, err := scanUser(rows)
		if err != nil {
			return nil, fmt.Errorf("list users: %w", err)
		}
		out = append(out, u)
	}
	return out, rows.Err()
}

// UserByID returns an account by id.
func (a *Accounts) UserByID(ctx context.Context, id string) (User, error) {
	u, err := scanUser(a.db.Reader().QueryRow(ctx, `SELECT `+userColumns+` FROM auth_users WHERE id = $1`, id))
	if errors.Is(err, store.ErrNoRows) {
		return User{}, errs.E(errs.NotFound, "no such user")
	}
	return u, err
}

// UserByName returns an account by username.
func (a *Accounts) UserByName(ctx context.Context, username string) (User, error) {
	name, err := NormalizeUsername(username)
	if err != nil {
		return User{}, err
	}
	u, err := scanUser(a.db.Reader().QueryRow(ctx, `SELECT `+userColumns+` FROM auth_users WHERE username = $1`, name))
	if errors.Is(err, store.ErrNoRows) {
		return User{}, errs.E(errs.NotFound, "no such user").InField("username")
	}
	return u, err
}

// DisableUser disables an account and revokes all its sessions, in one
// transaction: a disabled user's refresh tokens stop working at once, and
// its access tokens as soon as the verifier's session check looks again.
func (a *Accounts) DisableUser(ctx context.Context, username string) error {
	name, err := NormalizeUsername(username)
	if err != nil {
		return err
	}
	now := a.now()
	return a.db.Tx(ctx, func(tx store.Tx) error {
		var id string
		if err := tx.QueryRow(ctx, `SELECT id FROM auth_users WHERE username = $1`, name).Scan(&id); err != nil {
			if errors.Is(err, store.ErrNoRows) {
				return errs.E(errs.NotFound, "no such user").InField("username")
			}
			return err
		}
		if _, err := tx.Exec(ctx, `UPDATE auth_users SET disabled = $1, updated_at = $2 WHERE id = $3`, true, now, id); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `UPDATE auth_sessions SET revoked_at = $1, revoked_reason = 'disabled'
			WHERE user_id = $2 AND revoked_at IS NULL`, now, id)
		return err
	})
}

// SetRole changes an account's role. Access tokens already issued name the
// old role; the verifier's session check (SessionCache) refuses them within
// its TTL, and a refresh issues tokens with the new role.
func (a *Accounts) SetRole(ctx context.Context, username string, role Role) error {
	name, err := NormalizeUsername(username)
	if err != nil {
		return err
	}
	if !role.Valid() {
		return errs.E(errs.Invalid, "unknown role %q", string(role)).InField("role")
	}
	n, err := a.db.Writer().Exec(ctx, `UPDATE auth_users SET role = $1, updated_at = $2 WHERE username = $3`, string(role), a.now(), name)
	if err != nil {
		return fmt.Errorf("set role: %w", err)
	}
	if n == 0 {
		return errs.E(errs.NotFound, "no such user").InField("username")
	}
	return nil
}

// errBadCredentials is the one answer for every failed login: unknown user,
// wrong password, disabled account. Telling them apart would let anyone
// enumerate accounts.
func errBadCredentials() *errs.Error {
	return errs.E(errs.Unauthenticated, "invalid username or password")
}

// throttleKeys returns the lock-out keys of a login attempt. The user key
// hashes the normalised name whether or not the account exists.
func throttleKeys(username, clientAddr string) (userKey, addrKey string) {
	sum := sha256.Sum256([]byte(strings.ToLower(strings.TrimSpace(username))))
	userKey = "user:" + hex.EncodeToString(sum[:])
	if clientAddr != "" {
		addrKey = "addr:" + clientAddr
	}
	return userKey, addrKey
}

// Authenticate checks a username and password from clientAddr (may be "").
// It fails with RateLimited (and RetryAfterSeconds) while the account or the
// address is locked out, and with Unauthenticated for any bad credentials.
// Unknown users cost one argon2id verification like known ones. A hash made
// with weaker parameters than the current ones is replaced on success.
func (a *Accounts) Authenticate(ctx context.Context, username, password, clientAddr string) (User, error) {
	now := a.now()
	userKey, addrKey := throttleKeys(username, clientAddr)
	if wait, err := a.lockedFor(ctx, now, userKey, addrKey); err != nil {
		return User{}, err
	} else if wait > 0 {
		return User{}, lockedError(wait)
	}

	var (
		user User
		hash string
	)
	name, nameErr := NormalizeUsername(username)
	found := false
	var err error
	if nameErr == nil && len(password) <= MaxPasswordLen {
		row := a.db.Reader().QueryRow(ctx, `SELECT `+userColumns+`, password_hash FROM auth_users WHERE username = $1`, name)
		var role string
		err = row.Scan(&user.ID, &user.Username, &role, &user.Disabled, &user.CreatedAt, &user.UpdatedAt, &user.PasswordChangedAt, &hash)
		user.Role = Role(role)
		switch {
		case err == nil:
			found = true
		case errors.Is(err, store.ErrNoRows):
		default:
			return User{}, fmt.Errorf("login: %w", err)
		}
	}
	if !found {
		if hash, err = a.dummy(); err != nil {
			return User{}, fmt.Errorf("login: %w", err)
		}
	}
	pw := password
	if len(pw) > MaxPasswordLen {
		pw = pw[:MaxPasswordLen] // still spend the time; the login fails below
	}
	var ok, rehash bool
	if slotErr := a.withHashSlot(ctx, func() { ok, rehash, err = VerifyPassword(hash, pw, a.cfg.Params) }); slotErr != nil {
		return User{}, slotErr
	}
	if err != nil {
		return User{}, fmt.Errorf("login: stored hash: %w", err)
	}
	if !found || !ok || user.Disabled || len(password) > MaxPasswordLen {
		wait, err := a.recordFailure(ctx, now, userKey, addrKey)
		if err != nil {
			return User{}, err
		}
		if wait > 0 {
			return User{}, lockedError(wait)
		}
		return User{}, errBadCredentials()
	}
	if err := a.recordSuccess(ctx, userKey); err != nil {
		return User{}, err
	}
	if rehash {
		// Best effort: a failure here leaves the old (still valid) hash.
		var newHash string
		var herr error
		slotErr := a.withHashSlot(ctx, func() { newHash, herr = HashPassword(a.cfg.Params, password, a.cfg.Random) })
		if slotErr == nil && herr == nil {
			_, _ = a.db.Writer().Exec(ctx, `UPDATE auth_users SET password_hash = $1, updated_at = $2 WHERE id = $3 AND password_hash = $4`,
				newHash, now, user.ID, hash)
		}
	}
	return user, nil
}

func lockedError(wait time.Duration) *errs.Error {
	e := errs.E(errs.RateLimited, "too many failed logins; try again later")
	e.RetryAfterSeconds = int((wait + time.Second - 1) / time.Second)
	return e
}

// lockedFor returns how long the longer of the two keys' lock-outs lasts.
func (a *Accounts) lockedFor(ctx context.Context, now time.Time, keys ...string) (time.Duration, error) {
	var longest time.Duration
	for _, k := range keys {
		if k == "" {
			continue
		}
		var until *time.Time
		err := a.db.Reader().QueryRow(ctx, `SELECT locked_until FROM auth_login_throttle WHERE throttle_key = $1`, k).Scan(&until)
		if errors.Is(err, store.ErrNoRows) {
			continue
		}
		if err != nil {
			return 0, fmt.Errorf("login throttle: %w", err)
		}
		if until != nil && until.After(now) && until.Sub(now) > longest {
			longest = until.Sub(now)
		}
	}
	return longest, nil
}

// recordFailure counts a failure against both keys and locks any that
// reached its threshold; it returns the resulting lock-out, if any.
func (a *Accounts) recordFailure(ctx context.Context, now time.Time, userKey, addrKey string) (time.Duration, error) {
	var longest time.Duration
	err := a.db.Tx(ctx, func(tx store.Tx) error {
		longest = 0
		for _, k := range []struct {
			key       string
			threshold int
		}{{userKey, a.cfg.Lockout.UserThreshold}, {addrKey, a.cfg.Lockout.AddrThreshold}} {
			if k.key == "" || k.threshold <= 0 {
				continue
			}
			wait, err := a.failOne(ctx, tx, now, k.key, k.threshold)
			if err != nil {
				return err
			}
			if wait > longest {
				longest = wait
			}
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("login throttle: %w", err)
	}
	return longest, nil
}

func (a *Accounts) failOne(ctx context.Context, tx store.Tx, now time.Time, key string, threshold int) (time.Duration, error) {
	var (
		failures, lockouts int
		windowStart        time.Time
		lockedUntil        *time.Time
	)
	err := tx.QueryRow(ctx, `SELECT failures, window_started_at, locked_until, lockouts FROM auth_login_throttle
		WHERE throttle_key = $1`+tx.Dialect().ForUpdate(), key).Scan(&failures, &windowStart, &lockedUntil, &lockouts)
	if errors.Is(err, store.ErrNoRows) {
		_, err = tx.Exec(ctx, `INSERT INTO auth_login_throttle (throttle_key, failures, window_started_at, locked_until, lockouts, updated_at)
			VALUES ($1, 0, $2, NULL, 0, $2) ON CONFLICT (throttle_key) DO NOTHING`, key, now)
		if err != nil {
			return 0, err
		}
		err = tx.QueryRow(ctx, `SELECT failures, window_started_at, locked_until, lockouts FROM auth_login_throttle
			WHERE throttle_key = $1`+tx.Dialect().ForUpdate(), key).Scan(&failures, &windowStart, &lockedUntil, &lockouts)
	}
	if err != nil {
		return 0, err
	}
	lock := a.cfg.Lockout
	if now.Sub(windowStart) > lock.Window {
		failures, windowStart = 0, now
	}
	// A quiet period as long as the longest lock-out forgives past ones.
	if lockedUntil != nil && now.Sub(*lockedUntil) > lock.MaxLock {
		lockouts = 0
	}
	failures++
	var wait time.Duration
	if failures >= threshold {
		d := lock.BaseLock
		for i := 0; i < lockouts && d < lock.MaxLock; i++ {
			d *= 2
		}
		d = min(d, lock.MaxLock)
		until := now.Add(d)
		lockedUntil = &until
		lockouts++
		failures, windowStart = 0, now
		wait = d
	}
	_, err = tx.Exec(ctx, `UPDATE auth_login_throttle SET failures = $1, window_started_at = $2, locked_until = $3,
		lockouts = $4, updated_at = $5 WHERE throttle_key = $6`, failures, windowStart, lockedUntil, lockouts, now, key)
	return wait, err
}

// recordSuccess clears the account's failures. The address's count stays:
// one valid account must not reset an address that is guessing at others.
func (a *Accounts) recordSuccess(ctx context.Context, userKey string) error {
	_, err := a.db.Writer().Exec(ctx, `DELETE FROM auth_login_throttle WHERE throttle_key = $1 AND (locked_until IS NULL OR locked_until <= $2)`, userKey, a.now())
	if err != nil {
		return fmt.Errorf("login throttle: %w", err)
	}
	return nil
}
