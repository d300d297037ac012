"""cluster.lane: bulk calls between real Transports over TLS on TCP, 127.0.0.1, one loop.

Which path a call took is read from the transport's own counters (payload_counts) and
the lane's state, never from timing. Failures are made real: a port that is taken or
closed, a proxy between the nodes that cuts or alters the TLS byte stream, a client that
does not know the cluster secret.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import google_crc32c
import pytest

from shoal.cluster import frames, lane
from shoal.cluster.drive_rpc import DriveService, RemoteDrive
from shoal.cluster.frames import Kind
from shoal.cluster.lane import FrameConnection, LaneError, LanePool
from shoal.cluster.transport import PeerUnavailable, Reply, Request, Transport
from shoal.storage.erasure.drive import ROOT, CorruptShard, LocalDrive
from tests.unit.transports import SECRET, Make, addr, anyio_backend  # noqa: F401 (fixture)

pytestmark = pytest.mark.anyio

MIB = 1 << 20


async def echo(r: Request) -> Reply:
    return Reply({"peer": r.peer, "size": len(r.body)}, r.body)


async def source(r: Request) -> Reply:
    return Reply({}, bytes(range(256)) * (int(r.args["n"]) // 256))


def counts(a: Transport, b: Transport) -> tuple[int, int]:
    """(lane calls, QUIC calls) among a's bulk calls to b."""
    c = a.payload_counts[addr(b)]
    return c.lane_calls, c.quic_calls


