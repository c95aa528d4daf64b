package phi

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/careflow/careflow/internal/errs"
	"github.com/careflow/careflow/internal/store"
)

// KeyKind is how a primary-key column is scanned and compared.
type KeyKind int

const (
	// KeyText: TEXT or UUID columns, handled as Go strings (a PostgreSQL
	// UUID reads as its lower-case hyphenated text).
	KeyText KeyKind = iota
	// KeyInteger: INTEGER or BIGINT columns, handled as int64.
	KeyInteger
)

// KeyColumn is one column of a table's primary key.
type KeyColumn struct {
	Name string
	Kind KeyKind
}

// EncryptedColumns tells the re-encryptor about a table with ciphertext
// columns made by Ring.Seal. phi cannot know the schema of the packages that
// use it; each package describes its own tables and the program registers
// them all, so that a key is retired only after every registered column has
// been checked.
type EncryptedColumns struct {
	// Table is the table name.
	Table string
	// Key is the table's primary key, in the order rows are walked. The
	// walk is by key range, so it needs the index the primary key has.
	Key []KeyColumn
	// Columns are the ciphertext columns (BLOB/BYTEA, NULL allowed).
	Columns []string
	// AAD returns the associated data the writer used for one column of the
	// row whose key values are key (string or int64 per Key's kinds, in
	// Key's order). It must build exactly what the writer built.
	AAD func(key []any, column string) AAD
}

func (c EncryptedColumns) cursorName() string {
	return c.Table + ":" + strings.Join(c.Columns, ",")
}

var sqlIdent = regexp.MustCompile(`^[a-z_][a-z0-9_]*$`)

func (c EncryptedColumns) validate() error {
	bad := func(what string) error {
		return errs.E(errs.Internal, "phi: encrypted columns of table %q: %s", c.Table, what)
	}
	// Names end up in SQL text, so only plain lower-case identifiers pass.
	if !sqlIdent.MatchString(c.Table) {
		return bad("table name is not a plain identifier")
	}
	if len(c.Key) == 0 || len(c.Columns) == 0 {
		return bad("needs at least one key column and one ciphertext column")
	}
	seen := map[string]bool{}
	for _, k := range c.Key {
		if !sqlIdent.MatchString(k.Name) || seen[k.Name] {
			return bad(fmt.Sprintf("key column %q is not a plain identifier or repeats", k.Name))
		}
		if k.Kind != KeyText && k.Kind != KeyInteger {
			return bad(fmt.Sprintf("key column %q has an unknown kind", k.Name))
		}
		seen[k.Name] = true
	}
	for _, col := range c.Columns {
		if !sqlIdent.MatchString(col) || seen[col] {
			return bad(fmt.Sprintf("ciphertext column %q is not a plain identifier or repeats", col))
		}
		seen[col] = true
	}
	if c.AAD == nil {
		return bad("has no AAD function")
	}
	return nil
}

// Registry lists the encrypted columns of the whole program. Build it in
// main, before starting the re-encryptor, from each package's declaration.
type Registry struct {
	mu   sync.Mutex
	sets []EncryptedColumns
}

// Register adds a table's encrypted columns. A column may be registered
// once.
func (r *Registry) Register(c EncryptedColumns) error {
	if err := c.validate(); err != nil {
		return err
	}
	c.Key = slices.Clone(c.Key)
	c.Columns = slices.Clone(c.Columns)
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, s := range r.sets {
		if s.Table != c.Table {
			continue
		}
		for _, col := range c.Columns {
			if slices.Contains(s.Columns, col) {
				return errs.E(errs.Internal, "phi: column %s.%s is registered twice", c.Table, col)
			}
		}
	}
	r.sets = append(r.sets, c)
	return nil
}

func (r *Registry) snapshot() []EncryptedColumns {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.sets)
}

