"""Awaiting work that is being abandoned while an error or a cancellation unwinds.

A write that fails cancels its reader task, or waits for the disk writes it already
started before it closes their file: those tasks end by being cancelled (expected) or,
now and then, with an error of their own. Neither may replace the error already on its
way out, but an error of their own is still worth a line in the log.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable

log = logging.getLogger("shoal.storage")


async def reap(work: Awaitable[object], what: str) -> None:
    """Wait for `work` to end; its cancellation is expected, any other error is logged."""
    try:
        await work
    except asyncio.CancelledError:
        pass
    except Exception:
        log.warning("%s failed while being abandoned", what, exc_info=True)
