package audit

import (
	"context"
	"sync"
	"testing"

	"github.com/careflow/careflow/internal/store"
	"github.com/careflow/careflow/internal/store/storetest"
)

// Two nodes (two connection pools, two Logs, one database) appending at once
// must still produce one gap-free sequence: the head row, not the process,
// is what serialises appends.
func TestTwoNodesShareOneGapFreeLog(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		url := db.SQLitePath()
		if db.Dialect() == store.Postgres {
			url = db.Pool().Config().ConnString()
		}
		db2, err := store.Open(ctx, store.Config{URL: url})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db2.Close() })
		signer := testSigner(t)
		a, _, dir := openLog(t, db, func(o *Options) { o.Signer = signer; o.CheckpointEvery = 25 })
		b, _, _ := openLog(t, db2, func(o *Options) { o.Signer = signer; o.CheckpointEvery = 25; o.CheckpointDir = dir })
		const perNode, writers = 30, 3
		var wg sync.WaitGroup
		errc := make(chan error, 2*writers)
		for n, l := range []*Log{a, b} {
			for w := range writers {
				wg.Go(func() {
					for i := range perNode {
						if _, err := l.Append(ctx, sampleEntry(n*1000+w*100+i)); err != nil {
							errc <- err
							return
						}
					}
				})
			}
		}
		wg.Wait()
		close(errc)
		for err := range errc {
			t.Fatal(err)
		}
		const total = 2 * writers * perNode
		rep := verifyLog(t, db, a, dir)
		if rep.Tampered() || rep.TreeSize != total || rep.Entries != total {
			t.Fatalf("after two nodes appended %d entries: %+v", total, rep)
		}
		// Every count-based checkpoint was made exactly once, by one node.
		cps, err := Checkpoints(ctx, db)
		if err != nil {
			t.Fatal(err)
		}
		if len(cps) != total/25 {
			t.Fatalf("%d checkpoints, want %d", len(cps), total/25)
		}
	})
}
