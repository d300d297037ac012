"""One server, one measurement, several rounds: for A/B runs of a change.

Starts one of the table's servers exactly as `table.py` does (`shoal`: the README's
production line; `erasure`: the same as a single erasure-coded node over 6 drive
folders), then measures one thing `--rounds` times and prints each figure and their
median: a 4 KiB loop (GET or PUT, at `--conns` keep-alive connections over 1,000 keys,
with loadgen as the table runs it), or a large object's PUT and GET (`--big MIB`).
`--populate` stores the 1,000 keys first, so a PUT loop overwrites (a GET loop always
populates). `--workers N`: the standalone server with N uvicorn worker processes (README
"Several workers"; an erasure-coded node is one process). Comparing two commits: run
it on each, alternating, on an idle machine; the median of several rounds, never one
figure (the machine is shared and noisy).

Usage: `python bench/loop.py {shoal,erasure} {GET,PUT} [--conns 16] [--seconds 4]
[--rounds 3] [--populate] [--workers N]` or `python bench/loop.py {shoal,erasure} --big 256`.
"""

from __future__ import annotations

import argparse
import dataclasses
import secrets
import statistics
import sys

import procs
import table
from sigv4 import Credentials


def report(label: str, figures: list[float]) -> None:
    shown = ", ".join(f"{f:.0f}" for f in figures)
    print(f"{label}: {shown}; median {statistics.median(figures):.0f}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("server", choices=["shoal", "erasure"])
    parser.add_argument("method", nargs="?", choices=["GET", "PUT"], default="GET")
    parser.add_argument("--conns", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--populate", action="store_true")
    parser.add_argument("--big", type=int, metavar="MIB", help="a large PUT and GET instead")
    parser.add_argument("--workers", type=int, default=1, help="standalone only")
    args = parser.parse_args(argv)
    if args.workers > 1 and args.server != "shoal":
        parser.error("--workers: an erasure-coded node runs as one process")
    creds = Credentials(procs.BENCH_ACCESS_KEY, secrets.token_urlsafe(24))
    with procs.scratch("shoal-bench-loop-") as (work, log):
        t = table.start_server(args.server, work, creds, None, workers=args.workers)
        plan = dataclasses.replace(table.QUICK, duration=args.seconds, warmup=0.5)
        bench = table.Bench(plan, work, None, log)
        bench.buckets(t)
        if args.big:
            puts, gets = [], []
            for i in range(args.rounds):
                key = f"big{i}"  # a new key each round: no earlier version to replace
                puts.append(bench.big(t, "big_put", key, args.big << 20)["mb_per_s"])
                gets.append(bench.big(t, "big_get", key, args.big << 20)["mb_per_s"])
            report(f"{args.server} {args.big} MiB PUT MB/s", puts)
            report(f"{args.server} {args.big} MiB GET MB/s", gets)
            return 0
        if args.method == "GET" or args.populate:
            bench.populate(t, "bench", bench.keys(), table.SMALL, 16)
        figures = []
        for rnd in range(args.rounds):
            r = bench.small_loop(t, args.method, args.conns, rnd)
            if "error" in r:
                raise RuntimeError(r["error"])
            figures.append(float(r["ops_per_s"]))
        label = f"{args.server} ({args.workers} workers)" if args.workers > 1 else args.server
        report(f"{label} 4 KiB {args.method} c{args.conns} ops/s", figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
