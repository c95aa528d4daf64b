-- internal/rcm: payers' settings and their fee schedules. Nothing here is
-- PHI: codes, prices and descriptions of services, not of patients.
--
-- rcm_payers holds what careflow knows of a payer beyond the participant
-- registry: its currency (EGP unless a load says otherwise) and a display
-- name. code is the payer's HCX participant code.
CREATE TABLE rcm_payers (
	code       TEXT PRIMARY KEY,
	name       TEXT NOT NULL,
	currency   TEXT NOT NULL,
	updated_at TIMESTAMPTZ NOT NULL
);

-- One row per loaded version of a payer's schedule. Versions are kept: seq
-- numbers a payer's loads 1, 2, 3... and the newest load that has a row
-- effective on a date prices a code on that date. content_hash is the
-- SHA-256 of the file, so loading the same file under the same version
-- again changes nothing. effective_from/effective_to summarise the rows
-- (the earliest start, the latest end; NULL: open).
CREATE TABLE rcm_fee_schedules (
	payer          TEXT NOT NULL REFERENCES rcm_payers (code),
	version        TEXT NOT NULL,
	seq            BIGINT NOT NULL,
	content_hash   TEXT NOT NULL,
	items          INTEGER NOT NULL,
	effective_from TEXT NOT NULL,
	effective_to   TEXT,
	loaded_at      TIMESTAMPTZ NOT NULL,
	PRIMARY KEY (payer, version),
	UNIQUE (payer, seq)
);

-- A schedule's rows. Dates are YYYY-MM-DD text on both dialects, compared
-- as text (which orders them as dates); effective_to is inclusive, NULL
-- open. amount is in the currency's minor units (piastres for EGP, fils
-- for KWD), never a float. system is the code system's URI.
CREATE TABLE rcm_fee_items (
	payer          TEXT NOT NULL,
	version        TEXT NOT NULL,
	line           INTEGER NOT NULL,
	system         TEXT NOT NULL,
	code           TEXT NOT NULL,
	description    TEXT NOT NULL,
	amount         BIGINT NOT NULL,
	currency       TEXT NOT NULL,
	preauth        BOOLEAN NOT NULL,
	effective_from TEXT NOT NULL,
	effective_to   TEXT,
	PRIMARY KEY (payer, version, line),
	FOREIGN KEY (payer, version) REFERENCES rcm_fee_schedules (payer, version)
);
CREATE INDEX rcm_fee_items_code ON rcm_fee_items (payer, system, code);
