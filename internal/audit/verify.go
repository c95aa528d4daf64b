package audit

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"maps"
	"os"
	"slices"
	"time"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/careflow/careflow/internal/store"
)

// FindingKind names what verification found.
type FindingKind string

// The kinds of finding. All but CheckpointFileMissing are evidence of
// tampering (or of corruption, which the log cannot tell apart).
const (
	// EntryModified: the entry's content no longer hashes to the leaf
	// recorded when it was appended.
	EntryModified FindingKind = "entry_modified"
	// EntryMoved: the entry at this position is one that was appended at
	// another position (Finding.Other): entries were swapped or reordered.
	EntryMoved FindingKind = "entry_moved"
	// EntryMissing: positions Seq..Seq+Count-1 have no entry (deleted).
	EntryMissing FindingKind = "entry_missing"
	// EntryUnreadable: the row cannot be decoded (a value of the wrong shape).
	EntryUnreadable FindingKind = "entry_unreadable"
	// HashMissing: the stored leaf hash of an entry is gone; the entry
	// cannot be pinned to a position except through the checkpoints.
	HashMissing FindingKind = "hash_missing"
	// TailTruncated: entries from Seq on were removed from the end.
	TailTruncated FindingKind = "tail_truncated"
	// CheckpointForged: a checkpoint whose signature does not verify with a
	// trusted key, or that is not a well-formed signed tree head.
	CheckpointForged FindingKind = "checkpoint_forged"
	// CheckpointMismatch: a validly signed checkpoint whose root is not the
	// root of the entries: something in Seq..CheckpointSize-1 was altered
	// (together with its stored hashes, or the entry finding would say
	// which).
	CheckpointMismatch FindingKind = "checkpoint_mismatch"
	// CheckpointConflict: two records of the checkpoint at one size
	// disagree (database row against its own note, or database against the
	// file).
	CheckpointConflict FindingKind = "checkpoint_conflict"
	// CheckpointRowMissing: the directory has a valid checkpoint the
	// database does not: a checkpoint row was removed.
	CheckpointRowMissing FindingKind = "checkpoint_row_missing"
	// CheckpointFileMissing: the database has a valid checkpoint the
	// directory does not. A warning: it happens when a node crashed between
	// commit and file write, or verify ran between them.
	CheckpointFileMissing FindingKind = "checkpoint_file_missing"
)

// Finding is one problem verification found, with its position.
type Finding struct {
	Kind FindingKind `json:"kind"`
	// Seq is the first entry position at fault, or -1 when the finding is
	// about a checkpoint alone.
	Seq int64 `json:"seq"`
	// Count is how many positions an EntryMissing or TailTruncated covers.
	Count int64 `json:"count,omitempty"`
	// Other is, for EntryMoved, the position the entry was appended at.
	Other int64 `json:"other,omitempty"`
	// CheckpointSize is the tree size of the checkpoint concerned.
	CheckpointSize int64 `json:"checkpoint_size,omitempty"`
	// Source is "database" or the checkpoint file's path.
	Source string `json:"source,omitempty"`
	// Warning marks a finding that is not evidence of tampering.
	Warning bool `json:"warning,omitempty"`
	// Detail says what is wrong, for people.
	Detail string `json:"detail"`
}

func (f Finding) String() string {
	var where string
	switch {
	case f.Kind == EntryMissing || f.Kind == TailTruncated:
		where = fmt.Sprintf("entries %d..%d", f.Seq, f.Seq+f.Count-1)
		if f.Count == 1 {
			where = fmt.Sprintf("entry %d", f.Seq)
		}
	case f.Seq >= 0 && f.CheckpointSize > 0:
		where = fmt.Sprintf("checkpoint %d (entries %d..%d)", f.CheckpointSize, f.Seq, f.CheckpointSize-1)
	case f.Seq >= 0:
		where = fmt.Sprintf("entry %d", f.Seq)
	default:
		where = fmt.Sprintf("checkpoint %d", f.CheckpointSize)
	}
	level := "TAMPERED"
	if f.Warning {
		level = "warning"
	}
	s := fmt.Sprintf("%s %s %s: %s", level, f.Kind, where, f.Detail)
	if f.Source != "" {
		s += " [" + f.Source + "]"
	}
	return s
}

