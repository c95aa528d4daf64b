-- internal/clinical: clinical workflows (an admission, a consultation, a
-- procedure, a discharge...) and their steps, each done by a role.
--
-- A workflow is also a run of the engine (clinical.workflow; the workflow's
-- id is the run's), which keeps its steps' human tasks, due dates and
-- escalation; these rows are the workflow's state as lists, filters and
-- analytics read it. Plain columns hold ids, codes and times only; the
-- workflow's clinical text (chief complaint, notes, working diagnosis) is
-- one sealed JSON value in phi (AES-256-GCM, bound to table, column and
-- row), as the record seals resources.
CREATE TABLE clinical_workflows (
	id            TEXT PRIMARY KEY,
	type          TEXT NOT NULL,
	priority      TEXT NOT NULL,
	-- 0 emergency, 1 urgent, 2 routine: emergency work sorts first.
	priority_rank INTEGER NOT NULL,
	status        TEXT NOT NULL,
	patient_id    TEXT NOT NULL,
	provider_id   TEXT NOT NULL,
	encounter_id  TEXT,
	fhir_task_id  TEXT NOT NULL,
	phi           BYTEA,
	created_by    TEXT NOT NULL,
	created_at    TIMESTAMPTZ NOT NULL,
	updated_at    TIMESTAMPTZ NOT NULL,
	due_at        TIMESTAMPTZ,
	completed_at  TIMESTAMPTZ,
	version       INTEGER NOT NULL
);
-- Lists walk an index in list order (emergency first, newest first), the
-- one of their most selective equality filter, and stop at the page's end.
CREATE INDEX clinical_workflows_list ON clinical_workflows (priority_rank, created_at DESC, id DESC);
CREATE INDEX clinical_workflows_status ON clinical_workflows (status, priority_rank, created_at DESC, id DESC);
CREATE INDEX clinical_workflows_patient ON clinical_workflows (patient_id, priority_rank, created_at DESC, id DESC);
CREATE INDEX clinical_workflows_provider ON clinical_workflows (provider_id, status, priority_rank, created_at DESC, id DESC);
CREATE INDEX clinical_workflows_type ON clinical_workflows (type, status, priority_rank, created_at DESC, id DESC);
CREATE INDEX clinical_workflows_created ON clinical_workflows (created_at);
CREATE INDEX clinical_workflows_due ON clinical_workflows (due_at);
CREATE INDEX clinical_workflows_encounter ON clinical_workflows (encounter_id);

-- A workflow's steps in order (seq). The step's engine task (task_id) is
-- what work lists, due dates and escalation run on; status here moves in
-- the same transaction as the task: pending -> in_progress -> completed |
-- skipped | failed. reason is a code, never free text.
CREATE TABLE clinical_steps (
	id           TEXT PRIMARY KEY,
	workflow_id  TEXT NOT NULL REFERENCES clinical_workflows (id),
	seq          INTEGER NOT NULL,
	code         TEXT NOT NULL,
	role         TEXT NOT NULL,
	status       TEXT NOT NULL,
	task_id      TEXT NOT NULL,
	fhir_task_id TEXT NOT NULL,
	due_at       TIMESTAMPTZ,
	started_at   TIMESTAMPTZ,
	started_by   TEXT,
	finished_at  TIMESTAMPTZ,
	finished_by  TEXT,
	reason       TEXT,
	added_by     TEXT NOT NULL,
	created_at   TIMESTAMPTZ NOT NULL,
	updated_at   TIMESTAMPTZ NOT NULL,
	version      INTEGER NOT NULL,
	UNIQUE (workflow_id, seq)
);
CREATE INDEX clinical_steps_open ON clinical_steps (status, due_at);
CREATE INDEX clinical_steps_finished ON clinical_steps (finished_at);
