// Package access is the one place where careflow decides, confines, audits
// and redacts an access to patient data, for every kind of caller: a person
// or a machine client over HTTP, the importer, a workflow step acting as the
// system on behalf of a run, the console. A Guard is built for one caller
// (a Caller value, never an *http.Request) and one unit of work (a request,
// an import's request, a step); it implements every guard interface
// internal/record declares (Guard, TxGuard, TypeGuard, ElementGuard,
// Reacher) and offers what the JSON API's handlers need (Authorize, Recheck).
//
// Invariants, which every surface inherits by going through a Guard:
//
//   - Deny by default. A person is decided by the access policy
//     (auth.Authorizer); anything it does not grant is refused. A type the
//     policy serves to no role is refused for every caller, the system
//     included, before anything about the caller is looked at.
//   - Decide before reading. The record asks the Guard before it opens or
//     writes a record; listings are decided once as a search and confined in
//     SQL to the caller's reach (Reach, MatchReach).
//   - Audit before the response leaves, and a write in its own transaction.
//     An allowed write is appended to the audit log inside the write's
//     transaction (AllowTx), so a rolled-back write leaves no entry; reads and
//     denials are kept and appended, in one commit, by Flush, which the
//     surface calls before the first byte of its answer. A failed append is a
//     refusal (fail closed).
//   - A decision inside a transaction reads through it. A decision made
//     while the caller holds a transaction (AllowTx, AuthorizeRecordTx,
//     AllowIn from a record read or search in tx) reads the patient's
//     relationships and consent through that transaction
//     (auth.Authorizer.DecideTx), never through a second pooled
//     connection: a transaction waiting on the pool with a connection in
//     hand exhausts a PostgreSQL pool under concurrent writes.
//   - Redact every record that leaves. Visible and Recheck decide each
//     record again as a read for the purpose already decided and keep only
//     the fields the decision allows; a record the caller may not see is
//     dropped and its denial audited.
//   - The same answer whether or not an id exists. The type question
//     (AllowType) is answered from the role, purpose and token alone, and a
//     record out of the caller's reach is refused with the words a missing
//     id gets.
//
// Only this package calls the policy's decide functions
// (auth.Authorizer.Decide, DecideTx and DecideType); boundary_test.go holds the module
// to that. Audit entries carry ids and codes only, never PHI.
package access
