"""A drive's record writes (storage.durable through LocalDrive._replace): they check no
folder on the way, so what a check used to catch must still come out right.

- The drive's temp folder, removed under it (another process's sweep), is made again by
  the write that finds it gone.
- A key whose folder went (its record with it) gets the folder made again.
- The stat a write returns is the one a later stat sees: a GET after a PUT is answered
  from the record the drive keeps parsed, with no thread hop.
- An overwrite starts from the record the drive keeps parsed (no read, no parse), yet a
  record replaced behind the drive's back is read again, not overwritten with entries
  it no longer has.

Each test runs with the C module and with its os.* versions (the `durable_impl` fixture).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from shoal.storage.erasure.drive import DriveError
from shoal.storage.erasure.history import KeyRecord
from shoal.storage.keys import key_path
from tests.unit.test_erasure_store import BUCKET, Cluster, N, body, cluster, put, read

pytestmark = pytest.mark.anyio

__all__ = ["cluster"]  # the fixture, imported for this module's tests


async def test_a_removed_temp_folder_is_made_again_by_the_next_write(
    cluster: Cluster, durable_impl: str
) -> None:
    c = cluster
    await put(c.store, "k", body(4096, seed=1))
    works = [Path(d._work) for d in c.local]
    for work in works:
        shutil.rmtree(work)
    data = body(4096, seed=2)
    await put(c.store, "k", data)
    assert await read(c.store, "k") == data
    for work in works:
        assert work.is_dir() and not list(work.iterdir())


async def test_a_key_whose_folder_went_gets_it_made_again(
    cluster: Cluster, durable_impl: str
) -> None:
    c = cluster
    await put(c.store, "a/b/k", body(4096, seed=3))
    for d in c.local:
        shutil.rmtree(Path(d.root) / "data" / BUCKET / "a")
        d.records.newest.clear()
    data = body(4096, seed=4)
    await put(c.store, "a/b/k", data)
    assert await read(c.store, "a/b/k") == data
    record = key_path("a/b/k").meta_path(str(Path("data") / BUCKET))
    assert all((Path(d.root) / record).is_file() for d in c.local)


async def test_the_stat_a_write_returns_is_what_a_get_then_finds(
    cluster: Cluster, durable_impl: str
) -> None:
    c = cluster
    data = body(4096, seed=5)
    await put(c.store, "kept", data)
    known = [d.known(BUCKET, "kept") for d in c.local]
    assert all(k is not None and len(k) == 1 for k in known)  # no thread hop to answer
    read_small = [f.calls["read_small"] for f in c.faulty]
    assert await read(c.store, "kept") == data
    assert [f.calls["read_small"] for f in c.faulty] == read_small
    assert len(c.local) == N


def count_loads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The record files KeyRecord.load reads from now on."""
    loaded: list[str] = []
    load = KeyRecord.load.__func__  # type: ignore[attr-defined]

    def counting(cls: type[KeyRecord], path: str, *args: object) -> KeyRecord:
        loaded.append(path)
        return load(cls, path, *args)

    monkeypatch.setattr(KeyRecord, "load", classmethod(counting))
    return loaded


async def test_an_overwrite_reads_no_record_the_drive_keeps(
    cluster: Cluster, durable_impl: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    c = cluster
    await c.store.update_bucket(BUCKET, versioning="Enabled")
    first = (await put(c.store, "k", body(4096, seed=6))).version_id
    loaded = count_loads(monkeypatch)
    data = body(4096, seed=7)
    second = (await put(c.store, "k", data)).version_id
    assert loaded == []
    assert await read(c.store, "k") == data
    for d in c.local:
        assert [e.version_id for e in await d.read_object(BUCKET, "k")] == [second, first]


async def test_a_record_replaced_behind_the_drive_is_read_again(
    cluster: Cluster, durable_impl: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    c = cluster
    await c.store.update_bucket(BUCKET, versioning="Enabled")
    first = await put(c.store, "k", body(4096, seed=8))
    record = key_path("k").meta_path(str(Path("data") / BUCKET))
    files = [Path(d.root) / record for d in c.local]
    saved = [f.read_bytes() for f in files]
    await put(c.store, "k", body(4096, seed=9))
    for f, data in zip(files, saved, strict=True):  # back to the first version alone
        f.with_suffix(".old").write_bytes(data)
        f.with_suffix(".old").replace(f)
    loaded = count_loads(monkeypatch)
    third = (await put(c.store, "k", body(4096, seed=10))).version_id
    assert sorted(loaded) == sorted(str(f) for f in files)
    for d in c.local:
        ids = [e.version_id for e in await d.read_object(BUCKET, "k", everything=True)]
        assert ids == [third, first.version_id]


async def test_a_drive_whose_folder_vanished_is_a_fault_though_it_kept_the_record(
    cluster: Cluster, durable_impl: str
) -> None:
    """The record a drive keeps parsed spares an overwrite the check that the drive's
    folder is there (the record's stat shows it); a vanished folder (an unmounted disk)
    is still a fault, not a missing key, and nothing is made again on the disk
    underneath."""
    c = cluster
    await put(c.store, "k", body(4096, seed=11))
    drive = c.local[0]
    assert drive.known(BUCKET, "k") is not None  # kept: an overwrite would not read it
    root = Path(drive.root)
    root.rename(root.with_name(root.name + ".unmounted"))
    with pytest.raises(DriveError, match="is missing"):
        await drive.update_object(BUCKET, "k", drop=[("unknown", "unknown")])
    with pytest.raises(DriveError, match="is missing"):
        await drive.read_object(BUCKET, "k")
    assert drive.known(BUCKET, "k") is None  # the kept record no longer answers
    data = body(4096, seed=12)
    await put(c.store, "k", data)  # the other drives make the quorum
    assert await read(c.store, "k") == data
    assert not root.exists()
