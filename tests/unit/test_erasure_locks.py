"""KeyedLocks: mutual exclusion per name, and a map that shrinks back to empty."""

from __future__ import annotations

import asyncio

import pytest

from shoal.storage.erasure.locks import KeyedLocks

pytestmark = pytest.mark.anyio


async def test_names_are_exclusive_and_the_map_empties() -> None:
    locks = KeyedLocks()
    inside: dict[str, int] = {}
    most: dict[str, int] = {}

    async def worker(name: str) -> None:
        async with locks.hold(name):
            inside[name] = inside.get(name, 0) + 1
            most[name] = max(most.get(name, 0), inside[name])
            await asyncio.sleep(0)
            inside[name] -= 1

    await asyncio.gather(*(worker(f"k{i % 7}") for i in range(200)))
    assert most == {f"k{i}": 1 for i in range(7)}
    assert len(locks) == 0 and locks._locks == {}


async def test_a_thousand_distinct_names_leave_nothing_behind() -> None:
    locks = KeyedLocks()
    for i in range(1000):
        async with locks.hold(("o", "bucket", f"key-{i}")):
            assert len(locks) == 1
    assert len(locks) == 0


async def test_cancelled_waiters_and_raising_holders_are_forgotten() -> None:
    locks = KeyedLocks()
    entered = asyncio.Event()
    release = asyncio.Event()

    async def holder() -> None:
        async with locks.hold("x"):
            entered.set()
            await release.wait()
            raise RuntimeError("boom")

    async def waiter() -> None:
        async with locks.hold("x"):
            raise AssertionError("never gets in")

    first = asyncio.create_task(holder())
    await entered.wait()
    second = asyncio.create_task(waiter())
    await asyncio.sleep(0)
    assert len(locks) == 1 and locks._locks["x"][1] == 2
    second.cancel()
    with pytest.raises(asyncio.CancelledError):
        await second
    assert locks._locks["x"][1] == 1
    release.set()
    with pytest.raises(RuntimeError):
        await first
    assert len(locks) == 0
    async with locks.hold("x"):  # and the name can be taken again
        assert len(locks) == 1


async def test_users_counts_holders_and_waiters() -> None:
    locks = KeyedLocks()
    entered = asyncio.Event()
    release = asyncio.Event()

    async def holder() -> None:
        async with locks.hold("n"):
            entered.set()
            await release.wait()

    first = asyncio.ensure_future(holder())
    await entered.wait()
    assert locks.users("n") == 1 and locks.users("other") == 0
    second = asyncio.ensure_future(holder())
    while locks.users("n") < 2:
        await asyncio.sleep(0)
    release.set()
    await asyncio.gather(first, second)
    assert locks.users("n") == 0
