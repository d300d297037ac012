"""cluster.transport: QUIC RPC between Transports over real UDP on 127.0.0.1, one loop."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import stat
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from shoal.cluster import frames, transport
from shoal.cluster.frames import FrameError, FrameReader, Kind
from shoal.cluster.tls import CERT_FILE, KEY_FILE
from shoal.cluster.transport import (
    CHUNK,
    AuthenticationFailed,
    PeerUnavailable,
    Reply,
    Request,
    RpcError,
    Transport,
)
from tests.unit.transports import SECRET, Make, addr, anyio_backend  # noqa: F401 (fixture)

pytestmark = pytest.mark.anyio


class CodedError(Exception):
    code = "NoSuchShard"


async def echo(r: Request) -> Reply:
    return Reply({"args": r.args, "peer": r.peer, "size": len(r.body)}, r.body)


async def test_round_trip_4mib_body(make: Make) -> None:
    a, b = await make("a"), await make("b")
    b.handle("echo", echo)
    body = os.urandom(4 << 20)
    reply = await b_call(a, b, "echo", {"k": [1, "x"]}, body)
    assert reply.result == {"args": {"k": [1, "x"]}, "peer": "a", "size": len(body)}
    assert bytes(reply.body) == body
    empty = await a.call(addr(b), "echo")
    assert empty.result["args"] == {} and empty.body == b""


async def b_call(a: Transport, b: Transport, *args: Any, **kwargs: Any) -> Reply:
    return await a.call(addr(b), *args, **kwargs)


async def test_50_concurrent_calls_share_one_connection(make: Make) -> None:
    a, b = await make("a"), await make("b")
    arrived = 0
    everyone = asyncio.Event()

    async def together(r: Request) -> Reply:
        nonlocal arrived
        arrived += 1
        if arrived == 50:
            everyone.set()
        await asyncio.wait_for(everyone.wait(), 5)  # all 50 are in flight at once
        return Reply({"i": r.args["i"]}, r.body[::-1])

    b.handle("together", together)
    bodies = [os.urandom(i * 1000) for i in range(50)]
    replies = await asyncio.gather(
        *(a.call(addr(b), "together", {"i": i}, bodies[i]) for i in range(50))
    )
    assert [r.result["i"] for r in replies] == list(range(50))
    assert [bytes(r.body) for r in replies] == [x[::-1] for x in bodies]
    assert len(b._server_conns) == 1 and len(a._peers) == 1


async def test_remote_errors(make: Make) -> None:
    a, b = await make("a"), await make("b")

    async def coded(r: Request) -> Reply:
        raise CodedError("shard 3 is gone")

    async def broken(r: Request) -> Reply:
        raise KeyError("oops")

    b.handle("coded", coded)
    b.handle("broken", broken)
    with pytest.raises(RpcError) as err:
        await a.call(addr(b), "coded")
    assert (err.value.code, err.value.message) == ("NoSuchShard", "shard 3 is gone")
    with pytest.raises(RpcError) as err:
        await a.call(addr(b), "broken")
    assert err.value.code == "InternalError" and "oops" in err.value.message
    with pytest.raises(RpcError) as err:
        await a.call(addr(b), "no.such.method")
    assert err.value.code == "UnknownMethod"
    with pytest.raises(ValueError):
        b.handle("_auth.hello", echo)  # reserved names


async def test_calls_before_a_starting_node_serves_them_wait_for_it(make: Make) -> None:
    """A peer further along in its start calls b before b has registered that method:
    the call waits for it instead of being refused (a refusal counted against the
    drives it names); once b serves everything, unknown methods are refused again."""
    a, b = await make("a"), await make("b")
    b.expect_handlers()
    early = asyncio.ensure_future(a.call(addr(b), "drive.later", {"n": 1}, b"early"))
    await asyncio.wait({early}, timeout=0.2)  # (bounded: it must still be waiting)
    assert not early.done()
    b.handle("drive.later", echo)
    b.serving()
    assert (await early).body == b"early"
    with pytest.raises(RpcError) as err:
        await a.call(addr(b), "no.such.method")
    assert err.value.code == "UnknownMethod"


async def _hanging(started: asyncio.Event, cancelled: asyncio.Event) -> Callable[..., Any]:
    async def handler(r: Request) -> Reply:
        started.set()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return Reply({})

    return handler


async def test_timeout_cancels_the_remote_handler(make: Make) -> None:
    a, b = await make("a"), await make("b")
    started, cancelled = asyncio.Event(), asyncio.Event()
    b.handle("hang", await _hanging(started, cancelled))
    t0 = time.monotonic()
    with pytest.raises(PeerUnavailable, match=r"within 0\.3 s"):
        await a.call(addr(b), "hang", timeout=0.3)
    assert time.monotonic() - t0 < 1.5  # generous: CI machines are loaded
    await asyncio.wait_for(cancelled.wait(), 2)
    b.handle("echo", echo)
    assert (await a.call(addr(b), "echo", {"x": 1})).result["args"] == {"x": 1}


async def test_caller_cancellation_cancels_the_remote_handler(make: Make) -> None:
    a, b = await make("a"), await make("b")
    started, cancelled = asyncio.Event(), asyncio.Event()
    b.handle("hang", await _hanging(started, cancelled))
    b.handle("echo", echo)
    task = asyncio.create_task(a.call(addr(b), "hang", {}, os.urandom(1 << 20)))
    await asyncio.wait_for(started.wait(), 2)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.wait_for(cancelled.wait(), 2)
    await asyncio.sleep(0)
    assert not next(iter(b._server_conns))._tasks
    assert (await a.call(addr(b), "echo")).result["peer"] == "a"  # connection still fine


async def test_wrong_secret_is_refused_both_ways(make: Make) -> None:
    good, bad = await make("good"), await make("bad", secret="not the secret")
    served: list[str] = []

    async def handler(r: Request) -> Reply:
        served.append(r.peer)
        return Reply({})

    good.handle("op", handler)
    bad.handle("op", handler)
    # The server proves first; either way the client sees the mismatch and stops there.
    for client, server in [(bad, good), (good, bad)]:
        with pytest.raises(AuthenticationFailed, match="wrong secret"):
            await client.call(addr(server), "op")
    assert served == []
    assert isinstance(AuthenticationFailed("x"), PeerUnavailable)


async def test_unauthenticated_connection_gets_nothing_served(
    make: Make, monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = await make("a"), await make("b")
    b.handle("echo", echo)

    async def skip(self: Any) -> None:
        pass

    monkeypatch.setattr(transport._Connection, "authenticate", skip)
    with pytest.raises(RpcError) as err:
        await a.call(addr(b), "echo")
    assert err.value.code == "AccessDenied"
    # A client that skips checking the server and sends a made-up proof is refused, and
    # the server then closes the connection.
    conn = await a._connection(addr(b))
    hello = await conn.rpc("_auth.hello", {"node": "mallory", "nonce": "00" * 32})
    assert set(hello) == {"node", "nonce", "proof"}
    with pytest.raises(RpcError) as err:
        await conn.rpc("_auth.proof", {"proof": "00" * 32})
    assert err.value.code == "AccessDenied"
    with pytest.raises(AuthenticationFailed):
        await asyncio.wait_for(_closed(conn), 2)
    with pytest.raises(RpcError) as err:
        await a.call(addr(b), "echo")  # a new connection: still not authenticated
    assert err.value.code == "AccessDenied"


async def _closed(conn: Any) -> None:
    while conn.closed is None:
        await asyncio.sleep(0.02)
    raise conn.closed


async def test_peer_restart_reconnects(make: Make, tmp_path: Path) -> None:
    a, b = await make("a"), await make("b")
    b.handle("echo", echo)
    assert (await a.call(addr(b), "echo")).result["peer"] == "a"
    port = b.port
    await b.stop()
    with pytest.raises(PeerUnavailable):
        await a.call(f"127.0.0.1:{port}", "echo", timeout=2)
    b2 = await make("b", state=tmp_path / "b", port=port)
    b2.handle("echo", echo)
    await asyncio.sleep(2 * transport._BACKOFF_MIN)  # past the backoff from the failed call
    reply = await a.call(f"127.0.0.1:{port}", "echo", {"again": True})
    assert reply.result["args"] == {"again": True}


async def test_peer_killed_and_restarted(make: Make, tmp_path: Path) -> None:
    """A peer gone without closing (SIGKILL) and back on its port: calls reconnect."""
    a, b = await make("a", connect_timeout=0.5), await make("b")
    b.handle("echo", echo)
    await a.call(addr(b), "echo")
    port = b.port
    for conn in list(b._server_conns):
        conn.abandon()  # no CONNECTION_CLOSE goes out
    assert b._server is not None
    b._server._transport.close()
    b._server = None
    await asyncio.sleep(0.05)  # uvloop closes the socket on a later loop iteration
    b2 = await make("b", state=tmp_path / "b", port=port)
    b2.handle("echo", echo)
    t0 = time.monotonic()
    # The old connection dies of an ICMP "port unreachable" if the client sent anything
    # while the port was closed, else of an unanswered ping: then this call fails.
    with contextlib.suppress(PeerUnavailable):
        await a.call(addr(b2), "echo", timeout=5)
    assert (await a.call(addr(b2), "echo")).result["peer"] == "a"
    assert time.monotonic() - t0 < transport._KEEPALIVE + 0.5 + 1.0


async def test_hung_peer_is_found_out_by_ping(make: Make) -> None:
    """A peer that holds its socket but answers nothing (SIGSTOP): calls fail in ~1.5 s."""
    a, b = await make("a", connect_timeout=0.5), await make("b")
    b.handle("echo", echo)
    await a.call(addr(b), "echo")
    for conn in list(b._server_conns):
        conn.abandon()  # deaf and mute, like a stopped process
    t0 = time.monotonic()
    with pytest.raises(PeerUnavailable, match="ping"):
        await a.call(addr(b), "echo", timeout=5)
    assert time.monotonic() - t0 < transport._KEEPALIVE + 0.5 + 1.0
    assert (await a.call(addr(b), "echo")).result["peer"] == "a"  # a new connection


async def test_server_stop_fails_calls_in_flight(make: Make) -> None:
    a, b = await make("a"), await make("b")
    started, cancelled = asyncio.Event(), asyncio.Event()
    b.handle("hang", await _hanging(started, cancelled))
    task = asyncio.create_task(a.call(addr(b), "hang"))
    await asyncio.wait_for(started.wait(), 2)
    t0 = time.monotonic()
    await b.stop()
    assert cancelled.is_set()
    with pytest.raises(PeerUnavailable):
        await task
    assert time.monotonic() - t0 < 2


async def test_client_stop_fails_its_calls(make: Make) -> None:
    a, b = await make("a"), await make("b")
    started, cancelled = asyncio.Event(), asyncio.Event()
    b.handle("hang", await _hanging(started, cancelled))
    task = asyncio.create_task(a.call(addr(b), "hang"))
    await asyncio.wait_for(started.wait(), 2)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as hole:
        hole.bind(("127.0.0.1", 0))
        connecting = asyncio.create_task(a.call(f"127.0.0.1:{hole.getsockname()[1]}", "x"))
        await asyncio.sleep(0.05)
        await a.stop()
        for t in (task, connecting):
            with pytest.raises(PeerUnavailable):
                await t
    with pytest.raises(PeerUnavailable, match="stopped"):
        await a.call(addr(b), "hang")


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_a_peer_that_called_is_tried_again_at_once(
    make: Make, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Nodes starting together try each other before all of them listen. Once the late
    one has called (forgive), the next call connects at once instead of failing on the
    backoff; on_connected hears of the connection."""
    monkeypatch.setattr(transport, "_BACKOFF_MIN", 3600.0)
    a = await make("a")
    port = _free_udp_port()
    late = f"127.0.0.1:{port}"
    with pytest.raises(PeerUnavailable, match="refused"):
        await a.call(late, "echo")
    b = await make("b", state=tmp_path / "b", port=port)
    b.handle("echo", echo)
    reached: list[str] = []
    a.on_connected = reached.append
    with pytest.raises(PeerUnavailable, match="retrying"):
        await a.call(late, "echo")
    assert reached == []
    a.forgive(late)
    assert (await a.call(late, "echo")).result["peer"] == "a"
    assert reached == [late]


