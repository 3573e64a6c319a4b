#!/usr/bin/env bash
# Scale runs: zone load+compile time, peak RSS and per-query CPU as services and regions grow;
# then latency while the table is swapped every 100 ms under load.
#
#   bench/scale.sh           the matrix below, 5 s per dnsperf run
#   bench/scale.sh --quick   10 and 1,000 services only, 2 s runs
#
# "Load+compile" is the time from starting `meridian serve` to its ready line: reading and
# validating the TOML, opening the GeoIP database, compiling the table, binding sockets. RSS is
# the peak (VmHWM) at that point, and the resident set once serving (VmRSS). Per-query CPU is measured as in run.sh (server on SERVER_CPU,
# dnsperf on LOAD_CPU), with queries spread over 1,000 random services of the zone.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
SERVER_CPU=${SERVER_CPU:-1}
LOAD_CPU=${LOAD_CPU:-0}
GEOIP=${GEOIP:-$ROOT/../shared/geoip/GeoIP2-City-Test.mmdb}
MERIDIAN=${CARGO_TARGET_DIR:-$ROOT/target}/release/meridian
MATRIX="10:1 1000:1 100000:1 10:1000 100:1000"
SECS=5
if [ "${1:-}" = "--quick" ]; then MATRIX="10:1 1000:1 10:1000"; SECS=2; fi
[ -x "$MERIDIAN" ] || (cd "$ROOT" && cargo build --release --quiet)

WORK=$(mktemp -d /tmp/meridian-scale.XXXXXX)
PID=
stop() { [ -n "$PID" ] && kill "$PID" 2>/dev/null && wait "$PID" 2>/dev/null; PID=; }
trap 'stop; rm -rf "$WORK"' EXIT

# POST /v1/reload needs the admin token.
TOKEN=bench-admin-token-0123456789
echo "$TOKEN" > "$WORK/admin.token"
start() { # zone dir -> sets PID and READY_SECS
    local t0 t1
    rm -f "$WORK/out"
    t0=$(date +%s.%N)
    taskset -c "$SERVER_CPU" "$MERIDIAN" serve --zones "$1" --geoip "$GEOIP" \
        --dns-listen 127.0.0.1:5320 --api-listen 127.0.0.1:5392 --no-local-probe \
        --admin-token-file "$WORK/admin.token" > "$WORK/out" 2> "$WORK/err" &
    PID=$!
    until grep -q '^ready' "$WORK/out" 2>/dev/null; do
        kill -0 "$PID" 2>/dev/null || { cat "$WORK/err" >&2; exit 1; }
        sleep 0.02
    done
    t1=$(date +%s.%N)
    READY_SECS=$(printf "%.3f" "$(echo "$t1 - $t0" | bc)")
}
cpu_ns() { awk '{s+=$1} END {printf "%.0f\n", s}' /proc/"$1"/task/*/schedstat; }
per_query() { # query file -> "qps us/query"
    local c0 c1 out done qps
    c0=$(cpu_ns "$PID")
    out=$(taskset -c "$LOAD_CPU" dnsperf -s 127.0.0.1 -p 5320 -B -d "$1" -l "$SECS" -q 200)
    c1=$(cpu_ns "$PID")
    done=$(echo "$out" | awk '/Queries completed/ {print $3}')
    qps=$(echo "$out" | awk '/Queries per second/ {printf "%.0f", $4}')
    echo "$qps $(echo "scale=2; ($c1 - $c0) / 1000 / $done" | bc)"
}

printf '%-9s %-8s %-12s %-10s %-10s %-8s %-12s\n' services regions "load+compile" "peak RSS" "RSS after" qps "CPU us/query"
for cell in $MATRIX; do
    services=${cell%:*}; regions=${cell#*:}
    python3 "$ROOT/bench/gen_zone.py" "$services" "$regions" "$WORK/zone-$cell" "$WORK/q-$cell.bin"
    start "$WORK/zone-$cell"
    rss=$(awk '/VmHWM/ {printf "%.0f MB", $2 / 1024}' /proc/"$PID"/status)
    now=$(awk '/VmRSS/ {printf "%.0f MB", $2 / 1024}' /proc/"$PID"/status)
    read -r qps us < <(per_query "$WORK/q-$cell.bin")
    printf '%-9s %-8s %-12s %-10s %-10s %-8s %-12s\n' "$services" "$regions" "${READY_SECS}s" "$rss" "$now" "$qps" "$us"
    stop
done

# Table swap under load: dnsperf at a fixed rate with per-query latencies, once quiet and once
# with POST /v1/reload (a full reload: zone files re-read, GeoIP reopened, table recompiled and
# swapped) every 100 ms.
python3 "$ROOT/bench/gen_zone.py" 1000 1 "$WORK/swap" "$WORK/swap.bin"
start "$WORK/swap"
latency() { # label
    taskset -c "$LOAD_CPU" dnsperf -s 127.0.0.1 -p 5320 -B -d "$WORK/swap.bin" -l "$SECS" \
        -Q 20000 -v > "$WORK/lat" 2>&1 || true
    python3 - "$1" "$WORK/lat" <<'PY'
import sys
label, path = sys.argv[1], sys.argv[2]
lines = open(path).read().splitlines()
v = sorted(float(l.rsplit(" ", 1)[1]) for l in lines if l.startswith("> "))
lost = sum(1 for l in lines if l.startswith("[Timeout]"))
errors = sum(1 for l in lines if l.startswith("> ") and not l.startswith("> NOERROR"))
pick = lambda p: v[min(len(v) - 1, round(p / 100 * (len(v) - 1)))] * 1e6
print(f"{label:22} {len(v):7} answers  p50 {pick(50):6.0f} us  p99 {pick(99):6.0f} us  "
      f"p99.9 {pick(99.9):6.0f} us  max {v[-1] * 1e6:6.0f} us  lost {lost}  errors {errors}")
PY
}
echo
echo "swap under load (1,000 services, 20,000 qps):"
latency "no reloads"
gen0=$(curl -s -H "Authorization: Bearer $TOKEN" -X POST http://127.0.0.1:5392/v1/reload | python3 -c 'import json,sys; print(json.load(sys.stdin)["generation"])')
( while kill -0 "$PID" 2>/dev/null; do curl -s -o /dev/null -H "Authorization: Bearer $TOKEN" -X POST http://127.0.0.1:5392/v1/reload; sleep 0.1; done ) &
RELOADER=$!
latency "reload every 100 ms"
kill "$RELOADER" 2>/dev/null || true
gen1=$(curl -s -H "Authorization: Bearer $TOKEN" -X POST http://127.0.0.1:5392/v1/reload | python3 -c 'import json,sys; print(json.load(sys.stdin)["generation"])')
echo "tables swapped during the run: $((gen1 - gen0 - 1))"
