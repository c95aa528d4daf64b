// Package events is careflow's transactional outbox and its publisher.
//
// A change that others may react to (a FHIR resource created, updated or
// deleted; a workflow run's transition; a human task opened) is described
// by an Event that Write stores in the transaction of the change itself.
// Invariants:
//
//   - An event exists exactly when its change committed: Write takes the
//     writer's store.Tx, so a rolled-back write leaves no event and a
//     committed one cannot lose it. Nothing is sent from inside a
//     transaction.
//   - Events carry opaque ids and codes only, never PHI: for a record the
//     resource type, id, version and patient id, never its content; for a
//     workflow the run id, definition, step and status, never its input or
//     outputs. The events table is as plain as the index columns beside it.
//   - Each aggregate (one FHIR resource, one workflow run) numbers its
//     events 1, 2, 3... without gaps, in commit order: Write takes the next
//     number by upserting the aggregate's row in event_streams, which holds
//     that row's lock until commit, so a second writer of the same
//     aggregate waits for the first. A later event of an aggregate is
//     therefore never visible before an earlier one.
//   - The Publisher hands each registered Sink every event at least once,
//     an aggregate's events in sequence order; per sink and aggregate it
//     keeps the last sequence delivered (event_sink_positions), moved only
//     after the sink returned. A sink that fails for an aggregate is retried
//     with backoff while the other aggregates keep flowing. A restart resumes
//     from the positions; sinks should ignore an event id seen before.
//   - One publisher delivers at a time across nodes: it publishes only while
//     it holds the lease row in event_leases, renewed every pass and
//     checked again in the transaction that moves the positions. The same
//     code runs on SQLite, where the only contender is the one process.
//     In serve every node runs the publisher's loop (Run): a transaction
//     that writes events wakes every node's loop when it commits
//     (store.Notify: in-process on SQLite, LISTEN/NOTIFY on PostgreSQL),
//     and the lease says which node delivers. A pass that finds nothing to
//     deliver takes no lease and writes nothing, so an idle node reads once
//     per Interval and commits nothing.
//   - Sinks are registered at start (Register) or named by a SinkSource
//     that the lease holder asks at the start of every pass
//     (RegisterSource: the webhooks, read from the database, so a
//     registration on any node takes effect at the next pass). Each sink
//     has its own positions under its name; a NamedSink's After makes the
//     events up to that id count as delivered to it without being handed.
//     Up to Options.Parallel sinks are delivered to at once: their
//     positions are separate rows, so one slow sink holds up only itself.
//   - A DeadLetterSink that keeps refusing an aggregate (DeadLetterAfter
//     failures in a row, or DeadLetterAge since the first) has those
//     events handed to its DeadLetter in the transaction that moves its
//     position past them: the dead letters and the move commit together,
//     and the aggregate's later events flow. Any other sink is only ever
//     backed off.
//   - Delivered events are pruned after a retention: an event goes once
//     every current sink has had it (its position, or its After); with
//     no sink, events are pruned after the retention all the same (a
//     sink registered later starts from what is retained).
package events
