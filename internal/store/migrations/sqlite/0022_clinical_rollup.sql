-- internal/clinical: the analytics rollup (rollup.go). GET /analytics read
-- every workflow of its range and every step of those (2 s for 30 days of
-- 100,000 workflows); it now reads days. Each workflow contributes one cell
-- (counts, and histograms of durations, waits and due times) filed under
-- its creation day (a Unix day, UTC), type, priority and provider; the
-- transactions that change workflows add their difference before they
-- commit.
--
-- clinical_rollup: one row per day, type, priority and provider, for the
-- callers who reach every patient. cells is a binary cellset (one cell
-- here; rollup_codec.go gives the format). It holds counts, codes and
-- times, never PHI.
CREATE TABLE clinical_rollup (
	day           INTEGER NOT NULL,
	type          TEXT NOT NULL,
	priority_rank INTEGER NOT NULL,
	provider_id   TEXT NOT NULL,
	cells         BLOB NOT NULL,
	PRIMARY KEY (day, type, priority_rank, provider_id)
);

-- clinical_rollup_patients: one row per patient and day, its cells by
-- type, priority and provider, for the callers confined to a care team's
-- patients (and to take excepted patients away from the first table's sum).
CREATE TABLE clinical_rollup_patients (
	patient_id TEXT NOT NULL,
	day        INTEGER NOT NULL,
	cells      BLOB NOT NULL,
	PRIMARY KEY (patient_id, day)
);

-- A row here says the rollup holds every stored workflow. A database with
-- no workflow yet starts built (built_at NULL); one with workflows is
-- converted in place by the first start of careflow serve after this
-- migration (clinical.Service.EnsureRollup), in one transaction, which
-- writes the row. Deleting the row asks for a rebuild.
CREATE TABLE clinical_rollup_state (
	id       INTEGER PRIMARY KEY,
	built_at TEXT
);
INSERT INTO clinical_rollup_state (id, built_at) SELECT 1, NULL WHERE NOT EXISTS (SELECT 1 FROM clinical_workflows);
