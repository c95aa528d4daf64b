-- internal/events/webhook: webhooks an admin registers (POST
-- /api/v1/webhooks). Each is a sink of the events publisher of its own,
-- named 'webhook:<id>' in event_sink_positions, picked up from this table by
-- whichever node holds the publisher lease, on its next pass.
--
-- Plain: the URL (configuration, on a host the operator allowed with
-- --webhook-allow), the event types (a JSON array of kinds and 'prefix.*'
-- patterns), the creator's user id and times. The secret that signs the
-- deliveries is sealed with the PHI key ring (associated data = webhooks /
-- secret / id) and never shown after the registration's answer.
--
-- start_after is the highest event id when the webhook was registered: a
-- webhook is sent the events after its registration, not the retained past.
CREATE TABLE webhooks (
	id          TEXT PRIMARY KEY,
	url         TEXT NOT NULL,
	event_types TEXT NOT NULL,
	secret      BLOB NOT NULL,
	start_after INTEGER NOT NULL,
	version     INTEGER NOT NULL,
	created_by  TEXT NOT NULL,
	created_at  TEXT NOT NULL,
	updated_at  TEXT NOT NULL
);

-- Events a webhook refused too often or for too long: moved here in the
-- transaction that moves the webhook's position past them, so delivery of
-- the aggregate goes on. A copy of the event (ids and states, never PHI), how
-- often it failed and the last failure (a status code or a network error,
-- never the URL). A re-drive (POST /api/v1/webhooks/{id}/dead-letters)
-- sends them again and deletes the rows the receiver took.
CREATE TABLE webhook_dead_letters (
	id             INTEGER PRIMARY KEY AUTOINCREMENT,
	webhook_id     TEXT NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
	event_id       INTEGER NOT NULL,
	aggregate_type TEXT NOT NULL,
	aggregate_id   TEXT NOT NULL,
	sequence       INTEGER NOT NULL,
	kind           TEXT NOT NULL,
	payload        TEXT NOT NULL,
	occurred_at    TEXT NOT NULL,
	failures       INTEGER NOT NULL,
	last_error     TEXT NOT NULL,
	dead_at        TEXT NOT NULL,
	UNIQUE (webhook_id, event_id)
);
