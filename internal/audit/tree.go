package audit

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/careflow/careflow/internal/store"
)

// frontier is the right edge of a tree of size leaves: for every level l
// with size>>l > 0, the hash of the last complete node at that level, node
// (size>>l)-1. Those are exactly the stored hashes tlog reads to append the
// next leaf (the left siblings on its path) and to compute the root (the
// maximal complete subtrees), so a frontier of O(log n) hashes is enough to
// extend the tree and to sign its head without touching the rest of it.
type frontier struct {
	size  int64
	nodes []tlog.Hash // nodes[l] is node (size>>l)-1 at level l
}

func (f *frontier) clone() *frontier {
	return &frontier{size: f.size, nodes: append([]tlog.Hash(nil), f.nodes...)}
}

// ReadHashes serves tlog from the frontier; asking for anything else is a
// bug in the index arithmetic, not a cache miss.
func (f *frontier) ReadHashes(indexes []int64) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(indexes))
	for i, idx := range indexes {
		l, n := tlog.SplitStoredHashIndex(idx)
		if l >= len(f.nodes) || n != f.size>>l-1 {
			return nil, fmt.Errorf("audit: stored hash %d (level %d, node %d) is not on the frontier of a tree of size %d", idx, l, n, f.size)
		}
		out[i] = f.nodes[l]
	}
	return out, nil
}

// storedHash is one row of audit_hashes.
type storedHash struct {
	idx  int64
	hash tlog.Hash
}

// append adds a leaf and returns the stored hashes it completes (the leaf's
// own, then one per level whose node it completes).
func (f *frontier) append(leaf tlog.Hash) ([]storedHash, error) {
	hs, err := tlog.StoredHashesForRecordHash(f.size, leaf, f)
	if err != nil {
		return nil, err
	}
	out := make([]storedHash, len(hs))
	for l, h := range hs {
		out[l] = storedHash{idx: tlog.StoredHashIndex(l, f.size>>l), hash: h}
		if l < len(f.nodes) {
			f.nodes[l] = h
		} else {
			f.nodes = append(f.nodes, h)
		}
	}
	f.size++
	return out, nil
}

// root is the RFC 6962 hash of the whole tree.
func (f *frontier) root() (tlog.Hash, error) { return tlog.TreeHash(f.size, f) }

// frontierIndexes lists the stored-hash indexes of a frontier of size n, in
// level order.
func frontierIndexes(n int64) []int64 {
	var idx []int64
	for l := 0; n>>l > 0; l++ {
		idx = append(idx, tlog.StoredHashIndex(l, n>>l-1))
	}
	return idx
}

// loadFrontier reads the frontier of a tree of size n from audit_hashes.
func loadFrontier(ctx context.Context, q store.Querier, n int64) (*frontier, error) {
	f := &frontier{size: n}
	idx := frontierIndexes(n)
	if len(idx) == 0 {
		return f, nil
	}
	var sb strings.Builder
	args := make([]any, len(idx))
	for i, x := range idx {
		if i > 0 {
			sb.WriteString(", ")
		}
		sb.WriteString("$" + strconv.Itoa(i+1))
		args[i] = x
	}
	rows, err := q.Query(ctx, `SELECT idx, hash FROM audit_hashes WHERE idx IN (`+sb.String()+`)`, args...)
	if err != nil {
		return nil, fmt.Errorf("audit: read tree frontier: %w", err)
	}
	defer rows.Close()
	got := make(map[int64]tlog.Hash, len(idx))
	for rows.Next() {
		var i int64
		var b []byte
		if err := rows.Scan(&i, &b); err != nil {
			return nil, fmt.Errorf("audit: read tree frontier: %w", err)
		}
		if len(b) != tlog.HashSize {
			return nil, fmt.Errorf("audit: stored hash %d has %d bytes", i, len(b))
		}
		got[i] = tlog.Hash(b)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("audit: read tree frontier: %w", err)
	}
	f.nodes = make([]tlog.Hash, len(idx))
	for l, x := range idx {
		h, ok := got[x]
		if !ok {
			return nil, fmt.Errorf("audit: stored hash %d of a tree of size %d is missing (run `careflow audit verify`)", x, n)
		}
		f.nodes[l] = h
	}
	return f, nil
}
