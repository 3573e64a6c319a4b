#!/usr/bin/env bash
# Probe load: one `meridian probe` checking ENDPOINTS HTTP endpoints every second.
#
#   bench/probe_load.sh                      10,000 endpoints, 60 s measured after 10 s warm-up
#   options: --endpoints N --seconds S --warmup S --max-concurrent-checks N --no-build
#            --no-netns (run in the current network namespace; see below)
#            --prober-cpu C --backends-cpu C (taskset pinning, defaults 0 and 1; --no-pin: none)
#            --bin-dir DIR (take meridian and probe_backends from DIR, e.g. an older build)
#   PROBE_BACKENDS_THREADS=N  worker threads of the backends (default 1)
#
# The prober and the backends are pinned to different CPUs, so the prober's figure is its own
# work: on loopback the kernel runs both ends of a packet in the sender's context, and an
# unpinned backend would share (and steal) the prober's core.
#
# Runs in a private network namespace (unshare --net, loopback only) when it can: the host's
# iptables rules make the kernel track every connection, and a closed one stays in the table
# for 120 s (TIME_WAIT), so 10,000 connections a second fill the usual 262,144 entries in under
# 30 s; then packets drop, for every process on the host. A fresh namespace has no rules, so
# nothing is tracked, and nobody else's traffic is affected.
#
# Starts examples/probe_backends.rs (N tiny HTTP backends, one listener per loopback address
# 127.1.x.y:18080, one thread; it also takes the prober's reports and throws them away), writes
# a zone with N endpoints (100 per service, one check: http, interval 1 s, rise 2, fall 3), runs
# the release prober against it with --metrics-listen and prints, per second of the measured
# window: the prober's CPU (user+sys from /proc/PID/stat, in % of one core), the requests the
# backends saw and the fewest/most in a 100 ms slice (spread), then the totals: mean CPU,
# checks/s (from the backends and from meridian_probe_checks_total), check duration percentiles
# (meridian_probe_check_duration_seconds), report sizes and RSS. All traffic is on loopback.
# See docs/performance.md, "Probe load".
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
ENDPOINTS=10000
SECONDS_MEASURED=60
WARMUP=10
CAP=""
BUILD=1
NETNS=1
PORT=18080
PROBER_CPU=0
BACKENDS_CPU=1
BIN_DIR=""
ORIG_ARGS=("$@")
while [ $# -gt 0 ]; do
    case "$1" in
        --endpoints) ENDPOINTS=$2; shift ;;
        --seconds) SECONDS_MEASURED=$2; shift ;;
        --warmup) WARMUP=$2; shift ;;
        --max-concurrent-checks) CAP=$2; shift ;;
        --no-build) BUILD=0 ;;
        --no-netns) NETNS=0 ;;
        --prober-cpu) PROBER_CPU=$2; shift ;;
        --backends-cpu) BACKENDS_CPU=$2; shift ;;
        --no-pin) PROBER_CPU=""; BACKENDS_CPU="" ;;
        --bin-dir) BIN_DIR=$2; shift ;;
        *) echo "unknown option $1" >&2; exit 2 ;;
    esac
    shift
done

# One listener per backend, plus the checks in flight on both sides.
ulimit -n "$(ulimit -Hn)"
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt $((ENDPOINTS + 2048)) ]; then
    echo "need ulimit -n of at least $((ENDPOINTS + 2048)) (hard limit $(ulimit -Hn))" >&2
    exit 1
fi

cd "$ROOT"
if [ "$BUILD" = 1 ] && [ -z "$BIN_DIR" ]; then
    cargo build --release --locked --bin meridian --example probe_backends
fi
if [ "$NETNS" = 1 ] && [ -z "${PROBE_LOAD_IN_NETNS:-}" ]; then
    if unshare --net true 2>/dev/null; then
        exec env PROBE_LOAD_IN_NETNS=1 unshare --net -- \
            bash -c 'ip link set lo up && exec "$0" "$@"' "$0" "${ORIG_ARGS[@]}" --no-build
    fi
    echo "cannot create a network namespace (needs root); running here, see the comment at the top" >&2
