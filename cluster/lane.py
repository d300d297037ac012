"""The bulk lane: shard payloads between nodes over TLS on TCP, beside the QUIC RPC.

Why. aioquic does its per-packet work in Python, so QUIC moves 10-15 MB/s between two
nodes at 1452-byte datagrams (a 1500-byte-MTU LAN) and 40-180 MB/s at 16384; TCP leaves
segmentation, acknowledgement and retransmission to the kernel and TLS record encryption
to OpenSSL, both per large write instead of per packet, whatever the MTU. So membership,
heartbeats and every RPC stay on QUIC (cluster.transport), and only the calls that carry
shards (`Transport.call(..., bulk=True)`) take the lane when the peer offers one. The
README's cluster section has the measurements (bench/quic.py).

Negotiation. Over an authenticated QUIC connection the caller asks "_lane.offer"; the
peer answers the lane's version, its TCP port (the QUIC port number: the lane binds the
same address, TCP instead of UDP) and the SHA-256 fingerprint of its certificate (the one
its QUIC endpoint uses, cluster.tls), or refuses: an older node says UnknownMethod, a node
whose lane could not listen LaneUnavailable. Then calls to it go over QUIC. The offer
lives as long as that QUIC connection; a new connection asks again.

Authentication. The client pins the offered fingerprint: the offer came over a channel
both sides authenticated with the cluster secret, so only that node holds the key. Then
both prove the cluster secret as on QUIC (hello with nonces, server proof, client proof,
see cluster.handshake), bound to the server certificate's fingerprint (RFC 5929's
tls-server-end-point binding: a relay presents another certificate, so proofs made
through it do not verify at either end). The server serves nothing before the client's
proof, accepts no frame with a body (nor a header above 4 KiB) before it, closes a
connection that has not proven it within the auth timeout, and keeps at most
MAX_CONNECTIONS. The secret never travels and is never logged.

Calls. One call at a time per connection: a request frame, then a response or error
frame (cluster.frames, unchanged), read straight into the body's buffer (a
BufferedProtocol); bodies are written in CHUNK pieces, waiting for the transport to
drain. A peer gets at most POOL connections from a node; idle ones stay open until the
QUIC connection they were offered on goes.

Failures. A call whose connection fails before any of its request was written (connect
refused or timed out, authentication refused, an idle connection the peer had closed)
goes over QUIC instead, and a failed connect makes the peer's bulk calls use QUIC for a
backoff (1 s doubling to 60 s). A call whose connection fails later may have run on the
peer: LaneError(sent=True), which the transport reports as PeerUnavailable, like a lost
QUIC connection; a cancelled or timed-out call closes its connection, which cancels the
handler on the peer. TLS authenticates every record, so bytes altered on the way fail the
connection instead of arriving; shards also carry their own CRC, which the drive checks.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import os
import socket
import ssl
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from shoal.cluster import frames
from shoal.cluster.frames import Frame, FrameError, Kind
from shoal.cluster.handshake import secret_proof
from shoal.storage import durable

log = logging.getLogger("shoal.cluster.lane")

VERSION = 1
ALPN = "shoal-lane/1"
CHUNK = 1 << 20  # body bytes written before checking the transport's buffer
POOL = 8  # connections a node opens to one peer at most
MAX_CONNECTIONS = 256  # connections a node's lane server keeps at most
_WRITE_HIGH = 4 << 20  # transport buffer above which writers wait
_BACKOFF_MIN, _BACKOFF_MAX = 1.0, 60.0
_HELLO, _PROOF = "_lane.hello", "_lane.proof"
_AUTH_HEAD = 4096  # header bytes a frame may have before the client's proof

#: Answers one authenticated request: (method, args, body, peer id) -> (head, body).
Dispatch = Callable[[str, dict[str, Any], bytes, str], Awaitable[tuple[bytes, Any]]]


class LaneError(ConnectionError):
    """The lane failed a call; `sent`: some of the request may have reached the peer."""

    def __init__(self, message: str, *, sent: bool) -> None:
        super().__init__(message)
        self.sent = sent


def proof(key: bytes, role: str, binding: bytes, *parts: bytes | str) -> bytes:
    return secret_proof(b"shoal-lane-auth-v1", key, role, binding, *parts)


def server_context(cert: str, key: str) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.load_cert_chain(cert, key)
    ctx.set_alpn_protocols([ALPN])
    return ctx


def client_context() -> ssl.SSLContext:
    """No CA check: the client pins the certificate fingerprint the peer offered."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols([ALPN])
    return ctx


