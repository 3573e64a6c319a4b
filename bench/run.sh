#!/usr/bin/env bash
# Meridian against gdnsd, NSD and Knot on loopback: server CPU per query, qps, p50/p99 latency.
#
#   bench/run.sh            3 rounds x 10 s per server and query mix (about 15 minutes)
#   bench/run.sh --quick    1 round x 3 s, fewer mixes (about 2 minutes)
#   bench/run.sh --dnssec   DNSSEC: DO=1 mixes and their DO=0 counterparts against a signed
#                           Meridian, Knot mod-onlinesign and Knot pre-signed (servers
#                           meridian-dnssec, knot-onlinesign, knot-signed; keys generated into
#                           the temporary directory at start); combine with --seconds/--rounds
#   options: --seconds S --rounds R --servers "meridian gdnsd nsd knot" --mixes a,b --markdown
#            (server meridian-base: the binary in MERIDIAN_BASE, e.g. a build of main, beside
#            this one; MERIDIAN overrides the binary of server meridian; LATENCY_MIXES=a,b
#            picks the mixes whose latency is measured, default static,geo-ecs; with --dnssec
#            static-do,geo-ecs-do)
#            --no-install (do not apt-get missing tools) --no-build (use the existing release build)
#
# Installs dnsperf, gdnsd, knot and nsd with apt when missing, builds Meridian (release), writes
# peer configs from bench/peers/ into a temporary directory, starts every server pinned to
# SERVER_CPU (default 1) and runs dnsperf pinned to LOAD_CPU (default 0). All traffic is to
# 127.0.0.1. Servers are stopped on exit. See docs/performance.md for what the numbers mean.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
SERVER_CPU=${SERVER_CPU:-1}
LOAD_CPU=${LOAD_CPU:-0}
GEOIP=${GEOIP:-$ROOT/../shared/geoip/GeoIP2-City-Test.mmdb}
SECONDS_PER_RUN=10
ROUNDS=3
SERVERS="meridian gdnsd nsd knot"
MIXES="static,nxdomain,geo,geo-ecs,mix,static-tcp,mix-tcp"
INSTALL=1
BUILD=1
MARKDOWN=()
COMPARE=gdnsd,nsd
LATENCY=static,geo-ecs
while [ $# -gt 0 ]; do
    case "$1" in
        --quick) SECONDS_PER_RUN=3; ROUNDS=1; MIXES="static,nxdomain,geo-ecs,static-tcp,mix-tcp" ;;
        --dnssec)
            SERVERS="meridian-dnssec knot-onlinesign knot-signed"
            MIXES="static,static-do,nxdomain,nxdomain-do,nxrandom,nxrandom-do,geo-ecs,geo-ecs-do"
            COMPARE=knot-onlinesign,knot-signed; LATENCY=static-do,geo-ecs-do ;;
        --seconds) SECONDS_PER_RUN=$2; shift ;;
        --rounds) ROUNDS=$2; shift ;;
        --servers) SERVERS=$2; shift ;;
        --mixes) MIXES=$2; shift ;;
        --markdown) MARKDOWN=(--markdown) ;;
        --no-install) INSTALL=0 ;;
        --no-build) BUILD=0 ;;
        *) echo "unknown option $1" >&2; exit 2 ;;
    esac
    shift
done

