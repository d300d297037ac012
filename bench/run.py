"""shoal benchmark suite: `make bench` runs bench/table.py (issue 17's table, measured
as the outside harness measures it); `--detailed` runs the older suite below.

`python bench/run.py --detailed [--quick]` starts each server as a subprocess on 127.0.0.1 (port 0),
drives it from a separate client process (bench/client.py), and prints a table of
shoal, baseline and shoal/baseline with PASS/SHORT against the targets, then a table
for an erasure-coded shoal node (6 drive folders, 4+2) measured in the same rounds:
erasure, erasure/standalone shoal, erasure/baseline and its RSS growth during the big
PUT/GET, then one for an encrypting shoal (standalone, a keyring, its bucket's default
SSE-S3) measured in the same rounds: sse, sse/standalone shoal, CPU per MB of the big
transfers, RSS growth, and a scan of its data directory proving the big object was
stored encrypted, then one for a 3-node cluster (node processes joined by QUIC, 2 drive
folders each, 4+2 over the 6) measured in the same rounds on its big PUT/GET through node 0:
cluster, cluster/erasure node, cluster/standalone shoal and node 0's RSS growth. The
figures also go to bench/results.json. With two or more CPUs the server is pinned to
one core and the client to another (the cluster's three nodes all share the server's
core). All data lives in one tempfile.mkdtemp() directory, removed at the end; every
child process is stopped even on Ctrl-C or an error.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import os
import platform
import shutil
import socket
import statistics
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import memory
import plaintext
import procs
from table import fmt

MiB = 1 << 20
SMALL = 4096
LIST_KEYS = 10_000


@dataclass(frozen=True)
class Plan:
    duration: float
    warmup: float
    max_ops: int
    big: int
    ranges: int
    list_keys: int
    startups: int
    rounds: int
    ec_rounds: int  # rounds of the erasure-coded node and the cluster (the first ones)


FULL = Plan(
    duration=3.0,
    warmup=0.5,
    max_ops=200_000,
    big=1024 * MiB,
    ranges=500,
    list_keys=LIST_KEYS,
    startups=5,
    rounds=5,
    ec_rounds=3,
)
QUICK = Plan(
    duration=2.0,
    warmup=0.3,
    max_ops=100_000,
    big=256 * MiB,
    ranges=200,
    list_keys=LIST_KEYS,
    startups=5,
    rounds=1,
    ec_rounds=1,
)

#: The steps the erasure-coded node takes part in (the others would cost minutes at its
#: small-object rate: populating 10,000 keys, 64-connection loops, range reads).
ERASURE_STEPS = ("buckets", "put4k_c16", "get4k_keys", "get4k_c16", "big_put", "big_get")
#: The steps the 3-node cluster takes part in: the big streamed PUT and GET.
CLUSTER_STEPS = ("buckets", "big_put", "big_get")
#: The steps the encrypting (SSE-S3) standalone shoal takes part in: the erasure node's.
SSE_STEPS = ERASURE_STEPS
#: Servers that take part in some steps only, in the first `Plan.ec_rounds` rounds.
LIMITED_STEPS = {"erasure": ERASURE_STEPS, "cluster": CLUSTER_STEPS, "sse": SSE_STEPS}
#: Servers whose "bench" bucket gets SSE-S3 as its default encryption.
ENCRYPTING = ("sse",)

AnyServer = procs.Server | procs.ClusterServer


# ---------------------------------------------------------------- measurements


#: (name, measurement, rounds); with several rounds the servers take turns and the
#: round with the median figure is kept.
Step = tuple[str, Callable[[AnyServer, Callable[..., list[dict[str, Any]]]], Any], int]


def steps(plan: Plan) -> list[Step]:
    """The measurements, in order; each is run against every server before the next one
    starts, so both see the same background load and the same disk state."""
    small = {
        "bucket": "bench",
        "size": SMALL,
        "duration": plan.duration,
        "warmup": plan.warmup,
        "max_ops": plan.max_ops,
    }
    out: list[Step] = []

    def buckets(server: AnyServer, client: Callable[..., list[dict[str, Any]]]) -> Any:
        for r in client([{"op": "bucket", "bucket": "bench"}, {"op": "bucket", "bucket": "lst"}]):
            if r.get("status") != 200:
                raise RuntimeError(f"{server.name}: cannot create buckets: {r}")
        if server.name in ENCRYPTING:
            (r,) = client([{"op": "bucket_encryption", "bucket": "bench"}])
            if r.get("status") != 200 or r.get("algorithm") != "AES256":
                raise RuntimeError(f"{server.name}: cannot set SSE-S3 as the default: {r}")
        return None

    out.append(("buckets", buckets, 1))
    for conc in (16, 64):
        out.append(
            (
                f"put4k_c{conc}",
                lambda s, client, c=conc: client([{"op": "small_put", "concurrency": c, **small}])[
                    0
                ],
                plan.rounds,
            )
        )
    out.append(
        (
            "get4k_keys",
            lambda s, client: client(
                [
                    {
                        "op": "small_get",
                        "concurrency": 1,
                        "populate": True,
                        **small,
                        "duration": 0.0,
                        "warmup": 0.0,
                    }
                ]
            )[0],
            1,
        )
    )
    for conc in (16, 64):
        out.append(
            (
                f"get4k_c{conc}",
                lambda s, client, c=conc: client(
                    [{"op": "small_get", "concurrency": c, "populate": False, **small}]
                )[0],
                plan.rounds,
            )
        )

    def big(op: str) -> Callable[[AnyServer, Callable[..., Any]], Any]:
        def run(server: AnyServer, client: Callable[..., Any]) -> Any:
            spec = {"op": op, "bucket": "bench", "key": "big", "size": plan.big, "timeout": 850}
            # The server's RSS (a cluster's: node 0, the coordinator), and the cluster's
            # other nodes' apart.
            peers = list(getattr(server, "peer_pids", []))
            idle = [procs.rss_bytes(p) for p in [server.pid, *peers]]
            samplers = [memory.RssSampler(p) for p in [server.pid, *peers]]

            def start() -> None:
                for s in samplers:
                    s.start()

            try:
                result = client([spec], timeout=900, during=start)[0]
            finally:
                for s in samplers:
                    s.stop()
            result["rss_idle"], result["rss_peak"] = idle[0], samplers[0].peak
            # CPU time per MB moved: what the transfer costs the server, whatever share
            # of its core other work on the machine left it.
            if "server_cpu_seconds" in result:
                result["cpu_ms_per_mb"] = result["server_cpu_seconds"] * 1e3 / (plan.big / 1e6)
            result["rss_samples"] = len(samplers[0].samples)
            if peers:
                result["peer_rss_idle"] = idle[1:]
                result["peer_rss_peak"] = [s.peak for s in samplers[1:]]
            # A refused PUT or a short GET is fast, not a figure.
            if op == "big_put" and result.get("status") != 200:
                result["error"] = f"PUT answered {result.get('status')}"
            elif op == "big_put" and server.name in ENCRYPTING and result.get("sse") != "AES256":
                result["error"] = f"PUT not encrypted (answered SSE {result['sse']})"
            if op == "big_get" and (result.get("status") != 200 or result.get("bytes") != plan.big):
                result["error"] = (
                    f"GET answered {result.get('status')} with "
                    f"{result.get('bytes')} of {plan.big} bytes"
                )
            return result

        return run

    out.append(("big_put", big("big_put"), 1))
    out.append(("big_get", big("big_get"), plan.rounds))
    out.append(
        (
            "range_get",
            lambda s, client: client(
                [
                    {
                        "op": "range_get",
                        "bucket": "bench",
                        "key": "big",
                        "object_size": plan.big,
                        "count": plan.ranges,
                        "max_seconds": 60,
                    }
                ]
            )[0],
            1,
        )
    )
    out.append(
        (
            "populate",
            lambda s, client: client(
                [
                    {
                        "op": "populate",
                        "bucket": "lst",
                        "n": plan.list_keys,
                        "prefixes": 4,
                        "concurrency": 32,
                    }
                ],
                timeout=900,
            )[0],
            1,
        )
    )
    out.append(
        (
            "list",
            lambda s, client: client(
                [
                    {
                        "op": "list",
                        "bucket": "lst",
                        "style": "s3" if s.name == "shoal" else "plain",
                        "repeat": 3,
                    }
                ],
                timeout=300,
            )[0],
            1,
        )
    )
    return out


def first_answer(port: int, deadline: float) -> bool:
    """One attempt: connect and read an HTTP status line; False if not answering yet."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0) as s:
            s.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            s.settimeout(max(0.1, deadline - time.perf_counter()))
            return s.recv(16).startswith(b"HTTP/1.")
    except OSError:
        return False


