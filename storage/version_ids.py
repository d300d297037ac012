"""Version ids: unique across nodes, ordered by the time they were made.

Every backend mints them here, so an id from any mode has the same shape: 16 hex digits
of nanoseconds since the epoch (strictly increasing within a process) and 8 of a
per-process tag that breaks ties between nodes. Fixed width, so string order is time
order; plain lower-case hex, so an id is safe in a file name and a URL as it is.
"""

from __future__ import annotations

import os
import re
import threading
import time

from shoal.storage.backend import NULL_VERSION

_last_ns = 0
_clock = threading.Lock()
_node_tag = os.urandom(4).hex()
_SHAPE = re.compile(r"[0-9a-f]{24}")


def new_version_id() -> str:
    global _last_ns
    with _clock:
        _last_ns = max(time.time_ns(), _last_ns + 1)
        stamp = _last_ns
    return f"{stamp:016x}{_node_tag}"


def minted_here(vid: str) -> bool:
    """Whether this process made version id `vid` (it ends with the process's tag)."""
    return vid.endswith(_node_tag)


def valid_version_id(text: str) -> bool:
    """A version id a client may name: "null" or one this module could have made."""
    return text == NULL_VERSION or _SHAPE.fullmatch(text) is not None
