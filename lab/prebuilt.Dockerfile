# The runtime image around a binary built outside Docker (cargo build on the host), for
# machines where compiling inside a container is slow or the Rust image is not available.
# Same layout as the Dockerfile's `runtime` stage.
#
#   docker build --target runtime-base -t meridian-runtime-base .
#   mkdir ctx && cp target/release/meridian ctx/
#   docker build -f lab/prebuilt.Dockerfile -t meridian:lab ctx
ARG BASE=meridian-runtime-base
FROM ${BASE}
COPY meridian /usr/local/bin/meridian
ENTRYPOINT ["/usr/local/bin/meridian"]
CMD ["serve", "--dns-listen", "0.0.0.0:5300", "--api-listen", "0.0.0.0:5380", \
     "--zones", "/etc/meridian/zones", "--geoip", "/etc/meridian/geoip/meridian-sample.txt"]
