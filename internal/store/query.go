package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// ErrNoRows is returned by Row.Scan when the query selected nothing, on
// both dialects.
var ErrNoRows = sql.ErrNoRows

// Querier runs SQL. SQL uses $1, $2 ... parameter markers on both dialects.
type Querier interface {
	// Exec runs a statement and returns the number of rows it affected.
	Exec(ctx context.Context, query string, args ...any) (int64, error)
	// Query runs a query; the caller must Close the rows.
	Query(ctx context.Context, query string, args ...any) (Rows, error)
	// QueryRow runs a query expected to return at most one row.
	QueryRow(ctx context.Context, query string, args ...any) Row
}

// Rows is an open result set.
type Rows interface {
	Next() bool
	Scan(dest ...any) error
	Err() error
	Close()
}

// Row is a single-row result; Scan returns ErrNoRows when there is none.
type Row interface {
	Scan(dest ...any) error
}

// Tx is a write transaction.
type Tx interface {
	Querier
	Dialect() Dialect
	// Hook returns the commit hook registered under key in this
	// transaction, first registering the one add returns when there is
	// none. Hooks run in the order registered, after the transaction's
	// function returned nil and just before the commit; a hook's error
	// rolls everything back and is the transaction's error. A hook may
	// write, and may register another hook, which runs after it. Nothing
	// runs when the transaction rolls back.
	//
	// It is for work that must commit with the transaction but should hold
	// its locks only for the commit: a row every transaction updates (the
	// audit log's head) locked early would serialize the rest of each
	// transaction behind it.
	Hook(key any, add func() CommitHook) CommitHook
}

// A CommitHook is work a transaction runs just before it commits (Tx.Hook).
type CommitHook interface {
	BeforeCommit(ctx context.Context, tx Tx) error
}

// hooks are a transaction's commit hooks, by key and in order.
type hooks struct {
	keys  map[any]CommitHook
	order []CommitHook
}

func (h *hooks) hook(key any, add func() CommitHook) CommitHook {
	if c, ok := h.keys[key]; ok {
		return c
	}
	if h.keys == nil {
		h.keys = map[any]CommitHook{}
	}
	c := add()
	h.keys[key] = c
	h.order = append(h.order, c)
	return c
}

// run runs the hooks, those a hook registers included.
func (h *hooks) run(ctx context.Context, tx Tx) error {
	for i := 0; i < len(h.order); i++ {
		if err := h.order[i].BeforeCommit(ctx, tx); err != nil {
			return err
		}
	}
	return nil
}

// IsUniqueViolation reports whether err is a unique or primary-key
// constraint violation on either dialect.
func IsUniqueViolation(err error) bool { return sqliteUnique(err) || pgUnique(err) }

// Tx runs fn in one write transaction and commits when fn returns nil; it
// rolls back on an error or a panic (and re-panics). fn must not call Tx.
func (db *DB) Tx(ctx context.Context, fn func(tx Tx) error) (err error) {
	if db.dialect == SQLite {
		stx, err := db.writer.BeginTx(ctx, nil)
		if err != nil {
			return fmt.Errorf("begin: %w", err)
		}
		defer func() {
			if p := recover(); p != nil {
				_ = stx.Rollback()
				panic(p)
			}
		}()
		t := &sqliteTx{tx: stx}
		if err := fn(t); err != nil {
			_ = stx.Rollback()
			return err
		}
		if err := t.hooks.run(ctx, t); err != nil {
			_ = stx.Rollback()
			return err
		}
		if err := stx.Commit(); err != nil {
			return fmt.Errorf("commit: %w", err)
		}
		db.hub.fire(t.wakes...)
		t.after.run()
		return nil
	}
	ptx, err := db.pool.BeginTx(ctx, pgx.TxOptions{})
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	defer func() {
		if p := recover(); p != nil {
			_ = ptx.Rollback(context.WithoutCancel(ctx))
			panic(p)
		}
	}()
	t := &pgTx{tx: ptx}
	if err := fn(t); err != nil {
		_ = ptx.Rollback(context.WithoutCancel(ctx))
		return err
	}
	if err := t.hooks.run(ctx, t); err != nil {
		_ = ptx.Rollback(context.WithoutCancel(ctx))
		return err
	}
	if err := ptx.Commit(ctx); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	// The server tells every node's listener; this process's subscribers
	// need not wait for the round trip.
	db.hub.fire(t.wakes...)
	t.after.run()
	return nil
}

