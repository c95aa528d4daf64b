package store_test

import (
	"context"
	"errors"
	"testing"

	"github.com/careflow/careflow/internal/store"
	"github.com/careflow/careflow/internal/store/storetest"
)

// hookRow is a commit hook that inserts its rows when the transaction
// commits, and may register one more hook then.
type hookRow struct {
	ids  []int
	then func(tx store.Tx)
	fail error
}

func (h *hookRow) BeforeCommit(ctx context.Context, tx store.Tx) error {
	if h.fail != nil {
		return h.fail
	}
	for _, id := range h.ids {
		if _, err := tx.Exec(ctx, `INSERT INTO t_hook (id, after) VALUES ($1, (SELECT count(*) FROM t_hook))`, id); err != nil {
			return err
		}
	}
	if h.then != nil {
		h.then(tx)
	}
	return nil
}

// Commit hooks run once per key, in the order registered, after the
// transaction's own work and inside it; one a hook registers runs too; a
// hook's error rolls everything back, and a transaction that rolls back
// runs none.
func TestCommitHooks(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		if _, err := db.Writer().Exec(ctx, `CREATE TABLE t_hook (id INTEGER PRIMARY KEY, after INTEGER NOT NULL)`); err != nil {
			t.Fatal(err)
		}
		type key string
		err := db.Tx(ctx, func(tx store.Tx) error {
			a := tx.Hook(key("a"), func() store.CommitHook { return &hookRow{} }).(*hookRow)
			a.ids = append(a.ids, 2)
			tx.Hook(key("b"), func() store.CommitHook {
				return &hookRow{ids: []int{4}, then: func(tx store.Tx) {
					tx.Hook(key("c"), func() store.CommitHook { return &hookRow{ids: []int{5}} })
				}}
			})
			// The same key is the same hook.
			again := tx.Hook(key("a"), func() store.CommitHook { t.Error("a second hook for key a"); return nil }).(*hookRow)
			again.ids = append(again.ids, 3)
			_, err := tx.Exec(ctx, `INSERT INTO t_hook (id, after) VALUES (1, 0)`)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		rows, err := db.Reader().Query(ctx, `SELECT id, after FROM t_hook ORDER BY id`)
		if err != nil {
			t.Fatal(err)
		}
		var got [][2]int
		for rows.Next() {
			var id, after int
			if err := rows.Scan(&id, &after); err != nil {
				t.Fatal(err)
			}
			got = append(got, [2]int{id, after})
		}
		rows.Close()
		want := [][2]int{{1, 0}, {2, 1}, {3, 2}, {4, 3}, {5, 4}}
		if len(got) != len(want) {
			t.Fatalf("rows %v, want %v", got, want)
		}
		for i := range want {
			if got[i] != want[i] {
				t.Fatalf("rows %v, want %v (id, rows before it)", got, want)
			}
		}

		boom := errors.New("the hook failed")
		err = db.Tx(ctx, func(tx store.Tx) error {
			if _, err := tx.Exec(ctx, `INSERT INTO t_hook (id, after) VALUES (10, 0)`); err != nil {
				return err
			}
			tx.Hook(key("a"), func() store.CommitHook { return &hookRow{ids: []int{11}} })
			tx.Hook(key("b"), func() store.CommitHook { return &hookRow{fail: boom} })
			return nil
		})
		if !errors.Is(err, boom) {
			t.Fatalf("a failing hook: %v", err)
		}
		stop := errors.New("the work failed")
		ran := false
		err = db.Tx(ctx, func(tx store.Tx) error {
			tx.Hook(key("a"), func() store.CommitHook { return &hookRow{then: func(store.Tx) { ran = true }} })
			return stop
		})
		if !errors.Is(err, stop) || ran {
			t.Fatalf("a rolled-back transaction: %v, hook ran %v", err, ran)
		}
		var n int
		if err := db.Reader().QueryRow(ctx, `SELECT count(*) FROM t_hook`).Scan(&n); err != nil || n != 5 {
			t.Fatalf("%d rows after the failures (%v), want 5", n, err)
		}
	})
}
