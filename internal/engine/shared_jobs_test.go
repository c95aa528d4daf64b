package engine

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/riverqueue/river"

	"github.com/careflow/careflow/internal/jobs"
	"github.com/careflow/careflow/internal/store"
	"github.com/careflow/careflow/internal/store/storetest"
)

// otherArgs is a job of another component sharing the process's client.
type otherArgs struct {
	N int `json:"n"`
}

func (otherArgs) Kind() string { return "careflow.test.other" }

func (otherArgs) InsertOpts() river.InsertOpts { return river.InsertOpts{Queue: "other"} }

type otherWorker struct {
	river.WorkerDefaults[otherArgs]
	done chan int
}

func (w *otherWorker) Work(_ context.Context, job *river.Job[otherArgs]) error {
	w.done <- job.Args.N
	return nil
}

// The engine and another component register with one River client, built
// and run by its owner as serve does: the engine's steps and the other
// queue's job are both worked, and the engine builds no client of its own.
func TestEngineRunsOnASharedRiverClient(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		if _, err := MigrateRiver(ctx, db, nil); err != nil {
			t.Fatal(err)
		}
		reg := NewRegistry()
		if err := RegisterBuiltins(reg, BuiltinOptions{}); err != nil {
			t.Fatal(err)
		}
		shared := jobs.NewRegistry()
		e, err := New(Config{DB: db, Registry: reg, Ring: testRing(t, db), Jobs: shared, Registerer: prometheus.NewRegistry(),
			HousekeepingInterval: 200 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		other := &otherWorker{done: make(chan int, 1)}
		if err := river.AddWorkerSafely[otherArgs](shared.Workers(), other); err != nil {
			t.Fatal(err)
		}
		if err := shared.AddQueue("other", 2); err != nil {
			t.Fatal(err)
		}
		if err := shared.AddQueue(queueName, 1); err == nil {
			t.Fatal("the engine's queue was declared twice")
		}
		client, err := shared.Build(jobs.Config{DB: db, ID: e.NodeID()})
		if err != nil {
			t.Fatal(err)
		}
		if err := e.Start(ctx); err != nil {
			t.Fatal(err)
		}
		if err := client.Start(context.WithoutCancel(ctx)); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			sctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			if err := client.Stop(sctx); err != nil {
				t.Errorf("stop client: %v", err)
			}
			if err := e.Stop(sctx); err != nil {
				t.Errorf("stop engine: %v", err)
			}
		})
		r, _, err := e.StartRun(ctx, StartOptions{Definition: NoopDefinition})
		if err != nil {
			t.Fatal(err)
		}
		if err := db.Tx(ctx, func(tx store.Tx) error { return client.InsertTx(ctx, tx, otherArgs{N: 7}, nil) }); err != nil {
			t.Fatal(err)
		}
		waitStatus(t, e, r.ID, StatusCompleted, 30*time.Second)
		select {
		case n := <-other.done:
			if n != 7 {
				t.Fatalf("other job worked with %d", n)
			}
		case <-time.After(30 * time.Second):
			t.Fatal("the other component's job was not worked")
		}
	})
}