async def test_peer_down_fails_fast(make: Make) -> None:
    a = await make("a", connect_timeout=0.5)
    port = _free_udp_port()
    t0 = time.monotonic()
    with pytest.raises(PeerUnavailable, match="refused"):
        await a.call(f"127.0.0.1:{port}", "echo")  # ICMP port unreachable: at once
    assert time.monotonic() - t0 < 1
    with pytest.raises(PeerUnavailable, match="retrying"):
        await a.call(f"127.0.0.1:{port}", "echo")  # backing off: no new attempt
    # A port that takes datagrams but never answers (a hung node): connect_timeout.
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as hole:
        hole.bind(("127.0.0.1", 0))
        t0 = time.monotonic()
        with pytest.raises(PeerUnavailable, match=r"no connection within 0\.5 s"):
            await a.call(f"127.0.0.1:{hole.getsockname()[1]}", "echo", timeout=5)
        assert 0.4 < time.monotonic() - t0 < 2.5


async def test_certificate_is_persisted_and_reused(make: Make, tmp_path: Path) -> None:
    state = tmp_path / "state"
    first = Transport(node_id="n", secret=SECRET, state_dir=str(state))
    await first.start()
    cert = (state / CERT_FILE).read_bytes()
    assert stat.S_IMODE((state / KEY_FILE).stat().st_mode) == 0o600
    await first.stop()
    again = await make("n", state=state)
    assert again.certificate_fingerprint == first.certificate_fingerprint
    assert (state / CERT_FILE).read_bytes() == cert
    peer = await make("peer")
    again.handle("echo", echo)
    assert (await peer.call(addr(again), "echo")).result["peer"] == "peer"


