"""Versioning costs in the standalone FileStore, measured against the store directly:
PUT and GET of small objects in an Enabled bucket against a never-versioned one (same
run, same keys), disk bytes per stored version, and ListObjectVersions over 10,000
versions (one key, and 1,000 keys of 10).

    .venv/bin/python bench/filestore_versions.py [directory on the disk to measure]
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator

from shoal.storage.backend import ObjectWrite
from shoal.storage.filestore import FileStore

SIZE = 4096
ROUNDS = 5
KEYS = 200


async def body(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def timed_put(fs: FileStore, bucket: str, key: str, data: bytes) -> float:
    t0 = time.perf_counter()
    await fs.put_object(bucket, key, body(data), ObjectWrite())
    return time.perf_counter() - t0


async def timed_get(fs: FileStore, bucket: str, key: str) -> float:
    t0 = time.perf_counter()
    async with await fs.open_object(bucket, key) as reader:
        await reader.read_all()
    return time.perf_counter() - t0


async def compare(fs: FileStore, rounds: int) -> dict[str, list[float]]:
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


async def list_all(fs: FileStore, bucket: str) -> tuple[int, float, float, int]:
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


async def main(directory: str) -> None:
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
    files, apparent, allocated = disk_bytes(os.path.join(fs.root, ".versions", "versioned"))
    print(
        f"noncurrent versions of {SIZE} B: {noncurrent}; per version {apparent / noncurrent:.0f} "
        f"bytes apparent ({(apparent / noncurrent) - SIZE:.0f} beyond the data), "
        f"{allocated / noncurrent:.0f} allocated; {files / noncurrent:.1f} files"
    )
    await fs.create_bucket("one")
    await fs.update_bucket("one", versioning="Enabled")
    for _ in range(10_000):
        await fs.put_object("one", "k", body(b"x"), ObjectWrite())
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
    if len(sys.argv) > 1:
        asyncio.run(main(sys.argv[1]))
    else:
        with tempfile.TemporaryDirectory(dir=os.getcwd()) as tmp:
            asyncio.run(main(tmp))
