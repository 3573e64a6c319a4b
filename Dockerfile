# Meridian container image: multi-stage, slim runtime, non-root user.
#
#   docker build -t meridian .                    # from source (needs the Rust image)
#   docker build --target runtime-base -t meridian-runtime-base .
#                                                 # only the runtime layer, for prebuilt binaries
#                                                 # (lab/prebuilt.Dockerfile, lab/test.sh)
#   docker build --target etcd -t meridian-etcd . # etcd for the lab's etcd profile
#
# Without a container registry, build the base image locally first (lab/build-base.sh) and
# pass --build-arg RUNTIME_IMAGE=meridian-base:bookworm.
#
# Stages are ordered so that `--target runtime-base` builds nothing else, also with the
# classic (non-BuildKit) builder, which builds every stage before the target.

ARG RUNTIME_IMAGE=debian:bookworm-slim
ARG RUST_IMAGE=rust:1.95-slim-bookworm

# --- runtime base: an unprivileged user and the sample data, nothing else -------------------
FROM ${RUNTIME_IMAGE} AS runtime-base
RUN groupadd --system --gid 10053 meridian \
 && useradd --system --uid 10053 --gid meridian --home-dir /nonexistent --no-create-home \
        --shell /usr/sbin/nologin meridian \
 && mkdir -p /etc/meridian/zones /etc/meridian/geoip
COPY zones/ /etc/meridian/zones/
COPY geoip/meridian-sample.txt /etc/meridian/geoip/meridian-sample.txt
WORKDIR /etc/meridian
# DNS on 5300 (an unprivileged port; publish it as 53 on the host), HTTP API on 5380.
EXPOSE 5300/udp 5300/tcp 5380/tcp
USER meridian:meridian

# --- build: compile the release binary from source ------------------------------------------
FROM ${RUST_IMAGE} AS build
WORKDIR /src
# The whole context (.dockerignore keeps target/ and the lab out): Cargo.toml names test,
# bench and fuzz targets whose files must exist even for `--bin`.
COPY . .
RUN cargo build --release --locked --bin meridian \
 && cp target/release/meridian /meridian

# --- runtime: the default target ------------------------------------------------------------
FROM runtime-base AS runtime
COPY --from=build /meridian /usr/local/bin/meridian
ENTRYPOINT ["/usr/local/bin/meridian"]
CMD ["serve", "--dns-listen", "0.0.0.0:5300", "--api-listen", "0.0.0.0:5380", \
     "--zones", "/etc/meridian/zones", "--geoip", "/etc/meridian/geoip/meridian-sample.txt"]

# --- etcd: the compose lab's etcd members (profile `etcd`), etcd from Debian's package --------
# Last, so that no other target builds it. lab/build-base.sh's base already holds etcd; on
# debian:bookworm-slim it comes from the Debian mirror.
FROM runtime-base AS etcd
USER root
RUN command -v etcd >/dev/null 2>&1 || { apt-get update -qq \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        etcd-server etcd-client >/dev/null \
 && rm -rf /var/lib/apt/lists/*; }
USER meridian:meridian
ENTRYPOINT ["etcd"]
