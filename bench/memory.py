"""Memory test: shoal's RSS must not grow with object size.

Streams one large PUT and then a GET of the same object through a fresh shoal while a
thread samples the server's VmRSS (summed over its process tree) every ~50 ms. PASS
when peak minus the idle RSS (once it holds still, just before the transfer) stays under
64 MiB.

Run on its own with `python bench/memory.py [--size-mib 1024] [--erasure]` (`--erasure`:
a fresh erasure-coded node over 6 drive folders instead of the standalone store);
bench/run.py calls `run_memory_test()` for the standalone store and judges the
erasure-coded node by the same limit during its own big PUT/GET steps.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import threading
import time
from typing import Any

import procs

MiB = 1 << 20
LIMIT = 64 * MiB


class RssSampler:
    """Samples the RSS of a process tree on a thread every `interval` seconds."""

    def __init__(self, pid: int, interval: float = 0.05) -> None:
        self.pid = pid
        self.interval = interval
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        t0 = time.monotonic()
        while not self._stop.is_set():
            self.samples.append((time.monotonic() - t0, procs.rss_bytes(self.pid)))
            self._stop.wait(self.interval)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def peak(self) -> int:
        return max((r for _, r in self.samples), default=0)


def run_memory_test(
    work_dir: str,
    size: int,
    *,
    pin: bool = True,
    argv_for: Any = procs.shoal_argv,
    name: str = "shoal",
    erasure: bool = False,
) -> dict[str, Any]:
    """PUT then GET `size` bytes through a fresh server (with `erasure`, an
    erasure-coded node over procs.EC_DRIVES folders); returns RSS figures (bytes)."""
    server_cpus, client_cpus = procs.cpu_plan(pin)
    data = os.path.join(work_dir, f"mem-{name}")
    os.makedirs(data, exist_ok=True)
    env = procs.erasure_env(data) if erasure else None
    server = procs.Server(
        name, argv_for(data), os.path.join(work_dir, f"mem-{name}.log"), server_cpus, env=env
    )
    with server:
        procs.run_client(server, [{"op": "bucket", "bucket": "mem"}], cpus=client_cpus, timeout=30)
        idle = procs.settled_rss(server.pid)
        sampler = RssSampler(server.pid)
        ops = [
            {"op": "big_put", "bucket": "mem", "key": "big", "size": size},
            {"op": "big_get", "bucket": "mem", "key": "big"},
        ]
        try:
            results = procs.run_client(
                server, ops, cpus=client_cpus, timeout=900, during=sampler.start
            )
        finally:
            sampler.stop()
        after = procs.rss_bytes(server.pid)
    shutil.rmtree(data, ignore_errors=True)
    growth = sampler.peak - idle
    return {
        "object_bytes": size,
        "idle_rss": idle,
        "peak_rss": sampler.peak,
        "after_rss": after,
        "growth": growth,
        "samples": len(sampler.samples),
        "limit": LIMIT,
        "put": results[0],
        "get": results[1],
        "pass": growth < LIMIT
        and results[0].get("status") == 200
        and results[1].get("bytes") == size,
    }


def describe(r: dict[str, Any], name: str = "shoal") -> str:
    def mib(n: int) -> str:
        return f"{n / MiB:.1f} MiB"

    verdict = "PASS" if r["pass"] else "FAIL"
    return (
        f"memory ({name}, {r['object_bytes'] // MiB} MiB PUT then GET, {r['samples']} samples): "
        f"idle {mib(r['idle_rss'])}, peak {mib(r['peak_rss'])}, growth {mib(r['growth'])} "
        f"(limit {LIMIT // MiB} MiB) {verdict}; PUT {r['put'].get('mb_per_s', 0):.0f} MB/s, "
        f"GET {r['get'].get('mb_per_s', 0):.0f} MB/s"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="shoal RSS while streaming a big object")
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--no-pin", action="store_true", help="don't pin server/client CPUs")
    parser.add_argument(
        "--erasure",
        action="store_true",
        help="an erasure-coded node (6 drive folders, 4+2) instead",
    )
    args = parser.parse_args(argv)
    with procs.scratch("shoal-bench-mem-") as (work, _):
        name = "erasure node" if args.erasure else "shoal"
        r = run_memory_test(
            work,
            args.size_mib * MiB,
            pin=not args.no_pin,
            name=name.replace(" ", "-"),
            erasure=args.erasure,
        )
        print(describe(r, name))
        return 0 if r["pass"] else 1


if __name__ == "__main__":
    sys.exit(main())
