package jobs_test

import (
	"context"
	"testing"
	"time"

	"github.com/riverqueue/river"

	"github.com/careflow/careflow/internal/engine"
	"github.com/careflow/careflow/internal/jobs"
	"github.com/careflow/careflow/internal/store"
	"github.com/careflow/careflow/internal/store/storetest"
)

type pingArgs struct{ N int }

func (pingArgs) Kind() string { return "jobs_test.ping" }
func (pingArgs) InsertOpts() river.InsertOpts {
	return river.InsertOpts{Queue: "test"}
}

type pingWorker struct {
	river.WorkerDefaults[pingArgs]
	done chan int
}

func (w *pingWorker) Work(_ context.Context, j *river.Job[pingArgs]) error {
	w.done <- j.Args.N
	return nil
}

// Producers fetch when a job is inserted, not on a timer: with the fallback
// poll an hour long, every job inserted in a transaction, one at a time and
// in bursts closer together than River's own notification limit, is worked
// within a fraction of a second of its commit, on both backends. On SQLite
// that is the store's commit watch and careflow's listener.
func TestInsertedJobsAreWorkedWithoutPolling(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		if _, err := engine.MigrateRiver(ctx, db, nil); err != nil {
			t.Fatal(err)
		}
		reg := jobs.NewRegistry()
		w := &pingWorker{done: make(chan int, 100)}
		if err := river.AddWorkerSafely(reg.Workers(), w); err != nil {
			t.Fatal(err)
		}
		if err := reg.AddQueue("test", 4); err != nil {
			t.Fatal(err)
		}
		client, err := reg.Build(jobs.Config{DB: db, ID: "jobs-test", FetchPollInterval: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		if err := client.Start(context.WithoutCancel(ctx)); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = client.Stop(context.Background()) })
		// The first fetch at start finds nothing; let it pass.
		time.Sleep(200 * time.Millisecond)

		insert := func(n int) {
			t.Helper()
			if err := db.Tx(ctx, func(tx store.Tx) error { return client.InsertTx(ctx, tx, pingArgs{N: n}, nil) }); err != nil {
				t.Fatal(err)
			}
		}
		wait := func(want int) time.Duration {
			t.Helper()
			start := time.Now()
			seen := map[int]bool{}
			for len(seen) < want {
				select {
				case n := <-w.done:
					seen[n] = true
				case <-time.After(5 * time.Second):
					t.Fatalf("%d of %d jobs worked after 5s: producers were not told", len(seen), want)
				}
			}
			return time.Since(start)
		}
		for i := range 5 {
			insert(i)
			if d := wait(1); d > time.Second {
				t.Errorf("job %d worked %v after its commit", i, d)
			}
			time.Sleep(20 * time.Millisecond)
		}
		for i := range 20 {
			insert(100 + i)
		}
		if d := wait(20); d > 2*time.Second {
			t.Errorf("a burst of 20 jobs took %v", d)
		}
		// Pairs a few milliseconds apart: River notifies the first and not
		// the second (at most one per queue per FetchCooldown); the second
		// must not wait for the fallback poll.
		for i := range 12 {
			time.Sleep(30 * time.Millisecond)
			insert(200 + 2*i)
			time.Sleep(time.Duration(i%6) * time.Millisecond)
			insert(201 + 2*i)
			if d := wait(2); d > time.Second {
				t.Errorf("a pair %dms apart took %v", i%6, d)
			}
		}
	})
}
