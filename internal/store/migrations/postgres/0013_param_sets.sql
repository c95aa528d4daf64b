-- internal/record: the search parameters are generated from R4's
-- definitions (internal/record/params_r4.go), so a new version may index
-- a type differently. record_param_sets holds, per resource type, the
-- fingerprint of the parameters its index rows were written with
-- (record.ParamFingerprint); at start the record re-indexes the types
-- whose fingerprint differs (record.Service.ReindexChangedParams), with
-- its cursor in record_reindex. A database from before has no row, so
-- every stored type is re-indexed once.
CREATE TABLE record_param_sets (
	type        TEXT PRIMARY KEY,
	fingerprint TEXT NOT NULL
);
