// Package rcm is careflow's revenue cycle: the patient journey from
// registration to payment as durable engine definitions
// (rcm.journey.standard, .emergency, .scheduled and rcm.appeal, registered
// by Register), with the payers reached through the Payer port
// (internal/payer/hcx implements it) and their answers received through
// Service.Receive (the Inbox). Service holds the domain operations the API,
// the batches and the worklist call: StartJourney, Journey, Journeys,
// Appeal, Cancel, Worklist.
//
// Invariants:
//   - One transaction per step, and everything of a step in it: the FHIR
//     resources it writes (through Records, as the system acting for the
//     run, bound to the run's patient's record, each write audited in the
//     transaction), the journey's row (rcm_journeys) and its exchanges
//     (rcm_exchanges). A step re-delivered after a crash either finds its
//     commit (and is dropped by the engine) or writes everything again
//     once: never a second Claim.
//   - Registration is the caller's act: the Patient is found or created,
//     the run started and the Journey decision audited in the start's one
//     transaction, under the guard of the person registering. Two starts of
//     the same new patient make one Patient (a lock on the identifier's
//     keyed index; a start that finds it taken retries without waiting on
//     a connection).
//   - An exchange is recorded before it is sent: the step that builds a
//     message records its correlation id and commits; the next step sends
//     it (Do, outside any transaction) with its idempotency key, so a
//     payer's answer never finds an unknown correlation and a re-sent
//     message carries the same api_call_id. Correlation ids are derived
//     from the recording step's idempotency key.
//   - A payer's message reaches its run only as a signal whose id is the
//     message's api_call_id: a duplicate changes nothing, and one that
//     comes early (a payment before the ClaimResponse) waits, stored, for
//     the step that waits for it. A message from anyone but the journey's
//     payer, or for no known journey, is refused and changes nothing.
//   - What careflow keeps of a payer's answer is a strictly valid resource
//     of its own built from what it needs (outcome, preAuthRef, amounts,
//     reason codes); the payer's document is read leniently and never
//     stored as sent by this package.
//   - rcm_journeys and rcm_exchanges hold no PHI: ids, codes, amounts in
//     minor units, times. Errors and task titles name fields, positions
//     and rules, never values: no name, national ID, member id or code of
//     the patient's reaches a log, an error or a work list.
//   - Amounts are integer minor units of the journey's currency, with as
//     many places as the currency has (ISO 4217), from the fee schedule to
//     the API, which shows them as decimal strings; money.go is the one
//     place that parses and formats them, exactly, without floating point.
//   - The payment rule: the payer owes what was billed less the patient's
//     share (the ClaimResponse items' copay and deductible adjudications,
//     kept as patient_share), and never less than it approved. Paid ≥
//     owed is paid; less is partially_paid with variance = owed − paid.
//     A claim paid exactly as approved is therefore paid when only the
//     patient's share was deducted, and short-paid when the payer cut
//     its benefit for a reason of its own (a reduction with a reason
//     code, a line denied, a limit reached).
//
// Beside the journeys it keeps the payers' fee schedules (Fees: versions
// never replaced, prices in exact minor units, the newest effective row
// prices) and batches of journeys (Batches: no entry stored, each entry
// started once by its key batch:<id>:<index>, a stopped batch resumed by
// the same submission). fees.go and batch.go state their invariants.
package rcm
