package auth

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/careflow/careflow/internal/errs"
	"github.com/careflow/careflow/internal/store"
)

// Refresh and client-secret tokens are 32 random bytes in unpadded base64url
// behind a prefix that says what they are (so a leaked one is recognisable in
// a secret scanner and cannot be confused with the other kind).
const (
	refreshTokenPrefix = "cfr_"
	clientSecretPrefix = "cfs_"
	tokenRandomBytes   = 32
)

// newOpaqueToken returns prefix + 256 random bits and the SHA-256 of the
// whole string, which is all the database keeps. A fast hash is right here
// (unlike for passwords): the input has 256 bits of entropy, so there is
// nothing to guess, and a lookup by hash needs a deterministic function.
func newOpaqueToken(random io.Reader, prefix string) (string, []byte, error) {
	b := make([]byte, tokenRandomBytes)
	if _, err := io.ReadFull(random, b); err != nil {
		return "", nil, fmt.Errorf("random token: %w", err)
	}
	tok := prefix + base64.RawURLEncoding.EncodeToString(b)
	sum := sha256.Sum256([]byte(tok))
	return tok, sum[:], nil
}

func hashOpaque(tok string) []byte {
	sum := sha256.Sum256([]byte(tok))
	return sum[:]
}

// wellFormedOpaque rejects strings that cannot be one of our tokens before
// any database work.
func wellFormedOpaque(tok, prefix string) bool {
	if !strings.HasPrefix(tok, prefix) || len(tok) != len(prefix)+43 {
		return false
	}
	_, err := base64.RawURLEncoding.DecodeString(tok[len(prefix):])
	return err == nil
}

// Session is a login: who, and the refresh token that continues it.
type Session struct {
	ID           string
	User         User
	RefreshToken string
	// RefreshExpiresAt is when RefreshToken stops working if unused.
	RefreshExpiresAt time.Time
}

// StartSession begins a session for an authenticated user and issues its
// first refresh token.
func (a *Accounts) StartSession(ctx context.Context, user User) (Session, error) {
	now := a.now()
	tok, hash, err := newOpaqueToken(a.cfg.Random, refreshTokenPrefix)
	if err != nil {
		return Session{}, err
	}
	s := Session{ID: newID(), User: user, RefreshToken: tok}
	sessionEnd := now.Add(a.cfg.SessionMaxAge)
	s.RefreshExpiresAt = minTime(now.Add(a.cfg.RefreshTTL), sessionEnd)
	err = a.db.Tx(ctx, func(tx store.Tx) error {
		if _, err := tx.Exec(ctx, `INSERT INTO auth_sessions (id, user_id, created_at, expires_at) VALUES ($1, $2, $3, $4)`,
			s.ID, user.ID, now, sessionEnd); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `INSERT INTO auth_refresh_tokens (id, session_id, token_hash, created_at, expires_at)
			VALUES ($1, $2, $3, $4, $5)`, newID(), s.ID, hash, now, s.RefreshExpiresAt)
		return err
	})
	if err != nil {
		return Session{}, fmt.Errorf("start session: %w", err)
	}
	return s, nil
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

func errBadRefresh() *errs.Error {
	return errs.E(errs.Unauthenticated, "refresh token is invalid, expired or revoked")
}

