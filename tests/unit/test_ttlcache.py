"""storage/ttlcache.py: entries expire, forget works, the map stays bounded, and
concurrent misses share one read."""

from __future__ import annotations

import asyncio
import time

import pytest

from shoal.storage.ttlcache import TtlCache

pytestmark = pytest.mark.anyio


def test_entries_expire_and_can_be_forgotten(monkeypatch) -> None:
    clock = [100.0]
    monkeypatch.setattr(time, "monotonic", lambda: clock[0])
    cache: TtlCache[str, int] = TtlCache(1.0)
    cache.put("a", 1)
    cache.put("b", 2)
    assert (cache.get("a"), cache.get("b"), cache.get("c")) == (1, 2, None)
    cache.forget("b")
    assert cache.get("b") is None
    clock[0] += 1.5
    assert cache.get("a") is None and len(cache) == 0


def test_bounded_whatever_is_asked(monkeypatch) -> None:
    clock = [0.0]
    monkeypatch.setattr(time, "monotonic", lambda: clock[0])
    cache: TtlCache[int, int] = TtlCache(10.0, max_entries=100)
    for i in range(1000):
        cache.put(i, i)
        clock[0] += 0.01
        assert len(cache) <= 100
    assert cache.get(999) == 999


async def test_concurrent_misses_share_one_read() -> None:
    cache: TtlCache[str, int] = TtlCache(10.0)
    release = asyncio.Event()
    reads = []

    async def read() -> int:
        reads.append(1)
        await release.wait()
        return len(reads)

    waiters = [asyncio.ensure_future(cache.load("k", read)) for _ in range(16)]
    await asyncio.sleep(0)
    waiters[0].cancel()  # one caller gone: the others still get the read's answer
    release.set()
    answers = await asyncio.gather(*waiters[1:])
    assert answers == [1] * 15 and len(reads) == 1
    assert await cache.load("k", read) == 1 and len(reads) == 1  # kept


async def test_a_failed_read_reaches_every_waiter_and_is_not_kept() -> None:
    cache: TtlCache[str, int] = TtlCache(10.0)
    calls = []

    async def read() -> int:
        calls.append(1)
        await asyncio.sleep(0)
        raise OSError("disk gone")

    results = await asyncio.gather(
        *(cache.load("k", read) for _ in range(4)), return_exceptions=True
    )
    assert all(isinstance(r, OSError) for r in results) and len(calls) == 1
    with pytest.raises(OSError):
        await cache.load("k", read)
    assert len(calls) == 2


async def test_a_read_in_flight_when_forgotten_is_not_kept() -> None:
    cache: TtlCache[str, str] = TtlCache(10.0)
    release = asyncio.Event()

    async def old() -> str:
        await release.wait()
        return "before the change"

    async def new() -> str:
        return "after the change"

    first = asyncio.ensure_future(cache.load("k", old))
    await asyncio.sleep(0)
    cache.forget("k")  # the change lands while the old read is in flight
    assert await cache.load("k", new) == "after the change"
    release.set()
    assert await first == "before the change"  # its own caller still gets an answer
    assert cache.get("k") == "after the change"
