"""uvicorn's httptools protocol with a time limit on request heads.

uvicorn limits the wait *between* requests (timeout_keep_alive) but not the head of a
request: a client sending its headers a byte at a time, or nothing at all after
connecting, holds a connection forever; nor a client that stops reading a response,
which holds the connection and the bytes queued for it. Here, with the idle limit of
app/timeouts.py: every head must be complete within it, counted from the connection or
the previous response, after which a half-sent head gets S3's RequestTimeout and the
connection is closed (a silent one is just closed); and a client that has not taken
any of our queued bytes for that long is disconnected. Bodies are timed by
app/exchange.py.

Heads are bounded in size too, as S3 bounds them: a request line (the URL) up to
MAX_URL bytes, each header line up to MAX_HEADER, at most MAX_HEADERS headers and
MAX_HEAD bytes for the whole head. The parser is never fed more than what is left of
MAX_HEAD while a head is incomplete, so what a client sends cannot grow the process
(httptools itself buffers a header until its line ends); nor can a flood of pipelined
requests: a client with MAX_PIPELINE of them waiting is disconnected. Past a size
limit the client gets S3's RequestHeaderSectionTooLarge; a request that is not
HTTP/1.1 at all (bad request line, header syntax, Content-Length, chunked framing)
gets S3's InvalidRequest rather than uvicorn's plain-text answer. Either way as an XML
error document with its x-amz-request-id, when no response of that connection has
begun; then the connection is closed.

A connection closed while its client is still sending (an answer given before the body
was read: a refused upload, a form past its size limit) lingers, as nginx's does: our
side of it is shut down after the answer, and what still arrives is read and dropped
until the client hangs up, is silent for LINGER_IDLE, LINGER_MAX has passed or
LINGER_BYTES have been dropped (a client that never stops is not served for nothing). Closing
a socket with unread bytes makes the kernel send a reset, and a reset can destroy the
answer in the client's receive buffer before the client has read it.

Small writes made in one turn of the event loop leave in one system call: uvicorn writes
a response's head and its body separately, and for a 4 KiB GET that second send cost
~13 % of the answers per second (LingeringTransport.write).

`shoal serve` uses it; with plain uvicorn: `--http shoal.app.protocol:HttpProtocol`.
"""

from __future__ import annotations

import asyncio
import logging
from http import HTTPStatus
from typing import Any

import httptools
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from shoal.app.errors import InvalidRequest, RequestHeaderSectionTooLarge, RequestTimeout, S3Error
from shoal.app.timeouts import STATE_KEY, Timeouts

log = logging.getLogger("shoal.http")

#: S3's own limit on one header line (name and value), which its error reports.
MAX_HEADER = 8192
#: The request line's target: a 1,024-byte key percent-encoded, plus a presigned query.
MAX_URL = 16384
#: The whole head: request line and every header line.
MAX_HEAD = 65536
MAX_HEADERS = 256
#: Requests a client may send ahead of the answers it is waiting for (HTTP pipelining):
#: each waits as a parsed request, so one read of tiny requests would otherwise queue
#: thousands. A client past it is disconnected (pipelined requests may always be).
MAX_PIPELINE = 32
#: Writes up to this many bytes (in all) wait for the end of the event loop's turn.
CORK_MAX = 16384
#: A lingering close ends when the client has been silent this long...
LINGER_IDLE = 1.0
#: ...or this long after it began, whichever comes first.
LINGER_MAX = 5.0
#: ...or once this much has been dropped.
LINGER_BYTES = 4 << 20


class HeadTooLarge(Exception):
    """Raised in a parser callback to stop parsing a head past a limit."""

    def __init__(self, limit: int) -> None:
        super().__init__(limit)
        self.limit = limit


def error_answer(error: S3Error) -> bytes:
    """A complete S3 error answer (status line to body) that closes the connection."""
    from shoal.app.asgi import new_request_id  # the ASGI app is loaded by now
    from shoal.app.xml import document

    request_id = new_request_id()
    children: list[tuple[str, str]] = [("Code", error.code), ("Message", error.text)]
    children += list(error.fields.items())
    body = document("Error", [*children, ("RequestId", request_id)], namespace=False, lossy=True)
    head = (
        f"HTTP/1.1 {error.status} {HTTPStatus(error.status).phrase}\r\n"
        "content-type: application/xml\r\n"
        f"content-length: {len(body)}\r\nx-amz-request-id: {request_id}\r\n"
        "connection: close\r\n\r\n"
    )
    return head.encode() + body


def timeout_response() -> bytes:
    """A complete RequestTimeout answer that closes the connection."""
    return error_answer(RequestTimeout())