// VerifyOptions configures Verify.
type VerifyOptions struct {
	// Verifiers are the trusted checkpoint keys (see ReadVerifiers and
	// NewVerifiers). Required.
	Verifiers note.Verifiers
	// CheckpointDir is the directory of checkpoint files; empty checks the
	// database's checkpoints only.
	CheckpointDir string
	// MaxFindings caps the findings listed (the rest are counted in
	// Report.Omitted); zero means 1000.
	MaxFindings int
}

// Report is the result of a verification.
type Report struct {
	// TreeSize is the size the entries claim: the highest sequence number
	// plus one.
	TreeSize int64 `json:"tree_size"`
	// Entries is the number of entry rows read.
	Entries int64 `json:"entries"`
	// Root is the recomputed root of the first TreeSize positions.
	Root string `json:"root"`
	// DatabaseCheckpoints and FileCheckpoints count the checkpoints seen.
	DatabaseCheckpoints int `json:"database_checkpoints"`
	FileCheckpoints     int `json:"file_checkpoints"`
	// CheckpointsMatched counts validly signed checkpoints whose root the
	// entries reproduce.
	CheckpointsMatched int `json:"checkpoints_matched"`
	// Findings lists what is wrong, in the order found.
	Findings []Finding `json:"findings"`
	// Omitted counts findings beyond VerifyOptions.MaxFindings.
	Omitted int `json:"omitted,omitempty"`
}

// Tampered reports whether any finding is evidence of tampering.
func (r *Report) Tampered() bool {
	if r.Omitted > 0 {
		return true
	}
	for _, f := range r.Findings {
		if !f.Warning {
			return true
		}
	}
	return false
}

const sourceDatabase = "database"

// trusted is a validly signed checkpoint from one source.
type trusted struct {
	root   tlog.Hash
	source string
}

// Verify checks the audit log of db from the entries up. It recomputes every
// leaf hash from the entry rows (never trusting a stored leaf), rebuilds the
// tree in sequence order, and compares its root at every checkpoint size
// with every validly signed checkpoint, in the database and in the
// directory. The stored hashes serve only to name the entry at fault: an
// entry whose recomputed leaf differs from its stored one is reported, and
// its stored leaf stands in for it afterwards, so that the remaining
// checkpoints test the rest of the log independently. A signed root the
// entries do not reproduce means something changed in the range since the
// last matching checkpoint.
//
// Verify reads with ordinary queries while the server may be appending: it
// fixes the tree size after reading the checkpoints, so entries appended
// meanwhile are neither read nor missed.
func Verify(ctx context.Context, db *store.DB, opts VerifyOptions) (*Report, error) {
	if opts.Verifiers == nil {
		return nil, errors.New("audit verify: no trusted verifier keys")
	}
	v := &verifier{opts: opts, rep: &Report{}, dbSizes: map[int64]bool{}}
	if v.opts.MaxFindings <= 0 {
		v.opts.MaxFindings = 1000
	}
	checks := map[int64][]trusted{}
	files := map[int64]trusted{}
	if opts.CheckpointDir != "" {
		if err := v.readFiles(files); err != nil {
			return nil, err
		}
	}
	dbRoots, err := v.readDatabaseCheckpoints(ctx, db)
	if err != nil {
		return nil, err
	}
	// Sizes in order, so findings come out in the same order every run.
	for _, size := range slices.Sorted(maps.Keys(dbRoots)) {
		t := dbRoots[size]
		checks[size] = append(checks[size], t)
		if opts.CheckpointDir == "" {
			continue
		}
		if ft, ok := files[size]; !ok {
			v.add(Finding{Kind: CheckpointFileMissing, Seq: -1, CheckpointSize: size, Warning: true, Source: sourceDatabase,
				Detail: "valid checkpoint is not in the checkpoint directory"})
		} else if ft.root != t.root {
			v.add(Finding{Kind: CheckpointConflict, Seq: -1, CheckpointSize: size, Source: ft.source,
				Detail: "the file and the database hold different validly signed roots for one size (a fork, or a stolen key)"})
		}
	}
	for _, size := range slices.Sorted(maps.Keys(files)) {
		ft := files[size]
		if _, ok := dbRoots[size]; !ok {
			checks[size] = append(checks[size], ft)
			if v.dbSizes[size] {
				continue // the row is there but forged; that is reported already
			}
			v.add(Finding{Kind: CheckpointRowMissing, Seq: -1, CheckpointSize: size, Source: ft.source,
				Detail: "valid checkpoint file has no row in the database (the row was removed)"})
		} else if dbRoots[size].root != ft.root {
			checks[size] = append(checks[size], ft)
		}
	}

	// Bookkeeping the appender keeps alongside the entries; read before
	// the tree size so that concurrent appends cannot make them look
	// ahead of it.
	h, err := readHead(ctx, db.Reader(), "")
	if err != nil {
		return nil, err
	}
	var maxIdx int64
	if err := db.Reader().QueryRow(ctx, `SELECT COALESCE(MAX(idx), -1) FROM audit_hashes`).Scan(&maxIdx); err != nil {
		return nil, fmt.Errorf("audit verify: read stored hashes: %w", err)
	}
	var size int64
	if err := db.Reader().QueryRow(ctx, `SELECT COALESCE(MAX(seq), -1) + 1 FROM audit_entries`).Scan(&size); err != nil {
		return nil, fmt.Errorf("audit verify: read entries: %w", err)
	}
	v.rep.TreeSize = size
	if err := v.walk(ctx, db, size, checks); err != nil {
		return nil, err
	}

	// Truncation: a signed checkpoint, the head row or the stored hashes
	// show more entries than there are.
	var maxSigned int64
	for s := range checks {
		maxSigned = max(maxSigned, s)
	}
	switch hashes := leavesWithHashes(maxIdx); {
	case maxSigned > size:
		v.add(Finding{Kind: TailTruncated, Seq: size, Count: maxSigned - size, CheckpointSize: maxSigned,
			Detail: fmt.Sprintf("the log ends after %d entries but a validly signed checkpoint covers %d", size, maxSigned)})
	case h.size > size:
		v.add(Finding{Kind: TailTruncated, Seq: size, Count: h.size - size,
			Detail: fmt.Sprintf("the log ends after %d entries but its head records %d (appended after the last checkpoint)", size, h.size)})
	case hashes > size:
		v.add(Finding{Kind: TailTruncated, Seq: size, Count: hashes - size,
			Detail: fmt.Sprintf("the log ends after %d entries but stored hashes exist for %d (appended after the last checkpoint)", size, hashes)})
	}
	v.classifyMismatches()
	return v.rep, nil
}

