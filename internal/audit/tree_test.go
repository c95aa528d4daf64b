package audit

import (
	"encoding/binary"
	"testing"

	"golang.org/x/mod/sumdb/tlog"
)

// memHashes keeps every stored hash, the way tlog's own tests do, as the
// reference the frontier must agree with.
type memHashes []tlog.Hash

func (m memHashes) ReadHashes(idx []int64) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(idx))
	for i, x := range idx {
		out[i] = m[x]
	}
	return out, nil
}

func TestFrontierAgreesWithTlog(t *testing.T) {
	t.Parallel()
	var all memHashes
	f := &frontier{}
	for n := int64(0); n < 300; n++ {
		var b [8]byte
		binary.BigEndian.PutUint64(b[:], uint64(n))
		leaf := tlog.RecordHash(b[:])
		want, err := tlog.StoredHashesForRecordHash(n, leaf, all)
		if err != nil {
			t.Fatal(err)
		}
		got, err := f.append(leaf)
		if err != nil {
			t.Fatalf("size %d: %v", n, err)
		}
		if len(got) != len(want) {
			t.Fatalf("size %d: %d stored hashes, want %d", n, len(got), len(want))
		}
		for i := range want {
			if got[i].idx != int64(len(all))+int64(i) || got[i].hash != want[i] {
				t.Fatalf("size %d: stored hash %d = (%d, %v), want (%d, %v)", n, i, got[i].idx, got[i].hash, len(all)+i, want[i])
			}
		}
		all = append(all, want...)
		wantRoot, err := tlog.TreeHash(n+1, all)
		if err != nil {
			t.Fatal(err)
		}
		gotRoot, err := f.root()
		if err != nil || gotRoot != wantRoot {
			t.Fatalf("size %d: root %v (%v), want %v", n+1, gotRoot, err, wantRoot)
		}
		// A frontier rebuilt from the stored hashes is the same frontier.
		var rebuilt frontier
		rebuilt.size = n + 1
		for _, x := range frontierIndexes(n + 1) {
			rebuilt.nodes = append(rebuilt.nodes, all[x])
		}
		if r, err := rebuilt.root(); err != nil || r != wantRoot {
			t.Fatalf("size %d: rebuilt frontier root %v (%v), want %v", n+1, r, err, wantRoot)
		}
	}
}

func TestLeavesWithHashes(t *testing.T) {
	t.Parallel()
	if got := leavesWithHashes(-1); got != 0 {
		t.Errorf("no hashes: %d leaves", got)
	}
	for n := int64(1); n < 200; n++ {
		maxIdx := tlog.StoredHashCount(n) - 1
		if got := leavesWithHashes(maxIdx); got != n {
			t.Fatalf("stored hashes of %d leaves imply %d", n, got)
		}
	}
}
