"""storage.threads.Chain: steps on worker threads, one after another in the order
submitted; a busy chain's next step starts on the thread that ran the last one, without
waiting for the event loop; a failure fails the steps after it without running them."""

from __future__ import annotations

import asyncio
import threading

import pytest

from shoal.storage.threads import Chain

pytestmark = pytest.mark.anyio


async def test_steps_run_in_order_and_follow_each_other_without_the_loop() -> None:
    """The loop is kept busy (blocked on an event the last step sets) right after the
    steps are submitted: each step must start without the loop running in between, as
    handing each step over from the loop would leave the second one waiting for it."""
    chain, ran, last = Chain(), [], threading.Event()
    for i in range(5):
        chain.submit(ran.append, i)
    chain.submit(last.set)
    assert last.wait(timeout=10)  # the event loop's thread blocks here
    await chain.make_room(1)
    assert ran == [0, 1, 2, 3, 4]
    assert not chain.queue


async def test_a_failed_step_fails_the_ones_after_it_without_running_them() -> None:
    chain, ran = Chain(), []

    def fail() -> None:
        raise OSError("disk gone")

    chain.submit(ran.append, 1)
    chain.submit(fail)
    chain.submit(ran.append, 3)
    outcomes = await asyncio.gather(*chain.queue, return_exceptions=True)
    assert outcomes[0] is None
    assert isinstance(outcomes[1], OSError) and outcomes[2] is outcomes[1]
    assert ran == [1]


async def test_a_step_waits_for_its_after_step_and_fails_with_it() -> None:
    writes, syncs, seen = Chain(), Chain(), []
    gate = threading.Event()
    writes.submit(gate.wait, 10)
    writes.submit(seen.append, "written")
    syncs.submit(seen.append, "flushed", after=writes.queue[-1])
    gate.set()
    await syncs.make_room(1)
    assert seen == ["written", "flushed"]

    def fail() -> None:
        raise OSError("write failed")

    writes.submit(fail)
    syncs.submit(seen.append, "never", after=writes.queue[-1])
    with pytest.raises(OSError, match="write failed"):
        await syncs.make_room(1)
    assert seen == ["written", "flushed"]
    await writes.reap("a test write")
