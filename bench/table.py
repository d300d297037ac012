"""`make bench`: issue 17's table, every row a ratio measured in the same run.

It measures what the outside harness measures: a wrk-like load generator
(bench/loadgen.c: keep-alive connections, each sending its next request as soon as the
last answer is in) over 1,000 random 4 KiB keys, against a raw ASGI file server
(bench/rawasgi.py: uvicorn + uvloop + httptools, blocking reads on the loop, no
fsync) and shoal exactly as the README's production line starts it (uvicorn serving
`shoal:create_app --factory` with deploy/shoal.service's flags and environment: auth
on, JSON access log on); 4 KiB PUTs are compared with the durable baseline
(bench/baseline.py: temp file, fsync, rename, fsync of the directory). Then an
erasure-coded node (the same start line plus 6 drive folders, 4+2) against standalone
shoal, and 3-node clusters (16384- and 1452-byte QUIC datagrams) against the erasure
node. Servers take turns in each step, so drifting background load hits them alike;
each row prints the 1-minute load average of its measurement beside it.

`python bench/table.py [--quick] [--only PART] [--pin]`; bench/README.md says what each
row is.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import statistics
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import procs
import wrk
from sigv4 import Credentials, request_bytes

MiB = 1 << 20
SMALL = 4096
HOST = "127.0.0.1"


@dataclass(frozen=True)
class Plan:
    """How long and how big: every loop is bounded by these."""

    duration: float  # seconds of each 4 KiB loop, after `warmup`
    warmup: float
    rounds: int  # rounds of the 4 KiB loops (servers take turns; the median is kept)
    big: int  # bytes of the standalone / erasure node big object
    big_rounds: int
    cluster_big: int  # bytes of the cluster rows' object
    keys: int  # distinct 4 KiB keys the loops pick from at random
    list_keys: int
    ranges: int  # 1 MiB range GETs for the p50
    startups: int
    max_ops: int  # per loop


FULL = Plan(3.0, 0.5, 3, 1024 * MiB, 2, 256 * MiB, 1000, 10_000, 200, 5, 1_000_000)
QUICK = Plan(2.0, 0.3, 1, 256 * MiB, 1, 64 * MiB, 1000, 2_000, 100, 3, 1_000_000)

#: --only choices and the servers each needs.
PARTS: dict[str, tuple[str, ...]] = {
    "standalone": ("raw", "durable", "shoal"),
    "startup": ("raw", "shoal"),
    "erasure": ("shoal", "erasure"),
    "cluster": ("erasure", "cluster", "cluster1452"),
}
SIGNED = ("shoal", "erasure", "cluster", "cluster1452")


# ---------------------------------------------------------------- rows


@dataclass(frozen=True)
class Ref:
    """Where a figure is in the results: server, step, field."""

    server: str
    step: str
    field: str = "ops_per_s"


@dataclass(frozen=True)
class Row:
    """One row: `num` over `den` (if any); the target is a least ratio (`min_ratio`)
    or a most value of `num` (`max_value`, in `unit`)."""

    label: str
    unit: str
    num: Ref
    den: Ref | None = None
    min_ratio: float | None = None
    max_value: float | None = None
    part: str = "standalone"
    scale: float = 1.0  # multiplies the figures (seconds -> ms)


def rows_for(plan: Plan) -> list[Row]:
    big, cl = size_label(plan.big), size_label(plan.cluster_big)
    keys = f"{plan.list_keys:,}"
    # The listing targets are for 10,000 keys; --quick lists fewer, against the same
    # time per key.
    per = plan.list_keys / 10_000
    pages = -(-plan.list_keys // 1000)
    out = [
        Row(
            "standalone 4 KiB GET c16 vs raw ASGI",
            "ops/s",
            Ref("shoal", "get_c16"),
            Ref("raw", "get_c16"),
            min_ratio=0.6,
        ),
        Row(
            "standalone 4 KiB GET c64 vs raw ASGI",
            "ops/s",
            Ref("shoal", "get_c64"),
            Ref("raw", "get_c64"),
            min_ratio=0.6,
        ),
        Row(
            "standalone 4 KiB PUT c16 vs durable",
            "ops/s",
            Ref("shoal", "put_c16"),
            Ref("durable", "put_c16"),
            min_ratio=0.6,
        ),
        Row(
            f"standalone {big} GET vs raw ASGI",
            "MB/s",
            Ref("shoal", "big_get", "mb_per_s"),
            Ref("raw", "big_get", "mb_per_s"),
            min_ratio=0.9,
        ),
        Row(
            f"standalone {big} PUT vs raw ASGI",
            "MB/s",
            Ref("shoal", "big_put", "mb_per_s"),
            Ref("raw", "big_put", "mb_per_s"),
            min_ratio=0.6,
        ),
        Row(
            "standalone start to first answer",
            "ms",
            Ref("shoal", "startup", "median_ms"),
            Ref("raw", "startup", "median_ms"),
            max_value=300,
            part="startup",
        ),
        Row(
            f"list {keys} keys ({pages} pages)",
            "ms",
            Ref("shoal", "list", "seconds"),
            max_value=300 * per,
            scale=1e3,
        ),
        Row(
            "erasure 4 KiB PUT c16 vs standalone",
            "ops/s",
            Ref("erasure", "put_c16"),
            Ref("shoal", "put_c16"),
            min_ratio=0.5,
            part="erasure",
        ),
        Row(
            "erasure 4 KiB GET c16 vs standalone",
            "ops/s",
            Ref("erasure", "get_c16"),
            Ref("shoal", "get_c16"),
            min_ratio=0.6,
            part="erasure",
        ),
        Row(
            f"erasure {big} PUT vs standalone",
            "MB/s",
            Ref("erasure", "big_put", "mb_per_s"),
            Ref("shoal", "big_put", "mb_per_s"),
            min_ratio=0.7,
            part="erasure",
        ),
        Row(
            f"erasure {big} GET vs standalone",
            "MB/s",
            Ref("erasure", "big_get", "mb_per_s"),
            Ref("shoal", "big_get", "mb_per_s"),
            min_ratio=0.8,
            part="erasure",
        ),
        Row(
            f"erasure list {keys} keys",
            "ms",
            Ref("erasure", "list", "seconds"),
            Ref("shoal", "list", "seconds"),
            max_value=600 * per,
            part="erasure",
            scale=1e3,
        ),
        Row(
            "erasure 1 MiB range GET p50",
            "ms",
            Ref("erasure", "range_get", "p50_ms"),
            Ref("shoal", "range_get", "p50_ms"),
            max_value=2,
            part="erasure",
        ),
    ]
    for name, den, target, what in (
        ("cluster", "erasure", 0.7, "vs erasure node"),
        ("cluster1452", "cluster", 0.8, "vs 16384"),
    ):
        label = "cluster" if name == "cluster" else "cluster (1452)"
        out += [
            Row(
                f"{label} {cl} PUT {what}",
                "MB/s",
                Ref(name, "cl_put", "mb_per_s"),
                Ref(den, "cl_put", "mb_per_s"),
                min_ratio=None if den == "erasure" else target,
                part="cluster",
            ),
            Row(
                f"{label} {cl} GET x1 {what}",
                "MB/s",
                Ref(name, "cl_get1", "mb_per_s"),
                Ref(den, "cl_get1", "mb_per_s"),
                min_ratio=target,
                part="cluster",
            ),
            Row(
                f"{label} {cl} GET x4 {what}",
                "MB/s",
                Ref(name, "cl_get4", "mb_per_s"),
                Ref(den, "cl_get4", "mb_per_s"),
                min_ratio=target,
                part="cluster",
            ),
        ]
    return out


def size_label(n: int) -> str:
    return f"{n // (1024 * MiB)} GiB" if n % (1024 * MiB) == 0 else f"{n // MiB} MiB"


def figure(results: dict[str, Any], ref: Ref) -> tuple[float | None, float | None]:
    """(value, load average when measured) of `ref`, or None where it is missing."""
    step = (results.get(ref.server) or {}).get(ref.step)
    if not isinstance(step, dict) or "error" in step:
        return None, None
    value = step.get(ref.field)
    load = step.get("load1")
    return (float(value) if isinstance(value, (int, float)) else None), load


def build_rows(results: dict[str, Any], plan: Plan, parts: set[str]) -> list[dict[str, Any]]:
    """Each row of `parts` with its figures, ratio, target, verdict and load."""
    out = []
    for row in rows_for(plan):
        if row.part not in parts:
            continue
        num, load_n = figure(results, row.num)
        den, load_d = (None, None) if row.den is None else figure(results, row.den)
        num = None if num is None else num * row.scale
        den = None if den is None else den * row.scale
        ratio = num / den if (num is not None and den) else None
        if row.min_ratio is not None:
            target = f">= {row.min_ratio:g}"
            ok = ratio is not None and ratio >= row.min_ratio
        elif row.max_value is not None:
            target = f"< {row.max_value:g} {row.unit}"
            ok = num is not None and num < row.max_value
        else:
            target, ok = "", None
        loads = [x for x in (load_n, load_d) if x is not None]
        out.append(
            {
                "what": row.label,
                "unit": row.unit,
                "value": num,
                "reference": den,
                "ratio": ratio,
                "target": target,
                "verdict": "" if ok is None else ("PASS" if ok else "SHORT"),
                "load": max(loads) if loads else None,
                "higher_is_better": row.max_value is None,
            }
        )
    return out


def fmt(v: float | None) -> str:
    if v is None:
        return "-"
    if v >= 1000:
        return f"{v:,.0f}"
    if v >= 10:
        return f"{v:.1f}"
    return f"{v:.2f}"


def render(rows: list[dict[str, Any]]) -> list[str]:
    """The table as text lines."""
    head = f"{'what':46} {'unit':5} {'value':>9} {'vs':>9} {'ratio':>6}  {'target':12} {'':5} load"
    lines = [head, "-" * len(head)]
    for r in rows:
        ratio = "-" if r["ratio"] is None else f"{r['ratio']:.2f}"
        load = "-" if r["load"] is None else f"{r['load']:.2f}"
        lines.append(
            f"{r['what']:46} {r['unit']:5} {fmt(r['value']):>9} {fmt(r['reference']):>9} "
            f"{ratio:>6}  {r['target']:12} {r['verdict']:5} {load}"
        )
    return lines


def median_round(rounds: list[dict[str, Any]], key: str) -> dict[str, Any]:
    """The round with the median `key` (the lower middle one), every round's figure
    attached as `rounds`."""
    good = [r for r in rounds if isinstance(r.get(key), (int, float))]
    if not good:
        return rounds[-1]
    ordered = sorted(good, key=lambda r: r[key])
    return {**ordered[(len(ordered) - 1) // 2], "rounds": [r[key] for r in good]}


# ---------------------------------------------------------------- servers


@dataclass
class Target:
    """A running server the steps talk to."""

    name: str
    server: procs.Server | procs.ClusterServer
    creds: Credentials | None
    results: dict[str, Any] = field(default_factory=dict)

    @property
    def port(self) -> int:
        return self.server.port

    @property
    def host_header(self) -> str:
        return f"{HOST}:{self.port}"

    @property
    def auth(self) -> dict[str, str] | None:
        c = self.creds
        return None if c is None else {"access_key": c.access_key, "secret": c.secret}


def start_server(
    name: str, work: str, creds: Credentials, cpus: set[int] | None, workers: int = 1
) -> Target:
    """Start `name` in its own folder under `work`; `workers` > 1: the standalone server
    as README "Several workers" runs it (uvicorn's WEB_CONCURRENCY, metrics in
    prometheus-client's multiprocess mode)."""
    data = os.path.join(work, f"data-{name}")
    os.makedirs(data, exist_ok=True)
    log = os.path.join(work, f"{name}.log")
    env = {
        "SHOAL_AUTH__ENABLED": "true",
        "SHOAL_AUTH__CREDENTIALS": f"{creds.access_key}:{creds.secret}",
    }
    server: procs.Server | procs.ClusterServer
    if name == "raw":
        server = procs.Server(name, procs.file_server_argv("rawasgi", data), log, cpus)
    elif name == "durable":
        server = procs.Server(name, procs.file_server_argv("baseline", data), log, cpus)
    elif name in ("shoal", "erasure"):
        port = procs.free_port()
        env = procs.production_env(data, creds.secret, procs.free_port())
        if name == "erasure":
            env.update(procs.erasure_env(data))
        if workers > 1:
            metrics = os.path.join(work, f"prometheus-{name}")
            os.makedirs(metrics, exist_ok=True)
            env.update(WEB_CONCURRENCY=str(workers), PROMETHEUS_MULTIPROC_DIR=metrics)
        server = procs.Server(
            name, procs.production_argv(port), log, cpus, env=env, probe_port=port
        )
    else:
        extra = "max_datagram_size = 1452\n" if name == "cluster1452" else ""
        server = procs.ClusterServer(
            name, data, work, cpus, cluster_toml=extra, env=env, auth=creds
        )
    server.start()
    target = Target(name, server, None if name in ("raw", "durable") else creds)
    if name == "erasure":
        info = procs.cluster_status(HOST, server.port, creds)
        if info.get("mode") != "erasure":
            raise RuntimeError(f"erasure: not an erasure-coded node: {info}")
    return target


# ---------------------------------------------------------------- steps


class Bench:
    """The steps, each run against the servers that take part, taking turns."""

    def __init__(
        self, plan: Plan, work: str, client_cpus: set[int] | None, log: Callable[[str], None]
    ) -> None:
        self.plan = plan
        self.work = work
        self.cpus = client_cpus
        self.log = log
        self.loadgen = wrk.build(work)

    def client(
        self, t: Target, ops: list[dict[str, Any]], timeout: float = 900
    ) -> list[dict[str, Any]]:
        out = procs.run_client(t.server, ops, cpus=self.cpus, timeout=timeout, auth=t.auth)
        for o in out:
            if "error" in o:
                raise RuntimeError(o["error"])
        return out

    def record(self, t: Target, step: str, result: dict[str, Any]) -> None:
        result["load1"] = os.getloadavg()[0]
        t.results.setdefault(step, []).append(result)

    def buckets(self, t: Target) -> None:
        for b in ("bench", "lst"):
            (r,) = self.client(t, [{"op": "bucket", "bucket": b}], timeout=60)
            if r.get("status") != 200:
                raise RuntimeError(f"{t.name}: cannot create bucket {b}: {r}")

    def requests_file(
        self, t: Target, name: str, method: str, bucket: str, keys: list[str], body: bytes = b""
    ) -> str:
        """Signed now: a loop starts right after, well within the 15 minutes allowed."""
        path = os.path.join(self.work, f"{t.name}-{name}.req")
        wrk.write_requests(
            path, wrk.small_requests(method, t.host_header, bucket, keys, body, t.creds)
        )
        return path

    def keys(self) -> list[str]:
        return [wrk.key_name("s", i) for i in range(self.plan.keys)]

    def populate(
        self, t: Target, bucket: str, keys: list[str], size: int, conns: int
    ) -> dict[str, Any]:
        path = self.requests_file(t, f"pop-{bucket}", "PUT", bucket, keys, os.urandom(size))
        r = wrk.run(
            self.loadgen, HOST, t.port, path, conns=conns, duration=600, once=True, cpus=self.cpus
        )
        if r["ok"] != len(keys):
            raise RuntimeError(f"{t.name}: populate stored {r['ok']} of {len(keys)}: {r}")
        return r

    def small_loop(self, t: Target, method: str, conns: int, rnd: int) -> dict[str, Any]:
        body = os.urandom(SMALL) if method == "PUT" else b""
        path = self.requests_file(t, f"{method}{conns}", method, "bench", self.keys(), body)
        r = with_server_cpu(
            t.server.pids,
            self.plan.warmup,
            lambda: wrk.run(
                self.loadgen,
                HOST,
                t.port,
                path,
                conns=conns,
                duration=self.plan.duration,
                warmup=self.plan.warmup,
                max_ops=self.plan.max_ops,
                expect_body=SMALL if method == "GET" else -1,
                cpus=self.cpus,
                seed=rnd + 1,
            ),
        )
        if r["errors"] or r["bad_length"]:
            r["error"] = (
                f"{r['errors']} errors {r['error_statuses']}, {r['bad_length']} bad lengths"
            )
        return r

    def big(self, t: Target, op: str, key: str, size: int, parallel: int = 1) -> dict[str, Any]:
        spec = {"op": op, "bucket": "bench", "key": key, "size": size, "timeout": 850}
        if op == "big_get":
            spec["parallel"] = parallel
        (r,) = self.client(t, [spec])
        if r.get("status") != 200 or (op == "big_get" and r.get("bytes") != size):
            r["error"] = f"{op} answered {r.get('status')}, {r.get('bytes')} of {size} bytes"
        return r

    def list_keys(self, t: Target) -> dict[str, Any]:
        (r,) = self.client(
            t, [{"op": "list", "bucket": "lst", "style": "s3", "repeat": 3, "max_seconds": 10}]
        )
        if r.get("keys") != self.plan.list_keys:
            r["error"] = f"listed {r.get('keys')} of {self.plan.list_keys} keys"
        return r

    def range_get(self, t: Target) -> dict[str, Any]:
        spec = {
            "op": "range_get",
            "bucket": "bench",
            "key": "big",
            "object_size": self.plan.big,
            "count": self.plan.ranges,
            "max_seconds": 30,
        }
        (r,) = self.client(t, [spec])
        if r.get("bad"):
            r["error"] = f"{r['bad']} range answers were wrong"
        return r

    def turns(
        self,
        step: str,
        targets: list[Target],
        rounds: int,
        fn: Callable[[Target, int], dict[str, Any]],
        key: str,
    ) -> None:
        """Run `fn` on every target, `rounds` times, alternating who goes first; keep the
        median round."""
        if not targets:
            return
        for rnd in range(rounds):
            order = targets if rnd % 2 == 0 else targets[::-1]
            for t in order:
                self.log(
                    f"{t.name}: {step}" + (f" (round {rnd + 1}/{rounds})" if rounds > 1 else "")
                )
                try:
                    r = fn(t, rnd)
                except (RuntimeError, OSError) as e:
                    r = {"error": str(e)}
                self.record(t, step, r)
                if "error" in r:
                    self.log(f"{t.name}: {step}: {r['error']}")
        for t in targets:
            t.results[step] = median_round(t.results.pop(step), key)


def with_server_cpu(
    pids: list[int], warmup: float, run: Callable[[], dict[str, Any]]
) -> dict[str, Any]:
    """`run()`'s result with the server's CPU per request over the loop's measured part
    (from the end of its warm-up) as `server_us`: {"user", "system"} microseconds. A
    small request's ratio does not say whether its time goes to Python or to the kernel
    (file system, thread hand-offs); these figures do, beside the baselines' own."""
    start: list[tuple[float, tuple[float, float]]] = []

    def begin() -> None:
        start.append((time.perf_counter(), procs.cpu_times(pids)))

    timer = threading.Timer(warmup, begin) if warmup > 0 else None
    if timer is None:
        begin()
    else:
        timer.start()
    try:
        r = run()
    finally:
        if timer is not None:
            timer.cancel()
            timer.join()  # a sample under way is finished before `start` is read
    end, (user, system) = time.perf_counter(), procs.cpu_times(pids)
    ops = r.get("ops_per_s")
    if start and ops:
        t0, (user0, system0) = start[0]
        if user >= user0 and system >= system0:  # else a server process ended meanwhile
            per_op = 1e6 / (ops * (end - t0))
            r["server_us"] = {
                "user": (user - user0) * per_op,
                "system": (system - system0) * per_op,
            }
    return r


def startup_ms(name: str, work: str, creds: Credentials, cpus: set[int] | None) -> float | None:
    """Spawn → first HTTP answer (any status) on a port chosen beforehand, on the data
    directory the run left behind; None if it never answers within 20 s."""
    data = os.path.join(work, f"data-{name}")
    port = procs.free_port()
    if name == "raw":
        argv, env = procs.file_server_argv("rawasgi", data, port), None
    else:
        argv = procs.production_argv(port)
        env = procs.production_env(data, creds.secret, procs.free_port())
    t0 = time.perf_counter()
    proc = procs.spawn(argv, cpus=cpus, log_path=None, env=env)
    try:
        while time.perf_counter() < t0 + 20:
            if procs.http_answers(port, t0 + 20):
                return (time.perf_counter() - t0) * 1e3
            if proc.poll() is not None:
                return None
            time.sleep(0.001)
        return None
    finally:
        procs.stop(proc)


def ceiling(bench: Bench, work: str, server_cpus: set[int] | None) -> dict[str, Any]:
    """The load generator's own figure against a do-nothing server (bench/nullserver.py):
    a baseline near it would be capped by the client (or that server), not measured."""
    null = procs.Server("null", procs.null_argv(), os.path.join(work, "null.log"), server_cpus)
    with null:
        path = os.path.join(work, "null.req")
        wrk.write_requests(path, [request_bytes("GET", f"/b/k{i}", HOST) for i in range(1000)])
        return wrk.run(
            bench.loadgen,
            HOST,
            null.port,
            path,
            conns=64,
            duration=2.0,
            warmup=0.3,
            cpus=bench.cpus,
        )


# ---------------------------------------------------------------- main


def run(
    plan: Plan, parts: set[str], work: str, pin: bool, log: Callable[[str], None]
) -> dict[str, Any]:
    """Every step of `parts`; returns the results by server and step."""
    server_cpus, client_cpus = procs.cpu_plan(pin)
    creds = Credentials(procs.BENCH_ACCESS_KEY, secrets.token_urlsafe(24))
    bench = Bench(plan, work, client_cpus, log)
    results: dict[str, Any] = {}
    log("load generator ceiling against a do-nothing server")
    results["ceiling"] = ceiling(bench, work, server_cpus)
    names = [n for n in ("raw", "durable", "shoal", "erasure") if any(n in PARTS[p] for p in parts)]
    live: dict[str, Target] = {}
    for name in names:
        log(f"{name}: starting")
        try:
            live[name] = start_server(name, work, creds, server_cpus)
            bench.buckets(live[name])
        except (RuntimeError, OSError) as e:
            log(f"{name}: FAILED to start: {e}")
            results[name] = {"error": str(e)}
    small = [live[n] for n in ("raw", "durable", "shoal", "erasure") if n in live]
    if parts & {"standalone", "erasure"}:
        bench.turns(
            "populate",
            small,
            1,
            lambda t, r: bench.populate(t, "bench", bench.keys(), SMALL, 16),
            "ops_per_s",
        )
        bench.turns(
            "put_c16",
            small,
            plan.rounds,
            lambda t, r: bench.small_loop(t, "PUT", 16, r),
            "ops_per_s",
        )
        gets = [t for t in small if t.name != "durable"]
        bench.turns(
            "get_c16",
            gets,
            plan.rounds,
            lambda t, r: bench.small_loop(t, "GET", 16, r),
            "ops_per_s",
        )
        c64 = [t for t in gets if t.name in ("raw", "shoal")]
        bench.turns(
            "get_c64", c64, plan.rounds, lambda t, r: bench.small_loop(t, "GET", 64, r), "ops_per_s"
        )
        bigs = [t for t in small if t.name != "durable"]
        bench.turns(
            "big_put", bigs, 1, lambda t, r: bench.big(t, "big_put", "big", plan.big), "mb_per_s"
        )
        bench.turns(
            "big_get",
            bigs,
            plan.big_rounds,
            lambda t, r: bench.big(t, "big_get", "big", plan.big),
            "mb_per_s",
        )
        listed = [t for t in small if t.name in ("shoal", "erasure")]
        bench.turns("range_get", listed, 1, lambda t, r: bench.range_get(t), "p50_ms")
        keys = [f"p{i % 4}/obj-{i:05d}" for i in range(plan.list_keys)]
        bench.turns(
            "list_populate",
            listed,
            1,
            lambda t, r: bench.populate(t, "lst", keys, 64, 64),
            "ops_per_s",
        )
        bench.turns("list", listed, 1, lambda t, r: bench.list_keys(t), "seconds")
    if "cluster" in parts and "erasure" in live:
        # Both clusters run at once (idle but for heartbeats), so the erasure node and
        # the two clusters can take turns in every step.
        for name in ("cluster", "cluster1452"):
            log(f"{name}: starting 3 nodes")
            try:
                live[name] = start_server(name, work, creds, server_cpus)
                bench.buckets(live[name])
            except (RuntimeError, OSError) as e:
                log(f"{name}: FAILED to start: {e}")
                results[name] = {"error": str(e)}
        trio = [live[n] for n in ("erasure", "cluster", "cluster1452") if n in live]
        cl = plan.cluster_big
        bench.turns("cl_put", trio, 1, lambda t, r: bench.big(t, "big_put", "cl", cl), "mb_per_s")
        for step, n in (("cl_get1", 1), ("cl_get4", 4)):
            bench.turns(
                step, trio, 1, lambda t, r, n=n: bench.big(t, "big_get", "cl", cl, n), "mb_per_s"
            )
    for t in live.values():
        t.server.stop()
        results[t.name] = t.results
    if "startup" in parts:
        log(f"start to first answer, {plan.startups} times each (alternating)")
        times: dict[str, list[float]] = {"raw": [], "shoal": []}
        for _ in range(plan.startups):
            for name in times:
                ms = startup_ms(name, work, creds, server_cpus)
                if ms is not None:
                    times[name].append(ms)
        for name, ts in times.items():
            results.setdefault(name, {})["startup"] = {
                "median_ms": statistics.median(ts) if ts else None,
                "all_ms": ts,
                "load1": os.getloadavg()[0],
            }
    return results


def notes(results: dict[str, Any]) -> list[str]:
    """What qualifies the figures: the client's ceiling and CPU, failures."""
    out = []
    c = results.get("ceiling") or {}
    if c:
        out.append(
            f"load generator ceiling (64 conns, do-nothing server): {fmt(c.get('ops_per_s'))} "
            f"ops/s at {c.get('client_cpu', 0):.0%} of a core"
        )
        for step in ("get_c16", "get_c64"):
            r = (results.get("raw") or {}).get(step) or {}
            if "client_cpu" in r:
                out.append(
                    f"load generator during raw ASGI {step}: {r['client_cpu']:.0%} of a core"
                )
            raw = r.get("ops_per_s")
            if raw and c.get("ops_per_s") and raw > 0.7 * c["ops_per_s"]:
                out.append(
                    f"WARNING: raw ASGI {step} ({fmt(raw)} ops/s) is near the ceiling: "
                    "the client may cap the baseline"
                )
    cpu = [
        f"{name} {step} {fmt(us['user'])} + {fmt(us['system'])}"
        for name, res in results.items()
        if isinstance(res, dict)
        for step in ("get_c16", "get_c64", "put_c16")
        if (us := (res.get(step) or {}).get("server_us"))
    ]
    if cpu:
        out.append("server CPU per request, user + system µs: " + "; ".join(cpu))
    raw_put = ((results.get("raw") or {}).get("put_c16") or {}).get("ops_per_s")
    if raw_put:
        out.append(f"raw ASGI 4 KiB PUT c16 (no fsync, for scale): {fmt(raw_put)} ops/s")
    out.append(
        "node-to-node shard payload MB/s per datagram size: python bench/quic.py "
        "(not part of this table)"
    )
    for name, res in results.items():
        if not isinstance(res, dict) or name == "ceiling":
            continue
        if "error" in res:
            out.append(f"{name}: FAILED: {res['error'][:300]}")
        for step, r in res.items():
            if isinstance(r, dict) and "error" in r:
                out.append(f"{name} {step}: {str(r['error'])[:300]}")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="shorter loops, smaller objects")
    parser.add_argument("--only", choices=sorted(PARTS), help="measure one part's rows")
    parser.add_argument(
        "--pin",
        action="store_true",
        help="servers on one core, the client on another (the outside harness doesn't pin)",
    )
    parser.add_argument("--json", default=os.path.join(procs.BENCH_DIR, "results.json"))
    args = parser.parse_args(argv)
    plan = QUICK if args.quick else FULL
    parts = {args.only} if args.only else set(PARTS)

    t_start = time.monotonic()
    load_start = os.getloadavg()
    try:
        with procs.scratch("shoal-bench-") as (work, log):
            results = run(plan, parts, work, args.pin, log)
    except KeyboardInterrupt:
        print("bench: interrupted; servers stopped", file=sys.stderr)
        return 130
    load_end = os.getloadavg()
    rows = build_rows(results, plan, parts)
    results["rows"] = rows
    results["meta"] = {
        "mode": "quick" if args.quick else "full",
        "parts": sorted(parts),
        "plan": plan.__dict__,
        "cpus": os.cpu_count(),
        "pinned": args.pin,
        "loadavg_start": load_start,
        "loadavg_end": load_end,
        "seconds": time.monotonic() - t_start,
    }
    print()
    print(
        f"shoal benchmark ({results['meta']['mode']}, {os.cpu_count()} CPUs, "
        f"{'pinned' if args.pin else 'not pinned'}; load average "
        f"{' '.join(f'{x:.2f}' for x in load_start)} at the start, "
        f"{' '.join(f'{x:.2f}' for x in load_end)} at the end; "
        f"{results['meta']['seconds']:.0f} s)"
    )
    print(
        "value = shoal's figure (erasure node's, cluster's), vs = its baseline in the same "
        "run, ratio = value / vs; load = 1-min load average when measured"
    )
    print()
    for line in render(rows):
        print(line)
    print()
    for line in notes(results):
        print(line)
    with open(args.json, "w") as f:
        json.dump(results, f, indent=2, default=str)
    print(f"\nfigures written to {os.path.relpath(args.json)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
