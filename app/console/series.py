"""A short in-memory history of this process's request metrics for the console's
charts: one sample of the cumulative counters every INTERVAL seconds, the last
SAMPLES of them in a bounded ring; rates are differences of neighbouring samples.

Sampling runs on event-loop timers (no task to cancel at shutdown: a pending timer of
a stopped loop is simply dropped) and reads the metric objects of app/metrics.py, so a
server without metrics has no history. Each process keeps its own (one uvicorn
worker's, one cluster node's): a chart shows the node it was asked of.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

from shoal.app.metrics import Metrics

INTERVAL = 5.0
#: 30 minutes of samples.
SAMPLES = 360
#: The partial last point is left out when shorter than this (its rates would be noise).
MIN_LAST = 1.0


@dataclass(frozen=True, slots=True)
class Sample:
    """Cumulative figures at one moment. `buckets`: (upper bound, cumulative count)
    of the request duration histogram, summed over operations."""

    time: float
    requests: float
    errors: float
    duration_sum: float
    duration_count: float
    buckets: tuple[tuple[float, float], ...]
    in_flight: float


def read(metrics: Metrics) -> Sample:
    """The counters now (prometheus-client's own collect(): a few dozen children)."""
    requests = _total(metrics.requests, "_total")
    errors = _total(metrics.errors, "_total")
    total = count = in_flight = 0.0
    buckets: dict[float, float] = {}
    for family in metrics.duration.collect():
        for s in family.samples:
            if s.name.endswith("_sum"):
                total += s.value
            elif s.name.endswith("_count"):
                count += s.value
            elif s.name.endswith("_bucket"):
                bound = float(s.labels["le"])
                buckets[bound] = buckets.get(bound, 0.0) + s.value
    for family in metrics.in_flight.collect():
        in_flight = sum(s.value for s in family.samples)
    ordered = tuple(sorted(buckets.items()))
    return Sample(time.time(), requests, errors, total, count, ordered, in_flight)


def _total(metric: Any, suffix: str) -> float:
    return sum(s.value for f in metric.collect() for s in f.samples if s.name.endswith(suffix))


def quantile(q: float, before: Sample, after: Sample) -> float | None:
    """The upper bound of the histogram bucket holding quantile `q` of the requests
    between two samples (None: no requests)."""
    old = dict(before.buckets)
    deltas = [(bound, count - old.get(bound, 0.0)) for bound, count in after.buckets]
    if not deltas or deltas[-1][1] <= 0:
        return None
    wanted = q * deltas[-1][1]
    for bound, cumulative in deltas:
        if cumulative >= wanted:
            return bound
    return None


def point(before: Sample, after: Sample) -> dict[str, float | None]:
    """Rates and latencies over the interval between two samples."""
    seconds = max(after.time - before.time, 1e-6)
    count = after.duration_count - before.duration_count
    mean = (after.duration_sum - before.duration_sum) / count if count > 0 else None
    p95 = quantile(0.95, before, after)
    return {
        "time": after.time,
        "requests_per_second": (after.requests - before.requests) / seconds,
        "errors_per_second": (after.errors - before.errors) / seconds,
        "latency_mean_ms": None if mean is None else mean * 1000,
        "latency_p95_ms": None if p95 is None or p95 == float("inf") else p95 * 1000,
        "in_flight": after.in_flight,
    }


class Series:
    """The ring of samples of one app's metrics, and the timer that fills it."""

    def __init__(self, metrics: Metrics, interval: float = INTERVAL, size: int = SAMPLES) -> None:
        self.metrics = metrics
        self.interval = interval
        self.samples: deque[Sample] = deque(maxlen=size + 1)
        self._timer: asyncio.TimerHandle | None = None

    def start(self) -> None:
        """Take the first sample now and schedule the rest (once)."""
        if self._timer is None:
            self._tick()

    def _tick(self) -> None:
        self.samples.append(read(self.metrics))
        self._timer = asyncio.get_running_loop().call_later(self.interval, self._tick)

    def points(self) -> list[dict[str, float | None]]:
        """One point per interval sampled, and a last one up to now."""
        samples = list(self.samples)
        now = read(self.metrics)
        if not samples or now.time - samples[-1].time >= MIN_LAST:
            samples.append(now)
        return [point(a, b) for a, b in pairwise(samples)]
