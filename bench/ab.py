"""The working tree's uncommitted change against HEAD, on two servers side by side.

Starts one of the table's servers (as `loop.py` does) from the working tree, then
stashes the change (`git stash`), starts a second from HEAD and restores the change
(`git stash pop`): each server has imported its code by then. Each round measures both,
in alternating order, so both see the same moments of a noisy machine; sequential runs
of one and then the other (`loop.py` on each) moved by more than the changes measured.
Prints each server's figures and their medians.

Usage: `python bench/ab.py {shoal,erasure} {GET,PUT,bigget,bigput,range} [--rounds 8]`
(GET/PUT: the 4 KiB loop at 16 connections over 1,000 stored keys; bigget: one 256 MiB
object; bigput: a 256 MiB object under a new key each round, as the table's row PUTs
one, with no earlier version to replace (an erasure-coded node's overwrite also deletes
the old version's shard files, in the request); range: the p50 in ms of 1 MiB range
GETs of it, the table's row). Run it with a change in the working tree and nothing else
stashed.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import secrets
import statistics
import subprocess
import sys
from typing import Any

import procs
import table
from sigv4 import Credentials

BIG = 256 << 20


def git(*args: str) -> str:
    return subprocess.run(
        ["git", "-C", procs.REPO, *args], check=True, capture_output=True, text=True
    ).stdout


def measure(what: str, t: Any, bench: table.Bench, rnd: int) -> float:
    if what == "bigget":
        return float(bench.big(t, "big_get", "big", BIG)["mb_per_s"])
    if what == "bigput":
        return float(bench.big(t, "big_put", f"new{rnd}", BIG)["mb_per_s"])
    if what == "range":
        return float(bench.range_get(t)["p50_ms"])
    r = bench.small_loop(t, what, 16, rnd)
    if "error" in r:
        raise RuntimeError(r["error"])
    return float(r["ops_per_s"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("server", choices=["shoal", "erasure"])
    parser.add_argument("what", choices=["GET", "PUT", "bigget", "bigput", "range"])
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args(argv)
    if not git("status", "--porcelain", "--untracked-files=no").strip():
        print("no uncommitted change to compare with HEAD", file=sys.stderr)
        return 2
    creds = Credentials(procs.BENCH_ACCESS_KEY, secrets.token_urlsafe(24))
    plan = dataclasses.replace(table.QUICK, duration=args.seconds, warmup=0.5)
    with procs.scratch("shoal-bench-ab-") as (work, log):
        servers: dict[str, tuple[Any, table.Bench]] = {}
        for label in ("change", "HEAD"):
            if label == "HEAD":
                git("stash")
            try:
                folder = os.path.join(work, label)
                os.mkdir(folder)
                t = table.start_server(args.server, folder, creds, None)
                bench = table.Bench(plan, folder, None, log)
                bench.buckets(t)
                # A first request of each kind, so every module it needs is imported
                # before the code changes under it.
                if args.what.startswith("big") or args.what == "range":
                    bench.big(t, "big_put", "big", BIG)
                    bench.big(t, "big_get", "big", BIG)
                else:
                    bench.populate(t, "bench", bench.keys(), table.SMALL, 16)
                    measure(args.what, t, bench, 0)
                servers[label] = (t, bench)
            finally:
                if label == "HEAD":
                    git("stash", "pop")
        figures: dict[str, list[float]] = {label: [] for label in servers}
        for rnd in range(args.rounds):
            order = ["change", "HEAD"] if rnd % 2 == 0 else ["HEAD", "change"]
            for label in order:
                t, bench = servers[label]
                figures[label].append(measure(args.what, t, bench, rnd + 1))
    unit = {"bigget": "MB/s", "bigput": "MB/s", "range": "ms (p50)"}.get(args.what, "ops/s")
    for label, figs in figures.items():
        digits = 2 if args.what == "range" else 0
        shown = ", ".join(f"{f:.{digits}f}" for f in figs)
        median = statistics.median(figs)
        print(f"{label}: {args.server} {args.what} {unit}: {shown}; median {median:.{digits}f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
