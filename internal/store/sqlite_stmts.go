package store

import (
	"container/list"
	"context"
	"database/sql/driver"
	"errors"
	"reflect"
	"strings"

	"modernc.org/sqlite"
)

// Every SQLite connection keeps the statements it has prepared.
//
// database/sql prepares, runs and finalizes a statement for every Exec and
// Query on a driver that runs queries directly, as modernc.org/sqlite does;
// parsing and planning the SQL was a quarter of a workflow step's CPU, the
// same few dozen statements over and over. A connection here keeps a
// prepared statement per SQL text (the most recently used
// stmtsPerConn of them) and runs it again with new arguments: SQLite resets
// a statement between runs, and re-prepares it by itself when the schema
// changed. database/sql uses a connection from one goroutine at a time,
// which is what makes the cache safe without a lock; a statement whose rows
// are still open when its text is run again (a query inside a loop over
// another's rows) is not shared: the second run prepares its own, as
// before. Scripts (several statements) and anything but plain DML and
// SELECT are never cached.

// stmtsPerConn bounds the statements one connection keeps. careflow's own
// SQL and River's are a few hundred texts; searches build more, and the
// least recently used go first.
const stmtsPerConn = 512

// sqliteDriverConn is what modernc.org/sqlite's connection offers and
// database/sql uses.
type sqliteDriverConn interface {
	driver.Conn
	driver.ConnBeginTx
	driver.ConnPrepareContext
	driver.ExecerContext
	driver.QueryerContext
	driver.Pinger
	driver.SessionResetter
	driver.Validator
}

// stmtConnector opens connections of the dsn that cache their statements.
type stmtConnector struct {
	dsn   string
	drv   *sqlite.Driver
	watch *commitWatch // the writer's; nil for readers
}

func newSQLiteConnector(dsn string, watch *commitWatch) driver.Connector {
	return stmtConnector{dsn: dsn, drv: &sqlite.Driver{}, watch: watch}
}

func (c stmtConnector) Connect(ctx context.Context) (driver.Conn, error) {
	conn, err := c.drv.Open(c.dsn)
	if err != nil {
		return nil, err
	}
	sc, ok := conn.(sqliteDriverConn)
	if !ok {
		_ = conn.Close()
		return nil, errors.New("database: the SQLite driver's connection lacks " + reflect.TypeFor[sqliteDriverConn]().String())
	}
	if c.watch != nil {
		c.watch.watchConn(conn)
	}
	return &stmtConn{sqliteDriverConn: sc, byText: map[string]*list.Element{}, lru: list.New(), watch: c.watch}, nil
}

func (c stmtConnector) Driver() driver.Driver { return c.drv }

type stmtConn struct {
	sqliteDriverConn
	byText map[string]*list.Element // of *keptStmt
	lru    *list.List               // most recently used first

	// The writer's (sqlite_watch.go): its watch, whether a transaction is
	// open, and whether it wrote River's tables.
	watch      *commitWatch
	inTx       bool
	riverDirty bool
}

type keptStmt struct {
	text  string
	st    driver.Stmt
	river bool // writes River's tables (writesRiver)
	busy  bool // its rows are open
	gone  bool // evicted while busy: close when the rows close
}

// cacheable reports whether query is one statement worth keeping: DML or a
// SELECT, with no second statement after it (a ';' anywhere but at the end,
// even in a comment or a literal, makes it not worth the risk). Leading
// comments are skipped: River's queries open with their name's.
func cacheable(query string) bool {
	q := strings.TrimSpace(query)
	if strings.Contains(strings.TrimSuffix(q, ";"), ";") {
		return false
	}
	q = skipComments(q)
	word, _, _ := strings.Cut(q, " ")
	word, _, _ = strings.Cut(word, "\n")
	switch strings.ToUpper(strings.TrimSpace(word)) {
	case "SELECT", "INSERT", "UPDATE", "DELETE", "WITH", "REPLACE":
		return true
	}
	return false
}

// skipComments drops the comments (-- to the end of the line, /* to */)
// and spaces at the start of q.
func skipComments(q string) string {
	for {
		q = strings.TrimSpace(q)
		switch {
		case strings.HasPrefix(q, "--"):
			_, rest, ok := strings.Cut(q, "\n")
			if !ok {
				return ""
			}
			q = rest
		case strings.HasPrefix(q, "/*"):
			_, rest, ok := strings.Cut(q[2:], "*/")
			if !ok {
				return ""
			}
			q = rest
		default:
			return q
		}
	}
}

