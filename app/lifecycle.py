"""The app's lifespan, around the one that opens and closes the storage backend.

Start: refuses to serve openly by accident (app/exposure.py: beyond loopback, auth
must be on with credentials of one's own), logs `starting` (with the address and
whether auth is on) and `storage open`, marks storage open (for /-/ready) and hands
uvicorn the time limits its protocol reads (app/protocol.py), and starts the lifecycle
rules' background worker (app/handlers/lifecycle.py, storage/lifecycle/). Stop: marks
the node as shutting down, stops that worker, then, before the backend closes (and
with it QUIC), waits for the requests still in flight to finish: by then uvicorn has
either seen them complete or, at its graceful-shutdown deadline, cancelled them, and a
cancelled upload is still removing its temporary files and answering its client.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

from shoal.app import exposure, health, logs
from shoal.app.exchange import Exchanges
from shoal.app.handlers.lifecycle import start_worker
from shoal.app.timeouts import STATE_KEY
from shoal.config import ConfigError

log = logging.getLogger("shoal.server")

Lifespan = Callable[[Any], AbstractAsyncContextManager[Any]]

#: How long stopping waits for cancelled requests to clean up after themselves.
DRAIN_TIMEOUT = 10.0


def around(inner: Lifespan) -> Lifespan:
    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[dict[str, Any]]:
        state = app.state
        exchanges: Exchanges = state.exchanges
        started = time.perf_counter()
        config = state.config
        host = exposure.bound_host(config)
        try:
            exposure.check(config, host)
        except ConfigError as exc:
            log.error("refusing to start", extra={"reason": str(exc)})
            raise
        log.info(
            "starting",
            extra={
                **health.version_info(state.backend),
                "pid": os.getpid(),
                "address": host,
                "auth": exposure.auth_state(config),
            },
        )
        async with _opened(inner, app) as inner_state:
            state.storage_open = True
            log.info(
                "storage open",
                extra={
                    **_storage(state),
                    "duration_ms": round((time.perf_counter() - started) * 1000, 1),
                },
            )
            worker = start_worker(app)  # the lifecycle rules' background worker
            try:
                yield {**(inner_state or {}), STATE_KEY: exchanges.limits}
            finally:
                exchanges.draining = True
                await worker.stop()
                await drain(exchanges)
                state.storage_open = False
        log.info("stopped")
        logs.finish()

    return lifespan


@contextlib.asynccontextmanager
async def _opened(inner: Lifespan, app: Any) -> AsyncIterator[Any]:
    """The backend's lifespan; a failure to open storage is kept, as one line, in
    `app.state.start_error`, which `shoal serve` prints instead of the traceback
    uvicorn logs for a failed startup."""
    async with contextlib.AsyncExitStack() as stack:
        try:
            inner_state = await stack.enter_async_context(inner(app))
        except Exception as exc:
            reason = " ".join(str(exc).split()) or type(exc).__name__  # one line
            app.state.start_error = f"storage failed to open: {reason}"
            log.error("storage failed to open", extra={"reason": reason})
            raise
        yield inner_state


def start_error(app: Any) -> str | None:
    """Why the app failed to start, in one line, if it said (see _opened)."""
    for _ in range(4):  # through any middleware uvicorn wrapped around the app
        reason: str | None = getattr(getattr(app, "state", None), "start_error", None)
        if reason is not None:
            return reason
        app = getattr(app, "app", None)
    return None


def shutting_down(app: Any, signal: str | None) -> None:
    """Shutdown begins (app.server's uvicorn.Server): /-/ready answers 503 from now on,
    while uvicorn stops accepting and lets the requests in flight finish."""
    for _ in range(4):  # through any middleware uvicorn wrapped around the app
        exchanges: Exchanges | None = getattr(getattr(app, "state", None), "exchanges", None)
        if exchanges is not None:
            exchanges.draining = True
            in_flight = len(exchanges.in_flight)
            log.info("shutting down", extra={"signal": signal, "in_flight": in_flight})
            return
        app = getattr(app, "app", None)


async def drain(exchanges: Exchanges) -> None:
    pending = [task for task in exchanges.in_flight if not task.done()]
    if pending:
        log.info("waiting for requests to end", extra={"in_flight": len(pending)})
        _, left = await asyncio.wait(pending, timeout=DRAIN_TIMEOUT)
        if left:
            log.warning("requests still running at stop", extra={"in_flight": len(left)})
    exchanges.sweeper.stop()


def _storage(state: Any) -> dict[str, Any]:
    config = state.config
    if config.cluster.enabled:
        node = getattr(state.backend, "node_id", None)
        return {"drives": list(config.cluster.drives.paths), "node_id": node}
    return {"directory": config.storage.directory}
