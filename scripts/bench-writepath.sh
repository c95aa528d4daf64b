#!/usr/bin/env bash
# The write path over HTTP (issue 13): audited reads and audited creates of a
# real `careflow serve`, loaded by bin/loadgen as a separate process over
# loopback, with the /healthz floor and the raw durable commit rate of the
# same disk or database server measured in the same run.
#   floor:  GET /healthz                      — no token, no database
#   read:   GET /fhir/R4/Patient/{id}         — machine client's token, policy with
#                                               its consent read, record read, AES-GCM
#                                               open, durable audit append before the answer
#   create: POST /fhir/R4/Patient             — a registration-style Patient (two
#                                               identifiers, unique per request; official
#                                               name with two given names; phone; birth
#                                               date; address), validated, sealed, indexed,
#                                               audited in its transaction, durable
# Rate limits are off for the run (they would cap it).
#   BACKEND=sqlite|postgres   CAREFLOW=bin/careflow (the binary to measure; build an
#   older one elsewhere to compare)   READ_CONNS="8"   CREATE_CONNS="16 64"
#   DURATION=10s   RAW=1 (0: skip the raw commit benchmark)
set -euo pipefail
cd "$(dirname "$0")/.."
backend="${BACKEND:-sqlite}"
careflow="${CAREFLOW:-./bin/careflow}"
loadgen="${LOADGEN:-./bin/loadgen}"
duration="${DURATION:-10s}"
read_conns="${READ_CONNS:-8}"
create_conns="${CREATE_CONNS:-16 64}"
port="${PORT:-18082}"
# shellcheck source=scripts/bench-serve.sh
. scripts/bench-serve.sh

echo "== $(date -u '+%Y-%m-%d %H:%M:%S UTC'), $careflow ($("$careflow" version 2>/dev/null | head -1 || true)), load average $(cut -d' ' -f1-3 /proc/loadavg)"
if [ "${RAW:-1}" = 1 ]; then
	echo "== raw durable commit rate ($backend, same disk / database server)"
	if [ "$backend" = postgres ]; then
		CAREFLOW_TEST_POSTGRES="$admin" go test -run '^$' -bench "RawCommit/postgres" -benchtime 5s -count 1 ./internal/store/ | grep Benchmark
	else
		env -u CAREFLOW_TEST_POSTGRES go test -run '^$' -bench "RawCommit/sqlite" -benchtime 5s -count 1 ./internal/store/ | grep Benchmark
	fi
fi

bench_setup wbench
creds=$("$careflow" client add bench --scopes 'system/Patient.cruds' "${common[@]}" 2>/dev/null)
id=$(echo "$creds" | sed -n 's/^client_id: //p')
secret=$(echo "$creds" | sed -n 's/^client_secret: //p')
bench_serve "$careflow" "$port" --rate-limit-user off --rate-limit-addr off --rate-limit-login off
token=$(curl -sf -u "$id:$secret" -d grant_type=client_credentials "http://127.0.0.1:$port/api/v1/auth/token" |
	sed -E 's/.*"access_token":"([^"]+)".*/\1/')
cat >"$work/patient.json" <<'JSON'
{"resourceType":"Patient","identifier":[{"system":"https://github.com/careflow/careflow/sid/eg-national-id","value":"2{{n}}"},{"system":"urn:careflow:mrn","value":"MRN-{{n}}"}],"active":true,"name":[{"use":"official","family":"Hassan","given":["Mona","Saleh"]}],"telecom":[{"system":"phone","value":"+20 10 {{n}}","use":"mobile"}],"gender":"female","birthDate":"1984-03-17","address":[{"line":["12 Nile St"],"city":"Cairo","postalCode":"11311","country":"EG"}]}
JSON
patient=$(sed 's/{{n}}/1/g' "$work/patient.json" | curl -sf -H "Authorization: Bearer $token" -H 'Content-Type: application/fhir+json' \
	--data-binary @- "http://127.0.0.1:$port/fhir/R4/Patient" | sed -E 's/.*"id":"([^"]+)".*/\1/')
[ -n "$patient" ] || { echo "bench-writepath: could not create the Patient" >&2; cat "$work/server.log" >&2; exit 1; }
if [ "$backend" = postgres ]; then
	# The box's PostgreSQL runs without autovacuum: statistics for the new tables.
	psql "$dburl" -qc "VACUUM ANALYZE"
fi

for c in $read_conns; do
	echo "== floor: GET /healthz ($backend, $c connections, $duration)"
	"$loadgen" -url "http://127.0.0.1:$port/healthz" -c "$c" -d "$duration"
	echo "== audited read: GET /fhir/R4/Patient/{id} ($backend, $c connections, $duration)"
	"$loadgen" -url "http://127.0.0.1:$port/fhir/R4/Patient/$patient" -c "$c" -d "$duration" -H "Authorization: Bearer $token"
done
for c in $create_conns; do
	echo "== audited create: POST /fhir/R4/Patient ($backend, $c connections, $duration)"
	"$loadgen" -method POST -url "http://127.0.0.1:$port/fhir/R4/Patient" -body-file "$work/patient.json" -unique '{{n}}' \
		-c "$c" -d "$duration" -H "Authorization: Bearer $token" -H 'Content-Type: application/fhir+json'
done
echo "== load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