class FrameConnection(asyncio.BufferedProtocol):
    """One lane connection, either side: whole frames in, frames out.

    Received bytes land in place: the prefix and header in their own buffers, the body
    in the one bytearray of its declared size that becomes `Frame.body`. At most one
    received frame waits to be read; a peer sending more (or anything malformed) is cut.
    """

    def __init__(
        self,
        expect: tuple[Kind, ...],
        on_made: Callable[[FrameConnection], None] | None = None,
    ) -> None:
        self._expect = expect
        self._on_made = on_made
        self.on_lost: Callable[[FrameConnection], None] | None = None
        self.transport: asyncio.Transport | None = None
        self.closed: LaneError | None = None
        self.received = 0  # body bytes received, for the transport's counters
        #: Largest header and body accepted: a server lowers them until the client has
        #: proven the secret, so nobody unauthenticated makes it allocate 64 MiB buffers.
        self.max_head, self.max_body = frames.MAX_HEADER, frames.MAX_BODY
        self._loop = asyncio.get_running_loop()
        #: Done once the socket is closed (connection_lost ran).
        self.gone: asyncio.Future[None] = self._loop.create_future()
        self._waiter: asyncio.Future[Frame] | None = None
        self._ready: Frame | None = None
        self._paused = False
        self._drained: asyncio.Future[None] | None = None
        self._pre = bytearray(frames.PREFIX.size)
        self._prefix: frames.Prefix | None = None
        self._head = bytearray()
        self._header: dict[str, Any] | None = None
        self._body: bytearray | None = None
        self._buf: memoryview = memoryview(self._pre)
        self._got = 0

    # -- asyncio hooks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is no subclass
        self.transport.set_write_buffer_limits(high=_WRITE_HIGH)
        if self._on_made is not None:
            self._on_made(self)

    def get_buffer(self, sizehint: int) -> memoryview:
        return self._buf[self._got :]

    def buffer_updated(self, nbytes: int) -> None:
        self._got += nbytes
        if self._got < len(self._buf):
            return
        try:
            self._advance()
        except FrameError as exc:
            self.abort(LaneError(f"bad frame from the peer: {exc.message}", sent=True))

    def eof_received(self) -> bool:
        return False  # close: a half-closed lane connection has nothing more to say

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False
        if self._drained is not None and not self._drained.done():
            self._drained.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        reason = f": {exc}" if exc else ""
        self._fail(LaneError(f"connection closed{reason}", sent=True))
        if not self.gone.done():
            self.gone.set_result(None)
        if self.on_lost is not None:
            self.on_lost(self)

    # -- frames in

    def _advance(self) -> None:
        """The current buffer is full: parse it and point at the next one."""
        if self._prefix is None:
            self._prefix = frames.parse_prefix(self._pre, self._expect)
            if self._prefix.head_len > self.max_head or self._prefix.body_len > self.max_body:
                raise FrameError("FrameTooLarge", "frame larger than accepted now")
            self._head = bytearray(self._prefix.head_len)
            self._set_buffer(self._head)
            if self._head:
                return
        if self._header is None:
            self._header = frames.parse_header(self._head)
            if self._prefix.body_len:
                # Not zero-filled: the frame is used only once every byte has come.
                self._body = durable.buffer(self._prefix.body_len)
                self._set_buffer(self._body)
                return
        frame = Frame(self._prefix.kind, self._header, self._body or b"", self._prefix.version)
        self.received += self._prefix.body_len
        self._prefix, self._header, self._body = None, None, None
        self._set_buffer(self._pre)
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(frame)
        elif self._ready is None:
            self._ready = frame
        else:
            raise FrameError("BadFrame", "a frame before the last one was read")

    def _set_buffer(self, buf: bytearray) -> None:
        self._buf = memoryview(buf)
        self._got = 0

    async def read_frame(self) -> Frame:
        if self._ready is not None:
            frame, self._ready = self._ready, None
            return frame
        if self.closed is not None:
            raise self.closed
        self._waiter = self._loop.create_future()
        try:
            return await self._waiter
        finally:
            self._waiter = None

    # -- frames out

    async def write_frame(self, head: bytes, body: Any) -> None:
        """Raises LaneError; sent=False while nothing was written."""
        if self.closed is not None or self.transport is None:
            raise LaneError(str(self.closed or "not connected"), sent=False)
        view = memoryview(body).cast("B")
        self.transport.write(head)
        for off in range(0, len(view), CHUNK):
            self.transport.write(view[off : off + CHUNK])
            if self._paused:
                self._drained = self._loop.create_future()
                try:
                    await self._drained
                finally:
                    self._drained = None
            if self.closed is not None:
                raise self.closed

    # -- closing

    def _fail(self, exc: LaneError) -> None:
        if self.closed is not None:
            return
        self.closed = exc
        for fut in (self._waiter, self._drained):
            if fut is not None and not fut.done():
                fut.set_exception(exc)

    def abort(self, exc: LaneError | None = None) -> None:
        """Drop the connection now (the peer sees it closed: its handler is cancelled)."""
        self._fail(exc or LaneError("connection aborted", sent=True))
        if self.transport is not None:
            self.transport.abort()


