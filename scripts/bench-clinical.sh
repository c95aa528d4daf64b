#!/usr/bin/env bash
# The clinical workflows' numbers for BENCHMARKS.md ("Clinical workflows
# (issue 12)"): p50 and p99, as the client sees them, of every route under
# /api/v1/clinical-workflows with N workflows stored, one request at a time
# and over several connections, with GET /healthz as the floor.
# careflow runs as a child process (the test binary running main) on a
# fresh data folder (SQLite) or a fresh PostgreSQL database; the seed goes
# through the API in parallel, then each workflow is moved back 0-60 days
# with careflow stopped (cmd/careflow/clinical_bench_test.go says how and
# why). Prints a Markdown table.
#   BACKEND=sqlite|postgres  N=100000  REQUESTS=2000  CONNS="1 8"
#   SEED_CONNS=8  BUDGET=60s (per route and concurrency)  PATIENTS=300
set -euo pipefail
cd "$(dirname "$0")/.."
backend="${BACKEND:-sqlite}"
if [ "$backend" = postgres ]; then
	export CAREFLOW_TEST_POSTGRES="${CAREFLOW_TEST_POSTGRES:-postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable}"
else
	unset CAREFLOW_TEST_POSTGRES
fi
export CAREFLOW_BENCH_CLINICAL=1
export CAREFLOW_BENCH_CLINICAL_N="${N:-100000}"
export CAREFLOW_BENCH_CLINICAL_REQUESTS="${REQUESTS:-2000}"
export CAREFLOW_BENCH_CLINICAL_CONNS="${CONNS:-1 8}"
export CAREFLOW_BENCH_CLINICAL_SEED_CONNS="${SEED_CONNS:-8}"
export CAREFLOW_BENCH_CLINICAL_BUDGET="${BUDGET:-60s}"
export CAREFLOW_BENCH_CLINICAL_PATIENTS="${PATIENTS:-300}"
echo "== $backend, N=$CAREFLOW_BENCH_CLINICAL_N, $(date -u '+%Y-%m-%d %H:%M UTC'), load $(cut -d' ' -f1-3 /proc/loadavg)"
go test -run '^$' -bench "RawCommit/$backend" -benchtime 3s -count 1 ./internal/store/ | grep Benchmark
# The table's lines start with | and its notes with #, shown as they come
# (a 100,000-workflow seed takes a while); a failure shows the end of the
# test's output (never PHI: the patients are synthetic).
out=$(mktemp)
trap 'rm -f "$out"' EXIT
if ! go test -run "^TestClinicalBench\$/^$backend\$" -v -count 1 -timeout 600m ./cmd/careflow/ 2>&1 |
	tee "$out" | grep --line-buffered -E '^(\||# )'; then
	grep -v '^        {' "$out" | tail -40 >&2
	exit 1
fi
echo "== load $(cut -d' ' -f1-3 /proc/loadavg)"