need() { command -v "$1" >/dev/null 2>&1; }
if [ "$INSTALL" = 1 ]; then
    missing=()
    need dnsperf || missing+=(dnsperf)
    need gdnsd || missing+=(gdnsd)
    need knotd || missing+=(knot)
    need nsd || missing+=(nsd)
    if [ ${#missing[@]} -gt 0 ]; then
        # policy-rc.d 101: packages must not start their system services on port 53.
        printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
        DEBIAN_FRONTEND=noninteractive apt-get install -y "${missing[@]}" >&2
        rm -f /usr/sbin/policy-rc.d
    fi
fi

TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
if [ "$BUILD" = 1 ]; then
    (cd "$ROOT" && cargo build --release --quiet)
fi
MERIDIAN=${MERIDIAN:-$TARGET/release/meridian}
# Server `meridian-base`: another Meridian build (MERIDIAN_BASE=path) in the same run, to
# compare a change with its base under the same load.
MERIDIAN_BASE=${MERIDIAN_BASE:-}

WORK=$(mktemp -d /tmp/meridian-bench.XXXXXX)
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    [ -n "${KEEP:-}" ] || rm -rf "$WORK"
}
trap cleanup EXIT

python3 "$ROOT/bench/queries.py" "$WORK/queries"
ZONEFILE=$ROOT/bench/peers/gslb.example.test.zone
fill() { # template -> file, with the placeholders filled in
    sed -e "s|@PORT@|$3|g; s|@WORK@|$WORK|g; s|@ZONEFILE@|$ZONEFILE|g; s|@GEOIP@|$GEOIP|g" \
        -e "s|@NAME@|${4:-}|g" "$1" > "$2"
}
wait_for() { # port: until the server answers over UDP
    for _ in $(seq 100); do
        kdig +short +time=1 +retry=0 @127.0.0.1 -p "$1" static.gslb.example.test A 2>/dev/null \
            | grep -q 192.0.2.80 && return 0
        sleep 0.1
    done
    echo "server on port $1 did not come up; logs in $WORK" >&2
    return 1
}
wait_signed() { # port: until the server signs (Knot signs the zone after it starts answering)
    for _ in $(seq 100); do
        kdig +dnssec +time=1 +retry=0 @127.0.0.1 -p "$1" static.gslb.example.test A 2>/dev/null \
            | grep -q RRSIG && return 0
        sleep 0.1
    done
    echo "server on port $1 does not sign; logs in $WORK" >&2
    return 1
}
# The DNSSEC mixes a server without geo answers (Knot): the Meridian-only ones are geo-ecs(-do).
DNSSEC_STATIC=static+static-do+nxdomain+nxdomain-do+nxrandom+nxrandom-do

SPECS=()
for server in $SERVERS; do
    case "$server" in
        meridian)
            port=5310
            taskset -c "$SERVER_CPU" "$MERIDIAN" serve --zones "$ROOT/zones" --geoip "$GEOIP" \
                --dns-listen 127.0.0.1:$port --api-listen 127.0.0.1:5390 --no-local-probe \
                --log-format json > "$WORK/meridian.log" 2>&1 &
            PIDS+=($!); SPECS+=("meridian=$!:$port")
            ;;
        meridian-base)
            port=5314
            [ -x "$MERIDIAN_BASE" ] || { echo "meridian-base needs MERIDIAN_BASE=binary" >&2; exit 2; }
            taskset -c "$SERVER_CPU" "$MERIDIAN_BASE" serve --zones "$ROOT/zones" --geoip "$GEOIP" \
                --dns-listen 127.0.0.1:$port --api-listen 127.0.0.1:5391 --no-local-probe \
                --log-format json > "$WORK/meridian-base.log" 2>&1 &
            PIDS+=($!); SPECS+=("meridian-base=$!:$port")
            ;;
        gdnsd)
            port=5311
            mkdir -p "$WORK/gdnsd/zones"
            fill "$ROOT/bench/peers/gdnsd/config" "$WORK/gdnsd/config" $port
            cp "$ROOT/bench/peers/gdnsd/zones/gslb.example.test" "$WORK/gdnsd/zones/"
            mkdir -p /run/gdnsd
            taskset -c "$SERVER_CPU" gdnsd -c "$WORK/gdnsd" start > "$WORK/gdnsd.log" 2>&1 &
            PIDS+=($!); SPECS+=("gdnsd=$!:$port")
            ;;
        nsd)
            port=5312
            mkdir -p "$WORK/nsd"
            fill "$ROOT/bench/peers/nsd/nsd.conf" "$WORK/nsd/nsd.conf" $port
            taskset -c "$SERVER_CPU" nsd -d -c "$WORK/nsd/nsd.conf" > "$WORK/nsd.log" 2>&1 &
            # No geo: NSD and Knot answer the static mixes only, and mix-tcp (its geo
            # queries get the static `www`, ECS ignored: less work than Meridian's).
            PIDS+=($!); SPECS+=("nsd=$!:$port:static+nxdomain+static-tcp+mix-tcp")
            ;;
        knot)
            port=5313
            mkdir -p "$WORK/knot/db"
            fill "$ROOT/bench/peers/knot/knot.conf" "$WORK/knot/knot.conf" $port
            taskset -c "$SERVER_CPU" knotd -c "$WORK/knot/knot.conf" > "$WORK/knot.log" 2>&1 &
            PIDS+=($!); SPECS+=("knot=$!:$port:static+nxdomain+static-tcp+mix-tcp")
            ;;
        meridian-dnssec)
            # zones/example.toml signed with a KSK + ZSK (ECDSA P-256) made now.
            port=5315
            dir=$WORK/meridian-dnssec/zones
            mkdir -p "$dir/keys"
            "$MERIDIAN" dnssec keygen --zone gslb.example.test. --ksk --dir "$dir/keys" >/dev/null
            "$MERIDIAN" dnssec keygen --zone gslb.example.test. --dir "$dir/keys" >/dev/null
            { cat "$ROOT/zones/example.toml"; echo; echo "[dnssec]"
              for key in "$dir"/keys/*.key; do
                  printf '[[dnssec.key]]\nfile = "keys/%s"\n' "$(basename "$key" .key)"
              done; } > "$dir/example.toml"
            taskset -c "$SERVER_CPU" "$MERIDIAN" serve --zones "$dir" --geoip "$GEOIP" \
                --dns-listen 127.0.0.1:$port --api-listen 127.0.0.1:5392 --no-local-probe \
                --log-format json > "$WORK/meridian-dnssec.log" 2>&1 &
            PIDS+=($!); SPECS+=("meridian-dnssec=$!:$port")
            ;;
        knot-onlinesign|knot-signed)
            port=$([ "$server" = knot-onlinesign ] && echo 5316 || echo 5317)
            mkdir -p "$WORK/$server/db"
            fill "$ROOT/bench/peers/knot/$server.conf" "$WORK/$server/knot.conf" $port "$server"
            taskset -c "$SERVER_CPU" knotd -c "$WORK/$server/knot.conf" > "$WORK/$server.log" 2>&1 &
            PIDS+=($!); SPECS+=("$server=$!:$port:$DNSSEC_STATIC+static-tcp")
            ;;
        *) echo "unknown server $server" >&2; exit 2 ;;
    esac
    wait_for $port
    case "$server" in meridian-dnssec|knot-*sign*) wait_signed $port ;; esac
done

args=()
for s in "${SPECS[@]}"; do args+=(--server "$s"); done
python3 "$ROOT/bench/measure.py" "${args[@]}" --queries "$WORK/queries" \
    --seconds "$SECONDS_PER_RUN" --rounds "$ROUNDS" --mixes "$MIXES" --load-cpu "$LOAD_CPU" \
    --latency-seconds "$([ "$ROUNDS" = 1 ] && echo 2 || echo 5)" \
    --latency-mixes "${LATENCY_MIXES:-$LATENCY}" --compare "$COMPARE" "${MARKDOWN[@]}"
