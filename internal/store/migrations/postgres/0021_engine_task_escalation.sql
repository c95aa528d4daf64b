-- internal/engine: the housekeeping of every node asks, every few seconds,
-- for the unfinished tasks whose escalation time has passed
-- (EscalateDueTasks). Without an index on that time the question read every
-- open task each time; with each clinical workflow's steps as tasks there
-- are hundreds of thousands, and the scan slowed every write beside it. The
-- index leaves out escalated tasks and leads with status, so both planners
-- seek it with the question's own terms and read only the open or claimed
-- tasks whose time has come.
CREATE INDEX engine_tasks_escalate ON engine_tasks (status, escalate_at) WHERE escalated_at IS NULL;
