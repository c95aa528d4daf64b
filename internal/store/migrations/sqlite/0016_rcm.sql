-- internal/rcm: the revenue-cycle journeys as queries see them. A journey is
-- a workflow run (id = the run's id); these rows are its state in plain,
-- non-PHI columns (ids, codes, amounts, times), written in the same
-- transactions as the run's steps, so a list by status, outcome, payer or
-- age is one indexed query. Demographics, codes and the FHIR documents live
-- sealed in the record and in the run's input and outputs, never here.
CREATE TABLE rcm_journeys (
	id              TEXT PRIMARY KEY,
	kind            TEXT NOT NULL,
	patient_id      TEXT NOT NULL,
	payer           TEXT NOT NULL,
	status          TEXT NOT NULL,
	outcome         TEXT,
	reason          TEXT,
	currency        TEXT NOT NULL,
	billed          INTEGER NOT NULL DEFAULT 0,
	approved        INTEGER,
	paid            INTEGER,
	variance        INTEGER,
	patient_share   INTEGER,
	claim_id        TEXT,
	preauth_id      TEXT,
	appeal_of       TEXT,
	batch_id        TEXT,
	idempotency_key TEXT UNIQUE,
	needs           TEXT,
	refs            TEXT NOT NULL DEFAULT '{}',
	started_at      TEXT NOT NULL,
	updated_at      TEXT NOT NULL,
	last_contact_at TEXT
);
CREATE INDEX rcm_journeys_status ON rcm_journeys (status, updated_at);
CREATE INDEX rcm_journeys_patient ON rcm_journeys (patient_id);
CREATE INDEX rcm_journeys_payer ON rcm_journeys (payer);
CREATE INDEX rcm_journeys_claim ON rcm_journeys (claim_id);
CREATE INDEX rcm_journeys_batch ON rcm_journeys (batch_id);

-- One exchange with a payer: a request careflow sends and every answer to
-- it share correlation_id. The row is written (state 'recorded') in a
-- step that commits before the step that sends, so an answer never finds
-- an unknown correlation.
CREATE TABLE rcm_exchanges (
	correlation_id TEXT PRIMARY KEY,
	journey_id     TEXT NOT NULL REFERENCES rcm_journeys (id),
	action         TEXT NOT NULL,
	payer          TEXT NOT NULL,
	claim_id       TEXT,
	state          TEXT NOT NULL,
	warnings       TEXT,
	recorded_at    TEXT NOT NULL,
	sent_at        TEXT,
	answered_at    TEXT
);
CREATE INDEX rcm_exchanges_journey ON rcm_exchanges (journey_id);