// Reader returns a Querier for reads. On SQLite it uses the read-only pool,
// which sees every committed transaction; on PostgreSQL the shared pool.
func (db *DB) Reader() Querier {
	if db.dialect == SQLite {
		return sqliteQuerier{db: db.readers}
	}
	return pgQuerier{q: db.pool}
}

// Writer returns a Querier that runs each statement in its own transaction on
// the write connection. Use Tx for anything that changes more than one row.
func (db *DB) Writer() Querier {
	if db.dialect == SQLite {
		return sqliteQuerier{db: db.writer}
	}
	return pgQuerier{q: db.pool}
}

// SQLTx returns the database/sql transaction under a SQLite Tx, for
// libraries (the job engine) that must join the same transaction.
func SQLTx(tx Tx) (*sql.Tx, bool) {
	st, ok := tx.(*sqliteTx)
	if !ok {
		return nil, false
	}
	return st.tx, true
}

// PgxTx returns the pgx transaction under a PostgreSQL Tx.
func PgxTx(tx Tx) (pgx.Tx, bool) {
	pt, ok := tx.(*pgTx)
	if !ok {
		return nil, false
	}
	return pt.tx, true
}

// ---- SQLite ----

// sqliteTimeLayout is fixed-width so that text comparison orders times.
const sqliteTimeLayout = "2006-01-02T15:04:05.000000Z"

// sqliteArgs converts arguments SQLite cannot store as wanted: times become
// fixed-width UTC text.
func sqliteArgs(args []any) []any {
	for i, a := range args {
		switch v := a.(type) {
		case time.Time:
			args[i] = v.UTC().Format(sqliteTimeLayout)
		case *time.Time:
			if v == nil {
				args[i] = nil
			} else {
				args[i] = v.UTC().Format(sqliteTimeLayout)
			}
		case sql.NullTime:
			if v.Valid {
				args[i] = v.Time.UTC().Format(sqliteTimeLayout)
			} else {
				args[i] = nil
			}
		}
	}
	return args
}

// timeScanner reads a time stored by sqliteArgs (or by SQLite's own
// CURRENT_TIMESTAMP-style text) into a time.Time.
type timeScanner struct {
	dst   *time.Time
	dstp  **time.Time
	dstnt *sql.NullTime
}

var sqliteTimeLayouts = []string{
	sqliteTimeLayout,
	time.RFC3339Nano,
	"2006-01-02 15:04:05.999999999Z07:00",
	"2006-01-02 15:04:05.999999999",
	"2006-01-02 15:04:05",
	"2006-01-02",
}

func (s timeScanner) Scan(src any) error {
	var t time.Time
	valid := true
	switch v := src.(type) {
	case nil:
		valid = false
	case time.Time:
		t = v.UTC()
	case string:
		p, err := parseSQLiteTime(v)
		if err != nil {
			return err
		}
		t = p
	case []byte:
		p, err := parseSQLiteTime(string(v))
		if err != nil {
			return err
		}
		t = p
	case int64:
		t = time.UnixMicro(v).UTC()
	default:
		return fmt.Errorf("cannot scan %T into a time", src)
	}
	switch {
	case s.dst != nil:
		if !valid {
			return errors.New("cannot scan NULL into a time.Time")
		}
		*s.dst = t
	case s.dstp != nil:
		if valid {
			*s.dstp = &t
		} else {
			*s.dstp = nil
		}
	case s.dstnt != nil:
		*s.dstnt = sql.NullTime{Time: t, Valid: valid}
	}
	return nil
}

func parseSQLiteTime(s string) (time.Time, error) {
	for _, layout := range sqliteTimeLayouts {
		if t, err := time.Parse(layout, s); err == nil {
			return t.UTC(), nil
		}
	}
	return time.Time{}, fmt.Errorf("cannot parse %q as a time", s)
}

func sqliteDest(dest []any) []any {
	out := dest
	copied := false
	for i, d := range dest {
		var s any
		switch v := d.(type) {
		case *time.Time:
			s = timeScanner{dst: v}
		case **time.Time:
			s = timeScanner{dstp: v}
		case *sql.NullTime:
			s = timeScanner{dstnt: v}
		default:
			continue
		}
		if !copied {
			out = append([]any(nil), dest...)
			copied = true
		}
		out[i] = s
	}
	return out
}

type sqlRunner interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

type sqliteQuerier struct{ db sqlRunner }

