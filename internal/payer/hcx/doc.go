// Package hcx is careflow as a provider participant of a Health Claims
// Exchange (HCX: India's NHCX, Egypt's HealthFlow): the JWE codec and the
// x-hcx-* protocol headers, the protocol's error body, the participant
// registry, the client that sends a payer.Request through the gateway, the
// handler that receives the gateway's callbacks, and the exchange log that
// keeps every message sent and received.
//
// The codec (codec.go, headers.go, protoerr.go, keys.go, token.go) is shared
// with internal/payer/sim, the payer and gateway simulator, so both ends of
// a test speak exactly the same protocol.
//
// Invariants:
//   - careflow writes RSA-OAEP-256 with A256GCM and reads RSA-OAEP-256 or
//     RSA-OAEP, A256GCM only; every other algorithm (none, dir, other
//     content encryptions) is refused before any key is tried.
//   - The protected header is authenticated by the JWE (it is the AEAD's
//     associated data); the headers are read from it only after the
//     ciphertext decrypted.
//   - A message's api_call_id is derived from the sending step's idempotency
//     key (APICallID), so a retried send presents the same id.
//   - Payloads are PHI: never logged, never in an error (errors name fields
//     and rules), stored only sealed with the phi ring (table hcx_messages,
//     column payload, row = the message's id).
//   - An inbound message is stored and handed to the journeys (Inbox.Receive)
//     in one transaction: a refusal from Receive, or a replayed api_call_id,
//     leaves nothing behind.
//   - Every HTTP call between a participant and the gateway carries a
//     short-lived RS256 bearer token signed by the caller and verified
//     against the caller's registry certificate; a callback without a valid
//     one is refused, never let through. A caller reuses its token for the
//     same audience for half its lifetime (Tokens): the token is not bound to
//     one call, and a signature per message would be an RSA private-key
//     operation spent for nothing.
package hcx