async def test_unknown_frame_version_is_refused(make: Make) -> None:
    a, b = await make("a"), await make("b")
    b.handle("echo", echo)
    await a.call(addr(b), "echo")
    conn = await a._connection(addr(b))
    head = frames.encode_head(Kind.REQUEST, {"method": "echo", "args": {}}, 3, version=99)
    frame = await conn.request(head, b"abc")
    with pytest.raises(RpcError) as err:
        transport._result(frame)
    assert err.value.code == "UnsupportedVersion" and "99" in err.value.message
    # Oversized declared bodies are refused from the prefix, before any allocation.
    huge = frames.PREFIX.pack(frames.MAGIC, frames.VERSION, Kind.REQUEST, 2, frames.MAX_BODY + 1)
    with pytest.raises(RpcError) as err:
        transport._result(await conn.request(huge + b"{}", b""))
    assert err.value.code == "FrameTooLarge"
    assert (await a.call(addr(b), "echo", {"ok": 1})).result["args"] == {"ok": 1}
    with pytest.raises(ValueError):
        await a.call(addr(b), "echo", {}, bytearray(frames.MAX_BODY + 1))


def test_frame_reader() -> None:
    head = frames.encode_head(Kind.RESPONSE, {"result": {"a": 1}}, 5)
    reader = FrameReader(expect=(Kind.RESPONSE,))
    data = head + b"hello"
    for i in range(len(data) - 1):
        assert reader.feed(data[i : i + 1], False) is None
    frame = reader.feed(data[-1:], True)
    assert frame is not None and frame.header == {"result": {"a": 1}} and frame.body == b"hello"
    for bad, code in [
        (head + b"hello!", "BadFrame"),  # past the declared end
        (head + b"hell", "BadFrame"),  # stream ends early
        (b"XX" + head[2:] + b"hello", "BadFrame"),  # magic
        (frames.encode_head(Kind.RESPONSE, {}, 0, version=2), "UnsupportedVersion"),
        (frames.encode_head(Kind.REQUEST, {}, 0), "BadFrame"),  # not expected here
    ]:
        with pytest.raises(FrameError) as err:
            FrameReader(expect=(Kind.RESPONSE,)).feed(bad, True)
        assert err.value.code == code