// ReencryptOptions tunes a Reencryptor. Zero values pick the defaults.
type ReencryptOptions struct {
	// BatchSize is the number of rows read and updated per transaction
	// (default 200): small enough that a batch never holds the SQLite
	// writer long enough for a request to notice.
	BatchSize int
	// RetireGrace is how long after a key stopped being primary the final
	// verification pass may start (default 5 minutes). Every node must have
	// reloaded its ring within this time (Ring.RefreshEvery with a shorter
	// interval), or a node that has not yet seen the rotation could seal a
	// row with the old key behind the pass.
	RetireGrace time.Duration
	// LeaseTTL is how long this re-encryptor's claim on the work lasts
	// without renewal (default 2 minutes); it is renewed with every batch.
	LeaseTTL time.Duration
	// MaxPassesPerRun bounds the passes over one table in one RunOnce
	// (default 3), so a writer that keeps sealing with an old key cannot
	// keep RunOnce busy forever.
	MaxPassesPerRun int
	// Clock returns the current time; nil means time.Now.
	Clock func() time.Time
	// Logger receives progress (table names, counts, key ids; never PHI).
	Logger *slog.Logger
}

// Reencryptor moves rows from old data keys to the primary one and retires
// the old keys once nothing uses them. See the package documentation for
// the invariants.
type Reencryptor struct {
	ring   *Ring
	reg    *Registry
	opts   ReencryptOptions
	holder string
}

