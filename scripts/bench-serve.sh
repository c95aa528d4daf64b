# Sourced by the HTTP benchmark scripts (bench-security.sh, bench-writepath.sh,
# bench-idle.sh): a fresh data folder, and on PostgreSQL a fresh database,
# removed with the server when the script exits.
#   bench_setup NAME      sets work (a temporary folder), common (the data
#                         and database flags every careflow command of the
#                         run takes) and dburl (the database's URL, or empty
#                         on SQLite); BACKEND=sqlite|postgres picks the
#                         backend, NAME names the PostgreSQL database
#   bench_serve BIN PORT [FLAG...]
#                         starts BIN serve with common and the flags on
#                         127.0.0.1:PORT, its log in $work/server.log, and
#                         waits until /healthz answers; pid is its process
# shellcheck shell=bash

admin="${CAREFLOW_TEST_POSTGRES:-postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable}"
work=""
pid=""
dbname=""
dburl=""
common=()

bench_cleanup() {
	[ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true
	[ -n "$dbname" ] && psql "$admin" -qc "DROP DATABASE IF EXISTS $dbname WITH (FORCE)" || true
	[ -n "$work" ] && rm -rf "$work"
}

bench_setup() {
	work=$(mktemp -d)
	trap bench_cleanup EXIT
	common=(--data-dir "$work/data" --log-level warn)
	if [ "${BACKEND:-sqlite}" = postgres ]; then
		dbname="careflow_$1_$$"
		psql "$admin" -qc "CREATE DATABASE $dbname"
		local base="${admin%%\?*}"
		dburl="${base%/*}/$dbname?sslmode=disable"
		common+=(--database "$dburl")
	fi
}

bench_serve() {
	local bin="$1" port="$2"
	shift 2
	"$bin" serve "${common[@]}" --listen "127.0.0.1:$port" "$@" 2>"$work/server.log" &
	pid=$!
	for _ in $(seq 1 200); do
		curl -sf "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && return 0
		sleep 0.1
	done
	echo "bench: careflow serve did not answer on port $port" >&2
	cat "$work/server.log" >&2
	exit 1
}