async def test_sender_waits_for_credit(make: Make, monkeypatch: pytest.MonkeyPatch) -> None:
    """Body chunks go into aioquic only while less than CHUNK is still unsent."""
    a, b = await make("a"), await make("b")
    b.handle("echo", echo)
    unsent: list[int] = []
    write = transport._Connection._write

    def spy(self: Any, sid: int, data: Any, end: bool) -> None:
        if self.is_client and len(data) == CHUNK:
            unsent.append(self._queued() - len(data))  # before this chunk
        write(self, sid, data, end)

    monkeypatch.setattr(transport._Connection, "_write", spy)
    body = os.urandom(8 << 20)
    assert bytes((await a.call(addr(b), "echo", {}, body)).body) == body
    assert len(unsent) >= 31 and max(unsent) < CHUNK


def test_settings_are_checked(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with pytest.raises(ValueError, match="max_datagram_size"):
        Transport(node_id="n", secret=SECRET, state_dir=str(tmp_path), max_datagram_size=1000)
    big = Transport(node_id="n", secret=SECRET, state_dir=str(tmp_path), max_datagram_size=65000)
    assert big.max_datagram_size == transport.MAX_DATAGRAM_SIZE
    assert "more than aioquic handles" in caplog.text
    with pytest.raises(ValueError, match="secret"):
        Transport(node_id="n", secret="", state_dir=str(tmp_path))
