"""Node-to-node RPC over QUIC (aioquic), in the same asyncio event loop as the HTTP app.

One `Transport` per node listens on a UDP port and keeps one persistent, authenticated
QUIC connection per peer address, opened on first use and shared by every call; each
call is one bidirectional QUIC stream carrying one request frame and one response or
error frame (see cluster.frames), so concurrent calls multiplex on the connection
without head-of-line blocking between them.

Errors. `call` raises RpcError(code, message) when the peer answered with an error: the
handler raised an exception with a string `code` attribute (sent with its `message`
attribute or str(exc)), or any other exception ("InternalError", logged on the serving
node), or the call was refused: "UnknownMethod", "AccessDenied" (connection not
authenticated), "BadFrame", "UnsupportedVersion", "FrameTooLarge". It raises
PeerUnavailable when there is no answer: cannot connect (refused, no handshake within
connect_timeout), AuthenticationFailed (a subclass: wrong secret on either side), no
reply within the timeout, connection lost or closed by the peer, transport stopped. A
call that timed out or was cancelled may still have run on the peer: its handler is
cancelled (the stream is reset), but whatever it already did stays done. Calling with a
body above frames.MAX_BODY raises ValueError, with args that are not JSON TypeError.

Connections. Lost connections are reopened by the next call. A failed connect makes
calls to that address fail at once for a backoff (50 ms doubling to 1 s) instead of each
waiting connect_timeout. A client connection silent for half a second is pinged every
second, and closed if the ping is not answered within connect_timeout, so a peer that
died without closing (SIGKILL, power loss) or hangs (SIGSTOP) fails its calls in
seconds instead of at their timeout, and the next call reconnects.

Authentication. TLS is there because QUIC requires it (each node has a self-signed
certificate in its state directory, see cluster.tls); nobody checks certificates against
a CA. Instead both ends prove they know the cluster secret, over the first two streams of
every connection, before any RPC is served, with proofs bound to the TLS session
(cluster.handshake describes the exchange and holds both sides). A wrong secret gives
the caller `AuthenticationFailed`, a `PeerUnavailable`: a node without the secret gets no
RPC served, and a server without it cannot answer. `Request.peer` is the node id the
client put in its hello, covered by its proof.

Flow control. Bodies go out in CHUNK pieces, each written into aioquic only once less
than a chunk is queued there unsent on the connection (waiting for the peer's stream and
connection credit and the congestion window); concurrent bodies take turns, a chunk
each. So a slow peer holds back its senders instead of growing a queue. The receiver
allocates one buffer of the declared length (at most frames.MAX_BODY) and fills it as
data arrives; `Request.body` / `Reply.body` is that buffer (a bytearray: the bytes API
without a copy), or b"" when empty.

Datagram size. aioquic does its per-packet work in Python (some 100 us per packet sent
or received, whatever its size), so throughput is set by the packet size far more than
by the link: on loopback one connection moves about 15 MB/s with 1200-byte datagrams
(the QUIC minimum, aioquic's default), 100 MB/s with 8952 and 130-180 MB/s with 16384
(bench/quic.py). 16384 is the most aioquic 1.7 can do (MAX_DATAGRAM_SIZE below) and the
default: right for nodes on one host (the loopback MTU is 64 KiB), and good on a LAN. On
a network, datagrams above the path MTU are fragmented by the kernel into MTU-sized IP
fragments (2 with jumbo frames, MTU 9000; 12 on standard 1500-byte Ethernet). A clean
LAN carries them fine, but losing any fragment loses the whole datagram, and some
firewalls drop fragments (then no connection gets through its handshake:
PeerUnavailable). So on a jumbo-frame LAN 8952 (9000 minus IPv6 and UDP headers) avoids
fragments at about 2/3 of the speed, and where fragments are lost or dropped use 1452
(1500 minus the same), at about a tenth. A few calls in flight move more than one (the
next body is queued while the last one's ACKs come back); more connections to one peer
do not help, the event loop's CPU being the limit.

Bulk lane. That is why the calls that carry shard payload (`call(..., bulk=True)`, made
by cluster.drive_rpc) do not go over QUIC when the peer offers its bulk lane: TLS over a
TCP connection on the same address and port number, negotiated over this connection's
"_lane.offer" and authenticated with the cluster secret (cluster.lane), which moves
hundreds of MB/s whatever the datagram size. Calls to a peer without one (an older
node, a port taken or blocked) go over QUIC as before. `payload_counts` and `status()`
say which path the bulk calls to each peer took; that bookkeeping is cluster.bulk.

Layout. This module keeps the connections: `Transport`, one `_Connection` per QUIC
connection (streams, frames, flow credit, client requests, serving requests, keepalive)
and the batching server endpoint. The request, reply and errors are cluster.rpc
(re-exported here), the secret proof cluster.handshake, the bulk lane side cluster.bulk.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from typing import Any

from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.asyncio.server import QuicServer
from aioquic.quic import events
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection

from shoal.cluster import frames
from shoal.cluster.bulk import LANE_OFFER, Lanes, PayloadCounts
from shoal.cluster.frames import Frame, FrameError, FrameReader, Kind
from shoal.cluster.handshake import ACCESS_DENIED, AUTH_HELLO, AUTH_PROOF, Handshake, KeyLog
from shoal.cluster.rpc import (  # and re-exported: callers import them from here
    AuthenticationFailed,
    CallObserver,
    Handler,
    PeerUnavailable,
    Reply,
    Request,
    RpcError,
    answer,
    retrieve,
    split_address,
)
from shoal.cluster.tls import fingerprint, load_or_create_certificate

log = logging.getLogger("shoal.cluster.transport")

ALPN = "shoal-cluster/1"
DEFAULT_MAX_DATAGRAM_SIZE = 16384
# aioquic (1.7) writes a STREAM frame's length as a 2-byte varint, so a frame's data must
# stay below 16384 bytes; datagrams above about 16,414 bytes get frames whose length
# field wraps: the peer closes the connection ("Failed to parse frame") or, worse, the
# call stalls. 16 KiB leaves a margin for the packet header and AEAD tag.
MAX_DATAGRAM_SIZE = 16384
CHUNK = 256 << 10  # body bytes handed to aioquic at a time; also the connection's unsent bound
_MAX_DATA = 16 << 20  # initial connection-wide receive window (aioquic doubles it as used)
_MAX_STREAM_DATA = 4 << 20  # initial per-stream receive window: a shard fits without waiting
_SOCKET_BUFFER = 4 << 20  # SO_RCVBUF/SO_SNDBUF asked for: bursts of large datagrams
_IDLE_TIMEOUT = 30.0
_BATCH = 64  # datagrams read off a socket before answering them (ACKs, more data) at once
_KEEPALIVE = 1.0  # how often a client connection checks it heard from its peer lately
_BACKOFF_MIN, _BACKOFF_MAX = 0.05, 1.0  # after a failed connect, calls fail fast this long
_CANCELLED = 0x10  # application error code on streams reset by a cancelled call


class _UnknownMethod(Exception):
    """Refuses a call no handler serves (after waiting for the node's start to finish)."""

    code = "UnknownMethod"


class _Stopped(Exception):
    """The peer no longer reads this stream (STOP_SENDING): stop writing to it."""


def _drain(sock: socket.socket) -> Iterator[tuple[bytes, Any]]:
    """The datagrams already queued on `sock` (at most _BATCH), without blocking."""
    for _ in range(_BATCH):
        try:
            yield sock.recvfrom(1 << 16)
        except (BlockingIOError, InterruptedError):
            return


class _Server(QuicServer):
    """aioquic's server endpoint, reading datagrams in batches.

    aioquic answers every datagram as it arrives (an ACK, or more data): the receiver
    built and sent a packet per packet received, half its CPU time. Reading what the
    socket already holds first and then letting each connection transmit once cuts
    that, and the sender gets fewer, larger ACKs to process. The transmit is left to
    call_soon, because uvloop reads the queued datagrams itself (up to 32 per wakeup,
    one datagram_received each, so the drain finds nothing): then they share one
    transmit too. The standard loop reads one datagram per wakeup; the drain covers it.
    """

    def __init__(self, *, sock: socket.socket, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._sock = sock
        self.batch: set[_Connection] | None = None

    def datagram_received(self, data: bytes | str, addr: Any) -> None:
        self.batch = set()
        try:
            super().datagram_received(data, addr)
            with contextlib.suppress(OSError):
                for more, more_addr in _drain(self._sock):
                    super().datagram_received(more, more_addr)
        finally:
            batch, self.batch = self.batch, None
            for conn in batch:
                conn._transmit_soon()


def _udp_socket(family: int) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_DGRAM)
    for opt in (socket.SO_RCVBUF, socket.SO_SNDBUF):
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, opt, _SOCKET_BUFFER)
    sock.setblocking(False)
    return sock


