package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/careflow/careflow/internal/rcm"
	"github.com/careflow/careflow/internal/store/storetest"
)

// The revenue cycle's benchmarks (BENCHMARKS.md, "Revenue cycle (issue
// 11)"): careflow as a child process (the test binary running main, as the
// soak does) against an in-process payer-sim with no latency, no answer
// delay, no payment delay and no faults, so what is measured is careflow
// and the protocol's cryptography on both sides, on one box.
//
//	go test -run '^$' -bench RevenueCycleJourney -benchtime 200x ./cmd/careflow/
//	go test -run '^$' -bench RevenueCycleBatch -benchtime 10000x ./cmd/careflow/
//
// (-benchtime Nx: N journeys, or a batch of N claims.)
// benchServeFlags switch the rate limits off, as scripts/bench-security.sh
// does: the limits are per address, and the gateway's callbacks and the
// benchmark's polling all come from 127.0.0.1.
//
// CAREFLOW_BENCH_DEBUG_LISTEN=127.0.0.1:6060 makes careflow serve its
// runtime profiles there during the run (--debug-listen), to profile it:
//
//	go tool pprof -top 'http://127.0.0.1:6060/debug/pprof/profile?seconds=20'
var benchServeFlags = func() []string {
	flags := []string{"--rate-limit-user", "off", "--rate-limit-addr", "off", "--rate-limit-login", "off"}
	if addr := os.Getenv("CAREFLOW_BENCH_DEBUG_LISTEN"); addr != "" {
		flags = append(flags, "--debug-listen", addr)
	}
	return flags
}()

func benchRules() string {
	return `seed: 11
gateway:
  code: hcx-gateway
  name: Bench gateway
payers:
  - code: payer-nile
    name: Nile Health Insurance (bench)
    currency: EGP
    payment_delay: 0s
    plans:
      - id: gold
        name: Gold
        member_patterns: ["GOLD-*"]
        covered: ["*"]
        copay: "0.00"
        coinsurance_percent: 0
    preauth_required: ["27447"]
    denials:
      - codes: ["S9999"]
        reason: "96"
        display: Non-covered charge(s).
    partial_payments:
      - codes: ["97110"]
        fraction: 0.5
        reason: "45"
`
}

// BenchmarkRevenueCycleJourney starts one paid outpatient journey at a
// time and times each from its start to its final state by the journey's
// own created_at and updated_at (the server's clock: the client's polling
// adds nothing); it reports p50 and p99.
func BenchmarkRevenueCycleJourney(b *testing.B) {
	for _, d := range storetest.Backends() {
		b.Run(string(d), func(b *testing.B) {
			e := newRCMEnv(b, d, benchRules(), benchServeFlags...)
			var took []time.Duration
			var last rcm.Journey
			i := 0
			b.ResetTimer()
			for b.Loop() {
				// Scenario 0 of the soak's mix: paid in full.
				entry := soakEntry(i * len(soakScenarios))
				i++
				resp, body, err := e.client.do(http.MethodPost, "/api/v1/rcm/journeys", http.Header{"Content-Type": {"application/json"}}, entry)
				if err != nil || resp.StatusCode != http.StatusCreated && resp.StatusCode != http.StatusAccepted {
					b.Fatalf("start a journey: %v %s", err, body)
				}
				var j rcm.Journey
				if err := json.Unmarshal(body, &j); err != nil {
					b.Fatal(err)
				}
				for j.Status == rcm.StatusActive {
					time.Sleep(2 * time.Millisecond)
					e.client.get("/api/v1/rcm/journeys/"+j.ID, &j)
				}
				if j.Outcome != rcm.OutcomePaid {
					b.Fatalf("journey %s ended %s %s (%s)", j.ID, j.Status, j.Outcome, j.Reason)
				}
				took = append(took, j.UpdatedAt.Sub(j.CreatedAt))
				last = j
			}
			b.StopTimer()
			if testing.Verbose() {
				// The last journey's steps, to see where the time goes.
				for _, st := range last.Steps {
					end := ""
					if st.FinishedAt != nil {
						end = st.FinishedAt.Sub(last.CreatedAt).String()
					}
					b.Logf("%-22s %-10s +%v → +%s", st.Name, st.Status, st.StartedAt.Sub(last.CreatedAt), end)
				}
			}
			slices.Sort(took)
			b.ReportMetric(float64(pct(took, 0.50))/1e6, "p50-ms")
			b.ReportMetric(float64(pct(took, 0.99))/1e6, "p99-ms")
		})
	}
}

// BenchmarkRevenueCycleBatch submits b.N claims (the soak's mix: paid,
// partially paid, denied, pre-authorized then paid) as one batch and
// waits until every journey is final: claims/s from the first POST to
// the last journey's end.
func BenchmarkRevenueCycleBatch(b *testing.B) {
	for _, d := range storetest.Backends() {
		b.Run(string(d), func(b *testing.B) {
			e := newRCMEnv(b, d, benchRules(), benchServeFlags...)
			var body strings.Builder
			for i := range b.N {
				body.WriteString(soakEntry(i))
				body.WriteByte('\n')
			}
			xids := writeTransactions(b, e.dbURL)
			b.ResetTimer()
			began := time.Now()
			st, err := e.client.submit(body.String(), fmt.Sprintf("bench-%d", b.N))
			if err != nil {
				b.Fatal(err)
			}
			submitted := time.Since(began)
			// A batch's status counts every entry's journey: polled ten
			// times a second, a batch of 10,000 would be measuring that.
			poll := 100 * time.Millisecond
			if b.N >= 1000 {
				poll = time.Second
			}
			for !st.Done {
				time.Sleep(poll)
				e.client.get("/api/v1/rcm/batches/"+st.ID, &st)
			}
			wall := time.Since(began)
			b.StopTimer()
			if st.Final != b.N || st.Refused != 0 || len(st.Failures) != 0 {
				b.Fatalf("batch %s: %d of %d final, %d refused, failures %v", st.ID, st.Final, b.N, st.Refused, st.Failures)
			}
			b.ReportMetric(float64(b.N)/wall.Seconds(), "claims/s")
			b.ReportMetric(submitted.Seconds(), "submit-s")
			b.ReportMetric(wall.Seconds(), "wall-s")
			if xids != nil {
				b.ReportMetric(float64(xids())/float64(b.N), "write-tx/claim")
			}
		})
	}
}

// writeTransactions, on PostgreSQL, returns a func counting the
// transactions that wrote anything since the call: PostgreSQL assigns a
// transaction id only to a transaction that writes, so the difference of
// the next id to assign is that count — careflow's own, River's, and any
// other database's on the cluster (run it on a quiet one). Divided by the
// claims, it is what the raw commit rate is divided by for the commit
// ceiling. nil on SQLite.
func writeTransactions(b *testing.B, dbURL string) func() int64 {
	if dbURL == "" {
		return nil
	}
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { conn.Close(context.Background()) })
	next := func() int64 {
		var n int64
		if err := conn.QueryRow(ctx, `SELECT txid_snapshot_xmax(txid_current_snapshot())`).Scan(&n); err != nil {
			b.Fatal(err)
		}
		return n
	}
	start := next()
	return func() int64 { return next() - start }
}

func pct(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	return sorted[min(len(sorted)-1, int(float64(len(sorted))*p))]
}
