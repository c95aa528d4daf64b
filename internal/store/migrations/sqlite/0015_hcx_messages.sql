-- internal/payer/hcx: the exchange log. Every HCX message careflow sends
-- (direction 'out', written before the POST) or receives (direction 'in',
-- written in the transaction that hands it to the journeys) is one row.
--
-- Plain: identifiers and codes only (action, the x-hcx-* ids, participant
-- codes, status, times, the header's non-PHI fields as JSON, the reading's
-- warnings, which name paths and rules, and a refusal's error code). The
-- decrypted payload (a FHIR Bundle: PHI) and x-hcx-error_details (free
-- text from the other side) are sealed with the PHI key ring (associated
-- data = hcx_messages / column / id).
--
-- (direction, sender, api_call_id) is unique: a replayed inbound message is
-- refused, and a retried send finds the row of its first attempt.
CREATE TABLE hcx_messages (
	id                TEXT PRIMARY KEY,
	direction         TEXT NOT NULL CHECK (direction IN ('in', 'out')),
	action            TEXT NOT NULL,
	api_call_id       TEXT NOT NULL,
	correlation_id    TEXT NOT NULL,
	workflow_id       TEXT NOT NULL DEFAULT '',
	sender            TEXT NOT NULL,
	recipient         TEXT NOT NULL,
	status            TEXT NOT NULL DEFAULT '',
	message_timestamp TEXT NOT NULL,
	stored_at         TEXT NOT NULL,
	header            TEXT NOT NULL,
	warnings          TEXT NOT NULL DEFAULT '[]',
	error_code        TEXT NOT NULL DEFAULT '',
	payload           BLOB,
	error_details     BLOB,
	UNIQUE (direction, sender, api_call_id)
);
CREATE INDEX hcx_messages_workflow ON hcx_messages (workflow_id, stored_at) WHERE workflow_id <> '';
CREATE INDEX hcx_messages_correlation ON hcx_messages (correlation_id, stored_at);
