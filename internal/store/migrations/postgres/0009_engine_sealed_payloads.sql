-- internal/engine: workflow payloads are sealed with the PHI key ring
-- (internal/phi: AES-256-GCM, associated data = table, column and row), so
-- the database holds no readable run input, step output, signal payload or
-- task decision. The columns become BYTEA (SQLite keeps their declared TEXT
-- type and stores BLOBs in them, see its migration); what a database from
-- before this migration held is kept, byte for byte (its UTF-8 text), and
-- listed in engine_unsealed_payloads: the engine seals those rows in place
-- when it starts (engine.SealLegacyPayloads) and then removes the table's
-- entry.

ALTER TABLE engine_runs
	ALTER COLUMN input TYPE BYTEA USING convert_to(input, 'UTF8'),
	-- {"outputs": {step: json}, "visits": {step: n}}, sealed whole
	ALTER COLUMN state TYPE BYTEA USING convert_to(state, 'UTF8');
ALTER TABLE engine_step_executions ALTER COLUMN output TYPE BYTEA USING convert_to(output, 'UTF8');
ALTER TABLE engine_signals ALTER COLUMN payload TYPE BYTEA USING convert_to(payload, 'UTF8');
ALTER TABLE engine_tasks
	ALTER COLUMN decision TYPE BYTEA USING convert_to(decision, 'UTF8'),
	ALTER COLUMN result TYPE BYTEA USING convert_to(result, 'UTF8');

-- Tables that may still hold plain payloads from before this migration.
CREATE TABLE engine_unsealed_payloads (
	table_name TEXT PRIMARY KEY
);
INSERT INTO engine_unsealed_payloads (table_name) SELECT 'engine_runs' WHERE EXISTS (SELECT 1 FROM engine_runs);
INSERT INTO engine_unsealed_payloads (table_name) SELECT 'engine_step_executions' WHERE EXISTS (SELECT 1 FROM engine_step_executions WHERE output IS NOT NULL);
INSERT INTO engine_unsealed_payloads (table_name) SELECT 'engine_signals' WHERE EXISTS (SELECT 1 FROM engine_signals);
INSERT INTO engine_unsealed_payloads (table_name) SELECT 'engine_tasks' WHERE EXISTS (SELECT 1 FROM engine_tasks WHERE decision IS NOT NULL OR result IS NOT NULL);
