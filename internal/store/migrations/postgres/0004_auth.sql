-- internal/auth (identity): local accounts, login sessions with rotating
-- refresh tokens, machine clients and login throttling.
--
-- Ids are UUIDv7 text. Times are TIMESTAMPTZ.
-- No column holds a password, a refresh token or a client secret: only their
-- argon2id (passwords) or SHA-256 (random 256-bit tokens and secrets) hashes.
-- Usernames are not PHI but are kept out of logs all the same.

CREATE TABLE auth_users (
	id                  TEXT PRIMARY KEY,
	-- lower-cased; the login name, unique
	username            TEXT NOT NULL UNIQUE,
	-- PHC-format argon2id string; its parameters can be raised over time
	password_hash       TEXT NOT NULL,
	role                TEXT NOT NULL,
	disabled            BOOLEAN NOT NULL DEFAULT FALSE,
	created_at          TIMESTAMPTZ NOT NULL,
	updated_at          TIMESTAMPTZ NOT NULL,
	password_changed_at TIMESTAMPTZ NOT NULL
);

-- A session is one login: the family of refresh tokens that rotate from it.
-- Revoking the session (logout, refresh-token reuse, account disabled)
-- revokes every token of the family at once.
CREATE TABLE auth_sessions (
	id             TEXT PRIMARY KEY,
	user_id        TEXT NOT NULL REFERENCES auth_users (id),
	created_at     TIMESTAMPTZ NOT NULL,
	-- absolute end: rotation never extends a session past it
	expires_at     TIMESTAMPTZ NOT NULL,
	revoked_at     TIMESTAMPTZ,
	-- logout | reuse | disabled
	revoked_reason TEXT
);
CREATE INDEX auth_sessions_user ON auth_sessions (user_id);

-- Each refresh token is used once: rotation sets rotated_at and issues the
-- next one in the same session. Presenting a rotated token again means it
-- was copied, and revokes the session.
CREATE TABLE auth_refresh_tokens (
	id         TEXT PRIMARY KEY,
	session_id TEXT NOT NULL REFERENCES auth_sessions (id),
	token_hash BYTEA NOT NULL UNIQUE,
	created_at TIMESTAMPTZ NOT NULL,
	expires_at TIMESTAMPTZ NOT NULL,
	rotated_at TIMESTAMPTZ
);
CREATE INDEX auth_refresh_tokens_session ON auth_refresh_tokens (session_id);

-- OAuth2 client_credentials clients (integrations). scopes is the
-- space-separated set the client may be granted.
CREATE TABLE auth_clients (
	id          TEXT PRIMARY KEY,
	name        TEXT NOT NULL UNIQUE,
	secret_hash BYTEA NOT NULL,
	role        TEXT NOT NULL,
	scopes      TEXT NOT NULL,
	disabled    BOOLEAN NOT NULL DEFAULT FALSE,
	created_at  TIMESTAMPTZ NOT NULL,
	updated_at  TIMESTAMPTZ NOT NULL
);

-- Failed-login counters and lock-outs. key is "user:" plus the SHA-256 of the
-- lower-cased username (whether or not such a user exists, so that locking
-- does not reveal which accounts exist, and no username is stored here) or
-- "addr:" plus the client address.
CREATE TABLE auth_login_throttle (
	throttle_key      TEXT PRIMARY KEY,
	failures          INTEGER NOT NULL,
	window_started_at TIMESTAMPTZ NOT NULL,
	locked_until      TIMESTAMPTZ,
	-- how many lock-outs in a row; each lasts twice as long as the last
	lockouts          INTEGER NOT NULL DEFAULT 0,
	updated_at        TIMESTAMPTZ NOT NULL
);
