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
        self._arm_head()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_head()
        if self._write_timer is not None:
            self._write_timer.cancel()
            self._write_timer = None
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        """uvicorn's, but a head is fed only up to what is left of MAX_HEAD: the rest of
        the bytes wait (in this call) until that head is complete."""
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
