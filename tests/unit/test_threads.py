"""storage/threads.py: calls run on the workers' threads and answer on the caller's
loop, errors travel, cancelled calls are skipped, close ends the threads, `run`
never returns before its thread is done, and the malloc arena cap holds."""

from __future__ import annotations

import asyncio
import os
import platform
import subprocess
import sys
import threading
import weakref

import pytest

from shoal.storage.threads import MALLOC_ARENAS, Workers, run
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


#: In a fresh process: optionally cap the arenas, let 8 live threads each allocate,
#: then print whether tune_malloc capped them and how many arenas glibc reports.
_COUNT_ARENAS = """
import ctypes, os, sys, tempfile, threading
from shoal.storage.threads import tune_malloc
took = "MALLOC_ARENA_MAX" in tune_malloc() if sys.argv[1] == "cap" else None
held, ready = [], threading.Barrier(9)
def allocate():
    held.append(bytearray(1 << 20))  # malloc'd on this thread (too big for pymalloc)
    ready.wait()
    ready.wait()
threads = [threading.Thread(target=allocate) for _ in range(8)]
for t in threads:
    t.start()
ready.wait()
libc = ctypes.CDLL(None)
libc.fopen.restype = ctypes.c_void_p
libc.fopen.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
libc.malloc_info.argtypes = [ctypes.c_int, ctypes.c_void_p]
libc.fclose.argtypes = [ctypes.c_void_p]
with tempfile.NamedTemporaryFile("r") as out:
    fp = libc.fopen(out.name.encode(), b"w")
    libc.malloc_info(0, fp)
    libc.fclose(fp)
    arenas = out.read().count("<heap nr=")
ready.wait()
for t in threads:
    t.join()
print(took, arenas)
"""


def _run(script: str, mode: str, **env: str) -> list[str]:
    """`script` in a fresh process whose environment holds no malloc settings but `env`."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    return subprocess.run(
        [sys.executable, "-c", script, mode],
        env={**base, **env},
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout.split()


def _arenas(mode: str, **env: str) -> tuple[str, int]:
    out = _run(_COUNT_ARENAS, mode, **env)
    return out[0], int(out[1])


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's malloc arenas")
def test_the_arena_cap_holds_threads_to_two_arenas_unless_the_operator_set_one() -> None:
    took, uncapped = _arenas("none")
    assert uncapped > MALLOC_ARENAS  # (else this machine proves nothing)
    assert _arenas("cap") == ("True", MALLOC_ARENAS)
    # MALLOC_ARENA_MAX in the environment wins: the cap is not applied over it.
    took, arenas = _arenas("cap", MALLOC_ARENA_MAX="3")
    assert (took, arenas) == ("False", 3)


#: In a fresh process: optionally tune malloc, then print how many mmapped blocks a
#: 2 MiB buffer added (mallinfo2's hblks: 1 when it was mmapped, 0 from the heap).
_MMAPPED = """
import ctypes, sys
from shoal.storage.threads import tune_malloc
if sys.argv[1] == "tune":
    tune_malloc()
FIELDS = "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost"
class Info(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in FIELDS.split()]
libc = ctypes.CDLL(None)
libc.mallinfo2.restype = Info
before = libc.mallinfo2().hblks
buffer = bytearray(2 << 20)
print(libc.mallinfo2().hblks - before)
"""


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's malloc")
def test_buffers_of_a_few_mib_come_from_the_heap_unless_the_operator_says_otherwise() -> None:
    assert _run(_MMAPPED, "none") == ["1"]  # glibc's default: mmapped (a munmap to free)
    assert _run(_MMAPPED, "tune") == ["0"]
    assert _run(_MMAPPED, "tune", MALLOC_MMAP_THRESHOLD_=str(1 << 20)) == ["1"]