type verifier struct {
	opts       VerifyOptions
	rep        *Report
	mismatches []mismatch
	// dbSizes holds the size of every checkpoint row, valid or not.
	dbSizes map[int64]bool
}

type mismatch struct {
	seq            int64
	leaf, recorded tlog.Hash
}

func (v *verifier) add(f Finding) {
	if len(v.rep.Findings) >= v.opts.MaxFindings {
		v.rep.Omitted++
		return
	}
	v.rep.Findings = append(v.rep.Findings, f)
}

// readFiles checks every checkpoint file and returns the valid ones by size.
func (v *verifier) readFiles(out map[int64]trusted) error {
	list, err := listCheckpointFiles(v.opts.CheckpointDir)
	if err != nil {
		return fmt.Errorf("audit verify: read checkpoint directory: %w", err)
	}
	for _, cf := range list {
		v.rep.FileCheckpoints++
		msg, err := os.ReadFile(cf.path)
		if err != nil {
			return fmt.Errorf("audit verify: read checkpoint file: %w", err)
		}
		cp, root, err := openCheckpoint(msg, v.opts.Verifiers)
		switch {
		case cf.size < 0:
			v.add(Finding{Kind: CheckpointForged, Seq: -1, Source: cf.path, Detail: "checkpoint file name is not <size>.checkpoint"})
		case err != nil:
			v.add(Finding{Kind: CheckpointForged, Seq: -1, CheckpointSize: cf.size, Source: cf.path, Detail: err.Error()})
		case cp.Size != cf.size:
			v.add(Finding{Kind: CheckpointForged, Seq: -1, CheckpointSize: cf.size, Source: cf.path,
				Detail: fmt.Sprintf("file is named for size %d but its signed head is for size %d", cf.size, cp.Size)})
		default:
			out[cf.size] = trusted{root: root, source: cf.path}
		}
	}
	return nil
}

