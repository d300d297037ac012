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

`shoal serve` uses it; with plain uvicorn: `--http app.protocol:HttpProtocol`.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from app.timeouts import STATE_KEY, Timeouts

log = logging.getLogger("shoal.http")


def timeout_response() -> bytes:
    """A complete RequestTimeout answer that closes the connection."""
    from app.asgi import new_request_id  # the ASGI app is loaded by now
    from app.errors import RequestTimeout
    from app.xml import document

    request_id = new_request_id()
    error = RequestTimeout()
    body = document(
        "Error",
        [("Code", error.code), ("Message", error.text), ("RequestId", request_id)],
        namespace=False,
    )
    head = (
        "HTTP/1.1 400 Bad Request\r\ncontent-type: application/xml\r\n"
        f"content-length: {len(body)}\r\nx-amz-request-id: {request_id}\r\n"
        "connection: close\r\n\r\n"
    )
    return head.encode() + body


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
        if self._head_timer is not None:
            self._head_begun = True
        super().data_received(data)

    def on_headers_complete(self) -> None:
        self._disarm_head()
        super().on_headers_complete()

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
