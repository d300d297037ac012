"""Keeping big buffers from pinning memory after they are freed.

glibc serves allocations above a threshold with mmap and unmaps them on free, but it
raises that threshold to the size of each mapped block freed (up to 32 MiB). After the
first freed chunk or shard, every later chunk-sized buffer comes from the heaps of the
many I/O threads, where freed space is kept rather than returned: measured on a 512 MiB
erasure-coded PUT, RSS grew 86 MiB while Python held at most 41 MiB. Fixing the
threshold keeps such buffers mmapped: for a 1 GiB PUT then GET (bench/memory.py
--erasure) growth fell from 61-93 MiB to ~41 MiB; a threshold below the shard size
(512 KiB) gave 29 MiB but cost 10-15% of GET throughput in page faults.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

log = logging.getLogger("shoal.storage")

_M_MMAP_THRESHOLD = -3
#: Default threshold: above a shard of a 4 MiB chunk with 4 data shards (1 MiB, reused
#: size for size from the heap), below the chunk itself.
BIG_BUFFER = 1280 * 1024


def map_big_buffers(threshold: int = BIG_BUFFER) -> bool:
    """Serve allocations of `threshold` bytes and more with mmap (glibc only; a no-op
    elsewhere). Returns whether it took effect."""
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    ok = bool(mallopt(_M_MMAP_THRESHOLD, threshold))
    if not ok:
        log.debug("mallopt(M_MMAP_THRESHOLD) refused")
    return ok
