// Package engine runs careflow's durable workflows: the revenue-cycle
// journeys and the clinical workflows, which take days, wait on payers and
// people, and must survive crashes of any node at any moment.
//
// A Definition is Go code: a name, a version and an ordered list of Steps.
// A step either acts (Do, which may call the outside world) or waits (for a
// timer, a signal, or a human task). Each step has a condition, a retry
// policy and a timeout. A run keeps the definition version it started with;
// new runs take the newest registered version.
//
// A step of a run is delivered as a River job (riverqueue/river, on SQLite
// through riversqlite and on PostgreSQL through riverpgxv5), with two
// shortcuts that keep every invariant below: a worker's transaction also
// runs the steps after its own that need only the database (chain.go), and
// the worker runs the next step with an action itself after its commit,
// that step's job standing by in case it cannot (handoff.go). Invariants:
//
//   - One transaction per step: the step's writes to careflow's database
//     (Step.Apply: FHIR resources through record's *Tx functions, with
//     their index, hook and audit rows), the step's recorded execution, the
//     run's transition (engine_runs, engine_transitions), its event (events.Write)
//     and the River job of the next step commit together; a failed Apply
//     rolls all of it back and its failure is recorded in a transaction of
//     its own (apply.go). Step.Do runs before that transaction, outside any:
//     it is where outside calls go, and Apply never waits on the outside
//     world (SQLite has one writer). On PostgreSQL the finished
//     River job is completed in that same transaction (river.JobCompleteTx);
//     on SQLite River's completer does it right after (see jobs.go for why),
//     and the guard below makes a re-delivery in between harmless.
//   - A job only acts if, under the run's row lock, the run is still at the
//     job's (step, visit, attempt). Anything else is a stale job (a run that
//     was cancelled, a duplicate delivery after a crash) and is dropped, so a
//     step's result commits at most once.
//   - Apply runs only under the run's lock with the run still at the job's
//     step, so its writes commit exactly once: a crash before the commit
//     leaves nothing and the re-delivery applies again; a re-delivery after
//     it is dropped before Apply runs. They need no idempotency key.
//   - Outside effects carry IdempotencyKey: it is derived from the run, the
//     step and the step's visit (the logical attempt: how many times the run
//     entered the step on purpose), so a re-delivery after a crash and a
//     retry after an error both present the same key and the receiver
//     applies the effect once. A run that loops back into a step gets a new
//     visit and therefore a new key.
//   - Waiting is a state, not a goroutine: a waiting run holds what it waits
//     for in its row. A signal is stored (deduplicated by its id) whether or
//     not the run waits yet; a run that reaches the wait consumes it.
//   - Retries are the engine's, not River's: a failed attempt is recorded and
//     the next attempt is a new job scheduled after the backoff, so attempts
//     are counted in our tables and survive restarts.
//   - The database holds no readable payload: run input, step outputs,
//     signal payloads and task decisions and results are sealed with the
//     PHI key ring (phi.Ring, associated data = table, column and row) on
//     the way in and opened on the way out; Register gives the re-encryptor
//     their columns. Status, definition and step names, patient ids, ids
//     and times stay plain, for queries. Rows a database kept from before
//     sealing are sealed in place at Start (SealLegacyPayloads).
//   - A definition's Validate checks a run's input at start, so a run that
//     could never work (or must not: a diagnostics call to a host the
//     operator did not allow) is refused before it exists. Input members a
//     definition declares as RecordInputs must reference existing records
//     of the run's patient (asked of Records, in the start's transaction);
//     any other record, missing or not the caller's to read, is the same
//     422, so a start probes nothing (references.go).
//   - A human task is worked (claimed, completed) only by someone who holds
//     its role at that moment and is its assignee when it has one; an
//     assignment never stands in for the role. Reassignment hands a task
//     only to an enabled account holding its role (asked of Staff), and
//     moves its role only to the definition's escalation role: whoever
//     manages a run cannot make its decisions theirs (task_assign.go).
//   - Listings are confined in their query: a RunFilter or TaskFilter with
//     a Reach (the caller's, from auth.Authorizer.Reach) lists only the
//     runs, and the tasks of runs, whose patient the caller may read; a
//     task's patient is its run's, joined in the same statement. Pages and
//     cursors therefore count nothing out of reach (lists.go).
//
// The package has no HTTP code; internal/httpapi calls the Engine's methods.
package engine
