-- internal/record: clinical codes (Condition.code, Observation.code, ...,
-- the parameters marked clinical in internal/record/params.go) are stored
-- in resource_tokens as blind indexes from this version on; see
-- internal/record/blindcodes.go.
--
-- A database from before holds them in plain text. record_reindex lists
-- the re-index passes still to run, each with the (type, id) cursor it has
-- reached: the record runs them at start (record.Service.BlindLegacyCodes)
-- and removes a task's row when its walk is done. The pass recomputes the
-- rows from the sealed resources, so it needs the key ring and is Go, not
-- SQL.
CREATE TABLE record_reindex (
	task       TEXT PRIMARY KEY,
	after_type TEXT NOT NULL DEFAULT '',
	after_id   TEXT NOT NULL DEFAULT ''
);
INSERT INTO record_reindex (task) SELECT 'blind_codes' WHERE EXISTS (SELECT 1 FROM resources);
