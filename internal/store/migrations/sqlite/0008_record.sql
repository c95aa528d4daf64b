-- internal/record: the FHIR record. See internal/record/doc.go.
--
-- resources holds the current version of every resource; resource_history
-- every version (the current one included) for vread and _history. The
-- resource JSON lives only in ciphertext, sealed by internal/phi with the
-- associated data ("resources", "resource", "Type/id/_history/version"), so
-- a version's ciphertext opens only as that version of that resource.
-- patient_id is the patient compartment the resource belongs to (an opaque
-- id, not PHI), kept plain so that the access policy can check a record
-- without decrypting it. Times are fixed-width UTC text.
CREATE TABLE resources (
	type         TEXT NOT NULL,
	id           TEXT NOT NULL,
	version      INTEGER NOT NULL CHECK (version > 0),
	last_updated TEXT NOT NULL,
	deleted      INTEGER NOT NULL DEFAULT 0,
	patient_id   TEXT,
	ciphertext   BLOB,
	PRIMARY KEY (type, id)
);
CREATE INDEX resources_by_updated ON resources (type, last_updated);
CREATE INDEX resources_by_patient ON resources (patient_id, type) WHERE patient_id IS NOT NULL;

CREATE TABLE resource_history (
	type         TEXT NOT NULL,
	id           TEXT NOT NULL,
	version      INTEGER NOT NULL CHECK (version > 0),
	last_updated TEXT NOT NULL,
	deleted      INTEGER NOT NULL DEFAULT 0,
	method       TEXT NOT NULL CHECK (method IN ('POST', 'PUT', 'DELETE')),
	patient_id   TEXT,
	ciphertext   BLOB,
	PRIMARY KEY (type, id, version)
);
CREATE INDEX resource_history_by_updated ON resource_history (type, last_updated);

-- Search indexes: one row per (resource, parameter, value) of the current
-- version; rewritten on every write, removed on delete. Columns that hold
-- PHI hold blind indexes (64 hex digits of HMAC-SHA256), never the value.

-- token: code is the plain code, or the blind index of a PHI value
-- (identifier values of patient records, phone numbers, e-mail, birth date).
CREATE TABLE resource_tokens (
	type   TEXT NOT NULL,
	id     TEXT NOT NULL,
	param  TEXT NOT NULL,
	system TEXT NOT NULL,
	code   TEXT NOT NULL
);
CREATE INDEX resource_tokens_lookup ON resource_tokens (type, param, code, system);
CREATE INDEX resource_tokens_owner ON resource_tokens (type, id);

-- string: value is the normalised text (non-PHI) or a blind index of a
-- normalised prefix or whole value (PHI); raw is the text as sent for
-- :exact on non-PHI strings and NULL for PHI.
CREATE TABLE resource_strings (
	type  TEXT NOT NULL,
	id    TEXT NOT NULL,
	param TEXT NOT NULL,
	value TEXT NOT NULL,
	raw   TEXT
);
CREATE INDEX resource_strings_lookup ON resource_strings (type, param, value);
CREATE INDEX resource_strings_owner ON resource_strings (type, id);

-- date: the instant range [low, high] a date, dateTime, instant or Period
-- covers, both ends inclusive, UTC. Dates of service only; birth dates are
-- PHI and go to resource_tokens as blind indexes.
CREATE TABLE resource_dates (
	type  TEXT NOT NULL,
	id    TEXT NOT NULL,
	param TEXT NOT NULL,
	low   TEXT NOT NULL,
	high  TEXT NOT NULL
);
CREATE INDEX resource_dates_lookup ON resource_dates (type, param, low);
CREATE INDEX resource_dates_owner ON resource_dates (type, id);

-- reference: literal references resolved to target type and id.
CREATE TABLE resource_refs (
	type        TEXT NOT NULL,
	id          TEXT NOT NULL,
	param       TEXT NOT NULL,
	target_type TEXT NOT NULL,
	target_id   TEXT NOT NULL
);
CREATE INDEX resource_refs_lookup ON resource_refs (type, param, target_id, target_type);
CREATE INDEX resource_refs_owner ON resource_refs (type, id);

-- number and quantity: value, with the unit's system and code for a
-- quantity ('' for a plain number).
CREATE TABLE resource_numbers (
	type   TEXT NOT NULL,
	id     TEXT NOT NULL,
	param  TEXT NOT NULL,
	value  REAL NOT NULL,
	system TEXT NOT NULL,
	code   TEXT NOT NULL
);
CREATE INDEX resource_numbers_lookup ON resource_numbers (type, param, value);
CREATE INDEX resource_numbers_owner ON resource_numbers (type, id);
