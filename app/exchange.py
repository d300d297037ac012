"""One HTTP request and its response, around the S3 endpoint (app/asgi.py).

Wraps the ASGI receive/send pair to count the bytes that really crossed the wire and
to watch the client's timing (app/timeouts.py); answers a request cut off by a limit
or by shutdown with an S3 error when its response has not begun; keeps the set of
requests in flight so shutdown can wait for their cleanup (app/lifecycle.py); and
writes the access log line once the response is sent (so its duration and byte counts
include the body).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Message, Receive, Scope, Send

from shoal.app.accesslog import AccessLog, claimed_access_key
from shoal.app.errors import RequestTimeout, S3Error, ServiceUnavailable
from shoal.app.timeouts import Sweeper, Timeouts, Watch

Endpoint = Callable[[Request], Awaitable[Response]]
ErrorRenderer = Callable[[S3Error, Request, str], Response]


class RequestObserver(Protocol):
    """Told of every request and, once it is answered or abandoned, of what the
    exchange saw of it (app/metrics.py): one count of the bytes and status for all."""

    def request_began(self) -> None: ...

    def request_ended(self, scope: Scope, exchange: Exchange) -> None: ...


class RequestAborted(Exception):
    """Ends a request whose response had begun: uvicorn then drops the connection."""

    shoal_abort = True  # app/logs.py: not an application error worth a traceback


def announces_body(scope: Scope) -> bool:
    for name, value in scope["headers"]:
        if (name == b"content-length" and value != b"0") or name == b"transfer-encoding":
            return True
    return False


class Exchanges:
    """Serves requests for one app; holds what they share."""

    def __init__(
        self, limits: Timeouts, access_log: AccessLog | None, render_error: ErrorRenderer
    ) -> None:
        self.limits = limits
        self.access_log = access_log
        self.render_error = render_error
        self.in_flight: set[asyncio.Task[Any]] = set()
        self.sweeper = Sweeper(limits)
        self.draining = False  # set at shutdown: /-/ready answers 503
        #: Server access logging (app/serverlog): sees every answered request.
        self.server_log: Callable[[Scope, Exchange], None] | None = None
        #: Request metrics (app/metrics.py), when they are on.
        self.metrics: RequestObserver | None = None

    async def serve(self, scope: Scope, receive: Receive, send: Send, endpoint: Endpoint) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.in_flight.add(task)
        watch = None
        if self.limits.enabled:
            watch = Watch(self.limits, task)
            watch.receiving = announces_body(scope)  # else the request is all here
            self.sweeper.add(watch)
        exchange = Exchange(receive, send, watch)
        request = Request(scope, exchange.receive)
        aborted: str | None = None
        metrics = self.metrics
        if metrics is not None:
            metrics.request_began()
        try:
            response = await endpoint(request)
            if exchange.watch is not None:
                exchange.watch.receiving = False
            await response(scope, exchange.receive, exchange.send)
        except asyncio.CancelledError:
            aborted = await self._cut_off(exchange, request, task, shutdown=True)
        except BaseException as exc:
            if exchange.watch is None or exchange.watch.expired is None:
                exchange.failed = isinstance(exc, Exception)
                raise
            aborted = await self._cut_off(exchange, request, task, shutdown=False)
        finally:
            if watch is not None:
                self.sweeper.discard(watch)
            self.in_flight.discard(task)
            if aborted is not None and not exchange.complete:
                exchange.failed = True  # RequestAborted below: uvicorn drops the connection
            if self.access_log is not None:
                self._log(scope, exchange, aborted)
            if self.server_log is not None:
                self.server_log(scope, exchange)
            if metrics is not None:
                metrics.request_ended(scope, exchange)
        if aborted is not None and not exchange.complete:
            raise RequestAborted(aborted)

    async def _cut_off(
        self, exchange: Exchange, request: Request, task: asyncio.Task[Any], *, shutdown: bool
    ) -> str:
        """A limit passed (our own cancellation: taken back) or the server is stopping
        (uvicorn cancelled the request at its graceful-shutdown deadline). Storage has
        already undone the partial write on the way out."""
        watch = exchange.watch
        if watch is not None and watch.expired is not None:
            task.uncancel()
            error: S3Error = RequestTimeout()
            why = "timeout"
        elif shutdown:
            error = ServiceUnavailable("The server is shutting down.")
            why = "shutdown"
        else:  # pragma: no cover - only reached through the branches above
            raise RuntimeError("cut off without a reason")
        if not exchange.status_sent and not exchange.sending:  # (else: it is not reading)
            request_id = getattr(request.state, "request_id", "-")
            response = self.render_error(error, request, request_id)
            response.headers["connection"] = "close"  # the rest of the body is unread
            await response(request.scope, exchange.receive, exchange.send)
        return why

    def _log(self, scope: Scope, exchange: Exchange, aborted: str | None) -> None:
        assert self.access_log is not None
        state = scope.get("state") or {}  # what request.state holds, without its wrapper
        op = state.get("operation")
        verified = state.get("verified")
        client = scope.get("client")
        fields: dict[str, Any] = {
            "request_id": state.get("request_id"),
            "operation": op.name if op else scope["path"] if scope["path"][:3] == "/-/" else "-",
            "bucket": op.bucket if op else None,
            "key": op.key if op else None,
            "status": exchange.status,
            "bytes_in": exchange.bytes_in,
            "bytes_out": exchange.bytes_out,
            "duration_ms": round((time.perf_counter() - exchange.started) * 1000, 2),
            "remote": client[0] if client else "-",
            "access_key": verified.access_key if verified else claimed_access_key(scope),
        }
        if aborted is not None:
            fields["aborted"] = aborted
        self.access_log(fields)


class Exchange:
    """The wrapped receive/send of one request, with what they saw."""

    __slots__ = (
        "_receive",
        "_send",
        "body_done",
        "bytes_in",
        "bytes_out",
        "complete",
        "failed",
        "sending",
        "started",
        "status",
        "status_sent",
        "watch",
    )

    def __init__(self, receive: Receive, send: Send, watch: Watch | None) -> None:
        self._receive, self._send, self.watch = receive, send, watch
        self.started = time.perf_counter()
        self.bytes_in = self.bytes_out = self.status = 0
        self.body_done = self.status_sent = self.complete = self.sending = False
        #: An exception escaped the endpoint, or the response was cut off mid-way.
        self.failed = False

    async def receive(self) -> Message:
        watch = self.watch
        if watch is None or self.body_done:  # later calls only listen for a disconnect
            message = await self._receive()
        else:
            watch.waiting()
            try:
                message = await self._receive()
            finally:
                watch.done_waiting()
        body = message.get("body")
        if body:
            self.bytes_in += len(body)
        if not message.get("more_body"):
            self.body_done = True
            if watch is not None:
                watch.receiving = False
        return message

    async def send(self, message: Message) -> None:
        start = message["type"] == "http.response.start"
        if start:
            self.status = message["status"]
            if self.watch is not None:
                self.watch.receiving = False
        watch = self.watch
        self.sending = True
        if watch is not None:
            watch.waiting()  # blocks only while the client is not taking what we sent
        try:
            await self._send(message)
        finally:
            if watch is not None:
                watch.done_waiting()
        self.sending = False  # (stays set if cut off in here: see _cut_off)
        if start:
            self.status_sent = True
        else:
            self.bytes_out += len(message.get("body", b""))
            if not message.get("more_body"):
                self.complete = True