// readDatabaseCheckpoints checks every checkpoint row and returns the valid
// ones by size.
func (v *verifier) readDatabaseCheckpoints(ctx context.Context, db *store.DB) (map[int64]trusted, error) {
	rows, err := db.Reader().Query(ctx, `SELECT tree_size, root_hash, note FROM audit_checkpoints ORDER BY tree_size`)
	if err != nil {
		return nil, fmt.Errorf("audit verify: read checkpoints: %w", err)
	}
	defer rows.Close()
	out := map[int64]trusted{}
	for rows.Next() {
		var size int64
		var rootCol []byte
		var msg string
		if err := rows.Scan(&size, &rootCol, &msg); err != nil {
			return nil, fmt.Errorf("audit verify: read checkpoints: %w", err)
		}
		v.rep.DatabaseCheckpoints++
		v.dbSizes[size] = true
		cp, root, err := openCheckpoint([]byte(msg), v.opts.Verifiers)
		switch {
		case err != nil:
			v.add(Finding{Kind: CheckpointForged, Seq: -1, CheckpointSize: size, Source: sourceDatabase, Detail: err.Error()})
		case cp.Size != size || !bytes.Equal(rootCol, root[:]):
			v.add(Finding{Kind: CheckpointConflict, Seq: -1, CheckpointSize: size, Source: sourceDatabase,
				Detail: fmt.Sprintf("the row's size and root columns disagree with its signed note (size %d)", cp.Size)})
			out[cp.Size] = trusted{root: root, source: sourceDatabase}
		default:
			out[size] = trusted{root: root, source: sourceDatabase}
		}
	}
	return out, rows.Err()
}

// walk recomputes the tree over positions 0..size-1 and checks it against
// every trusted checkpoint within that size.
func (v *verifier) walk(ctx context.Context, db *store.DB, size int64, checks map[int64][]trusted) error {
	// Entry times on SQLite are read as text and parsed here, so a
	// malformed value becomes a finding about that entry rather than an
	// error that stops verification.
	timeCol := "occurred_at"
	if db.Dialect() == store.SQLite {
		timeCol = "CAST(occurred_at AS TEXT)"
	}
	rows, err := db.Reader().Query(ctx, `SELECT seq, `+timeCol+`, actor, role, action, resource_type, resource_id, patient_id, purpose, outcome, severity, request_id, client_addr
		FROM audit_entries WHERE seq < $1 ORDER BY seq`, size)
	if err != nil {
		return fmt.Errorf("audit verify: read entries: %w", err)
	}
	defer rows.Close()
	hrows, err := db.Reader().Query(ctx, `SELECT idx, hash FROM audit_hashes WHERE idx < $1 ORDER BY idx`, tlog.StoredHashCount(size))
	if err != nil {
		return fmt.Errorf("audit verify: read stored hashes: %w", err)
	}
	defer hrows.Close()
	hc := &hashCursor{rows: hrows}

	f := &frontier{}
	var lastGood int64
	mismatchRun := false
	extend := func(leaf tlog.Hash) error {
		if _, err := f.append(leaf); err != nil {
			return err
		}
		ts := checks[f.size]
		if len(ts) == 0 {
			return nil
		}
		root, err := f.root()
		if err != nil {
			return err
		}
		bad := false
		for _, t := range ts {
			if t.root == root {
				v.rep.CheckpointsMatched++
				continue
			}
			bad = true
			// One finding per stretch of failing checkpoints: the later
			// ones fail for the same reason and add nothing.
			if !mismatchRun {
				v.add(Finding{Kind: CheckpointMismatch, Seq: lastGood, CheckpointSize: f.size, Source: t.source,
					Detail: "validly signed root is not the root of the entries: an entry in this range was altered or removed along with its stored hashes, or the root never existed"})
			}
		}
		if bad {
			mismatchRun = true
		} else {
			mismatchRun = false
			lastGood = f.size
		}
		return nil
	}

	for rows.Next() {
		var e Entry
		var at any
		var action, outcome, severity string
		if err := rows.Scan(&e.Seq, &at, &e.Actor, &e.Role, &action, &e.ResourceType, &e.ResourceID,
			&e.PatientID, &e.Purpose, &outcome, &severity, &e.RequestID, &e.ClientAddr); err != nil {
			return fmt.Errorf("audit verify: read entries: %w", err)
		}
		v.rep.Entries++
		e.Action, e.Outcome, e.Severity = Action(action), Outcome(outcome), Severity(severity)
		// Positions with no row: deleted entries. Their stored leaves
		// stand in so that checkpoints keep testing the rest.
		if e.Seq > f.size {
			v.add(Finding{Kind: EntryMissing, Seq: f.size, Count: e.Seq - f.size,
				Detail: "no entry at these positions (deleted)"})
			for f.size < e.Seq {
				recorded, ok, err := hc.leaf(f.size)
				if err != nil {
					return err
				}
				if !ok {
					recorded = tlog.Hash{}
				}
				if err := extend(recorded); err != nil {
					return err
				}
			}
		}
		recorded, haveRecorded, err := hc.leaf(e.Seq)
		if err != nil {
			return err
		}
		t, ok := parseEntryTime(at)
		if !ok {
			v.add(Finding{Kind: EntryUnreadable, Seq: e.Seq, Detail: "the entry's time is not a valid timestamp"})
			if err := extend(recorded); err != nil {
				return err
			}
			continue
		}
		e.Time = t
		leaf := e.LeafHash()
		switch {
		case !haveRecorded:
			v.add(Finding{Kind: HashMissing, Seq: e.Seq, Detail: "the entry's stored leaf hash is missing (removed from audit_hashes)"})
		case leaf != recorded:
			v.mismatches = append(v.mismatches, mismatch{seq: e.Seq, leaf: leaf, recorded: recorded})
			leaf = recorded
		}
		if err := extend(leaf); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("audit verify: read entries: %w", err)
	}
	if err := hc.err; err != nil {
		return err
	}
	root, err := f.root()
	if err != nil {
		return err
	}
	v.rep.Root = root.String()
	return ctx.Err()
}

