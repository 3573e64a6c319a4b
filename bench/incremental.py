#!/usr/bin/env python3
"""Incremental tables (issue 17): how fast a health change and a one-zone reload reach the
answers of a large table, and how compile time grows with regions.

  bench/incremental.py health SERVICES      one zone of SERVICES one-endpoint services (one
                                            region, fallback "none"); an override takes one
                                            service's endpoint down: time from POST to the
                                            first answer without it, the server's CPU time
                                            over it (10 ms clock ticks) and the publisher's
                                            build time (ctl status: last_build)
  bench/incremental.py reload ZONES         ZONES small zones (one service each); one file is
                                            edited: time of POST /v1/reload (reading the
                                            directory included) and what it compiled
  bench/incremental.py compile SVC:REG ...  start-up build time (last_build.seconds) of
                                            bench/gen_zone.py zones of SVC services x REG
                                            regions (one endpoint per region)

Uses target/release/meridian (MERIDIAN=... to override) on 127.0.0.1 only.
"""

import json
import os
import socket
import struct
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "bench"))
from queries import query  # noqa: E402

MERIDIAN = os.environ.get("MERIDIAN", os.path.join(ROOT, "target/release/meridian"))
GEOIP = os.path.join(ROOT, "geoip/meridian-sample.txt")
TOKEN = "bench-admin-token-0123456789"


def head(origin, serial=1):
    return [f'origin = "{origin}"', f'ns = ["ns1.{origin}"]', "[soa]", f'mname = "ns1.{origin}"',
            f'rname = "hostmaster.{origin}"', f"serial = {serial}", "[[record]]", 'name = "ns1"',
            'type = "A"', 'data = ["192.0.2.53"]', "[region.r0]", "location = [51.5, -0.1]"]


def address(n):
    return f"10.{(n >> 16) & 255}.{(n >> 8) & 255}.{n & 255}"


def write_big(d, services):
    with open(os.path.join(d, "big.toml"), "w") as f:
        f.write("\n".join(head("big.test.")) + "\n")
        for s in range(services):
            f.write(f'[service.s{s}]\nfallback = "none"\n[[service.s{s}.endpoint]]\n'
                    f'region = "r0"\naddress = "{address(s)}"\n')


def small(z, serial=1):
    return "\n".join(head(f"z{z}.test.", serial) + [
        "[service.www]", "[[service.www.endpoint]]", 'region = "r0"', 'address = "192.0.2.1"']) + "\n"


