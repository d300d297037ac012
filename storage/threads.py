"""Blocking disk work on worker threads.

`Workers` is a few threads taking calls from one queue and answering each on the
caller's event loop. A hop through it costs well under half of what `run_in_executor`
does (21-26 µs against 59-61 µs per call, 16 in flight, uvloop): no
concurrent.futures.Future with its condition variable, no chaining of two futures, no
idle-thread semaphore. One hop is a large share of a small GET or PUT (four to six on
an erasure-coded node).

`run` is the standalone store's hop, on a shared pool. Like anyio's default, a call is
never abandoned: when the awaiting task is cancelled it still waits for the thread to
finish before the cancellation propagates, so cleanup code never races the I/O it cleans
up after.

The pool is small on purpose: with 32 threads, 16 concurrent small PUTs spent most of
their CPU in futex calls (GIL hand-offs between threads doing short syscalls); 4-8
threads cut the kernel time per PUT several-fold in the same test, while still letting
several fsyncs share a journal commit.

`tune_malloc` keeps the buffers these threads read from costing page faults and
munmaps.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")

_Call = tuple[asyncio.AbstractEventLoop, "asyncio.Future[Any]", Callable[..., Any], tuple[Any, ...]]


class Workers:
    """`threads` threads (started at the first call) running calls in the order given."""

    def __init__(self, threads: int, name: str) -> None:
        self._size = threads
        self._name = name
        self._calls: queue.SimpleQueue[_Call | None] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._starting = threading.Lock()
        self._closed = False

    def submit(self, func: Callable[..., T], *args: Any) -> asyncio.Future[T]:
        """`func(*args)` on a worker thread; its outcome lands on the running loop. A call
        whose future is cancelled before a thread takes it is skipped (one already
        running finishes, unheard)."""
        if self._closed:
            raise RuntimeError(f"{self._name} workers are closed")
        if not self._threads:
            self._start()
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._calls.put((loop, future, func, args))
        return future

    def close(self) -> None:
        """Cancel the calls no thread has taken yet; the threads end after their current one."""
        self._closed = True
        with contextlib.suppress(queue.Empty):
            while (call := self._calls.get_nowait()) is not None:
                _answer(call[0], call[1].cancel)
        for _ in self._threads:
            self._calls.put(None)

    def _start(self) -> None:
        with self._starting:
            if self._threads:
                return
            for i in range(self._size):
                thread = threading.Thread(target=self._work, name=f"{self._name}_{i}", daemon=True)
                thread.start()
                self._threads.append(thread)

    def _work(self) -> None:
        while (call := self._calls.get()) is not None:
            loop, future, func, args = call
            del call
            if future.cancelled():
                continue
            try:
                result = func(*args)
            except BaseException as exc:  # handed to the awaiting task, as executors do
                _answer(loop, _fail, future, exc)
            else:
                _answer(loop, _done, future, result)
                # An idle thread must hold nothing: a result kept until the next call
                # pinned an encoded chunk's shards (6 MiB) per pool thread.
                del result
            del loop, future, func, args


def _answer(loop: asyncio.AbstractEventLoop, callback: Callable[..., Any], *args: Any) -> None:
    with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits any more
        loop.call_soon_threadsafe(callback, *args)


def _done(future: asyncio.Future[T], result: T) -> None:
    if not future.cancelled():
        future.set_result(result)


def _fail(future: asyncio.Future[Any], exc: BaseException) -> None:
    if not future.cancelled():
        future.set_exception(exc)


_POOL = Workers(8, "shoal-io")

#: glibc malloc settings a server process runs with (see tune_malloc).
MALLOC_ARENAS = 2
MALLOC_MMAP_THRESHOLD = 8 << 20
MALLOC_TRIM_THRESHOLD = 16 << 20
#: (the environment variable an operator sets instead, mallopt's parameter, value)
_MALLOPT = (
    ("MALLOC_ARENA_MAX", -8, MALLOC_ARENAS),
    ("MALLOC_MMAP_THRESHOLD_", -3, MALLOC_MMAP_THRESHOLD),
    ("MALLOC_TRIM_THRESHOLD_", -1, MALLOC_TRIM_THRESHOLD),
)


def tune_malloc() -> list[str]:
    """Tune glibc's malloc for buffers of a MiB or more passed between threads; call
    before threads start. Returns the settings applied, by their variables' names.

    - Arenas capped at two (8 per core by default). Each thread that allocates gets an
      arena of its own, up to that cap. Data read on a worker thread (a shard, a chunk
      of a file) is freed on the event loop's, and with an arena per thread glibc kept
      handing those pages back to the kernel and faulting them in again: a 256 MiB GET
      from an erasure-coded node took ~20,000 page faults, ~2,000-9,000 with two
      arenas, and ~15 % less CPU. The GIL serialises most allocations anyway.
    - Buffers up to 8 MiB (shards, chunks) from the heap, not mmap: the free of an
      mmapped one is a munmap, on the event loop's thread, in the request's path. A
      1 MiB range GET from an erasure-coded node took 2.7-4.3 ms (p50) that way, and
      1.7-1.9 from the heap.
    - The heap gives memory back beyond 16 MiB of free space at its top: the largest
      buffers in flight stay, but not more (an erasure-coded node's 256 MiB PUT and
      GET grew its RSS by 58 MiB).

    An operator's MALLOC_ARENA_MAX, MALLOC_MMAP_THRESHOLD_ or MALLOC_TRIM_THRESHOLD_
    wins over its setting here; without glibc this does nothing."""
    try:
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version  # noqa: B018 (glibc only: musl has no such options)
    except (OSError, AttributeError, TypeError):
        return []
    return [
        name
        for name, param, value in _MALLOPT
        if not os.environ.get(name) and libc.mallopt(param, value)
    ]


async def run(func: Callable[..., T], *args: Any) -> T:
    """`func(*args)` on a worker thread."""
    future = _POOL.submit(func, *args)
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        while not future.done():
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait([future])
        raise