// classifyMismatches reports entries whose content changed, telling moved
// entries (their leaf is one recorded at another position) from edited ones.
func (v *verifier) classifyMismatches() {
	recordedAt := make(map[tlog.Hash]int64, len(v.mismatches))
	for _, m := range v.mismatches {
		recordedAt[m.recorded] = m.seq
	}
	for _, m := range v.mismatches {
		if other, ok := recordedAt[m.leaf]; ok && other != m.seq {
			v.add(Finding{Kind: EntryMoved, Seq: m.seq, Other: other,
				Detail: fmt.Sprintf("holds the entry appended at position %d (entries swapped or reordered)", other)})
			continue
		}
		v.add(Finding{Kind: EntryModified, Seq: m.seq, Detail: "the entry's content no longer hashes to the leaf recorded when it was appended (edited)"})
	}
}

func parseEntryTime(v any) (time.Time, bool) {
	switch t := v.(type) {
	case time.Time:
		return t.UTC(), true
	case string:
		p, err := time.Parse(time.RFC3339Nano, t)
		return p.UTC(), err == nil
	case []byte:
		p, err := time.Parse(time.RFC3339Nano, string(t))
		return p.UTC(), err == nil
	}
	return time.Time{}, false
}

// hashCursor walks audit_hashes in index order alongside the entries.
type hashCursor struct {
	rows  store.Rows
	cur   storedHash
	valid bool
	done  bool
	err   error
}

// leaf returns the stored leaf hash of position seq, if there is one.
func (c *hashCursor) leaf(seq int64) (tlog.Hash, bool, error) {
	idx := tlog.StoredHashIndex(0, seq)
	for !c.done && (!c.valid || c.cur.idx < idx) {
		if !c.rows.Next() {
			c.done = true
			if err := c.rows.Err(); err != nil {
				c.err = fmt.Errorf("audit verify: read stored hashes: %w", err)
				return tlog.Hash{}, false, c.err
			}
			break
		}
		var b []byte
		if err := c.rows.Scan(&c.cur.idx, &b); err != nil {
			c.err = fmt.Errorf("audit verify: read stored hashes: %w", err)
			return tlog.Hash{}, false, c.err
		}
		// A hash of the wrong length cannot equal a leaf; an all-zero
		// stand-in keeps the comparison failing without a special case.
		c.cur.hash = tlog.Hash{}
		if len(b) == tlog.HashSize {
			c.cur.hash = tlog.Hash(b)
		}
		c.valid = true
	}
	if c.valid && c.cur.idx == idx {
		return c.cur.hash, true, nil
	}
	return tlog.Hash{}, false, nil
}

// leavesWithHashes is the number of leaves whose stored hash index is at
// most maxIdx: the tree size the stored hashes imply.
func leavesWithHashes(maxIdx int64) int64 {
	lo, hi := int64(0), maxIdx+1 // every leaf has its own stored hash, so at most maxIdx+1 leaves
	for lo < hi {
		mid := (lo + hi + 1) / 2
		if tlog.StoredHashIndex(0, mid-1) <= maxIdx {
			lo = mid
		} else {
			hi = mid - 1
		}
	}
	return lo
}

func hashString(b []byte) string { return base64.StdEncoding.EncodeToString(b) }
