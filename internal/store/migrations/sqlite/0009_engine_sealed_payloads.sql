-- internal/engine: workflow payloads are sealed with the PHI key ring
-- (internal/phi: AES-256-GCM, associated data = table, column and row), so
-- the database holds no readable run input, step output, signal payload or
-- task decision: engine_runs.input and .state, engine_step_executions.output,
-- engine_signals.payload, engine_tasks.decision and .result now hold
-- ciphertexts, written as BLOBs.
--
-- On SQLite the columns keep their declared type: a TEXT column stores a
-- BLOB value as it is (type affinity never converts a BLOB), and changing a
-- declared type means rebuilding the tables, which the foreign keys into
-- engine_runs make a long detour for no gain. (PostgreSQL's migration turns
-- them into BYTEA.)
--
-- What a database from before this migration holds stays as it was, plain
-- TEXT, and the tables that hold any are listed here: the engine seals those
-- rows in place when it starts (engine.SealLegacyPayloads) and removes the
-- table's entry.
CREATE TABLE engine_unsealed_payloads (
	table_name TEXT PRIMARY KEY
);
INSERT INTO engine_unsealed_payloads (table_name) SELECT 'engine_runs' WHERE EXISTS (SELECT 1 FROM engine_runs);
INSERT INTO engine_unsealed_payloads (table_name) SELECT 'engine_step_executions' WHERE EXISTS (SELECT 1 FROM engine_step_executions WHERE output IS NOT NULL);
INSERT INTO engine_unsealed_payloads (table_name) SELECT 'engine_signals' WHERE EXISTS (SELECT 1 FROM engine_signals);
INSERT INTO engine_unsealed_payloads (table_name) SELECT 'engine_tasks' WHERE EXISTS (SELECT 1 FROM engine_tasks WHERE decision IS NOT NULL OR result IS NOT NULL);
