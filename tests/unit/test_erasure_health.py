"""Drive health: faults take a drive offline, answers do not, the probe brings the same
drive back and refuses another. Timeouts and delays are tiny: the file runs in < 1 s."""

from __future__ import annotations

import asyncio
import errno
import logging
import math
from collections.abc import AsyncIterator
from pathlib import Path

import google_crc32c
import pytest

from shoal.storage.erasure.drive import (
    CorruptShard,
    DriveOffline,
    DriveTimeout,
    LocalDrive,
    ShardMissing,
)
from shoal.storage.erasure.faults import FaultyDrive
from shoal.storage.erasure.health import HealthTrackedDrive

pytestmark = pytest.mark.anyio

DRIVE_ID = "drive-a"


@pytest.fixture
async def faulty(tmp_path: Path) -> AsyncIterator[FaultyDrive]:
    local = LocalDrive(str(tmp_path / "d"))
    (tmp_path / "d").mkdir()
    await local.write_format({"format": 1, "drive_id": DRIVE_ID})
    yield FaultyDrive(local)
    local.close()


def tracked(inner: FaultyDrive, **kw: object) -> HealthTrackedDrive:
    options: dict = {"timeout": 0.2, "probe_interval": 0.02, **kw}
    return HealthTrackedDrive(inner, drive_id=DRIVE_ID, **options)


async def write(drive: HealthTrackedDrive | FaultyDrive, path: str, data: bytes) -> None:
    await drive.write_shard(path, data, google_crc32c.value(data))


# ---------------------------------------------------------------- FaultyDrive itself


async def test_faulty_drive_rules(faulty: FaultyDrive) -> None:
    rule = faulty.fail("read_doc", times=2)
    for _ in range(2):
        with pytest.raises(OSError) as info:
            await faulty.read_doc("x")
        assert info.value.errno == errno.EIO
    assert await faulty.read_doc("x") is None
    assert rule.hits == 2 and not rule.active

    faulty.fail("list_dir", calls=[2, 4], error=PermissionError)
    assert await faulty.list_dir("") != []
    with pytest.raises(PermissionError, match="injected fault: list_dir"):
        await faulty.list_dir("")
    await faulty.list_dir("")
    with pytest.raises(PermissionError):
        await faulty.list_dir("")

    # op=None: call numbers count every operation.
    faulty.clear()
    faulty.fail(calls=[faulty.total + 2])
    await faulty.is_empty()
    with pytest.raises(OSError):
        await faulty.read_doc("x")
    await faulty.read_doc("x")
    assert faulty.calls["read_doc"] == 5 and faulty.calls["list_dir"] == 4

    with pytest.raises(ValueError, match="unknown drive operation"):
        faulty.fail("read_shards")


async def test_faulty_drive_slow_and_hung(faulty: FaultyDrive) -> None:
    faulty.fail("read_doc", error=None, delay=0.05, times=1)
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert await faulty.read_doc("x") is None
    assert loop.time() - started >= 0.05
    faulty.fail("is_empty", error=None, delay=math.inf)
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.02):
            await faulty.is_empty()


# ---------------------------------------------------------------- health


async def test_consecutive_faults_take_the_drive_offline(
    faulty: FaultyDrive, caplog: pytest.LogCaptureFixture
) -> None:
    drive = tracked(faulty, fail_threshold=3)
    faulty.fail("read_shard", times=2)
    for _ in range(2):
        with pytest.raises(OSError):
            await drive.read_shard("a/chunk-0/shard-0")
    # A success resets the count: faults must be consecutive.
    await write(drive, "a/chunk-0/shard-0", b"abc")
    assert drive.consecutive_errors == 0 and drive.online

    faulty.fail("write_shard", error=OSError(errno.ENOSPC, "No space left on device"))
    with caplog.at_level(logging.WARNING, logger="shoal.storage"):
        for _ in range(3):
            with pytest.raises(OSError):
                await write(drive, "a/chunk-0/shard-1", b"abc")
    assert not drive.online
    assert any("offline" in r.getMessage() for r in caplog.records)

    before = faulty.total
    with pytest.raises(DriveOffline):
        await drive.read_doc("anything")
    assert faulty.total == before  # never touched the disk
    status = drive.status()
    assert status["state"] == "offline" and status["errors"] == 5
    assert status["consecutive_errors"] == 3
    assert "No space left" in status["last_error"]
    assert status["last_error"].startswith("write_shard: ")


async def test_answers_are_not_faults(faulty: FaultyDrive) -> None:
    drive = tracked(faulty, fail_threshold=1)
    with pytest.raises(ShardMissing):
        await drive.read_shard("nope/chunk-0/shard-0")
    await write(faulty, "a/chunk-0/shard-0", b"abc")
    with pytest.raises(CorruptShard):
        await drive.read_shard("a/chunk-0/shard-0", crc=1)
    with pytest.raises(FileNotFoundError):
        await drive.link("nope", "elsewhere")
    assert await drive.read_doc("nope") is None
    assert await drive.shard_info("nope") is None
    faulty.fail("read_doc", error=FileNotFoundError(errno.ENOENT, "gone"), times=1)
    with pytest.raises(FileNotFoundError):
        await drive.read_doc("x")
    with pytest.raises(ValueError):  # a bad path is a bug, not the drive's fault
        await drive.read_doc("../etc/passwd")
    assert drive.online and drive.errors == 0 and drive.calls == 7


