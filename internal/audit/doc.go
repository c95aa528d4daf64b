// Package audit is careflow's audit log: an append-only record of every read
// and write of PHI and every denial (who, in which role, did what to which
// record of which patient, for what purpose, with what outcome, from where,
// in which request, when, and how severe it is for review). Entries hold ids
// and codes, never PHI content.
//
// The log is an RFC 6962 Merkle tree (golang.org/x/mod/sumdb/tlog): entry
// n is leaf n, its leaf hash is SHA-256 over the entry's canonical encoding
// (Entry.Canonical), and the tree's head (size and root) is signed with
// Ed25519 as a golang.org/x/mod/sumdb/note every CheckpointEvery entries and
// at least every CheckpointInterval while entries arrive. Each checkpoint is
// stored in the database and written to a directory outside it
// (<dir>/<size>.checkpoint), with the verifier keys in <dir>/verifiers.
//
// Tables (migration 0003_audit): audit_entries (the entries, by seq),
// audit_hashes (tlog's stored hashes, for O(log n) appends), audit_checkpoints
// (signed heads) and audit_head (one row: the tree size and the last
// checkpoint, locked by every append).
//
// Use: main resolves the signing key (ResolveSigner: a key file, or the dev
// key generated into the data directory) and opens one Log per process with
// New(ctx, db, Options{Signer, CheckpointDir, ...}), closing it on shutdown.
// Handlers call Append before they respond (a failed Append fails the
// request); a domain write that must commit with its entry calls AppendTx
// in its transaction, which on SQLite also saves a second fsync. GET
// /api/v1/audit is FilterFromQuery then List; `careflow audit verify` is
// ReadVerifiers, NewVerifiers and Verify.
//
// Invariants:
//   - Sequence numbers are gap-free and in append order: every append locks
//     the audit_head row (FOR UPDATE on PostgreSQL, the single writer on
//     SQLite) and numbers its entries from the size it read, in the same
//     transaction that inserts them and moves the head.
//   - Append returns only after the entry is committed durably; callers
//     audit before they respond, and a failed Append must fail the request.
//     Concurrent Appends share one transaction (group commit).
//   - Entries, stored hashes and checkpoints are never updated or deleted:
//     database triggers reject it on both backends. Someone with enough
//     database privilege can drop the triggers; Verify is what catches what
//     they then change.
//   - Verify trusts only the entry rows and the signatures: it recomputes
//     every leaf from the columns, rebuilds the tree and compares it with
//     every validly signed checkpoint. Stored hashes only help name the
//     entry at fault. An edit, a deletion, a reordering or a truncation of
//     entries covered by a checkpoint is always reported; entries appended
//     after the last checkpoint are protected by the database's own
//     bookkeeping only, which is why checkpoints are also time-based.
//   - The checkpoint directory and its verifiers file are the trust anchor:
//     keep them where the database's administrators cannot rewrite them.
//     The signing key lives outside the repository and the database (in dev
//     mode generated into the data directory, mode 0600).
//   - An entry's Time is the appending node's clock, truncated to the
//     microsecond both databases keep; Seq, not Time, is the log's order.
package audit
