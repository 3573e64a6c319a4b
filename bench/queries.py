#!/usr/bin/env python3
"""Writes the benchmark query files in dnsperf's binary input format (-B).

Each message is a complete DNS query preceded by its 2-byte length (the TCP stream format), so
every query can carry its own EDNS Client Subnet option: one file covers several countries.
Every query has EDNS (UDP size 1232), as resolvers send today.

Usage: queries.py OUT_DIR
"""

import os
import random
import struct
import sys

ZONE = "gslb.example.test."

# ECS clients from ../shared/geoip/README.md (GeoIP2-City-Test.mmdb): (family, prefix, bytes).
ECS_CLIENTS = {
    "GB": (1, 24, bytes([2, 2, 3])),
    "SE": (1, 25, bytes([89, 160, 20, 128])),
    "US": (1, 24, bytes([214, 78, 120])),
    "SG": (1, 24, bytes([214, 0, 0])),
    "CN": (1, 24, bytes([175, 16, 199])),
    "AU": (1, 24, bytes([214, 0, 1])),
}


def name_wire(name):
    out = b""
    for label in name.rstrip(".").split("."):
        out += bytes([len(label)]) + label.encode()
    return out + b"\x00"


def query(name, qtype=1, ecs=None, qid=0, do=False):
    header = struct.pack(">HHHHHH", qid, 0x0000, 1, 0, 0, 1)
    question = name_wire(name) + struct.pack(">HH", qtype, 1)
    options = b""
    if ecs is not None:
        family, prefix, addr = ecs
        data = struct.pack(">HBB", family, prefix, 0) + addr
        options = struct.pack(">HH", 8, len(data)) + data
    # OPT TTL: extended RCODE, version, then the flags; DO is the top flag bit (RFC 3225).
    opt = b"\x00" + struct.pack(">HHIH", 41, 1232, 0x8000 if do else 0, len(options)) + options
    return header + question + opt


def write(path, messages):
    with open(path, "wb") as f:
        for m in messages:
            f.write(struct.pack(">H", len(m)) + m)


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    static = [query("static." + ZONE)]
    # Distinct names, so no server can answer NXDOMAIN from a one-entry cache.
    nxdomain = [query(f"nx{i}.{ZONE}") for i in range(1000)]
    geo = [query("www." + ZONE)]
    geo_ecs = [query("www." + ZONE, ecs=c) for c in ECS_CLIENTS.values()]
    mix = (
        static * 4
        + nxdomain[:1]
        + geo * 2
        + geo_ecs[:3]
        + [query("mail." + ZONE), query(ZONE, qtype=15)]
    )
    write(os.path.join(out, "static.bin"), static)
    write(os.path.join(out, "nxdomain.bin"), nxdomain)
    write(os.path.join(out, "geo.bin"), geo)
    write(os.path.join(out, "geo-ecs.bin"), geo_ecs)
    write(os.path.join(out, "mix.bin"), mix)
    # DNSSEC (DO=1) mixes. nxdomain-do repeats the 1,000 names above (a server may cache their
    # signed denials); nxrandom(-do) has 100,000 random names, far more than any signature
    # cache holds, so a server signing online pays one fresh signature per query.
    rng = random.Random(14)
    nxrandom = [f"{rng.getrandbits(64):016x}.{ZONE}" for _ in range(100_000)]
    write(os.path.join(out, "static-do.bin"), [query("static." + ZONE, do=True)])
    write(os.path.join(out, "nxdomain-do.bin"), [query(f"nx{i}.{ZONE}", do=True) for i in range(1000)])
    write(os.path.join(out, "nxrandom.bin"), [query(n) for n in nxrandom])
    write(os.path.join(out, "nxrandom-do.bin"), [query(n, do=True) for n in nxrandom])
    write(os.path.join(out, "geo-ecs-do.bin"), [query("www." + ZONE, ecs=c, do=True) for c in ECS_CLIENTS.values()])


if __name__ == "__main__":
    main()
