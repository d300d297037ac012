"""The temp areas ask the filesystem to spread their per-process folders
(storage.diskio.spread_subfolders): ext4's top-of-hierarchy flag on the standalone
store's `.tmp` and on an erasure drive's `tmp/`, so each process's temp folder, and
every file a PUT creates in it, lands in a little-used block group. Where the
filesystem has no such flag the call is a harmless no-op."""

from __future__ import annotations

import array
import fcntl
import os
from pathlib import Path

import pytest

from shoal.storage import diskio
from shoal.storage.erasure.drive import LocalDrive
from shoal.storage.filestore import FileStore

pytestmark = pytest.mark.anyio


def _flags(path: Path) -> int:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        buf = array.array("i", [0])
        fcntl.ioctl(fd, diskio._FS_IOC_GETFLAGS, buf, True)
        return buf[0]
    finally:
        os.close(fd)


def _supports_topdir(folder: Path) -> bool:
    probe = folder / "probe"
    probe.mkdir()
    try:
        fd = os.open(probe, os.O_RDONLY | os.O_DIRECTORY)
        try:
            buf = array.array("i", [_flags(probe) | diskio._FS_TOPDIR_FL])
            fcntl.ioctl(fd, diskio._FS_IOC_SETFLAGS, buf, True)
        finally:
            os.close(fd)
    except OSError:
        return False
    finally:
        probe.rmdir()
    return True


async def test_the_temp_area_is_marked_to_spread_its_folders(tmp_path: Path) -> None:
    if not _supports_topdir(tmp_path):
        pytest.skip("this filesystem keeps no top-of-hierarchy flag")
    fs = FileStore(tmp_path / "d")
    await fs.open()
    try:
        tmp = tmp_path / "d" / ".tmp"
        assert _flags(tmp) & diskio._FS_TOPDIR_FL
        # The process's own folder is an ordinary one below it.
        assert not _flags(Path(fs.temp.dir)) & diskio._FS_TOPDIR_FL
    finally:
        await fs.close()
    # A second start finds the flag set and leaves it so.
    again = FileStore(tmp_path / "d")
    await again.open()
    try:
        assert _flags(tmp_path / "d" / ".tmp") & diskio._FS_TOPDIR_FL
    finally:
        await again.close()


async def test_an_erasure_drive_writes_its_temp_files_in_a_spread_folder(
    tmp_path: Path,
) -> None:
    if not _supports_topdir(tmp_path):
        pytest.skip("this filesystem keeps no top-of-hierarchy flag")
    drive = LocalDrive(str(tmp_path))
    try:
        Path(drive.root).mkdir()
        await drive.make_bucket("b")
        await drive.write_doc("buckets/b.json", b"{}")
        tmp = Path(drive.root) / "tmp"
        assert _flags(tmp) & diskio._FS_TOPDIR_FL
        (work,) = tmp.glob("w-*")
        assert work.is_dir() and not list(work.iterdir())  # the write renamed its file away
    finally:
        drive.close()
    assert not work.exists()  # an empty temp folder goes with a clean close


async def test_a_path_that_is_no_folder_or_not_there_is_left_alone(tmp_path: Path) -> None:
    plain = tmp_path / "file"
    plain.write_bytes(b"x")
    diskio.spread_subfolders(str(plain))
    diskio.spread_subfolders(str(tmp_path / "absent"))
    assert plain.read_bytes() == b"x"
    assert not (tmp_path / "absent").exists()
