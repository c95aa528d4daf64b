package store_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/careflow/careflow/internal/store"
	"github.com/careflow/careflow/internal/store/storetest"
)

func TestParseURL(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, raw, dataDir string
		dialect            store.Dialect
		loc                string
		wantErr            bool
	}{
		{"empty uses the data dir", "", "/var/lib/cf", store.SQLite, "/var/lib/cf/careflow.db", false},
		{"empty without data dir fails", "", "", "", "", true},
		{"postgres URL", "postgres://u@h:5432/db", "", store.Postgres, "postgres://u@h:5432/db", false},
		{"postgresql URL", "postgresql://h/db", "", store.Postgres, "postgresql://h/db", false},
		{"postgres URL without host fails", "postgres:///db", "", "", "", true},
		{"sqlite scheme", "sqlite:/tmp/x.db", "", store.SQLite, "/tmp/x.db", false},
		{"sqlite URL", "sqlite:///tmp/x.db", "", store.SQLite, "/tmp/x.db", false},
		{"file scheme", "file:rel.db", "", store.SQLite, "rel.db", false},
		{"file with options fails", "file:x.db?mode=ro", "", "", "", true},
		{"plain path", "./data/c.db", "", store.SQLite, "./data/c.db", false},
		{"unknown scheme fails", "mysql://h/db", "", "", "", true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d, loc, err := store.ParseURL(c.raw, c.dataDir)
			if (err != nil) != c.wantErr {
				t.Fatalf("err = %v, want error %v", err, c.wantErr)
			}
			if d != c.dialect || loc != c.loc {
				t.Fatalf("got (%q, %q), want (%q, %q)", d, loc, c.dialect, c.loc)
			}
		})
	}
}

func TestMigrationsMatchAcrossDialects(t *testing.T) {
	t.Parallel()
	lite, err := store.Migrations(store.SQLite)
	if err != nil {
		t.Fatal(err)
	}
	pg, err := store.Migrations(store.Postgres)
	if err != nil {
		t.Fatal(err)
	}
	if len(lite) == 0 || len(lite) != len(pg) {
		t.Fatalf("sqlite has %d migrations, postgres %d; every migration needs both dialects", len(lite), len(pg))
	}
	for i := range lite {
		if lite[i].Version != pg[i].Version || lite[i].Name != pg[i].Name {
			t.Errorf("migration %d: sqlite %04d_%s, postgres %04d_%s", i, lite[i].Version, lite[i].Name, pg[i].Version, pg[i].Name)
		}
	}
}

