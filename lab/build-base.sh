#!/usr/bin/env bash
# Builds the lab's base image locally when it is missing: a minimal Debian made with
# debootstrap and loaded with `docker import`. For machines that reach a Debian mirror but no
# container registry. The Dockerfile's runtime stage is built FROM this image in the lab
# (--build-arg RUNTIME_IMAGE=...); elsewhere it defaults to debian:bookworm-slim.
#
# etcd-server is in it too, for the lab's etcd profile (its three etcd members run this image).
#
# Usage: lab/build-base.sh [IMAGE]   (default meridian-base:bookworm; env MIRROR, SUITE)
set -euo pipefail

image="${1:-meridian-base:bookworm}"
suite="${SUITE:-bookworm}"
mirror="${MIRROR:-http://deb.debian.org/debian}"

if docker image inspect "$image" >/dev/null 2>&1; then
    # An image built before etcd was added is built again.
    if docker run --rm --entrypoint /bin/sh "$image" -c 'command -v etcd' >/dev/null 2>&1; then
        echo "base image $image is present"
        exit 0
    fi
    echo "base image $image has no etcd: building it again"
fi

if ! command -v debootstrap >/dev/null 2>&1; then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    echo "installing debootstrap"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends debootstrap >/dev/null
fi

root="$(mktemp -d /tmp/meridian-base.XXXXXX)"
trap 'rm -rf "$root"' EXIT
echo "debootstrap $suite (minbase) into $root"
# minbase: essential packages plus apt; no init, no docs we need. ca-certificates lets the
# prober and webhooks speak HTTPS; etcd-server (and etcdctl) run the etcd profile's cluster.
debootstrap --variant=minbase --include=ca-certificates,etcd-server,etcd-client "$suite" "$root" "$mirror" >"$root.log" 2>&1 || {
    tail -n 30 "$root.log" >&2
    echo "debootstrap failed" >&2
    exit 1
}
rm -f "$root.log"
# Trim what a runtime image never needs.
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* \
    "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/locale/*
tar -C "$root" -c . | docker import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'CMD ["/bin/bash"]' \
    - "$image" >/dev/null
echo "imported $image"