class LingeringTransport(asyncio.Transport):
    """The connection's transport as uvicorn's request cycles see it: its close() lingers
    when the client may still be sending (see the module docstring), and small writes
    made in one turn of the event loop leave together (uncork)."""

    def __init__(self, inner: asyncio.Transport, protocol: HttpProtocol) -> None:
        super().__init__()
        self.inner = inner
        self._protocol = protocol
        self._loop = protocol.loop
        self._corked: list[bytes] | None = None
        self._corked_size = 0

    def close(self) -> None:
        self.uncork()
        if self._protocol.mid_request():
            self._protocol.linger()
        else:
            self.inner.close()

    def is_closing(self) -> bool:
        return self._protocol.lingering or self.inner.is_closing()

    def abort(self) -> None:
        self._corked, self._corked_size = None, 0
        self.inner.abort()

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """uvicorn writes a response's head and then its body, one send each: a small
        write (bytes only, which no caller can change afterwards) waits for the end of
        this turn of the loop, so a small answer's head and body take one system call.
        Larger writes, and the total past CORK_MAX, go at once, after what waits."""
        if type(data) is not bytes or len(data) > CORK_MAX:
            self.uncork()
            self.inner.write(data)
            return
        if self._corked is None:
            self._corked = []
            self._loop.call_soon(self.uncork)
        self._corked.append(data)
        self._corked_size += len(data)
        if self._corked_size > CORK_MAX:
            self.uncork()

    def uncork(self) -> None:
        """Hand what small writes wait to the socket's transport."""
        corked, self._corked, self._corked_size = self._corked, None, 0
        if corked and not self.inner.is_closing():
            self.inner.write(corked[0] if len(corked) == 1 else b"".join(corked))

    def writelines(self, list_of_data: Any) -> None:
        self.uncork()
        self.inner.writelines(list_of_data)

    def can_write_eof(self) -> bool:
        return self.inner.can_write_eof()

    def write_eof(self) -> None:
        self.uncork()
        self.inner.write_eof()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self.inner.get_extra_info(name, default)

    def pause_reading(self) -> None:
        self.inner.pause_reading()

    def resume_reading(self) -> None:
        self.inner.resume_reading()

    def is_reading(self) -> bool:
        return self.inner.is_reading()

    def get_write_buffer_size(self) -> int:
        return self.inner.get_write_buffer_size() + self._corked_size

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self.inner.set_write_buffer_limits(high, low)


