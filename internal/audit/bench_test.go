package audit

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/careflow/careflow/internal/store/storetest"
)

// BenchmarkAppend measures durable appends (each Append returns after its
// entry is committed with fsync on). "serial" is one caller, so every entry
// pays a whole commit; "parallel" is GOMAXPROCS*16 callers, the shape of a
// busy server, where the appender's group commit shares one transaction
// among many entries. p50 is the latency one request adds by auditing.
func BenchmarkAppend(b *testing.B) {
	for _, d := range storetest.Backends() {
		b.Run(string(d), func(b *testing.B) {
			db := storetest.Open(b, d)
			l, _, _ := openLog(b, db, func(o *Options) { o.Now = time.Now; o.CheckpointInterval = 0 })
			ctx := context.Background()
			b.Run("serial", func(b *testing.B) {
				lat := make([]time.Duration, 0, 1024)
				i := 0
				for b.Loop() {
					start := time.Now()
					if _, err := l.Append(ctx, sampleEntry(i)); err != nil {
						b.Fatal(err)
					}
					lat = append(lat, time.Since(start))
					i++
				}
				reportLatency(b, lat)
			})
			b.Run("parallel", func(b *testing.B) {
				b.SetParallelism(16)
				var mu sync.Mutex
				var all []time.Duration
				b.RunParallel(func(pb *testing.PB) {
					var lat []time.Duration
					i := 0
					for pb.Next() {
						start := time.Now()
						if _, err := l.Append(ctx, sampleEntry(i)); err != nil {
							b.Error(err)
							return
						}
						lat = append(lat, time.Since(start))
						i++
					}
					mu.Lock()
					all = append(all, lat...)
					mu.Unlock()
				})
				reportLatency(b, all)
			})
		})
	}
}

func reportLatency(b *testing.B, lat []time.Duration) {
	b.Helper()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "entries/s")
	if len(lat) == 0 {
		return
	}
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
}

// BenchmarkVerify measures verification of a 5,000-entry log, per entry.
func BenchmarkVerify(b *testing.B) {
	for _, d := range storetest.Backends() {
		b.Run(string(d), func(b *testing.B) {
			db := storetest.Open(b, d)
			l, _, dir := openLog(b, db, nil)
			const n = 5000
			for from := 0; from < n; from += 500 {
				appendConcurrently(b, l, from, 500)
			}
			vs, err := NewVerifiers(l.VerifierKey())
			if err != nil {
				b.Fatal(err)
			}
			for b.Loop() {
				rep, err := Verify(context.Background(), db, VerifyOptions{Verifiers: vs, CheckpointDir: dir})
				if err != nil || rep.Tampered() || rep.TreeSize != n {
					b.Fatalf("verify: %+v %v", rep, err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/n, "ns/entry")
		})
	}
}
