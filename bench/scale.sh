#!/usr/bin/env bash
# Scale runs: zone load+compile time, peak RSS and per-query CPU as services and regions grow;
# then latency while the table is swapped every 100 ms under load.
#
#   bench/scale.sh           everything below, 5 s per dnsperf run
#   bench/scale.sh --quick   10 and 1,000 services only, 2 s runs (no targets, no many zones)
#   bench/scale.sh --targets only issue 17's large-zone rows (ready, peak, reload peak)
#   bench/scale.sh --zones   only the many-zones run (Meridian, NSD and Knot, pinned to one core
#                            then unpinned; needs nsd, knotd
#                            and kdig: apt-get install nsd knot knot-dnsutils)
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
# services:regions:endpoints per region, issue 17's rows.
TARGETS="100000:1:1 1000000:1:1 100000:3:2"
ZONES=100000
SECS=5
RUN="matrix swap targets zones"
case "${1:-}" in
    --quick) MATRIX="10:1 1000:1 10:1000"; SECS=2; RUN="matrix swap" ;;
    --targets) RUN=targets ;;
    --zones) RUN=zones ;;
esac
runs() { [[ " $RUN " == *" $1 "* ]]; }
[ -x "$MERIDIAN" ] || (cd "$ROOT" && cargo build --release --quiet)

WORK=$(mktemp -d /tmp/meridian-scale.XXXXXX)
PID=
# A server killed by the signal exits 143; that is not the benchmark failing.
stop() { if [ -n "$PID" ]; then kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; fi; PID=; }
trap 'stop; rm -rf "$WORK"' EXIT