class _ConnectedSend:
    """A client's connected UDP transport, as aioquic uses it.

    aioquic passes the peer address to every sendto(); uvloop refuses an address on a
    connected socket (EISCONN, reported to error_received, so nothing is ever sent).
    """

    def __init__(self, transport: asyncio.DatagramTransport) -> None:
        self._transport = transport

    def sendto(self, data: bytes, addr: Any = None) -> None:
        self._transport.sendto(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


@dataclass
class _Call:
    future: asyncio.Future[Frame]
    reader: FrameReader


class _Connection(QuicConnectionProtocol):
    """One QUIC connection, either side: frames on streams, auth (cluster.handshake),
    credit-based sending.

    A few aioquic internals are read here because aioquic has no public API for them: a
    stream's sent offset (`_quic._streams`), whether the peer has begun closing
    (`_quic._close_event`) and the handshake waiter and retransmission timer of the base
    protocol. They are confined to the small helpers below.
    """

    def __init__(
        self,
        quic: QuicConnection,
        stream_handler: Any = None,
        *,
        owner: Transport,
        keylog: KeyLog,
        address: str = "",
        sock: socket.socket | None = None,
    ) -> None:
        super().__init__(quic)
        self._sock = sock  # a client's own socket, drained like _Server does
        self._owner = owner
        self.address = address
        self.is_client = quic.configuration.is_client
        self.peer_id: str | None = None
        self.authenticated = False
        self.closed: PeerUnavailable | None = None
        self.last_received = self._loop.time()
        self._dead = False
        self._calls: dict[int, _Call] = {}
        self._incoming: dict[int, FrameReader] = {}
        self._tasks: dict[int, asyncio.Task[None]] = {}
        self._ignored: set[int] = set()
        self._written: dict[int, int] = {}
        self._credit: OrderedDict[int, asyncio.Future[None]] = OrderedDict()
        self._handshake = Handshake(self, quic, keylog, node_id=owner.node_id, key=owner._key)
        self._keepalive: asyncio.Task[None] | None = None
        self._probe = asyncio.Event()
        if not self.is_client:
            owner._server_conns.add(self)

    # -- aioquic hooks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if self._sock is not None:
            transport = _ConnectedSend(transport)  # type: ignore[arg-type]
        super().connection_made(transport)

    def datagram_received(self, data: bytes | str, addr: Any) -> None:
        self._receive(data, addr)
        server = self._owner._server
        if not self.is_client and server is not None and server.batch is not None:
            server.batch.add(self)  # transmits after the batch
            return
        if self._sock is not None:
            try:
                for more, more_addr in _drain(self._sock):
                    self._receive(more, more_addr)
            except OSError as exc:
                self.error_received(exc)
        self._transmit_soon()  # once for everything read in this loop iteration (_Server)

    def _receive(self, data: bytes | str, addr: Any) -> None:
        if self._dead:
            return
        self.last_received = self._loop.time()
        self._quic.receive_datagram(data, addr, now=self._loop.time())  # type: ignore[arg-type]
        self._process_events()
        close = self._quic._close_event
        if close is not None and self.closed is None:
            # The peer is closing (or we are): aioquic reports it only after draining
            # (3 PTOs); calls must not start on this connection in the meantime.
            self._lost(self._close_error(close))
            if self.is_client:
                self.abandon()

    def error_received(self, exc: Exception) -> None:
        # A connected UDP socket reports ICMP port unreachable: nothing listens there.
        if isinstance(exc, ConnectionRefusedError) and self.is_client:
            self.close_now(PeerUnavailable(f"{self.address}: connection refused"))

    def transmit(self) -> None:
        if self._dead:
            return
        super().transmit()
        if self._credit:
            # Wake writers in turn while less than a chunk is queued in aioquic.
            budget = CHUNK - self._queued()
            while self._credit and budget > 0:
                _, fut = self._credit.popitem(last=False)
                if not fut.done():
                    fut.set_result(None)
                    budget -= CHUNK

    def quic_event_received(self, event: events.QuicEvent) -> None:
        if isinstance(event, events.StreamDataReceived):
            if self.is_client:
                self._client_data(event.stream_id, event.data, event.end_stream)
            else:
                self._server_data(event.stream_id, event.data, event.end_stream)
        elif isinstance(event, events.StopSendingReceived):
            self._stop_writing(event.stream_id)
            self._cancel_handler(event.stream_id)
        elif isinstance(event, events.StreamReset):
            self._stream_reset(event.stream_id)
        elif isinstance(event, events.HandshakeCompleted) and not self.is_client:
            self._handshake.start_deadline(2 * self._owner.connect_timeout)
        elif isinstance(event, events.ConnectionTerminated):
            self._lost(self._close_error(event))
            if self.is_client:
                self.abandon()

    # -- lifecycle

    def _close_error(self, close: events.ConnectionTerminated) -> PeerUnavailable:
        reason = close.reason_phrase or f"error code {close.error_code:#x}"
        if close.error_code == ACCESS_DENIED:
            return AuthenticationFailed(f"{self.address or 'peer'}: {reason}")
        return PeerUnavailable(f"{self.address or 'peer'}: connection closed ({reason})")

    def _lost(self, exc: PeerUnavailable) -> None:
        """Fail everything in flight on this connection; idempotent."""
        if self.closed is not None:
            return
        self.closed = exc
        for call in self._calls.values():
            if not call.future.done():
                call.future.set_exception(exc)
        for fut in self._credit.values():
            if not fut.done():
                fut.set_exception(exc)
        for task in self._tasks.values():
            task.cancel()
        self._handshake.cancel_deadline()
        if self._keepalive is not None and self._keepalive is not asyncio.current_task():
            self._keepalive.cancel()
        self._probe.set()
        self._owner._forget(self)

    def close_now(self, exc: PeerUnavailable, code: int = 0, reason: str = "") -> None:
        """Fail what is in flight, send CONNECTION_CLOSE, and (client) release the socket."""
        self._lost(exc)
        if not self._dead:
            self.close(error_code=code, reason_phrase=reason)
        if self.is_client:
            self.abandon()

    def abandon(self) -> None:
        """Stop all activity now: no timers, no sends; a client closes its UDP socket."""
        self._dead = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        waiter = self._connected_waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(self.closed or PeerUnavailable(f"{self.address}: closed"))
        if self.is_client and self._transport is not None:
            self._transport.close()

    def handler_tasks(self) -> list[asyncio.Task[None]]:
        return list(self._tasks.values())

    def start_keepalive(self) -> None:
        self._keepalive = self._loop.create_task(self._keepalive_loop())

    def probe(self) -> None:
        """Check liveness now (after a call timed out), not at the next keepalive tick."""
        self._probe.set()

    async def _keepalive_loop(self) -> None:
        """Ping when silent, so a peer that died or hangs is noticed within seconds.

        Without it a peer killed without closing (SIGKILL, power loss) would look alive
        until the idle timeout, and each call to it would wait for its full RPC timeout.
        """
        while self.closed is None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(_KEEPALIVE):
                    await self._probe.wait()
            probing = self._probe.is_set()
            self._probe.clear()
            if self.closed is not None:
                return
            if not probing and self._loop.time() - self.last_received < _KEEPALIVE / 2:
                continue
            try:
                async with asyncio.timeout(self._owner.connect_timeout):
                    await self.ping()
            except (TimeoutError, ConnectionError):
                self.close_now(
                    PeerUnavailable(
                        f"{self.address}: no answer to a ping within "
                        f"{self._owner.connect_timeout:g} s"
                    )
                )
                return

    # -- sending with credit

    def _unsent(self, sid: int) -> int:
        """Bytes written to the stream that aioquic has not sent yet (waiting for credit)."""
        stream = self._quic._streams.get(sid)
        if stream is None:
            return 0
        return self._written.get(sid, 0) - stream.sender.highest_offset

    def _queued(self) -> int:
        """Unsent bytes over all the streams being written."""
        return sum(self._unsent(sid) for sid in self._written)

    async def _send(self, sid: int, head: bytes, body: bytes | bytearray | memoryview) -> None:
        """Write one frame; awaits credit between chunks. Raises _Stopped or PeerUnavailable.

        The budget is per connection, not per stream: aioquic visits every stream holding
        unsent data for every packet it builds, so 16 bodies queued at once cost 16 visits
        a packet (a third of the sender's time). Writers take turns instead, a chunk each,
        so about one stream has data queued and the bodies still interleave.
        """
        view = memoryview(body).cast("B")
        size = len(view)
        self._written[sid] = len(head)
        try:
            self._write(sid, head, size == 0)
            off = 0
            while off < size:
                if self._credit or self._queued() >= CHUNK:
                    fut = self._credit[sid] = self._loop.create_future()
                    try:
                        await fut
                    finally:
                        self._credit.pop(sid, None)
                piece = view[off : off + CHUNK]
                off += len(piece)
                self._written[sid] += len(piece)
                self._write(sid, piece, off >= size)
        finally:
            self._written.pop(sid, None)

    def _write(self, sid: int, data: bytes | memoryview, end: bool) -> None:
        if self.closed is not None:
            raise self.closed
        try:
            self._quic.send_stream_data(sid, data, end_stream=end)  # type: ignore[arg-type]
        except (RuntimeError, ValueError):
            raise _Stopped() from None  # reset after the peer's STOP_SENDING
        self._transmit_soon()

    def _stop_writing(self, sid: int) -> None:
        fut = self._credit.pop(sid, None)
        if fut is not None and not fut.done():
            fut.set_exception(_Stopped())

    def _reset(self, sid: int, *, stop_reading: bool) -> None:
        frames = [self._quic.reset_stream]
        if stop_reading:
            frames.append(self._quic.stop_stream)
        for send in frames:  # each on its own: one refused does not skip the other
            try:
                send(sid, _CANCELLED)
            except Exception as exc:  # aioquic refuses streams already finished or unknown
                log.debug("stream %d: %s not sent: %s", sid, send.__name__, exc)
        if not self._dead:
            self._transmit_soon()

    # -- client side

    async def request(self, head: bytes, body: bytes | bytearray | memoryview) -> Frame:
        """Send one request frame on a new stream and wait for its response or error frame."""
        if self.closed is not None:
            raise self.closed
        if self._keepalive is not None and self._loop.time() - self.last_received > _KEEPALIVE:
            self.probe()  # silent for a while: make sure the peer is still there
        sid = self._quic.get_next_available_stream_id()
        call = _Call(self._loop.create_future(), FrameReader(expect=(Kind.RESPONSE, Kind.ERROR)))
        self._calls[sid] = call
        try:
            # _send writes the head before its first await, which claims the stream id.
            with contextlib.suppress(_Stopped):  # refused early: its error frame says why
                await self._send(sid, head, body)
            return await call.future
        except BaseException:
            if not call.future.done() or call.future.cancelled():
                self._reset(sid, stop_reading=True)  # the server cancels its handler
            raise
        finally:
            del self._calls[sid]
            if call.future.done() and not call.future.cancelled():
                call.future.exception()  # retrieved: failures are re-raised above

    async def rpc(self, method: str, args: dict[str, Any]) -> dict[str, Any]:
        frame = await self.request(
            frames.encode_head(Kind.REQUEST, {"method": method, "args": args}, 0), b""
        )
        return _result(frame)

    def _client_data(self, sid: int, data: bytes, end: bool) -> None:
        call = self._calls.get(sid)
        if call is None or call.future.done():
            return  # a call given up on, or a stream the server opened: not ours to read
        try:
            frame = call.reader.feed(data, end)
        except FrameError as exc:
            call.future.set_exception(RpcError(exc.code, f"bad reply: {exc.message}"))
            self._reset(sid, stop_reading=True)
            return
        if frame is not None:
            call.future.set_result(frame)

    async def authenticate(self) -> None:
        """The client's half of the secret proof (cluster.handshake)."""
        await self._handshake.authenticate()

    # -- server side

    def _server_data(self, sid: int, data: bytes, end: bool) -> None:
        if sid in self._ignored:
            if end:
                self._ignored.discard(sid)
            return
        reader = self._incoming.get(sid)
        if reader is None:
            if sid % 4 != 0 or sid in self._tasks:
                return  # not a client-initiated bidirectional stream, or a late duplicate
            reader = self._incoming[sid] = FrameReader(expect=(Kind.REQUEST,))
        try:
            frame = reader.feed(data, end)
        except FrameError as exc:
            del self._incoming[sid]
            self.refuse(sid, exc.code, exc.message, reading=not end)
            return
        if frame is not None:
            del self._incoming[sid]
            self._dispatch(sid, frame)

    def refuse(self, sid: int, code: str, message: str, *, reading: bool = False) -> None:
        """Answer with an error frame; stop the rest of the request if it is still coming."""
        if reading:
            self._ignored.add(sid)
            # ValueError: the stream is gone already (the peer closed it), nothing to stop.
            with contextlib.suppress(ValueError):
                self._quic.stop_stream(sid, _CANCELLED)
        self.answer(sid, frames.error_head(code, message))

    def answer(self, sid: int, head: bytes) -> None:
        with contextlib.suppress(_Stopped, PeerUnavailable):
            self._write(sid, head, True)

    def _dispatch(self, sid: int, frame: Frame) -> None:
        method, args = frame.header.get("method"), frame.header.get("args", {})
        if not isinstance(method, str) or not isinstance(args, dict):
            self.refuse(sid, "BadFrame", "a request needs a method name and an args object")
        elif method == AUTH_HELLO:
            self._handshake.hello(sid, args)
        elif method == AUTH_PROOF:
            self._handshake.check_proof(sid, args)
        elif not self.authenticated:
            self.refuse(sid, "AccessDenied", "this connection has not authenticated")
        elif (handler := self._owner.handler_for(method)) is None:
            self.refuse(sid, "UnknownMethod", f"no handler for {method!r}")
        else:
            assert self.peer_id is not None
            request = Request(method, args, frame.body, self.peer_id)  # type: ignore[arg-type]
            task = self._loop.create_task(self._serve(sid, handler, request))
            self._tasks[sid] = task
            task.add_done_callback(lambda _: self._tasks.pop(sid, None))

    async def _serve(self, sid: int, handler: Handler, request: Request) -> None:
        try:
            head, body = await answer(handler, request)
            await self._send(sid, head, body)
        except (_Stopped, PeerUnavailable):
            pass  # the caller gave up, or the connection is gone
        except asyncio.CancelledError:
            self._reset(sid, stop_reading=False)
            raise

    def _cancel_handler(self, sid: int) -> None:
        task = self._tasks.pop(sid, None)
        if task is not None:
            task.cancel()

    def _stream_reset(self, sid: int) -> None:
        self._ignored.discard(sid)
        self._incoming.pop(sid, None)
        self._cancel_handler(sid)
        call = self._calls.get(sid)
        if call is not None and not call.future.done():
            call.future.set_exception(PeerUnavailable(f"{self.address}: call reset by the peer"))


def _result(frame: Frame) -> dict[str, Any]:
    if frame.kind is Kind.ERROR:
        raise RpcError(str(frame.header.get("code")), str(frame.header.get("message", "")))
    result = frame.header.get("result")
    if not isinstance(result, dict):
        raise RpcError("BadFrame", "a response needs a result object")
    return result


@dataclass
class _Peer:
    """The persistent connection to one address, and the backoff after failed connects."""

    conn: _Connection | None = None
    connecting: asyncio.Task[_Connection] | None = None
    failures: int = 0
    retry_at: float = 0.0
    last_error: str = ""


class Transport:
    """The node's QUIC endpoint: serves registered handlers and calls other nodes."""

    def __init__(
        self,
        *,
        node_id: str,
        secret: str,
        host: str = "127.0.0.1",
        port: int = 0,
        state_dir: str,
        max_datagram_size: int = DEFAULT_MAX_DATAGRAM_SIZE,
        rpc_timeout: float = 10.0,
        connect_timeout: float = 3.0,
        bulk_lane: bool = True,
    ) -> None:
        if not secret:
            raise ValueError("the cluster secret must not be empty")
        if max_datagram_size < 1200:
            raise ValueError(
                f"max_datagram_size must be at least 1200 (QUIC), not {max_datagram_size}"
            )
        if max_datagram_size > MAX_DATAGRAM_SIZE:
            log.warning(
                "max_datagram_size %d is more than aioquic handles; using %d",
                max_datagram_size,
                MAX_DATAGRAM_SIZE,
            )
            max_datagram_size = MAX_DATAGRAM_SIZE
        self.node_id = node_id
        self._key = secret.encode()
        self.host = host
        self.port = port
        self.state_dir = state_dir
        self.max_datagram_size = max_datagram_size
        self.rpc_timeout = rpc_timeout
        self.connect_timeout = connect_timeout
        self.certificate_fingerprint = ""
        self._handlers: dict[str, Handler] = {}
        self._server: _Server | None = None
        self._server_conns: set[_Connection] = set()
        self._peers: dict[str, _Peer] = {}
        self._keylog = KeyLog()
        self._stopped = False
        self.observer: CallObserver | None = None
        #: Called with a peer's address each time a connection to it is established.
        self.on_connected: Callable[[str], None] | None = None
        #: Serve and use the bulk lane (cluster.lane) for bulk calls; False: QUIC only.
        self.bulk_lane = bulk_lane
        self._lanes = Lanes(self, self._key)
        self._handlers[LANE_OFFER] = self._lanes.offer
        #: Set once every handler is registered (see expect_handlers).
        self._serving = asyncio.Event()
        self._serving.set()

    @property
    def lane_port(self) -> int:
        """The TCP port this node's lane offers; 0 while it has none to offer."""
        return self._lanes.port

    @lane_port.setter
    def lane_port(self, port: int) -> None:  # a test points it at a proxy
        self._lanes.port = port

    @property
    def payload_counts(self) -> dict[str, PayloadCounts]:
        """Per peer address: the bulk calls made to it, by the path they took."""
        return self._lanes.counts

    def status(self) -> dict[str, Any]:
        """The bulk lane's state: this node's lane port, and per peer address the lane's
        state and the path its bulk calls took (counts and body bytes since the start)."""
        return self._lanes.status()

    def _configuration(self, *, is_client: bool, keylog: KeyLog) -> QuicConfiguration:
        return QuicConfiguration(
            is_client=is_client,
            alpn_protocols=[ALPN],
            verify_mode=ssl.CERT_NONE,  # peers prove the cluster secret instead
            max_datagram_size=self.max_datagram_size,
            max_data=_MAX_DATA,
            max_stream_data=_MAX_STREAM_DATA,
            idle_timeout=_IDLE_TIMEOUT,
            secrets_log_file=keylog,  # type: ignore[arg-type]
        )

    async def start(self) -> None:
        """Listen on host:port (port 0 picks a free one, then `port` holds it)."""
        cert, key = load_or_create_certificate(self.state_dir)
        self.certificate_fingerprint = fingerprint(cert)
        config = self._configuration(is_client=False, keylog=self._keylog)
        config.load_cert_chain(cert, key)
        loop = asyncio.get_running_loop()
        infos = await loop.getaddrinfo(
            self.host, self.port, type=socket.SOCK_DGRAM, flags=socket.AI_PASSIVE
        )
        family, addr = infos[0][0], infos[0][4]
        sock = _udp_socket(family)
        try:
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            sock.bind(addr)
        except OSError:
            sock.close()
            raise
        _, server = await loop.create_datagram_endpoint(
            lambda: _Server(
                sock=sock,
                configuration=config,
                create_protocol=partial(_Connection, owner=self, keylog=self._keylog),
            ),
            sock=sock,
        )
        self._server = server
        self.port = sock.getsockname()[1]
        self._stopped = False
        if self.bulk_lane:
            await self._lanes.start(str(cert), str(key))

    async def stop(self) -> None:
        """Close every connection and the endpoint; calls in flight get PeerUnavailable."""
        self._stopped = True
        exc = PeerUnavailable(f"node {self.node_id}: transport stopped")
        conns = [p.conn for p in self._peers.values() if p.conn is not None]
        for peer in self._peers.values():
            if peer.connecting is not None:
                peer.connecting.cancel()
        conns += self._server_conns
        tasks = [t for c in conns for t in c.handler_tasks()]
        for conn in conns:
            conn.close_now(exc, 0, "node stopping")
            conn.abandon()
        self._peers.clear()
        self._server_conns.clear()
        if self._server is not None:
            self._server.close()
            self._server = None
        await self._lanes.stop()
        await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.sleep(0)  # let the sockets' close callbacks run

    def expect_handlers(self) -> None:
        """Calls arriving before `serving()` for a method not yet handled wait for it (up
        to rpc_timeout) instead of being refused: a peer further along in its start may
        call this node's drives before this node has registered their service, and a
        refusal would count against those drives' health."""
        self._serving.clear()

    def serving(self) -> None:
        """Every handler is registered: unknown methods are refused at once from now on."""
        self._serving.set()

    def handler_for(self, method: str) -> Handler | None:
        """`method`'s handler; while handlers are expected, one that waits for it."""
        handler = self._handlers.get(method)
        if handler is not None or self._serving.is_set():
            return handler

        async def when_registered(request: Request) -> Reply:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.rpc_timeout):
                    await self._serving.wait()
            registered = self._handlers.get(method)
            if registered is None:
                raise _UnknownMethod(f"no handler for {method!r}")
            return await registered(request)

        return when_registered

    def handle(self, method: str, handler: Handler) -> None:
        """Serve `method` with `handler` (replacing any earlier one); "_" names are reserved."""
        if method.startswith("_"):
            raise ValueError(f"method names starting with '_' are reserved: {method!r}")
        self._handlers[method] = handler

    async def call(
        self,
        address: str,
        method: str,
        args: dict[str, Any] | None = None,
        body: bytes = b"",
        *,
        timeout: float | None = None,
        bulk: bool = False,
    ) -> Reply:
        """Call `method` on the node at "host:port"; see RpcError and PeerUnavailable.

        `timeout` (default rpc_timeout) bounds everything: connecting, sending the body and
        the reply. On timeout or cancellation the stream is reset, which cancels the
        remote handler. `bulk`: the call carries shard payload, so it takes the peer's
        bulk lane when it offers one (cluster.lane), else QUIC.
        """
        if timeout is None:
            timeout = self.rpc_timeout
        try:
            head = frames.encode_head(
                Kind.REQUEST, {"method": method, "args": args or {}}, frames.body_size(body)
            )
        except FrameError as exc:
            raise ValueError(exc.message) from None
        if self._stopped:
            raise PeerUnavailable(f"node {self.node_id}: transport stopped")
        conn: _Connection | None = None
        frame: Frame | None = None
        started = time.perf_counter()
        try:
            async with asyncio.timeout(timeout):
                conn = await self._connection(address)
                if bulk:
                    frame = await self._lanes.request(conn, address, head, body)
                else:
                    frame = await conn.request(head, body)
        except TimeoutError:
            if conn is not None:
                conn.probe()
            raise PeerUnavailable(f"{address}: no reply to {method} within {timeout:g} s") from None
        finally:
            if self.observer is not None:
                got = len(frame.body) if frame is not None and frame.body else 0
                self.observer(method, time.perf_counter() - started, frames.body_size(body), got)
        return Reply(_result(frame), frame.body)  # type: ignore[arg-type]

    def forgive(self, address: str) -> None:
        """The node at `address` just called this one, so it listens: the next call to
        it connects at once rather than failing fast on a backoff begun before it did
        (nodes starting together try each other before all of them listen)."""
        peer = self._peers.get(address)
        if peer is not None:
            peer.retry_at = 0.0

    async def _connection(self, address: str) -> _Connection:
        peer = self._peers.setdefault(address, _Peer())
        if peer.conn is not None and peer.conn.closed is None:
            return peer.conn
        if peer.connecting is None:
            now = asyncio.get_running_loop().time()
            if now < peer.retry_at:
                raise PeerUnavailable(
                    f"{address}: unreachable ({peer.last_error}); "
                    f"retrying in {peer.retry_at - now:.2f} s"
                )
            peer.connecting = asyncio.get_running_loop().create_task(self._connect(address, peer))
            peer.connecting.add_done_callback(retrieve)
        # Shielded: a caller that gives up does not abort the attempt others share.
        connecting = peer.connecting
        try:
            return await asyncio.shield(connecting)
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if connecting.cancelled() and task is not None and not task.cancelling():
                raise PeerUnavailable(f"{address}: connection attempt abandoned") from None
            raise

    async def _connect(self, address: str, peer: _Peer) -> _Connection:
        loop = asyncio.get_running_loop()
        try:
            conn = await self._open(address)
        except PeerUnavailable as exc:
            peer.failures += 1
            peer.retry_at = loop.time() + min(_BACKOFF_MAX, _BACKOFF_MIN * 2 ** (peer.failures - 1))
            peer.last_error = str(exc)
            raise
        finally:
            peer.connecting = None
        peer.failures = 0
        if self._peers.get(address) is peer:
            peer.conn = conn
        conn.start_keepalive()
        if self.bulk_lane:
            self._lanes.connected(conn, address)
        if self.on_connected is not None:
            self.on_connected(address)
        return conn

    async def _open(self, address: str) -> _Connection:
        """A new authenticated connection, within connect_timeout, or PeerUnavailable."""
        loop = asyncio.get_running_loop()
        conn: _Connection | None = None
        try:
            async with asyncio.timeout(self.connect_timeout):
                host, port = split_address(address)
                infos = await loop.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
                family, addr = infos[0][0], infos[0][4]
                sock = _udp_socket(family)
                try:
                    # Connected, so ICMP "port unreachable" comes back as an error at once.
                    sock.connect(addr)
                    addr = sock.getpeername()
                except OSError:
                    sock.close()
                    raise
                keylog = KeyLog()
                quic = QuicConnection(
                    configuration=self._configuration(is_client=True, keylog=keylog)
                )
                _, conn = await loop.create_datagram_endpoint(
                    lambda: _Connection(
                        quic, owner=self, keylog=keylog, address=address, sock=sock
                    ),
                    sock=sock,
                )
                conn.connect(addr)
                await conn.wait_connected()
                await conn.authenticate()
                return conn
        except TimeoutError:
            exc: PeerUnavailable = PeerUnavailable(
                f"{address}: no connection within {self.connect_timeout:g} s"
            )
        except PeerUnavailable as e:
            exc = e
        except (OSError, ValueError) as e:
            exc = PeerUnavailable(f"{address}: cannot connect: {e or type(e).__name__}")
            if conn is not None and conn.closed is not None:
                exc = conn.closed  # the handshake failed: its reason
        except BaseException:  # cancelled (stop()): do not leave the socket open
            if conn is not None:
                conn.close_now(PeerUnavailable(f"{address}: connection attempt abandoned"))
            raise
        if conn is not None:
            conn.close_now(exc)
        raise exc

    def _forget(self, conn: _Connection) -> None:
        self._server_conns.discard(conn)
        self._lanes.forget(conn)
        peer = self._peers.get(conn.address)
        if peer is not None and peer.conn is conn:
            peer.conn = None