async def test_bulk_calls_take_the_lane_and_others_stay_on_quic(make: Make) -> None:
    a, b = await make("a"), await make("b")
    b.handle("echo", echo)
    b.handle("source", source)
    body = os.urandom(4 * MIB + 123)
    reply = await a.call(addr(b), "echo", {}, body, bulk=True)
    assert bytes(reply.body) == body and reply.result == {"peer": "a", "size": len(body)}
    got = await a.call(addr(b), "source", {"n": 8 * MIB}, bulk=True)
    assert bytes(got.body) == bytes(range(256)) * (8 * MIB // 256)
    assert (await a.call(addr(b), "echo", {}, b"tiny")).result["size"] == 4  # not bulk
    assert counts(a, b) == (2, 0)
    assert a.payload_counts[addr(b)].lane_bytes == 2 * len(body) + 8 * MIB
    assert b.lane_port == b.port  # the QUIC port number, over TCP
    status = a.status()["peers"][addr(b)]
    assert status["lane"] == "open" and status["lane_calls"] == 2


async def test_a_peer_without_a_lane_gets_bulk_calls_over_quic(make: Make) -> None:
    """An older node (or one told not to serve it) answers the offer with an error."""
    a, b = await make("a"), await make("b", bulk_lane=False)
    b.handle("echo", echo)
    body = os.urandom(MIB)
    assert bytes((await a.call(addr(b), "echo", {}, body, bulk=True)).body) == body
    assert counts(a, b) == (0, 1)
    assert b.lane_port == 0 and a.status()["peers"][addr(b)]["lane"] == "none"


async def test_an_older_peer_that_knows_no_offer_gets_bulk_calls_over_quic(
    make: Make,
) -> None:
    a, b = await make("a"), await make("b")
    del b._handlers["_lane.offer"]  # as a node from before the lane: UnknownMethod
    b.handle("echo", echo)
    body = os.urandom(MIB)
    assert bytes((await a.call(addr(b), "echo", {}, body, bulk=True)).body) == body
    assert counts(a, b) == (0, 1)


def _taken_port() -> tuple[socket.socket, int]:
    """A TCP port something else listens on, whose UDP port is free."""
    while True:
        tcp = socket.socket()
        tcp.bind(("127.0.0.1", 0))
        port = tcp.getsockname()[1]
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            try:
                udp.bind(("127.0.0.1", port))
            except OSError:
                tcp.close()
                continue
        tcp.listen()
        return tcp, port


async def test_a_node_whose_lane_port_is_taken_runs_without_it(
    make: Make, caplog: pytest.LogCaptureFixture
) -> None:
    blocker, port = _taken_port()
    with blocker:
        a, b = await make("a"), await make("b", port=port)
        b.handle("echo", echo)
        assert b.lane_port == 0
        assert "bulk lane cannot listen" in caplog.text
        body = os.urandom(MIB)
        assert bytes((await a.call(addr(b), "echo", {}, body, bulk=True)).body) == body
        assert counts(a, b) == (0, 1)


async def test_an_unreachable_lane_falls_back_to_quic_and_backs_off(make: Make) -> None:
    a, b = await make("a"), await make("b")
    b.handle("echo", echo)
    with socket.socket() as s:  # a port nothing listens on once closed
        s.bind(("127.0.0.1", 0))
        b.lane_port = s.getsockname()[1]
    body = os.urandom(MIB)
    for _ in range(2):
        assert bytes((await a.call(addr(b), "echo", {}, body, bulk=True)).body) == body
    assert counts(a, b) == (0, 2)  # the second did not even try: backoff
    assert a.status()["peers"][addr(b)]["lane"] == "backoff"


async def test_the_lane_follows_its_quic_connection_across_a_restart(
    make: Make, tmp_path: Path
) -> None:
    a, b = await make("a"), await make("b")
    b.handle("echo", echo)
    await a.call(addr(b), "echo", {}, b"x", bulk=True)
    port = b.port
    await b.stop()
    b2 = await make("b", port=port)
    b2.handle("echo", echo)

    async def call_again() -> Reply:
        while True:  # until the old QUIC connection is found closed and the backoff passes
            try:
                return await a.call(f"127.0.0.1:{port}", "echo", {}, b"again", bulk=True)
            except PeerUnavailable:
                await asyncio.sleep(0.05)

    reply = await asyncio.wait_for(call_again(), 10)
    assert bytes(reply.body) == b"again"
    assert counts(a, b2)[0] == 2 and counts(a, b2)[1] == 0


# -- who may use a lane


def _pool(b: Transport, *, key: str = SECRET, fingerprint: str | None = None) -> LanePool:
    return LanePool(
        host="127.0.0.1",
        port=b.lane_port,
        fingerprint=fingerprint or b.certificate_fingerprint,
        node_id="intruder",
        key=key.encode(),
        connect_timeout=3,
    )


async def test_a_client_without_the_secret_is_refused(make: Make) -> None:
    b = await make("b")
    served: list[str] = []

    async def record(r: Request) -> Reply:
        served.append(r.peer)
        return Reply({})

    b.handle("record", record)
    head = frames.encode_head(Kind.REQUEST, {"method": "record", "args": {}}, 0)
    pool = _pool(b, key="not the secret")
    with pytest.raises(LaneError, match="proof of the cluster secret") as info:
        await pool.call(head, b"")
    assert not info.value.sent
    # Nor does one that skips the proof get a request served: it is refused and cut.
    loop = asyncio.get_running_loop()
    _, conn = await loop.create_connection(
        lambda: FrameConnection((Kind.RESPONSE, Kind.ERROR)),
        "127.0.0.1",
        b.lane_port,
        ssl=lane.client_context(),
    )
    await conn.write_frame(head, b"")
    answer = await conn.read_frame()
    assert answer.kind is Kind.ERROR and answer.header["code"] == "AccessDenied"
    with pytest.raises(LaneError):
        await asyncio.wait_for(conn.read_frame(), 5)  # closed by the server
    assert served == []
    good = _pool(b)
    assert (await good.call(head, b"")).kind is Kind.RESPONSE
    assert served == ["intruder"]  # the proven node id
    good.close()
    pool.close()


async def test_before_its_proof_a_client_cannot_send_a_body(make: Make) -> None:
    """A frame declaring a body (here 64 MiB) before the proof is cut at its prefix."""
    b = await make("b")
    loop = asyncio.get_running_loop()
    _, conn = await loop.create_connection(
        lambda: FrameConnection((Kind.RESPONSE, Kind.ERROR)),
        "127.0.0.1",
        b.lane_port,
        ssl=lane.client_context(),
    )
    assert conn.transport is not None
    hello = {"method": "_lane.hello", "args": {"node": "x", "nonce": "00" * 32}}
    conn.transport.write(frames.encode_head(Kind.REQUEST, hello, frames.MAX_BODY))
    with pytest.raises(LaneError):
        await asyncio.wait_for(conn.read_frame(), 5)  # cut, nothing answered


async def test_a_server_with_another_certificate_is_not_trusted(make: Make) -> None:
    b = await make("b")
    b.handle("echo", echo)
    head = frames.encode_head(Kind.REQUEST, {"method": "echo", "args": {}}, 0)
    pool = _pool(b, fingerprint=hashlib.sha256(b"someone else").hexdigest())
    with pytest.raises(LaneError, match="certificate"):
        await pool.call(head, b"")
    assert pool.state == "backoff"
    pool.close()


# -- a lane connection that breaks or is tampered with


class Proxy:
    """Forwards TCP between a client and `port`; `tamper(direction, offset, data)` may
    return other bytes, or None to cut both sides there (direction "up": to the server)."""

    def __init__(self, port: int, tamper: Callable[[str, int, bytes], bytes | None]) -> None:
        self.target = port
        self.tamper = tamper
        self.connections = 0
        self.server: asyncio.Server | None = None
        self.port = 0

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._client, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    async def _client(self, cr: asyncio.StreamReader, cw: asyncio.StreamWriter) -> None:
        self.connections += 1
        sr, sw = await asyncio.open_connection("127.0.0.1", self.target)
        writers = (cw, sw)

        async def pump(direction: str, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            offset = 0
            while data := await r.read(65536):
                out = self.tamper(direction, offset, data)
                offset += len(data)
                if out is None:
                    for writer in writers:
                        writer.transport.abort()
                    return
                w.write(out)
                await w.drain()
            w.close()

        try:
            await asyncio.gather(pump("up", cr, sw), pump("down", sr, cw))
        except ConnectionError:
            for writer in writers:
                writer.transport.abort()

    async def stop(self) -> None:
        assert self.server is not None
        self.server.close()


@pytest.fixture
async def proxied(make: Make) -> AsyncIterator[Callable[..., Awaitable[Any]]]:
    proxies: list[Proxy] = []

    async def start(tamper: Callable[[str, int, bytes], bytes | None]) -> Any:
        # (a generous connect timeout: the proxy's hops on a busy machine)
        a, b = await make("a", connect_timeout=10.0), await make("b", connect_timeout=10.0)
        proxy = Proxy(b.lane_port, tamper)
        await proxy.start()
        proxies.append(proxy)
        b.lane_port = proxy.port  # what b offers: a reaches b's lane through the proxy
        return a, b, proxy

    yield start
    for p in proxies:
        await p.stop()


def cut_first(direction: str, after: int) -> Callable[[str, int, bytes], bytes | None]:
    """Cut the first connection once `after` bytes went `direction`; later ones pass."""
    state = {"cut": False}

    def tamper(d: str, offset: int, data: bytes) -> bytes | None:
        if d == direction and not state["cut"] and offset + len(data) > after:
            state["cut"] = True
            return None
        return data

    return tamper


async def test_a_reply_cut_mid_transfer_fails_the_call_cleanly(proxied: Any) -> None:
    a, b, proxy = await proxied(cut_first("down", 2 * MIB))
    b.handle("source", source)
    with pytest.raises(PeerUnavailable, match="mid-call"):
        await a.call(addr(b), "source", {"n": 16 * MIB}, bulk=True)
    reply = await a.call(addr(b), "source", {"n": 16 * MIB}, bulk=True)  # a new connection
    assert bytes(reply.body) == bytes(range(256)) * (16 * MIB // 256)
    assert proxy.connections == 2 and counts(a, b) == (1, 0)


async def test_a_request_cut_mid_transfer_is_never_served(proxied: Any) -> None:
    a, b, _ = await proxied(cut_first("up", 2 * MIB))
    served: list[int] = []

    async def sink(r: Request) -> Reply:
        served.append(len(r.body))
        return Reply({})

    b.handle("sink", sink)
    with pytest.raises(PeerUnavailable):
        await a.call(addr(b), "sink", {}, os.urandom(16 * MIB), bulk=True)
    assert served == []  # an incomplete request frame is not dispatched
    await a.call(addr(b), "sink", {}, os.urandom(MIB), bulk=True)
    assert served == [MIB]


async def test_bytes_altered_on_the_way_are_never_delivered(proxied: Any) -> None:
    flipped = {"done": False}

    def flip(direction: str, offset: int, data: bytes) -> bytes:
        if direction == "down" and offset > MIB and not flipped["done"]:
            flipped["done"] = True
            return data[:100] + bytes([data[100] ^ 1]) + data[101:]
        return data

    a, b, _ = await proxied(flip)
    b.handle("source", source)
    # The lane is up first (a busy machine could make the first call fall back to QUIC,
    # which the proxy does not see): a small reply, under the offset where bytes flip.
    await a.call(addr(b), "source", {"n": 1024}, bulk=True)
    assert counts(a, b) == (1, 0)
    with pytest.raises(PeerUnavailable):  # TLS refuses the record: no corrupt body
        await a.call(addr(b), "source", {"n": 16 * MIB}, bulk=True)
    assert flipped["done"]


async def test_a_cancelled_bulk_call_cancels_the_remote_handler(make: Make) -> None:
    a, b = await make("a"), await make("b")
    started, cancelled = asyncio.Event(), asyncio.Event()

    async def hang(r: Request) -> Reply:
        started.set()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return Reply({})

    b.handle("hang", hang)
    task = asyncio.create_task(a.call(addr(b), "hang", {}, os.urandom(MIB), bulk=True))
    await asyncio.wait_for(started.wait(), 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.wait_for(cancelled.wait(), 5)
    assert counts(a, b) == (0, 0)  # it never completed, on either path


# -- shards over the lane keep their checksums


async def test_a_corrupt_shard_read_over_the_lane_is_detected(make: Make, tmp_path: Path) -> None:
    a, b = await make("a"), await make("b")
    (tmp_path / "disk" / ROOT).mkdir(parents=True)
    local = LocalDrive(str(tmp_path / "disk"))
    try:
        DriveService(b, {"d1": local})
        remote = RemoteDrive(a, addr(b), "d1", "b:d1")
        data = os.urandom(3 * MIB)
        crc = google_crc32c.value(data)
        await remote.write_shard("bk/obj/v1/chunk-0/shard-2", data, crc)
        assert await remote.read_shard("bk/obj/v1/chunk-0/shard-2", crc) == data
        dat = tmp_path / "disk" / ROOT / "bk/obj/v1/chunk-0/shard-2.dat"
        raw = bytearray(dat.read_bytes())
        raw[MIB] ^= 0xFF
        dat.write_bytes(raw)
        with pytest.raises(CorruptShard):
            await remote.read_shard("bk/obj/v1/chunk-0/shard-2", crc)
        assert counts(a, b) == (3, 0)
    finally:
        local.close()
