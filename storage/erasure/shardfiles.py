"""A LocalDrive's shard files: each shard a `.dat` (fsynced) beside a `.meta` (its size
and CRC32C, which healing reads), read whole and checked against the CRC32C its object
record holds. A mixin, as the erasure store's multipart methods are
(storage.erasure.uploadmethods), so the drive stays one Drive object."""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from shoal.storage import durable
from shoal.storage.checksums import crc32c
from shoal.storage.diskio import fsync_dir, makedirs, read_whole, unlink_quiet
from shoal.storage.erasure.drivetypes import CorruptShard, ShardMissing
from shoal.storage.records import loads

T = TypeVar("T")

#: Largest shard read on the event loop (ShardFiles.cached_shard): a default 4 MiB
#: chunk's shards are 1 MiB at k=4 and 2 MiB at k=2 (plus pyeclib's 80-byte header); a
#: standalone GET reads 2 MiB at a time on the loop too.
LOOP_SHARD_MAX = 2 * 1024 * 1024 + 4096


class ShardFiles:
    """The shard methods of a LocalDrive (which provides `_run`, `_abs` and `_join`)."""

    if TYPE_CHECKING:

        async def _run(self, func: Callable[..., T], *args: Any) -> T: ...
        def _abs(self, rel: str) -> str: ...
        def _join(self, rel: str) -> str: ...

    async def write_shard(self, path: str, data: bytes, crc: int) -> None:
        await self._run(self._write_shard, path, data, crc)

    def _write_shard(self, path: str, data: bytes, crc: int, *, sync_dir: bool = True) -> None:
        """The .dat is fsynced; the .meta is not (it repeats what the object record
        holds durably, and healing rewrites a missing one). `sync_dir=False` when the
        caller makes the version's directories durable itself (update_object does)."""
        target = self._abs(path)
        parent = os.path.dirname(target)
        makedirs(parent)
        token = secrets.token_hex(4)
        meta = json.dumps({"size": len(data), "crc32c": crc}).encode()
        for suffix, body, sync in ((".dat", data, True), (".meta", meta, False)):
            tmp = f"{target}{suffix}.{token}.tmp"
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            try:
                durable.write_all(fd, body)
                if sync:
                    os.fdatasync(fd)
            except BaseException:
                os.close(fd)
                unlink_quiet(tmp)
                raise
            os.close(fd)
            os.replace(tmp, target + suffix)
        if sync_dir:
            fsync_dir(parent)

    async def read_shard(self, path: str, crc: int | None = None) -> bytes:
        cached = self.cached_shard(path, crc)
        return cached if cached is not None else await self._run(self._read_shard, path, crc)

    def cached_shard(self, path: str, crc: int | None) -> bytes | None:
        """The shard read on the event loop, when the kernel has all of it without
        waiting for the disk (durable.read_cached) and its CRC32C matches, as a
        standalone GET reads a cached object (storage.quickread). A 256 MiB GET from a
        node read 256 shards on its drive threads, and the hand-overs (a wake-up each
        way, the GIL passed back and forth) cost more than the reading. Only with the C
        module: an os.open can wait for a hung disk, and the loop must not. None: take
        the thread, which also tells a missing drive, shard or a corrupt one apart."""
        found = durable.read_cached(self._join(path) + ".dat", LOOP_SHARD_MAX)
        if found is None or (crc is not None and crc32c(found[0]) != crc):
            return None
        return found[0]

    def _read_shard(self, path: str, crc: int | None) -> bytes:
        try:
            data = read_whole(self._abs(path) + ".dat")
        except (FileNotFoundError, NotADirectoryError) as exc:
            raise ShardMissing(path) from exc
        if crc is not None and crc32c(data) != crc:
            raise CorruptShard(path)
        return data

    async def shard_info(self, path: str) -> dict[str, Any] | None:
        return await self._run(self._shard_info, path)

    def _shard_info(self, path: str) -> dict[str, Any] | None:
        target = self._abs(path)
        try:
            size = os.stat(target + ".dat").st_size
        except (FileNotFoundError, NotADirectoryError):
            return None
        try:
            with open(target + ".meta", "rb") as f:
                info = loads(f.read())
        except (FileNotFoundError, ValueError):
            info = {}
        info["actual_size"] = size
        return info
