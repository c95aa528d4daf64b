// Package webhook delivers careflow's domain events (internal/events) to
// HTTP receivers an admin registers: each registered webhook is a sink of
// the events publisher of its own.
//
// Invariants:
//
//   - A webhook is a row of the webhooks table; Source lists the rows on
//     every publisher pass, so a registration, change or deletion made on
//     any node takes effect at the lease holder's next pass. Each webhook
//     is the sink "webhook:<id>" with its own positions: at least once, in
//     order per aggregate, a failing receiver backing off only its own
//     aggregates (internal/events).
//   - A webhook is sent the events after its registration (events.NamedSink's
//     After: the highest event id when it was registered), never the
//     retained past. An event whose kind it does not subscribe to counts as
//     delivered to it.
//   - Bodies carry the events as stored: ids, kinds, sequences and the
//     payload of opaque ids and states, never PHI. Each delivery is signed:
//     Careflow-Signature is v1=hex(HMAC-SHA256(secret, timestamp "." body))
//     with the Careflow-Timestamp it names (Sign, Verify), so a receiver
//     checks where it came from and refuses a replay older than its
//     tolerance.
//   - The secret is sealed with the PHI key ring (associated data =
//     webhooks / secret / id), shown once in the registration's answer and
//     never again; a change of secret is an update.
//   - Calls go out through internal/outbound's client only: the hosts the
//     operator allowed (--webhook-allow), no redirects, timeouts, a bounded
//     answer; https, except to a loopback or private address, which may be
//     plain http. A URL outside that is refused at registration.
//   - Events a receiver keeps refusing are dead-lettered by the publisher
//     (events.DeadLetterSink) in the transaction that moves the webhook's
//     position past them, so the rest flows; a re-drive sends the dead
//     letters again, in event order, and deletes those the receiver took.
package webhook
