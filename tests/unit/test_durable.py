"""storage.durable: the C module's calls and their os.* versions behave alike.

Every test runs against both implementations (the `durable_impl` fixture; the C one only
where it is built): what they write, what they return, which error names which path,
and what a failure leaves.
"""

from __future__ import annotations

import errno
import os
import stat
import threading

import pytest

from shoal.storage import durable


def test_create_writes_a_new_file_and_returns_its_stat(durable_impl: str, tmp_path) -> None:
    path = str(tmp_path / "f")
    for sync in (True, False):
        data = os.urandom(70_000)
        written = durable.create(path, data, 0o600, sync=sync)
        st = os.stat(path)
        assert written == durable.Written.of(st)
        assert stat.S_IMODE(st.st_mode) == 0o600 & ~_umask()
        with open(path, "rb") as f:
            assert f.read() == data
        os.unlink(path)


def test_create_refuses_an_existing_file_and_names_it(durable_impl: str, tmp_path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"old")
    with pytest.raises(FileExistsError) as info:
        durable.create(str(path), b"new", sync=True)
    assert info.value.filename == str(path)
    assert path.read_bytes() == b"old"


def test_create_in_a_missing_folder_leaves_nothing(durable_impl: str, tmp_path) -> None:
    path = str(tmp_path / "gone" / "f")
    with pytest.raises(FileNotFoundError) as info:
        durable.create(path, b"x", sync=True)
    assert info.value.filename == path
    assert not (tmp_path / "gone").exists()


def test_replace_swaps_the_content_and_returns_the_stat_a_later_stat_sees(
    durable_impl: str, tmp_path
) -> None:
    target = tmp_path / "record.json"
    target.write_bytes(b"old")
    written = durable.replace(str(tmp_path / "t.tmp"), str(target), b"new" * 1000, sync_folder=True)
    st = os.stat(target)
    # A rename changes the file's ctime, not what tells its versions apart.
    assert (written.st_ino, written.st_size, written.st_mtime_ns, written.st_dev) == (
        st.st_ino,
        st.st_size,
        st.st_mtime_ns,
        st.st_dev,
    )
    assert target.read_bytes() == b"new" * 1000
    assert sorted(os.listdir(tmp_path)) == ["record.json"]


def test_replace_without_its_temp_folder_names_the_temp_file(durable_impl: str, tmp_path) -> None:
    target = tmp_path / "record.json"
    target.write_bytes(b"old")
    tmp = str(tmp_path / "gone" / "t.tmp")
    with pytest.raises(FileNotFoundError) as info:
        durable.replace(tmp, str(target), b"new", sync_folder=True)
    assert info.value.filename == tmp
    assert target.read_bytes() == b"old"


def test_replace_into_a_missing_folder_removes_its_temp_file(durable_impl: str, tmp_path) -> None:
    tmp = tmp_path / "t.tmp"
    target = str(tmp_path / "gone" / "record.json")
    with pytest.raises(FileNotFoundError) as info:
        durable.replace(str(tmp), target, b"new", sync_folder=False)
    assert (info.value.filename, info.value.filename2) == (str(tmp), target)
    assert not tmp.exists()


def test_replace_over_a_folder_fails_and_keeps_it(durable_impl: str, tmp_path) -> None:
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "inside").write_bytes(b"kept")
    with pytest.raises(OSError) as info:
        durable.replace(str(tmp_path / "t.tmp"), str(tmp_path / "d"), b"x", sync_folder=True)
    assert info.value.errno in (errno.EISDIR, errno.ENOTEMPTY, errno.EEXIST)
    assert (tmp_path / "d" / "inside").read_bytes() == b"kept"
    assert not (tmp_path / "t.tmp").exists()


@pytest.mark.parametrize("size", [0, 1, 4096, 65_535, 65_536, 65_537, 300_000])
def test_read_returns_the_whole_file(durable_impl: str, tmp_path, size: int) -> None:
    data = os.urandom(size)
    (tmp_path / "f").write_bytes(data)
    assert durable.read(str(tmp_path / "f")) == data


def test_read_errors_name_the_path(durable_impl: str, tmp_path) -> None:
    missing = str(tmp_path / "missing")
    with pytest.raises(FileNotFoundError) as info:
        durable.read(missing)
    assert info.value.filename == missing
    with pytest.raises(IsADirectoryError):
        durable.read(str(tmp_path))


