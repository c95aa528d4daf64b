package store

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"regexp"
	"sort"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
)

//go:embed migrations/sqlite/*.sql migrations/postgres/*.sql
var migrationFiles embed.FS

// Migration is one numbered schema change.
type Migration struct {
	Version int
	Name    string
	SQL     string
}

var migrationName = regexp.MustCompile(`^(\d{4})_([a-z0-9_]+)\.sql$`)

// migrateLockKey is the PostgreSQL advisory lock that serialises migrations
// across nodes; any constant unlikely to collide with other applications.
const migrateLockKey int64 = 0x63617265666c6f77 // "careflow"

// Migrations returns the embedded migrations of a dialect in order. It fails
// on a misnamed file or a repeated number, which is a build mistake.
func Migrations(d Dialect) ([]Migration, error) {
	dir := path.Join("migrations", string(d))
	entries, err := fs.ReadDir(migrationFiles, dir)
	if err != nil {
		return nil, fmt.Errorf("read migrations: %w", err)
	}
	var out []Migration
	seen := map[int]string{}
	for _, e := range entries {
		m := migrationName.FindStringSubmatch(e.Name())
		if m == nil {
			return nil, fmt.Errorf("migration file %s/%s: name must be NNNN_name.sql", dir, e.Name())
		}
		v, _ := strconv.Atoi(m[1])
		if prev, dup := seen[v]; dup {
			return nil, fmt.Errorf("migration %04d appears twice: %s and %s", v, prev, e.Name())
		}
		seen[v] = e.Name()
		body, err := fs.ReadFile(migrationFiles, path.Join(dir, e.Name()))
		if err != nil {
			return nil, err
		}
		out = append(out, Migration{Version: v, Name: m[2], SQL: string(body)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Version < out[j].Version })
	return out, nil
}

// MigrationStatus is where a database stands against this binary.
type MigrationStatus struct {
	// Applied is the highest version recorded in the database (0 if none).
	Applied int
	// Latest is the highest version this binary knows.
	Latest int
}

// Current reports whether the database has every migration this binary
// knows. A database ahead of the binary (a newer node migrated it) is
// current: migrations are forward-only and additive.
func (s MigrationStatus) Current() bool { return s.Applied >= s.Latest }

const createMigrationsTable = `CREATE TABLE IF NOT EXISTS schema_migrations (
	version    INTEGER PRIMARY KEY,
	name       TEXT NOT NULL,
	applied_at %s NOT NULL
)`

func (db *DB) timestampType() string {
	if db.dialect == Postgres {
		return "TIMESTAMPTZ"
	}
	return "TEXT"
}

// Status reads the applied version without changing anything.
func (db *DB) Status(ctx context.Context) (MigrationStatus, error) {
	ms, err := Migrations(db.dialect)
	if err != nil {
		return MigrationStatus{}, err
	}
	st := MigrationStatus{}
	if len(ms) > 0 {
		st.Latest = ms[len(ms)-1].Version
	}
	var exists bool
	if db.dialect == Postgres {
		err = db.Reader().QueryRow(ctx, `SELECT to_regclass('schema_migrations') IS NOT NULL`).Scan(&exists)
	} else {
		var n int
		err = db.Reader().QueryRow(ctx, `SELECT count(*) FROM sqlite_master WHERE type='table' AND name='schema_migrations'`).Scan(&n)
		exists = n > 0
	}
	if err != nil || !exists {
		return st, err
	}
	err = db.Reader().QueryRow(ctx, `SELECT COALESCE(MAX(version), 0) FROM schema_migrations`).Scan(&st.Applied)
	return st, err
}

// Migrate applies every pending migration, each in its own transaction,
// under a lock shared by every node and process using the database, so that
// concurrent callers all succeed and each migration runs once. It returns
// the versions this call applied.
func (db *DB) Migrate(ctx context.Context) ([]int, error) {
	ms, err := Migrations(db.dialect)
	if err != nil {
		return nil, err
	}
	if db.dialect == Postgres {
		return db.migratePostgres(ctx, ms)
	}
	return db.migrateSQLite(ctx, ms)
}

func (db *DB) migrateSQLite(ctx context.Context, ms []Migration) ([]int, error) {
	var applied []int
	for _, m := range ms {
		// Each transaction begins IMMEDIATE (see sqliteDSN), taking the file's
		// write lock before it reads what is applied: another process
		// migrating the same file waits on busy_timeout, then sees our rows.
		did := false
		err := db.Tx(ctx, func(tx Tx) error {
			if _, err := tx.Exec(ctx, fmt.Sprintf(createMigrationsTable, db.timestampType())); err != nil {
				return err
			}
			var n int
			if err := tx.QueryRow(ctx, `SELECT count(*) FROM schema_migrations WHERE version = $1`, m.Version).Scan(&n); err != nil {
				return err
			}
			if n > 0 {
				return nil
			}
			if _, err := tx.Exec(ctx, m.SQL); err != nil {
				return err
			}
			did = true
			_, err := tx.Exec(ctx, `INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)`,
				m.Version, m.Name, time.Now())
			return err
		})
		if err != nil {
			return applied, fmt.Errorf("migration %04d_%s: %w", m.Version, m.Name, err)
		}
		if did {
			applied = append(applied, m.Version)
			db.logger.Info("migration applied", "version", m.Version, "name", m.Name, "dialect", string(db.dialect))
		}
	}
	return applied, nil
}

func (db *DB) migratePostgres(ctx context.Context, ms []Migration) (applied []int, err error) {
	conn, err := db.pool.Acquire(ctx)
	if err != nil {
		return nil, fmt.Errorf("migrate: acquire connection: %w", err)
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, `SELECT pg_advisory_lock($1)`, migrateLockKey); err != nil {
		return nil, fmt.Errorf("migrate: take advisory lock: %w", err)
	}
	defer func() {
		// Unlock even when ctx is done; the lock would otherwise live as long
		// as the pooled connection.
		if _, uerr := conn.Exec(context.WithoutCancel(ctx), `SELECT pg_advisory_unlock($1)`, migrateLockKey); uerr != nil {
			err = errors.Join(err, fmt.Errorf("migrate: release advisory lock: %w", uerr))
			conn.Conn().Close(context.WithoutCancel(ctx))
		}
	}()
	if _, err := conn.Exec(ctx, fmt.Sprintf(createMigrationsTable, db.timestampType())); err != nil {
		return nil, fmt.Errorf("migrate: create schema_migrations: %w", err)
	}
	done := map[int]bool{}
	rows, err := conn.Query(ctx, `SELECT version FROM schema_migrations`)
	if err != nil {
		return nil, err
	}
	vs, err := pgx.CollectRows(rows, pgx.RowTo[int])
	if err != nil {
		return nil, err
	}
	for _, v := range vs {
		done[v] = true
	}
	for _, m := range ms {
		if done[m.Version] {
			continue
		}
		err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, m.SQL); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, `INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)`,
				m.Version, m.Name, time.Now())
			return err
		})
		if err != nil {
			return applied, fmt.Errorf("migration %04d_%s: %w", m.Version, m.Name, err)
		}
		applied = append(applied, m.Version)
		db.logger.Info("migration applied", "version", m.Version, "name", m.Name, "dialect", string(db.dialect))
	}
	return applied, nil
}
