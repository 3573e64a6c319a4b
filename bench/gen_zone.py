#!/usr/bin/env python3
"""Writes generated zones for the scale runs.

  gen_zone.py SERVICES REGIONS ZONE_DIR QUERY_FILE [ENDPOINTS]
      One zone of SERVICES geo services over REGIONS regions. Every service has ENDPOINTS
      endpoints (default 1) in each of the regions (so REGIONS=1000 means 1,000 endpoints per
      service), a country table sending GB to the first region and US to the last, and the
      default order otherwise. Also writes a dnsperf binary query file asking for 1,000
      services spread over the whole zone, with the GB ECS client, so lookups touch the whole
      table.

  gen_zone.py --zones COUNT OUT_DIR
      COUNT small static zones (z0.test. ...), 10 records each (SOA, 2 NS, 2 A for the name
      servers, www A and AAAA, MX, TXT, a CNAME), written once per server: OUT_DIR/meridian/
      (one TOML file per zone), OUT_DIR/master/ (RFC 1035 master files for NSD and Knot),
      and the zone lists OUT_DIR/nsd.zones and OUT_DIR/knot.zones to append to their configs.
"""

import json
import os
import random
import struct
import sys

sys.path.insert(0, os.path.dirname(__file__))
from queries import ECS_CLIENTS, query  # noqa: E402

ORIGIN = "scale.test."


def services_zone(services, regions, zone_dir, query_file, endpoints=1):
    os.makedirs(zone_dir, exist_ok=True)
    out = [
        f'origin = "{ORIGIN}"',
        'ns = ["ns1.scale.test."]',
        "[soa]",
        'mname = "ns1.scale.test."',
        'rname = "hostmaster.scale.test."',
        "serial = 1",
        "[[record]]",
        'name = "ns1"',
        'type = "A"',
        'data = ["192.0.2.53"]',
        "[[record]]",
        'name = "static"',
        'type = "A"',
        'data = ["192.0.2.80"]',
    ]
    for r in range(regions):
        out.append(f"[region.r{r}]")
        out.append(f"location = [{(r * 7) % 180 - 90}.0, {(r * 13) % 360 - 180}.0]")
    for s in range(services):
        out.append(f"[service.s{s}]")
        out.append('policy = "geo"')
        out.append(f"[service.s{s}.geo.country]")
        out.append(f'GB = ["r0"]')
        out.append(f'US = ["r{regions - 1}"]')
        for r in range(regions):
            for e in range(endpoints):
                out.append(f"[[service.s{s}.endpoint]]")
                out.append(f'region = "r{r}"')
                n = (s * regions + r) * endpoints + e
                out.append(f'address = "10.{(n >> 16) & 255}.{(n >> 8) & 255}.{n & 255}"')
    with open(os.path.join(zone_dir, "scale.toml"), "w") as f:
        f.write("\n".join(out) + "\n")
    rng = random.Random(1)
    names = [f"s{rng.randrange(services)}.{ORIGIN}" for _ in range(1000)]
    with open(query_file, "wb") as f:
        for name in names:
            m = query(name, ecs=ECS_CLIENTS["GB"])
            f.write(struct.pack(">H", len(m)) + m)


def small_zones(count, out_dir):
    meridian = os.path.join(out_dir, "meridian")
    master = os.path.join(out_dir, "master")
    os.makedirs(meridian, exist_ok=True)
    os.makedirs(master, exist_ok=True)
    nsd, knot = [], []
    for i in range(count):
        origin = f"z{i}.test."
        a = f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}"
        six = f"2001:db8::{i >> 16:x}:{i & 0xffff:x}"
        # (owner, type, TOML data, master-file data): with the SOA, 10 records.
        records = [
            ("ns1", "A", a),
            ("ns2", "A", a),
            ("www", "A", a),
            ("www", "AAAA", six),
            ("@", "MX", f"10 www.{origin}"),
            ("@", "TXT", '"v=spf1 -all"'),
            ("mail", "CNAME", f"www.{origin}"),
        ]
        toml = [
            f'origin = "{origin}"',
            f'ns = ["ns1.{origin}", "ns2.{origin}"]',
            "ttl = 3600",
            "[soa]",
            f'mname = "ns1.{origin}"',
            f'rname = "hostmaster.{origin}"',
            "serial = 1",
        ]
        for owner, rtype, data in records:
            toml += ["[[record]]", f'name = "{owner}"', f'type = "{rtype}"', f"data = [{json.dumps(data)}]"]
        with open(os.path.join(meridian, f"z{i}.toml"), "w") as f:
            f.write("\n".join(toml) + "\n")
        zone = [
            f"$ORIGIN {origin}",
            "$TTL 3600",
            f"@ IN SOA ns1 hostmaster 1 7200 3600 1209600 300",
            "@ IN NS ns1",
            "@ IN NS ns2",
        ] + [f"{owner} IN {rtype} {data}" for owner, rtype, data in records]
        path = os.path.join(master, f"z{i}.zone")
        with open(path, "w") as f:
            f.write("\n".join(zone) + "\n")
        nsd.append(f'zone:\n  name: {origin}\n  zonefile: "{path}"\n')
        knot.append(f'  - domain: {origin}\n    file: "{path}"\n')
    with open(os.path.join(out_dir, "nsd.zones"), "w") as f:
        f.write("".join(nsd))
    with open(os.path.join(out_dir, "knot.zones"), "w") as f:
        f.write("".join(knot))


def main():
    if sys.argv[1] == "--zones":
        small_zones(int(sys.argv[2]), sys.argv[3])
        return
    endpoints = int(sys.argv[5]) if len(sys.argv) > 5 else 1
    services_zone(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4], endpoints)


if __name__ == "__main__":
    main()
