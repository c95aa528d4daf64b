// Package phi keeps protected health information unreadable at rest and
// still searchable by exact value.
//
// # Envelope encryption
//
// A 32-byte master key (ResolveMasterKey: --master-key-file, else
// CAREFLOW_MASTER_KEY, else a development key generated in the data
// directory) never touches PHI. It wraps data-encryption keys (DEKs), which
// live wrapped in the phi_keys table, each with an id, a purpose (data or
// blind_index) and a status (primary, active, retired). A Ring holds them
// unwrapped in memory.
//
// Ring.Seal encrypts a field with AES-256-GCM under the primary data key.
// The ciphertext is: format byte, key id (4 bytes), 12-byte random nonce,
// GCM output. The associated data is the header plus a canonical,
// length-prefixed encoding of AAD{Table, Field, Record}, so a ciphertext
// copied to another row, column or table, or with its key id edited, fails
// to open. KeyIDOf reads the key id without any key.
//
// We use the standard library (crypto/aes, crypto/cipher, crypto/hmac,
// crypto/hkdf) rather than Tink: the whole scheme is one AEAD, one MAC and
// one KDF; the key table has to live in careflow's own database on two
// dialects, in a form the re-encryptor and `careflow keys` can reason
// about; and the standard library's implementations are the ones Go
// maintains and audits. Tink's keyset format would add a dependency and a
// second key table format without removing any of our code.
//
// # Blind indexes
//
// Ring.BlindIndex is HMAC-SHA256, under its own key (purpose blind_index),
// over a domain name and the Normalize form of the value, so exact-match
// search runs on indexes the database cannot read, and equal values in
// different domains do not link. Names are also indexed by NamePrefixes (the
// normalised prefixes of each part from 3 to 20 letters), so a query such as
// "moh" finds Mohamed through NameQueryIndexes without any readable name in
// the index. Normalisation rules (NFKD, marks and Arabic letter variants,
// digits, case folding, spaces, punctuation) are documented in normalize.go;
// changing them requires rebuilding every index. Ring.CodeIndex is the same
// MAC over a clinical code exactly as given: codes are case-sensitive
// tokens, not text, and are not normalised.
//
// The blind-index key is created once and is not rotated by Ring.Rotate:
// rotating it means recomputing every index from the plaintext, a reindex
// the packages that own the index tables must drive.
//
// # Rotation and its invariants
//
//   - Exactly one data key is primary (a partial unique index enforces it);
//     only the primary seals. Ring.Rotate demotes it to active and inserts a
//     new primary in one transaction.
//   - Key ids only grow and key rows are never deleted. A ring that meets a
//     ciphertext with an id above its largest reloads once (another node
//     rotated); an id at or below it that it does not hold does not exist.
//   - Every node reloads its ring at least every refresh interval
//     (Ring.RefreshEvery), so within that interval of a rotation every node
//     seals with the new key.
//   - A Reencryptor walks every column in the Registry in primary-key order,
//     in batches, re-sealing rows that are not on the primary key with a
//     compare-and-swap UPDATE (WHERE key = ... AND column = old ciphertext):
//     a concurrent writer's newer value always wins and nothing is lost. The
//     batch's updates and its cursor commit in one transaction, so a
//     restarted re-encryptor resumes where the last commit left off.
//   - A key is retired only after, for every registered column, a complete
//     pass that began at least RetireGrace after the key stopped being
//     primary found no row on a key older than the primary it worked
//     towards. RetireGrace must exceed the refresh interval plus the longest
//     write request plus the clock skew between nodes: after it no node can
//     still seal with the old key or commit a value it sealed with it, so no
//     row can appear on it behind the pass.
//   - A retired key's material stays in phi_keys and in every ring, and
//     still opens. This package never destroys key material: a backup taken
//     before the rotation, or a column someone forgot to register, stays
//     readable. Destroying a retired key (crypto-shredding) is a separate,
//     deliberate operator act.
//   - With several nodes, one re-encryptor works at a time under a lease in
//     phi_reencrypt_lease, renewed inside every batch transaction; a worker
//     that lost its lease cannot commit.
//
// # Keeping PHI out of logs
//
// Text holds a PHI value in memory; its String, GoString, Format, LogValue
// and JSON/text marshalling all redact, and Reveal is the one way out.
// MasterKey redacts the same way. Errors from this package name tables,
// columns, key ids and record ids, never values.
package phi
