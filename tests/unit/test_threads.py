"""storage/threads.py: calls run on the workers' threads and answer on the caller's
loop, errors travel, cancelled calls are skipped, close ends the threads, `run`
never returns before its thread is done."""

from __future__ import annotations

import asyncio
import threading
import weakref

import pytest

from shoal.storage.threads import Workers, run
from tests.unit.conftest import until

pytestmark = pytest.mark.anyio


async def test_calls_run_on_named_threads_and_answer_in_order() -> None:
    workers = Workers(3, "test-workers")
    try:
        names = await asyncio.gather(
            *(workers.submit(lambda: threading.current_thread().name) for _ in range(30))
        )
        assert {n.rsplit("_", 1)[0] for n in names} == {"test-workers"}
        assert threading.current_thread().name not in names
        assert await workers.submit(sum, [1, 2, 3]) == 6
    finally:
        workers.close()


async def test_an_error_reaches_the_caller() -> None:
    workers = Workers(1, "test-errors")
    try:
        with pytest.raises(ZeroDivisionError):
            await workers.submit(divmod, 1, 0)
        assert await workers.submit(divmod, 7, 2) == (3, 1)  # the thread survived it
    finally:
        workers.close()


class _Payload:
    """Stands for a shard or an encoded chunk: something a weak reference can watch."""


async def test_an_idle_thread_holds_nothing_of_its_last_call() -> None:
    """Its arguments and its result go once the call is answered: a result kept until
    the thread's next call pinned an encoded chunk's shards (6 MiB) per pool thread."""
    workers = Workers(1, "test-idle")
    try:
        given = _Payload()
        made = await workers.submit(lambda arg: (arg, _Payload()), given)
        watched = [weakref.ref(given), weakref.ref(made[1])]
        del given, made
        await until(lambda: all(ref() is None for ref in watched))
    finally:
        workers.close()


async def test_a_call_cancelled_before_it_starts_is_skipped() -> None:
    workers = Workers(1, "test-skip")
    gate = threading.Event()
    ran: list[str] = []
    try:
        busy = workers.submit(gate.wait, 10)
        queued = workers.submit(ran.append, "queued")
        queued.cancel()
        gate.set()
        assert await busy is True
        await workers.submit(ran.append, "after")
        assert ran == ["after"]
    finally:
        workers.close()


async def test_close_cancels_what_waits_and_ends_the_threads() -> None:
    workers = Workers(1, "test-close")
    started, gate = threading.Event(), threading.Event()

    def hold() -> bool:
        started.set()
        return gate.wait(10)

    busy = workers.submit(hold)
    waiting = workers.submit(lambda: "never")
    assert await asyncio.to_thread(started.wait, 10)
    workers.close()
    gate.set()
    assert await busy is True  # the call in progress finishes
    with pytest.raises(asyncio.CancelledError):
        await waiting
    for thread in workers._threads:
        await asyncio.to_thread(thread.join, 10)
        assert not thread.is_alive()
    with pytest.raises(RuntimeError):
        workers.submit(lambda: None)


async def test_run_waits_for_its_thread_when_cancelled() -> None:
    gate = threading.Event()
    finished = threading.Event()

    def slow() -> None:
        gate.wait(10)
        finished.set()

    task = asyncio.ensure_future(run(slow))
    await asyncio.sleep(0)
    task.cancel()
    await asyncio.sleep(0)
    assert not task.done()  # still waiting for the thread, not abandoned
    gate.set()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert finished.is_set()
