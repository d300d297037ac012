"""Node-to-node shard throughput over the cluster transport's two paths: QUIC and the lane.

`python bench/quic.py [--quick] [--seconds S] [--no-pin] [--loop uvloop|asyncio]
[--sizes 1200,1452,...]` starts, for each datagram size (1200: QUIC's minimum and
aioquic's default; 1452: a 1500-byte-MTU LAN without fragmentation; 8952: a jumbo-frame
LAN; 16384: the transport's default and the most aioquic 1.7 can do, see
cluster.transport.MAX_DATAGRAM_SIZE), a child process holding a Transport (the "remote
node") and measures from this process `Transport.call` with 1 MiB bodies: "write" sends
1 MiB and gets an empty reply (a shard write), "read" sends nothing and gets 1 MiB back
(a shard read), with 1, 4 and 16 calls in flight, on each path:

    quic   plain calls: streams of the one QUIC connection (16 calls over 4 connections
           too, at the default size: 4 client Transports in this process)
    lane   bulk calls (`bulk=True`, as the drive RPCs that carry shards make them): TLS
           over TCP, up to cluster.lane.POOL connections (cluster.lane); the datagram
           size does not apply to it, it is measured at each size to show that

The baseline, in the same run against the same child, is the same request/response
exchange over plain asyncio TCP streams on loopback (no encryption, segmentation and
acknowledgements in the kernel), one connection per call in flight: what moving the
bytes between two Python processes costs at best. Ratios are path / TCP at the same
concurrency. The machine's load average is printed before and after.

Each cell is a loop bounded by --seconds (default 1.0; 0.5 with --quick) after one warm-up
call per worker, so the whole run stays within about two minutes (one with --quick). With
two or more CPUs the child runs on one core and this process on another (--no-pin to turn
off), as two nodes would.
Both run uvloop, as `shoal serve` does (--loop asyncio for the standard loop).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from typing import Any

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from shoal.cluster.transport import (  # noqa: E402
    DEFAULT_MAX_DATAGRAM_SIZE,
    MAX_DATAGRAM_SIZE,
    Reply,
    Request,
    Transport,
)

MIB = 1 << 20
SECRET = "bench-secret"
DATAGRAM_SIZES = (1200, 1452, 8952, MAX_DATAGRAM_SIZE)
CONCURRENCY = (1, 4, 16)
TCP_HEAD = struct.Struct("!cQ")  # op (b"w" write / b"r" read), length


# -- the remote node (child process)


async def serve(datagram_size: int, state_dir: str) -> None:
    blob = os.urandom(MIB)
    transport = Transport(
        node_id="remote",
        secret=SECRET,
        state_dir=state_dir,
        max_datagram_size=datagram_size,
        rpc_timeout=30,
        connect_timeout=10,  # pings on a loaded machine: a late answer is no failure
    )

    async def sink(r: Request) -> Reply:
        return Reply({"n": len(r.body)})

    async def source(r: Request) -> Reply:
        return Reply({}, blob[: int(r.args["n"])])

    transport.handle("sink", sink)
    transport.handle("source", source)
    await transport.start()

    async def tcp_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                op, n = TCP_HEAD.unpack(await reader.readexactly(TCP_HEAD.size))
                if op == b"w":
                    await reader.readexactly(n)
                    writer.write(struct.pack("!Q", 0))
                else:
                    writer.write(struct.pack("!Q", n))
                    writer.write(blob[:n])
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    server = await asyncio.start_server(tcp_client, "127.0.0.1", 0)
    tcp_port = server.sockets[0].getsockname()[1]
    print(f"ports {transport.port} {tcp_port}", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)  # until EOF
    server.close()
    await transport.stop()


# -- the measuring node (this process)


async def timed(workers: list[Callable[[], Awaitable[Any]]], seconds: float) -> float:
    """MB/s of 1 MiB bodies moved by `workers` looping for `seconds`."""
    loop = asyncio.get_running_loop()
    await asyncio.gather(*(w() for w in workers))  # warm-up: connections, windows
    count = 0
    start = loop.time()
    stop_at = start + seconds

    async def loop_one(work: Callable[[], Awaitable[Any]]) -> None:
        nonlocal count
        while loop.time() < stop_at:
            await work()
            count += 1

    await asyncio.gather(*(loop_one(w) for w in workers))
    return count * MIB / (loop.time() - start) / 1e6


async def rpc_cell(
    clients: list[Transport], address: str, op: str, conc: int, seconds: float, bulk: bool
) -> float:
    body = os.urandom(MIB)

    def worker(i: int) -> Callable[[], Awaitable[Any]]:
        t = clients[i % len(clients)]
        if op == "write":
            return lambda: t.call(address, "sink", {}, body, bulk=bulk)
        return lambda: t.call(address, "source", {"n": MIB}, bulk=bulk)

    return await timed([worker(i) for i in range(conc)], seconds)


async def tcp_cell(port: int, op: str, conc: int, seconds: float) -> float:
    body = os.urandom(MIB)
    conns = [await asyncio.open_connection("127.0.0.1", port) for _ in range(conc)]

    def worker(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> Any:
        async def one() -> None:
            if op == "write":
                writer.write(TCP_HEAD.pack(b"w", MIB))
                writer.write(body)
                await writer.drain()
                await reader.readexactly(8)
            else:
                writer.write(TCP_HEAD.pack(b"r", MIB))
                await writer.drain()
                (n,) = struct.unpack("!Q", await reader.readexactly(8))
                await reader.readexactly(n)

        return one

    try:
        return await timed([worker(r, w) for r, w in conns], seconds)
    finally:
        for _, w in conns:
            w.close()


def spawn_remote(
    datagram_size: int, state_dir: str, cpu: int | None, loop: str = "uvloop"
) -> tuple[Any, int, int]:
    argv = [sys.executable, __file__, "--serve", str(datagram_size), "--state", state_dir]
    proc = subprocess.Popen(
        [*argv, "--loop", loop],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        preexec_fn=(lambda: os.sched_setaffinity(0, {cpu})) if cpu is not None else None,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline().decode().split()
    if len(line) != 3:
        proc.kill()
        raise RuntimeError(f"remote node did not start: {line}")
    return proc, int(line[1]), int(line[2])


async def measure(
    seconds: float, pin: bool, loop: str, sizes: tuple[int, ...] = DATAGRAM_SIZES
) -> list[tuple[str, int, float, float]]:
    """Rows of (path, concurrency, write MB/s, read MB/s); TCP rows first."""
    cpus = sorted(os.sched_getaffinity(0))
    remote_cpu = None
    if pin and len(cpus) >= 2:
        remote_cpu = cpus[0]
        os.sched_setaffinity(0, {cpus[1]})
    rows: list[tuple[str, int, float, float]] = []
    with tempfile.TemporaryDirectory(prefix="shoal-bench-quic-") as tmp:
        for size in sizes:
            proc, port, tcp_port = spawn_remote(size, os.path.join(tmp, "remote"), remote_cpu, loop)
            address = f"127.0.0.1:{port}"
            clients = [
                Transport(
                    node_id=f"local{i}",
                    secret=SECRET,
                    state_dir=os.path.join(tmp, "local"),
                    max_datagram_size=size,
                    rpc_timeout=30,
                    connect_timeout=10,
                )
                for i in range(4)
            ]
            try:
                if size == sizes[0]:
                    for conc in CONCURRENCY:
                        w = await tcp_cell(tcp_port, "write", conc, seconds)
                        r = await tcp_cell(tcp_port, "read", conc, seconds)
                        rows.append(("tcp", conc, w, r))
                for bulk, path in ((False, "quic"), (True, "lane")):
                    for conc in CONCURRENCY:
                        w = await rpc_cell(clients[:1], address, "write", conc, seconds, bulk)
                        r = await rpc_cell(clients[:1], address, "read", conc, seconds, bulk)
                        rows.append((f"{path} {size}", conc, w, r))
                lanes = clients[0].payload_counts.get(address)
                if lanes is None or lanes.quic_calls or not lanes.lane_calls:
                    raise RuntimeError(f"bulk calls did not all take the lane: {lanes}")
                if size == DEFAULT_MAX_DATAGRAM_SIZE:
                    w = await rpc_cell(clients, address, "write", 16, seconds, False)
                    r = await rpc_cell(clients, address, "read", 16, seconds, False)
                    rows.append((f"quic {size} x4 conns", 16, w, r))
            finally:
                for c in clients:
                    await c.stop()
                assert proc.stdin is not None
                proc.stdin.close()
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
    return rows


def table(rows: list[tuple[str, int, float, float]]) -> str:
    tcp = {conc: (w, r) for path, conc, w, r in rows if path == "tcp"}
    out = [
        f"{'path (datagram bytes)':<24} {'calls':>5} {'write MB/s':>10} {'/tcp':>6} "
        f"{'read MB/s':>10} {'/tcp':>6}"
    ]
    for path, conc, w, r in rows:
        tw, tr = tcp.get(conc, (0.0, 0.0))
        out.append(
            f"{path:<24} {conc:>5} {w:>10.1f} {w / tw if tw else 0:>6.2f} "
            f"{r:>10.1f} {r / tr if tr else 0:>6.2f}"
        )
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--state", help=argparse.SUPPRESS)
    parser.add_argument("--quick", action="store_true", help="0.5 s per cell")
    parser.add_argument("--seconds", type=float, help="seconds per cell (default 1.0)")
    parser.add_argument("--no-pin", action="store_true", help="do not pin the two processes")
    parser.add_argument(
        "--loop", choices=("uvloop", "asyncio"), default="uvloop", help="event loop of both"
    )
    parser.add_argument(
        "--sizes",
        default=",".join(map(str, DATAGRAM_SIZES)),
        help="datagram sizes to measure, comma-separated (default %(default)s)",
    )
    args = parser.parse_args()
    run: Any = asyncio.run
    if args.loop == "uvloop":
        import uvloop

        run = uvloop.run
    if args.serve:
        run(serve(args.serve, args.state))
        return
    seconds = args.seconds or (0.5 if args.quick else 1.0)
    sizes = tuple(int(x) for x in args.sizes.split(","))
    started = time.monotonic()
    load_before = _loadavg()
    rows = run(measure(seconds, not args.no_pin, args.loop, sizes))
    print(f"node-to-node calls with 1 MiB bodies, 127.0.0.1, {args.loop}, {seconds:g} s per cell")
    print(table(rows))
    print(
        f"({time.monotonic() - started:.0f} s; load average {load_before} before, "
        f"{_loadavg()} after, {os.cpu_count()} CPUs)"
    )


def _loadavg() -> str:
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


if __name__ == "__main__":
    main()