async def test_timeouts(faulty: FaultyDrive) -> None:
    drive = tracked(faulty, timeout=0.03, fail_threshold=2)
    faulty.fail("read_doc", error=None, delay=math.inf)
    with pytest.raises(DriveTimeout, match=r"read_doc took longer than 0\.03s"):
        await drive.read_doc("x")
    assert drive.online and drive.consecutive_errors == 1
    with pytest.raises(DriveTimeout):
        await drive.read_doc("x")
    assert not drive.online
    assert "DriveTimeout" in drive.status()["last_error"]


async def test_timeout_scales_with_shard_size(faulty: FaultyDrive) -> None:
    """A large shard on a slow, working drive gets time in proportion to its size."""
    drive = tracked(faulty, timeout=0.02, min_throughput=500.0, op_timeouts={"read_doc": 0.2})
    faulty.fail(error=None, delay=0.05)
    await write(drive, "a/chunk-0/shard-0", b"x" * 100)  # 0.02 + 100 / 500 s
    await drive.read_doc("x")  # its own timeout
    with pytest.raises(DriveTimeout):
        await write(drive, "a/chunk-0/shard-1", b"x")
    with pytest.raises(DriveTimeout):
        await drive.list_dir("")
    assert drive.errors == 2


async def test_probe_brings_the_drive_back(
    faulty: FaultyDrive, caplog: pytest.LogCaptureFixture
) -> None:
    drive = tracked(faulty, fail_threshold=1)
    drive.start()
    try:
        faulty.fail(error=OSError(errno.EIO, "Input/output error"))
        with pytest.raises(OSError):
            await drive.list_dir("")
        assert not drive.online
        offline_since = drive.status()["offline_since"]
        assert offline_since is not None
        await asyncio.sleep(0.06)  # probes keep failing on the broken disk
        assert not drive.online
        assert "Input/output error" in drive.status()["last_probe"]
        calls = drive.calls
        faulty.clear()
        with caplog.at_level(logging.INFO, logger="shoal.storage"):
            for _ in range(50):
                if drive.online:
                    break
                await asyncio.sleep(0.01)
        assert drive.online
        assert any("back online" in r.getMessage() for r in caplog.records)
        assert drive.calls == calls  # probes are not counted as calls
        status = drive.status()
        assert status["offline_since"] is None and status["consecutive_errors"] == 0
        assert await drive.list_dir("") != []
    finally:
        await drive.stop()
    await drive.stop()  # idempotent


async def test_probe_refuses_another_drive(faulty: FaultyDrive) -> None:
    drive = tracked(faulty, online=False)
    assert drive.status()["state"] == "offline"
    drive.mark_offline("unreadable at start")
    assert drive.status()["offline_reason"] == "unreadable at start"
    await faulty.write_format({"format": 1, "drive_id": "someone-else"})
    assert not await drive.probe()
    assert "'someone-else', expected 'drive-a'" in drive.status()["last_probe"]
    await faulty.write_format({"format": 1, "drive_id": DRIVE_ID})
    assert await drive.probe() and drive.online


async def test_probe_soon_brings_the_drive_back_before_the_interval(
    faulty: FaultyDrive, caplog: pytest.LogCaptureFixture
) -> None:
    """Its node reached again, an offline drive is probed at once (not an interval
    later), once however often it is asked, and back online once."""
    drive = tracked(faulty, online=False, probe_interval=3600)
    drive.start()
    try:
        with caplog.at_level(logging.INFO, logger="shoal.storage"):
            for _ in range(3):
                drive.probe_soon()
            probing = drive._soon
            assert probing is not None
            assert await probing and drive.online
        assert sum("back online" in r.getMessage() for r in caplog.records) == 1
        drive.probe_soon()  # online: nothing to do
        assert drive._soon is probing
    finally:
        await drive.stop()


async def test_mark_offline_and_status(faulty: FaultyDrive) -> None:
    drive = tracked(faulty)
    status = drive.status()
    assert status == {
        "name": faulty.name,
        "drive_id": DRIVE_ID,
        "state": "online",
        "calls": 0,
        "errors": 0,
        "consecutive_errors": 0,
        "last_error": None,
        "last_error_time": None,
        "latency_ms": None,
        "offline_since": None,
        "offline_reason": None,
        "last_probe": None,
    }
    faulty.fail("read_doc", error=None, delay=0.01, times=1)
    await drive.read_doc("x")
    await drive.read_doc("x")
    latency = drive.status()["latency_ms"]
    assert latency is not None and 1 < latency < 100  # EWMA of ~10 ms and ~0 ms
    drive.mark_offline("operator")
    status = drive.status()
    assert status["state"] == "offline" and status["offline_reason"] == "operator"
    assert status["offline_since"] is not None and status["calls"] == 2
    with pytest.raises(DriveOffline, match="operator"):
        await drive.read_format()
