"""bench/recordwrites.py: its shared flush (the group commit it measures) and a short run
of every mode (a smoke of the tool, not a benchmark)."""

from __future__ import annotations

import itertools
import sys
import threading
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))

import recordwrites  # noqa: E402


def test_a_waiter_returns_only_after_a_flush_that_started_after_it_asked() -> None:
    """Eight writers wait on one Shared flush at once: each returns after a flush that
    began after its call (else what it wrote before asking might not be flushed), and
    fewer flushes than waiters can serve them all."""
    ticks = itertools.count()
    lock = threading.Lock()
    flushes: list[tuple[int, int]] = []  # (tick at start, tick at end)
    go = threading.Event()

    def flush() -> None:
        with lock:
            start = next(ticks)
        go.wait()  # the first flush holds until the writers have started, so they pile up
        with lock:
            flushes.append((start, next(ticks)))

    shared = recordwrites.Shared(flush)
    waits: list[tuple[int, int]] = []  # (tick when asked, tick when served)

    def writer() -> None:
        with lock:
            asked = next(ticks)
        shared.wait()
        with lock:
            waits.append((asked, next(ticks)))

    threads = [threading.Thread(target=writer) for _ in range(8)]
    for t in threads:
        t.start()
    go.set()
    for t in threads:
        t.join()
    assert len(waits) == 8
    for asked, served in waits:
        assert any(asked < start and end < served for start, end in flushes), (asked, flushes)
    assert 1 <= len(flushes) <= 8


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="renameat2 and syncfs")
def test_every_mode_writes_and_reports(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--seconds", "0.1", "--rounds", "1", "--drives", "2", "--threads", "2"]
    assert recordwrites.main([*argv, "--keys", "5", "--dir", str(tmp_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    rates = {line.split()[0]: float(line.split()[1].replace(",", "")) for line in lines[1:]}
    assert set(rates) == {"now", "exchange", "syncfs", "coalesce"}
    assert all(rate > 0 for rate in rates.values()), rates
    assert list(tmp_path.iterdir()) == []  # its temp folder is gone
