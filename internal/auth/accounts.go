package auth

import (
	"context"
	"crypto/rand"
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
	// Policy is the access policy, whose roles say whether accounts or
	// machine clients may have them (policy_principals.go). Default: the
	// embedded default policy.
	Policy *Policy
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
	cfg.Lockout = cfg.Lockout.withDefaults()
	if cfg.Policy == nil {
		cfg.Policy = DefaultPolicy()
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
	if err := a.cfg.Policy.CheckRoleFor(role, KindUser); err != nil {
		return User{}, err
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
	if err := a.cfg.Policy.CheckRoleFor(role, KindUser); err != nil {
		return err
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

// checkAccountRole refuses to start or continue a session of an account
// whose role the policy does not give to people (one made before the policy
// said so): it would act with the session scopes on a role meant to be
// narrowed by a client's scopes.
func (a *Accounts) checkAccountRole(u User) error {
	if a.cfg.Policy.RoleIsFor(u.Role, KindUser) {
		return nil
	}
	return errs.E(errs.Forbidden, "this account's role %s is not for people, so it cannot sign in; an administrator can give it another role with careflow user set-role", u.Role)
}

// UsersWithRolesNotForPeople counts the accounts whose role the policy does
// not give to people: they cannot sign in until their role is changed
// (serve says so at start).
func (a *Accounts) UsersWithRolesNotForPeople(ctx context.Context) (int, error) {
	users, err := a.ListUsers(ctx)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, u := range users {
		if !u.Disabled && !a.cfg.Policy.RoleIsFor(u.Role, KindUser) {
			n++
		}
	}
	return n, nil
}

// errBadCredentials is the one answer for every failed login: unknown user,
// wrong password, disabled account. Telling them apart would let anyone
// enumerate accounts.
func errBadCredentials() *errs.Error {
	return errs.E(errs.Unauthenticated, "invalid username or password")
}

// Authenticate checks a username and password from clientAddr (may be "").
// It fails with RateLimited (and RetryAfterSeconds) while the attempt is
// throttled (login_throttle.go: per account and address, never the account
// alone), and with Unauthenticated for any bad credentials. Unknown users
// cost one argon2id verification like known ones. A hash made with weaker
// parameters than the current ones is replaced on success.
func (a *Accounts) Authenticate(ctx context.Context, username, password, clientAddr string) (User, error) {
	now := a.now()
	keys := loginKeysFor(username, clientAddr)
	known, err := a.knownAddr(ctx, now, keys)
	if err != nil {
		return User{}, err
	}
	if wait, err := a.throttleWait(ctx, now, keys, known); err != nil {
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
		wait, err := a.recordLoginFailure(ctx, now, keys, known)
		if err != nil {
			return User{}, err
		}
		if wait > 0 {
			return User{}, lockedError(wait)
		}
		return User{}, errBadCredentials()
	}
	if err := a.recordLoginSuccess(ctx, now, keys); err != nil {
		return User{}, err
	}
	// Said only to whoever knows the password: the account exists but its
	// role is not one a person may have.
	if err := a.checkAccountRole(user); err != nil {
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
