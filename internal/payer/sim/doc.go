// Package sim is an HCX gateway with simulated payers behind it, for
// development and tests: `careflow payer-sim` runs it, and careflow's
// end-to-end tests start it in-process on an httptest server. It speaks
// the protocol careflow's provider side (internal/payer/hcx) speaks, with
// the same codec: compact JWE, x-hcx-* headers, RS256 bearer tokens,
// ProtocolResponse errors, on_* callbacks.
//
// The surfaces, a file each: rules.go (the YAML rules: plans, co-pay,
// co-insurance, limits, pre-authorization lists, denials, partial
// payments, requests for information, faults), adjudicate.go (the payer's
// decision), answers.go (the FHIR R4 resources it answers with),
// gateway.go (the HTTP surface: checks, faults, acceptance),
// exchanges.go (what each action does), callbacks.go (the deliverer),
// registry.go (the participant registry), ledger.go (what was received and
// decided, and GET /sim/ledger), faults.go (seeded randomness).
//
// Invariants:
//   - A message is recorded (sim_messages, keyed by api_call_id) and
//     processed in one transaction, with the callbacks it causes; a refused
//     message leaves nothing. An identical re-send of an accepted
//     api_call_id (same sender, recipient, action, correlation, workflow,
//     status) is answered 202 and counted, never processed again; the same
//     api_call_id with other headers is ERR_INVALID_API_CALL_ID.
//   - The error and timeout faults strike before anything is recorded, so
//     the sender's retry (same api_call_id) is processed as the first try.
//   - Callbacks are stored encrypted for their recipient before they are
//     sent and delivered in storage order per correlation_id (an
//     undelivered one holds back the later ones), retried with backoff,
//     and survive a restart. Only registered providers' endpoint hosts are
//     called (internal/outbound's allow-list, rebuilt at each registration).
//   - A CommunicationRequest and a payment notice carry the claim exchange's
//     correlation_id and workflow_id; the payer decides a claim that asked
//     for information when a communication/on_request arrives on that
//     correlation.
//   - No readable PHI at rest: the claims' bundles are sealed with the phi
//     ring (sim_claims.request and .answer, row = the claim row's id), the
//     member id is a blind index, callbacks are JWE; ids, codes, amounts
//     and states are plain. Logs carry ids and codes, never payloads.
//   - Every random choice comes from one generator seeded by the rules.
package sim
