"""A token bucket for background work: at most `rate` operations a second on average,
bursts of at most one second's worth, so a pass over a large bucket never crowds out
the requests the server is answering."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable


class Pace:
    def __init__(
        self,
        rate: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = rate
        self._clock = clock
        self._sleep = sleep
        self._tokens = 1.0  # a fresh bucket lets one operation through at once
        self._last = clock()

    async def take(self, n: float = 1.0) -> None:
        """Wait until `n` operations fit the budget, then spend them."""
        now = self._clock()
        self._tokens = min(self.rate, self._tokens + (now - self._last) * self.rate)
        self._last = now
        self._tokens -= n
        if self._tokens < 0:
            await self._sleep(-self._tokens / self.rate)