class Server:
    def __init__(self, zones, work):
        self.sock = os.path.join(work, "ctl.sock")
        token = os.path.join(work, "admin.token")
        with open(token, "w") as f:
            f.write(TOKEN + "\n")
        self.out = open(os.path.join(work, "out"), "w+")
        t0 = time.monotonic()
        self.proc = subprocess.Popen(
            [MERIDIAN, "serve", "--zones", zones, "--geoip", GEOIP, "--dns-listen", "127.0.0.1:0",
             "--api-listen", "127.0.0.1:0", "--no-local-probe", "--no-watch",
             "--admin-token-file", token, "--control-socket", self.sock],
            stdout=self.out, stderr=subprocess.DEVNULL)
        while True:
            self.out.seek(0)
            line = next((l for l in self.out if l.startswith("ready")), None)
            if line:
                break
            if self.proc.poll() is not None or time.monotonic() - t0 > 600:
                sys.exit("meridian did not start")
            time.sleep(0.02)
        self.ready = time.monotonic() - t0
        fields = dict(f.split("=", 1) for f in line.split()[1:] if "=" in f)
        host, port = fields["dns"].split(",")[0].rsplit(":", 1)
        self.dns = (host, int(port))
        self.api = fields["api"]
        self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.udp.settimeout(2)

    def answers(self, name):
        self.udp.sendto(query(name), self.dns)
        reply = self.udp.recv(4096)
        return struct.unpack(">H", reply[6:8])[0]

    def post(self, path, body=b""):
        req = urllib.request.Request(f"http://{self.api}{path}", data=body, method="POST", headers={
            "Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=600) as r:
            return json.loads(r.read() or b"null")

    def last_build(self):
        out = subprocess.run([MERIDIAN, "ctl", "--socket", self.sock, "--json", "status"],
                             capture_output=True, text=True, check=True).stdout
        return json.loads(out)["result"]["last_build"]

    def cpu_ms(self):
        """CPU time (user + system) the server has used, milliseconds."""
        with open(f"/proc/{self.proc.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) * 1000 / os.sysconf("SC_CLK_TCK")

    def stop(self):
        self.proc.kill()
        self.proc.wait()


def health(services):
    with tempfile.TemporaryDirectory() as work:
        zones = os.path.join(work, "zones")
        os.makedirs(zones)
        write_big(zones, services)
        ns = Server(zones, work)
        print(f"{services} services: ready in {ns.ready:.1f} s; start build {ns.last_build()['seconds']:.2f} s")
        print("trial  POST->answer  response->answer  server CPU  build (publisher)  "
              "services compiled/reused")
        for trial, k in enumerate([services // 3, services // 2, services - 1]):
            name = f"s{k}.big.test."
            assert ns.answers(name) == 1
            time.sleep(1)  # past the health task's spacing: the decision comes at once
            body = json.dumps({"target": {"zone": "big.test.", "service": f"s{k}"}, "state": "down",
                               "expires_in_seconds": 600, "reason": "bench"}).encode()
            c0, t0 = ns.cpu_ms(), time.monotonic()
            ns.post("/v1/overrides", body)
            t1 = time.monotonic()
            while ns.answers(name) != 0:
                if time.monotonic() - t0 > 60:
                    sys.exit("the override never reached the answers")
            t2, c2 = time.monotonic(), ns.cpu_ms()
            b = ns.last_build()
            print(f"{trial + 1:5}  {1000 * (t2 - t0):9.1f} ms  {1000 * (t2 - t1):12.1f} ms  "
                  f"{c2 - c0:7.0f} ms  {1000 * b['seconds']:13.2f} ms  "
                  f"{b['services_compiled']}/{b['services_reused']}")
        ns.stop()


def reload(count):
    with tempfile.TemporaryDirectory() as work:
        zones = os.path.join(work, "zones")
        os.makedirs(zones)
        for z in range(count):
            with open(os.path.join(zones, f"z{z:06}.toml"), "w") as f:
                f.write(small(z))
        # Zone files in service are older than the loader's settling window (2 s) after which
        # it trusts a file's metadata: a reload then stats unchanged files instead of reading.
        time.sleep(2.5)
        ns = Server(zones, work)
        print(f"{count} zones: ready in {ns.ready:.1f} s")
        print("trial  edit       POST /v1/reload  server CPU  zones compiled/reused  build (publisher)")
        for trial in range(4):
            edit = trial % 2 == 1
            if edit:
                z = trial * 7 % count
                with open(os.path.join(zones, f"z{z:06}.toml"), "w") as f:
                    f.write(small(z, serial=trial + 2))
            time.sleep(1)
            c0, t0 = ns.cpu_ms(), time.monotonic()
            report = ns.post("/v1/reload")
            t1, c1 = time.monotonic(), ns.cpu_ms()
            b = report["table"]
            print(f"{trial + 1:5}  {'one zone' if edit else 'none    '}  {1000 * (t1 - t0):10.1f} ms  "
                  f"{c1 - c0:7.0f} ms  {b['zones_compiled']}/{b['zones_reused']:<15}  "
                  f"{1000 * b['seconds']:8.2f} ms")
        ns.stop()


def compile_cells(cells):
    print("services  regions  endpoints  start build  per endpoint")
    for cell in cells:
        services, regions = (int(x) for x in cell.split(":"))
        with tempfile.TemporaryDirectory() as work:
            zones = os.path.join(work, "zones")
            subprocess.run([sys.executable, os.path.join(ROOT, "bench/gen_zone.py"), str(services),
                            str(regions), zones, os.path.join(work, "q")], check=True)
            ns = Server(zones, work)
            s = ns.last_build()["seconds"]
            n = services * regions
            print(f"{services:8}  {regions:7}  {n:9}  {s:9.3f} s  {1e6 * s / n:8.2f} us")
            ns.stop()


if __name__ == "__main__":
    mode = sys.argv[1] if len(sys.argv) > 1 else ""
    if mode == "health":
        health(int(sys.argv[2]))
    elif mode == "reload":
        reload(int(sys.argv[2]))
    elif mode == "compile":
        compile_cells(sys.argv[2:])
    else:
        sys.exit(__doc__)
