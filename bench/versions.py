"""Versioning costs, measured against a store directly (the standalone FileStore, or
with --erasure an erasure node's store on six drive folders, 4+2): PUT and GET of small
objects in an Enabled bucket against a never-versioned one (same run, same keys), disk
bytes per noncurrent version beyond what the current objects take, and
ListObjectVersions over 10,000 versions (one key, and 1,000 keys of 10).

    .venv/bin/python bench/versions.py [--erasure] [directory on the disk to measure]
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator

from shoal.storage.backend import Backend, ObjectWrite
from shoal.storage.erasure.store import ErasureStore
from shoal.storage.filestore import FileStore

SIZE = 4096
ROUNDS = 5
KEYS = 200
#: Versions of the one key (SHOAL_BENCH_ONE_KEY to change).
ONE_KEY = int(os.environ.get("SHOAL_BENCH_ONE_KEY", "10000"))


async def body(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def timed_put(fs: Backend, bucket: str, key: str, data: bytes) -> float:
    t0 = time.perf_counter()
    await fs.put_object(bucket, key, body(data), ObjectWrite())
    return time.perf_counter() - t0


async def timed_get(fs: Backend, bucket: str, key: str) -> float:
    t0 = time.perf_counter()
    async with await fs.open_object(bucket, key) as reader:
        async for _ in reader.stream():
            pass
    return time.perf_counter() - t0


async def compare(fs: Backend, rounds: int) -> dict[str, list[float]]:
    """PUT then GET each key in both buckets, alternating which goes first, so that
    drift in the disk's speed (other work on the machine) falls on both alike."""
    data = os.urandom(SIZE)
    times: dict[str, list[float]] = {
        "plain PUT": [],
        "Enabled PUT": [],
        "plain GET": [],
        "Enabled GET": [],
    }
    for r in range(rounds):
        for k in range(KEYS):
            order = ("plain", "versioned") if (r + k) % 2 else ("versioned", "plain")
            for bucket in order:
                name = "plain" if bucket == "plain" else "Enabled"
                times[f"{name} PUT"].append(await timed_put(fs, bucket, f"d/{k}", data))
                times[f"{name} GET"].append(await timed_get(fs, bucket, f"d/{k}"))
    return times


def disk_bytes(path: str) -> tuple[int, int, int]:
    """(files, apparent bytes, allocated bytes) below `path`, directories included."""
    files = apparent = allocated = 0
    for dirpath, dirs, names in os.walk(path):
        for name in names + dirs:
            st = os.lstat(os.path.join(dirpath, name))
            files += name in names
            apparent += st.st_size
            allocated += st.st_blocks * 512
    return files, apparent, allocated


async def list_all(fs: Backend, bucket: str) -> tuple[int, float, float, int]:
    """Every version, a page of 1,000 at a time: (versions, seconds, CPU seconds of this
    process, pages). CPU time shows the cost on a machine busy with other work."""
    t0, c0 = time.perf_counter(), time.process_time()
    count = pages = 0
    key, vid = "", ""
    while True:
        page = await fs.list_object_versions(
            bucket, key_marker=key, version_id_marker=vid, max_keys=1000
        )
        count += len(page.versions)
        pages += 1
        if not page.truncated:
            return count, time.perf_counter() - t0, time.process_time() - c0, pages
        key, vid = page.next_key_marker or "", page.next_version_id_marker or ""


def bucket_bytes(fs: Backend, directory: str, bucket: str) -> tuple[int, int, int]:
    """What `bucket` takes on disk: its folder (and the FileStore's version folder), or
    its folder on every drive."""
    if isinstance(fs, FileStore):
        folders = [os.path.join(fs.root, bucket), os.path.join(fs.root, ".versions", bucket)]
    else:
        folders = [os.path.join(p, ".smartstorage", "data", bucket) for p in drives(directory)]
    sums = [disk_bytes(f) for f in folders]
    return sum(s[0] for s in sums), sum(s[1] for s in sums), sum(s[2] for s in sums)


def drives(directory: str) -> list[str]:
    return [os.path.join(directory, f"drive{i}") for i in range(6)]


async def main(directory: str, erasure: bool) -> None:
    fs: Backend
    if erasure:
        fs = ErasureStore(drives(directory), clean_slate=True, chunk_size=1024 * 1024)
    else:
        fs = FileStore(directory, clean_slate=True)
    await fs.open()
    await fs.create_bucket("plain")
    await fs.create_bucket("versioned")
    await fs.update_bucket("versioned", versioning="Enabled")
    await compare(fs, 1)  # warm up: every key exists in both buckets
    times = await compare(fs, ROUNDS)
    for op in ("PUT", "GET"):
        plain = statistics.median(times[f"plain {op}"])
        enabled = statistics.median(times[f"Enabled {op}"])
        print(
            f"{op} {SIZE} B, median of {len(times[f'plain {op}'])}: never versioned "
            f"{plain * 1e6:.0f} us, Enabled {enabled * 1e6:.0f} us, ratio {enabled / plain:.2f}"
        )
    noncurrent = KEYS * ROUNDS  # every round but the newest left one per key behind
    plain, versioned = (bucket_bytes(fs, directory, b) for b in ("plain", "versioned"))
    files, apparent, allocated = (v - p for v, p in zip(versioned, plain, strict=True))
    print(
        f"noncurrent versions of {SIZE} B: {noncurrent}; per version {apparent / noncurrent:.0f} "
        f"bytes apparent ({(apparent / noncurrent) - SIZE:.0f} beyond the data), "
        f"{allocated / noncurrent:.0f} allocated; {files / noncurrent:.1f} files"
    )
    await fs.create_bucket("one")
    await fs.update_bucket("one", versioning="Enabled")
    # The PUT cost as one key's versions pile up, a tenth of them at a time.
    step = max(ONE_KEY // 10, 1)
    costs = []
    for done in range(0, ONE_KEY, step):
        t0 = time.perf_counter()
        for _ in range(min(step, ONE_KEY - done)):
            await fs.put_object("one", "k", body(b"x"), ObjectWrite())
        costs.append(f"{(time.perf_counter() - t0) / step * 1e3:.1f}")
    print(f"PUT of one key, ms each per {step} versions added: {' '.join(costs)}")
    count, took, cpu, pages = await list_all(fs, "one")
    print(
        f"ListObjectVersions, one key with {count} versions: {took * 1e3:.0f} ms "
        f"({cpu * 1e3:.0f} ms CPU) for {pages} pages of 1,000"
    )
    await fs.create_bucket("many")
    await fs.update_bucket("many", versioning="Enabled")
    for k in range(1000):
        for _ in range(10):
            await fs.put_object("many", f"p/{k:04d}", body(b"x"), ObjectWrite())
    count, took, cpu, pages = await list_all(fs, "many")
    print(
        f"ListObjectVersions, 1,000 keys of 10 versions ({count}): {took * 1e3:.0f} ms "
        f"({cpu * 1e3:.0f} ms CPU) for {pages} pages of 1,000"
    )
    await fs.close()


if __name__ == "__main__":
    args = sys.argv[1:]
    use_erasure = "--erasure" in args
    places = [a for a in args if a != "--erasure"]
    if places:
        asyncio.run(main(places[0], use_erasure))
    else:
        with tempfile.TemporaryDirectory(dir=os.getcwd()) as tmp:
            asyncio.run(main(tmp, use_erasure))
