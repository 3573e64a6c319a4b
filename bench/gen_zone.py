#!/usr/bin/env python3
"""Writes a generated zone for the scale runs: SERVICES geo services over REGIONS regions.

Every service has one endpoint in each of the regions (so REGIONS=1000 means 1,000 endpoints
per service), a country table sending GB to the first region and US to the last, and the
default order otherwise. Also writes a dnsperf binary query file asking for 1,000 services
spread over the whole zone, with the GB ECS client, so lookups touch the whole table.

Usage: gen_zone.py SERVICES REGIONS ZONE_DIR QUERY_FILE
"""

import os
import random
import struct
import sys

sys.path.insert(0, os.path.dirname(__file__))
from queries import ECS_CLIENTS, query  # noqa: E402

ORIGIN = "scale.test."


def main():
    services, regions, zone_dir, query_file = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
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
            out.append(f"[[service.s{s}.endpoint]]")
            out.append(f'region = "r{r}"')
            n = s * regions + r
            out.append(f'address = "10.{(n >> 16) & 255}.{(n >> 8) & 255}.{n & 255}"')
    with open(os.path.join(zone_dir, "scale.toml"), "w") as f:
        f.write("\n".join(out) + "\n")
    rng = random.Random(1)
    names = [f"s{rng.randrange(services)}.{ORIGIN}" for _ in range(1000)]
    with open(query_file, "wb") as f:
        for name in names:
            m = query(name, ecs=ECS_CLIENTS["GB"])
            f.write(struct.pack(">H", len(m)) + m)


if __name__ == "__main__":
    main()
