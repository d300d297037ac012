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
import collections
import contextlib
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from shoal.storage.abandon import reap

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


def start(func: Callable[..., Any], *args: Any) -> None:
    """`func(*args)` on a worker thread, with no one awaiting it: it reports what it has
    to report itself, and must not raise."""
    _POOL.submit(func, *args)


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


class Chain:
    """Steps that run on a worker thread one after another, in the order submitted,
    while the caller goes on (receiving a body: storage.streams.spool, the erasure
    ChunkWriter's digests).

    The thread that finishes a step takes the chain's next one if it is there, so the
    steps of a busy chain follow each other on one thread; each only reports to the
    event loop. Handing each step to the pool from the loop once the one before had
    reported made a digest wait for the loop between buffers: a 256 MiB PUT hashed at
    ~65 % of MD5's speed on one core, and MD5 is what a large PUT is bound by.
    A step that fails fails the ones after it without running them, as does an
    `after` step (another chain's) that failed."""

    def __init__(self) -> None:
        #: Every step's outcome, in order (event loop side).
        self.queue: collections.deque[asyncio.Future[None]] = collections.deque()
        #: Steps not handed to a thread yet: the first waits for its `after` step.
        self._held: collections.deque[_Step] = collections.deque()
        self._hooked: asyncio.Future[None] | None = None
        #: Steps a thread may run (shared with the thread: under _lock).
        self._ready: collections.deque[_Step] = collections.deque()
        self._lock = threading.Lock()
        self._running = False
        self._error: BaseException | None = None  # the first failure (thread side)

    def submit(
        self, func: Callable[..., None], *args: Any, after: asyncio.Future[None] | None = None
    ) -> None:
        """Run func(*args) after this chain's previous step and, if given, `after`."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.queue.append(future)
        self._held.append(_Step(future, func, args, after))
        self._release()

    def _release(self, _: object = None) -> None:
        """Hand the steps whose `after` is done to a thread, in order."""
        while self._held:
            step = self._held[0]
            if step.after is not None and not step.after.done():
                if self._hooked is not step.after:
                    self._hooked = step.after
                    step.after.add_done_callback(self._release)
                return
            self._held.popleft()
            step.failed = _failure(step.after)  # read here, on the loop's thread
            step.after = None
            with self._lock:
                self._ready.append(step)
                idle, self._running = not self._running, True
            if idle:
                try:
                    start(self._drain, asyncio.get_running_loop())
                except BaseException as exc:  # no thread to run them: they fail now
                    with self._lock:
                        failed, self._running = list(self._ready), False
                        self._ready.clear()
                    for waiting in failed:
                        _settle(waiting.future, exc)
                    raise

    def _drain(self, loop: asyncio.AbstractEventLoop) -> None:
        """(Worker thread.) Run the ready steps until there are none."""
        while True:
            with self._lock:
                if not self._ready:
                    self._running = False
                    return
                step = self._ready.popleft()
            error = self._error or step.failed
            if error is None:
                try:
                    step.func(*step.args)
                except BaseException as exc:  # handed to the awaiting task
                    error = exc
            self._error = error
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits
                loop.call_soon_threadsafe(_settle, step.future, error)
            del step

    async def make_room(self, ahead: int) -> None:
        while len(self.queue) >= ahead:
            await self.queue.popleft()

    async def reap(self, what: str) -> None:
        """(On failure.) Wait out every step, whatever it raises (`what`: for the log)."""
        for future in self.queue:
            await reap(future, what)


@dataclass
class _Step:
    future: asyncio.Future[None]
    func: Callable[..., None]
    args: tuple[Any, ...]
    after: asyncio.Future[None] | None  # another chain's step to wait for
    failed: BaseException | None = None  # what `after` failed with


def _failure(after: asyncio.Future[None] | None) -> BaseException | None:
    """What the `after` step (done) failed with, if it did."""
    if after is None:
        return None
    if after.cancelled():
        return asyncio.CancelledError()
    return after.exception()


def _settle(future: asyncio.Future[None], error: BaseException | None) -> None:
    if future.done():
        return
    if error is None:
        future.set_result(None)
    else:
        future.set_exception(error)
