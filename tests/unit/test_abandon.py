"""storage/abandon.py: abandoned work ends quietly when cancelled, and an error of its
own is logged, never raised over the error already unwinding."""

from __future__ import annotations

import asyncio
import logging

import pytest

from shoal.storage.abandon import reap

pytestmark = pytest.mark.anyio


async def test_cancelled_work_is_reaped_quietly(caplog: pytest.LogCaptureFixture) -> None:
    task = asyncio.create_task(asyncio.sleep(3600))
    await asyncio.sleep(0)
    task.cancel()
    with caplog.at_level(logging.WARNING, logger="shoal.storage"):
        await reap(task, "sleeping")
    assert task.cancelled() and caplog.records == []


async def test_an_error_of_its_own_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    async def fail() -> None:
        raise OSError(5, "Input/output error")

    with caplog.at_level(logging.WARNING, logger="shoal.storage"):
        await reap(asyncio.create_task(fail()), "a shard write")
    (record,) = caplog.records
    assert record.getMessage() == "a shard write failed while being abandoned"
    assert isinstance(record.exc_info[1], OSError)  # type: ignore[index]
