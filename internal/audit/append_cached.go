package audit

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/careflow/careflow/internal/store"
)

// The appender's fast path: a group of entries appended on the tree this
// process committed last, without reading the head or the frontier first.
//
// appendLocked reads the head row under its lock, then inserts the entries
// and their stored hashes and moves the head: on PostgreSQL six round trips
// with BEGIN and COMMIT, while the head's lock is held from the first to the
// last (each round trip 0.2-0.3 ms on a busy box, so the lock, and with it
// every audited request of every node, waited ~1.3 ms per group before the
// commit's own flush). When the appender knows the head it left, it can
// instead make the whole append conditional on the head still being there:
// the head row moves from the cached size to the new one only if its size is
// still the cached one, and the entries and hashes are inserted only if it
// did. On PostgreSQL that is one statement in its own transaction (one round
// trip, the commit included); on SQLite a transaction of three statements
// instead of four. Anything else — another node or a workflow step's
// transaction (AppendTx, AppendAtCommit) appended meanwhile, a checkpoint
// falls due in the group, the group is too large for one statement — takes
// the locked path, which is what the fast path must be equal to:
//   - sequence numbers stay gap-free and in order: the conditional update
//     takes the head's row lock and re-checks the size after any other
//     writer committed (PostgreSQL's read committed re-evaluates the WHERE
//     on the newest row version), so exactly one of two racing appends from
//     the same size moves the head, and the other inserts nothing;
//   - the leaves and stored hashes are computed from the cached frontier,
//     which is the frontier of that size (it is only ever set from an
//     append this process committed);
//   - checkpoints are only made on the locked path: the fast path refuses a
//     group at which one falls due, by count or by time (the cached head's
//     checkpoint time can only be older than the stored one, which makes
//     it refuse sooner, never later), and it never writes the checkpoint
//     columns, so a checkpoint another node made is kept.

// errHeadMoved rolls back a SQLite fast-path transaction whose head was
// not the cached one.
var errHeadMoved = errors.New("audit: the head moved")

// maxFastParams bounds the parameters of the one statement (PostgreSQL
// allows 65535; SQLite's three statements each stay under maxParams).
const maxFastParams = 16000

// appendCached appends entries on the cached tail when it can. ok reports
// whether it did; when it did not and err is nil, the caller takes the
// locked path.
func (l *Log) appendCached(ctx context.Context, entries []Entry) (res appended, ok bool, err error) {
	if l.cache == nil || l.cacheHead.checkpointAt == nil || l.cacheHead.size != l.cache.size {
		return appended{}, false, nil
	}
	h := l.cacheHead
	f := l.cache.clone()
	now := stampTime(l.now())
	hashes := make([]storedHash, 0, 2*len(entries)+8)
	for i := range entries {
		entries[i].Seq = f.size
		entries[i].Time = now
		hs, err := f.append(entries[i].LeafHash())
		if err != nil {
			return appended{}, false, err
		}
		hashes = append(hashes, hs...)
		if l.every > 0 && f.size%l.every == 0 {
			return appended{}, false, nil
		}
	}
	if l.interval > 0 && h.checkpointSize < f.size && now.Sub(*h.checkpointAt) >= l.interval {
		return appended{}, false, nil
	}
	if len(entries)*entryColumnCount+2*len(hashes)+2 > maxFastParams {
		return appended{}, false, nil
	}
	next := head{size: f.size, checkpointSize: h.checkpointSize, checkpointAt: h.checkpointAt}
	if l.db.Dialect() == store.Postgres {
		q, args := appendStatement(h.size, f.size, entries, hashes)
		n, err := l.db.Writer().Exec(ctx, q, args...)
		if err != nil {
			return appended{}, false, fmt.Errorf("audit: append: %w", err)
		}
		if n == 0 {
			return appended{}, false, nil
		}
		return appended{f: f, h: next}, true, nil
	}
	err = l.db.Tx(ctx, func(tx store.Tx) error {
		n, err := tx.Exec(ctx, `UPDATE audit_head SET tree_size = $1 WHERE singleton = 1 AND tree_size = $2`, f.size, h.size)
		if err != nil {
			return fmt.Errorf("audit: update head: %w", err)
		}
		if n == 0 {
			return errHeadMoved
		}
		if err := insertEntries(ctx, tx, entries); err != nil {
			return err
		}
		return insertHashes(ctx, tx, hashes)
	})
	if errors.Is(err, errHeadMoved) {
		return appended{}, false, nil
	}
	if err != nil {
		return appended{}, false, err
	}
	return appended{f: f, h: next}, true, nil
}

// appendStatement is PostgreSQL's one-statement append: the head moves
// from size to next only if it is still at size (h returns its row then),
// and each insert takes its rows joined to h, so they insert nothing when
// the head did not move. The casts type the VALUES lists, which PostgreSQL
// would otherwise read as text.
func appendStatement(size, next int64, entries []Entry, hashes []storedHash) (string, []any) {
	args := make([]any, 0, 2+len(entries)*entryColumnCount+2*len(hashes))
	var sb strings.Builder
	param := func(v any, cast string) {
		args = append(args, v)
		sb.WriteByte('$')
		sb.WriteString(strconv.Itoa(len(args)))
		sb.WriteString(cast)
	}
	sb.WriteString(`WITH h AS (UPDATE audit_head SET tree_size = `)
	param(next, "::bigint")
	sb.WriteString(` WHERE singleton = 1 AND tree_size = `)
	param(size, "::bigint")
	sb.WriteString(` RETURNING tree_size), e AS (INSERT INTO audit_entries (` + entryColumns + `) SELECT v.* FROM h, (VALUES `)
	casts := [entryColumnCount]string{"::bigint", "::timestamptz"}
	for i := 2; i < entryColumnCount; i++ {
		casts[i] = "::text"
	}
	for i, e := range entries {
		if i > 0 {
			sb.WriteString(", ")
		}
		sb.WriteByte('(')
		for j, v := range entryRow(e) {
			if j > 0 {
				sb.WriteString(", ")
			}
			param(v, casts[j])
		}
		sb.WriteByte(')')
	}
	sb.WriteString(`) AS v (` + entryColumns + `)), x AS (INSERT INTO audit_hashes (idx, hash) SELECT v.* FROM h, (VALUES `)
	for i, hs := range hashes {
		if i > 0 {
			sb.WriteString(", ")
		}
		sb.WriteByte('(')
		param(hs.idx, "::bigint")
		sb.WriteString(", ")
		param(hs.hash[:], "::bytea")
		sb.WriteByte(')')
	}
	sb.WriteString(`) AS v (idx, hash)) SELECT tree_size FROM h`)
	return sb.String(), args
}