fi
BIN=${BIN_DIR:-$ROOT/target/release}/meridian
BACKENDS=${BIN_DIR:-$ROOT/target/release/examples}/probe_backends
pin() { # CPU COMMAND...: run COMMAND on CPU (or anywhere without one)
    local cpu=$1
    shift
    if [ -n "$cpu" ]; then exec taskset -c "$cpu" "$@"; else exec "$@"; fi
}

WORK=$(mktemp -d)
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

# The zone: the n-th endpoint is the n-th backend address (see examples/probe_backends.rs).
mkdir -p "$WORK/zones"
python3 - "$ENDPOINTS" "$PORT" >"$WORK/zones/load.test.toml" <<'EOF'
import sys
n, port = int(sys.argv[1]), int(sys.argv[2])
print('origin = "load.test."\nns = ["ns1.load.test."]')
print('[soa]\nmname = "ns1.load.test."\nrname = "hostmaster.load.test."\nserial = 1')
print('[[record]]\nname = "ns1"\ntype = "A"\ndata = ["192.0.2.53"]')
print('[region.r1]')
print(f'[check.web]\ntype = "http"\nport = {port}\npath = "/health"\ninterval = 1\ntimeout = "500ms"\nrise = 2\nfall = 3')
for s in range((n + 99) // 100):
    print(f'[service.s{s}]\ncheck = "web"')
    for i in range(s * 100, min(n, s * 100 + 100)):
        print(f'[[service.s{s}.endpoint]]\nregion = "r1"\naddress = "127.1.{i // 250}.{i % 250 + 1}"')
EOF
echo "k1 p1 $(od -An -tx1 -N32 /dev/urandom | tr -d ' \n')" >"$WORK/keys"

SINK=127.0.0.1:$((PORT + 1))
(pin "$BACKENDS_CPU" "$BACKENDS" "$ENDPOINTS" "$PORT" "$SINK") >"$WORK/backends.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 100); do grep -q '^ready' "$WORK/backends.log" && break; sleep 0.1; done
grep -q '^ready' "$WORK/backends.log" || { cat "$WORK/backends.log"; exit 1; }

ARGS=(probe --zones "$WORK/zones" --region r1 --id p1 --key-file "$WORK/keys"
    --publish "http://$SINK/v1/reports" --metrics-listen 127.0.0.1:0)
[ -n "$CAP" ] && ARGS+=(--max-concurrent-checks "$CAP")
(export RUST_LOG=warn; pin "$PROBER_CPU" "$BIN" "${ARGS[@]}") >"$WORK/probe.log" 2>&1 &
PROBER=$!
PIDS+=("$PROBER")
for _ in $(seq 300); do grep -q '^ready probe' "$WORK/probe.log" && break; sleep 0.1; done
METRICS=$(sed -n 's/^ready probe .* metrics=\([^ ]*\).*/\1/p' "$WORK/probe.log")
[ -n "$METRICS" ] || { cat "$WORK/probe.log"; exit 1; }

TICK=$(getconf CLK_TCK)
# utime and stime: fields 14 and 15 of /proc/PID/stat, 12 and 13 after the command name.
# Time the prober's threads were runnable but waiting for a CPU (field 2 of schedstat, ns):
# on a shared machine the prober may be starved, and then it makes fewer checks, not slower ones.
run_wait_ns() { cat /proc/"$PROBER"/task/*/schedstat | awk '{ s += $2 } END { printf "%.0f\n", s }'; }
cpu_ticks() { awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$PROBER/stat"; }
sys_ticks() { awk '{ sub(/^.*\) /, ""); print $13 }' "/proc/$PROBER/stat"; }
scrape() { curl -sf "http://$METRICS/metrics" >"$1"; }

echo "prober pid $PROBER, $ENDPOINTS endpoints, warming up ${WARMUP}s" >&2
sleep "$WARMUP"
scrape "$WORK/m0"
T0=$(date +%s.%N)
C0=$(cpu_ticks)
S0=$(sys_ticks)
LINES0=$(wc -l <"$WORK/backends.log")
LOAD0=$(cut -d' ' -f1 /proc/loadavg)
W0=$(run_wait_ns)
printf '%6s %8s %9s %10s %10s\n' second cpu_pct requests min_100ms max_100ms
PREV=$C0
for s in $(seq "$SECONDS_MEASURED"); do
    sleep 1
    NOW=$(cpu_ticks)
    LAST=$(tail -n 1 "$WORK/backends.log")
    read -r _ REQ _ MIN _ MAX _ <<<"$LAST"
    printf '%6d %8.1f %9s %10s %10s\n' "$s" "$(echo "($NOW - $PREV) * 100 / $TICK" | bc -l)" "$REQ" "$MIN" "$MAX"
    PREV=$NOW
done
C1=$(cpu_ticks)
S1=$(sys_ticks)
W1=$(run_wait_ns)
T1=$(date +%s.%N)
scrape "$WORK/m1"

python3 - "$WORK" "$C0" "$C1" "$T0" "$T1" "$TICK" "$LINES0" "$ENDPOINTS" "$S0" "$S1" "$LOAD0" "$W0" "$W1" <<'EOF'
import re, sys
work, c0, c1, t0, t1, tick, lines0, endpoints, s0, s1, load0, w0, w1 = sys.argv[1:]
elapsed = float(t1) - float(t0)
cpu = (float(c1) - float(c0)) / float(tick)
sys_cpu = (float(s1) - float(s0)) / float(tick)

def series(path):
    out = {}
    for line in open(path):
        if line.startswith("#"):
            continue
        name, _, value = line.rpartition(" ")
        out[name] = float(value)
    return out

m0, m1 = series(f"{work}/m0"), series(f"{work}/m1")
d = lambda k: m1.get(k, 0.0) - m0.get(k, 0.0)
checks = d('meridian_probe_checks_total{result="pass"}') + d('meridian_probe_checks_total{result="fail"}')
buckets = sorted(
    (float(re.search(r'le="([^"]+)"', k).group(1)), d(k))
    for k in m1 if k.startswith("meridian_probe_check_duration_seconds_bucket")
)
total = d("meridian_probe_check_duration_seconds_count")

def quantile(q):
    for le, n in buckets:
        if n >= q * total:
            return le
    return float("inf")

rows = [l.split() for l in open(f"{work}/backends.log").read().splitlines()[int(lines0):] if l.startswith("requests")]
reqs = [int(r[1]) for r in rows]
mins = [int(r[3]) for r in rows]
maxs = [int(r[5]) for r in rows]
rb = rows[-1][9] if rows else "?"
print()
print(f"endpoints                {int(endpoints)}")
print(f"measured                 {elapsed:.1f} s")
print(f"prober CPU (user+sys)    {cpu / elapsed * 100:.1f} % of one core (sys {sys_cpu / elapsed * 100:.1f} %)")
print(f"waiting for a CPU        {(float(w1) - float(w0)) / 1e9 / elapsed * 100:.1f} % of the time (runnable, not running)")
print(f"load average (1 min)     {open('/proc/loadavg').read().split()[0]} on {__import__('os').cpu_count()} CPUs (start of run: {load0})")
failed = d('meridian_probe_checks_total{result="fail"}')
print(f"checks/s (prober metric) {checks / elapsed:.0f}  (failed: {failed:.0f})")
if checks:
    print(f"CPU per check            {cpu / checks * 1e6:.0f} us")
if reqs:
    print(f"requests/s at backends   {sum(reqs) / len(reqs):.0f}  (per second: min {min(reqs)}, max {max(reqs)})")
    print(f"per 100 ms slice         min {min(mins)}, max {max(maxs)} (even spread: {sum(reqs) / len(reqs) / 10:.0f})")
print(f"check duration           p50 <= {quantile(0.5) * 1000:g} ms, p90 <= {quantile(0.9) * 1000:g} ms, p99 <= {quantile(0.99) * 1000:g} ms (bucket bounds)")
print(f"largest report body      {rb} bytes")
print(f"prober RSS               {m1.get('process_resident_memory_bytes', 0) / 2**20:.0f} MiB, threads {m1.get('process_threads', 0):.0f}")
print(f"checks waiting (end)     {m1.get('meridian_probe_checks_waiting', 0):.0f}, in flight {m1.get('meridian_probe_checks_in_flight', 0):.0f}")
EOF
