"""The one quorum fan-out: it counts who answered and, short of a quorum, names each
failed drive with a short reason — never the text of the exception."""

from __future__ import annotations

import errno
from collections.abc import Iterator
from pathlib import Path

import pytest

from shoal.storage.erasure.drive import DriveOffline, DriveTimeout, LocalDrive
from shoal.storage.erasure.faults import FaultyDrive
from shoal.storage.erasure.quorum import fan_out, fan_out_at, reason
from shoal.storage.errors import ServiceUnavailable

pytestmark = pytest.mark.anyio


@pytest.fixture
def drives(tmp_path: Path) -> Iterator[list[FaultyDrive]]:
    local = [LocalDrive(str(tmp_path / f"d{i}")) for i in range(6)]
    for d in local:
        Path(d.root).mkdir(parents=True)
    yield [FaultyDrive(d) for d in local]
    for d in local:
        d.close()


async def test_a_quorum_of_answers_is_returned_by_position(drives: list[FaultyDrive]) -> None:
    drives[1].fail("write_doc", error=DriveOffline("secret /token=abc"))
    answers = await fan_out(drives, lambda d: d.write_doc("buckets/x.json", b"{}"))
    assert answers.require(5, "bucket x") == [0, 2, 3, 4, 5]
    read = await fan_out(drives, lambda d: d.read_doc("buckets/x.json"))
    assert read.by_position() == [b"{}", None, b"{}", b"{}", b"{}", b"{}"]


async def test_short_of_a_quorum_each_failed_drive_is_named_with_its_reason(
    drives: list[FaultyDrive],
) -> None:
    drives[1].fail("write_doc", error=DriveOffline("secret /token=abc"))
    drives[3].fail("write_doc", error=DriveTimeout("secret"))
    drives[4].fail("write_doc", error=OSError(errno.ENOSPC, "secret"))
    answers = await fan_out(
        drives,
        lambda d: d.write_doc("buckets/x.json", b"{}"),
        only=[0, 1, 3, 4],
        skipped=[(5, "offline")],
    )
    with pytest.raises(ServiceUnavailable) as info:
        answers.require(3, "bucket x")
    message = info.value.message
    assert "Not enough drives to write bucket x: 1 of 6 succeeded, 3 needed" in message
    assert f"drive 1 ({drives[1].name}): offline" in message
    assert f"drive 3 ({drives[3].name}): timeout" in message
    assert f"drive 4 ({drives[4].name}): No space left on device" in message
    assert f"drive 5 ({drives[5].name}): offline" in message
    assert "drive 0" not in message and "drive 2" not in message
    assert "secret" not in message


async def test_only_the_voters_count_when_asked(drives: list[FaultyDrive]) -> None:
    for p in (0, 1):
        drives[p].fail("read_doc")
    answers = await fan_out(drives, lambda d: d.read_doc("buckets/x.json"))
    with pytest.raises(ServiceUnavailable, match="Not enough drives to read x: 1 of 3"):
        answers.require(2, "x", write=False, among=3)
    assert answers.require(1, "x", write=False, among=3) == [2, 3, 4, 5]


async def test_drives_that_know_the_answer_are_not_called(drives: list[FaultyDrive]) -> None:
    """Answers from memory (`known`) stand by their drives' positions beside the calls'
    answers and failures; the drives that knew are not called."""
    drives[3].fail("read_doc")
    called: list[int] = []

    async def call(p: int) -> bytes | None:
        called.append(p)
        return await drives[p].read_doc("nothing.json")

    def known(p: int) -> bytes | None:
        return b"memory" if p in (0, 2) else None

    answers = await fan_out_at(drives, call, only=[0, 1, 2, 3], known=known)
    assert sorted(called) == [1, 3]
    assert answers.by_position() == [b"memory", None, b"memory", None, None, None]
    assert answers.ok() == [0, 2, 1] and [p for p, _ in answers.errors()] == [3]
    assert "drive 3" in answers.failed()


def test_reasons_are_short_and_carry_no_exception_text() -> None:
    assert reason(ValueError("password=hunter2")) == "ValueError"
    assert reason(OSError(errno.EIO, "/secret/path")) == "Input/output error"
