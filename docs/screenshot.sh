#!/usr/bin/env bash
# Regenerates docs/status-page.png: the status page (traffic map, charts, services) of a
# Meridian serving the shipped example zone and sample GeoIP data, rendered by headless
# Chromium. Loopback only; the embedded prober is off (the example's endpoints are documentation
# addresses, never to be contacted), so every endpoint shows as up.
#
# Usage: docs/screenshot.sh   (needs chromium: apt-get install chromium)
set -euo pipefail
cd "$(dirname "$0")/.."
command -v chromium >/dev/null 2>&1 || { echo "chromium is not installed" >&2; exit 1; }
cargo build --quiet --locked --bin meridian
bin="${CARGO_TARGET_DIR:-target}/debug/meridian"
out="$(mktemp -d)"
trap 'kill "$pid" 2>/dev/null || true; rm -rf "$out"' EXIT
"$bin" serve --dns-listen 127.0.0.1:0 --api-listen 127.0.0.1:0 --no-local-probe --no-watch \
    >"$out/ready" 2>"$out/log" &
pid=$!
for _ in $(seq 1 100); do
    grep -q '^ready ' "$out/ready" 2>/dev/null && break
    sleep 0.1
done
api="$(sed -n 's/^ready .*api=\([^ ]*\).*/\1/p' "$out/ready")"
[ -n "$api" ] || { cat "$out/log" >&2; echo "meridian did not start" >&2; exit 1; }
dns="$(sed -n 's/^ready dns=\([^ ]*\).*/\1/p' "$out/ready")"
# A few queries so the charts have something to draw once the first samples are taken.
for _ in $(seq 1 5); do
    python3 - "$dns" <<'PY'
import socket, sys, struct
host, port = sys.argv[1].rsplit(":", 1)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(1)
for i, name in enumerate([b"www", b"static", b"nope"]):
    q = struct.pack(">HHHHHH", i, 0, 1, 0, 0, 0)
    for label in name.split(b".") + b"gslb.example.test".split(b"."):
        q += bytes([len(label)]) + label
    q += b"\0" + struct.pack(">HH", 1, 1)
    s.sendto(q, (host, int(port)))
    try:
        s.recv(4096)
    except OSError:
        pass
PY
done
chromium --headless --no-sandbox --disable-gpu --disable-dev-shm-usage --no-first-run \
    --disable-extensions --disable-background-networking --disable-component-update \
    --disable-sync --hide-scrollbars --virtual-time-budget=8000 --window-size=1280,1500 \
    --user-data-dir="$out/profile" --screenshot="$PWD/docs/status-page.png" \
    "http://$api/" >/dev/null 2>"$out/chromium.log" || { cat "$out/chromium.log" >&2; exit 1; }
echo "wrote docs/status-page.png"