def pick_median(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """The round with the median headline figure, with every round's figure attached."""
    if len(rounds) == 1:
        return rounds[0]
    key = next((k for k in ("ops_per_s", "mb_per_s") if k in rounds[0]), None)
    if key is None or any(key not in r for r in rounds):
        return rounds[-1]
    ordered = sorted(rounds, key=lambda r: r[key])
    out = {**ordered[len(ordered) // 2], "rounds": [r[key] for r in rounds]}
    if all("rss_peak" in r for r in rounds):  # memory is judged over every round
        out["rss_peak_max"] = max(r["rss_peak"] for r in rounds)
        out["rss_samples_total"] = sum(r.get("rss_samples", 0) for r in rounds)
    if all("peer_rss_peak" in r for r in rounds):  # a cluster's other nodes, likewise
        peers = [r["peer_rss_peak"] for r in rounds]
        out["peer_rss_peak"] = [max(p) for p in zip(*peers, strict=True)]
    return out


def _probe(results: dict[str, Any], name: str) -> str | None:
    """The 64 plaintext bytes (hex) of `name`'s big PUT, if it stored one."""
    put = (results.get(name) or {}).get("big_put") or {}
    return put.get("probe") if put.get("status") == 200 else None


def describe_check(check: dict[str, Any] | None) -> str:
    """One line on whether the encrypting server's big object was stored encrypted."""
    if check is None:
        return "sse: its big object was not stored, so nothing was checked on disk"
    if check["plaintext_files"]:
        return "sse: PLAINTEXT ON DISK, its figures measure unencrypted writes: " + ", ".join(
            check["plaintext_files"][:5]
        )
    if not check["control_files"]:
        return (
            "sse: no plaintext of its big object on disk, but the control found none in "
            "standalone shoal's either, so the scan proves nothing"
        )
    return (
        "sse: stored encrypted: 64 bytes of its big object's plaintext are in no file of "
        "its data directory (the same scan finds standalone shoal's in "
        + ", ".join(check["control_files"][:3])
        + ")"
    )


def cluster_info(server: AnyServer) -> dict[str, Any]:
    """The node's `GET /-/cluster` (mode, erasure layout, drives)."""
    url = f"http://{server.host}:{server.port}/-/cluster"
    with urllib.request.urlopen(url, timeout=10) as r:
        return dict(json.load(r))


def startup_once(argv: list[str], port: int, cpus: set[int] | None) -> float | None:
    """Seconds from spawn to the first HTTP answer on `port` (chosen beforehand, so the
    poll doesn't wait for the listening line); None if it never answers."""
    t0 = time.perf_counter()
    proc = procs.spawn(argv, cpus=cpus, log_path=None)
    deadline = t0 + 20.0
    try:
        while time.perf_counter() < deadline:
            if first_answer(port, deadline):
                return time.perf_counter() - t0
            if proc.poll() is not None:
                return None
            time.sleep(0.001)
        return None
    finally:
        procs.stop(proc)


def client_ceiling(
    work: str, plan: Plan, client_cpus: set[int] | None, server_cpus: set[int] | None
) -> dict[str, Any]:
    """The client's own ops/s limit, against a do-nothing server."""
    server = procs.Server("null", procs.null_argv(), os.path.join(work, "null.log"), server_cpus)
    small = {
        "bucket": "b",
        "size": SMALL,
        "duration": min(plan.duration, 2.0),
        "warmup": 0.2,
        "max_ops": plan.max_ops * 2,
        "concurrency": 64,
    }
    with server:
        put, get = procs.run_client(
            server,
            [{"op": "small_put", **small}, {"op": "small_get", "populate": False, **small}],
            cpus=client_cpus,
            timeout=120,
        )
    return {"put4k_c64": put, "get4k_c64": get}


# ---------------------------------------------------------------- report


def _get(d: dict[str, Any] | None, *path: str) -> float | None:
    for p in path:
        if not isinstance(d, dict) or p not in d:
            return None
        d = d[p]
    return d if isinstance(d, (int, float)) else None  # type: ignore[return-value]


# (label, unit, path into a suite result, target: min ratio, or None; higher is better)
ROWS: list[tuple[str, str, tuple[str, ...], float | None, bool]] = [
    ("4 KiB PUT, 16 conns", "ops/s", ("put4k_c16", "ops_per_s"), 0.5, True),
    ("4 KiB PUT, 64 conns", "ops/s", ("put4k_c64", "ops_per_s"), 0.5, True),
    ("4 KiB GET, 16 conns", "ops/s", ("get4k_c16", "ops_per_s"), 0.6, True),
    ("4 KiB GET, 64 conns", "ops/s", ("get4k_c64", "ops_per_s"), 0.6, True),
    ("4 KiB PUT p50, 64 conns", "ms", ("put4k_c64", "p50_ms"), None, False),
    ("4 KiB PUT p99, 64 conns", "ms", ("put4k_c64", "p99_ms"), None, False),
    ("4 KiB GET p50, 64 conns", "ms", ("get4k_c64", "p50_ms"), None, False),
    ("4 KiB GET p99, 64 conns", "ms", ("get4k_c64", "p99_ms"), None, False),
    ("{big} PUT, 1 stream", "MB/s", ("big_put", "mb_per_s"), 0.6, True),
    ("{big} GET, 1 stream", "MB/s", ("big_get", "mb_per_s"), 0.9, True),
    ("1 MiB range GET p50", "ms", ("range_get", "p50_ms"), None, False),
    ("1 MiB range GET p99", "ms", ("range_get", "p99_ms"), None, False),
    ("list {keys} keys", "ms", ("list", "seconds"), None, False),
    ("populate {keys} keys (32 conns)", "s", ("populate", "seconds"), None, False),
    ("start to first answer (median)", "ms", ("startup", "median_ms"), None, False),
]


def build_rows(results: dict[str, Any], plan: Plan) -> list[dict[str, Any]]:
    rows = []
    big = f"{plan.big // MiB} MiB" if plan.big != 1024 * MiB else "1 GiB"
    for label, unit, path, target, higher in ROWS:
        b = _get(results.get("baseline"), *path)
        s = _get(results.get("shoal"), *path)
        if path[0] == "list" and path[1] == "seconds":
            b, s = (None if b is None else b * 1e3), (None if s is None else s * 1e3)
        ratio = s / b if (s is not None and b) else None
        verdict = ""
        if target is not None:
            verdict = "PASS" if ratio is not None and ratio >= target else "SHORT"
        if path[0] == "startup":
            verdict = "PASS" if s is not None and s < 300 else "SHORT"
        rows.append(
            {
                "metric": label.format(big=big, keys=f"{plan.list_keys:,}"),
                "unit": unit,
                "baseline": b,
                "shoal": s,
                "ratio": ratio,
                "target": (
                    f">= {target:.1f}x"
                    if target is not None
                    else ("< 300 ms" if path[0] == "startup" else "")
                ),
                "verdict": verdict,
                "higher_is_better": higher,
            }
        )
    return rows


def print_table(rows: list[dict[str, Any]]) -> None:
    head = f"{'metric':34} {'unit':6} {'baseline':>10} {'shoal':>10} {'ratio':>7}  target"
    print(head)
    print("-" * len(head) + "-" * 10)
    for r in rows:
        ratio = "-" if r["ratio"] is None else f"{r['ratio']:.2f}"
        target = f"{r['target']} {r['verdict']}".strip()
        print(
            f"{r['metric']:34} {r['unit']:6} {fmt(r['baseline']):>10} {fmt(r['shoal']):>10} "
            f"{ratio:>7}  {target}"
        )


# (label, unit, path into a suite result) for the erasure-coded node's table
EC_ROWS: list[tuple[str, str, tuple[str, ...]]] = [
    ("4 KiB PUT, 16 conns", "ops/s", ("put4k_c16", "ops_per_s")),
    ("4 KiB GET, 16 conns", "ops/s", ("get4k_c16", "ops_per_s")),
    ("4 KiB PUT p50, 16 conns", "ms", ("put4k_c16", "p50_ms")),
    ("4 KiB GET p50, 16 conns", "ms", ("get4k_c16", "p50_ms")),
    ("{big} PUT, 1 stream", "MB/s", ("big_put", "mb_per_s")),
    ("{big} GET, 1 stream", "MB/s", ("big_get", "mb_per_s")),
]


def rss_growth(res: dict[str, Any] | None) -> tuple[int, int, int] | None:
    """(idle, peak, peak - idle) of a server's RSS over the big PUT and every big GET
    round: idle is read just before the PUT, the peak sampled every 50 ms during them."""
    idle = _get(res, "big_put", "rss_idle")
    peaks = [
        _get(res, k, "rss_peak_max") or _get(res, k, "rss_peak") for k in ("big_put", "big_get")
    ]
    if not idle or not all(peaks):
        return None
    peak = int(max(p or 0 for p in peaks))
    return int(idle), peak, peak - int(idle)


def erasure_memory(
    results: dict[str, Any], plan: Plan, name: str = "erasure"
) -> dict[str, Any] | None:
    """The erasure node's (or the cluster coordinator's) RSS during its big PUT and GET
    steps, judged by the standalone memory test's rule (bench/memory.py: growth under
    memory.LIMIT, the PUT stored, the GET complete), in the shape memory.describe()
    prints. Unlike that test's, the erasure node has run the 4 KiB loops first (a fresh
    node: `python bench/memory.py --erasure`)."""
    res = results.get(name) or {}
    grow = rss_growth(res)
    if grow is None:
        return None
    idle, peak, growth = grow
    put, get = res["big_put"], res["big_get"]
    samples = sum(
        int(_get(res, k, "rss_samples_total") or _get(res, k, "rss_samples") or 0)
        for k in ("big_put", "big_get")
    )
    return {
        "object_bytes": plan.big,
        "idle_rss": idle,
        "peak_rss": peak,
        "growth": growth,
        "samples": samples,
        "put": put,
        "get": get,
        "limit": memory.LIMIT,
        "pass": growth < memory.LIMIT and put.get("status") == 200 and get.get("bytes") == plan.big,
    }


# (label, unit, path into a suite result) for the cluster's table
CLUSTER_ROWS: list[tuple[str, str, tuple[str, ...]]] = [
    ("{big} PUT, 1 stream", "MB/s", ("big_put", "mb_per_s")),
    ("{big} GET, 1 stream", "MB/s", ("big_get", "mb_per_s")),
]


EC_NAMES = ("baseline", "shoal", "erasure")
EC_RATIOS = {"vs_shoal": "shoal", "vs_baseline": "baseline"}
EC_RSS = ("RSS growth, {big} PUT+GET", "erasure_memory")
CL_NAMES = ("baseline", "shoal", "erasure", "cluster")
CL_RATIOS = {"vs_erasure": "erasure", "vs_shoal": "shoal"}
CL_RSS = ("node 0 RSS growth, {big} PUT+GET", "cluster_memory")
#: the encrypting server's table: its figures beside standalone shoal's, same metrics as
#: the erasure node's
SSE_ROWS = [
    *EC_ROWS,
    ("server CPU, {big} PUT", "ms/MB", ("big_put", "cpu_ms_per_mb")),
    ("server CPU, {big} GET", "ms/MB", ("big_get", "cpu_ms_per_mb")),
]
SSE_NAMES = ("shoal", "sse")
SSE_RATIOS = {"vs_shoal": "shoal"}
SSE_RSS = ("RSS growth, {big} PUT+GET", "sse_memory")


def peer_rss_growth(res: dict[str, Any] | None) -> list[int] | None:
    """Per other node of the cluster: peak minus idle RSS over the big PUT and GET."""
    put, get = (res or {}).get("big_put") or {}, (res or {}).get("big_get") or {}
    idle, peaks = put.get("peer_rss_idle"), [put.get("peer_rss_peak"), get.get("peer_rss_peak")]
    if not idle or not all(peaks):
        return None
    return [max(p[i] for p in peaks if p) - idle[i] for i in range(len(idle))]


def side_rows(
    results: dict[str, Any],
    plan: Plan,
    specs: list[tuple[str, str, tuple[str, ...]]],
    names: tuple[str, ...],
    ratios: dict[str, str],
    rss: tuple[str, str],
) -> list[dict[str, Any]]:
    """Rows comparing the last of `names` (the erasure node, the cluster) with the
    servers before it: each metric per server, and its ratio to others (`ratios`: row key
    -> server), then its RSS growth over the big PUT and GET (idle read just before the
    PUT), judged by the memory test's limit (`rss`: row label, results key of the
    verdict)."""
    big = f"{plan.big // MiB} MiB" if plan.big != 1024 * MiB else "1 GiB"
    subject = names[-1]
    rows = []
    for label, unit, path in specs:
        values = {n: _get(results.get(n), *path) for n in names}
        x = values[subject]
        rows.append(
            {
                "metric": label.format(big=big),
                "unit": unit,
                **values,
                **{
                    k: x / values[o] if (x is not None and values[o]) else None
                    for k, o in ratios.items()
                },
                "target": "",
                "verdict": "",
                "higher_is_better": not unit.startswith("ms"),
            }
        )
    grow = {n: rss_growth(results.get(n)) for n in names}
    mem = results.get(rss[1])
    rows.append(
        {
            "metric": rss[0].format(big=big),
            "unit": "MiB",
            **{n: (None if g is None else g[2] / MiB) for n, g in grow.items()},
            **{k: None for k in ratios},
            "target": f"< {memory.LIMIT // MiB} MiB",
            "verdict": "" if mem is None else ("PASS" if mem["pass"] else "FAIL"),
            "higher_is_better": False,
        }
    )
    return rows


def print_side_table(
    rows: list[dict[str, Any]], names: tuple[str, ...], ratios: dict[str, str]
) -> None:
    """`ratios`: column heading -> row key."""
    head = f"{'metric':34} {'unit':6} " + " ".join(f"{n:>10}" for n in names)
    head += " " + " ".join(f"{h:>8}" for h in ratios) + "  target"
    print(head)
    print("-" * len(head) + "-" * 10)
    for r in rows:
        vs = ["-" if r[k] is None else f"{r[k]:.2f}" for k in ratios.values()]
        target = f"{r['target']} {r['verdict']}".strip()
        line = f"{r['metric']:34} {r['unit']:6} " + " ".join(f"{fmt(r[n]):>10}" for n in names)
        print(line + " " + " ".join(f"{v:>8}" for v in vs) + f"  {target}")


def notes(results: dict[str, Any], plan: Plan) -> list[str]:
    out = []
    meta = results["meta"]
    load = max(meta["loadavg_start"][0], meta.get("loadavg_end", (0,))[0])
    if load > 1.0:
        out.append(
            f"WARNING: load average was {meta['loadavg_start'][0]:.1f} at the start and "
            f"{meta.get('loadavg_end', (0,))[0]:.1f} at the end on "
            f"{meta['cpus']} CPUs: other processes shared the machine, figures are noisy"
        )
    ceiling = results.get("client_ceiling", {})
    cp, cg = _get(ceiling, "put4k_c64", "ops_per_s"), _get(ceiling, "get4k_c64", "ops_per_s")
    if cp and cg:
        out.append(
            f"client ceiling (do-nothing server, 64 conns): PUT {cp:,.0f} ops/s, "
            f"GET {cg:,.0f} ops/s"
        )
    for name in ("baseline", "shoal", "sse", "erasure", "cluster"):
        if name not in results:
            continue
        res = results.get(name) or {}
        scpu = [
            (k, _get(res, k, "server_cpu"))
            for k in ("put4k_c16", "put4k_c64", "get4k_c16", "get4k_c64", "big_put", "big_get")
        ]
        shown = ", ".join(f"{k} {v:.0%}" for k, v in scpu if v is not None)
        if shown:
            who = "cluster's 3 nodes together" if name == "cluster" else f"{name} server"
            out.append(f"{who} CPU use (all threads, 100% = one core): {shown}")
        cpu = [
            (k, _get(res, k, "client_cpu"))
            for k in ("put4k_c16", "put4k_c64", "get4k_c16", "get4k_c64", "big_put", "big_get")
        ]
        shown = ", ".join(f"{k} {v:.0%}" for k, v in cpu if v is not None)
        if shown:
            out.append(f"client CPU use vs {name}: {shown}")
        errs = {
            k: v.get("errors") or v.get("bad") or v.get("bad_length") or v.get("error")
            for k, v in res.items()
            if isinstance(v, dict)
        }
        errs = {k: v for k, v in errs.items() if v}
        if errs:
            out.append(f"ERRORS from {name}: {errs}")
        spread = [
            f"{k} " + "/".join(f"{v:,.0f}" for v in res[k]["rounds"])
            for k in ("put4k_c16", "put4k_c64", "get4k_c16", "get4k_c64", "big_get")
            if isinstance(res.get(k), dict) and "rounds" in res[k]
        ]
        if spread:
            out.append(f"{name} rounds (median kept): " + ", ".join(spread))
        grow = rss_growth(res)
        if grow is not None:
            out.append(
                f"{name} {'node 0 ' if name == 'cluster' else ''}RSS during the big "
                f"transfers: idle {grow[0] / MiB:.0f} MiB, "
                f"peak growth {grow[2] / MiB:.1f} MiB"
            )
        peers = peer_rss_growth(res)
        if peers is not None:
            out.append(
                "cluster's other nodes, RSS growth during the big transfers: "
                + ", ".join(f"node{i + 1} {g / MiB:.1f} MiB" for i, g in enumerate(peers))
            )
        if "error" in res:
            out.append(f"{name} FAILED: {res['error']}")
    paired = []
    for k in ("put4k_c16", "put4k_c64", "get4k_c16", "get4k_c64"):
        b = (results.get("baseline") or {}).get(k, {}).get("rounds")
        s = (results.get("shoal") or {}).get(k, {}).get("rounds")
        if b and s and len(b) == len(s) and all(b):
            ratios = sorted(x / y for x, y in zip(s, b, strict=True))
            paired.append(f"{k} {ratios[len(ratios) // 2]:.2f}")
    if paired:
        out.append("median of per-round (back-to-back) shoal/baseline ratios: " + ", ".join(paired))
    for other in ("sse", "erasure"):
        paired = []
        for k in ("put4k_c16", "get4k_c16", "big_get"):
            e = (results.get(other) or {}).get(k, {}).get("rounds")
            s = (results.get("shoal") or {}).get(k, {}).get("rounds")
            if e and s and len(e) > 1 and len(s) >= len(e) and all(s):
                # It ran the first len(e) rounds, each next to shoal's.
                ratios = sorted(x / y for x, y in zip(e, s[: len(e)], strict=True))
                paired.append(f"{k} {ratios[len(ratios) // 2]:.2f}")
        if paired:
            out.append(
                f"median of per-round (back-to-back) {other}/shoal ratios: " + ", ".join(paired)
            )
    c = (results.get("cluster") or {}).get("big_get", {}).get("rounds")
    paired = []
    for other in ("erasure", "shoal"):
        o = (results.get(other) or {}).get("big_get", {}).get("rounds")
        if c and o and len(c) > 1 and len(o) >= len(c) and all(o):
            ratios = sorted(x / y for x, y in zip(c, o[: len(c)], strict=True))
            paired.append(f"cluster/{other} {ratios[len(ratios) // 2]:.2f}")
    if paired:
        out.append("median of per-round (back-to-back) big GET ratios: " + ", ".join(paired))
    return out


# ---------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    """`make bench`: issue 17's table (bench/table.py); with `--detailed`, the older
    side-by-side suite below (its own client, SSE server, memory test)."""
    args_in = list(sys.argv[1:] if argv is None else argv)
    if "--detailed" not in args_in:
        import table

        return table.main(args_in)
    args_in.remove("--detailed")
    return detailed(args_in)


def detailed(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="run.py --detailed", description="shoal vs. a minimal uvicorn baseline"
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="one round of 2 s loops, 256 MiB big object, fewer range reads",
    )
    parser.add_argument(
        "--no-pin",
        action="store_true",
        help="don't pin the server and the client to separate cores",
    )
    parser.add_argument("--skip-memory", action="store_true", help="skip the memory test")
    parser.add_argument(
        "--skip-erasure-node", action="store_true", help="don't measure the erasure-coded node"
    )
    parser.add_argument(
        "--skip-cluster", action="store_true", help="don't measure the 3-node cluster"
    )
    parser.add_argument(
        "--skip-sse", action="store_true", help="don't measure the encrypting (SSE-S3) shoal"
    )
    parser.add_argument(
        "--only",
        choices=["shoal", "baseline", "erasure", "erasure-node", "cluster", "sse"],
        help="measure one server (no ratios); or only the erasure-coding "
        "throughput (bench/erasure.py); or only the erasure-coded node "
        "with standalone shoal and the baseline beside it (its steps "
        "only, --quick or not); or only the 3-node cluster with the "
        "erasure node and standalone shoal beside it (its big PUT and "
        "GET only); or only the encrypting (SSE-S3) shoal with "
        "standalone shoal beside it (its steps only)",
    )
    parser.add_argument(
        "--json",
        default=os.path.join(procs.BENCH_DIR, "results.json"),
        help="where to write the figures (default bench/results.json)",
    )
    args = parser.parse_args(argv)
    if args.only == "erasure":
        import erasure

        return erasure.main(["--quick"] if args.quick else [])
    plan = QUICK if args.quick else FULL
    ec_only = args.only == "erasure-node"
    cl_only = args.only == "cluster"
    sse_only = args.only == "sse"
    only_steps = (
        ERASURE_STEPS if ec_only else CLUSTER_STEPS if cl_only else SSE_STEPS if sse_only else None
    )
    if only_steps:  # every server gets the erasure node's (and cluster's) rounds
        plan = dataclasses.replace(plan, rounds=plan.ec_rounds)
    server_cpus, client_cpus = procs.cpu_plan(not args.no_pin)

    try:
        with procs.scratch("shoal-bench-") as (work, log):
            results: dict[str, Any] = {
                "meta": {
                    "mode": "quick" if args.quick else "full",
                    "python": platform.python_version(),
                    "cpus": os.cpu_count(),
                    "server_cpus": sorted(server_cpus) if server_cpus else None,
                    "client_cpus": sorted(client_cpus) if client_cpus else None,
                    "work_dir": work,
                    "plan": plan.__dict__,
                    "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                    "loadavg_start": os.getloadavg(),
                }
            }
            servers = {
                "baseline": functools.partial(procs.file_server_argv, "baseline"),
                "shoal": procs.shoal_argv,
                # The erasure node's drives are folders under its data directory (which
                # it doesn't otherwise use).
                "erasure": procs.shoal_argv,
                # Started exactly like "shoal", plus a keyring (procs.sse_env()).
                "sse": procs.shoal_argv,
            }
            if args.only in ("shoal", "baseline"):
                names = [args.only]
            elif cl_only:
                names = ["shoal", "erasure", "cluster"]
            elif ec_only:
                names = ["baseline", "shoal", "erasure"]
            elif sse_only:
                names = ["shoal", "sse"]
            else:
                names = (
                    ["baseline", "shoal"]
                    + ([] if args.skip_sse else ["sse"])
                    + ([] if args.skip_erasure_node else ["erasure"])
                    + ([] if args.skip_cluster else ["cluster"])
                )
            log("client ceiling against a do-nothing server")
            results["client_ceiling"] = client_ceiling(work, plan, client_cpus, server_cpus)
            running: list[AnyServer] = []
            for name in names:
                data = os.path.join(work, f"data-{name}")
                os.makedirs(data)
                log(f"{name}: starting")
                server: AnyServer
                if name == "cluster":
                    # Its 3 nodes all run on the server's core set (the same CPU budget as
                    # the single erasure node); each holds 2 of the 6 drives.
                    server = procs.ClusterServer(name, data, work, server_cpus)
                else:
                    env = (
                        procs.erasure_env(data)
                        if name == "erasure"
                        else procs.sse_env()
                        if name == "sse"
                        else None
                    )
                    server = procs.Server(
                        name,
                        servers[name](data),
                        os.path.join(work, f"{name}.log"),
                        server_cpus,
                        env=env,
                    )
                try:
                    running.append(server.start())
                    results[name] = {}
                    if name in ("erasure", "cluster"):
                        info = cluster_info(server)
                        results[name]["cluster"] = info
                        if info.get("mode") != "erasure":
                            raise RuntimeError(f"not an erasure-coded node: {info}")
                    if name == "cluster":
                        log(
                            f"cluster: formed, {len(info.get('nodes') or [])} nodes alive, node 0 "
                            f"at {server.host}:{server.port}"
                        )
                except (RuntimeError, OSError, ValueError) as e:
                    log(f"{name}: FAILED to start: {e}")
                    results[name] = {"error": str(e)}
            for i, (step, fn, rounds) in enumerate(steps(plan)):
                if only_steps and step not in only_steps:
                    continue
                per_server: dict[str, list[dict[str, Any]]] = {}
                for rnd in range(rounds):
                    # Take turns (and alternate who goes first), so drifts in background
                    # load hit both servers alike.
                    for server in running if (i + rnd) % 2 == 0 else running[::-1]:
                        if "error" in results[server.name]:
                            continue
                        limited = LIMITED_STEPS.get(server.name)
                        if limited and (step not in limited or rnd >= plan.ec_rounds):
                            continue
                        log(
                            f"{server.name}: {step}"
                            + (f" (round {rnd + 1}/{rounds})" if rounds > 1 else "")
                        )

                        def client(
                            ops: list[dict[str, Any]],
                            timeout: float = 300,
                            server: AnyServer = server,
                            **kw: Any,
                        ) -> list[dict[str, Any]]:
                            # A cluster's CPU is its nodes' together.
                            def cpu() -> float:
                                return sum(procs.cpu_times(server.pids))

                            cpu0, t0 = cpu(), time.perf_counter()
                            out = procs.run_client(
                                server, ops, cpus=client_cpus, timeout=timeout, **kw
                            )
                            busy = cpu() - cpu0
                            # Includes the client's ~0.1 s start-up, so slightly low.
                            for o in out:
                                o["server_cpu"] = busy / (time.perf_counter() - t0)
                                o["server_cpu_seconds"] = busy  # of all `ops` together
                            return out

                        try:
                            r = fn(server, client)
                        except RuntimeError as e:
                            log(f"{server.name}: {step} FAILED: {e}")
                            r = {"error": str(e)}
                            if step == "buckets":
                                results[server.name]["error"] = str(e)
                        if r is not None:
                            per_server.setdefault(server.name, []).append(r)
                for name, rs in per_server.items():
                    results[name][step] = pick_median(rs)
            log("stopping the servers")
            for server in running:
                server.stop()
            if "erasure" in results:
                results["erasure_memory"] = erasure_memory(results, plan)
            if "cluster" in results:
                results["cluster_memory"] = erasure_memory(results, plan, "cluster")
            if "sse" in results:
                results["sse_memory"] = erasure_memory(results, plan, "sse")
                probe = _probe(results, "sse")
                if probe:
                    log("sse: looking for its big object's plaintext on disk (and shoal's)")
                    results["sse_check"] = plaintext.check(
                        os.path.join(work, "data-sse"),
                        probe,
                        os.path.join(work, "data-shoal") if _probe(results, "shoal") else None,
                        _probe(results, "shoal"),
                    )
            times: dict[str, list[float]] = {
                n: []
                for n in names
                if "error" not in results[n] and n not in LIMITED_STEPS and not only_steps
            }
            if times:
                log(f"start to first answer, {plan.startups} times each (alternating)")
            for _ in range(plan.startups):
                for name in times:
                    port = procs.free_port()
                    t = startup_once(
                        servers[name](os.path.join(work, f"data-{name}"), port), port, server_cpus
                    )
                    if t is not None:
                        times[name].append(t * 1e3)
            for name, ts in times.items():
                results[name]["startup"] = {
                    "median_ms": statistics.median(ts) if ts else None,
                    "all_ms": ts,
                    "failed": plan.startups - len(ts),
                }
            for name in names:
                log(f"{name}: removing the data")
                shutil.rmtree(os.path.join(work, f"data-{name}"), ignore_errors=True)
            if not args.skip_memory and "shoal" in names and not only_steps:
                log(f"memory test: {plan.big // MiB} MiB PUT + GET through a fresh shoal")
                try:
                    results["memory"] = memory.run_memory_test(work, plan.big, pin=not args.no_pin)
                except RuntimeError as e:
                    results["memory"] = {"error": str(e)}
    except KeyboardInterrupt:
        print("bench: interrupted; servers stopped", file=sys.stderr)
        return 130

    log("done")
    results["meta"]["loadavg_end"] = os.getloadavg()
    rows = build_rows(results, plan)
    results["rows"] = rows
    print()
    print(
        f"shoal benchmark ({results['meta']['mode']}; server on CPU "
        f"{results['meta']['server_cpus']}, client on CPU {results['meta']['client_cpus']})"
    )
    print(
        "baseline = minimal ASGI app on the same uvicorn settings (uvloop, httptools, "
        "1 worker); its PUT writes a temp file, fsyncs it, renames it into place and "
        "fsyncs the directory, i.e. the same durability shoal promises (shoal also "
        "fsyncs a metadata record and computes MD5). Ratio = shoal / baseline."
    )
    print()
    if not only_steps:
        print_table(rows)
        print()
    if "memory" in results:
        mem = results["memory"]
        print(memory.describe(mem) if "error" not in mem else f"memory test FAILED: {mem['error']}")
    if "erasure" in results and not cl_only:
        ec = results["erasure"]
        layout = (ec.get("cluster") or {}).get("erasure") or {}
        drives = sum(len(s) for s in (ec.get("cluster") or {}).get("sets", [])) or procs.EC_DRIVES
        results["erasure_rows"] = ec_rows = side_rows(
            results, plan, EC_ROWS, EC_NAMES, EC_RATIOS, EC_RSS
        )
        print()
        print(
            f"erasure-coded node: one shoal with cluster.enabled over {drives} drive folders, "
            f"{layout.get('data_shards', '?')} data + {layout.get('parity_shards', '?')} "
            f"parity shards ({layout.get('backend', '?')}), default chunk size; measured in "
            f"the first {plan.ec_rounds} round(s) of the same steps, taking turns with the "
            "others. ec/shoal = erasure / standalone shoal, ec/base = erasure / baseline."
        )
        if "error" in ec:
            print("erasure node FAILED (see below)")
        print()
        print_side_table(ec_rows, EC_NAMES, {"ec/shoal": "vs_shoal", "ec/base": "vs_baseline"})
        print()
        mem = results.get("erasure_memory")
        if mem is not None:
            print(memory.describe(mem, name="erasure node, its big PUT and GET steps above"))
    if "sse" in results and not (ec_only or cl_only):
        results["sse_rows"] = sse_rows = side_rows(
            results, plan, SSE_ROWS, SSE_NAMES, SSE_RATIOS, SSE_RSS
        )
        print()
        print(
            "encrypting shoal (sse): standalone shoal started the same way plus a one-key "
            "keyring (a fresh random key), its bucket's default encryption SSE-S3 (AES256), "
            f"so every object is sealed with AES-256-GCM; measured in the first "
            f"{plan.ec_rounds} round(s) of the same steps, taking turns with the others. "
            "sse/shoal = sse / standalone shoal."
        )
        if "error" in results["sse"]:
            print("sse server FAILED (see below)")
        print()
        print_side_table(sse_rows, SSE_NAMES, {"sse/shoal": "vs_shoal"})
        print()
        mem = results.get("sse_memory")
        if mem is not None:
            print(memory.describe(mem, name="sse, its big PUT and GET steps above"))
        print(describe_check(results.get("sse_check")))
    if "cluster" in results:
        cl = results["cluster"]
        layout = (cl.get("cluster") or {}).get("erasure") or {}
        results["cluster_rows"] = cl_rows = side_rows(
            results, plan, CLUSTER_ROWS, CL_NAMES, CL_RATIOS, CL_RSS
        )
        print()
        print(
            f"3-node cluster: {procs.CLUSTER_NODES} shoal node processes joined by QUIC, "
            f"{procs.CLUSTER_DRIVES} drive folders each, "
            f"{layout.get('data_shards', '?')} data + {layout.get('parity_shards', '?')} "
            f"parity shards over the {procs.CLUSTER_NODES * procs.CLUSTER_DRIVES} drives, "
            "default chunk size; all nodes on the server's CPU set. The client talks to "
            f"node 0; measured in the first {plan.ec_rounds} round(s) of the big PUT and "
            "GET, taking turns with the others. cl/ec = cluster / erasure node, "
            "cl/shoal = cluster / standalone shoal."
        )
        if "error" in cl:
            print("cluster FAILED (see below)")
        print()
        print_side_table(cl_rows, CL_NAMES, {"cl/ec": "vs_erasure", "cl/shoal": "vs_shoal"})
        print()
        mem = results.get("cluster_memory")
        if mem is not None:
            print(memory.describe(mem, name="cluster node 0, its big PUT and GET steps above"))
    for line in notes(results, plan):
        print(line)
    with open(args.json, "w") as f:
        json.dump(results, f, indent=2)
    print(f"\nfigures written to {os.path.relpath(args.json)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
