-- internal/rcm: batches of journeys (POST /api/v1/rcm/batches). A batch
-- holds no PHI: the entries themselves (patients, codes) are never stored
-- here, only each entry's outcome: the journey it started, or why it was
-- refused, as the field and the rule (never the value).
--
-- idempotency_key is the client's Idempotency-Key (else the batch's own
-- id), unique per creator, so a retried POST finds its batch; source_hash is the SHA-256 of the
-- entries as received, so the same key with other content is refused.
-- total is the number of entries; an entry row exists once the entry has
-- been started or refused, so fewer rows than total means the POST that
-- carried them stopped part-way (its retry with the same key resumes).
CREATE TABLE rcm_batches (
	id              TEXT PRIMARY KEY,
	created_by      TEXT NOT NULL,
	created_at      TEXT NOT NULL,
	total           INTEGER NOT NULL,
	source_hash     TEXT NOT NULL,
	idempotency_key TEXT NOT NULL,
	UNIQUE (created_by, idempotency_key)
);
CREATE INDEX rcm_batches_created ON rcm_batches (created_at);

CREATE TABLE rcm_batch_entries (
	batch_id      TEXT NOT NULL REFERENCES rcm_batches (id),
	idx           INTEGER NOT NULL,
	journey_id    TEXT,
	refused_field TEXT,
	refused_rule  TEXT,
	PRIMARY KEY (batch_id, idx),
	CHECK ((journey_id IS NULL) <> (refused_rule IS NULL))
);
CREATE INDEX rcm_batch_entries_journey ON rcm_batch_entries (journey_id);
