-- internal/record: a compact layout for the record (issue 13; see
-- internal/record/indexkeys.go and doc.go).
--
-- 1. resources gets an integer key, rid, which the index rows name instead
--    of (type, id): the table is rebuilt with rid as its rowid, assigned in
--    (type, id) order; (type, id) stays unique through resources_by_id. It
--    also gets the method that made the current version.
-- 2. resource_history keeps the replaced versions only: the current
--    version is the resources row (the same bytes under the same
--    associated data), so a resource's JSON is stored once and a create
--    writes no history row. A write copies the current row into the history
--    before it overwrites it; vread and _history read both tables.
-- 3. The five index tables are replaced by WITHOUT ROWID tables keyed by
--    (rid, param, value...), each with one look-up index by (param,
--    value...): param is an integer key of type and parameter
--    (record.paramKey), blind indexes are 16 bytes of BLOB. The rows are
--    not converted here: clearing record_param_sets makes the record's
--    start-up pass (record.Service.ReindexChangedParams, run by serve and
--    import before they take requests) re-index every stored resource from
--    its sealed JSON, which needs the key ring.
CREATE TABLE resources_0024 (
	rid          INTEGER PRIMARY KEY,
	type         TEXT NOT NULL,
	id           TEXT NOT NULL,
	version      INTEGER NOT NULL CHECK (version > 0),
	last_updated TEXT NOT NULL,
	deleted      INTEGER NOT NULL DEFAULT 0,
	method       TEXT NOT NULL CHECK (method IN ('POST', 'PUT', 'DELETE')),
	patient_id   TEXT,
	ciphertext   BLOB
);
INSERT INTO resources_0024 (type, id, version, last_updated, deleted, method, patient_id, ciphertext)
	SELECT r.type, r.id, r.version, r.last_updated, r.deleted, COALESCE(h.method, CASE WHEN r.deleted THEN 'DELETE' ELSE 'PUT' END), r.patient_id, r.ciphertext
	FROM resources r LEFT JOIN resource_history h ON h.type = r.type AND h.id = r.id AND h.version = r.version
	ORDER BY r.type, r.id;
DROP TABLE resources;
ALTER TABLE resources_0024 RENAME TO resources;
CREATE UNIQUE INDEX resources_by_id ON resources (type, id);
CREATE INDEX resources_by_updated ON resources (type, last_updated);
CREATE INDEX resources_by_patient ON resources (patient_id, type) WHERE patient_id IS NOT NULL;

DELETE FROM resource_history
WHERE EXISTS (
	SELECT 1 FROM resources r
	WHERE r.type = resource_history.type AND r.id = resource_history.id AND r.version = resource_history.version);

DROP TABLE resource_tokens;
DROP TABLE resource_strings;
DROP TABLE resource_dates;
DROP TABLE resource_refs;
DROP TABLE resource_numbers;

-- token: code is the plain code (TEXT) or a blind index (BLOB).
CREATE TABLE resource_tokens (
	rid    INTEGER NOT NULL,
	param  INTEGER NOT NULL,
	system TEXT NOT NULL,
	code   BLOB NOT NULL,
	PRIMARY KEY (rid, param, code, system)
) WITHOUT ROWID;
CREATE INDEX resource_tokens_lookup ON resource_tokens (param, code, system);

-- string: value is the normalised text (TEXT, not PHI) or a blind index
-- (BLOB, PHI); raw is the text as sent for :exact, '' for PHI.
CREATE TABLE resource_strings (
	rid   INTEGER NOT NULL,
	param INTEGER NOT NULL,
	value BLOB NOT NULL,
	raw   TEXT NOT NULL,
	PRIMARY KEY (rid, param, value, raw)
) WITHOUT ROWID;
CREATE INDEX resource_strings_lookup ON resource_strings (param, value);

CREATE TABLE resource_dates (
	rid   INTEGER NOT NULL,
	param INTEGER NOT NULL,
	low   TEXT NOT NULL,
	high  TEXT NOT NULL,
	PRIMARY KEY (rid, param, low, high)
) WITHOUT ROWID;
CREATE INDEX resource_dates_lookup ON resource_dates (param, low);

CREATE TABLE resource_refs (
	rid         INTEGER NOT NULL,
	param       INTEGER NOT NULL,
	target_type TEXT NOT NULL,
	target_id   TEXT NOT NULL,
	PRIMARY KEY (rid, param, target_id, target_type)
) WITHOUT ROWID;
CREATE INDEX resource_refs_lookup ON resource_refs (param, target_id, target_type);

CREATE TABLE resource_numbers (
	rid    INTEGER NOT NULL,
	param  INTEGER NOT NULL,
	value  REAL NOT NULL,
	system TEXT NOT NULL,
	code   TEXT NOT NULL,
	PRIMARY KEY (rid, param, value, system, code)
) WITHOUT ROWID;
CREATE INDEX resource_numbers_lookup ON resource_numbers (param, value);

DELETE FROM record_param_sets;
DELETE FROM record_reindex WHERE task = 'params';
