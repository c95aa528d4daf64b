package audit

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/careflow/careflow/internal/store"
	"github.com/careflow/careflow/internal/store/storetest"
)

func TestConcurrentAppendsAreGapFreeAndOrdered(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		l, _, dir := openLog(t, db, func(o *Options) { o.CheckpointEvery = 50; o.MaxBatch = 16 })
		const writers, each = 8, 40
		var mu sync.Mutex
		got := map[int64]Entry{}
		var wg sync.WaitGroup
		errc := make(chan error, writers)
		for w := range writers {
			wg.Go(func() {
				for i := range each {
					in := sampleEntry(w*each + i)
					out, err := l.Append(ctx, in)
					if err != nil {
						errc <- err
						return
					}
					if out.ResourceID != in.ResourceID || out.Time.IsZero() {
						errc <- errors.New("Append returned a different entry")
						return
					}
					mu.Lock()
					if _, dup := got[out.Seq]; dup {
						errc <- errors.New("a sequence number was handed out twice")
					}
					got[out.Seq] = out
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		close(errc)
		for err := range errc {
			t.Fatal(err)
		}
		const total = writers * each
		for seq := range int64(total) {
			if _, ok := got[seq]; !ok {
				t.Fatalf("sequence number %d was never handed out (gap)", seq)
			}
		}
		if n, err := l.Head(ctx); err != nil || n != total {
			t.Fatalf("head = %d (%v), want %d", n, err, total)
		}
		// What is stored is what Append returned, position by position.
		var stored []Entry
		var after *int64
		for {
			p, err := List(ctx, db, Filter{After: after, Limit: 77})
			if err != nil {
				t.Fatal(err)
			}
			stored = append(stored, p.Entries...)
			if p.Next == nil {
				break
			}
			after = p.Next
		}
		if len(stored) != total {
			t.Fatalf("listed %d entries, want %d", len(stored), total)
		}
		for i, e := range stored {
			if e != got[int64(i)] {
				t.Fatalf("entry %d stored as %+v, Append returned %+v", i, e, got[int64(i)])
			}
		}
		// Batches never skip a count-based checkpoint.
		cps, err := Checkpoints(ctx, db)
		if err != nil {
			t.Fatal(err)
		}
		var sizes []int64
		for _, c := range cps {
			sizes = append(sizes, c.Size)
		}
		if want := []int64{50, 100, 150, 200, 250, 300}; !slices.Equal(sizes, want) {
			t.Fatalf("checkpoints at %v, want %v", sizes, want)
		}
		rep := verifyLog(t, db, l, dir)
		if len(rep.Findings) != 0 || rep.TreeSize != total || rep.CheckpointsMatched != 6 {
			t.Fatalf("verify of an untouched log: %+v", rep)
		}
	})
}

func verifyLog(t testing.TB, db *store.DB, l *Log, dir string) *Report {
	t.Helper()
	vs, err := NewVerifiers(l.VerifierKey())
	if err != nil {
		t.Fatal(err)
	}
	rep, err := Verify(context.Background(), db, VerifyOptions{Verifiers: vs, CheckpointDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

func TestAppendTxCommitsAndRollsBackWithTheCaller(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		l, _, dir := openLog(t, db, func(o *Options) { o.CheckpointEvery = 2 })
		appendN(t, l, 0, 1)
		boom := errors.New("domain write failed")
		err := db.Tx(ctx, func(tx store.Tx) error {
			if _, err := l.AppendTx(ctx, tx, sampleEntry(100)); err != nil {
				return err
			}
			return boom
		})
		if !errors.Is(err, boom) {
			t.Fatalf("Tx = %v", err)
		}
		if n, _ := l.Head(ctx); n != 1 {
			t.Fatalf("after a rolled-back AppendTx the head is %d, want 1", n)
		}
		var e Entry
		err = db.Tx(ctx, func(tx store.Tx) error {
			e, err = l.AppendTx(ctx, tx, sampleEntry(101))
			return err
		})
		if err != nil || e.Seq != 1 {
			t.Fatalf("AppendTx = %+v, %v; want seq 1", e, err)
		}
		// The appender's cached frontier must notice the tree moved.
		appendN(t, l, 102, 3)
		if n, _ := l.Head(ctx); n != 5 {
			t.Fatalf("head = %d, want 5", n)
		}
		// The checkpoint AppendTx stored reaches the directory with the
		// appender's next sync.
		if err := l.SyncCheckpointDir(ctx); err != nil {
			t.Fatal(err)
		}
		for _, size := range []string{"2", "4"} {
			if _, err := os.Stat(filepath.Join(dir, size+".checkpoint")); err != nil {
				t.Errorf("checkpoint file %s: %v", size, err)
			}
		}
		if rep := verifyLog(t, db, l, dir); len(rep.Findings) != 0 {
			t.Fatalf("findings: %v", rep.Findings)
		}
	})
}

func TestCheckpointsByCount(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		l, clock, dir := openLog(t, db, func(o *Options) { o.CheckpointEvery = 10 })
		appendN(t, l, 0, 25)
		cps, err := Checkpoints(ctx, db)
		if err != nil {
			t.Fatal(err)
		}
		if len(cps) != 2 || cps[0].Size != 10 || cps[1].Size != 20 {
			t.Fatalf("checkpoints %+v, want sizes 10 and 20", cps)
		}
		vs, _ := NewVerifiers(l.VerifierKey())
		for _, c := range cps {
			opened, root, err := openCheckpoint([]byte(c.Note), vs)
			if err != nil || opened.Size != c.Size || root.String() != c.Root {
				t.Fatalf("checkpoint %d does not open: %+v %v", c.Size, opened, err)
			}
			if !opened.Time.Equal(stampTime(clock.Now())) {
				t.Errorf("checkpoint %d signed time %v, want %v", c.Size, opened.Time, clock.Now())
			}
			path := filepath.Join(dir, checkpointFileName(c.Size))
			b, err := os.ReadFile(path)
			if err != nil || string(b) != c.Note {
				t.Fatalf("checkpoint file %s: %v (content equal: %v)", path, err, string(b) == c.Note)
			}
			if info, _ := os.Stat(path); runtime.GOOS != "windows" && info.Mode().Perm() != 0o600 {
				t.Errorf("checkpoint file mode %v, want 0600", info.Mode().Perm())
			}
		}
		// The signed roots are the roots of the entries.
		var all memHashes
		for i := range 20 {
			e, err := Get(ctx, db, int64(i))
			if err != nil {
				t.Fatal(err)
			}
			hs, _ := tlog.StoredHashesForRecordHash(int64(i), e.LeafHash(), all)
			all = append(all, hs...)
			if i == 9 || i == 19 {
				want, _ := tlog.TreeHash(int64(i+1), all)
				if got := cps[i/10].Root; got != want.String() {
					t.Fatalf("checkpoint %d root %s, want %s", i+1, got, want)
				}
			}
		}
		// Close signs the unsigned tail.
		if err := l.Close(ctx); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(filepath.Join(dir, "25.checkpoint")); err != nil {
			t.Fatalf("no checkpoint of the tail after Close: %v", err)
		}
		if _, err := l.Append(ctx, sampleEntry(99)); !errors.Is(err, ErrClosed) {
			t.Fatalf("Append after Close = %v, want ErrClosed", err)
		}
	})
}

func TestCheckpointsByTime(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		l, clock, dir := openLog(t, db, func(o *Options) {
			o.CheckpointEvery = -1
			o.CheckpointInterval = time.Minute
		})
		sizes := func() []int64 {
			t.Helper()
			cps, err := Checkpoints(ctx, db)
			if err != nil {
				t.Fatal(err)
			}
			var out []int64
			for _, c := range cps {
				out = append(out, c.Size)
			}
			return out
		}
		if cp, err := l.CheckpointIfDue(ctx); err != nil || cp != nil {
			t.Fatalf("an empty log made checkpoint %+v (%v)", cp, err)
		}
		appendN(t, l, 0, 3)
		clock.Advance(59 * time.Second)
		if cp, err := l.CheckpointIfDue(ctx); err != nil || cp != nil {
			t.Fatalf("checkpoint %+v (%v) before the interval passed", cp, err)
		}
		clock.Advance(time.Second)
		cp, err := l.CheckpointIfDue(ctx)
		if err != nil || cp == nil || cp.Size != 3 {
			t.Fatalf("CheckpointIfDue = %+v, %v; want a checkpoint of 3 entries", cp, err)
		}
		if _, err := os.Stat(filepath.Join(dir, "3.checkpoint")); err != nil {
			t.Fatal(err)
		}
		clock.Advance(time.Hour)
		if cp, err := l.CheckpointIfDue(ctx); err != nil || cp != nil {
			t.Fatalf("re-signed an unchanged head: %+v (%v)", cp, err)
		}
		// A busy log gets its time-based checkpoint from the append itself.
		appendN(t, l, 3, 2)
		if got := sizes(); !slices.Equal(got, []int64{3, 4}) {
			t.Fatalf("checkpoints at %v, want [3 4] (the first append after an hour signs, the next is not due)", got)
		}
		clock.Advance(30 * time.Second)
		appendN(t, l, 5, 1)
		if got := sizes(); !slices.Equal(got, []int64{3, 4}) {
			t.Fatalf("checkpoints at %v, want [3 4] (30s is not due)", got)
		}
		clock.Advance(30 * time.Second)
		appendN(t, l, 6, 1)
		if got := sizes(); !slices.Equal(got, []int64{3, 4, 7}) {
			t.Fatalf("checkpoints at %v, want [3 4 7]", got)
		}
		if rep := verifyLog(t, db, l, dir); len(rep.Findings) != 0 || rep.CheckpointsMatched != 3 {
			t.Fatalf("verify: %+v", rep)
		}
	})
}