def _result(frame: Frame, what: str) -> dict[str, Any]:
    result = frame.header.get("result")
    if frame.kind is not Kind.RESPONSE or not isinstance(result, dict):
        code = frame.header.get("code", "BadFrame")
        raise LaneError(f"{what} refused: {code}: {frame.header.get('message', '')}", sent=False)
    return result


def fingerprint_of(transport: asyncio.BaseTransport) -> str:
    """SHA-256 (hex) of the certificate the TLS peer presented."""
    sslobj = transport.get_extra_info("ssl_object")
    der = sslobj.getpeercert(binary_form=True) if sslobj is not None else None
    return hashlib.sha256(der or b"").hexdigest()


class LanePool:
    """This node's lane connections to one peer, opened on demand from its offer."""

    def __init__(
        self,
        *,
        host: str,
        port: int,
        fingerprint: str,
        node_id: str,
        key: bytes,
        connect_timeout: float,
    ) -> None:
        self.host, self.port = host, port
        self.fingerprint = fingerprint
        self._node_id = node_id
        self._key = key
        self._connect_timeout = connect_timeout
        self._loop = asyncio.get_running_loop()
        self._idle: list[FrameConnection] = []
        self._conns: set[FrameConnection] = set()
        self._connecting = 0
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._failures = 0
        self._retry_at = 0.0
        self.last_error = ""
        self.closed = False
        self.peer_id = ""

    @property
    def state(self) -> str:
        """ "open" (connections up), "offered" (none yet), "backoff" or "closed"."""
        if self.closed:
            return "closed"
        if self._loop.time() < self._retry_at:
            return "backoff"
        return "open" if self._conns else "offered"

    def usable(self) -> bool:
        return not self.closed and self._loop.time() >= self._retry_at

    async def call(self, head: bytes, body: Any) -> Frame:
        """One request, its response or error frame. Raises LaneError (see module doc)."""
        conn = await self._acquire()
        try:
            await conn.write_frame(head, body)
            frame = await conn.read_frame()
        except BaseException:
            conn.abort()  # mid-call: nothing else can use it; the peer cancels its handler
            raise
        self._release(conn)
        return frame

    async def warm(self) -> None:
        """Open a connection ahead of the first call, so that call does not wait for the
        TCP and TLS handshakes and the proofs (a failure starts the backoff, as for a call)."""
        if self._conns or self._connecting or not self.usable():
            return
        with contextlib.suppress(LaneError):  # logged, and calls go over QUIC meanwhile
            self._release(await self._open())

    async def _acquire(self) -> FrameConnection:
        while True:
            if self.closed:
                raise LaneError("lane closed", sent=False)
            while self._idle:
                conn = self._idle.pop()
                if conn.closed is None:
                    return conn
            if len(self._conns) + self._connecting < POOL:
                return await self._open()
            waiter = self._loop.create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            finally:
                with contextlib.suppress(ValueError):
                    self._waiters.remove(waiter)

    def _wake(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def _release(self, conn: FrameConnection) -> None:
        if conn.closed is None and not self.closed:
            self._idle.append(conn)
        self._wake()

    def _lost(self, conn: FrameConnection) -> None:
        self._conns.discard(conn)
        with contextlib.suppress(ValueError):
            self._idle.remove(conn)
        self._wake()

    async def _open(self) -> FrameConnection:
        self._connecting += 1
        conn: FrameConnection | None = None
        try:
            async with asyncio.timeout(self._connect_timeout):
                _, conn = await self._loop.create_connection(
                    lambda: FrameConnection((Kind.RESPONSE, Kind.ERROR)),
                    self.host,
                    self.port,
                    ssl=client_context(),
                    server_hostname=None if _is_ip(self.host) else self.host,
                    ssl_handshake_timeout=self._connect_timeout,
                )
                await self._authenticate(conn)
        except asyncio.CancelledError:
            if conn is not None:
                conn.abort()
            raise
        except OSError as exc:  # refused, timed out, TLS failed, LaneError (refused proof)
            if conn is not None:
                conn.abort()
            self._failures += 1
            backoff = min(_BACKOFF_MAX, _BACKOFF_MIN * 2 ** (self._failures - 1))
            self._retry_at = self._loop.time() + backoff
            reason = "no connection in time" if isinstance(exc, TimeoutError) else str(exc)
            self.last_error = reason or type(exc).__name__
            log.warning(
                "bulk lane to %s:%d unavailable (%s); shard payloads go over QUIC for %g s",
                self.host,
                self.port,
                self.last_error,
                backoff,
            )
            raise LaneError(
                f"lane to {self.host}:{self.port}: {self.last_error}", sent=False
            ) from None
        finally:
            self._connecting -= 1
            self._wake()
        self._failures = 0
        if self.closed:
            conn.abort()
            raise LaneError("lane closed", sent=False)
        conn.on_lost = self._lost
        self._conns.add(conn)
        return conn

    async def _authenticate(self, conn: FrameConnection) -> None:
        assert conn.transport is not None
        seen = fingerprint_of(conn.transport)
        if not hmac.compare_digest(seen, self.fingerprint):
            raise LaneError("its certificate is not the one it offered over QUIC", sent=False)
        binding = bytes.fromhex(seen)
        mine = os.urandom(32)
        hello = await self._ask(conn, _HELLO, {"node": self._node_id, "nonce": mine.hex()})
        try:
            server_id, theirs = str(hello["node"]), bytes.fromhex(hello["nonce"])
            server_proof = bytes.fromhex(hello["proof"])
        except (KeyError, ValueError, TypeError):
            raise LaneError("malformed hello reply", sent=False) from None
        ids = (mine, theirs, self._node_id, server_id)
        if not hmac.compare_digest(proof(self._key, "server", binding, *ids), server_proof):
            raise LaneError("its proof of the cluster secret does not match ours", sent=False)
        await self._ask(conn, _PROOF, {"proof": proof(self._key, "client", binding, *ids).hex()})
        self.peer_id = server_id

    @staticmethod
    async def _ask(conn: FrameConnection, method: str, args: dict[str, Any]) -> dict[str, Any]:
        head = frames.encode_head(Kind.REQUEST, {"method": method, "args": args}, 0)
        await conn.write_frame(head, b"")
        return _result(await conn.read_frame(), method)

    def close(self) -> None:
        """Drop every connection; calls in flight fail with LaneError(sent=True)."""
        self.closed = True
        for conn in list(self._conns):
            conn.abort(LaneError("lane closed", sent=True))
        self._idle.clear()
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)


