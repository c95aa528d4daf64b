-- internal/auth (access policy): who may reach which patient, and what each
-- patient consented to.
--
-- A clinician reaches a patient through a care team that holds both, an
-- assignment to the patient's work (made by workflows, with an end), or an
-- active break-the-glass grant. Every column holds ids, codes and times,
-- never PHI: a care team's name is an organisational label ("Cardiology
-- ward 3"), and a break-the-glass reason is a code from the policy, not
-- free text. Times are fixed-width UTC text (see internal/store).

CREATE TABLE care_teams (
	id          TEXT PRIMARY KEY,
	name        TEXT NOT NULL UNIQUE,
	row_version INTEGER NOT NULL DEFAULT 1,
	created_at  TEXT NOT NULL,
	updated_at  TEXT NOT NULL
);

-- member_role is the member's function in the team (attending, nurse, ...),
-- informational: what the member may do comes from their account's role.
CREATE TABLE care_team_members (
	care_team_id TEXT NOT NULL REFERENCES care_teams (id) ON DELETE CASCADE,
	user_id      TEXT NOT NULL,
	member_role  TEXT NOT NULL,
	added_at     TEXT NOT NULL,
	PRIMARY KEY (care_team_id, user_id)
);
CREATE INDEX care_team_members_user ON care_team_members (user_id, care_team_id);

CREATE TABLE care_team_patients (
	care_team_id TEXT NOT NULL REFERENCES care_teams (id) ON DELETE CASCADE,
	patient_id   TEXT NOT NULL,
	added_at     TEXT NOT NULL,
	PRIMARY KEY (care_team_id, patient_id)
);
CREATE INDEX care_team_patients_patient ON care_team_patients (patient_id, care_team_id);

-- A user assigned to a patient's work item until ends_at. Re-assigning
-- extends or shortens the one row.
CREATE TABLE access_assignments (
	user_id    TEXT NOT NULL,
	patient_id TEXT NOT NULL,
	ends_at    TEXT NOT NULL,
	created_at TEXT NOT NULL,
	updated_at TEXT NOT NULL,
	PRIMARY KEY (user_id, patient_id)
);

-- One row per patient and purpose: the decision in force, with its period
-- (NULL ends are open). No row means the policy's default for the purpose.
-- source names what recorded it (a FHIR Consent id later; "api" now).
CREATE TABLE consents (
	patient_id   TEXT NOT NULL,
	purpose      TEXT NOT NULL CHECK (purpose IN ('treatment', 'payment', 'operations', 'research')),
	decision     TEXT NOT NULL CHECK (decision IN ('permit', 'deny')),
	period_start TEXT,
	period_end   TEXT,
	source       TEXT NOT NULL,
	recorded_by  TEXT NOT NULL,
	recorded_at  TEXT NOT NULL,
	PRIMARY KEY (patient_id, purpose)
);

-- The version of a patient's consent set, for optimistic concurrency on
-- PUT /api/v1/patients/{id}/consents.
CREATE TABLE consent_versions (
	patient_id TEXT PRIMARY KEY,
	version    INTEGER NOT NULL,
	updated_at TEXT NOT NULL
);

-- Break-the-glass grants: one clinician, one patient, until expires_at.
-- Rows are kept for review; the audit log holds the tamper-evident record
-- (audit_seq is the high-severity entry written in the same transaction).
CREATE TABLE break_glass_grants (
	id         TEXT PRIMARY KEY,
	user_id    TEXT NOT NULL,
	role       TEXT NOT NULL,
	patient_id TEXT NOT NULL,
	reason     TEXT NOT NULL,
	opened_at  TEXT NOT NULL,
	expires_at TEXT NOT NULL,
	request_id TEXT NOT NULL,
	audit_seq  INTEGER
);
CREATE INDEX break_glass_grants_user_patient ON break_glass_grants (user_id, patient_id, expires_at);
CREATE INDEX break_glass_grants_opened ON break_glass_grants (opened_at, id);
CREATE TRIGGER break_glass_grants_no_delete BEFORE DELETE ON break_glass_grants
BEGIN SELECT RAISE(ABORT, 'break_glass_grants are kept for review'); END;