func (q sqliteQuerier) Exec(ctx context.Context, query string, args ...any) (int64, error) {
	res, err := q.db.ExecContext(ctx, query, sqliteArgs(args)...)
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

func (q sqliteQuerier) Query(ctx context.Context, query string, args ...any) (Rows, error) {
	rows, err := q.db.QueryContext(ctx, query, sqliteArgs(args)...)
	if err != nil {
		return nil, err
	}
	return sqliteRows{rows}, nil
}

func (q sqliteQuerier) QueryRow(ctx context.Context, query string, args ...any) Row {
	return sqliteRow{q.db.QueryRowContext(ctx, query, sqliteArgs(args)...)}
}

type sqliteRows struct{ r *sql.Rows }

func (r sqliteRows) Next() bool             { return r.r.Next() }
func (r sqliteRows) Scan(dest ...any) error { return r.r.Scan(sqliteDest(dest)...) }
func (r sqliteRows) Err() error             { return r.r.Err() }
func (r sqliteRows) Close()                 { _ = r.r.Close() }

type sqliteRow struct{ r *sql.Row }

func (r sqliteRow) Scan(dest ...any) error { return r.r.Scan(sqliteDest(dest)...) }

type sqliteTx struct {
	tx    *sql.Tx
	hooks hooks
	wakes wakes
	after afterCommit
}

func (t *sqliteTx) Dialect() Dialect { return SQLite }
func (t *sqliteTx) Hook(key any, add func() CommitHook) CommitHook {
	return t.hooks.hook(key, add)
}
func (t *sqliteTx) Exec(ctx context.Context, query string, args ...any) (int64, error) {
	return sqliteQuerier{t.tx}.Exec(ctx, query, args...)
}
func (t *sqliteTx) Query(ctx context.Context, query string, args ...any) (Rows, error) {
	return sqliteQuerier{t.tx}.Query(ctx, query, args...)
}
func (t *sqliteTx) QueryRow(ctx context.Context, query string, args ...any) Row {
	return sqliteQuerier{t.tx}.QueryRow(ctx, query, args...)
}

// ---- PostgreSQL ----

// pgxRunner is what both *pgxpool.Pool and pgx.Tx offer.
type pgxRunner interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

type pgQuerier struct{ q pgxRunner }

func (q pgQuerier) Exec(ctx context.Context, query string, args ...any) (int64, error) {
	tag, err := q.q.Exec(ctx, query, args...)
	if err != nil {
		return 0, err
	}
	return tag.RowsAffected(), nil
}

func (q pgQuerier) Query(ctx context.Context, query string, args ...any) (Rows, error) {
	rows, err := q.q.Query(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	return pgRows{rows}, nil
}

func (q pgQuerier) QueryRow(ctx context.Context, query string, args ...any) Row {
	return pgRow{q.q.QueryRow(ctx, query, args...)}
}

type pgRows struct{ r pgx.Rows }

func (r pgRows) Next() bool             { return r.r.Next() }
func (r pgRows) Scan(dest ...any) error { return pgDest(r.r.Scan(dest...)) }
func (r pgRows) Err() error             { return r.r.Err() }
func (r pgRows) Close()                 { r.r.Close() }

type pgRow struct{ r pgx.Row }

func (r pgRow) Scan(dest ...any) error { return pgDest(r.r.Scan(dest...)) }

func pgDest(err error) error {
	if errors.Is(err, pgx.ErrNoRows) {
		return ErrNoRows
	}
	return err
}

type pgTx struct {
	tx    pgx.Tx
	hooks hooks
	wakes wakes
	after afterCommit
}

func (t *pgTx) Dialect() Dialect { return Postgres }
func (t *pgTx) Hook(key any, add func() CommitHook) CommitHook {
	return t.hooks.hook(key, add)
}
func (t *pgTx) Exec(ctx context.Context, query string, args ...any) (int64, error) {
	return pgQuerier{t.tx}.Exec(ctx, query, args...)
}
func (t *pgTx) Query(ctx context.Context, query string, args ...any) (Rows, error) {
	return pgQuerier{t.tx}.Query(ctx, query, args...)
}
func (t *pgTx) QueryRow(ctx context.Context, query string, args ...any) Row {
	return pgQuerier{t.tx}.QueryRow(ctx, query, args...)
}

// NullIfEmpty is s as a query argument, the empty string as SQL NULL: for
// optional text columns, which hold NULL rather than "" when unset.
func NullIfEmpty(s string) any {
	if s == "" {
		return nil
	}
	return s
}
