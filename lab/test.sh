#!/usr/bin/env bash
# The compose lab as a test: build the images locally (no registry needed), bring up two
# nameservers and three regions, query both nameservers from the host, stop one region's
# backends and see answers move, bring them back and see answers return, tear down.
#
# With --etcd, the same in the etcd profile (distributed mode): a three-member etcd cluster,
# zones pushed with `meridian config push`, nameservers and probers following etcd; it also
# checks that both nameservers serve the same configuration revision, and stops one etcd
# member before the failover (answers keep coming, votes keep flowing through the others).
#
# Fails loudly when Docker is not reachable; it never passes without having run.
# Usage: lab/test.sh [--etcd]   (env: MERIDIAN_BIN = a built binary; default: cargo build's debug one)
set -euo pipefail
cd "$(dirname "$0")/.."

mode=http
case "${1:-}" in
    "") ;;
    --etcd) mode=etcd ;;
    *) echo "usage: lab/test.sh [--etcd]" >&2; exit 2 ;;
esac
project="meridian-labtest"
compose=(docker-compose -p "$project" -f docker-compose.yml --profile "$mode")
log="$(mktemp /tmp/meridian-lab.XXXXXX.log)"
# quiet CMD...: runs CMD with its output in the log (printed when the test fails).
quiet() { "$@" >>"$log" 2>&1; }
started=$SECONDS
passed=0

fail() {
    [ -s "${log:-}" ] && tail -n 60 "$log" >&2
    echo "lab: FAILED: $*" >&2
    echo "lab: ${passed:-0} passed, 1 failed" >&2
    exit 1
}

if ! command -v docker >/dev/null 2>&1; then
    fail "docker is not installed: the compose lab cannot run"
fi
if ! docker info >/dev/null 2>&1; then
    fail "the Docker engine is not reachable (docker info failed): the compose lab cannot run"
fi
if ! command -v docker-compose >/dev/null 2>&1; then
    fail "docker-compose is not installed"
fi
command -v dig >/dev/null 2>&1 || fail "dig is not installed (bind9-dnsutils)"

# 1. Images: base (debootstrap, only when missing), runtime layer, then the binary on top.
lab/build-base.sh meridian-base:bookworm || fail "cannot build the base image"
bin="${MERIDIAN_BIN:-}"
if [ -z "$bin" ]; then
    cargo build --locked --bin meridian --quiet
    bin="${CARGO_TARGET_DIR:-target}/debug/meridian"
fi
[ -x "$bin" ] || fail "no meridian binary at $bin"
quiet docker build --target runtime-base --build-arg RUNTIME_IMAGE=meridian-base:bookworm \
    -t meridian-runtime-base:lab . || fail "docker build of the runtime base failed"
ctx="$(mktemp -d)"
cp "$bin" "$ctx/meridian"
quiet docker build -f lab/prebuilt.Dockerfile --build-arg BASE=meridian-runtime-base:lab \
    -t meridian:lab "$ctx" || fail "docker build of the lab image failed"
rm -rf "$ctx"

# 2. Free loopback ports for the published DNS and API ports. They are taken below the
# kernel's ephemeral range (32768+): ports the kernel hands out to other tests' client
# sockets between this check and docker's bind would make `compose up` fail.
read -r LAB_NS1_DNS LAB_NS2_DNS LAB_NS1_API LAB_NS2_API < <(python3 - <<'PY'
import random, socket
ports = []
while len(ports) < 4:
    port = random.randrange(20000, 32000)
    if port in ports:
        continue
    try:
        for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
            with socket.socket(socket.AF_INET, kind) as s:
                s.bind(("127.0.0.1", port))
    except OSError:
        continue
    ports.append(port)
print(" ".join(map(str, ports)))
PY
)
# The lab image also serves as the etcd members' (its base holds Debian's etcd).
export LAB_NS1_DNS LAB_NS2_DNS LAB_NS1_API LAB_NS2_API MERIDIAN_IMAGE=meridian:lab \
    MERIDIAN_ETCD_IMAGE=meridian:lab

cleanup() {
    status=$?
    if [ "$status" -ne 0 ]; then
        echo "--- lab logs (last 40 lines per service) ---" >&2
        "${compose[@]}" logs --no-color --tail=40 >&2 || true
    fi
    "${compose[@]}" down --volumes --remove-orphans --timeout 5 >/dev/null 2>&1 || true
    rm -f "$log"
}
trap cleanup EXIT
"${compose[@]}" down --volumes --remove-orphans --timeout 5 >/dev/null 2>&1 || true
quiet "${compose[@]}" up -d --no-build || fail "docker-compose up failed"

# a PORT ECS: the A records of www for a client in the ECS subnet, sorted, one line; empty
# while there are none or no answer came (never a failure: under `set -e -o pipefail` a grep
# finding nothing would end the script silently before the zone is loaded).
a() {
    { dig @127.0.0.1 -p "$1" +norec +time=1 +tries=1 +short +subnet="$2" www.gslb.lab.example. A 2>/dev/null \
        | grep -E '^[0-9.]+$' | sort | tr '\n' ' ' | sed 's/ $//'; } || true
}

