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

storage.memory tunes malloc for the buffers these threads read.
"""

from __future__ import annotations

import asyncio
import contextlib
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