// NewReencryptor returns a re-encryptor over the columns in reg.
func NewReencryptor(ring *Ring, reg *Registry, opts ReencryptOptions) *Reencryptor {
	if opts.BatchSize <= 0 {
		opts.BatchSize = 200
	}
	if opts.RetireGrace <= 0 {
		opts.RetireGrace = 5 * time.Minute
	}
	if opts.LeaseTTL <= 0 {
		opts.LeaseTTL = 2 * time.Minute
	}
	if opts.MaxPassesPerRun <= 0 {
		opts.MaxPassesPerRun = 3
	}
	if opts.Clock == nil {
		opts.Clock = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	var b [8]byte
	_, _ = rand.Read(b[:])
	return &Reencryptor{ring: ring, reg: reg, opts: opts, holder: hex.EncodeToString(b[:])}
}

// Progress reports what one RunOnce did.
type Progress struct {
	// Target is the primary data key rows were moved to.
	Target KeyID
	// Resealed counts rows this run re-encrypted.
	Resealed int
	// Conflicts counts rows a concurrent writer changed between our read and
	// our update; the writer's value stands and the next pass checks it.
	Conflicts int
	// Retired lists the keys this run retired.
	Retired []KeyID
	// Done: no key but the primary is in use; nothing to do until the next
	// rotation.
	Done bool
	// Busy: another node holds the lease; it is doing the work.
	Busy bool
	// WaitUntil, when set, is when the final verification pass may start
	// (see ReencryptOptions.RetireGrace).
	WaitUntil time.Time
}

const leaseName = "reencrypt"

var errLeaseLost = errors.New("phi: re-encryption lease lost")

// now returns the clock's time at the precision both databases keep, so a
// time compared after a round trip compares the same.
func (re *Reencryptor) now() time.Time {
	return re.opts.Clock().UTC().Truncate(time.Microsecond)
}

// RunOnce does the work that is possible now: re-encrypt every row on an
// old key, verify, and retire the old keys. It returns early, with the work
// saved, when ctx is cancelled, when the grace period has not passed, or
// when the primary key changes under it. Calling it again resumes.
func (re *Reencryptor) RunOnce(ctx context.Context) (Progress, error) {
	if err := re.ring.Reload(ctx); err != nil {
		return Progress{}, err
	}
	ks := re.ring.cur.Load()
	target := ks.primary
	p := Progress{Target: target.info.ID}
	var old []KeyInfo
	requiredSince := time.Time{}
	for _, d := range ks.keys {
		if d.info.Purpose == PurposeData && d.info.Status == StatusActive {
			old = append(old, d.info)
			if t := d.info.DemotedAt.Add(re.opts.RetireGrace); t.After(requiredSince) {
				requiredSince = t
			}
		}
	}
	if len(old) == 0 {
		p.Done = true
		return p, nil
	}
	got, err := re.acquireLease(ctx)
	if err != nil || !got {
		p.Busy = err == nil
		return p, err
	}
	defer re.releaseLease(ctx)

	allDone := true
	for _, set := range re.reg.snapshot() {
		done, wait, err := re.sweep(ctx, set, target, requiredSince, &p)
		if errors.Is(err, errLeaseLost) {
			p.Busy = true
			return p, nil
		}
		if err != nil {
			return p, err
		}
		if !wait.IsZero() {
			p.WaitUntil = wait
		}
		allDone = allDone && done
	}
	if !allDone {
		return p, nil
	}
	// With no registered column the sweeps above checked nothing; the grace
	// period still has to pass before no node can be sealing with an old key.
	if re.now().Before(requiredSince) {
		p.WaitUntil = requiredSince
		return p, nil
	}
	err = re.ring.db.Tx(ctx, func(tx store.Tx) error {
		if err := re.renewLease(ctx, tx); err != nil {
			return err
		}
		now := re.now()
		for _, k := range old {
			n, err := tx.Exec(ctx, `UPDATE phi_keys SET status = 'retired', retired_at = $1 WHERE id = $2 AND status = 'active'`, now, int64(k.ID))
			if err != nil {
				return fmt.Errorf("phi: retire %s: %w", k.ID, err)
			}
			if n == 1 {
				p.Retired = append(p.Retired, k.ID)
			}
		}
		return nil
	})
	if errors.Is(err, errLeaseLost) {
		p.Retired, p.Busy = nil, true
		return p, nil
	}
	if err != nil {
		return p, errs.Wrap(errs.Internal, err, "phi: retire keys")
	}
	slices.Sort(p.Retired)
	for _, id := range p.Retired {
		re.opts.Logger.Info("phi: retired a data key", "key_id", uint32(id))
	}
	p.Done = true
	return p, re.ring.Reload(ctx)
}

// Run calls RunOnce every interval until ctx is done, sooner when a run
// stopped with work left. Errors are logged and retried.
func (re *Reencryptor) Run(ctx context.Context, interval time.Duration) {
	for {
		p, err := re.RunOnce(ctx)
		if ctx.Err() != nil {
			return
		}
		wait := interval
		switch {
		case err != nil:
			re.opts.Logger.Warn("phi: re-encryption run failed", "err", err)
		case !p.WaitUntil.IsZero():
			wait = min(interval, max(time.Until(p.WaitUntil), 0))
		case !p.Done && !p.Busy && re.ring.Primary() != p.Target:
			wait = 0 // rotated again mid-run: aim at the new key now
		}
		if p.Resealed > 0 || p.Conflicts > 0 {
			re.opts.Logger.Info("phi: re-encrypted rows", "target_key_id", uint32(p.Target), "rows", p.Resealed, "conflicts", p.Conflicts)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// RunUntilDone calls RunOnce until every old data key is retired, waiting
// out the grace period and another node's lease as needed; it is what
// `careflow keys rotate --wait` runs. The returned Progress sums the runs.
func (re *Reencryptor) RunUntilDone(ctx context.Context) (Progress, error) {
	var total Progress
	for {
		p, err := re.RunOnce(ctx)
		total.Target = p.Target
		total.Resealed += p.Resealed
		total.Conflicts += p.Conflicts
		total.Retired = append(total.Retired, p.Retired...)
		if err != nil || p.Done {
			total.Done = p.Done
			return total, err
		}
		var wait time.Duration
		switch {
		case !p.WaitUntil.IsZero():
			wait = p.WaitUntil.Sub(re.now())
		case p.Busy:
			wait = re.opts.LeaseTTL / 4
		}
		if wait > 0 {
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
				return total, ctx.Err()
			case <-t.C:
			}
		}
	}
}

func (re *Reencryptor) acquireLease(ctx context.Context) (bool, error) {
	var got bool
	err := re.ring.db.Tx(ctx, func(tx store.Tx) error {
		if _, err := tx.Exec(ctx, `INSERT INTO phi_reencrypt_lease (name, holder, expires_at) VALUES ($1, '', $2) ON CONFLICT (name) DO NOTHING`,
			leaseName, time.Unix(0, 0)); err != nil {
			return err
		}
		now := re.now()
		n, err := tx.Exec(ctx, `UPDATE phi_reencrypt_lease SET holder = $1, expires_at = $2 WHERE name = $3 AND (holder = $1 OR expires_at < $4)`,
			re.holder, now.Add(re.opts.LeaseTTL), leaseName, now)
		got = n == 1
		return err
	})
	if err != nil {
		return false, errs.Wrap(errs.Unavailable, err, "phi: take the re-encryption lease")
	}
	return got, nil
}

// renewLease extends the lease inside a batch's transaction and fails it
// when another node has taken the lease, so only the holder ever writes
// cursors and the pass bookkeeping stays one worker's.
func (re *Reencryptor) renewLease(ctx context.Context, tx store.Tx) error {
	n, err := tx.Exec(ctx, `UPDATE phi_reencrypt_lease SET expires_at = $1 WHERE name = $2 AND holder = $3`,
		re.now().Add(re.opts.LeaseTTL), leaseName, re.holder)
	if err != nil {
		return err
	}
	if n != 1 {
		return errLeaseLost
	}
	return nil
}

func (re *Reencryptor) releaseLease(ctx context.Context) {
	// Even when ctx is cancelled: the lease would otherwise block other
	// nodes until it expires.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	_, _ = re.ring.db.Writer().Exec(ctx, `UPDATE phi_reencrypt_lease SET expires_at = $1 WHERE name = $2 AND holder = $3`,
		time.Unix(0, 0), leaseName, re.holder)
}

// cursor is the saved position of the pass over one EncryptedColumns.
type cursor struct {
	target      KeyID
	after       []any // nil: the pass has not read a row yet
	passStarted time.Time
	found       int64 // rows seen on a key older than target in this pass
	cleanStart  *time.Time
}

func (re *Reencryptor) loadCursor(ctx context.Context, set EncryptedColumns, target KeyID) (cursor, error) {
	var (
		c       cursor
		tgt     int64
		after   *string
		started time.Time
	)
	err := re.ring.db.Reader().QueryRow(ctx, `SELECT target_key_id, after_key, pass_started_at, pass_found, clean_pass_started_at FROM phi_reencrypt_cursors WHERE name = $1`,
		set.cursorName()).Scan(&tgt, &after, &started, &c.found, &c.cleanStart)
	if errors.Is(err, store.ErrNoRows) || (err == nil && KeyID(tgt) != target) {
		// A new rotation: start over towards the new target.
		return cursor{target: target, passStarted: re.now()}, nil
	}
	if err != nil {
		return cursor{}, errs.Wrap(errs.Unavailable, err, "phi: read re-encryption cursor of %s", set.Table)
	}
	c.target, c.passStarted = target, started
	if after != nil {
		if c.after, err = decodeKey(set.Key, *after); err != nil {
			return cursor{}, err
		}
	}
	return c, nil
}

func (re *Reencryptor) saveCursor(ctx context.Context, tx store.Tx, set EncryptedColumns, c cursor) error {
	var after *string
	if c.after != nil {
		b, err := json.Marshal(c.after)
		if err != nil {
			return err
		}
		s := string(b)
		after = &s
	}
	_, err := tx.Exec(ctx, `INSERT INTO phi_reencrypt_cursors (name, target_key_id, after_key, pass_started_at, pass_found, clean_pass_started_at, updated_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7)
		ON CONFLICT (name) DO UPDATE SET target_key_id = excluded.target_key_id, after_key = excluded.after_key,
			pass_started_at = excluded.pass_started_at, pass_found = excluded.pass_found,
			clean_pass_started_at = excluded.clean_pass_started_at, updated_at = excluded.updated_at`,
		set.cursorName(), int64(c.target), after, c.passStarted, c.found, c.cleanStart, re.now())
	return err
}

// decodeKey reads a saved cursor position back into typed key values.
func decodeKey(cols []KeyColumn, s string) ([]any, error) {
	dec := json.NewDecoder(strings.NewReader(s))
	dec.UseNumber()
	var raw []any
	if err := dec.Decode(&raw); err != nil || len(raw) != len(cols) {
		return nil, errs.E(errs.Internal, "phi: re-encryption cursor %q does not match the key columns", s)
	}
	out := make([]any, len(cols))
	for i, col := range cols {
		switch v := raw[i].(type) {
		case string:
			if col.Kind == KeyText {
				out[i] = v
				continue
			}
		case json.Number:
			if n, err := strconv.ParseInt(string(v), 10, 64); err == nil && col.Kind == KeyInteger {
				out[i] = n
				continue
			}
		}
		return nil, errs.E(errs.Internal, "phi: re-encryption cursor %q does not match the key columns", s)
	}
	return out, nil
}

// reseal is one row's pending compare-and-swap.
type reseal struct {
	key      []any
	column   string
	old, new []byte
}

// sweep runs passes over one set of columns until a pass that started at or
// after requiredSince finds every row on target (done), or it must stop:
// ctx, the pass limit, the primary changing, or the grace period (wait).
func (re *Reencryptor) sweep(ctx context.Context, set EncryptedColumns, target *dek, requiredSince time.Time, p *Progress) (done bool, wait time.Time, err error) {
	c, err := re.loadCursor(ctx, set, target.info.ID)
	if err != nil {
		return false, time.Time{}, err
	}
	selectSQL, updateSQL := sweepSQL(set, re.opts.BatchSize)
	passes := 0
	for {
		if c.after == nil && c.cleanStart != nil && !c.cleanStart.Before(requiredSince) {
			return true, time.Time{}, nil
		}
		if err := ctx.Err(); err != nil {
			return false, time.Time{}, err
		}
		if re.ring.Primary() != target.info.ID {
			return false, time.Time{}, nil // rotated again; the next run aims at the new key
		}
		if c.after == nil {
			// A pass begins now. If a clean pass already happened and only
			// the grace period is missing, wait rather than scan again.
			if c.cleanStart != nil && re.now().Before(requiredSince) {
				return false, requiredSince, nil
			}
			if passes == re.opts.MaxPassesPerRun {
				return false, time.Time{}, nil
			}
			passes++
			c.passStarted, c.found = re.now(), 0
		}
		rows, last, n, err := re.readBatch(ctx, set, selectSQL, c.after, target)
		if err != nil {
			return false, time.Time{}, err
		}
		c.found += int64(len(rows))
		endOfPass := n < re.opts.BatchSize
		if endOfPass {
			// cleanStart always describes the last completed pass.
			c.cleanStart = nil
			if c.found == 0 {
				started := c.passStarted
				c.cleanStart = &started
			}
			c.after = nil
		} else {
			c.after = last
		}
		var resealed, conflicts int
		err = re.ring.db.Tx(ctx, func(tx store.Tx) error {
			resealed, conflicts = 0, 0 // counted again if the transaction is retried
			if err := re.renewLease(ctx, tx); err != nil {
				return err
			}
			for _, r := range rows {
				args := append([]any{r.new}, r.key...)
				args = append(args, r.old)
				n, err := tx.Exec(ctx, updateSQL[r.column], args...)
				if err != nil {
					return fmt.Errorf("phi: re-encrypt %s.%s: %w", set.Table, r.column, err)
				}
				if n == 1 {
					resealed++
				} else {
					conflicts++
				}
			}
			return re.saveCursor(ctx, tx, set, c)
		})
		if err != nil {
			if errors.Is(err, errLeaseLost) {
				return false, time.Time{}, err
			}
			return false, time.Time{}, errs.Wrap(errs.Internal, err, "phi: re-encrypt %s", set.Table)
		}
		p.Resealed += resealed
		p.Conflicts += conflicts
	}
}

// readBatch reads the next batch after the cursor and prepares the rows
// that are not on target. n is the number of rows read; last is the key of
// the last one.
func (re *Reencryptor) readBatch(ctx context.Context, set EncryptedColumns, selectSQL [2]string, after []any, target *dek) (out []reseal, last []any, n int, err error) {
	// The target's ciphertext header goes last: rows already on the target
	// come back as NULL, so a verification pass reads keys, not bodies.
	var header [headerSize]byte
	header[0] = formatV1
	binary.BigEndian.PutUint32(header[1:], uint32(target.info.ID))
	q, args := selectSQL[0], append(slices.Clone(after), header[:])
	if after != nil {
		q = selectSQL[1]
	}
	rs, err := re.ring.db.Reader().Query(ctx, q, args...)
	if err != nil {
		return nil, nil, 0, errs.Wrap(errs.Unavailable, err, "phi: read %s", set.Table)
	}
	defer rs.Close()
	type row struct {
		key []any
		cts [][]byte
	}
	var batch []row
	for rs.Next() {
		strs := make([]string, len(set.Key))
		ints := make([]int64, len(set.Key))
		cts := make([][]byte, len(set.Columns))
		dest := make([]any, 0, len(set.Key)+len(set.Columns))
		for i, k := range set.Key {
			if k.Kind == KeyInteger {
				dest = append(dest, &ints[i])
			} else {
				dest = append(dest, &strs[i])
			}
		}
		for i := range cts {
			dest = append(dest, &cts[i])
		}
		if err := rs.Scan(dest...); err != nil {
			return nil, nil, 0, errs.Wrap(errs.Internal, err, "phi: read %s", set.Table)
		}
		key := make([]any, len(set.Key))
		for i, k := range set.Key {
			if k.Kind == KeyInteger {
				key[i] = ints[i]
			} else {
				key[i] = strs[i]
			}
		}
		batch = append(batch, row{key: key, cts: cts})
	}
	if err := rs.Err(); err != nil {
		return nil, nil, 0, errs.Wrap(errs.Unavailable, err, "phi: read %s", set.Table)
	}
	// Decrypt after the rows are closed: Open may reload the ring, which
	// needs a reader connection of its own.
	rs.Close()
	for _, r := range batch {
		for i, ct := range r.cts {
			if ct == nil {
				continue
			}
			col := set.Columns[i]
			id, err := KeyIDOf(ct)
			if err != nil {
				return nil, nil, 0, errs.Wrap(errs.Internal, err, "phi: %s.%s of row %v", set.Table, col, r.key)
			}
			// Ids only grow: a row on a key newer than the target was written
			// after another rotation and is the next run's business. Moving
			// it back would only make work.
			if id >= target.info.ID {
				continue
			}
			aad := set.AAD(r.key, col)
			pt, err := re.ring.Open(ctx, aad, ct)
			if err != nil {
				// A row that cannot be opened cannot be moved, and its key can
				// then never be retired: stop and say which row (ids are not PHI).
				return nil, nil, 0, errs.Wrap(errs.Internal, err, "phi: open %s.%s of row %v", set.Table, col, r.key)
			}
			sealed, err := re.ring.cur.Load().sealWith(target, aad, pt)
			clear(pt)
			if err != nil {
				return nil, nil, 0, err
			}
			out = append(out, reseal{key: r.key, column: col, old: ct, new: sealed})
		}
	}
	if len(batch) > 0 {
		last = batch[len(batch)-1].key
	}
	return out, last, len(batch), nil
}

// sweepSQL builds the statements for one set of columns: the first-batch and
// next-batch SELECTs, and one compare-and-swap UPDATE per column. Identifiers
// were checked by Register. Row-value comparison ((a, b) > ($1, $2)) walks a
// composite key in index order on both SQLite and PostgreSQL. Each
// ciphertext column is selected only when its first bytes (format and key
// id) differ from the target's header, the last parameter; substr on a
// BLOB or BYTEA counts bytes on both dialects.
func sweepSQL(set EncryptedColumns, batch int) (selects [2]string, updates map[string]string) {
	keys := make([]string, len(set.Key))
	params := make([]string, len(set.Key))
	for i, k := range set.Key {
		keys[i] = k.Name
		params[i] = "$" + strconv.Itoa(i+1)
	}
	keyList := strings.Join(keys, ", ")
	cols := func(headerParam int) string {
		out := make([]string, len(set.Columns))
		for i, c := range set.Columns {
			out[i] = fmt.Sprintf("CASE WHEN substr(%s, 1, %d) = $%d THEN NULL ELSE %s END", c, headerSize, headerParam, c)
		}
		return strings.Join(out, ", ")
	}
	order := " ORDER BY " + keyList + " LIMIT " + strconv.Itoa(batch)
	after := keyList + " > " + strings.Join(params, ", ")
	if len(keys) > 1 {
		after = "(" + keyList + ") > (" + strings.Join(params, ", ") + ")"
	}
	selects[0] = "SELECT " + keyList + ", " + cols(1) + " FROM " + set.Table + order
	selects[1] = "SELECT " + keyList + ", " + cols(len(keys)+1) + " FROM " + set.Table + " WHERE " + after + order

	updates = map[string]string{}
	for _, col := range set.Columns {
		conds := make([]string, len(keys))
		for i, k := range keys {
			conds[i] = k + " = $" + strconv.Itoa(i+2)
		}
		conds = append(conds, col+" = $"+strconv.Itoa(len(keys)+2))
		updates[col] = "UPDATE " + set.Table + " SET " + col + " = $1 WHERE " + strings.Join(conds, " AND ")
	}
	return selects, updates
}
