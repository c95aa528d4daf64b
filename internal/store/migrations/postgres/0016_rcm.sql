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
	billed          BIGINT NOT NULL DEFAULT 0,
	approved        BIGINT,
	paid            BIGINT,
	variance        BIGINT,
	patient_share   BIGINT,
	claim_id        TEXT,
	preauth_id      TEXT,
	appeal_of       TEXT,
	batch_id        TEXT,
	idempotency_key TEXT UNIQUE,
	needs           TEXT,
	refs            TEXT NOT NULL DEFAULT '{}',
	started_at      TIMESTAMPTZ NOT NULL,
	updated_at      TIMESTAMPTZ NOT NULL,
	last_contact_at TIMESTAMPTZ
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
	recorded_at    TIMESTAMPTZ NOT NULL,
	sent_at        TIMESTAMPTZ,
	answered_at    TIMESTAMPTZ
);
CREATE INDEX rcm_exchanges_journey ON rcm_exchanges (journey_id);
