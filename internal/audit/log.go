package audit

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/careflow/careflow/internal/errs"
	"github.com/careflow/careflow/internal/store"
)

// Defaults for Options.
const (
	DefaultCheckpointEvery    = 1000
	DefaultCheckpointInterval = time.Minute
	DefaultMaxBatch           = 256
)

// Options configures a Log.
type Options struct {
	// Signer signs checkpoints. Required.
	Signer *Signer
	// CheckpointDir receives a copy of every checkpoint (<size>.checkpoint)
	// and the verifiers file. It should live outside the database's
	// storage, ideally on storage the database's administrators cannot
	// rewrite. Empty keeps checkpoints in the database only, which protects
	// against far less; `careflow audit verify` needs the directory.
	CheckpointDir string
	// CheckpointEvery signs the head whenever the tree size reaches a
	// multiple of it. Zero means DefaultCheckpointEvery; negative disables.
	CheckpointEvery int64
	// CheckpointInterval signs the head when entries have been appended and
	// the last checkpoint is at least this old. Zero means
	// DefaultCheckpointInterval; negative disables.
	CheckpointInterval time.Duration
	// MaxBatch bounds how many concurrent Appends commit in one
	// transaction. Zero means DefaultMaxBatch.
	MaxBatch int
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Logger receives operational messages (no PHI: entries are never
	// logged). Nil discards.
	Logger *slog.Logger
}

// ErrClosed is returned by Append after Close.
var ErrClosed = errs.E(errs.Unavailable, "the audit log is closed")

// Log is the audit log of one database. It is safe for concurrent use; one
// Log per process is enough (appends from many goroutines are batched into
// one transaction each, and many processes on PostgreSQL serialise on the
// head row).
type Log struct {
	db        *store.DB
	signer    *Signer
	verifiers note.Verifiers
	dir       string
	every     int64
	interval  time.Duration
	maxBatch  int
	now       func() time.Time
	logger    *slog.Logger

	// mu orders Append's send against Close's close of requests.
	mu       sync.RWMutex
	closed   bool
	requests chan *appendRequest
	done     chan struct{}

	// cache is the frontier of the last tree this process committed, and
	// cacheHead the head row it left (valid while cache is not nil). Only
	// the run goroutine touches them.
	cache     *frontier
	cacheHead head

	// fileMu serialises writes into the checkpoint directory; synced is the
	// largest checkpoint size known to be there.
	fileMu sync.Mutex
	synced int64
}

type appendRequest struct {
	entries []Entry
	done    chan appendResult
}

type appendResult struct {
	entries []Entry
	err     error
}

// New opens the audit log of db (which must be migrated) and starts its
// appender, which Close stops. It creates the checkpoint directory (0700),
// adds the signer's verifier key to its verifiers file, and copies into it
// any checkpoint the database has and the directory lacks (after a crash
// between a commit and the file write, or from another node).
func New(ctx context.Context, db *store.DB, opts Options) (*Log, error) {
	if opts.Signer == nil {
		return nil, errs.E(errs.Invalid, "audit: a checkpoint signer is required")
	}
	l := &Log{
		db:        db,
		signer:    opts.Signer,
		verifiers: note.VerifierList(opts.Signer.Verifier()),
		dir:       opts.CheckpointDir,
		every:     opts.CheckpointEvery,
		interval:  opts.CheckpointInterval,
		maxBatch:  opts.MaxBatch,
		now:       opts.Now,
		logger:    opts.Logger,
		done:      make(chan struct{}),
	}
	if l.every == 0 {
		l.every = DefaultCheckpointEvery
	}
	if l.interval == 0 {
		l.interval = DefaultCheckpointInterval
	}
	if l.maxBatch <= 0 {
		l.maxBatch = DefaultMaxBatch
	}
	if l.now == nil {
		l.now = time.Now
	}
	if l.logger == nil {
		l.logger = slog.New(slog.DiscardHandler)
	}
	l.requests = make(chan *appendRequest, 4*l.maxBatch)
	if l.dir != "" {
		if err := os.MkdirAll(l.dir, 0o700); err != nil {
			return nil, errs.Wrap(errs.Internal, err, "audit: create checkpoint directory %s", l.dir)
		}
		if err := ensureVerifier(l.dir, l.signer.VerifierKey()); err != nil {
			return nil, errs.Wrap(errs.Internal, err, "audit: record the verifier key in %s", l.dir)
		}
		// Checkpoints signed before a key rotation are still copied: trust
		// every key the directory lists, as verification will.
		keys, err := ReadVerifiers(l.dir)
		if err != nil {
			return nil, err
		}
		if l.verifiers, err = NewVerifiers(keys...); err != nil {
			return nil, err
		}
		if err := l.SyncCheckpointDir(ctx); err != nil {
			return nil, err
		}
	}
	// The appender outlives New's ctx on purpose: it must drain what was
	// queued even while the server shuts down; Close is its stop.
	go l.run(context.WithoutCancel(ctx))
	return l, nil
}

// Append adds e to the log and returns it as stored (with Seq and Time). It
// returns only when the entry is durable (committed, and on disk on either
// backend), so a handler that audits before it responds never responds
// about an access the log could lose. Concurrent Appends share one
// transaction. If ctx ends first Append returns its error, and the entry may
// or may not have been appended: the caller must treat that as a failure.
//
// Never call Append while holding a store transaction: on SQLite the
// appender needs the one writer connection that transaction holds. Use
// AppendTx there.
func (l *Log) Append(ctx context.Context, e Entry) (Entry, error) {
	out, err := l.AppendAll(ctx, []Entry{e})
	if err != nil {
		return Entry{}, err
	}
	return out[0], nil
}

// AppendAll adds several entries as Append does, in one transaction: all of
// them are appended (in order, with consecutive Seq) or none. A response
// that touched many records costs one commit, not one per entry. An empty
// list appends nothing.
func (l *Log) AppendAll(ctx context.Context, entries []Entry) ([]Entry, error) {
	if len(entries) == 0 {
		return nil, nil
	}
	norm := make([]Entry, len(entries))
	for i, e := range entries {
		n, err := e.normalize()
		if err != nil {
			return nil, err
		}
		norm[i] = n
	}
	req := &appendRequest{entries: norm, done: make(chan appendResult, 1)}
	l.mu.RLock()
	if l.closed {
		l.mu.RUnlock()
		return nil, ErrClosed
	}
	select {
	case l.requests <- req:
	case <-ctx.Done():
		l.mu.RUnlock()
		return nil, ctx.Err()
	}
	l.mu.RUnlock()
	select {
	case r := <-req.done:
		return r.entries, r.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// AppendTx adds e to the log inside the caller's transaction, so that a
// domain write and its audit entry commit or roll back together. It takes
// the log's head lock until tx ends: keep such transactions short. A
// checkpoint due at this entry is stored in tx; its file is written by the
// appender's next directory sync.
func (l *Log) AppendTx(ctx context.Context, tx store.Tx, e Entry) (Entry, error) {
	e, err := e.normalize()
	if err != nil {
		return Entry{}, err
	}
	entries := []Entry{e}
	if _, err := l.appendLocked(ctx, tx, entries, nil); err != nil {
		return Entry{}, err
	}
	return entries[0], nil
}

// AppendAtCommit adds e to the log in the caller's transaction as AppendTx
// does, but as the transaction's last work: the entries a transaction
// gathers this way are appended together, just before it commits
// (store.Tx.Hook), so the log's head stays locked only for the commit.
// AppendTx locks it at once and holds it while the transaction goes on: a
// workflow step's transaction that audits its first access and then runs
// several chained steps would keep every other audited write waiting that
// long. The entry's Seq and Time are set then, so they are not returned;
// use AppendTx when the caller needs them. A failure to append rolls back
// the whole transaction, as errs.Unavailable.
func (l *Log) AppendAtCommit(ctx context.Context, tx store.Tx, e Entry) error {
	e, err := e.normalize()
	if err != nil {
		return err
	}
	p := tx.Hook(l, func() store.CommitHook { return &atCommit{l: l} }).(*atCommit)
	p.entries = append(p.entries, e)
	return nil
}

// atCommit is a transaction's entries appended when it commits.
type atCommit struct {
	l       *Log
	entries []Entry
}

func (p *atCommit) BeforeCommit(ctx context.Context, tx store.Tx) error {
	if _, err := p.l.appendLocked(ctx, tx, p.entries, nil); err != nil {
		return errs.Wrap(errs.Unavailable, err, "the audit log is unavailable, so nothing was written; try again")
	}
	return nil
}

// Close stops accepting entries, commits those already queued, signs a
// final checkpoint if entries were appended since the last one (so that a
// clean shutdown leaves no unsigned tail) and writes it to the directory.
// Close the Log before the database, after the HTTP server has drained.
func (l *Log) Close(ctx context.Context) error {
	l.mu.Lock()
	if !l.closed {
		l.closed = true
		close(l.requests)
	}
	l.mu.Unlock()
	select {
	case <-l.done:
	case <-ctx.Done():
		return ctx.Err()
	}
	if _, err := l.checkpoint(ctx, true); err != nil {
		return err
	}
	return l.SyncCheckpointDir(ctx)
}

// run is the appender: it takes the first waiting request, whatever else is
// already queued (up to maxBatch), and commits them in one transaction, so
// that under load one fsync covers many entries while a lone request pays
// no waiting. Ticks make time-based checkpoints and copy other nodes'
// checkpoints into the directory.
func (l *Log) run(ctx context.Context) {
	defer close(l.done)
	tick := l.interval / 4
	if l.interval <= 0 || tick > 5*time.Second {
		tick = 5 * time.Second
	}
	tick = max(tick, 100*time.Millisecond)
	ticker := time.NewTicker(tick)
	defer ticker.Stop()
	for {
		select {
		case req, ok := <-l.requests:
			if !ok {
				return
			}
			batch := []*appendRequest{req}
		fill:
			for len(batch) < l.maxBatch {
				select {
				case r, ok := <-l.requests:
					if !ok {
						break fill
					}
					batch = append(batch, r)
				default:
					break fill
				}
			}
			l.commitBatch(ctx, batch)
		case <-ticker.C:
			if _, err := l.checkpoint(ctx, false); err != nil {
				l.logger.Error("audit: time-based checkpoint failed", "error", err)
			}
			if err := l.SyncCheckpointDir(ctx); err != nil {
				l.logger.Error("audit: checkpoint directory sync failed", "error", err)
			}
		}
	}
}

// batchTimeout bounds one group commit, so a stuck database fails the
// waiting Appends instead of holding them for ever.
const batchTimeout = 30 * time.Second

func (l *Log) commitBatch(ctx context.Context, batch []*appendRequest) {
	ctx, cancel := context.WithTimeout(ctx, batchTimeout)
	defer cancel()
	var entries []Entry
	for _, r := range batch {
		entries = append(entries, r.entries...)
	}
	res, ok, err := l.appendCached(ctx, entries)
	if err == nil && !ok {
		err = l.db.Tx(ctx, func(tx store.Tx) error {
			var err error
			res, err = l.appendLocked(ctx, tx, entries, l.cache)
			return err
		})
	}
	made := res.checkpoints
	if err != nil {
		l.cache = nil
		err = errs.Wrap(errs.Unavailable, err, "the audit log could not record the access")
	} else {
		l.cache, l.cacheHead = res.f, res.h
	}
	// Checkpoint files are written before the waiters are released, so a
	// checkpoint an Append caused is in the directory when Append returns.
	// A failure here does not fail the Appends (their entries are durable);
	// the next sync retries.
	if err == nil && made > 0 {
		if serr := l.SyncCheckpointDir(ctx); serr != nil {
			l.logger.Error("audit: checkpoint directory sync failed", "error", serr)
		}
	}
	at := 0
	for _, r := range batch {
		if err != nil {
			r.done <- appendResult{err: err}
			continue
		}
		n := len(r.entries)
		r.done <- appendResult{entries: entries[at : at+n : at+n]}
		at += n
	}
}

// head is the audit_head row.
type head struct {
	size           int64
	checkpointSize int64
	checkpointAt   *time.Time
}

func readHead(ctx context.Context, q store.Querier, forUpdate string) (head, error) {
	var h head
	err := q.QueryRow(ctx, `SELECT tree_size, checkpoint_size, checkpoint_at FROM audit_head WHERE singleton = 1`+forUpdate).
		Scan(&h.size, &h.checkpointSize, &h.checkpointAt)
	if err != nil {
		return head{}, fmt.Errorf("audit: read head: %w", err)
	}
	return h, nil
}

// appended is what an append left: the tree's new frontier, the head row
// as it now stands, and how many checkpoints the append stored.
type appended struct {
	f           *frontier
	h           head
	checkpoints int
}

// appendLocked appends entries (setting their Seq and Time) in tx, holding
// the head row's lock, and stores any checkpoint that falls due. cached, if
// it is the frontier of the current head, saves reading the frontier.
func (l *Log) appendLocked(ctx context.Context, tx store.Tx, entries []Entry, cached *frontier) (appended, error) {
	h, err := readHead(ctx, tx, tx.Dialect().ForUpdate())
	if err != nil {
		return appended{}, err
	}
	var f *frontier
	if cached != nil && cached.size == h.size {
		f = cached.clone()
	} else if f, err = loadFrontier(ctx, tx, h.size); err != nil {
		return appended{}, err
	}
	now := stampTime(l.now())
	hashes := make([]storedHash, 0, 2*len(entries)+8)
	var cps []Checkpoint
	for i := range entries {
		entries[i].Seq = f.size
		entries[i].Time = now
		hs, err := f.append(entries[i].LeafHash())
		if err != nil {
			return appended{}, err
		}
		hashes = append(hashes, hs...)
		if l.every > 0 && f.size%l.every == 0 {
			cp, err := l.sign(f, now)
			if err != nil {
				return appended{}, err
			}
			cps = append(cps, cp)
		}
	}
	if h.checkpointAt == nil {
		// The first entry starts the clock of the time-based checkpoint.
		h.checkpointAt = &now
	}
	if len(cps) > 0 {
		h.checkpointSize, h.checkpointAt = cps[len(cps)-1].Size, &now
	}
	if l.interval > 0 && h.checkpointSize < f.size && now.Sub(*h.checkpointAt) >= l.interval {
		cp, err := l.sign(f, now)
		if err != nil {
			return appended{}, err
		}
		cps = append(cps, cp)
		h.checkpointSize, h.checkpointAt = f.size, &now
	}
	if err := insertEntries(ctx, tx, entries); err != nil {
		return appended{}, err
	}
	if err := insertHashes(ctx, tx, hashes); err != nil {
		return appended{}, err
	}
	for _, cp := range cps {
		if err := insertCheckpoint(ctx, tx, cp); err != nil {
			return appended{}, err
		}
	}
	if _, err := tx.Exec(ctx, `UPDATE audit_head SET tree_size = $1, checkpoint_size = $2, checkpoint_at = $3 WHERE singleton = 1`,
		f.size, h.checkpointSize, h.checkpointAt); err != nil {
		return appended{}, fmt.Errorf("audit: update head: %w", err)
	}
	h.size = f.size
	return appended{f: f, h: h, checkpoints: len(cps)}, nil
}

func (l *Log) sign(f *frontier, at time.Time) (Checkpoint, error) {
	root, err := f.root()
	if err != nil {
		return Checkpoint{}, err
	}
	return signCheckpoint(l.signer, f.size, root, at)
}

// Checkpoint signs the current head now unless it is already signed, and
// writes it to the directory. It reports the checkpoint it made, if any.
func (l *Log) Checkpoint(ctx context.Context) (*Checkpoint, error) {
	cp, err := l.checkpoint(ctx, true)
	if err != nil || cp == nil {
		return cp, err
	}
	return cp, l.SyncCheckpointDir(ctx)
}

// CheckpointIfDue signs the head if entries were appended since the last
// checkpoint and that is at least CheckpointInterval old, then syncs the
// directory. The appender calls it on a timer, so an idle log's tail is
// signed too; tests call it after moving their clock.
func (l *Log) CheckpointIfDue(ctx context.Context) (*Checkpoint, error) {
	cp, err := l.checkpoint(ctx, false)
	if err != nil || cp == nil {
		return cp, err
	}
	return cp, l.SyncCheckpointDir(ctx)
}

func (l *Log) checkpoint(ctx context.Context, force bool) (*Checkpoint, error) {
	if !force && l.interval <= 0 {
		return nil, nil
	}
	// Look before taking the lock: most ticks find nothing to do, and the
	// lock would stall appends on every node.
	h, err := readHead(ctx, l.db.Reader(), "")
	if err != nil {
		return nil, err
	}
	now := stampTime(l.now())
	due := func(h head) bool {
		if h.size == h.checkpointSize {
			return false
		}
		return force || h.checkpointAt == nil || now.Sub(*h.checkpointAt) >= l.interval
	}
	if !due(h) {
		return nil, nil
	}
	var made *Checkpoint
	err = l.db.Tx(ctx, func(tx store.Tx) error {
		h, err := readHead(ctx, tx, tx.Dialect().ForUpdate())
		if err != nil || !due(h) {
			return err
		}
		f, err := loadFrontier(ctx, tx, h.size)
		if err != nil {
			return err
		}
		cp, err := l.sign(f, now)
		if err != nil {
			return err
		}
		if err := insertCheckpoint(ctx, tx, cp); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `UPDATE audit_head SET checkpoint_size = $1, checkpoint_at = $2 WHERE singleton = 1`, cp.Size, now); err != nil {
			return fmt.Errorf("audit: update head: %w", err)
		}
		made = &cp
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("audit: checkpoint: %w", err)
	}
	return made, nil
}

// SyncCheckpointDir writes into the checkpoint directory every checkpoint
// the database has that the directory lacks, checking each signature first
// so that a row forged in the database is never copied into the trust
// anchor.
func (l *Log) SyncCheckpointDir(ctx context.Context) error {
	if l.dir == "" {
		return nil
	}
	l.fileMu.Lock()
	defer l.fileMu.Unlock()
	rows, err := l.db.Reader().Query(ctx, `SELECT tree_size, note FROM audit_checkpoints WHERE tree_size > $1 ORDER BY tree_size`, l.synced)
	if err != nil {
		return fmt.Errorf("audit: read checkpoints: %w", err)
	}
	type row struct {
		size int64
		note string
	}
	var todo []row
	for rows.Next() {
		var r row
		if err := rows.Scan(&r.size, &r.note); err != nil {
			rows.Close()
			return fmt.Errorf("audit: read checkpoints: %w", err)
		}
		todo = append(todo, r)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("audit: read checkpoints: %w", err)
	}
	var errList []error
	for _, r := range todo {
		cp, _, err := openCheckpoint([]byte(r.note), l.verifiers)
		if err != nil || cp.Size != r.size {
			// Not ours to fix here, and not to be copied: verification
			// reports it.
			l.logger.Warn("audit: a database checkpoint does not verify; not copying it", "tree_size", r.size)
		} else if _, err := writeCheckpointFile(l.dir, cp); err != nil {
			errList = append(errList, err)
			continue
		}
		l.synced = r.size
	}
	return errors.Join(errList...)
}

// Head reports the number of entries in the log.
func (l *Log) Head(ctx context.Context) (int64, error) {
	h, err := readHead(ctx, l.db.Reader(), "")
	return h.size, err
}

// VerifierKey is the public key that verifies this log's checkpoints.
func (l *Log) VerifierKey() string { return l.signer.VerifierKey() }

// ---- inserts ----

const entryColumns = `seq, occurred_at, actor, role, action, resource_type, resource_id, patient_id, purpose, outcome, severity, request_id, client_addr`

const entryColumnCount = 13

func insertEntries(ctx context.Context, tx store.Tx, entries []Entry) error {
	rows := make([][]any, len(entries))
	for i, e := range entries {
		rows[i] = entryRow(e)
	}
	if err := insertRows(ctx, tx, `INSERT INTO audit_entries (`+entryColumns+`) VALUES `, entryColumnCount, rows); err != nil {
		return fmt.Errorf("audit: insert entries: %w", err)
	}
	return nil
}

// entryRow is e's values in entryColumns' order.
func entryRow(e Entry) []any {
	return []any{e.Seq, e.Time, e.Actor, e.Role, string(e.Action), e.ResourceType, e.ResourceID,
		e.PatientID, e.Purpose, string(e.Outcome), string(e.Severity), e.RequestID, e.ClientAddr}
}

func insertHashes(ctx context.Context, tx store.Tx, hashes []storedHash) error {
	rows := make([][]any, len(hashes))
	for i, h := range hashes {
		rows[i] = []any{h.idx, h.hash[:]}
	}
	if err := insertRows(ctx, tx, `INSERT INTO audit_hashes (idx, hash) VALUES `, 2, rows); err != nil {
		return fmt.Errorf("audit: insert tree hashes: %w", err)
	}
	return nil
}

func insertCheckpoint(ctx context.Context, tx store.Tx, cp Checkpoint) error {
	root, err := tlog.ParseHash(cp.Root)
	if err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, `INSERT INTO audit_checkpoints (tree_size, root_hash, note, created_at) VALUES ($1, $2, $3, $4)`,
		cp.Size, root[:], cp.Note, cp.Time); err != nil {
		return fmt.Errorf("audit: insert checkpoint %d: %w", cp.Size, err)
	}
	return nil
}

// maxParams keeps a multi-row INSERT under both backends' limits on bound
// parameters (SQLite's is the smaller, 32766).
const maxParams = 4000

// insertRows runs prefix + "($1, ...), (...)" for rows, as few statements
// as the parameter limit allows: one round trip per statement, not per row.
func insertRows(ctx context.Context, tx store.Tx, prefix string, ncols int, rows [][]any) error {
	per := maxParams / ncols
	for start := 0; start < len(rows); start += per {
		chunk := rows[start:min(start+per, len(rows))]
		var sb strings.Builder
		sb.WriteString(prefix)
		args := make([]any, 0, len(chunk)*ncols)
		for i, r := range chunk {
			if i > 0 {
				sb.WriteString(", ")
			}
			sb.WriteByte('(')
			for j := range ncols {
				if j > 0 {
					sb.WriteString(", ")
				}
				sb.WriteByte('$')
				sb.WriteString(strconv.Itoa(len(args) + j + 1))
			}
			sb.WriteByte(')')
			args = append(args, r...)
		}
		if _, err := tx.Exec(ctx, sb.String(), args...); err != nil {
			return err
		}
	}
	return nil
}
