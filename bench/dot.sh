#!/usr/bin/env bash
# DNS over TLS: Meridian against NSD's DoT on loopback, in the same run (queries per second and
# server CPU per query, through bench/measure.py and `dnsperf -m dot`).
#
#   bench/dot.sh            3 rounds x 10 s per server and mix
#   bench/dot.sh --quick    1 round x 3 s
#   options: --seconds S --rounds R --markdown --no-build (use the existing release build)
#
# Needs dnsperf (Debian's 2.x has `-m dot`), nsd and openssl (bench/run.sh installs the first
# two). Writes a throwaway self-signed certificate (P-256) into a temporary directory; both
# servers present it; dnsperf does not verify it, so the handshake costs the same for both.
# Servers are pinned to SERVER_CPU (default 1), dnsperf to LOAD_CPU (default 0). All traffic is
# to 127.0.0.1. See docs/performance.md ("DNS over TLS").
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
SERVER_CPU=${SERVER_CPU:-1}
LOAD_CPU=${LOAD_CPU:-0}
GEOIP=${GEOIP:-$ROOT/../shared/geoip/GeoIP2-City-Test.mmdb}
SECONDS_PER_RUN=10
ROUNDS=3
MIXES="static-dot,nxdomain-dot"
BUILD=1
MARKDOWN=()
while [ $# -gt 0 ]; do
    case "$1" in
        --quick) SECONDS_PER_RUN=3; ROUNDS=1 ;;
        --seconds) SECONDS_PER_RUN=$2; shift ;;
        --rounds) ROUNDS=$2; shift ;;
        --markdown) MARKDOWN=(--markdown) ;;
        --no-build) BUILD=0 ;;
        *) echo "unknown option $1" >&2; exit 2 ;;
    esac
    shift
done
for tool in dnsperf nsd openssl kdig; do
    command -v "$tool" >/dev/null 2>&1 || { echo "bench/dot.sh needs $tool" >&2; exit 2; }
done

TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
if [ "$BUILD" = 1 ]; then
    (cd "$ROOT" && cargo build --release --quiet)
fi
MERIDIAN=$TARGET/release/meridian

WORK=$(mktemp -d /tmp/meridian-dot.XXXXXX)
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    [ -n "${KEEP:-}" ] || rm -rf "$WORK"
}
trap cleanup EXIT

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
    -keyout "$WORK/tls.key" -out "$WORK/tls.pem" -subj "/CN=ns.example.test" \
    -addext "subjectAltName=DNS:ns.example.test,IP:127.0.0.1" 2>/dev/null
python3 "$ROOT/bench/queries.py" "$WORK/queries"
ZONEFILE=$ROOT/bench/peers/gslb.example.test.zone

wait_for_dot() { # port: until the server answers over TLS
    for _ in $(seq 100); do
        kdig +short +tls +time=1 +retry=0 @127.0.0.1 -p "$1" static.gslb.example.test A 2>/dev/null \
            | grep -q 192.0.2.80 && return 0
        sleep 0.1
    done
    echo "DoT on port $1 did not come up; logs in $WORK" >&2
    KEEP=1
    return 1
}

taskset -c "$SERVER_CPU" "$MERIDIAN" serve --zones "$ROOT/zones" --geoip "$GEOIP" \
    --dns-listen 127.0.0.1:5320 --api-listen 127.0.0.1:5391 --no-local-probe \
    --dot-listen 127.0.0.1:5321 --tls-cert "$WORK/tls.pem" --tls-key "$WORK/tls.key" \
    --log-format json > "$WORK/meridian.log" 2>&1 &
PIDS+=($!); SPECS=("meridian=$!:5321")
wait_for_dot 5321

mkdir -p "$WORK/nsd"
sed -e "s|@PORT@|5322|g; s|@TLSPORT@|5323|g; s|@WORK@|$WORK|g; s|@ZONEFILE@|$ZONEFILE|g" \
    "$ROOT/bench/peers/nsd/nsd-dot.conf" > "$WORK/nsd/nsd.conf"
taskset -c "$SERVER_CPU" nsd -d -c "$WORK/nsd/nsd.conf" > "$WORK/nsd.log" 2>&1 &
PIDS+=($!); SPECS+=("nsd=$!:5323")
wait_for_dot 5323

args=()
for s in "${SPECS[@]}"; do args+=(--server "$s"); done
python3 "$ROOT/bench/measure.py" "${args[@]}" --queries "$WORK/queries" \
    --seconds "$SECONDS_PER_RUN" --rounds "$ROUNDS" --mixes "$MIXES" --load-cpu "$LOAD_CPU" \
    --latency-mixes static-dot \
    --latency-seconds "$([ "$ROUNDS" = 1 ] && echo 2 || echo 5)" "${MARKDOWN[@]}"
