#!/usr/bin/env python3
"""Runs dnsperf against servers that are already running and prints one table.

Called by bench/run.sh (which installs, configures and starts the servers). For every round, query
mix and server, in that order (so servers are interleaved and drift on this noisy machine hits
them all alike), it runs dnsperf pinned to the load CPU and measures the server's CPU time over
the run: the sum of /proc/PID/task/*/schedstat over the server's whole process tree, user and
system time together, in nanoseconds. Then, per server and mix, it runs dnsperf -v at half the
measured peak rate and takes p50/p99 of the per-query latencies it prints.

Usage: measure.py --server NAME=PID:PORT[:MIXES] ... --queries DIR [--seconds S] [--rounds R]
                  [--mixes m1,m2] [--latency-mixes m1,m2] [--load-cpu N] [--markdown]
MIXES (optional, '+'-separated) restricts a server to the mixes it can answer (NSD/Knot: no geo).
"""

import argparse
import os
import re
import statistics
import subprocess
import sys

# mix name -> (query file, transport)
MIXES = {
    "static": ("static.bin", "udp"),
    "nxdomain": ("nxdomain.bin", "udp"),
    "geo": ("geo.bin", "udp"),
    "geo-ecs": ("geo-ecs.bin", "udp"),
    "mix": ("mix.bin", "udp"),
    "static-tcp": ("static.bin", "tcp"),
    "mix-tcp": ("mix.bin", "tcp"),
    # DNS over TLS (bench/dot.sh): dnsperf -m dot.
    "static-dot": ("static.bin", "dot"),
    "nxdomain-dot": ("nxdomain.bin", "dot"),
    # DNSSEC (bench/run.sh --dnssec): DO=1 queries, and random-name NXDOMAIN with and without.
    "static-do": ("static-do.bin", "udp"),
    "nxdomain-do": ("nxdomain-do.bin", "udp"),
    "nxrandom": ("nxrandom.bin", "udp"),
    "nxrandom-do": ("nxrandom-do.bin", "udp"),
    "geo-ecs-do": ("geo-ecs-do.bin", "udp"),
}


def tree_pids(root):
    """The process and all its descendants (NSD forks its serving process)."""
    children = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(entry))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, []))
    return out


def cpu_ns(root):
    total = 0
    for pid in tree_pids(root):
        try:
            tasks = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for tid in tasks:
            try:
                with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                    total += int(f.read().split()[0])
            except OSError:
                pass
    return total


def dnsperf(port, path, transport, seconds, load_cpu, extra=()):
    cmd = [
        "taskset", "-c", str(load_cpu),
        "dnsperf", "-s", "127.0.0.1", "-p", str(port), "-B", "-d", path,
        "-m", transport, "-l", str(seconds), "-q", "200", *extra,
    ]
    return subprocess.run(cmd, capture_output=True, text=True, check=False).stdout


def field(text, name):
    m = re.search(rf"{re.escape(name)}:\s+([0-9.]+)", text)
    return float(m.group(1)) if m else 0.0


