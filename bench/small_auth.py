"""Small-object figures as the outside harness takes them: shoal with auth and the access
log on (`shoal serve --auth ...`, JSON log to a file), signed requests, 1,000 random
4 KiB keys, keep-alive connections; the raw ASGI baseline (bench/baseline.py) in the
same run, unsigned. Also start-up (spawn to first HTTP answer) and ListObjectsV2 of
10,000 keys in 10 pages.

Requests are signed once before the clock (a signature stays valid for minutes), as a
wrk script replaying signed requests would; PUTs sign the body's SHA-256, so the
server checks it. The client runs in this process, pinned to one core, the server on
the other (when there are two).

Usage: `python bench/small_auth.py [--seconds 4] [--only get,put,seq,start,list]`
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import random
import sys
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import client as hc  # bench/client.py: the HTTP/1.1 load client
import procs

from shoal.auth.signer import signed_headers

ACCESS, SECRET, REGION = "benchkey", "benchsecret-0123456789", "us-east-1"
SIZE = 4096
N_KEYS = 1000
BUCKET = "small"


def shoal_cmd(data: str, port: int) -> tuple[list[str], dict[str, str]]:
    argv = procs.shoal_argv(data, port)
    argv += ["--auth", "--access-key", ACCESS, "--secret-key", SECRET, "--log-format", "json"]
    return argv, {}


def baseline_cmd(data: str, port: int) -> tuple[list[str], dict[str, str]]:
    return procs.file_server_argv("baseline", data, port), {}


def raw_request(
    method: str, target: str, host: str, body: bytes = b"", signed: bool = True
) -> bytes:
    path, _, query = target.partition("?")
    headers: dict[str, str] = {}
    if signed:
        payload = hashlib.sha256(body).hexdigest()
        headers = signed_headers(
            method, path, host, ACCESS, SECRET, REGION, query=query, payload_hash=payload
        )
    else:
        headers = {"host": host}
    if body or method == "PUT":
        headers["content-length"] = str(len(body))
    head = f"{method} {target} HTTP/1.1\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
    return head.encode() + body


async def closed(
    conns: list[hc.Connection], requests: list[bytes], method: bytes, seconds: float
) -> dict[str, Any]:
    rng = random.Random(7)
    order = [rng.randrange(len(requests)) for _ in range(4096)]

    async def one(conn: hc.Connection, wid: int, seq: int) -> hc.Response:
        return await conn.send(requests[order[(wid * 131 + seq) % 4096]], method)

    return await hc.closed_loop(conns, one, 200, seconds, 2_000_000)


async def run_load(
    host: str, port: int, signed: bool, seconds: float, only: set[str]
) -> dict[str, Any]:
    hosthdr = f"{host}:{port}"
    out: dict[str, Any] = {}
    conn = await hc.connect(host, port)
    r = await conn.send(raw_request("PUT", f"/{BUCKET}", hosthdr, signed=signed), b"PUT")
    assert r.status == 200, r.status
    conn.close()
    body = os.urandom(SIZE)
    keys = [f"obj/{i:04d}" for i in range(N_KEYS)]
    puts = [raw_request("PUT", f"/{BUCKET}/{k}", hosthdr, body, signed) for k in keys]
    gets = [raw_request("GET", f"/{BUCKET}/{k}", hosthdr, signed=signed) for k in keys]
    conns = await hc.open_conns(host, port, 16)
    todo = iter(puts)

    async def fill(c: hc.Connection) -> None:
        for raw in todo:
            resp = await c.send(raw, b"PUT")
            assert resp.status == 200, resp.status

    await asyncio.gather(*(fill(c) for c in conns))
    hc.close_all(conns)
    if "seq" in only:
        conns = await hc.open_conns(host, port, 1)
        await closed(conns, gets, b"GET", 0.5)
        out["get_c1"] = await closed(conns, gets, b"GET", seconds)
        hc.close_all(conns)
    if "get" in only:
        for n in (16, 64):
            conns = await hc.open_conns(host, port, n)
            await closed(conns, gets, b"GET", 0.5)
            out[f"get_c{n}"] = await closed(conns, gets, b"GET", seconds)
            hc.close_all(conns)
    if "put" in only:
        conns = await hc.open_conns(host, port, 16)
        out["put_c16"] = await closed(conns, puts, b"PUT", seconds)
        hc.close_all(conns)
    return out


async def first_answer(port: int, deadline: float) -> None:
    while time.monotonic() < deadline:
        try:
            conn = await hc.connect("127.0.0.1", port)
        except OSError:
            await asyncio.sleep(0.002)
            continue
        try:
            await conn.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            return
        except ConnectionError:
            await asyncio.sleep(0.002)
        finally:
            conn.close()
    raise TimeoutError("no answer")


def start_time(cmd: Any, work: str, cpus: set[int] | None, runs: int = 5) -> float:
    """Median ms from spawn to the first HTTP answer (any status) on a fixed port; the
    first start is not counted (it compiles the byte code an installed copy has)."""
    times = []
    for i in range(runs + 1):
        port = procs.free_port()
        argv, env = cmd(os.path.join(work, f"start{i}"), port)
        t0 = time.monotonic()
        proc = procs.spawn(argv, cpus=cpus, log_path=os.devnull, env=env)
        try:
            asyncio.run(first_answer(port, time.monotonic() + 20))
            if i:
                times.append((time.monotonic() - t0) * 1000)
        finally:
            procs.stop(proc)
    return sorted(times)[len(times) // 2]


def list_time(server: procs.Server, seconds_cap: float = 120) -> dict[str, Any]:
    async def go() -> dict[str, Any]:
        host, port = server.host, server.port
        hosthdr = f"{host}:{port}"
        conn = await hc.connect(host, port)
        await conn.send(raw_request("PUT", "/lst", hosthdr), b"PUT")
        conn.close()
        body = b"x" * 64
        todo = iter(f"p{i % 4}/obj-{i:05d}" for i in range(10_000))
        conns = await hc.open_conns(host, port, 16)
        end = time.monotonic() + seconds_cap

        async def fill(c: hc.Connection) -> None:
            for k in todo:
                if time.monotonic() > end:
                    raise TimeoutError("populating took too long")
                await c.send(raw_request("PUT", f"/lst/{k}", hosthdr, body), b"PUT")

        await asyncio.gather(*(fill(c) for c in conns))
        hc.close_all(conns)
        conn = await hc.connect(host, port)
        times = []
        for _ in range(5):
            t0 = time.perf_counter()
            token = None
            keys = pages = 0
            while pages < 20:
                q = "list-type=2&max-keys=1000"
                if token:
                    q = "continuation-token=" + hc.quote(token, safe="") + "&" + q
                r = await conn.send(raw_request("GET", f"/lst?{q}", hosthdr), keep_body=True)
                assert r.status == 200, r.body[:300]
                pages += 1
                keys += r.body.count(b"<Key>")
                m = hc._TOKEN_RE.search(r.body)
                if m is None:
                    break
                token = hc.html.unescape(m.group(1).decode())
            times.append((time.perf_counter() - t0) * 1000)
        conn.close()
        return {"keys": keys, "pages": pages, "ms": times}

    return asyncio.run(go())


def loadavg() -> list[str]:
    with open("/proc/loadavg") as f:
        return f.read().split()[:3]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--only", default="seq,get,put,start,list")
    parser.add_argument("--no-baseline", action="store_true")
    parser.add_argument(
        "--before",
        metavar="DIR",
        help="also measure another shoal checkout: DIR holds a `shoal` link to it "
        "(put first on PYTHONPATH)",
    )
    args = parser.parse_args()
    only = set(args.only.split(","))
    server_cpus, client_cpus = procs.cpu_plan(True)
    if client_cpus:
        os.sched_setaffinity(0, client_cpus)
    with procs.scratch("shoal-small-auth-") as (work, _):
        report: dict[str, Any] = {"loadavg": loadavg()}
        subjects: list[tuple[str, Any, bool]] = [("shoal", shoal_cmd, True)]
        if args.before:
            before = args.before

            def before_cmd(data: str, port: int) -> tuple[list[str], dict[str, str]]:
                return shoal_cmd(data, port)[0], {"PYTHONPATH": before}

            subjects.append(("before", before_cmd, True))
        if not args.no_baseline:
            subjects.append(("baseline", baseline_cmd, False))
        for name, cmd, signed in subjects:
            if "start" in only:
                report[f"{name}_start_ms"] = start_time(cmd, work, server_cpus)
            if only & {"seq", "get", "put", "list"}:
                data = os.path.join(work, f"{name}-data")
                argv, env = cmd(data, 0)
                log = os.path.join(work, f"{name}.log")
                server = procs.Server(name, argv, log, server_cpus, env)
                with server:
                    load = run_load(server.host, server.port, signed, args.seconds, only)
                    res = asyncio.run(load)
                    for k, v in res.items():
                        report[f"{name}_{k}"] = {
                            "ops_per_s": round(v["ops_per_s"]),
                            "errors": v["errors"],
                            "p50_ms": round(v["p50_ms"], 3),
                        }
                    if "list" in only and signed:
                        report[f"{name}_list10k"] = list_time(server)
                    if signed:
                        with open(log, "rb") as f:
                            report[f"{name}_log_lines"] = sum(1 for _ in f)
        report["loadavg_end"] = loadavg()
        for name in ("shoal", "before"):
            for k in ("get_c1", "get_c16", "get_c64", "put_c16"):
                a, b = report.get(f"{name}_{k}"), report.get(f"baseline_{k}")
                if a and b and b["ops_per_s"]:
                    report[f"ratio_{name}_{k}"] = round(a["ops_per_s"] / b["ops_per_s"], 3)
        print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
