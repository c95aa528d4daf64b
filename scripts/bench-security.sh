#!/usr/bin/env bash
# careflow's HTTP load harness for BENCHMARKS.md: the /healthz floor and the
# cost of the security layer per request.
# Starts `careflow serve` (bin/, from `make build`) on a fresh data folder,
# creates a machine client and one Patient, and loads from a separate
# process (bin/loadgen), loopback only:
#   without: GET /healthz                 — HTTP floor: no token, no policy, no audit, no database
#   + authentication: GET /fhir/R4/metadata — EdDSA JWT check, session check, rate-limit guard
#   + policy: GET /api/v1/access/check      — the same plus the access decision (consent read)
#   with:    GET /fhir/R4/Patient/{id}    — EdDSA JWT check, access policy, durable audit append,
#                                           database read, AES-GCM decryption, response recheck
# Rate limits are switched off for the run (they would cap it at 50/s).
#   BACKEND=sqlite|postgres  CONNS="1 16"  DURATION=10s
set -euo pipefail
cd "$(dirname "$0")/.."
backend="${BACKEND:-sqlite}"
duration="${DURATION:-10s}"
conns_list="${CONNS:-1 16}"
port="${PORT:-18081}"
# shellcheck source=scripts/bench-serve.sh
. scripts/bench-serve.sh
bench_setup bench

creds=$(./bin/careflow client add bench --scopes 'system/Patient.cruds' "${common[@]}" 2>/dev/null)
id=$(echo "$creds" | sed -n 's/^client_id: //p')
secret=$(echo "$creds" | sed -n 's/^client_secret: //p')

bench_serve ./bin/careflow "$port" --rate-limit-user off --rate-limit-addr off --rate-limit-login off
token=$(curl -sf -u "$id:$secret" -d grant_type=client_credentials "http://127.0.0.1:$port/api/v1/auth/token" |
	sed -E 's/.*"access_token":"([^"]+)".*/\1/')
patient=$(curl -sf -H "Authorization: Bearer $token" -H 'Content-Type: application/fhir+json' \
	-d '{"resourceType":"Patient","identifier":[{"system":"urn:bench","value":"B-1"}],"name":[{"family":"Bench","given":["Load"]}],"birthDate":"1980-01-01"}' \
	"http://127.0.0.1:$port/fhir/R4/Patient" | sed -E 's/.*"id":"([^"]+)".*/\1/')
[ -n "$patient" ] || { echo "bench-security: could not create the Patient" >&2; cat "$work/server.log" >&2; exit 1; }

# Each step adds one layer, so the differences between rows price them.
for c in $conns_list; do
	echo "== without: GET /healthz ($backend, $c connections, $duration)"
	./bin/loadgen -url "http://127.0.0.1:$port/healthz" -c "$c" -d "$duration"
	echo "== + authentication: GET /fhir/R4/metadata ($backend, $c connections, $duration)"
	./bin/loadgen -url "http://127.0.0.1:$port/fhir/R4/metadata" -c "$c" -d "$duration" -H "Authorization: Bearer $token"
	echo "== + policy decision (consent read): GET /api/v1/access/check ($backend, $c connections, $duration)"
	./bin/loadgen -url "http://127.0.0.1:$port/api/v1/access/check?resource=Patient&action=read&patient=$patient" -c "$c" -d "$duration" -H "Authorization: Bearer $token"
	echo "== with everything: GET /fhir/R4/Patient/{id} ($backend, $c connections, $duration)"
	./bin/loadgen -url "http://127.0.0.1:$port/fhir/R4/Patient/$patient" -c "$c" -d "$duration" -H "Authorization: Bearer $token"
done
