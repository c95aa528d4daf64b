package engine

import (
	"context"
	"encoding/json"
	"fmt"
	"runtime"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/careflow/careflow/internal/store"
	"github.com/careflow/careflow/internal/store/storetest"
)

// rawCommitRate measures the database's durable commit rate the way
// internal/store's BenchmarkRawCommit does ("parallel": GOMAXPROCS*4
// clients, one single-row INSERT per transaction) for about d.
func rawCommitRate(b *testing.B, db *store.DB, d time.Duration) float64 {
	b.Helper()
	ctx := context.Background()
	if _, err := db.Writer().Exec(ctx, `CREATE TABLE IF NOT EXISTS bench_commit (id BIGINT PRIMARY KEY, payload TEXT NOT NULL)`); err != nil {
		b.Fatal(err)
	}
	var next, done atomic.Int64
	deadline := time.Now().Add(d)
	var wg sync.WaitGroup
	began := time.Now()
	for range 4 * max(1, testingProcs()) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(deadline) {
				err := db.Tx(ctx, func(tx store.Tx) error {
					_, err := tx.Exec(ctx, `INSERT INTO bench_commit (id, payload) VALUES ($1, $2)`, next.Add(1), "0123456789abcdef0123456789abcdef")
					return err
				})
				if err != nil {
					b.Error(err)
					return
				}
				done.Add(1)
			}
		}()
	}
	wg.Wait()
	return float64(done.Load()) / time.Since(began).Seconds()
}

// BenchmarkTenStepNoop runs b.N runs of the ten-step no-op definition on
// one node and reports steps per second, and that rate as a share of the
// raw durable commit rate measured on the same database just before (each
// step is one engine commit, plus River's fetch and completion writes).
//
//	go test ./internal/engine -run '^$' -bench TenStepNoop -benchtime 500x
func BenchmarkTenStepNoop(b *testing.B) {
	for _, d := range storetest.Backends() {
		b.Run(string(d), func(b *testing.B) {
			ctx := context.Background()
			db := storetest.Open(b, d)
			raw := rawCommitRate(b, db, 2*time.Second)
			n := newBenchNode(b, db)
			for i := 0; i < b.N; i++ {
				if _, _, err := n.StartRun(ctx, StartOptions{Definition: NoopDefinition}); err != nil {
					b.Fatal(err)
				}
			}
			b.ResetTimer()
			wrote, stmts := writeCommits(b, db), db.WriterStatements()
			began := time.Now()
			if err := n.Start(ctx); err != nil {
				b.Fatal(err)
			}
			defer n.Stop(context.Background())
			for {
				c, err := n.CountRuns(ctx)
				if err != nil {
					b.Fatal(err)
				}
				if c[StatusCompleted] == int64(b.N) {
					break
				}
				<-time.After(5 * time.Millisecond)
			}
			elapsed := time.Since(began)
			b.StopTimer()
			steps := float64(10*b.N) / elapsed.Seconds()
			b.ReportMetric(steps, "steps/s")
			b.ReportMetric(raw, "raw-commits/s")
			b.ReportMetric(steps/raw, "steps/commit")
			// Transactions that wrote, per step: the step's own and River's
			// fetches and completions (and on PostgreSQL anything else the
			// server numbered meanwhile).
			b.ReportMetric(float64(writeCommits(b, db)-wrote)/float64(10*b.N), "write-tx/step")
			if d == store.SQLite {
				b.ReportMetric(float64(db.WriterStatements()-stmts)/float64(10*b.N), "writer-stmts/step")
			}
		})
	}
}

// writeCommits counts the transactions that wrote so far: the SQLite
// writer's count, or PostgreSQL's next transaction id (every transaction
// that writes takes one; reads take none).
func writeCommits(b *testing.B, db *store.DB) int64 {
	b.Helper()
	if db.Dialect() == store.SQLite {
		return db.Commits()
	}
	var n int64
	if err := db.Reader().QueryRow(context.Background(), `SELECT txid_snapshot_xmax(txid_current_snapshot())`).Scan(&n); err != nil {
		b.Fatal(err)
	}
	return n
}