def _is_ip(host: str) -> bool:
    try:
        socket.inet_pton(socket.AF_INET6 if ":" in host else socket.AF_INET, host)
    except OSError:
        return False
    return True


class LaneServer:
    """Accepts lane connections, authenticates them and answers their requests."""

    def __init__(
        self,
        *,
        node_id: str,
        key: bytes,
        dispatch: Dispatch,
        context: ssl.SSLContext,
        fingerprint: str,
        auth_timeout: float,
    ) -> None:
        self.node_id = node_id
        self._key = key
        self._dispatch = dispatch
        self._context = context
        self.fingerprint = fingerprint
        self._auth_timeout = auth_timeout
        self._server: asyncio.Server | None = None
        self._tasks: dict[FrameConnection, asyncio.Task[None]] = {}
        self.port = 0

    async def start(self, host: str, port: int) -> None:
        """Listen on host:port (TCP); OSError if it cannot (the port is taken)."""
        loop = asyncio.get_running_loop()
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        family, addr = infos[0][0], infos[0][4]
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            sock.bind(addr)
            sock.listen(128)
            sock.setblocking(False)
            self._server = await loop.create_server(
                lambda: FrameConnection((Kind.REQUEST,), on_made=self._accepted),
                sock=sock,
                ssl=self._context,
                ssl_handshake_timeout=self._auth_timeout,
            )
        except BaseException:
            sock.close()
            raise
        self.port = sock.getsockname()[1]

    async def stop(self) -> None:
        """Close the listener and every connection, and wait until their sockets are
        closed: a node restarted at once on the same port can listen there again."""
        server, self._server = self._server, None
        if server is not None:
            server.close()
        conns, tasks = list(self._tasks), list(self._tasks.values())
        for conn in conns:
            conn.abort()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if conns:
            await asyncio.wait([c.gone for c in conns], timeout=1.0)
        if server is not None:
            await server.wait_closed()

    def _accepted(self, conn: FrameConnection) -> None:
        conn.max_head, conn.max_body = _AUTH_HEAD, 0  # until the client's proof
        if len(self._tasks) >= MAX_CONNECTIONS:
            log.warning("bulk lane: %d connections open, refusing another", MAX_CONNECTIONS)
            conn.abort()
            return
        task = asyncio.get_running_loop().create_task(self._serve(conn))
        self._tasks[conn] = task
        conn.on_lost = self._lost
        task.add_done_callback(lambda _: self._tasks.pop(conn, None))

    def _lost(self, conn: FrameConnection) -> None:
        task = self._tasks.get(conn)
        if task is not None:
            task.cancel()  # a handler whose caller is gone stops, as on QUIC

    async def _serve(self, conn: FrameConnection) -> None:
        refused = False
        try:
            try:
                async with asyncio.timeout(self._auth_timeout):
                    peer = await self._authenticate(conn)
            except TimeoutError:
                log.warning("bulk lane: a client did not authenticate in time")
                return
            if peer is None:
                refused = True  # close after the error frame went out
                return
            conn.max_head, conn.max_body = frames.MAX_HEADER, frames.MAX_BODY
            while True:
                frame = await conn.read_frame()
                method, args = frame.header.get("method"), frame.header.get("args", {})
                if not isinstance(method, str) or not isinstance(args, dict):
                    head, body = frames.error_head("BadFrame", "a request needs a method"), b""
                elif method.startswith("_"):
                    head, body = frames.error_head("UnknownMethod", f"{method!r}"), b""
                else:
                    head, body = await self._dispatch(method, args, frame.body, peer)  # type: ignore[arg-type]
                await conn.write_frame(head, body)
        except LaneError:
            pass  # the client closed it, or sent something malformed (already cut)
        finally:
            if refused and conn.transport is not None:
                conn.transport.close()
            else:
                conn.abort()

    async def _authenticate(self, conn: FrameConnection) -> str | None:
        """The server's half of the proof; the client's node id, or None (refused)."""
        binding = bytes.fromhex(self.fingerprint)
        hello = await conn.read_frame()
        args = hello.header.get("args")
        try:
            if hello.header.get("method") != _HELLO or not isinstance(args, dict):
                raise ValueError("not a hello")
            client_id, theirs = str(args["node"]), bytes.fromhex(args["nonce"])
            if len(theirs) < 16:
                raise ValueError("short nonce")
        except (KeyError, ValueError, TypeError):
            await self._refuse(conn, "a lane connection starts with a hello")
            return None
        mine = os.urandom(32)
        ids = (theirs, mine, client_id, self.node_id)
        answer = {
            "node": self.node_id,
            "nonce": mine.hex(),
            "proof": proof(self._key, "server", binding, *ids).hex(),
        }
        await conn.write_frame(frames.encode_head(Kind.RESPONSE, {"result": answer}, 0), b"")
        second = await conn.read_frame()
        args = second.header.get("args")
        given = args.get("proof") if isinstance(args, dict) else None
        try:
            ok = second.header.get("method") == _PROOF and hmac.compare_digest(
                proof(self._key, "client", binding, *ids), bytes.fromhex(str(given))
            )
        except ValueError:
            ok = False
        if not ok:
            log.warning(
                "bulk lane: refused node %r: it does not know the cluster secret", client_id
            )
            await self._refuse(conn, "wrong cluster secret")
            return None
        await conn.write_frame(frames.encode_head(Kind.RESPONSE, {"result": {}}, 0), b"")
        return client_id

    @staticmethod
    async def _refuse(conn: FrameConnection, message: str) -> None:
        with contextlib.suppress(LaneError):
            await conn.write_frame(frames.error_head("AccessDenied", message), b"")
