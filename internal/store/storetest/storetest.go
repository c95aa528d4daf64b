// Package storetest runs storage tests against every backend: a fresh
// SQLite file in a temporary directory always, and a fresh PostgreSQL
// database when CAREFLOW_TEST_POSTGRES holds a URL to a server where the
// user may create databases. Each PostgreSQL database gets a unique name
// and is dropped when the test ends.
package storetest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/careflow/careflow/internal/store"
)

// EnvPostgres names the variable that enables the PostgreSQL half.
const EnvPostgres = "CAREFLOW_TEST_POSTGRES"

// Backends lists the dialects this run tests.
func Backends() []store.Dialect {
	if os.Getenv(EnvPostgres) != "" {
		return []store.Dialect{store.SQLite, store.Postgres}
	}
	return []store.Dialect{store.SQLite}
}

// Each runs fn as a subtest once per backend with a fresh, migrated database.
func Each(t *testing.T, fn func(t *testing.T, db *store.DB)) {
	t.Helper()
	for _, d := range Backends() {
		t.Run(string(d), func(t *testing.T) {
			fn(t, Open(t, d))
		})
	}
}

// Open returns a fresh migrated database of the dialect, closed and removed
// when t ends.
func Open(t testing.TB, d store.Dialect) *store.DB {
	t.Helper()
	db := OpenUnmigrated(t, d)
	if _, err := db.Migrate(context.Background()); err != nil {
		t.Fatalf("migrate %s: %v", d, err)
	}
	return db
}

// OpenMaxConns is Open with a pool of at most maxConns connections (the
// PostgreSQL pool, SQLite's reader pool): a test that must show no
// transaction waits for a second connection runs on a pool it can
// exhaust.
func OpenMaxConns(t testing.TB, d store.Dialect, maxConns int) *store.DB {
	t.Helper()
	db := openUnmigrated(t, d, maxConns)
	if _, err := db.Migrate(context.Background()); err != nil {
		t.Fatalf("migrate %s: %v", d, err)
	}
	return db
}

// OpenUnmigrated is Open without migrations.
func OpenUnmigrated(t testing.TB, d store.Dialect) *store.DB {
	t.Helper()
	return openUnmigrated(t, d, 0)
}

func openUnmigrated(t testing.TB, d store.Dialect, maxConns int) *store.DB {
	t.Helper()
	ctx := context.Background()
	var u string
	if d == store.Postgres {
		u = NewPostgresDatabase(t)
		if maxConns == 0 {
			// Many tests' databases share the test server's 100
			// connections: smaller pools than a server's default.
			maxConns = 8
		}
	} else {
		u = filepath.Join(t.TempDir(), "test.db")
	}
	db, err := store.Open(ctx, store.Config{URL: u, MaxConns: maxConns})
	if err != nil {
		t.Fatalf("open %s: %v", d, err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// NewPostgresDatabase creates a uniquely named database on the server named
// by CAREFLOW_TEST_POSTGRES, drops it when t ends, and returns its URL. It
// skips the test when the variable is unset.
func NewPostgresDatabase(t testing.TB) string {
	t.Helper()
	admin := os.Getenv(EnvPostgres)
	if admin == "" {
		t.Skipf("%s is not set; skipping the PostgreSQL half", EnvPostgres)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, admin)
	if err != nil {
		t.Fatalf("connect to %s server: %v", EnvPostgres, err)
	}
	defer conn.Close(ctx)
	var b [6]byte
	_, _ = rand.Read(b[:])
	name := "careflow_test_" + sanitize(t.Name()) + "_" + hex.EncodeToString(b[:])
	if len(name) > 63 {
		name = "careflow_test_" + hex.EncodeToString(b[:])
	}
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		t.Fatalf("create database: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		c, err := pgx.Connect(ctx, admin)
		if err != nil {
			t.Errorf("drop database %s: %v", name, err)
			return
		}
		defer c.Close(ctx)
		if _, err := c.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
			t.Errorf("drop database %s: %v", name, err)
		}
	})
	u, err := url.Parse(admin)
	if err != nil {
		t.Fatalf("%s is not a URL: %v", EnvPostgres, err)
	}
	u.Path = "/" + name
	return u.String()
}

func sanitize(s string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(s) {
		if (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
		if b.Len() >= 24 {
			break
		}
	}
	return b.String()
}

// MigrateTo applies the embedded migrations up to version last to a
// database from OpenUnmigrated, as a database created by an older careflow
// would have them, so a test can write rows in an old shape and then see
// what the current migrations and start-up passes make of them.
func MigrateTo(t testing.TB, db *store.DB, last int) {
	t.Helper()
	ctx := context.Background()
	ms, err := store.Migrations(db.Dialect())
	if err != nil {
		t.Fatal(err)
	}
	ts := "TEXT"
	if db.Dialect() == store.Postgres {
		ts = "TIMESTAMPTZ"
	}
	err = db.Tx(ctx, func(tx store.Tx) error {
		if _, err := tx.Exec(ctx, `CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at `+ts+` NOT NULL)`); err != nil {
			return err
		}
		for _, m := range ms {
			if m.Version > last {
				break
			}
			if _, err := tx.Exec(ctx, m.SQL); err != nil {
				return fmt.Errorf("%04d: %w", m.Version, err)
			}
			if _, err := tx.Exec(ctx, `INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)`, m.Version, m.Name, time.Now()); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("migrate to %d: %v", last, err)
	}
}

// Dump returns what someone holding a copy of the database sees, for the
// tests that look in it for PHI: on SQLite the file and its WAL, byte for
// byte; on PostgreSQL every row of every table in the schema as text and,
// when pg_dump is installed, its output too. Each test that proves the
// database holds no readable PHI reads the database through this one view.
func Dump(t testing.TB, db *store.DB) []byte {
	t.Helper()
	ctx := context.Background()
	var out bytes.Buffer
	if db.Dialect() == store.SQLite {
		for _, suffix := range []string{"", "-wal"} {
			b, err := os.ReadFile(db.SQLitePath() + suffix)
			if err != nil && suffix == "" {
				t.Fatal(err)
			}
			out.Write(b)
		}
		return out.Bytes()
	}
	rows, err := db.Reader().Query(ctx, `SELECT table_name FROM information_schema.tables
		WHERE table_schema = current_schema() AND table_type = 'BASE TABLE' ORDER BY table_name`)
	if err != nil {
		t.Fatal(err)
	}
	var tables []string
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			t.Fatal(err)
		}
		tables = append(tables, name)
	}
	rows.Close()
	if len(tables) < 10 {
		t.Fatalf("only %d tables in the schema: %v", len(tables), tables)
	}
	for _, table := range tables {
		rows, err := db.Reader().Query(ctx, fmt.Sprintf(`SELECT t::text FROM %q t`, table))
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			var line string
			if err := rows.Scan(&line); err != nil {
				t.Fatal(err)
			}
			out.WriteString(line + "\n")
		}
		rows.Close()
	}
	if path, err := exec.LookPath("pg_dump"); err == nil {
		cc := db.Pool().Config().ConnConfig
		cmd := exec.CommandContext(ctx, path, "--no-owner", "--host", cc.Host, "--port", fmt.Sprint(cc.Port),
			"--username", cc.User, "--dbname", cc.Database)
		cmd.Env = append(os.Environ(), "PGPASSWORD="+cc.Password)
		b, err := cmd.Output()
		if err != nil {
			t.Fatalf("pg_dump: %v", err)
		}
		out.Write(b)
	} else {
		t.Logf("pg_dump is not installed; the dump is every row of every table")
	}
	return out.Bytes()
}
