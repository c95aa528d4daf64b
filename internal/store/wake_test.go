package store_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/careflow/careflow/internal/store"
	"github.com/careflow/careflow/internal/store/storetest"
)

// woken waits up to d for a wake-up on s.
func woken(s *store.Subscription, d time.Duration) bool {
	select {
	case <-s.C:
		return true
	case <-time.After(d):
		return false
	}
}

// A transaction's wake-up reaches the topic's subscribers once it commits,
// never before and never after a rollback; other topics hear nothing, and
// several wake-ups pending are one.
func TestNotifyWakesSubscribersAtCommit(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		sub := db.Subscribe("test.topic")
		defer sub.Close()
		other := db.Subscribe("test.other")
		defer other.Close()
		// The PostgreSQL listener wakes everyone once it is listening.
		woken(sub, 2*time.Second)
		woken(other, 10*time.Millisecond)

		inTx := make(chan bool, 1)
		if err := db.Tx(ctx, func(tx store.Tx) error {
			if err := store.Notify(ctx, tx, "test.topic"); err != nil {
				return err
			}
			inTx <- woken(sub, 100*time.Millisecond)
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		if <-inTx {
			t.Error("woken before the commit")
		}
		if !woken(sub, 2*time.Second) {
			t.Fatal("not woken after the commit")
		}
		if woken(other, 200*time.Millisecond) {
			t.Error("another topic's subscriber was woken")
		}
		// PostgreSQL's own delivery follows the process's.
		for woken(sub, 300*time.Millisecond) {
		}

		errRollback := errors.New("roll back")
		if err := db.Tx(ctx, func(tx store.Tx) error {
			if err := store.Notify(ctx, tx, "test.topic"); err != nil {
				return err
			}
			return errRollback
		}); !errors.Is(err, errRollback) {
			t.Fatal(err)
		}
		if woken(sub, 300*time.Millisecond) {
			t.Error("woken by a transaction that rolled back")
		}

		for range 3 {
			if err := db.Tx(ctx, func(tx store.Tx) error { return store.Notify(ctx, tx, "test.topic") }); err != nil {
				t.Fatal(err)
			}
		}
		if !woken(sub, 2*time.Second) {
			t.Fatal("not woken after three commits")
		}
		// The three were merged into one (on PostgreSQL the server's own
		// deliveries come later, one by one).
		if db.Dialect() == store.SQLite && woken(sub, 200*time.Millisecond) {
			t.Error("more wake-ups pending than one")
		}

		// AfterCommit runs after the commit, never after a rollback.
		ran := 0
		if err := db.Tx(ctx, func(tx store.Tx) error {
			if err := store.AfterCommit(tx, func() { ran++ }); err != nil {
				return err
			}
			if ran != 0 {
				t.Error("AfterCommit ran before the commit")
			}
			return nil
		}); err != nil || ran != 1 {
			t.Fatalf("AfterCommit ran %d times (%v)", ran, err)
		}
		if err := db.Tx(ctx, func(tx store.Tx) error {
			if err := store.AfterCommit(tx, func() { ran++ }); err != nil {
				return err
			}
			return errRollback
		}); !errors.Is(err, errRollback) || ran != 1 {
			t.Fatalf("AfterCommit ran after a rollback (%d, %v)", ran, err)
		}

		sub.Close()
		for woken(sub, 300*time.Millisecond) {
		}
		if err := db.Tx(ctx, func(tx store.Tx) error { return store.Notify(ctx, tx, "test.topic") }); err != nil {
			t.Fatal(err)
		}
		if woken(sub, 300*time.Millisecond) {
			t.Error("woken after Close")
		}
	})
}

// On PostgreSQL a commit on one node wakes the subscribers of another
// (another process's DB on the same database).
func TestNotifyWakesOtherNodesOnPostgres(t *testing.T) {
	t.Parallel()
	url := storetest.NewPostgresDatabase(t)
	ctx := context.Background()
	open := func() *store.DB {
		db, err := store.Open(ctx, store.Config{URL: url})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		return db
	}
	a, b := open(), open()
	sub := b.Subscribe("test.topic")
	defer sub.Close()
	if !woken(sub, 5*time.Second) {
		t.Fatal("the listener did not report that it listens")
	}
	if err := a.Tx(ctx, func(tx store.Tx) error { return store.Notify(ctx, tx, "test.topic") }); err != nil {
		t.Fatal(err)
	}
	if !woken(sub, 5*time.Second) {
		t.Fatal("another node's commit did not wake this one")
	}
}

// The SQLite writer counts the transactions that wrote, not those that only
// read or changed nothing.
func TestSQLiteCountsCommitsThatWrote(t *testing.T) {
	t.Parallel()
	db := storetest.Open(t, store.SQLite)
	ctx := context.Background()
	if _, err := db.Writer().Exec(ctx, `CREATE TABLE wake_count (a INTEGER)`); err != nil {
		t.Fatal(err)
	}
	before := db.Commits()
	if err := db.Tx(ctx, func(tx store.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO wake_count (a) VALUES (1), (2)`)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Writer().Exec(ctx, `UPDATE wake_count SET a = 3 WHERE a = 1`); err != nil {
		t.Fatal(err)
	}
	if got := db.Commits() - before; got != 2 {
		t.Fatalf("two writes counted as %d commits", got)
	}
	if _, err := db.Writer().Exec(ctx, `UPDATE wake_count SET a = 4 WHERE a = 99`); err != nil {
		t.Fatal(err)
	}
	if err := db.Tx(ctx, func(tx store.Tx) error {
		var n int
		return tx.QueryRow(ctx, `SELECT count(*) FROM wake_count`).Scan(&n)
	}); err != nil {
		t.Fatal(err)
	}
	if got := db.Commits() - before; got != 2 {
		t.Fatalf("a read and an update of nothing counted: %d commits", got)
	}
}