func TestTriggersKeepTheLogAppendOnly(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		l, _, _ := openLog(t, db, func(o *Options) { o.CheckpointEvery = 2 })
		appendN(t, l, 0, 4)
		stmts := []string{
			`UPDATE audit_entries SET actor = 'someone-else' WHERE seq = 1`,
			`DELETE FROM audit_entries WHERE seq = 3`,
			`DELETE FROM audit_entries`,
			`UPDATE audit_hashes SET hash = hash WHERE idx = 0`,
			`DELETE FROM audit_hashes WHERE idx = 0`,
			`UPDATE audit_checkpoints SET note = 'x' WHERE tree_size = 2`,
			`DELETE FROM audit_checkpoints WHERE tree_size = 2`,
			`DELETE FROM audit_head`,
			`UPDATE audit_head SET tree_size = 1`,
			`UPDATE audit_head SET checkpoint_size = 0`,
		}
		if db.Dialect() == store.Postgres {
			stmts = append(stmts, `TRUNCATE audit_entries`, `TRUNCATE audit_hashes`, `TRUNCATE audit_checkpoints`, `TRUNCATE audit_head`)
		}
		for _, s := range stmts {
			if _, err := db.Writer().Exec(ctx, s); err == nil {
				t.Errorf("%s: succeeded, want the trigger to reject it", s)
			}
		}
		var n int64
		if err := db.Reader().QueryRow(ctx, `SELECT count(*) FROM audit_entries WHERE actor <> 'someone-else'`).Scan(&n); err != nil || n != 4 {
			t.Fatalf("%d untouched entries (%v), want 4", n, err)
		}
		if err := db.Reader().QueryRow(ctx, `SELECT count(*) FROM audit_checkpoints WHERE note <> 'x'`).Scan(&n); err != nil || n != 2 {
			t.Fatalf("%d untouched checkpoints (%v), want 2", n, err)
		}
		if err := db.Reader().QueryRow(ctx, `SELECT count(*) FROM audit_hashes`).Scan(&n); err != nil || n != tlog.StoredHashCount(4) {
			t.Fatalf("%d stored hashes (%v), want %d", n, err, tlog.StoredHashCount(4))
		}
		// Appending still works: the head row may be updated.
		appendN(t, l, 4, 1)
	})
}

