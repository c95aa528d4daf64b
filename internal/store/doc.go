// Package store is careflow's storage layer: one schema in two SQL dialects,
// SQLite (the embedded default, through modernc.org/sqlite, pure Go) and
// PostgreSQL (through pgx/v5, for many stateless nodes).
//
// SQL is written by hand with $1, $2 parameter markers, which both dialects
// accept; where the dialects differ, callers branch on DB.Dialect in one small
// function. Times are passed and scanned as time.Time on both: SQLite keeps
// them as fixed-width UTC text (so they sort), PostgreSQL as timestamptz.
//
// Invariants:
//   - Every change that touches more than one row goes through DB.Tx, which
//     commits only when its function returns nil.
//   - On SQLite there is exactly one writer connection, so write
//     transactions in one process are serialised by the connection pool
//     instead of failing with SQLITE_BUSY; DB.Tx must therefore never be
//     called from inside another DB.Tx (it would wait for itself).
//   - Reads that do not need to see their own uncommitted writes use
//     DB.Reader, a pool of read-only connections (WAL readers never block the
//     writer).
//   - Migrations are numbered .sql files per dialect, embedded, forward-only,
//     applied under a lock (a PostgreSQL advisory lock; SQLite's write lock)
//     so that nodes starting together apply each exactly once.
//   - Durability: SQLite runs with synchronous=FULL in WAL mode and PostgreSQL
//     with its defaults (fsync, synchronous_commit on): a commit that
//     returned is on disk.
package store
