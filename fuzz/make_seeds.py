#!/usr/bin/env python3
"""Writes the committed seed corpus (corpus/<target>/seed-*). Rerun after changing it."""
import json, os, struct, time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def name(n):
    out = b""
    for label in n.strip(".").split("."):
        if label:
            out += bytes([len(label)]) + label.encode()
    return out + b"\0"


def query(qname, qtype, qclass=1, qid=0x1234, flags=0x0100, opt=None, qd=1):
    ar = 1 if opt is not None else 0
    msg = struct.pack(">HHHHHH", qid, flags, qd, 0, 0, ar)
    msg += name(qname) + struct.pack(">HH", qtype, qclass)
    if opt is not None:
        msg += opt
    return msg


def opt(size=1232, version=0, do=False, options=b""):
    return b"\0" + struct.pack(">HHBBHH", 41, size, 0, version, 0x8000 if do else 0, len(options)) + options


def ecs(addr, prefix, family=1):
    raw = bytes(addr)[: (prefix + 7) // 8]
    body = struct.pack(">HBB", family, prefix, 0) + raw
    return struct.pack(">HH", 8, len(body)) + body


def write(target, label, data):
    with open(os.path.join(HERE, "corpus", target, "seed-" + label), "wb") as f:
        f.write(data)


packets = {
    "a-www": query("www.gslb.example.test.", 1),
    "aaaa-www": query("www.gslb.example.test.", 28),
    "any-apex": query("example.test.", 255),
    "soa-apex": query("example.test.", 6),
    "ns-apex": query("example.test.", 2),
    "mx-master": query("gslb.test.", 15),
    "txt-master": query("info.gslb.test.", 16),
    "nxdomain": query("nope.example.test.", 1),
    "neg-nodata": query("neg.test.", 28),
    "ptr": query("1.2.0.192.in-addr.arpa.", 12),
    "refused": query("elsewhere.invalid.", 1),
    "ch-version": query("version.bind.", 16, qclass=3),
    "ch-id": query("id.server.", 16, qclass=3),
    "axfr": query("example.test.", 252),
    "edns": query("www.gslb.example.test.", 1, opt=opt()),
    "edns-do-512": query("www.gslb.example.test.", 1, opt=opt(size=512, do=True)),
    "edns-badvers": query("www.gslb.example.test.", 1, opt=opt(version=1)),
    "ecs-v4": query("www.gslb.example.test.", 1, opt=opt(options=ecs([81, 2, 69, 0], 24))),
    "ecs-v6": query("www.gslb.example.test.", 28, opt=opt(options=ecs([0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0], 56, family=2))),
    "ecs-bad-prefix": query("www.gslb.example.test.", 1, opt=opt(options=ecs([1, 2, 3, 4], 33))),
    "notify": query("example.test.", 6, flags=0x2000),
    "response": query("example.test.", 1, flags=0x8000),
    "two-questions": query("a.example.test.", 1, qd=2) + name("b.example.test.") + b"\0\1\0\1",
    "compressed-qname": struct.pack(">HHHHHH", 1, 0x100, 1, 0, 0, 0) + b"\xc0\x0c\0\1\0\1",
    "truncated-header": b"\x12\x34\x01",
    "long-name": query(".".join(["a" * 63] * 3) + ".example.test.", 1),
}
for label, data in packets.items():
    write("packet", label, data)

zones = os.path.join(HERE, "zones")
for f in sorted(os.listdir(zones)):
    if f.endswith(".toml"):
        with open(os.path.join(zones, f), "rb") as fh:
            toml = fh.read()
        if b"records_file" in toml:
            with open(os.path.join(zones, "gslb.test.zone"), "rb") as fh:
                master = fh.read()
            toml = toml.replace(b'"gslb.test.zone"', b'"fuzz.zone"')
            write("zone", f, toml + b"\0" + master)
        else:
            write("zone", f, toml)

now = int(time.time() * 1000)
report = {
    "prober_id": "p1",
    "region": "eu-west",
    "boot_id": "b00t",
    "sequence": 7,
    "sent_at_ms": now,
    "interval_ms": 5000,
    "config_digest": "abc",
    "endpoints": {
        "example.test/www/192.0.2.10": {"state": "down", "consecutive": 3, "latency_us": 1500, "checked_at_ms": now, "reason": "status 503"},
        "example.test/www/2001:db8::1": {"state": "unknown", "consecutive": 0, "reason": "not checked yet"},
    },
}
write("report", "valid", json.dumps(report).encode())
report["endpoints"]["example.test/www/192.0.2.10"]["state"] = "up"
report["sequence"] = 8
write("report", "up", json.dumps(report).encode())
write("report", "keys", b"# comment\nk1 p1 " + b"07" * 32 + b"\nk2 p1 " + b"08" * 32 + b"  # rotated\n")