// BenchmarkSignalToNextStep measures the delay from a signal's commit to
// the start of the step after the wait it resolves, one signal at a time
// (each run is waiting when its signal is sent), and reports p50 and p99.
//
//	go test ./internal/engine -run '^$' -bench SignalToNextStep -benchtime 200x
func BenchmarkSignalToNextStep(b *testing.B) {
	for _, d := range storetest.Backends() {
		b.Run(string(d), func(b *testing.B) {
			ctx := context.Background()
			db := storetest.Open(b, d)
			n := newBenchNode(b, db)
			if err := n.Start(ctx); err != nil {
				b.Fatal(err)
			}
			defer n.Stop(context.Background())
			ids := make([]string, b.N)
			for i := range ids {
				r, _, err := n.StartRun(ctx, StartOptions{Definition: DiagnosticsDefinition, Input: DiagnosticsInput{Signal: "go"}})
				if err != nil {
					b.Fatal(err)
				}
				ids[i] = r.ID
			}
			for {
				c, err := n.CountRuns(ctx)
				if err != nil {
					b.Fatal(err)
				}
				if c[StatusWaiting] == int64(b.N) {
					break
				}
				<-time.After(5 * time.Millisecond)
			}
			b.ResetTimer()
			delays := make([]time.Duration, 0, b.N)
			for _, id := range ids {
				if _, err := n.SendSignal(ctx, id, Signal{ID: "bench", Name: "go"}); err != nil {
					b.Fatal(err)
				}
				// Wait for the run to finish so that signals do not overlap.
				for {
					r, err := n.GetRun(ctx, id)
					if err != nil {
						b.Fatal(err)
					}
					if r.Status == StatusCompleted {
						break
					}
					<-time.After(time.Millisecond)
				}
				var received, started time.Time
				if err := db.Reader().QueryRow(ctx, `SELECT received_at FROM engine_signals WHERE run_id = $1`, id).Scan(&received); err != nil {
					b.Fatal(err)
				}
				if err := db.Reader().QueryRow(ctx, `SELECT started_at FROM engine_step_executions WHERE run_id = $1 AND step = 'finish'`, id).Scan(&started); err != nil {
					b.Fatal(err)
				}
				delays = append(delays, started.Sub(received))
			}
			b.StopTimer()
			sort.Slice(delays, func(i, j int) bool { return delays[i] < delays[j] })
			pct := func(p float64) time.Duration { return delays[min(len(delays)-1, int(p*float64(len(delays))))] }
			b.ReportMetric(float64(pct(0.50).Microseconds())/1000, "p50-ms")
			b.ReportMetric(float64(pct(0.99).Microseconds())/1000, "p99-ms")
			b.ReportMetric(float64(delays[len(delays)-1].Microseconds())/1000, "max-ms")
			if testing.Verbose() {
				fmt.Printf("signal→next step %s: n=%d p50=%s p99=%s max=%s\n", d, len(delays), pct(0.5), pct(0.99), delays[len(delays)-1])
			}
		})
	}
}

// newBenchNode is an engine with production settings (no test intervals),
// not yet started.
func newBenchNode(b *testing.B, db *store.DB) *Engine {
	b.Helper()
	if _, err := MigrateRiver(context.Background(), db, nil); err != nil {
		b.Fatal(err)
	}
	reg := NewRegistry()
	if err := RegisterBuiltins(reg, BuiltinOptions{}); err != nil {
		b.Fatal(err)
	}
	e, err := New(Config{DB: db, Registry: reg, Ring: testRing(b, db)})
	if err != nil {
		b.Fatal(err)
	}
	return e
}

func testingProcs() int { return runtime.GOMAXPROCS(0) }

// BenchmarkStepPayloadCrypto measures what sealing adds to one step of the
// ten-step no-op run, without the database: the step's two reads of the run
// (the worker's and the locked one in its transaction) each open the input
// and the state, and its save seals the state again. (Decoding the state's
// JSON, which the engine did before sealing too, is left out.)
//
//	go test ./internal/engine -run '^$' -bench StepPayloadCrypto
func BenchmarkStepPayloadCrypto(b *testing.B) {
	db := storetest.Open(b, store.SQLite)
	e := newBenchNode(b, db)
	id := "01a21300-0000-7000-8000-000000000001"
	state := runState{Outputs: map[string]json.RawMessage{}, Visits: map[string]int{}}
	for i := 1; i <= 5; i++ {
		state.Visits[fmt.Sprintf("step%02d", i)] = 1
	}
	plain, _ := json.Marshal(state)
	input, err := e.seal(runAAD(id, "input"), []byte("{}"))
	if err != nil {
		b.Fatal(err)
	}
	sealedState, err := e.seal(runAAD(id, "state"), plain)
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		for range 2 {
			if _, err := e.open(ctx, runAAD(id, "input"), input); err != nil {
				b.Fatal(err)
			}
			if _, err := e.open(ctx, runAAD(id, "state"), sealedState); err != nil {
				b.Fatal(err)
			}
		}
		if _, err := e.seal(runAAD(id, "state"), plain); err != nil {
			b.Fatal(err)
		}
	}
}
