package auth

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/careflow/careflow/internal/errs"
	"github.com/careflow/careflow/internal/store"
)

// Client is a machine client (an integration) that authenticates with the
// OAuth2 client_credentials grant.
type Client struct {
	ID        string
	Name      string
	Role      Role
	Scopes    []string
	Disabled  bool
	CreatedAt time.Time
}

// ParseScopes splits a space- (or comma-) separated scope list, checks each
// scope's characters (RFC 6749 scope-token: printable ASCII without space,
// quote or backslash, here also at most 128 bytes) and returns them sorted
// without duplicates.
func ParseScopes(s string) ([]string, error) {
	fields := strings.FieldsFunc(s, func(r rune) bool { return r == ' ' || r == ',' })
	out := make([]string, 0, len(fields))
	for _, f := range fields {
		if len(f) > 128 {
			return nil, errs.E(errs.Invalid, "a scope is longer than 128 characters").InField("scope")
		}
		for i := 0; i < len(f); i++ {
			c := f[i]
			if c < 0x21 || c > 0x7e || c == '"' || c == '\\' {
				return nil, errs.E(errs.Invalid, "scope holds a character that is not allowed").InField("scope")
			}
		}
		out = append(out, f)
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

// GrantScopes returns the scopes a client gets for a request: all it may
// have when it asks for none, else the intersection of what it asks for and
// what it may have. Asking only for scopes it may not have is an error
// (OAuth2 invalid_scope), not a silently empty token.
func GrantScopes(allowed, requested []string) ([]string, error) {
	if len(requested) == 0 {
		return slices.Clone(allowed), nil
	}
	var out []string
	for _, r := range requested {
		if slices.Contains(allowed, r) {
			out = append(out, r)
		}
	}
	if len(out) == 0 {
		return nil, errs.E(errs.Invalid, "none of the requested scopes is allowed for this client").InField("scope")
	}
	return out, nil
}

// NormalizeClientName checks a client's display name: 2 to 64 of letters,
// digits and . _ -.
func NormalizeClientName(s string) (string, error) {
	n := strings.TrimSpace(s)
	if len(n) < 2 || len(n) > 64 {
		return "", errs.E(errs.Invalid, "client name must be 2 to 64 characters").InField("name")
	}
	for i := 0; i < len(n); i++ {
		c := n[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return "", errs.E(errs.Invalid, "client name may hold only letters, digits and . _ -").InField("name")
		}
	}
	return n, nil
}

// AddClient registers a machine client and returns it with its secret. The
// secret is shown this once: only its SHA-256 is stored.
func (a *Accounts) AddClient(ctx context.Context, name string, role Role, scopes []string) (Client, string, error) {
	n, err := NormalizeClientName(name)
	if err != nil {
		return Client{}, "", err
	}
	if err := a.cfg.Policy.CheckRoleFor(role, KindClient); err != nil {
		return Client{}, "", err
	}
	secret, hash, err := newOpaqueToken(a.cfg.Random, clientSecretPrefix)
	if err != nil {
		return Client{}, "", err
	}
	now := a.now()
	c := Client{ID: newID(), Name: n, Role: role, Scopes: slices.Clone(scopes), CreatedAt: now}
	_, err = a.db.Writer().Exec(ctx, `INSERT INTO auth_clients (id, name, secret_hash, role, scopes, disabled, created_at, updated_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $7)`, c.ID, c.Name, hash, string(role), strings.Join(c.Scopes, " "), false, now)
	if store.IsUniqueViolation(err) {
		return Client{}, "", errs.E(errs.Conflict, "a client with that name already exists").InField("name")
	}
	if err != nil {
		return Client{}, "", fmt.Errorf("add client: %w", err)
	}
	return c, secret, nil
}

// ListClients returns every machine client, oldest first.
func (a *Accounts) ListClients(ctx context.Context) ([]Client, error) {
	rows, err := a.db.Reader().Query(ctx, `SELECT id, name, role, scopes, disabled, created_at FROM auth_clients ORDER BY id`)
	if err != nil {
		return nil, fmt.Errorf("list clients: %w", err)
	}
	defer rows.Close()
	var out []Client
	for rows.Next() {
		var c Client
		var role, scopes string
		if err := rows.Scan(&c.ID, &c.Name, &role, &scopes, &c.Disabled, &c.CreatedAt); err != nil {
			return nil, fmt.Errorf("list clients: %w", err)
		}
		c.Role, c.Scopes = Role(role), strings.Fields(scopes)
		out = append(out, c)
	}
	return out, rows.Err()
}

// ClientActive reports whether a client exists, is enabled and still has
// role (the role its access tokens name).
func (a *Accounts) ClientActive(ctx context.Context, clientID string, role Role) (bool, error) {
	var (
		current  string
		disabled bool
	)
	err := a.db.Reader().QueryRow(ctx, `SELECT role, disabled FROM auth_clients WHERE id = $1`, clientID).Scan(&current, &disabled)
	if errors.Is(err, store.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return !disabled && Role(current) == role, nil
}

// DisableClient stops a client from getting new tokens; with the
// verifier's session check (SessionCache), its tokens already issued stop
// working within the check's TTL.
func (a *Accounts) DisableClient(ctx context.Context, idOrName string) error {
	n, err := a.db.Writer().Exec(ctx, `UPDATE auth_clients SET disabled = $1, updated_at = $2 WHERE id = $3 OR name = $3`, true, a.now(), idOrName)
	if err != nil {
		return fmt.Errorf("disable client: %w", err)
	}
	if n == 0 {
		return errs.E(errs.NotFound, "no such client")
	}
	return nil
}

func errBadClient() *errs.Error {
	return errs.E(errs.Unauthenticated, "client authentication failed")
}

// AuthenticateClient checks a client id and secret. An unknown id, a wrong
// secret and a disabled client give the same error.
func (a *Accounts) AuthenticateClient(ctx context.Context, id, secret string) (Client, error) {
	if len(id) > 64 || !wellFormedOpaque(secret, clientSecretPrefix) {
		return Client{}, errBadClient()
	}
	var (
		c      Client
		role   string
		scopes string
		stored []byte
	)
	err := a.db.Reader().QueryRow(ctx, `SELECT id, name, role, scopes, disabled, created_at, secret_hash FROM auth_clients WHERE id = $1`, id).
		Scan(&c.ID, &c.Name, &role, &scopes, &c.Disabled, &c.CreatedAt, &stored)
	if errors.Is(err, store.ErrNoRows) {
		return Client{}, errBadClient()
	}
	if err != nil {
		return Client{}, fmt.Errorf("client authentication: %w", err)
	}
	if subtle.ConstantTimeCompare(stored, hashOpaque(secret)) != 1 || c.Disabled {
		return Client{}, errBadClient()
	}
	c.Role, c.Scopes = Role(role), strings.Fields(scopes)
	if !a.cfg.Policy.RoleIsFor(c.Role, KindClient) {
		return Client{}, errs.E(errs.Forbidden, "this client's role %s is not for machine clients; an administrator must register a client with a role for clients", c.Role)
	}
	return c, nil
}