func TestMigrateIsIdempotentAndCurrent(t *testing.T) {
	t.Parallel()
	for _, d := range storetest.Backends() {
		t.Run(string(d), func(t *testing.T) {
			ctx := context.Background()
			db := storetest.OpenUnmigrated(t, d)
			st, err := db.Status(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if st.Applied != 0 || st.Current() {
				t.Fatalf("fresh database status = %+v, want nothing applied and not current", st)
			}
			first, err := db.Migrate(ctx)
			if err != nil {
				t.Fatal(err)
			}
			all, _ := store.Migrations(d)
			if len(first) != len(all) {
				t.Fatalf("first migrate applied %v, want all %d", first, len(all))
			}
			second, err := db.Migrate(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if len(second) != 0 {
				t.Fatalf("second migrate applied %v, want none", second)
			}
			st, err = db.Status(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if !st.Current() || st.Applied != all[len(all)-1].Version {
				t.Fatalf("status after migrate = %+v", st)
			}
		})
	}
}

// Two handles (as two nodes would have) migrate one database at the same
// moment: both succeed and every migration is recorded once.
func TestConcurrentMigrateAppliesEachOnce(t *testing.T) {
	t.Parallel()
	for _, d := range storetest.Backends() {
		t.Run(string(d), func(t *testing.T) {
			ctx := context.Background()
			var u string
			if d == store.Postgres {
				u = storetest.NewPostgresDatabase(t)
			} else {
				u = filepath.Join(t.TempDir(), "shared.db")
			}
			const nodes = 4
			dbs := make([]*store.DB, nodes)
			for i := range dbs {
				db, err := store.Open(ctx, store.Config{URL: u})
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { db.Close() })
				dbs[i] = db
			}
			var wg sync.WaitGroup
			applied := make([][]int, nodes)
			errs := make([]error, nodes)
			start := make(chan struct{})
			for i, db := range dbs {
				wg.Add(1)
				go func() {
					defer wg.Done()
					<-start
					applied[i], errs[i] = db.Migrate(ctx)
				}()
			}
			close(start)
			wg.Wait()
			total := 0
			for i := range dbs {
				if errs[i] != nil {
					t.Fatalf("node %d: %v", i, errs[i])
				}
				total += len(applied[i])
			}
			all, _ := store.Migrations(d)
			if total != len(all) {
				t.Fatalf("nodes applied %d migrations in all, want %d (each once): %v", total, len(all), applied)
			}
			var rows, distinct int
			if err := dbs[0].Reader().QueryRow(ctx, `SELECT count(*), count(DISTINCT version) FROM schema_migrations`).Scan(&rows, &distinct); err != nil {
				t.Fatal(err)
			}
			if rows != len(all) || distinct != len(all) {
				t.Fatalf("schema_migrations has %d rows (%d distinct), want %d", rows, distinct, len(all))
			}
		})
	}
}

func TestTransactions(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		if _, err := db.Writer().Exec(ctx, `CREATE TABLE t_tx (id INTEGER PRIMARY KEY, v TEXT NOT NULL)`); err != nil {
			t.Fatal(err)
		}
		count := func() int {
			t.Helper()
			var n int
			if err := db.Reader().QueryRow(ctx, `SELECT count(*) FROM t_tx`).Scan(&n); err != nil {
				t.Fatal(err)
			}
			return n
		}
		// Commit.
		if err := db.Tx(ctx, func(tx store.Tx) error {
			for i := 1; i <= 3; i++ {
				if _, err := tx.Exec(ctx, `INSERT INTO t_tx (id, v) VALUES ($1, $2)`, i, "x"); err != nil {
					return err
				}
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		if n := count(); n != 3 {
			t.Fatalf("after commit: %d rows, want 3", n)
		}
		// An error rolls everything back.
		boom := errors.New("boom")
		err := db.Tx(ctx, func(tx store.Tx) error {
			if _, err := tx.Exec(ctx, `INSERT INTO t_tx (id, v) VALUES (10, 'y')`); err != nil {
				return err
			}
			return boom
		})
		if !errors.Is(err, boom) {
			t.Fatalf("Tx returned %v, want boom", err)
		}
		if n := count(); n != 3 {
			t.Fatalf("after rollback: %d rows, want 3", n)
		}
		// A panic rolls back and propagates.
		func() {
			defer func() {
				if recover() == nil {
					t.Fatal("panic was swallowed")
				}
			}()
			_ = db.Tx(ctx, func(tx store.Tx) error {
				if _, err := tx.Exec(ctx, `INSERT INTO t_tx (id, v) VALUES (11, 'z')`); err != nil {
					return err
				}
				panic("handler bug")
			})
		}()
		if n := count(); n != 3 {
			t.Fatalf("after panic: %d rows, want 3", n)
		}
		// The write connection is usable after the panic.
		if _, err := db.Writer().Exec(ctx, `INSERT INTO t_tx (id, v) VALUES (12, 'w')`); err != nil {
			t.Fatalf("write after panic: %v", err)
		}
		// Unique violations are recognised.
		_, err = db.Writer().Exec(ctx, `INSERT INTO t_tx (id, v) VALUES (1, 'dup')`)
		if !store.IsUniqueViolation(err) {
			t.Fatalf("duplicate key error %v not recognised as unique violation", err)
		}
		// No rows.
		var v string
		err = db.Reader().QueryRow(ctx, `SELECT v FROM t_tx WHERE id = $1`, 999).Scan(&v)
		if !errors.Is(err, store.ErrNoRows) {
			t.Fatalf("missing row: %v, want ErrNoRows", err)
		}
	})
}

func TestTimesRoundTripAndOrder(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		ts := "TEXT"
		if db.Dialect() == store.Postgres {
			ts = "TIMESTAMPTZ"
		}
		if _, err := db.Writer().Exec(ctx, `CREATE TABLE t_time (id INTEGER PRIMARY KEY, at `+ts+` NOT NULL, maybe `+ts+`)`); err != nil {
			t.Fatal(err)
		}
		cairo := time.FixedZone("EET", 2*3600)
		times := []time.Time{
			time.Date(2026, 11, 25, 10, 0, 0, 123456000, cairo),
			time.Date(2026, 11, 25, 9, 0, 0, 0, time.UTC), // later than the first in absolute time
			time.Date(1999, 1, 2, 3, 4, 5, 0, time.UTC),
		}
		for i, at := range times {
			var maybe *time.Time
			if i == 0 {
				maybe = &at
			}
			if _, err := db.Writer().Exec(ctx, `INSERT INTO t_time (id, at, maybe) VALUES ($1, $2, $3)`, i, at, maybe); err != nil {
				t.Fatal(err)
			}
		}
		rows, err := db.Reader().Query(ctx, `SELECT id, at, maybe FROM t_time ORDER BY at`)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		var order []int
		for rows.Next() {
			var id int
			var at time.Time
			var maybe *time.Time
			if err := rows.Scan(&id, &at, &maybe); err != nil {
				t.Fatal(err)
			}
			if !at.Equal(times[id]) {
				t.Errorf("row %d: at = %v, want %v", id, at, times[id])
			}
			if (maybe != nil) != (id == 0) {
				t.Errorf("row %d: maybe = %v", id, maybe)
			}
			if maybe != nil && !maybe.Equal(times[0]) {
				t.Errorf("row %d: maybe = %v, want %v", id, maybe, times[0])
			}
			order = append(order, id)
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		if len(order) != 3 || order[0] != 2 || order[1] != 0 || order[2] != 1 {
			t.Fatalf("ORDER BY at gave %v, want [2 0 1]", order)
		}
	})
}

// On SQLite every write in the process goes through one connection, so many
// goroutines writing at once never see "database is locked".
func TestConcurrentWritersNeverBusy(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		if _, err := db.Writer().Exec(ctx, `CREATE TABLE t_conc (id INTEGER PRIMARY KEY, n INTEGER NOT NULL)`); err != nil {
			t.Fatal(err)
		}
		if _, err := db.Writer().Exec(ctx, `INSERT INTO t_conc (id, n) VALUES (1, 0)`); err != nil {
			t.Fatal(err)
		}
		const workers, each = 8, 25
		var wg sync.WaitGroup
		errc := make(chan error, workers)
		for w := 0; w < workers; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; i < each; i++ {
					err := db.Tx(ctx, func(tx store.Tx) error {
						var n int
						if err := tx.QueryRow(ctx, `SELECT n FROM t_conc WHERE id = 1`+tx.Dialect().ForUpdate()).Scan(&n); err != nil {
							return err
						}
						_, err := tx.Exec(ctx, `UPDATE t_conc SET n = $1 WHERE id = 1`, n+1)
						return err
					})
					if err != nil {
						errc <- err
						return
					}
				}
			}()
		}
		wg.Wait()
		close(errc)
		for err := range errc {
			t.Fatal(err)
		}
		var n int
		if err := db.Reader().QueryRow(ctx, `SELECT n FROM t_conc WHERE id = 1`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n != workers*each {
			t.Fatalf("counter = %d, want %d (a lost update)", n, workers*each)
		}
	})
}

func TestInstanceIDIsStable(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		a, err := db.InstanceID(ctx)
		if err != nil {
			t.Fatal(err)
		}
		b, err := db.InstanceID(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if a == "" || a != b {
			t.Fatalf("instance ids %q and %q, want one stable id", a, b)
		}
	})
}

func TestSQLiteFileIsOwnerOnly(t *testing.T) {
	t.Parallel()
	db := storetest.Open(t, store.SQLite)
	for _, f := range []string{db.SQLitePath(), db.SQLitePath() + "-wal"} {
		info, err := os.Stat(f)
		if err != nil {
			t.Fatal(err)
		}
		if perm := info.Mode().Perm(); perm != 0o600 {
			t.Errorf("%s has mode %v, want 0600", filepath.Base(f), perm)
		}
	}
}