# POST /v1/reload needs the admin token.
TOKEN=bench-admin-token-0123456789
echo "$TOKEN" > "$WORK/admin.token"
start() { # zone dir [cpus: default SERVER_CPU, "all" for no pinning] -> sets PID and READY_SECS
    local t0 t1 pin=(taskset -c "${2:-$SERVER_CPU}")
    [ "${2:-}" = all ] && pin=()
    rm -f "$WORK/out"
    t0=$(date +%s.%N)
    "${pin[@]}" "$MERIDIAN" serve --zones "$1" --geoip "$GEOIP" \
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

# Issue 17's targets: `serve` ready time and memory for large service counts, and what a
# reload adds to the peak. "steady" is VmRSS once ready; "peak" is VmHWM at ready and after the
# reload. The reload is the worst case: a comment is appended to the zone file first, so its
# stamp and its content hash both change and the whole file is read, parsed and compiled again
# beside the serving table (POST /v1/reload; an untouched file would not even be opened).
# `serve` is pinned to one core as everywhere here; "ready, 2 cores" starts it once more
# unpinned, as it runs in production (zone files then load on both cores), with its peak.
targets() {
    echo
    echo "large zones (one file; ENDPOINTS per region per service; reload = the file edited):"
    printf '%-9s %-8s %-9s %-8s %-10s %-10s %-8s %-12s %-8s %-16s\n' services regions endpoints ready \
        "peak RSS" steady reload "reload peak" "/steady" "ready, 2 cores"
    for cell in $TARGETS; do
        IFS=: read -r services regions endpoints <<< "$cell"
        python3 "$ROOT/bench/gen_zone.py" "$services" "$regions" "$WORK/zone-t" "$WORK/q-t.bin" "$endpoints"
        start "$WORK/zone-t"
        hwm=$(awk '/VmHWM/ {print $2}' /proc/"$PID"/status)
        steady=$(awk '/VmRSS/ {print $2}' /proc/"$PID"/status)
        for f in "$WORK"/zone-t/*.toml; do echo "# edited for the reload" >> "$f"; done
        t0=$(date +%s.%N)
        curl -sf -o /dev/null -H "Authorization: Bearer $TOKEN" -X POST http://127.0.0.1:5392/v1/reload
        t1=$(date +%s.%N)
        reload_hwm=$(awk '/VmHWM/ {print $2}' /proc/"$PID"/status)
        pinned_ready=$READY_SECS
        stop
        start "$WORK/zone-t" all
        both=$(awk '/VmHWM/ {printf "%d MB", $2 / 1024}' /proc/"$PID"/status)
        printf '%-9s %-8s %-9s %-8s %-10s %-10s %-8s %-12s %-8s %-16s\n' "$services" "$regions" \
            "$endpoints" "${pinned_ready}s" "$((hwm / 1024)) MB" "$((steady / 1024)) MB" \
            "$(printf '%.2fs' "$(echo "$t1 - $t0" | bc)")" "$((reload_hwm / 1024)) MB" \
            "$(echo "scale=2; $reload_hwm / $steady" | bc)" "${READY_SECS}s, $both"
        stop
        rm -rf "$WORK/zone-t"
    done
}

# Many small zones: the same COUNT zones (10 records each) loaded by Meridian (one TOML file
# per zone), NSD and Knot (RFC 1035 master files), one after the other, each pinned to
# SERVER_CPU, then all three again unpinned (Meridian and Knot load on every core). "load" is
# from starting the server to the first, a middle and the last zone all
# answering (Knot loads zones in the background after it starts listening); "peak RSS" is
# VmHWM (NSD: the largest of its processes), "RSS after" the sum of the processes' PSS then.
many_zones() {
    local count=$1 dir=$WORK/many
    python3 "$ROOT/bench/gen_zone.py" --zones "$count" "$dir"
    # Written out before any server reads them: a server should not share the disk with the
    # write-back of 200,000 new files.
    sync
    echo
    echo "$count zones of 10 records (cores: pinned to CPU $SERVER_CPU, then unpinned on all):"
    printf '%-9s %-6s %-9s %-10s %-10s\n' server cores load "peak RSS" "RSS after"
    local names=("www.z0.test." "www.z$((count / 2)).test." "www.z$((count - 1)).test.")
    local cpus pin
    for cpus in "$SERVER_CPU" all; do
    pin=(taskset -c "$cpus")
    [ "$cpus" = all ] && pin=()
    for server in meridian nsd knot; do
        local port t0 t1 pids hwm pss
        rm -rf "$WORK/$server" && mkdir -p "$WORK/$server"
        # Every server starts with the zone files in the page cache (this machine's memory
        # manager evicts pages idle for a while, and the first server would pay for it).
        find "$dir" -type f -exec cat {} + > /dev/null
        t0=$(date +%s.%N)
        case "$server" in
            meridian)
                port=5320
                "${pin[@]}" "$MERIDIAN" serve --zones "$dir/meridian" --geoip "$GEOIP" \
                    --dns-listen 127.0.0.1:$port --api-listen 127.0.0.1:5392 --no-local-probe \
                    > "$WORK/meridian/log" 2>&1 &
                ;;
            nsd)
                port=5321
                sed -n '/^zone:/q;p' "$ROOT/bench/peers/nsd/nsd.conf" \
                    | sed -e "s|@PORT@|$port|g" -e "s|@WORK@|$WORK|g" > "$WORK/nsd/nsd.conf"
                cat "$dir/nsd.zones" >> "$WORK/nsd/nsd.conf"
                "${pin[@]}" nsd -d -c "$WORK/nsd/nsd.conf" > "$WORK/nsd/log" 2>&1 &
                ;;
            knot)
                port=5322
                mkdir -p "$WORK/knot/db"
                sed -n '/^zone:/q;p' "$ROOT/bench/peers/knot/knot.conf" \
                    | sed -e "s|@PORT@|$port|g" -e "s|@WORK@|$WORK|g" > "$WORK/knot/knot.conf"
                printf 'template:\n  - id: default\n    journal-content: none\n    zonefile-sync: -1\nzone:\n' \
                    >> "$WORK/knot/knot.conf"
                cat "$dir/knot.zones" >> "$WORK/knot/knot.conf"
                "${pin[@]}" knotd -c "$WORK/knot/knot.conf" > "$WORK/knot/log" 2>&1 &
                ;;
        esac
        PID=$!
        for name in "${names[@]}"; do
            until [ -n "$(kdig @127.0.0.1 -p "$port" +short +time=1 +retry=0 "$name" A 2>/dev/null)" ]; do
                kill -0 "$PID" 2>/dev/null || { echo "$server exited; log in $WORK/$server" >&2; cat "$WORK/$server/log" >&2; exit 1; }
                sleep 0.05
            done
        done
        t1=$(date +%s.%N)
        pids="$PID $( (pgrep -P "$PID" || true) | tr "\n" " ")"
        hwm=0; pss=0
        for p in $pids; do
            h=$(awk '/VmHWM/ {print $2}' /proc/"$p"/status 2>/dev/null || echo 0)
            [ "${h:-0}" -gt "$hwm" ] && hwm=$h
            pss=$((pss + $(awk '/^Pss:/ {print $2}' /proc/"$p"/smaps_rollup 2>/dev/null || echo 0)))
        done
        printf '%-9s %-6s %-9s %-10s %-10s\n' "$server" "$cpus" "$(printf '%.2fs' "$(echo "$t1 - $t0" | bc)")" \
            "$((hwm / 1024)) MB" "$((pss / 1024)) MB"
        stop
    done
    done
    rm -rf "$dir"
}

if runs matrix; then
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
fi

# Table swap under load: dnsperf at a fixed rate with per-query latencies, once quiet and once
# with POST /v1/reload (a full reload: zone files re-read, GeoIP reopened, table recompiled and
# swapped) every 100 ms.
if runs swap; then
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
stop
fi

if runs targets; then targets; fi
if runs zones; then many_zones "$ZONES"; fi
