"""Multiprocess bookkeeping: a new worker drops the live gauges of workers that exited."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from shoal.app.metrics import forget_exited_workers


def test_live_gauges_of_exited_workers_are_dropped(tmp_path: Path) -> None:
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    names = [
        f"gauge_livesum_{gone.pid}.db",  # in flight, of a worker that exited: dropped
        f"gauge_livesum_{os.getpid()}.db",  # this live process's: kept
        f"gauge_sum_{gone.pid}.db",  # bucket shares outlive their worker: kept
        f"counter_{gone.pid}.db",
    ]
    for name in names:
        (tmp_path / name).write_bytes(b"")
    forget_exited_workers(str(tmp_path))
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(names[1:])
