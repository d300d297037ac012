"""One crash step for the SIGKILL loops (standalone, erasure, faults): writers running
against a real server process, killed at a chosen moment while they write."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Sequence


def kill_while_writing(
    kill: Callable[[], None],
    writers: Sequence[Callable[[threading.Event], None]],
    moment: Callable[[], object],
) -> None:
    """Start each writer in a thread (it returns once its event is set or its server is
    gone), call `moment` (it returns when the kill should land), SIGKILL the server,
    then join every writer."""
    stop = threading.Event()
    threads = [threading.Thread(target=writer, args=(stop,)) for writer in writers]
    for thread in threads:
        thread.start()
    try:
        moment()
    finally:
        kill()
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
    assert not any(thread.is_alive() for thread in threads), "a writer hung after the kill"


def at_random(rng: random.Random, low: float = 0.3, high: float = 1.5) -> Callable[[], None]:
    """A kill moment somewhere in the first `low`..`high` seconds of writing (where the
    kill lands is the point of the test: this waits for nothing)."""
    return lambda: time.sleep(rng.uniform(low, high))