def percentile(sorted_values, p):
    if not sorted_values:
        return float("nan")
    k = min(len(sorted_values) - 1, max(0, round(p / 100 * (len(sorted_values) - 1))))
    return sorted_values[k]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--server", action="append", required=True)
    ap.add_argument("--queries", required=True)
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--mixes", default=",".join(MIXES))
    ap.add_argument("--latency-mixes", default="static,geo-ecs")
    ap.add_argument("--latency-seconds", type=float, default=5)
    ap.add_argument("--load-cpu", type=int, default=0)
    ap.add_argument("--markdown", action="store_true")
    ap.add_argument("--compare", default="gdnsd,nsd",
                    help="servers the 'vs' columns divide CPU per query by")
    args = ap.parse_args()

    servers = []
    for spec in args.server:
        name, rest = spec.split("=", 1)
        parts = rest.split(":")
        only = set(parts[2].split("+")) if len(parts) > 2 and parts[2] else None
        servers.append((name, int(parts[0]), int(parts[1]), only))
    mixes = [m for m in args.mixes.split(",") if m]
    runs = {}  # (server, mix) -> list of (qps, cpu_us, lost)

    for rnd in range(args.rounds):
        for mix in mixes:
            file, transport = MIXES[mix]
            for name, pid, port, only in servers:
                if only is not None and mix not in only:
                    continue
                before = cpu_ns(pid)
                out = dnsperf(port, os.path.join(args.queries, file), transport,
                              args.seconds, args.load_cpu)
                used = cpu_ns(pid) - before
                done = field(out, "Queries completed")
                lost = field(out, "Queries lost")
                qps = field(out, "Queries per second")
                cpu_us = used / 1000 / done if done else float("nan")
                runs.setdefault((name, mix), []).append((qps, cpu_us, lost))
                print(f"round {rnd + 1} {mix:10} {name:9} {qps:9.0f} qps "
                      f"{cpu_us:6.2f} us/q lost {lost:.0f}", file=sys.stderr, flush=True)

    latency = {}
    for mix in [m for m in args.latency_mixes.split(",") if m in mixes]:
        file, transport = MIXES[mix]
        for name, pid, port, only in servers:
            if (name, mix) not in runs:
                continue
            peak = statistics.median(r[0] for r in runs[(name, mix)])
            rate = max(1000, int(peak / 2))
            out = dnsperf(port, os.path.join(args.queries, file), transport,
                          args.latency_seconds, args.load_cpu, ["-Q", str(rate), "-v"])
            # "> NOERROR name A 0.000123": the last field is the latency in seconds. A query
            # that timed out prints "> T ..." with no latency (-B: "> T binary input").
            values = sorted(float(line.rsplit(" ", 1)[1]) for line in out.splitlines()
                            if line.startswith("> ") and not line.startswith("> T "))
            latency[(name, mix)] = (rate, percentile(values, 50), percentile(values, 99))
            print(f"latency {mix:10} {name:9} at {rate} qps: p50 "
                  f"{latency[(name, mix)][1] * 1e6:.0f} us p99 {latency[(name, mix)][2] * 1e6:.0f} us",
                  file=sys.stderr, flush=True)

    names = [s[0] for s in servers]
    base = {m: {} for m in mixes}
    for (name, mix), rs in runs.items():
        base[mix][name] = statistics.median(r[1] for r in rs)

    compare = [c for c in args.compare.split(",") if c]
    label = {"gdnsd": "gdnsd", "nsd": "NSD"}
    header = ["mix", "server", "qps", "CPU us/query", *(f"vs {label.get(c, c)}" for c in compare),
              "p50 us", "p99 us", "lost"]
    # DO=1 mixes (name-do) also get their CPU per query over the same server's DO=0 mix.
    do_ratio = any(m.endswith("-do") for m in mixes)
    if do_ratio:
        header.insert(4 + len(compare), "vs DO=0")
    rows = []
    for mix in mixes:
        for name in names:
            if (name, mix) not in runs:
                continue
            rs = runs[(name, mix)]
            qps = statistics.median(r[0] for r in rs)
            cpu = base[mix][name]
            lost = sum(r[2] for r in rs)

            def ratio(other):
                b = base[mix].get(other)
                return f"{cpu / b:.2f}" if b and name != other else "-"

            lat = latency.get((name, mix))
            p50 = f"{lat[1] * 1e6:.0f}" if lat else "-"
            p99 = f"{lat[2] * 1e6:.0f}" if lat else "-"
            row = [mix, name, f"{qps:.0f}", f"{cpu:.2f}", *(ratio(c) for c in compare)]
            if do_ratio:
                plain = base.get(mix[:-3], {}).get(name) if mix.endswith("-do") else None
                row.append(f"{cpu / plain:.2f}" if plain else "-")
            rows.append([*row, p50, p99, f"{lost:.0f}"])

    print(f"\n{args.rounds} rounds x {args.seconds:g} s per run; medians. CPU: server process tree, "
          f"user+system. Latency: dnsperf -v at half the peak rate, {args.latency_seconds:g} s.")
    if args.markdown:
        print("| " + " | ".join(header) + " |")
        print("|" + "|".join(" --- " for _ in header) + "|")
        for r in rows:
            print("| " + " | ".join(r) + " |")
    else:
        widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
        print("  ".join(h.ljust(w) for h, w in zip(header, widths)))
        for r in rows:
            print("  ".join(c.ljust(w) for c, w in zip(r, widths)))


if __name__ == "__main__":
    main()
