#!/usr/bin/env bash
# Builds the Debian package target/debian/meridian_<version>-1_<arch>.deb with cargo-deb
# (`cargo install cargo-deb`): the binary, man pages and shell completions generated from it,
# the systemd unit (contrib/meridian.service), /etc/meridian with the example zone and an empty
# keys file, and the sample GeoIP source. The package's maintainer scripts (contrib/deb/) add
# the `meridian` system user, an admin token and a GeoIP database built from the sample.
#
# Usage: contrib/deb/build.sh [--bin PATH] [--fast]
#   --bin PATH  package this binary instead of building the release one (CI packages the
#               binary its tests were built with, to avoid a second full build).
#   --fast      quicker, larger compression (tests).
set -euo pipefail
cd "$(dirname "$0")/../.."

bin=""
deb_args=()
while [ $# -gt 0 ]; do
    case "$1" in
        --bin) bin="${2:?--bin needs a path}"; shift 2 ;;
        --fast) deb_args+=(--fast); shift ;;
        *) echo "usage: $0 [--bin PATH] [--fast]" >&2; exit 2 ;;
    esac
done
command -v cargo-deb >/dev/null 2>&1 || {
    echo "cargo-deb is not installed: cargo install cargo-deb --locked" >&2
    exit 1
}
target="${CARGO_TARGET_DIR:-target}"
if [ -z "$bin" ]; then
    cargo build --release --locked --bin meridian
    bin="$target/release/meridian"
fi
[ -x "$bin" ] || { echo "no meridian binary at $bin" >&2; exit 1; }

# Everything the package carries that is not in the repository is made here, from the binary.
# Cargo.toml's [package.metadata.deb] names these paths (relative to the crate: target/ here).
stage="target/deb-staging"
rm -rf "$stage"
mkdir -p "$stage/man" "$stage/completions"
cp "$bin" "$stage/meridian"
strip --strip-debug "$stage/meridian" 2>/dev/null || true
"$stage/meridian" man --out "$stage/man" >/dev/null
gzip -9n "$stage"/man/*.1
"$stage/meridian" completions bash >"$stage/completions/meridian.bash"
"$stage/meridian" completions zsh >"$stage/completions/_meridian"
"$stage/meridian" completions fish >"$stage/completions/meridian.fish"

# --no-build: the binary is staged above; --no-strip: done above (debug info stripped, symbols kept).
cargo deb --no-build --no-strip --locked --output "$target/debian/" "${deb_args[@]}" >&2
ls "$target"/debian/meridian_*.deb
