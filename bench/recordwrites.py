"""What a record write costs this machine's file system, and three ways to write one.

An erasure-coded node's 4 KiB PUT writes the key's record on each of its six drives
(the object's shards are inline in it), and on a 2-core VM the kernel's part of that was
more than Python's (`bench/table.py`'s notes: ~2,100 of ~3,500 µs of CPU per PUT). This
measures record writes alone: `--drives` folders (default 6) with `--threads` writers
each (4, as a LocalDrive), every write replacing one of `--keys` records in the drive's
data folder, for `--seconds` per round, the modes taking turns (`--rounds`):

- `now`: what LocalDrive._replace does, through the same call (storage.durable.replace,
  the C module when built): a new file in the drive's temp folder, written, fsynced,
  renamed over the record, the record's folder fsynced.
- `exchange`: a spare file per writer rewritten in place, fdatasynced and swapped with
  the record by renameat2(RENAME_EXCHANGE), so no inode is created or freed (on ext4
  without a journal each creation skips every recently freed inode of its group, and a
  `discard` mount discards each freed block). Not safe for shoal as it stands: a reader
  that opened the old record just before the swap could read it while it is rewritten
  as another key's record.
- `syncfs`: group commit: the temp files written unsynced, one syncfs for every writer
  of the drive waiting, the renames, a second syncfs.
- `coalesce`: as `now` without the folder fsync, which writers of one drive share (one
  fsync started after a writer's rename serves every writer waiting for it).

Prints, per mode, the median round's record writes per second (all drives) and the CPU
per write, user and system µs apart (getrusage of this process: every thread).
Linux only for `exchange` and `syncfs` (skipped elsewhere). Writes only below a temp
folder (`--dir`: where to make it; the file system is what is measured).
"""

from __future__ import annotations

import argparse
import ctypes
import itertools
import os
import resource
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable

from shoal.storage import durable

_LIBC = ctypes.CDLL(None, use_errno=True)
_AT_FDCWD = -100
_RENAME_EXCHANGE = 2


def _check(result: int, what: str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


class Shared:
    """One flush serving every writer that waits for it: a writer waits until a flush
    that started after it asked has finished, and the first waiter runs it."""

    def __init__(self, flush: Callable[[], None]) -> None:
        self._flush = flush
        self._cv = threading.Condition()
        self._started = self._finished = 0
        self._running = False

    def wait(self) -> None:
        with self._cv:
            need = self._started + 1
            while self._finished < need:
                if self._running:
                    self._cv.wait()
                    continue
                self._running, self._started = True, self._started + 1
                mine = self._started
                self._cv.release()
                try:
                    self._flush()
                finally:
                    self._cv.acquire()
                    self._running, self._finished = False, mine
                    self._cv.notify_all()


class Drive:
    """A drive folder: `data/` with the records, `tmp/` with the temp and spare files."""

    def __init__(self, root: str, keys: int, body: bytes) -> None:
        self.data, self.tmp = os.path.join(root, "data"), os.path.join(root, "tmp")
        os.makedirs(self.data)
        os.makedirs(self.tmp)
        self.keys = keys
        self.body = body
        for k in range(keys):
            durable.create(self.record(k), body, sync=False)
        self.names = itertools.count()
        self.folder = os.open(self.data, os.O_RDONLY | os.O_DIRECTORY)
        self.folder_sync = Shared(lambda: os.fsync(self.folder))
        self.fs_sync = Shared(lambda: _check(_LIBC.syncfs(self.folder), "syncfs"))

    def close(self) -> None:
        os.close(self.folder)

    def record(self, k: int) -> str:
        return os.path.join(self.data, f"k{k}.json")

    def write(self, mode: str, n: int, spare: str) -> None:
        target = self.record(n % self.keys)
        tmp = os.path.join(self.tmp, f"{n:x}.tmp")
        if mode == "now":
            durable.replace(tmp, target, self.body, sync_folder=True)
        elif mode == "coalesce":
            durable.replace(tmp, target, self.body, sync_folder=False)
            self.folder_sync.wait()
        elif mode == "syncfs":
            durable.create(tmp, self.body, sync=False)
            self.fs_sync.wait()
            os.replace(tmp, target)
            self.fs_sync.wait()
        else:  # exchange
            fd = os.open(spare, os.O_WRONLY)
            try:
                durable.write_all(fd, self.body)
                os.ftruncate(fd, len(self.body))
                os.fdatasync(fd)
            finally:
                os.close(fd)
            _check(
                _LIBC.renameat2(
                    _AT_FDCWD, os.fsencode(spare), _AT_FDCWD, os.fsencode(target), _RENAME_EXCHANGE
                ),
                "renameat2",
            )
            os.fsync(self.folder)


def one_round(drives: list[Drive], mode: str, threads: int, seconds: float) -> dict[str, float]:
    """Every drive's writers for `seconds`: writes/s and CPU µs per write."""
    counts: list[int] = []
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def writer(drive: Drive) -> None:
        spare = os.path.join(drive.tmp, f"{next(drive.names):x}.spare")
        if mode == "exchange":
            durable.create(spare, drive.body, sync=False)
        n = 0
        while not n or time.monotonic() < deadline:  # one write at least, however late
            drive.write(mode, next(drive.names), spare)
            n += 1
        with lock:
            counts.append(n)

    pool = [threading.Thread(target=writer, args=(d,)) for d in drives for _ in range(threads)]
    r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    r1, elapsed = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter() - t0
    done = sum(counts)
    return {
        "writes_per_s": done / elapsed,
        "user_us": (r1.ru_utime - r0.ru_utime) / done * 1e6,
        "system_us": (r1.ru_stime - r0.ru_stime) / done * 1e6,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--modes", default="now,exchange,syncfs,coalesce")
    parser.add_argument("--drives", type=int, default=6)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--keys", type=int, default=300)
    parser.add_argument("--size", type=int, default=4400, help="record bytes")
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--dir", default=None, help="where to make the temp folder")
    args = parser.parse_args(argv)
    modes = args.modes.split(",")
    if not sys.platform.startswith("linux"):
        modes = [m for m in modes if m not in ("exchange", "syncfs")]
    work = tempfile.mkdtemp(prefix="shoal-recordwrites-", dir=args.dir)
    drives: list[Drive] = []
    try:
        body = os.urandom(args.size)
        for i in range(args.drives):
            drives.append(Drive(os.path.join(work, f"d{i}"), args.keys, body))
        rounds: dict[str, list[dict[str, float]]] = {m: [] for m in modes}
        for rnd in range(args.rounds):
            for mode in modes if rnd % 2 == 0 else modes[::-1]:
                rounds[mode].append(one_round(drives, mode, args.threads, args.seconds))
        load = os.getloadavg()[0]
        print(
            f"record writes of {args.size} bytes, {args.drives} drives x {args.threads} "
            f"writers, {args.rounds} rounds of {args.seconds:g} s (median round; load {load:.2f})"
        )
        for mode, results in rounds.items():
            mid = sorted(results, key=lambda r: r["writes_per_s"])[(len(results) - 1) // 2]
            every = ", ".join(f"{r['writes_per_s']:,.0f}" for r in results)
            print(
                f"{mode:9} {mid['writes_per_s']:8,.0f} writes/s ({every}); CPU per write "
                f"{mid['user_us']:,.0f} + {mid['system_us']:,.0f} µs (user + system)"
            )
    finally:
        for drive in drives:
            drive.close()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
