-- internal/phi: the key ring and the state of the background re-encryptor.
--
-- phi_keys holds every data-encryption and blind-index key ever created,
-- wrapped (AES-256-GCM) under a key derived from the master key, which is
-- never stored here. Rows are never deleted: a retired key is kept so that
-- old backups and any straggling row still open.
CREATE TABLE phi_keys (
	id          BIGINT PRIMARY KEY CHECK (id > 0 AND id <= 4294967295),
	purpose     TEXT NOT NULL CHECK (purpose IN ('data', 'blind_index')),
	status      TEXT NOT NULL CHECK (status IN ('primary', 'active', 'retired')),
	wrapped_key BYTEA NOT NULL,
	created_at  TIMESTAMPTZ NOT NULL,
	demoted_at  TIMESTAMPTZ,
	retired_at  TIMESTAMPTZ
);

-- At most one primary key per purpose; also what makes two concurrent
-- rotations conflict instead of leaving two primaries.
CREATE UNIQUE INDEX phi_keys_one_primary ON phi_keys (purpose) WHERE status = 'primary';

-- One row per registered set of encrypted columns: how far the current
-- re-encryption pass towards target_key_id has come, so that a restarted
-- re-encryptor resumes instead of starting over. after_key is the JSON array
-- of the last primary-key values done (record ids, not PHI).
CREATE TABLE phi_reencrypt_cursors (
	name                  TEXT PRIMARY KEY,
	target_key_id         BIGINT NOT NULL,
	after_key             TEXT,
	pass_started_at       TIMESTAMPTZ NOT NULL,
	pass_found            BIGINT NOT NULL,
	clean_pass_started_at TIMESTAMPTZ,
	updated_at            TIMESTAMPTZ NOT NULL
);

-- A lease so that, with many nodes, one re-encryptor works at a time. The
-- compare-and-swap updates keep the data right without it; the lease only
-- avoids duplicated work.
CREATE TABLE phi_reencrypt_lease (
	name       TEXT PRIMARY KEY,
	holder     TEXT NOT NULL,
	expires_at TIMESTAMPTZ NOT NULL
);
