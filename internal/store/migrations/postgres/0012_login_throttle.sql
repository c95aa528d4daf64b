-- internal/auth (login throttling, see login_throttle.go): the addresses
-- each account recently signed in from. An attempt from one of them is
-- throttled only per (account, address); an attempt from any other address
-- also counts toward the account's unknown-address delay. So a stranger's
-- failures slow strangers, and never lock the account's owner out.
--
-- user_key is the auth_login_throttle "user:" key (SHA-256 of the
-- lower-cased username); addr_hash is the SHA-256 of that and the address
-- (IPv6 by /64). No username and no address is stored in plain.
CREATE TABLE auth_login_known_addrs (
	user_key        TEXT NOT NULL,
	addr_hash       TEXT NOT NULL,
	last_success_at TIMESTAMPTZ NOT NULL,
	PRIMARY KEY (user_key, addr_hash)
);

-- auth_login_throttle now also holds "pair:" keys (account digest, ":",
-- addr_hash) whose lock-outs stop one address guessing one account, and
-- its "user:" rows hold the unknown-address delay in locked_until (the
-- earliest next attempt from an unknown address), never a lock-out.