class HttpProtocol(HttpToolsProtocol):
    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        limits: Timeouts | None = app_state.get(STATE_KEY)
        self._head_limit = limits.idle if limits is not None else None
        self._head_timer: asyncio.TimerHandle | None = None
        self._write_timer: asyncio.TimerHandle | None = None
        self._head_begun = False
        self._reading_head = True  # until the current head is complete
        self._head_size = 0  # bytes fed to the parser since that head began
        self._refusal: S3Error | None = None
        self._overrun = False  # MAX_PIPELINE passed
        self.lingering = False
        self._dropped = 0  # bytes read and dropped while lingering
        self._linger_idle: asyncio.TimerHandle | None = None
        self._linger_end: asyncio.TimerHandle | None = None

    def _arm_head(self) -> None:
        if self._head_limit is not None:
            self._head_begun = False
            self._head_timer = self.loop.call_later(self._head_limit, self._head_timeout)

    def _disarm_head(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timeout(self) -> None:
        self._head_timer = None
        if self.transport.is_closing():
            return
        if self.cycle is not None and not self.cycle.response_complete:
            return  # a request is being served (its body is timed by the exchange)
        if self._head_begun:
            self.transport.write(timeout_response())
            client = self.client[0] if self.client else "-"
            log.info("request head timed out", extra={"remote": client})
        self.transport.close()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.transport = LingeringTransport(transport, self)
        self._arm_head()

    def mid_request(self) -> bool:
        """Whether the client may still be sending: a request body not read to its end,
        or a head begun."""
        cycle = self.cycle
        return (cycle is not None and cycle.more_body) or self._head_size > 0

    def linger(self) -> None:
        """Close our side once the queued answer is sent, and drop what still arrives."""
        if self.lingering:
            return
        transport = self.transport
        assert isinstance(transport, LingeringTransport)
        inner = transport.inner
        if inner.is_closing():  # (the connection is already lost)
            inner.close()
            return
        self.lingering = True
        self._disarm_head()
        if inner.can_write_eof():  # (TLS cannot: its client sees the close instead)
            inner.write_eof()
        inner.resume_reading()
        self._linger_end = self.loop.call_later(LINGER_MAX, inner.close)
        self._linger_idle = self.loop.call_later(LINGER_IDLE, inner.close)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_head()
        for timer in (self._linger_idle, self._linger_end):
            if timer is not None:
                timer.cancel()
        if self._write_timer is not None:
            self._write_timer.cancel()
            self._write_timer = None
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        """uvicorn's, but a head is fed only up to what is left of MAX_HEAD: the rest of
        the bytes wait (in this call) until that head is complete. Nothing is parsed
        once the connection lingers."""
        if self.lingering:
            assert isinstance(self.transport, LingeringTransport)
            inner = self.transport.inner
            self._dropped += len(data)
            if self._dropped > LINGER_BYTES:
                inner.close()
            elif self._linger_idle is not None:
                self._linger_idle.cancel()
                self._linger_idle = self.loop.call_later(LINGER_IDLE, inner.close)
            return
        if self._head_timer is not None:
            self._head_begun = True
        self._unset_keepalive_if_required()
        while data and not self.transport.is_closing():
            if self._reading_head:
                room = MAX_HEAD - self._head_size
                if room <= 0:
                    self._refuse(RequestHeaderSectionTooLarge(MaxSizeAllowed=MAX_HEAD))
                    return
                piece, data = data[:room], data[room:]
                self._head_size += len(piece)
            else:
                piece, data = data, b""
            if not self._feed(piece):
                return

    def _feed(self, piece: bytes) -> bool:
        """False when the connection is done with (refused, or upgraded away)."""
        try:
            self.parser.feed_data(piece)
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
            return False
        except httptools.HttpParserError as exc:
            if self._overrun:
                client = self.client[0] if self.client else "-"
                log.info("too many pipelined requests", extra={"remote": client})
                self.transport.close()
                return False
            refusal, self._refusal = self._refusal, None
            reason = str(exc).rstrip(".")  # (llhttp's own words, never the client's bytes)
            self._refuse(refusal or InvalidRequest(f"Malformed HTTP/1.1 request: {reason}."))
            return False
        return True

    def _refuse(self, error: S3Error) -> None:
        """Answer with `error` unless a response on this connection has begun, and
        close: the stream cannot be trusted past this point."""
        cycle = self.cycle
        client = self.client[0] if self.client else "-"
        log.info("request refused", extra={"remote": client, "code": error.code})
        if cycle is not None and not cycle.response_complete:
            if cycle.response_started or self.pipeline:  # (an earlier one is answering)
                self.transport.close()
                return
            cycle.disconnected = True  # its app sees the client gone, and writes nothing
            cycle.message_event.set()
        self.transport.write(error_answer(error))
        self.transport.close()

    def send_400_response(self, msg: str) -> None:
        """What uvicorn sends for a request it cannot parse: S3's InvalidRequest."""
        self._refuse(InvalidRequest(f"Malformed HTTP/1.1 request: {msg}"))

    def on_message_begin(self) -> None:
        if len(self.pipeline) >= MAX_PIPELINE:
            self._overrun = True
            raise HeadTooLarge(MAX_PIPELINE)
        super().on_message_begin()
        self._reading_head = True

    def on_url(self, url: bytes) -> None:
        super().on_url(url)
        if len(self.url) > MAX_URL:
            self._refusal = RequestHeaderSectionTooLarge(MaxSizeAllowed=MAX_URL)
            raise HeadTooLarge(MAX_URL)

    def on_header(self, name: bytes, value: bytes) -> None:
        if len(name) + len(value) > MAX_HEADER:
            self._refusal = RequestHeaderSectionTooLarge(MaxSizeAllowed=MAX_HEADER)
            raise HeadTooLarge(MAX_HEADER)
        if len(self.headers) >= MAX_HEADERS:
            self._refusal = RequestHeaderSectionTooLarge()
            raise HeadTooLarge(MAX_HEADERS)
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._disarm_head()
        self._reading_head = False
        self._head_size = 0
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._reading_head = True

    def pause_writing(self) -> None:
        """The client stopped taking our bytes: if it still has not after the idle limit,
        drop the connection (abort: a close would wait for it to read them)."""
        super().pause_writing()
        if self._head_limit is not None and self._write_timer is None:
            self._write_timer = self.loop.call_later(self._head_limit, self._write_stalled)

    def resume_writing(self) -> None:
        if self._write_timer is not None:
            self._write_timer.cancel()
            self._write_timer = None
        super().resume_writing()

    def _write_stalled(self) -> None:
        self._write_timer = None
        client = self.client[0] if self.client else "-"
        log.info("client stopped reading", extra={"remote": client})
        self.transport.abort()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing() and self._head_timer is None:
            self._arm_head()
