#!/usr/bin/env bash
# The revenue cycle's numbers for BENCHMARKS.md ("Revenue cycle (issue 11)"),
# with the two ceilings measured in the same run on the same box:
#   1. the raw durable commit rate (internal/store, BenchmarkRawCommit);
#   2. the RSA private-key operations the protocol spends per claim
#      (internal/payer/hcx: RSA-2048 OAEP decryption and RS256 signature,
#      one core);
#   3. journey latency, one journey at a time, start → final by the
#      journey's own times (BenchmarkRevenueCycleJourney, JOURNEYS of them);
#   4. batch throughput: CLAIMS claims as one batch, from the first POST to
#      the last journey final (BenchmarkRevenueCycleBatch).
# careflow runs as a child process (the test binary running main), the
# payer simulator in the benchmark's process, with no latency and no faults.
#   BACKEND=sqlite|postgres  JOURNEYS=200  CLAIMS=10000
set -euo pipefail
cd "$(dirname "$0")/.."
backend="${BACKEND:-sqlite}"
journeys="${JOURNEYS:-200}"
claims="${CLAIMS:-10000}"
if [ "$backend" = postgres ]; then
	export CAREFLOW_TEST_POSTGRES="${CAREFLOW_TEST_POSTGRES:-postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable}"
else
	unset CAREFLOW_TEST_POSTGRES
fi
echo "== $backend, $(date -u '+%Y-%m-%d %H:%M UTC'), load $(cut -d' ' -f1-3 /proc/loadavg)"
go test -run '^$' -bench "RawCommit/$backend" -benchtime 3s -count 1 ./internal/store/ | grep Benchmark
go test -run '^$' -bench 'RSA2048OAEPDecrypt|RS256Sign|DecryptClaimMessage' -benchtime 3s -cpu 1 -count 1 ./internal/payer/hcx/ | grep Benchmark
go test -run '^$' -bench "RevenueCycleJourney/$backend" -benchtime "${journeys}x" -count 1 -timeout 30m ./cmd/careflow/ | grep Benchmark
go test -run '^$' -bench "RevenueCycleBatch/$backend" -benchtime "${claims}x" -count 1 -timeout 60m ./cmd/careflow/ | grep Benchmark
echo "== load $(cut -d' ' -f1-3 /proc/loadavg)"
