-- One row that names this careflow installation. Nodes read it to know they
-- share one database; its id appears in logs and metrics instead of a path.
CREATE TABLE instance (
	singleton  INTEGER PRIMARY KEY CHECK (singleton = 1),
	id         TEXT NOT NULL,
	created_at TEXT NOT NULL
);
