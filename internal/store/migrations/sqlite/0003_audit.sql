-- internal/audit: the append-only audit log, kept as an RFC 6962 Merkle tree.
--
-- audit_entries holds one row per audited event; seq is the entry's 0-based
-- position in the tree. The leaf hash is recomputed from these columns (see
-- audit.Entry's canonical encoding), so no row holds a hash that could be
-- edited along with the content. The columns hold ids and codes only, never
-- PHI content.
CREATE TABLE audit_entries (
	seq           INTEGER PRIMARY KEY CHECK (seq >= 0),
	occurred_at   TEXT NOT NULL,
	actor         TEXT NOT NULL,
	role          TEXT NOT NULL,
	action        TEXT NOT NULL,
	resource_type TEXT NOT NULL,
	resource_id   TEXT NOT NULL,
	patient_id    TEXT NOT NULL,
	purpose       TEXT NOT NULL,
	outcome       TEXT NOT NULL,
	severity      TEXT NOT NULL,
	request_id    TEXT NOT NULL,
	client_addr   TEXT NOT NULL
);

-- The filters GET /api/v1/audit offers, each ending in seq for keyset paging.
CREATE INDEX audit_entries_time ON audit_entries (occurred_at, seq);
CREATE INDEX audit_entries_actor ON audit_entries (actor, seq);
CREATE INDEX audit_entries_patient ON audit_entries (patient_id, seq);
CREATE INDEX audit_entries_resource ON audit_entries (resource_type, resource_id, seq);
CREATE INDEX audit_entries_request ON audit_entries (request_id);
-- Break-the-glass review lists high-severity entries; they are rare.
CREATE INDEX audit_entries_high ON audit_entries (seq) WHERE severity = 'high';

-- The tree's stored hashes (golang.org/x/mod/sumdb/tlog numbering): every
-- complete subtree's hash, so that an append reads O(log n) of them. They
-- make appends fast and let verification name the entry at fault; they are
-- never what verification trusts (that is the signed checkpoints).
CREATE TABLE audit_hashes (
	idx  INTEGER PRIMARY KEY CHECK (idx >= 0),
	hash BLOB NOT NULL
);

-- Signed tree heads: note is the Ed25519-signed golang.org/x/mod/sumdb/note
-- text (tlog.FormatTree plus the time); tree_size and root_hash repeat what it
-- says so that SQL can read them.
CREATE TABLE audit_checkpoints (
	tree_size  INTEGER PRIMARY KEY CHECK (tree_size > 0),
	root_hash  BLOB NOT NULL,
	note       TEXT NOT NULL,
	created_at TEXT NOT NULL
);

-- The head: the one row every append locks (on PostgreSQL FOR UPDATE), which
-- is what makes sequence numbers gap-free and ordered across nodes.
-- checkpoint_at is when the last checkpoint was signed, or when the first
-- entry arrived if none has been: the time-based checkpoint counts from it.
CREATE TABLE audit_head (
	singleton       INTEGER PRIMARY KEY CHECK (singleton = 1),
	tree_size       INTEGER NOT NULL,
	checkpoint_size INTEGER NOT NULL,
	checkpoint_at   TEXT
);
INSERT INTO audit_head (singleton, tree_size, checkpoint_size, checkpoint_at) VALUES (1, 0, 0, NULL);

-- Append-only, enforced by the database and not only by the code: nothing
-- careflow runs may change or remove an entry, a stored hash or a
-- checkpoint. (Someone who can drop these triggers can edit rows; that is
-- what `careflow audit verify` and the checkpoint directory are for.)
CREATE TRIGGER audit_entries_no_update BEFORE UPDATE ON audit_entries
BEGIN SELECT RAISE(ABORT, 'audit_entries is append-only'); END;
CREATE TRIGGER audit_entries_no_delete BEFORE DELETE ON audit_entries
BEGIN SELECT RAISE(ABORT, 'audit_entries is append-only'); END;
CREATE TRIGGER audit_hashes_no_update BEFORE UPDATE ON audit_hashes
BEGIN SELECT RAISE(ABORT, 'audit_hashes is append-only'); END;
CREATE TRIGGER audit_hashes_no_delete BEFORE DELETE ON audit_hashes
BEGIN SELECT RAISE(ABORT, 'audit_hashes is append-only'); END;
CREATE TRIGGER audit_checkpoints_no_update BEFORE UPDATE ON audit_checkpoints
BEGIN SELECT RAISE(ABORT, 'audit_checkpoints is append-only'); END;
CREATE TRIGGER audit_checkpoints_no_delete BEFORE DELETE ON audit_checkpoints
BEGIN SELECT RAISE(ABORT, 'audit_checkpoints is append-only'); END;
-- The head row is updated on every append but must never disappear.
CREATE TRIGGER audit_head_no_delete BEFORE DELETE ON audit_head
BEGIN SELECT RAISE(ABORT, 'audit_head cannot be deleted'); END;
-- The head only moves forward: rolling it back would make the next append
-- overwrite positions (refused by the primary key) or hide a truncation.
CREATE TRIGGER audit_head_only_grows BEFORE UPDATE ON audit_head
WHEN NEW.tree_size < OLD.tree_size OR NEW.checkpoint_size < OLD.checkpoint_size
BEGIN SELECT RAISE(ABORT, 'audit_head only moves forward'); END;
