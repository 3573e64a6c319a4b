#!/usr/bin/env bash
# The Debian package as a test (tests/it/kit.rs runs it; so does a developer by hand):
#  1. build it (contrib/deb/build.sh) from MERIDIAN_BIN (default: a release build);
#  2. check its metadata and contents, and its systemd unit with `systemd-analyze verify`
#     against the unpacked package (so ExecStart must name a binary the package ships);
#  3. install it with `dpkg -i` in a fresh container made from the locally built base image
#     (lab/build-base.sh: debootstrap, no registry), so the maintainer scripts run for real;
#  4. start `meridian` as the unit says (its User, its RuntimeDirectory, its ExecStart line
#     read from the installed unit) and query it from the host over a loopback-published
#     port; reload it the way ExecReload does.
# Fails loudly when a prerequisite is missing; never passes without having run.
set -euo pipefail
cd "$(dirname "$0")/../.."

log="$(mktemp /tmp/meridian-deb.XXXXXX.log)"
work="$(mktemp -d /tmp/meridian-deb.XXXXXX)"
image="meridian-debtest:$$"
container="meridian-debtest-$$"
fail() {
    [ -s "$log" ] && tail -n 60 "$log" >&2
    echo "deb: FAILED: $*" >&2
    exit 1
}
cleanup() {
    docker rm -f "$container" >/dev/null 2>&1 || true
    docker image rm -f "$image" >/dev/null 2>&1 || true
    rm -rf "$work" "$log"
}
trap cleanup EXIT
step() { echo "deb: $*"; }

for tool in docker cargo-deb systemd-analyze dig dpkg-deb; do
    command -v "$tool" >/dev/null 2>&1 || fail "$tool is not installed"
done
docker info >/dev/null 2>&1 || fail "the Docker engine is not reachable (docker info failed)"

# 1. Build.
args=(--fast)
[ -n "${MERIDIAN_BIN:-}" ] && args+=(--bin "$MERIDIAN_BIN")
deb="$(contrib/deb/build.sh "${args[@]}" 2>>"$log" | tail -n 1)" || fail "contrib/deb/build.sh failed"
[ -f "$deb" ] || fail "build.sh named no package ($deb)"
version="$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)"
case "$(basename "$deb")" in
    meridian_"$version"*_amd64.deb | meridian_"$version"*_"$(dpkg --print-architecture)".deb) ;;
    *) fail "unexpected package file name $(basename "$deb") for version $version" ;;
esac
step "built $(basename "$deb")"

# 2. Contents and unit.
dpkg-deb -I "$deb" >"$work/info"
grep -q '^ Package: meridian$' "$work/info" || fail "no Package: meridian in $(cat "$work/info")"
dpkg-deb -c "$deb" | awk '{print $NF}' | sed 's|^\./|/|' >"$work/contents"
for path in /usr/bin/meridian /usr/share/man/man1/meridian.1.gz \
    /usr/share/man/man1/meridian-serve.1.gz /usr/share/bash-completion/completions/meridian \
    /usr/share/zsh/vendor-completions/_meridian /usr/share/fish/vendor_completions.d/meridian.fish \
    /etc/meridian/zones/example.toml /etc/meridian/probers.keys \
    /usr/lib/systemd/system/meridian.service /usr/share/meridian/geoip/meridian-sample.txt; do
    grep -qx "$path" "$work/contents" || fail "the package lacks $path"
done
dpkg-deb --ctrl-tarfile "$deb" | tar -x -O ./conffiles >"$work/conffiles" 2>/dev/null || true
grep -qx /etc/meridian/zones/example.toml "$work/conffiles" || fail "example.toml is not a conffile"
step "contents and conffiles as expected"

root="$work/root"
mkdir -p "$root/usr/lib/systemd/system"
# The host's own units first (sysinit.target and friends) so the unit's dependencies resolve,
# then the package over them.
cp -a /usr/lib/systemd/system/. "$root/usr/lib/systemd/system/"
dpkg-deb -x "$deb" "$root"
verify="$(systemd-analyze verify --root="$root" meridian.service 2>&1)" \
    || fail "systemd-analyze verify: $verify"
[ -z "$verify" ] || fail "systemd-analyze verify warns: $verify"
step "systemd-analyze verify: clean"

# 3. Install in a fresh container.
lab/build-base.sh meridian-base:bookworm >>"$log" 2>&1 || fail "cannot build the base image"
cp "$deb" "$work/meridian.deb"
cat >"$work/Dockerfile" <<'DOCKERFILE'
FROM meridian-base:bookworm
COPY meridian.deb /tmp/meridian.deb
RUN dpkg -i /tmp/meridian.deb && rm /tmp/meridian.deb
DOCKERFILE
docker build -t "$image" "$work" >>"$log" 2>&1 || fail "dpkg -i in a fresh container failed"
step "installed with dpkg -i"

# 4. Start as the unit says.
port="$(python3 -c 'import random; print(random.randrange(20000, 32000))')"
# ExecStart as one line (the unit continues it with backslashes).
start_script='
set -e
unit=/usr/lib/systemd/system/meridian.service
user=$(sed -n "s/^User=//p" $unit)
rundir=$(sed -n "s/^RuntimeDirectory=//p" $unit)
mode=$(sed -n "s/^RuntimeDirectoryMode=//p" $unit)
exec_start=$(sed -n "/^ExecStart=/,/[^\\\\]\$/p" $unit | sed "s/^ExecStart=//; s/\\\\\$//" | tr "\n" " ")
id "$user" >/dev/null
test -s /etc/meridian/admin.token
test -s /var/lib/meridian/geoip.mmdb
mkdir -p /run/$rundir && chown "$user:$user" /run/$rundir && chmod "$mode" /run/$rundir
echo "starting as $user: $exec_start"
exec setpriv --reuid="$user" --regid="$user" --init-groups -- $exec_start
'
docker run -d --name "$container" \
    --sysctl net.ipv4.ip_unprivileged_port_start=0 \
    --sysctl net.ipv6.conf.all.disable_ipv6=0 \
    -p "127.0.0.1:$port:53/udp" -p "127.0.0.1:$port:53/tcp" \
    "$image" sh -c "$start_script" >>"$log" 2>&1 || fail "docker run failed"

answer=""
for _ in $(seq 1 100); do
    answer="$(dig +time=1 +tries=1 +short @127.0.0.1 -p "$port" static.gslb.example.test A 2>/dev/null \
        | grep -E '^[0-9]+(\.[0-9]+){3}$' || true)"
    [ -n "$answer" ] && break
    [ "$(docker inspect -f '{{.State.Running}}' "$container" 2>/dev/null)" = true ] || break
    sleep 0.2
done
docker logs "$container" >>"$log" 2>&1 || true
[ -n "$answer" ] || fail "no answer from the installed package on 127.0.0.1:$port"
step "answered static.gslb.example.test: $(echo "$answer" | tr '\n' ' ')"

# ExecReload, as systemd would run it (as root, over the control socket).
reload_cmd="$(docker exec "$container" sh -c 'sed -n "s/^ExecReload=//p" /usr/lib/systemd/system/meridian.service')"
docker exec "$container" $reload_cmd >>"$log" 2>&1 || fail "ExecReload ($reload_cmd) failed"
step "ExecReload ok"
docker exec "$container" meridian --version | grep -q "^meridian $version (" || fail "meridian --version"
echo "deb: passed"