func TestKeyRotationKeepsOldCheckpointsVerifiable(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		old, _, dir := openLog(t, db, func(o *Options) { o.CheckpointEvery = 5 })
		appendN(t, old, 0, 5)
		if err := old.Close(ctx); err != nil {
			t.Fatal(err)
		}
		rotated, _, _ := openLog(t, db, func(o *Options) { o.CheckpointEvery = 5; o.CheckpointDir = dir })
		appendN(t, rotated, 5, 5)
		keys, err := ReadVerifiers(dir)
		if err != nil || len(keys) != 2 {
			t.Fatalf("verifiers after rotation: %v (%v), want the old and the new key", keys, err)
		}
		vs, err := NewVerifiers(keys...)
		if err != nil {
			t.Fatal(err)
		}
		rep, err := Verify(ctx, db, VerifyOptions{Verifiers: vs, CheckpointDir: dir})
		if err != nil || len(rep.Findings) != 0 || rep.CheckpointsMatched != 2 {
			t.Fatalf("verify after rotation: %+v %v", rep, err)
		}
	})
}

// AppendAll appends a response's entries in one commit, consecutively,
// while other appends go on; an invalid entry refuses them all.
func TestAppendAllIsOneConsecutiveCommit(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		l, _, dir := openLog(t, db, func(o *Options) { o.CheckpointEvery = 4 })
		var batch []Entry
		for i := range 9 {
			batch = append(batch, sampleEntry(200+i))
		}
		others := make(chan error, 20)
		for i := range 20 {
			go func() {
				_, err := l.Append(ctx, sampleEntry(i))
				others <- err
			}()
		}
		got, err := l.AppendAll(ctx, batch)
		for range 20 {
			if err := <-others; err != nil {
				t.Fatal(err)
			}
		}
		if err != nil || len(got) != len(batch) {
			t.Fatalf("AppendAll = %d entries, %v", len(got), err)
		}
		for i, e := range got {
			if e.Seq != got[0].Seq+int64(i) || e.ResourceID != batch[i].ResourceID || !e.Time.Equal(got[0].Time) {
				t.Fatalf("entry %d: %+v (first seq %d)", i, e, got[0].Seq)
			}
		}
		bad := append([]Entry(nil), batch...)
		bad[4].PatientID = "a name with spaces"
		if _, err := l.AppendAll(ctx, bad); err == nil {
			t.Fatal("an invalid entry was accepted")
		}
		if out, err := l.AppendAll(ctx, nil); err != nil || out != nil {
			t.Fatalf("empty AppendAll = %v, %v", out, err)
		}
		if n, _ := l.Head(ctx); n != 29 {
			t.Fatalf("head %d, want 29 (nothing of the refused batch)", n)
		}
		if rep := verifyLog(t, db, l, dir); len(rep.Findings) != 0 {
			t.Fatalf("findings: %v", rep.Findings)
		}
	})
}