// kept returns the connection's idle prepared statement of query, preparing
// and keeping it first if need be; nil when the query is not to be kept or
// its statement is in use.
func (c *stmtConn) kept(ctx context.Context, query string) (*keptStmt, error) {
	if el, ok := c.byText[query]; ok {
		k := el.Value.(*keptStmt)
		if k.busy {
			return nil, nil
		}
		c.lru.MoveToFront(el)
		return k, nil
	}
	if !cacheable(query) {
		return nil, nil
	}
	st, err := c.PrepareContext(ctx, query)
	if err != nil {
		return nil, err
	}
	k := &keptStmt{text: query, st: st, river: writesRiver(query)}
	c.byText[query] = c.lru.PushFront(k)
	for c.lru.Len() > stmtsPerConn {
		old := c.lru.Back()
		c.lru.Remove(old)
		ok := old.Value.(*keptStmt)
		delete(c.byText, ok.text)
		if ok.busy {
			ok.gone = true
		} else {
			_ = ok.st.Close()
		}
	}
	return k, nil
}

func (c *stmtConn) ExecContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Result, error) {
	k, err := c.kept(ctx, query)
	if err != nil {
		return nil, err
	}
	var res driver.Result
	if k == nil {
		res, err = c.sqliteDriverConn.ExecContext(ctx, query, args)
	} else {
		res, err = k.st.(driver.StmtExecContext).ExecContext(ctx, args)
	}
	if err == nil && c.watch != nil {
		c.ran(k != nil && k.river || k == nil && writesRiver(query))
	}
	return res, err
}

func (c *stmtConn) QueryContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Rows, error) {
	k, err := c.kept(ctx, query)
	if err != nil {
		return nil, err
	}
	if k == nil {
		rows, err := c.sqliteDriverConn.QueryContext(ctx, query, args)
		if err == nil && c.watch != nil {
			c.ran(writesRiver(query))
		}
		return rows, err
	}
	rows, err := k.st.(driver.StmtQueryContext).QueryContext(ctx, args)
	if err != nil {
		return nil, err
	}
	if c.watch != nil {
		c.ran(k.river)
	}
	k.busy = true
	return &keptRows{Rows: rows, k: k}, nil
}

// Close finalizes the kept statements, then closes the connection.
func (c *stmtConn) Close() error {
	for el := c.lru.Front(); el != nil; el = el.Next() {
		if k := el.Value.(*keptStmt); !k.busy {
			_ = k.st.Close()
		}
	}
	c.byText, c.lru = nil, list.New()
	return c.sqliteDriverConn.Close()
}

// keptRows gives the statement back when the rows close (modernc resets a
// prepared statement's VM there rather than finalizing it).
type keptRows struct {
	driver.Rows
	k      *keptStmt
	closed bool
}

func (r *keptRows) Close() error {
	if r.closed {
		return nil
	}
	r.closed = true
	err := r.Rows.Close()
	r.k.busy = false
	if r.k.gone {
		_ = r.k.st.Close()
	}
	return err
}

// The column-type questions go to the driver's rows when it answers them.

func (r *keptRows) ColumnTypeDatabaseTypeName(i int) string {
	if t, ok := r.Rows.(driver.RowsColumnTypeDatabaseTypeName); ok {
		return t.ColumnTypeDatabaseTypeName(i)
	}
	return ""
}

func (r *keptRows) ColumnTypeScanType(i int) reflect.Type {
	if t, ok := r.Rows.(driver.RowsColumnTypeScanType); ok {
		return t.ColumnTypeScanType(i)
	}
	return reflect.TypeFor[any]()
}

func (r *keptRows) ColumnTypeNullable(i int) (nullable, ok bool) {
	if t, ok := r.Rows.(driver.RowsColumnTypeNullable); ok {
		return t.ColumnTypeNullable(i)
	}
	return false, false
}

func (r *keptRows) ColumnTypeLength(i int) (int64, bool) {
	if t, ok := r.Rows.(driver.RowsColumnTypeLength); ok {
		return t.ColumnTypeLength(i)
	}
	return 0, false
}

func (r *keptRows) ColumnTypePrecisionScale(i int) (int64, int64, bool) {
	if t, ok := r.Rows.(driver.RowsColumnTypePrecisionScale); ok {
		return t.ColumnTypePrecisionScale(i)
	}
	return 0, 0, false
}
