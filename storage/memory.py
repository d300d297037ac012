"""glibc malloc settings for a server process, whose worker threads read buffers of a
MiB or more that the event loop's thread then frees.

- Arenas capped at two (8 per core by default). Each thread that allocates gets an
  arena of its own, up to that cap. Data read on a worker thread (a shard, a chunk of
  a file) is freed on the event loop's, and with an arena per thread glibc kept handing
  those pages back to the kernel and faulting them in again: a 256 MiB GET from an
  erasure-coded node took ~20,000 page faults, ~2,000-9,000 with two arenas, and ~15 %
  less CPU. The GIL serialises most allocations anyway.
- A fixed mmap threshold. glibc serves allocations above it with mmap and unmaps them
  on free; by default it raises the threshold to the size of each mapped block freed,
  and after that chunk-sized buffers came from the heaps and stayed there.
  - Standalone: buffers up to 8 MiB (file reads) from the heap: the free of an mmapped
    one is a munmap, on the event loop's thread, in the request's path.
  - Erasure-coded node (`erasure_mmap_threshold`): shards from the heap (reused size
    for size), chunks mmapped, so freed ones go back to the OS. For a 1 GiB PUT then GET
    (bench/memory.py --erasure) RSS growth fell from 61-93 MiB to ~41 MiB; a threshold
    below the shard size (512 KiB) gave 29 MiB but cost 10-15 % of GET throughput in
    page faults.
- The heap gives memory back beyond 16 MiB of free space at its top (glibc's default:
  128 KiB, once the threshold is fixed): the largest buffers in flight stay, but not
  more. With 128 KiB, freeing a shard shrank the heap and the next read faulted it in
  again: a 1 MiB range GET from an erasure-coded node took 3.1-3.4 ms (p50), against
  1.5-1.7 (/tmp/eb/rangeb.py erasure, MALLOC_TRIM_THRESHOLD_=131072 against unset).

An operator's MALLOC_ARENA_MAX, MALLOC_MMAP_THRESHOLD_ or MALLOC_TRIM_THRESHOLD_ wins
over its setting here; without glibc this does nothing.
"""

from __future__ import annotations

import ctypes
import os

MALLOC_ARENAS = 2
MALLOC_MMAP_THRESHOLD = 8 << 20
MALLOC_TRIM_THRESHOLD = 16 << 20
# mallopt's parameters (<malloc.h>)
_M_ARENA_MAX, _M_MMAP_THRESHOLD, _M_TRIM_THRESHOLD = -8, -3, -1


def erasure_mmap_threshold(chunk_size: int, data_shards: int) -> int:
    """Above a shard of a chunk (plus room), below the chunk itself."""
    return min(chunk_size, chunk_size // data_shards + 256 * 1024)


def tune_malloc(mmap_threshold: int = MALLOC_MMAP_THRESHOLD) -> list[str]:
    """Apply the module docstring's settings; call before threads start. Returns the
    settings applied, by their environment variables' names."""
    try:
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version  # noqa: B018 (glibc only: musl has no such options)
    except (OSError, AttributeError, TypeError):
        return []
    settings = (
        ("MALLOC_ARENA_MAX", _M_ARENA_MAX, MALLOC_ARENAS),
        ("MALLOC_MMAP_THRESHOLD_", _M_MMAP_THRESHOLD, mmap_threshold),
        ("MALLOC_TRIM_THRESHOLD_", _M_TRIM_THRESHOLD, MALLOC_TRIM_THRESHOLD),
    )
    return [
        name
        for name, param, value in settings
        if not os.environ.get(name) and libc.mallopt(param, value)
    ]
