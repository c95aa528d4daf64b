package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/jackc/pgx/v5/pgxpool"
)

// Dialect names a SQL backend.
type Dialect string

// The two backends.
const (
	SQLite   Dialect = "sqlite"
	Postgres Dialect = "postgres"
)

// DefaultSQLiteFile is the database file name inside the data directory.
const DefaultSQLiteFile = "careflow.db"

// Config says which database to open.
type Config struct {
	// URL is empty (SQLite file in DataDir), a postgres:// or postgresql://
	// URL, or a SQLite location: sqlite:PATH, file:PATH or a plain path.
	URL string
	// DataDir holds the default SQLite file.
	DataDir string
	// MaxConns bounds the PostgreSQL pool and the SQLite reader pool; zero
	// picks a default from the number of CPUs.
	MaxConns int
	// Logger receives migration progress; nil discards.
	Logger *slog.Logger
}

// DB is an open database of either dialect.
type DB struct {
	dialect Dialect
	logger  *slog.Logger
	// location is a PHI-free description of where the data lives, for logs.
	location string

	// SQLite: one writer connection and a pool of read-only connections.
	writer  *sql.DB
	readers *sql.DB
	// sqlitePath is the database file.
	sqlitePath string

	// watch counts the SQLite writer's commits and sees those that wrote
	// River's tables (sqlite_watch.go).
	watch *commitWatch

	// PostgreSQL.
	pool *pgxpool.Pool

	// Wake-ups (wake.go): the process's subscribers, and on PostgreSQL the
	// connection listening for other nodes' commits.
	hub           wakeHub
	listenOnce    sync.Once
	stopListening context.CancelFunc
	listenDone    chan struct{}
}

// ParseURL resolves a database setting into a dialect and a location: a file
// path for SQLite, the URL for PostgreSQL. It does not touch the disk.
func ParseURL(raw, dataDir string) (Dialect, string, error) {
	switch {
	case raw == "":
		if dataDir == "" {
			return "", "", errors.New("database: no URL and no data directory")
		}
		return SQLite, filepath.Join(dataDir, DefaultSQLiteFile), nil
	case strings.HasPrefix(raw, "postgres://"), strings.HasPrefix(raw, "postgresql://"):
		u, err := url.Parse(raw)
		if err != nil {
			return "", "", fmt.Errorf("database: not a valid PostgreSQL URL: %s", redactURLError(err))
		}
		if u.Host == "" && u.Query().Get("host") == "" {
			return "", "", errors.New("database: PostgreSQL URL has no host")
		}
		return Postgres, raw, nil
	case strings.HasPrefix(raw, "sqlite://"):
		p := strings.TrimPrefix(raw, "sqlite://")
		if p == "" {
			return "", "", errors.New("database: sqlite:// URL has no path")
		}
		return SQLite, p, nil
	case strings.HasPrefix(raw, "sqlite:"), strings.HasPrefix(raw, "file:"):
		p := raw[strings.IndexByte(raw, ':')+1:]
		if i := strings.IndexByte(p, '?'); i >= 0 {
			return "", "", errors.New("database: SQLite location must be a plain path without options")
		}
		if p == "" {
			return "", "", errors.New("database: SQLite location has no path")
		}
		return SQLite, p, nil
	case strings.Contains(raw, "://"):
		scheme := raw[:strings.Index(raw, "://")]
		return "", "", fmt.Errorf("database: unsupported scheme %q (use postgres:// or a SQLite file path)", scheme)
	default:
		return SQLite, raw, nil
	}
}

// redactURLError drops the URL (which may carry a password) from a parse error.
func redactURLError(err error) string {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err.Error()
	}
	return "malformed URL"
}

// Open opens (creating when needed) the database described by cfg. It does
// not migrate; call Migrate.
func Open(ctx context.Context, cfg Config) (*DB, error) {
	dialect, loc, err := ParseURL(cfg.URL, cfg.DataDir)
	if err != nil {
		return nil, err
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	switch dialect {
	case SQLite:
		return openSQLite(ctx, loc, cfg.MaxConns, logger)
	default:
		return openPostgres(ctx, loc, cfg.MaxConns, logger)
	}
}

// Dialect reports the backend.
func (db *DB) Dialect() Dialect { return db.dialect }

// Location is a description of where the data lives that is safe to log
// (the SQLite path, or the PostgreSQL host and database without credentials).
func (db *DB) Location() string { return db.location }

// Ping checks that the database answers.
func (db *DB) Ping(ctx context.Context) error {
	if db.dialect == SQLite {
		if err := db.readers.PingContext(ctx); err != nil {
			return err
		}
		return db.writer.PingContext(ctx)
	}
	return db.pool.Ping(ctx)
}

// Close releases every connection.
func (db *DB) Close() error {
	db.listenOnce.Do(func() {}) // no listener starts after this
	if db.stopListening != nil {
		db.stopListening()
		<-db.listenDone
	}
	if db.dialect == SQLite {
		return errors.Join(db.readers.Close(), db.writer.Close())
	}
	db.pool.Close()
	return nil
}

// SQLiteWriter returns the single SQLite writer connection pool, for the job
// engine, which must share it so that all writes in the process are
// serialised. Nil on PostgreSQL.
func (db *DB) SQLiteWriter() *sql.DB { return db.writer }

// SQLitePath returns the SQLite file, or "" on PostgreSQL.
func (db *DB) SQLitePath() string { return db.sqlitePath }

// Pool returns the PostgreSQL pool, or nil on SQLite.
func (db *DB) Pool() *pgxpool.Pool { return db.pool }

// ensureDir makes the parent directory of a SQLite file, private to the
// owner because it will hold PHI (encrypted) and keys.
func ensureDir(path string) error {
	dir := filepath.Dir(path)
	if dir == "" || dir == "." {
		return nil
	}
	return os.MkdirAll(dir, 0o700)
}

// ForUpdate is the row-locking suffix for a SELECT inside a transaction that
// will update what it read: " FOR UPDATE" on PostgreSQL; empty on SQLite,
// where a write transaction already holds the database's write lock.
func (d Dialect) ForUpdate() string {
	if d == Postgres {
		return " FOR UPDATE"
	}
	return ""
}

// TryLockKeyTx takes, until tx ends, the lock named key, if no other
// transaction holds it: a transaction-scoped advisory lock on PostgreSQL
// (pg_try_advisory_xact_lock); always true on SQLite, whose write
// transaction already holds the database's one write lock. It guards a
// find-or-create that a unique index cannot (a record whose natural key is
// sealed). It never waits: a caller that did not get the lock rolls back
// and tries again, so that no transaction holds a pooled connection while
// it waits on another that may need one from the same pool.
func TryLockKeyTx(ctx context.Context, tx Tx, key int64) (bool, error) {
	if tx.Dialect() != Postgres {
		return true, nil
	}
	var got bool
	err := tx.QueryRow(ctx, `SELECT pg_try_advisory_xact_lock($1)`, key).Scan(&got)
	return got, err
}
