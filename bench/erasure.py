"""Erasure-coding throughput: both ISA-L backends against a plain memory copy.

`python bench/erasure.py [--quick] [--k 4 --m 2] [--chunk-mib 4]` measures, on one
chunk of random bytes, storage.erasure.coder's encode, decode with 0 (the no-decode
fast path), 1 and 2 data shards lost, and the rebuild of one lost shard, for
isa_l_rs_vand and isa_l_rs_cauchy; and, for comparison, pyeclib's own decode, which
the coder does not use. The baseline, measured in the same run, is a bytes join of the
chunk's k slices: one memory copy of the chunk, the least any read path has to do.
Also `python bench/run.py --only erasure [--quick]`.

Machines are noisy, so every figure is the median of several rounds; each round times
every operation once, in an order that rotates between rounds so drifts in background
load hit them alike. Each timing is a bounded loop (0.1 s or 200 calls), and the whole
run stops adding rounds after 25 s.

Columns per backend: MB/s of chunk data, ms per call, the ratio to the copy, and the
spread, (max - min) / median over the rounds. pyeclib holds the GIL during its C
calls, so the ms column is also how long one call stalls every other Python thread,
the event loop included.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import time
from collections.abc import Callable

from shoal.storage.erasure.coder import BACKENDS, ErasureCoder

MiB = 1 << 20
SAMPLE_SECONDS = 0.1
SAMPLE_MAX_CALLS = 200
DEADLINE_SECONDS = 25.0

#: Operations where the backend's matrix matters; the fast path is the same join for both.
CODED = ("encode", "decode, 1 lost", "decode, 2 lost", "rebuild 1 shard")


def sample(op: Callable[[], object]) -> float:
    """Seconds per call of `op`, over a loop bounded in time and count."""
    op()  # warm: allocator, caches
    calls, t0 = 0, time.perf_counter()
    while True:
        op()
        calls += 1
        elapsed = time.perf_counter() - t0
        if elapsed >= SAMPLE_SECONDS or calls >= SAMPLE_MAX_CALLS:
            return elapsed / calls


def operations(k: int, m: int, data: bytes) -> dict[tuple[str, str], Callable[[], object]]:
    """(row, column) -> the call to time."""
    size = len(data)
    view = memoryview(data)
    q = -(-size // k)
    slices = [view[i * q : (i + 1) * q] for i in range(k)]
    ops: dict[tuple[str, str], Callable[[], object]] = {
        ("memory copy (baseline)", "copy"): lambda: b"".join(slices)
    }
    for backend in BACKENDS:
        coder = ErasureCoder(k, m, backend)
        shards = coder.encode(data)
        for lost in range(m + 1):
            present = {i: s for i, s in enumerate(shards) if i >= lost}
            if coder.decode(present, size) != data:
                raise RuntimeError(f"{backend}: decode with {lost} lost is wrong")
        ops[("encode", backend)] = lambda c=coder: c.encode(data)
        for lost in range(min(m, 2) + 1):
            present = {i: s for i, s in enumerate(shards) if i >= lost}
            row = "decode, 0 lost (fast path)" if lost == 0 else f"decode, {lost} lost"
            ops[(row, backend)] = lambda c=coder, p=present: c.decode(p, size)
        others = {i: s for i, s in enumerate(shards) if i != 0}
        ops[("rebuild 1 shard", backend)] = lambda c=coder, o=others: c.reconstruct(o, [0])
        # What decode would cost through pyeclib's own decode, for comparison.
        for lost in range(min(m, 2) + 1):
            frags = shards[lost : lost + k]
            ops[(f"pyeclib decode, {lost} lost", backend)] = lambda c=coder, f=frags: (
                c._driver.decode(f)
            )
    return ops


def measure(
    ops: dict[tuple[str, str], Callable[[], object]], rounds: int
) -> dict[tuple[str, str], list[float]]:
    """Seconds per call of every operation, one list entry per round."""
    keys = list(ops)
    out: dict[tuple[str, str], list[float]] = {key: [] for key in keys}
    t0 = time.monotonic()
    for rnd in range(rounds):
        if rnd and time.monotonic() - t0 > DEADLINE_SECONDS:
            print(f"(stopped after {rnd} rounds: time budget spent)", file=sys.stderr)
            break
        shift = rnd % len(keys)
        order = keys[shift:] + keys[:shift]
        for key in order if rnd % 2 == 0 else order[::-1]:
            out[key].append(sample(ops[key]))
        print(f"round {rnd + 1}/{rounds} done", file=sys.stderr, flush=True)
    return out


def compare(times: dict[tuple[str, str], list[float]]) -> str:
    """Which backend the figures favour. Both backends are timed in the same round, so
    the comparison is paired: per round, the geometric mean over CODED of cauchy's
    throughput over vand's; a backend is favoured only if that ratio's quartiles (or
    range, with few rounds) sit on one side of 1 and the median is 5% or more off."""
    vand, cauchy = BACKENDS
    rows = [row for row in CODED if (row, vand) in times and (row, cauchy) in times]
    rounds = min(len(times[(row, b)]) for row in rows for b in BACKENDS)
    per_round = [
        math.exp(
            statistics.fmean(
                math.log(times[(row, vand)][r] / times[(row, cauchy)][r]) for row in rows
            )
        )
        for r in range(rounds)
    ]
    mid = statistics.median(per_round)
    if rounds >= 4:
        lo, _, hi = statistics.quantiles(per_round, n=4)
    else:
        lo, hi = min(per_round), max(per_round)
    line = (
        f"{cauchy} / {vand} throughput on {' / '.join(rows)}: {mid:.2f}x "
        f"(median of {rounds} paired rounds, {lo:.2f}-{hi:.2f})\n"
    )
    if lo > 1.0 and mid >= 1.05:
        return line + f"figures favour {cauchy} by {mid - 1:.0%}"
    if hi < 1.0 and mid <= 1 / 1.05:
        return line + f"figures favour {vand} by {1 / mid - 1:.0%}"
    return line + (
        f"figures favour neither backend beyond noise; {cauchy} is the default as it "
        f"decodes every loss within m at any m (Vandermonde is refused for m >= 5)"
    )


def report(times: dict[tuple[str, str], list[float]], k: int, m: int, size: int) -> None:
    mb = size / 1e6

    def median(key: tuple[str, str]) -> float:
        return statistics.median(times[key])

    def spread(key: tuple[str, str]) -> float:
        ts = times[key]
        return (max(ts) - min(ts)) / statistics.median(ts)

    base_key = ("memory copy (baseline)", "copy")
    base = mb / median(base_key)
    rows = list(dict.fromkeys(row for row, _ in times))
    print(
        f"\nerasure coding, {k}+{m}, {size / MiB:g} MiB chunks "
        f"(median of {len(times[base_key])} rounds; MB/s of chunk data)"
    )
    head = f"{'operation':28}" + "".join(
        f" {backend:>17} {'ms':>6} {'xcopy':>6} {'spread':>6}" for backend in BACKENDS
    )
    print(head)
    print("-" * len(head))
    print(
        f"{'memory copy (baseline)':28} {base:17,.0f} {median(base_key) * 1e3:6.2f} "
        f"{1.0:6.2f} {spread(base_key):6.0%}"
    )
    for row in rows:
        if row == base_key[0]:
            continue
        line = f"{row:28}"
        for backend in BACKENDS:
            key = (row, backend)
            if key not in times:
                line += f" {'-':>17} {'':6} {'':6} {'':6}"
                continue
            rate = mb / median(key)
            line += f" {rate:17,.0f} {median(key) * 1e3:6.2f} {rate / base:6.2f} {spread(key):6.0%}"
        print(line)

    verdict = compare(times)
    print(f"\n{verdict}")
    load = os.getloadavg()[0]
    if load > 1.0:
        print(
            f"WARNING: load average {load:.1f} on {os.cpu_count()} CPUs: other processes "
            f"shared the machine, figures are noisy"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="erasure-coding throughput vs a memory copy")
    parser.add_argument("--quick", action="store_true", help="3 rounds instead of 7")
    parser.add_argument("--k", type=int, default=4, help="data shards (default 4)")
    parser.add_argument("--m", type=int, default=2, help="parity shards (default 2)")
    parser.add_argument("--chunk-mib", type=float, default=4.0, help="chunk size (default 4)")
    args = parser.parse_args(argv)
    size = int(args.chunk_mib * MiB)
    data = os.urandom(size)
    ops = operations(args.k, args.m, data)
    times = measure(ops, 3 if args.quick else 7)
    report(times, args.k, args.m, size)
    return 0


if __name__ == "__main__":
    sys.exit(main())
