"""storage/memory.py: the malloc arena cap holds, buffers of a few MiB come from the
heap (an erasure-coded node's chunks do not), and the operator's settings win."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

from shoal.storage.memory import MALLOC_ARENAS, erasure_mmap_threshold

#: In a fresh process: optionally cap the arenas, let 8 live threads each allocate,
#: then print whether tune_malloc capped them and how many arenas glibc reports.
_COUNT_ARENAS = """
import ctypes, os, sys, tempfile, threading
from shoal.storage.memory import tune_malloc
took = "MALLOC_ARENA_MAX" in tune_malloc() if sys.argv[1] == "cap" else None
held, ready = [], threading.Barrier(9)
def allocate():
    held.append(bytearray(1 << 20))  # malloc'd on this thread (too big for pymalloc)
    ready.wait()
    ready.wait()
threads = [threading.Thread(target=allocate) for _ in range(8)]
for t in threads:
    t.start()
ready.wait()
libc = ctypes.CDLL(None)
libc.fopen.restype = ctypes.c_void_p
libc.fopen.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
libc.malloc_info.argtypes = [ctypes.c_int, ctypes.c_void_p]
libc.fclose.argtypes = [ctypes.c_void_p]
with tempfile.NamedTemporaryFile("r") as out:
    fp = libc.fopen(out.name.encode(), b"w")
    libc.malloc_info(0, fp)
    libc.fclose(fp)
    arenas = out.read().count("<heap nr=")
ready.wait()
for t in threads:
    t.join()
print(took, arenas)
"""


def _run(script: str, mode: str, **env: str) -> list[str]:
    """`script` in a fresh process whose environment holds no malloc settings but `env`."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    return subprocess.run(
        [sys.executable, "-c", script, mode],
        env={**base, **env},
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout.split()


def _arenas(mode: str, **env: str) -> tuple[str, int]:
    out = _run(_COUNT_ARENAS, mode, **env)
    return out[0], int(out[1])


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's malloc arenas")
def test_the_arena_cap_holds_threads_to_two_arenas_unless_the_operator_set_one() -> None:
    took, uncapped = _arenas("none")
    assert uncapped > MALLOC_ARENAS  # (else this machine proves nothing)
    assert _arenas("cap") == ("True", MALLOC_ARENAS)
    # MALLOC_ARENA_MAX in the environment wins: the cap is not applied over it.
    took, arenas = _arenas("cap", MALLOC_ARENA_MAX="3")
    assert (took, arenas) == ("False", 3)


#: In a fresh process: optionally tune malloc ("tune", or with a threshold), then print
#: how many mmapped blocks a 2 MiB buffer added (mallinfo2's hblks: 1 when it was
#: mmapped, 0 from the heap).
_MMAPPED = """
import ctypes, sys
from shoal.storage.memory import tune_malloc
if sys.argv[1] == "tune":
    tune_malloc()
elif sys.argv[1] != "none":  # a threshold
    tune_malloc(int(sys.argv[1]))
FIELDS = "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost"
class Info(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in FIELDS.split()]
libc = ctypes.CDLL(None)
libc.mallinfo2.restype = Info
before = libc.mallinfo2().hblks
buffer = bytearray(2 << 20)
print(libc.mallinfo2().hblks - before)
"""


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's malloc")
def test_buffers_of_a_few_mib_come_from_the_heap_unless_the_operator_says_otherwise() -> None:
    assert _run(_MMAPPED, "none") == ["1"]  # glibc's default: mmapped (a munmap to free)
    assert _run(_MMAPPED, "tune") == ["0"]
    assert _run(_MMAPPED, "tune", MALLOC_MMAP_THRESHOLD_=str(1 << 20)) == ["1"]
    # An erasure-coded node's threshold: chunks (here 2 MiB of 4 MiB) mmapped.
    assert _run(_MMAPPED, str(erasure_mmap_threshold(4 << 20, 4))) == ["1"]
