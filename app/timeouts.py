"""Time limits on clients, from `limits.request_timeout` (milliseconds, 0 = none).

- The whole request, head and body, must arrive within `request_timeout` (the
  reference's Node.js `requestTimeout`): a body that trickles in is cut off even if
  bytes keep coming. Time the server then spends on it, and on streaming the answer,
  is not limited: a large copy or download may take as long as it takes.
- Waiting on the client is limited to `idle` = min(request_timeout, 30 s): for the next
  bytes of the request head (app/protocol.py), of the body, or for it to take the
  bytes of the response that are already queued for it.

A request cut off before its response began is answered with S3's RequestTimeout and
its connection closed; one cut off while streaming its answer loses its connection.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from shoal.config import Config

#: The longest a client may keep the server waiting for its next bytes.
IDLE_CAP = 30.0
#: Where app/protocol.py finds the limits: the lifespan state uvicorn hands it.
STATE_KEY = "shoal.timeouts"


@dataclass(frozen=True)
class Timeouts:
    request: float | None  # seconds for the whole request to arrive
    idle: float | None  # seconds the client may keep us waiting

    @classmethod
    def from_config(cls, config: Config) -> Timeouts:
        ms = config.limits.request_timeout
        if not ms:
            return cls(None, None)
        return cls(ms / 1000, min(ms / 1000, IDLE_CAP))

    @property
    def enabled(self) -> bool:
        return self.idle is not None


class Watch:
    """The limits on one request. Checked by the Sweeper, not by a timer of its own:
    a timer per request costs more than the rest of its timing. When a limit has
    passed, the request's task is cancelled and `expired` says why."""

    __slots__ = ("_loop", "_task", "deadline", "expired", "idle", "receiving", "since")

    def __init__(self, limits: Timeouts, task: asyncio.Task[object]) -> None:
        self._loop = asyncio.get_running_loop()
        self._task = task
        now = self._loop.time()
        self.deadline = now + limits.request if limits.request is not None else float("inf")
        self.idle = limits.idle if limits.idle is not None else float("inf")
        self.receiving = True  # until the body has arrived or the response begins
        self.since: float | None = None  # when the current wait on the client began
        self.expired: str | None = None

    def check(self, now: float) -> None:
        if self.expired is not None:
            return
        if self.receiving and now >= self.deadline:
            self._expire("request took longer than limits.request_timeout")
        elif self.since is not None and now - self.since >= self.idle:
            self._expire("client idle")

    def _expire(self, why: str) -> None:
        self.expired = why
        self._task.cancel()

    def waiting(self) -> None:
        self.since = self._loop.time()

    def done_waiting(self) -> None:
        self.since = None


class Sweeper:
    """Checks every request in flight a few times per idle limit: one timer for the
    server. A limit is thus enforced up to a quarter of the idle limit late (at most
    a second)."""

    def __init__(self, limits: Timeouts) -> None:
        self.interval = min(1.0, (limits.idle or 4.0) / 4)
        self.watches: set[Watch] = set()
        self._task: asyncio.Task[None] | None = None

    def add(self, watch: Watch) -> None:
        self.watches.add(watch)
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="shoal-sweep")

    def discard(self, watch: Watch) -> None:
        self.watches.discard(watch)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self.interval)
            now = loop.time()
            for watch in list(self.watches):
                watch.check(now)

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None
