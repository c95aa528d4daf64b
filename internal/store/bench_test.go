package store_test

import (
	"context"
	"sync/atomic"
	"testing"

	"github.com/careflow/careflow/internal/store"
	"github.com/careflow/careflow/internal/store/storetest"
)

// BenchmarkRawCommit measures the durable commit rate of each backend: one
// single-row INSERT per transaction, fsync on (SQLite synchronous=FULL in
// WAL; PostgreSQL's default fsync and synchronous_commit). It is the
// baseline every later throughput figure in BENCHMARKS.md is stated against.
// "serial" is one client; "parallel" is GOMAXPROCS*4 clients, which lets
// PostgreSQL group commits and shows SQLite's single writer.
func BenchmarkRawCommit(b *testing.B) {
	for _, d := range storetest.Backends() {
		b.Run(string(d), func(b *testing.B) {
			db := storetest.Open(b, d)
			ctx := context.Background()
			if _, err := db.Writer().Exec(ctx, `CREATE TABLE bench_commit (id BIGINT PRIMARY KEY, payload TEXT NOT NULL)`); err != nil {
				b.Fatal(err)
			}
			var next atomic.Int64
			insert := func() error {
				return db.Tx(ctx, func(tx store.Tx) error {
					_, err := tx.Exec(ctx, `INSERT INTO bench_commit (id, payload) VALUES ($1, $2)`, next.Add(1), "0123456789abcdef0123456789abcdef")
					return err
				})
			}
			b.Run("serial", func(b *testing.B) {
				for b.Loop() {
					if err := insert(); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "commits/s")
			})
			b.Run("parallel", func(b *testing.B) {
				b.SetParallelism(4)
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						if err := insert(); err != nil {
							b.Error(err)
							return
						}
					}
				})
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "commits/s")
			})
		})
	}
}