def test_sync_takes_files_and_folders(durable_impl: str, tmp_path) -> None:
    (tmp_path / "f").write_bytes(b"x")
    durable.sync(str(tmp_path / "f"), folder=False)
    durable.sync(str(tmp_path), folder=True)
    with pytest.raises(NotADirectoryError):
        durable.sync(str(tmp_path / "f"), folder=True)
    with pytest.raises(FileNotFoundError) as info:
        durable.sync(str(tmp_path / "missing"), folder=False)
    assert info.value.filename == str(tmp_path / "missing")


def test_sequence_runs_its_steps_in_order(durable_impl: str, tmp_path) -> None:
    record, data = tmp_path / "record", tmp_path / "data"
    data.write_bytes(b"body")
    target = tmp_path / "sub"
    target.mkdir()
    (target / "record").write_bytes(b"old")
    durable.sequence(
        durable.Create(str(record), b"new record"),
        durable.Sync(str(data), folder=False),
        durable.Sync(str(tmp_path), folder=True),
        durable.Rename(str(data), str(target / "data")),
        durable.Rename(str(record), str(target / "record")),
        durable.Sync(str(target), folder=True),
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sub"]
    assert (target / "record").read_bytes() == b"new record"
    assert (target / "data").read_bytes() == b"body"
    durable.sequence()  # nothing to do


def test_sequence_stops_at_the_failing_step_and_names_its_paths(
    durable_impl: str, tmp_path
) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    missing, dst = str(tmp_path / "missing"), str(tmp_path / "dst")
    with pytest.raises(FileNotFoundError) as info:
        durable.sequence(
            durable.Create(str(first), b"1"),
            durable.Rename(missing, dst),
            durable.Create(str(second), b"2"),
        )
    assert (info.value.filename, info.value.filename2) == (missing, dst)
    assert first.read_bytes() == b"1"  # done before the failure: it stays
    assert not second.exists()  # after it: not run
    with pytest.raises(FileExistsError) as info:
        durable.sequence(durable.Create(str(first), b"again"))
    assert info.value.filename == str(first)
    assert first.read_bytes() == b"1"
    with pytest.raises(NotADirectoryError) as info:
        durable.sequence(durable.Sync(str(first), folder=True))
    assert info.value.filename == str(first)


def test_read_cached_gives_the_file_and_its_stat_and_the_os_version_nothing(
    durable_impl: str, tmp_path
) -> None:
    data = os.urandom(5000)
    (tmp_path / "f").write_bytes(data)  # just written: in the page cache
    got = durable.read_cached(str(tmp_path / "f"), 1 << 20)
    if durable_impl == "os":
        # No os.* call can promise an open that never waits (storage.quickread has
        # the os version, for the standalone store's loop reads).
        assert got is None
        return
    assert got is not None
    assert got[0] == data and type(got[0]) is bytes
    assert got[1] == durable.Written.of(os.stat(tmp_path / "f"))


def test_other_threads_run_while_a_call_waits_in_the_kernel(durable_impl: str, tmp_path) -> None:
    """The calls release the GIL while they wait: reading a FIFO blocks in open() until
    a writer comes, and the writer is a Python thread, which could not run otherwise."""
    fifo = str(tmp_path / "fifo")
    os.mkfifo(fifo)

    def writer() -> None:
        with open(fifo, "wb") as f:
            f.write(b"through the pipe")

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    assert durable.read(fifo) == b"through the pipe"
    thread.join(timeout=10)
    assert not thread.is_alive()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_a_buffer_is_a_bytearray_of_its_size_that_a_read_fills(durable_impl: str, tmp_path) -> None:
    data = os.urandom(3 * 4096 + 5)
    (tmp_path / "f").write_bytes(data)
    for size in (0, 1, len(data), 1 << 20):
        buf = durable.buffer(size)
        assert type(buf) is bytearray and len(buf) == size
        fd = os.open(tmp_path / "f", os.O_RDONLY)
        try:
            n = os.readv(fd, [buf])
        finally:
            os.close(fd)
        assert bytes(buf[:n]) == data[:size]
    with pytest.raises((ValueError, OverflowError)):
        durable.buffer(-1)
