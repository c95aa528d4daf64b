package store_test

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/careflow/careflow/internal/store"
	"github.com/careflow/careflow/internal/store/storetest"
)

// The statements a SQLite connection keeps run again with new arguments;
// the same text run inside a loop over its own rows gets a statement of its
// own; more texts than a connection keeps push the oldest out; a changed
// schema is seen; many goroutines share the readers' statements.
func TestSQLiteKeptStatements(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := storetest.OpenUnmigrated(t, store.SQLite)
	w := db.Writer()
	if _, err := w.Exec(ctx, `CREATE TABLE kept (id INTEGER PRIMARY KEY, name TEXT NOT NULL)`); err != nil {
		t.Fatal(err)
	}
	const insert = `INSERT INTO kept (id, name) VALUES ($1, $2)`
	for i := 1; i <= 20; i++ {
		if _, err := w.Exec(ctx, insert, i, fmt.Sprintf("n%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := w.Exec(ctx, insert, 1, "again"); err == nil || !store.IsUniqueViolation(err) {
		t.Fatalf("a duplicate key through a kept statement: %v", err)
	}
	// The statement is usable after its run failed.
	if _, err := w.Exec(ctx, insert, 21, "n21"); err != nil {
		t.Fatal(err)
	}

	// A query run again while its rows are open, in one transaction (the
	// writer's one connection).
	const byID = `SELECT name FROM kept WHERE id = $1`
	err := db.Tx(ctx, func(tx store.Tx) error {
		rows, err := tx.Query(ctx, `SELECT id FROM kept WHERE id <= $1 ORDER BY id`, 5)
		if err != nil {
			return err
		}
		defer rows.Close()
		n := 0
		for rows.Next() {
			var id int
			if err := rows.Scan(&id); err != nil {
				return err
			}
			inner, err := tx.Query(ctx, `SELECT id FROM kept WHERE id <= $1 ORDER BY id`, id)
			if err != nil {
				return err
			}
			m := 0
			for inner.Next() {
				m++
			}
			inner.Close()
			if m != id {
				return fmt.Errorf("inner query for %d saw %d rows", id, m)
			}
			var name string
			if err := tx.QueryRow(ctx, byID, id).Scan(&name); err != nil || name != fmt.Sprintf("n%d", id) {
				return fmt.Errorf("row %d: %q %v", id, name, err)
			}
			n++
		}
		if n != 5 {
			return fmt.Errorf("outer query saw %d rows", n)
		}
		return rows.Err()
	})
	if err != nil {
		t.Fatal(err)
	}

	// More texts than a connection keeps.
	for i := range 700 {
		var n int
		if err := w.QueryRow(ctx, fmt.Sprintf(`SELECT count(*) + %d FROM kept`, i)).Scan(&n); err != nil || n != 21+i {
			t.Fatalf("text %d: %d %v", i, n, err)
		}
	}

	// A schema change reaches a kept statement.
	const all = `SELECT * FROM kept WHERE id = $1`
	cols := func() int {
		rows, err := w.Query(ctx, all, 1)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		if !rows.Next() {
			t.Fatal("no row")
		}
		var id int
		var name string
		var extra *string
		if err := rows.Scan(&id, &name, &extra); err == nil {
			return 3
		}
		return 2
	}
	if got := cols(); got != 2 {
		t.Fatalf("%d columns before the change", got)
	}
	if _, err := w.Exec(ctx, `ALTER TABLE kept ADD COLUMN extra TEXT`); err != nil {
		t.Fatal(err)
	}
	if got := cols(); got != 3 {
		t.Fatalf("%d columns after the change, want 3", got)
	}

	// Readers from many goroutines.
	var wg sync.WaitGroup
	errc := make(chan error, 8)
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 1; i <= 200; i++ {
				id := (g*200+i)%21 + 1
				var name string
				if err := db.Reader().QueryRow(ctx, byID, id).Scan(&name); err != nil || name != fmt.Sprintf("n%d", id) {
					errc <- fmt.Errorf("reader %d: row %d: %q %v", g, id, name, err)
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
}