// AppendAtCommit's entries commit or roll back with the caller's
// transaction, in the order given, and the log's head is not locked until
// the transaction commits: on PostgreSQL an Append from another connection
// completes while the transaction is still open.
func TestAppendAtCommitAppendsAsTheTransactionCommits(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		l, _, dir := openLog(t, db, func(o *Options) { o.CheckpointEvery = 2 })
		appendN(t, l, 0, 1)
		boom := errors.New("domain write failed")
		err := db.Tx(ctx, func(tx store.Tx) error {
			if err := l.AppendAtCommit(ctx, tx, sampleEntry(100)); err != nil {
				return err
			}
			return boom
		})
		if !errors.Is(err, boom) {
			t.Fatalf("Tx = %v", err)
		}
		if n, _ := l.Head(ctx); n != 1 {
			t.Fatalf("after a rolled-back transaction the head is %d, want 1", n)
		}
		err = db.Tx(ctx, func(tx store.Tx) error {
			for i := range 3 {
				if err := l.AppendAtCommit(ctx, tx, sampleEntry(101+i)); err != nil {
					return err
				}
			}
			if db.Dialect() == store.Postgres {
				// Another connection's append does not wait for this
				// transaction: the head is not locked yet.
				actx, cancel := context.WithTimeout(ctx, 5*time.Second)
				defer cancel()
				if _, err := l.Append(actx, sampleEntry(200)); err != nil {
					t.Errorf("an Append while the transaction is open: %v", err)
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		want := int64(4)
		if db.Dialect() == store.Postgres {
			want = 5
		}
		if n, _ := l.Head(ctx); n != want {
			t.Fatalf("head = %d, want %d", n, want)
		}
		if err := l.SyncCheckpointDir(ctx); err != nil {
			t.Fatal(err)
		}
		if rep := verifyLog(t, db, l, dir); len(rep.Findings) != 0 {
			t.Fatalf("findings: %v", rep.Findings)
		}
	})
}

// Two appenders on one database (two nodes), and a workflow step's
// transaction (AppendTx) between them: each appender's cached tail goes
// stale whenever another wrote, its one-statement append then moves
// nothing, and the locked path appends instead. The log stays gap-free,
// every entry is where its Append said, and it verifies, checkpoints
// included.
func TestCachedAppendsYieldToOtherWriters(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		a, _, dir := openLog(t, db, func(o *Options) { o.CheckpointEvery = 25 })
		b, err := New(ctx, db, Options{Signer: a.signer, CheckpointDir: dir, Now: time.Now, CheckpointInterval: -1, CheckpointEvery: 25})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = b.Close(ctx) })
		got := map[int64]Entry{}
		keep := func(e Entry, err error) {
			t.Helper()
			if err != nil {
				t.Fatal(err)
			}
			if _, dup := got[e.Seq]; dup {
				t.Fatalf("sequence number %d handed out twice", e.Seq)
			}
			got[e.Seq] = e
		}
		n := 0
		for round := range 12 {
			// a twice in a row (the second on its cache), then b, then a
			// step's transaction, in an order that changes by round.
			keep(a.Append(ctx, sampleEntry(n)))
			keep(a.Append(ctx, sampleEntry(n+1)))
			keep(b.Append(ctx, sampleEntry(n+2)))
			if round%3 == 0 {
				keep(a.Append(ctx, sampleEntry(n+3)))
			} else {
				var e Entry
				err := db.Tx(ctx, func(tx store.Tx) error {
					var err error
					e, err = a.AppendTx(ctx, tx, sampleEntry(n+3))
					return err
				})
				keep(e, err)
			}
			n += 4
		}
		// And both at once.
		var mu sync.Mutex
		var wg sync.WaitGroup
		for w, l := range []*Log{a, b, a, b} {
			wg.Go(func() {
				for i := range 20 {
					e, err := l.Append(ctx, sampleEntry(1000+w*20+i))
					mu.Lock()
					keep(e, err)
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		total := int64(n + 80)
		if h, err := a.Head(ctx); err != nil || h != total {
			t.Fatalf("head %d (%v), want %d", h, err, total)
		}
		page, err := List(ctx, db, Filter{Limit: 1000})
		if err != nil {
			t.Fatal(err)
		}
		if int64(len(page.Entries)) != total {
			t.Fatalf("%d entries stored, want %d", len(page.Entries), total)
		}
		for _, e := range page.Entries {
			if e != got[e.Seq] {
				t.Fatalf("entry %d stored as %+v, its Append returned %+v", e.Seq, e, got[e.Seq])
			}
		}
		rep := verifyLog(t, db, a, dir)
		if len(rep.Findings) != 0 || rep.TreeSize != total || rep.CheckpointsMatched != int(total/25) {
			t.Fatalf("verify: %+v", rep)
		}
	})
}