// Refresh exchanges a refresh token for the next one in its session. Each
// token works once. Presenting a token that was already exchanged means two
// parties hold it (one of them stole it): the whole session is revoked, so
// the thief's copy and the victim's current token both stop working and the
// user must log in again.
func (a *Accounts) Refresh(ctx context.Context, refreshToken string) (Session, error) {
	if !wellFormedOpaque(refreshToken, refreshTokenPrefix) {
		return Session{}, errBadRefresh()
	}
	now := a.now()
	hash := hashOpaque(refreshToken)
	next, nextHash, err := newOpaqueToken(a.cfg.Random, refreshTokenPrefix)
	if err != nil {
		return Session{}, err
	}
	var (
		out    Session
		reused bool
	)
	err = a.db.Tx(ctx, func(tx store.Tx) error {
		reused = false
		var (
			tokenID, sessionID, userID string
			expires, sessionEnd        time.Time
			rotated, revoked           *time.Time
		)
		err := tx.QueryRow(ctx, `SELECT t.id, t.session_id, t.expires_at, t.rotated_at, s.user_id, s.expires_at, s.revoked_at
			FROM auth_refresh_tokens t JOIN auth_sessions s ON s.id = t.session_id
			WHERE t.token_hash = $1`+tx.Dialect().ForUpdate(), hash).
			Scan(&tokenID, &sessionID, &expires, &rotated, &userID, &sessionEnd, &revoked)
		if errors.Is(err, store.ErrNoRows) {
			return errBadRefresh()
		}
		if err != nil {
			return err
		}
		if revoked != nil {
			return errBadRefresh()
		}
		if rotated != nil {
			// Commit the revocation; the caller gets the error after.
			reused = true
			_, err := tx.Exec(ctx, `UPDATE auth_sessions SET revoked_at = $1, revoked_reason = 'reuse'
				WHERE id = $2 AND revoked_at IS NULL`, now, sessionID)
			return err
		}
		if !now.Before(expires) || !now.Before(sessionEnd) {
			return errBadRefresh()
		}
		user, err := scanUser(tx.QueryRow(ctx, `SELECT `+userColumns+` FROM auth_users WHERE id = $1`, userID))
		if err != nil {
			return err
		}
		if user.Disabled {
			return errBadRefresh()
		}
		if err := a.checkAccountRole(user); err != nil {
			return err
		}
		// The compare on rotated_at IS NULL makes two concurrent exchanges
		// of one token on PostgreSQL READ COMMITTED serialise on the row:
		// only one updates it, the other sees zero rows and is a reuse.
		n, err := tx.Exec(ctx, `UPDATE auth_refresh_tokens SET rotated_at = $1 WHERE id = $2 AND rotated_at IS NULL`, now, tokenID)
		if err != nil {
			return err
		}
		if n != 1 {
			reused = true
			_, err := tx.Exec(ctx, `UPDATE auth_sessions SET revoked_at = $1, revoked_reason = 'reuse'
				WHERE id = $2 AND revoked_at IS NULL`, now, sessionID)
			return err
		}
		out = Session{ID: sessionID, User: user, RefreshToken: next, RefreshExpiresAt: minTime(now.Add(a.cfg.RefreshTTL), sessionEnd)}
		_, err = tx.Exec(ctx, `INSERT INTO auth_refresh_tokens (id, session_id, token_hash, created_at, expires_at)
			VALUES ($1, $2, $3, $4, $5)`, newID(), sessionID, nextHash, now, out.RefreshExpiresAt)
		return err
	})
	if err != nil {
		if _, ok := errs.As(err); ok {
			return Session{}, err
		}
		return Session{}, fmt.Errorf("refresh: %w", err)
	}
	if reused {
		return Session{}, errBadRefresh()
	}
	return out, nil
}

// RevokeSession ends a session of userID (logout). Revoking an unknown,
// foreign or already revoked session is not an error: logout is idempotent
// and must not reveal which sessions exist.
func (a *Accounts) RevokeSession(ctx context.Context, userID, sessionID string) error {
	_, err := a.db.Writer().Exec(ctx, `UPDATE auth_sessions SET revoked_at = $1, revoked_reason = 'logout'
		WHERE id = $2 AND user_id = $3 AND revoked_at IS NULL`, a.now(), sessionID, userID)
	if err != nil {
		return fmt.Errorf("logout: %w", err)
	}
	return nil
}

// SessionOfRefreshToken returns the session id a refresh token belongs to,
// if it exists, for logout by refresh token.
func (a *Accounts) SessionOfRefreshToken(ctx context.Context, refreshToken string) (string, bool, error) {
	if !wellFormedOpaque(refreshToken, refreshTokenPrefix) {
		return "", false, nil
	}
	var id string
	err := a.db.Reader().QueryRow(ctx, `SELECT session_id FROM auth_refresh_tokens WHERE token_hash = $1`, hashOpaque(refreshToken)).Scan(&id)
	if errors.Is(err, store.ErrNoRows) {
		return "", false, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("logout: %w", err)
	}
	return id, true, nil
}

// SessionActive reports whether a session exists, belongs to userID, is
// neither revoked nor past its end, and its user is enabled and still has
// role (the role its access tokens name).
func (a *Accounts) SessionActive(ctx context.Context, userID, sessionID string, role Role) (bool, error) {
	var (
		end      time.Time
		revoked  *time.Time
		current  string
		disabled bool
	)
	err := a.db.Reader().QueryRow(ctx, `SELECT s.expires_at, s.revoked_at, u.role, u.disabled
		FROM auth_sessions s JOIN auth_users u ON u.id = s.user_id
		WHERE s.id = $1 AND s.user_id = $2`,
		sessionID, userID).Scan(&end, &revoked, &current, &disabled)
	if errors.Is(err, store.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return revoked == nil && !disabled && Role(current) == role && a.now().Before(end), nil
}
