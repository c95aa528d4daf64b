-- internal/engine: durable workflow runs. River's own tables (river_job, ...)
-- are created by River's migrator, not here.
--
-- Times are timestamptz; JSON is text, as on SQLite, so both dialects scan alike.
-- input/state hold references and decisions, never readable PHI.

CREATE TABLE engine_runs (
	id           TEXT PRIMARY KEY,
	definition   TEXT NOT NULL,
	version      INTEGER NOT NULL,
	-- running | waiting | paused | completed | failed | cancelled
	status       TEXT NOT NULL,
	-- the status to return to on resume (running or waiting)
	paused_from  TEXT,
	input        TEXT NOT NULL,
	-- {"outputs": {step: json}, "visits": {step: n}}
	state        TEXT NOT NULL,
	current_step TEXT,
	visit        INTEGER NOT NULL DEFAULT 0,
	attempt      INTEGER NOT NULL DEFAULT 0,
	-- bumped by pause, resume and cancel: a job carries the epoch it was
	-- enqueued in and acts only if the run is still in it
	epoch        INTEGER NOT NULL DEFAULT 1,
	-- what a waiting run waits for: timer | signal | task
	wait_kind    TEXT,
	wait_signal  TEXT,
	wait_until   TIMESTAMPTZ,
	wait_task_id TEXT,
	patient_id   TEXT,
	start_key    TEXT,
	error        TEXT,
	row_version  INTEGER NOT NULL DEFAULT 1,
	created_at   TIMESTAMPTZ NOT NULL,
	updated_at   TIMESTAMPTZ NOT NULL,
	finished_at  TIMESTAMPTZ
);
CREATE INDEX engine_runs_status ON engine_runs (status, updated_at);
CREATE INDEX engine_runs_definition ON engine_runs (definition, status);
CREATE INDEX engine_runs_patient ON engine_runs (patient_id) WHERE patient_id IS NOT NULL;
CREATE UNIQUE INDEX engine_runs_start_key ON engine_runs (definition, start_key) WHERE start_key IS NOT NULL;

-- One row per finished attempt of a step (succeeded, failed, retried, or a
-- wait that resolved). The unique key is what makes a second commit of the
-- same attempt impossible.
CREATE TABLE engine_step_executions (
	id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	run_id          TEXT NOT NULL REFERENCES engine_runs (id),
	step            TEXT NOT NULL,
	visit           INTEGER NOT NULL,
	attempt         INTEGER NOT NULL,
	-- succeeded | retrying | failed | skipped | waited
	status          TEXT NOT NULL,
	idempotency_key TEXT NOT NULL,
	-- how many times River handed this attempt to a worker (>1 after a crash)
	deliveries      INTEGER NOT NULL,
	node            TEXT NOT NULL,
	started_at      TIMESTAMPTZ NOT NULL,
	finished_at     TIMESTAMPTZ NOT NULL,
	error           TEXT,
	output          TEXT,
	UNIQUE (run_id, step, visit, attempt)
);

CREATE TABLE engine_signals (
	run_id      TEXT NOT NULL REFERENCES engine_runs (id),
	-- the sender's id: a second delivery with the same id is dropped
	id          TEXT NOT NULL,
	name        TEXT NOT NULL,
	payload     TEXT NOT NULL,
	received_at TIMESTAMPTZ NOT NULL,
	consumed_at TIMESTAMPTZ,
	consumed_by TEXT,
	PRIMARY KEY (run_id, id)
);
CREATE INDEX engine_signals_pending ON engine_signals (run_id, name, received_at) WHERE consumed_at IS NULL;

CREATE TABLE engine_tasks (
	id           TEXT PRIMARY KEY,
	run_id       TEXT NOT NULL REFERENCES engine_runs (id),
	step         TEXT NOT NULL,
	visit        INTEGER NOT NULL,
	title        TEXT NOT NULL,
	role         TEXT,
	assignee     TEXT,
	-- open | claimed | completed | cancelled
	status       TEXT NOT NULL,
	decisions    TEXT NOT NULL,
	decision     TEXT,
	result       TEXT,
	completed_by TEXT,
	due_at       TIMESTAMPTZ,
	escalate_at  TIMESTAMPTZ,
	escalate_to  TEXT,
	escalated_at TIMESTAMPTZ,
	row_version  INTEGER NOT NULL DEFAULT 1,
	created_at   TIMESTAMPTZ NOT NULL,
	updated_at   TIMESTAMPTZ NOT NULL,
	completed_at TIMESTAMPTZ
);
CREATE INDEX engine_tasks_open ON engine_tasks (status, role, assignee);
CREATE INDEX engine_tasks_run ON engine_tasks (run_id);

-- The run's history: one row per transition, written in the transaction
-- that made it.
CREATE TABLE engine_transitions (
	id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	run_id      TEXT NOT NULL REFERENCES engine_runs (id),
	event       TEXT NOT NULL,
	from_status TEXT,
	to_status   TEXT NOT NULL,
	step        TEXT,
	attempt     INTEGER,
	detail      TEXT,
	at          TIMESTAMPTZ NOT NULL
);
CREATE INDEX engine_transitions_run ON engine_transitions (run_id, id);

-- Transactional outbox: domain events written with the change they describe,
-- delivered later by internal/events. Payloads carry ids and states, no PHI.
CREATE TABLE outbox_events (
	id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	event_type   TEXT NOT NULL,
	run_id       TEXT,
	payload      TEXT NOT NULL,
	created_at   TIMESTAMPTZ NOT NULL,
	delivered_at TIMESTAMPTZ
);
CREATE INDEX outbox_events_undelivered ON outbox_events (id) WHERE delivered_at IS NULL;

-- Nodes that run the engine, for operators and for the stuck-job rescue.
CREATE TABLE engine_nodes (
	id         TEXT PRIMARY KEY,
	started_at TIMESTAMPTZ NOT NULL,
	seen_at    TIMESTAMPTZ NOT NULL
);
