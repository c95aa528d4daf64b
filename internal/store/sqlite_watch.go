package store

import (
	"context"
	"database/sql/driver"
	"strings"
	"sync/atomic"

	"modernc.org/sqlite"
)

// commitWatch watches the SQLite writer connection's commits: it counts
// them (careflow_db_commits_total) and tells the process when one wrote
// River's job or notification tables, so that River's producers fetch at
// once instead of polling (RiverTopic). Every write of the process goes
// through the one writer connection, River's own included, so nothing
// escapes it but writes by another process (the command line), which the
// subscribers' slow fallback timers cover.
type commitWatch struct {
	commits atomic.Int64
	// stmts counts the statements the writer ran (profiles: statements per
	// operation).
	stmts atomic.Int64
	// river is called after a commit that wrote River's tables.
	river func()
}

// RiverTopic is the wake-up (Subscribe) fired on SQLite after a commit that
// inserted River jobs or River notifications; internal/jobs' listener turns
// it into the notifications River's producers wait for. Never fired on
// PostgreSQL, where River listens itself.
const RiverTopic = "store.river"

// Commits is the number of transactions (and single-statement writes)
// the SQLite writer connection committed since the database was opened;
// 0 on PostgreSQL.
func (db *DB) Commits() int64 {
	if db.watch == nil {
		return 0
	}
	return db.watch.commits.Load()
}

// WriterStatements is the number of statements the SQLite writer connection
// ran since the database was opened (reads inside write transactions
// included); 0 on PostgreSQL. For profiles: statements per operation.
func (db *DB) WriterStatements() int64 {
	if db.watch == nil {
		return 0
	}
	return db.watch.stmts.Load()
}

// watchConn registers the commit counter on a writer connection. SQLite
// calls its commit hook for every transaction, reads and writes that
// changed nothing included, so the pre-update hook (called for each row a
// statement changes) marks the transactions that wrote. The hooks run on
// the goroutine using the connection, one at a time.
func (w *commitWatch) watchConn(conn driver.Conn) {
	h, ok := conn.(sqlite.HookRegisterer)
	if !ok {
		return
	}
	wrote := false
	h.RegisterPreUpdateHook(func(sqlite.SQLitePreUpdateData) { wrote = true })
	h.RegisterCommitHook(func() int32 {
		if wrote {
			w.commits.Add(1)
			wrote = false
		}
		return 0 // go on with the commit
	})
	h.RegisterRollbackHook(func() { wrote = false })
}

// writesRiver reports whether query inserts River jobs or notifications.
func writesRiver(query string) bool {
	q := skipComments(query)
	if len(q) < 12 || !strings.EqualFold(q[:12], "INSERT INTO ") {
		return false
	}
	q = strings.TrimSpace(q[12:])
	return strings.HasPrefix(q, "river_job") || strings.HasPrefix(q, "river_notification")
}

// watchedTx tells the watch, after its commit, that it wrote River's tables.
type watchedTx struct {
	driver.Tx
	c *stmtConn
}

func (t watchedTx) Commit() error {
	err := t.Tx.Commit()
	river := t.c.riverDirty
	t.c.inTx, t.c.riverDirty = false, false
	if err == nil && river {
		t.c.watch.river()
	}
	return err
}

func (t watchedTx) Rollback() error {
	t.c.inTx, t.c.riverDirty = false, false
	return t.Tx.Rollback()
}

// BeginTx starts a transaction; on the writer it is watched.
func (c *stmtConn) BeginTx(ctx context.Context, opts driver.TxOptions) (driver.Tx, error) {
	tx, err := c.sqliteDriverConn.BeginTx(ctx, opts)
	if err != nil || c.watch == nil {
		return tx, err
	}
	c.inTx, c.riverDirty = true, false
	return watchedTx{Tx: tx, c: c}, nil
}

// ran notes a statement the writer ran successfully: one that wrote
// River's tables wakes River's listener at its commit (at once outside a
// transaction).
func (c *stmtConn) ran(river bool) {
	c.watch.stmts.Add(1)
	if !river {
		return
	}
	if c.inTx {
		c.riverDirty = true
		return
	}
	c.watch.river()
}
