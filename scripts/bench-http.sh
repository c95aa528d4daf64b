#!/usr/bin/env bash
# HTTP benchmarks for BENCHMARKS.md: starts a careflow server (built by
# `make build`) on a fresh data folder, loads it from a separate process with
# bin/loadgen, and stops it. Loopback only.
#   BACKEND=sqlite|postgres (postgres needs CAREFLOW_TEST_POSTGRES's server)
set -euo pipefail
cd "$(dirname "$0")/.."
backend="${BACKEND:-sqlite}"
conns="${CONNS:-32}"
duration="${DURATION:-10s}"
port="${PORT:-18080}"
work=$(mktemp -d)
trap 'kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; rm -rf "$work"' EXIT

args=(serve --data-dir "$work/data" --listen "127.0.0.1:$port" --log-level warn)
if [ "$backend" = postgres ]; then
	admin="${CAREFLOW_TEST_POSTGRES:-postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable}"
	db="careflow_bench_$$"
	psql "$admin" -qc "CREATE DATABASE $db"
	trap 'kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; psql "$admin" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)"; rm -rf "$work"' EXIT
	base="${admin%%\?*}"
	args+=(--database "${base%/*}/$db?sslmode=disable")
fi
./bin/careflow "${args[@]}" 2>"$work/server.log" &
pid=$!
up=no
for _ in $(seq 1 100); do
	if curl -sf "http://127.0.0.1:$port/healthz" >/dev/null 2>&1; then up=yes; break; fi
	sleep 0.1
done
if [ "$up" != yes ]; then
	echo "bench-http: careflow did not start; its log:" >&2
	cat "$work/server.log" >&2
	exit 1
fi
echo "== GET /healthz ($backend, $conns connections, $duration)"
./bin/loadgen -url "http://127.0.0.1:$port/healthz" -c "$conns" -d "$duration"
