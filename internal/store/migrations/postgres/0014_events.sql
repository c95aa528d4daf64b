-- internal/events: the transactional outbox. An event is written in the
-- transaction of the change it describes (a record write, a workflow
-- transition), so it exists exactly when the change committed. It carries
-- opaque ids and codes only, never PHI.
--
-- sequence numbers the events of one aggregate (a FHIR resource, a
-- workflow run) 1, 2, 3... without gaps: event_streams holds the last
-- number given, and the writer's upsert of that row locks it until commit,
-- so a second writer of the same aggregate waits and takes the next
-- number, and an aggregate's events become visible in sequence order.
CREATE TABLE events (
	id             BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	aggregate_type TEXT NOT NULL,
	aggregate_id   TEXT NOT NULL,
	sequence       BIGINT NOT NULL,
	kind           TEXT NOT NULL,
	payload        TEXT NOT NULL,
	occurred_at    TIMESTAMPTZ NOT NULL,
	UNIQUE (aggregate_type, aggregate_id, sequence)
);
CREATE INDEX events_occurred ON events (occurred_at);

CREATE TABLE event_streams (
	aggregate_type TEXT NOT NULL,
	aggregate_id   TEXT NOT NULL,
	last_sequence  BIGINT NOT NULL,
	PRIMARY KEY (aggregate_type, aggregate_id)
);

-- What each sink has been handed: per sink and aggregate, the last
-- sequence delivered. The publisher hands a sink an aggregate's events
-- after this one, in order, and moves it on delivery.
CREATE TABLE event_sink_positions (
	sink           TEXT NOT NULL,
	aggregate_type TEXT NOT NULL,
	aggregate_id   TEXT NOT NULL,
	sequence       BIGINT NOT NULL,
	PRIMARY KEY (sink, aggregate_type, aggregate_id)
);

-- The publisher's lease: one holder at a time across nodes, renewed while
-- it publishes, taken over by another node when it expires.
CREATE TABLE event_leases (
	name       TEXT PRIMARY KEY,
	holder     TEXT NOT NULL,
	expires_at TIMESTAMPTZ NOT NULL
);

-- The engine's private outbox (0005) becomes the first events of its runs:
-- nothing ever delivered them.
INSERT INTO events (aggregate_type, aggregate_id, sequence, kind, payload, occurred_at)
	SELECT 'WorkflowRun', COALESCE(run_id, ''),
		ROW_NUMBER() OVER (PARTITION BY COALESCE(run_id, '') ORDER BY id),
		event_type, payload, created_at
	FROM outbox_events ORDER BY id;
INSERT INTO event_streams (aggregate_type, aggregate_id, last_sequence)
	SELECT aggregate_type, aggregate_id, MAX(sequence) FROM events GROUP BY aggregate_type, aggregate_id;
DROP TABLE outbox_events;
