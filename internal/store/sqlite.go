package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/url"
	"os"
	"runtime"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// sqliteBusyTimeoutMS is how long a connection waits for another process's
// write lock (a concurrent `careflow migrate`, a backup) before failing.
const sqliteBusyTimeoutMS = 10000

func sqliteDSN(path string, readOnly bool) string {
	q := url.Values{}
	q.Add("_pragma", fmt.Sprintf("busy_timeout(%d)", sqliteBusyTimeoutMS))
	q.Add("_pragma", "foreign_keys(1)")
	// FULL: a commit that returned survives power loss, not only a crash of
	// the process. Claims and audit entries must not vanish.
	q.Add("_pragma", "synchronous(FULL)")
	if readOnly {
		q.Add("_pragma", "query_only(1)")
	} else {
		// BEGIN IMMEDIATE takes the write lock at the start of a transaction,
		// so a transaction that reads then writes cannot fail half-way with
		// SQLITE_BUSY when another process holds the lock.
		q.Set("_txlock", "immediate")
	}
	u := url.URL{Scheme: "file", Opaque: path, RawQuery: q.Encode()}
	return u.String()
}

func openSQLite(ctx context.Context, path string, maxConns int, logger *slog.Logger) (*DB, error) {
	if err := ensureDir(path); err != nil {
		return nil, fmt.Errorf("database: create directory for %s: %w", path, err)
	}
	db := &DB{dialect: SQLite, logger: logger, location: path, sqlitePath: path, watch: &commitWatch{}}
	db.watch.river = func() { db.hub.fire(RiverTopic) }
	writer := sql.OpenDB(newSQLiteConnector(sqliteDSN(path, false), db.watch))
	writer.SetMaxOpenConns(1)
	writer.SetMaxIdleConns(1)
	writer.SetConnMaxLifetime(0)
	writer.SetConnMaxIdleTime(0)
	// WAL lets readers run beside the writer. It is a property of the file,
	// set once through the writer before any reader opens it.
	var mode string
	if err := writer.QueryRowContext(ctx, "PRAGMA journal_mode=WAL").Scan(&mode); err != nil {
		writer.Close()
		return nil, fmt.Errorf("database: open %s: %w", path, err)
	}
	if mode != "wal" {
		writer.Close()
		return nil, fmt.Errorf("database: %s cannot use WAL journal mode (got %q)", path, mode)
	}
	// The file holds PHI (encrypted) and keys' wrappings: owner-only, like
	// the data folder, whatever the process umask says.
	for _, f := range []string{path, path + "-wal", path + "-shm"} {
		if err := os.Chmod(f, 0o600); err != nil && !errors.Is(err, fs.ErrNotExist) {
			writer.Close()
			return nil, fmt.Errorf("database: restrict permissions of %s: %w", f, err)
		}
	}
	readers := sql.OpenDB(newSQLiteConnector(sqliteDSN(path, true), nil))
	if maxConns <= 0 {
		maxConns = max(4, runtime.GOMAXPROCS(0))
	}
	readers.SetMaxOpenConns(maxConns)
	readers.SetMaxIdleConns(maxConns)
	if err := readers.PingContext(ctx); err != nil {
		writer.Close()
		readers.Close()
		return nil, fmt.Errorf("database: open %s: %w", path, err)
	}
	db.writer, db.readers = writer, readers
	return db, nil
}

// sqliteUnique reports whether err is a SQLite uniqueness violation.
func sqliteUnique(err error) bool {
	var se *sqlite.Error
	if !errors.As(err, &se) {
		return false
	}
	switch se.Code() {
	case sqlite3.SQLITE_CONSTRAINT_UNIQUE, sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY:
		return true
	}
	return false
}