# wait_for SECONDS WHAT PORT ECS WANT: polls until the nameserver on PORT answers WANT.
wait_for() {
    local limit=$1 what=$2 port=$3 ecs=$4 want=$5 got=""
    local deadline=$((SECONDS + limit))
    while [ "$SECONDS" -lt "$deadline" ]; do
        got="$(a "$port" "$ecs")"
        [ "$got" = "$want" ] && return 0
        sleep 0.5
    done
    fail "$what: port $port, ECS $ecs: got '$got', want '$want'"
}

check() {
    passed=$((passed + 1))
    echo "lab: ok - $* (at $((SECONDS - started)) s)"
}

GB=2.2.3.0/24          # GeoIP sample: GB, Europe
US=216.160.83.56/29    # GeoIP sample: US, North America
SG=214.0.0.0/24        # GeoIP sample: SG, Asia

# 3. Both nameservers answer by region once every prober's first votes are in.
for port in "$LAB_NS1_DNS" "$LAB_NS2_DNS"; do
    wait_for 60 "first answers" "$port" "$GB" "10.89.1.10 10.89.1.11"
    wait_for 10 "us answers" "$port" "$US" "10.89.2.10"
    wait_for 10 "ap answers" "$port" "$SG" "10.89.3.10"
done
check "both nameservers steer GB/US/SG clients to eu/us/ap"

votes() {
    python3 - "$1" <<'PY'
import json, sys, urllib.request
status = json.load(urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/v1/status", timeout=3))
print(" ".join(sorted(p["prober_id"] for p in status["probers"])))
PY
}
for api in "$LAB_NS1_API" "$LAB_NS2_API"; do
    deadline=$((SECONDS + 30))
    until [ "$(votes "$api")" = "prober-ap prober-eu prober-us" ]; do
        [ "$SECONDS" -lt "$deadline" ] || fail "probers missing on API port $api: $(votes "$api")"
        sleep 0.5
    done
done
check "both nameservers hold votes from the three regional probers"

if [ "$mode" = etcd ]; then
    # etcd_state PORT: "connected config_revision" from /v1/status ("error -" when the API
    # does not answer in time: a loaded machine; the callers poll).
    etcd_state() {
        python3 - "$1" <<'PY'
import json, sys, urllib.request
try:
    e = json.load(urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/v1/status", timeout=5))["etcd"]
    print(str(e["connected"]).lower(), e["config_revision"])
except Exception:
    print("error -")
PY
    }
    deadline=$((SECONDS + 15))
    until s1="$(etcd_state "$LAB_NS1_API")"; s2="$(etcd_state "$LAB_NS2_API")"
        [ "$s1" = "$s2" ] && [ "${s1% *}" = true ] && [ "${s1#* }" -gt 0 ]; do
        [ "$SECONDS" -lt "$deadline" ] \
            || fail "nameservers not on one revision from etcd: ns1 '$s1', ns2 '$s2'"
        sleep 0.5
    done
    check "both nameservers serve configuration revision ${s1#* } from etcd"
    # One member of three gone: the cluster keeps quorum; clients move to another member.
    quiet "${compose[@]}" stop --timeout 5 etcd1
    for api in "$LAB_NS1_API" "$LAB_NS2_API"; do
        deadline=$((SECONDS + 15))
        until [ "$(etcd_state "$api")" = "$s1" ]; do
            [ "$SECONDS" -lt "$deadline" ] || fail "API port $api after etcd1 stopped: $(etcd_state "$api")"
            sleep 0.5
        done
    done
    check "etcd1 stopped: both nameservers still connected to etcd"
fi

# 4. Region eu loses its backends: European clients move to us on both nameservers.
quiet "${compose[@]}" stop --timeout 5 eu-web1 eu-web2
for port in "$LAB_NS1_DNS" "$LAB_NS2_DNS"; do
    wait_for 30 "failover of eu" "$port" "$GB" "10.89.2.10"
    wait_for 5 "us unaffected" "$port" "$US" "10.89.2.10"
done
check "with eu's backends stopped, GB clients get us on both nameservers"

page="$(python3 -c "import urllib.request,sys; print(urllib.request.urlopen('http://127.0.0.1:$LAB_NS1_API/', timeout=3).read().decode())")"
grep -q 'Meridian' <<<"$page" || fail "status page not served"
metrics="$(python3 -c "import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:$LAB_NS1_API/metrics', timeout=3).read().decode())")"
grep -q '^meridian_endpoint_up{zone="gslb.lab.example.",service="www",region="eu",address="10.89.1.10"} 0$' <<<"$metrics" \
    || fail "metrics do not show eu-web1 down"
check "status page served; /metrics shows the eu endpoints down"

# 5. The backends come back: answers return.
quiet "${compose[@]}" start eu-web1 eu-web2
for port in "$LAB_NS1_DNS" "$LAB_NS2_DNS"; do
    wait_for 30 "recovery of eu" "$port" "$GB" "10.89.1.10 10.89.1.11"
done
check "eu's backends back: GB clients return to eu"

echo "lab ($mode): finished in $((SECONDS - started)) s"
echo "lab: $passed passed, 0 failed"
