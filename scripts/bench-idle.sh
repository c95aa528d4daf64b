#!/usr/bin/env bash
# What an idle careflow costs: `careflow serve` (bin/, from `make build`) on a
# fresh data folder with nothing to do, measured after a warm-up.
#   CPU: the server process's user+system time over the window, as a share
#        of one core (from /proc/PID/stat).
#   commits: SQLite — the writer's transactions that wrote
#        (careflow_db_commits_total from /metrics, read before and after);
#        PostgreSQL — the database's transactions, reads included
#        (pg_stat_database.xact_commit, less the probe's own), and the rows
#        its tables had inserted, updated or deleted (pg_stat_user_tables),
#        which only writes move.
#   BACKEND=sqlite|postgres  WARMUP=10  WINDOW=60
set -euo pipefail
cd "$(dirname "$0")/.."
backend="${BACKEND:-sqlite}"
warmup="${WARMUP:-10}"
window="${WINDOW:-60}"
port="${PORT:-18083}"
# shellcheck source=scripts/bench-serve.sh
. scripts/bench-serve.sh
bench_setup idle
bench_serve ./bin/careflow "$port"
sleep "$warmup"

ticks() { awk '{print $14 + $15}' "/proc/$pid/stat"; }
sqlite_commits() { curl -sf "http://127.0.0.1:$port/metrics" | awk '/^careflow_db_commits_total/ {s += $2} END {print s + 0}'; }
pg_probe() {
	psql "$dburl" -Atc "SELECT pg_stat_clear_snapshot()" >/dev/null
	psql "$dburl" -Atc "SELECT (SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()),
		(SELECT coalesce(sum(n_tup_ins + n_tup_upd + n_tup_del), 0) FROM pg_stat_user_tables)"
}

t0=$(ticks)
if [ "$backend" = postgres ]; then p0=$(pg_probe); else c0=$(sqlite_commits); fi
start=$(date +%s.%N)
sleep "$window"
t1=$(ticks)
if [ "$backend" = postgres ]; then p1=$(pg_probe); else c1=$(sqlite_commits); fi
elapsed=$(echo "$(date +%s.%N) - $start" | bc -l)
hz=$(getconf CLK_TCK)
cpu=$(echo "($t1 - $t0) / $hz / $elapsed * 100" | bc -l)
printf 'backend %s, idle for %.1f s after %s s of warm-up\n' "$backend" "$elapsed" "$warmup"
printf 'cpu: %.2f%% of a core\n' "$cpu"
if [ "$backend" = postgres ]; then
	x0=${p0%%|*}; w0=${p0##*|}; x1=${p1%%|*}; w1=${p1##*|}
	# The first probe's two transactions are counted in the second's figure.
	printf 'transactions: %.2f/s (xact_commit, reads included, less the probe), rows written: %.2f/s\n' \
		"$(echo "($x1 - $x0 - 2) / $elapsed" | bc -l)" "$(echo "($w1 - $w0) / $elapsed" | bc -l)"
else
	printf 'commits: %.2f/s (the writer connection'"'"'s)\n' "$(echo "($c1 - $c0) / $elapsed" | bc -l)"
	ls -l "$work/data"/*.db-wal 2>/dev/null | awk '{print "WAL file: " $5 " bytes"}' || true
fi
