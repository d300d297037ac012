"""FileStore multipart uploads: parts, completion rules, listing, abort and expiry."""

from __future__ import annotations

import errno
import hashlib
import os
import threading
from datetime import timedelta
from pathlib import Path

import anyio
import pytest

from shoal.storage import errors, filemultipart
from shoal.storage.backend import MIN_PART_SIZE, CompletedPart, ObjectMeta, ObjectWrite
from shoal.storage.filestore import FileStore
from shoal.storage.records import now
from shoal.storage.streams import Spooled, assemble
from tests.unit.conftest import chunks

pytestmark = pytest.mark.anyio

BIG = MIN_PART_SIZE


async def test_full_upload(store: FileStore) -> None:
    write = ObjectWrite(content_type="image/png", user_metadata={"k": "v"})
    up = await store.create_multipart_upload("bucket", "big/obj", write, "CRC32", "COMPOSITE")
    assert (await store.get_upload("bucket", "big/obj", up.upload_id)).write.content_type == (
        "image/png"
    )
    p1 = os.urandom(BIG)
    p2 = os.urandom(BIG + 3)
    p3 = b"tail"
    infos = []
    for n, data in ((1, p1), (2, p2), (3, p3)):
        infos.append(
            await store.upload_part(
                "bucket", "big/obj", up.upload_id, n, chunks(data), ObjectWrite()
            )
        )
    assert infos[0].etag == hashlib.md5(p1).hexdigest() and infos[2].size == 4
    whole = hashlib.sha1()
    seen: list[tuple[int, str]] = []

    def finalize(size: int, etag: str) -> dict[str, str]:
        seen.append((size, etag))
        return {"SHA1": whole.hexdigest()}

    meta = await store.complete_multipart_upload(
        "bucket",
        "big/obj",
        up.upload_id,
        [CompletedPart(i.number, i.etag) for i in infos],
        ObjectWrite(digesters=[whole], finalize=finalize),
    )
    expected = hashlib.md5(b"".join(hashlib.md5(p).digest() for p in (p1, p2, p3))).hexdigest()
    assert meta.etag == f"{expected}-3"
    assert seen == [(len(p1) + len(p2) + 4, meta.etag)]
    assert meta.checksums == {"SHA1": hashlib.sha1(p1 + p2 + p3).hexdigest()}
    assert meta.content_type == "image/png" and meta.user_metadata == {"k": "v"}
    assert meta.checksum_type == "COMPOSITE"
    assert [p.number for p in meta.parts or []] == [1, 2, 3]
    assert meta.parts is not None and meta.parts[1].size == len(p2)
    head = await store.head_object("bucket", "big/obj")
    assert head.parts == meta.parts
    async with await store.open_object("bucket", "big/obj") as reader:
        assert (
            hashlib.md5(await reader.read_all()).hexdigest()
            == hashlib.md5(p1 + p2 + p3).hexdigest()
        )
    assert not os.path.exists(os.path.join(store.root, ".multipart", up.upload_id))
    with pytest.raises(errors.NoSuchUpload):
        await store.complete_multipart_upload(
            "bucket", "big/obj", up.upload_id, [CompletedPart(1, infos[0].etag)], ObjectWrite()
        )


async def test_kernel_copy_path_without_digesters(store: FileStore) -> None:
    up = await store.create_multipart_upload("bucket", "k", ObjectWrite())
    a, b = b"a" * BIG, b"b" * 10
    pa = await store.upload_part("bucket", "k", up.upload_id, 1, chunks(a), ObjectWrite())
    pb = await store.upload_part("bucket", "k", up.upload_id, 2, chunks(b), ObjectWrite())
    parts = [CompletedPart(1, pa.etag), CompletedPart(2, f'"{pb.etag}"')]
    meta = await store.complete_multipart_upload("bucket", "k", up.upload_id, parts, ObjectWrite())
    assert meta.size == BIG + 10
    async with await store.open_object("bucket", "k") as reader:
        assert b"".join([c async for c in reader.stream(BIG - 2, BIG + 1)]) == b"aabb"


async def test_completion_rules(store: FileStore) -> None:
    up = await store.create_multipart_upload("bucket", "k", ObjectWrite())
    small = await store.upload_part("bucket", "k", up.upload_id, 1, chunks(b"s"), ObjectWrite())
    big = await store.upload_part("bucket", "k", up.upload_id, 2, chunks(b"b" * BIG), ObjectWrite())

    async def complete(parts: list[CompletedPart]) -> None:
        await store.complete_multipart_upload("bucket", "k", up.upload_id, parts, ObjectWrite())

    with pytest.raises(errors.InvalidPartOrder):
        await complete([CompletedPart(2, big.etag), CompletedPart(1, small.etag)])
    with pytest.raises(errors.InvalidPartOrder):
        await complete([CompletedPart(1, small.etag), CompletedPart(1, small.etag)])
    with pytest.raises(errors.InvalidPart):
        await complete([CompletedPart(1, big.etag)])
    with pytest.raises(errors.InvalidPart):
        await complete([CompletedPart(3, big.etag)])
    with pytest.raises(errors.EntityTooSmall):
        await complete([CompletedPart(1, small.etag), CompletedPart(2, big.etag)])
    with pytest.raises(errors.InvalidRequest):
        await complete([])
    meta = await store.complete_multipart_upload(
        "bucket", "k", up.upload_id, [CompletedPart(2, big.etag)], ObjectWrite()
    )
    assert meta.size == BIG and meta.etag.endswith("-1")


async def test_conditional_complete(store: FileStore) -> None:
    await store.put_object("bucket", "k", chunks(b"old"), ObjectWrite())
    up = await store.create_multipart_upload("bucket", "k", ObjectWrite())
    p = await store.upload_part("bucket", "k", up.upload_id, 1, chunks(b"x"), ObjectWrite())
    with pytest.raises(errors.PreconditionFailed):
        await store.complete_multipart_upload(
            "bucket", "k", up.upload_id, [CompletedPart(1, p.etag)], ObjectWrite(if_none_match=True)
        )
    async with await store.open_object("bucket", "k") as reader:
        assert await reader.read_all() == b"old"
    # The upload survives a failed conditional completion.
    await store.get_upload("bucket", "k", up.upload_id)


async def test_reupload_part_and_list_parts(store: FileStore) -> None:
    up = await store.create_multipart_upload("bucket", "k", ObjectWrite())
    for n in range(1, 6):
        await store.upload_part("bucket", "k", up.upload_id, n, chunks(b"v1"), ObjectWrite())
    p3 = await store.upload_part("bucket", "k", up.upload_id, 3, chunks(b"v2!"), ObjectWrite())
    page = await store.list_parts("bucket", "k", up.upload_id, max_parts=2)
    assert [p.number for p in page.parts] == [1, 2] and page.truncated
    page = await store.list_parts("bucket", "k", up.upload_id, after=2, max_parts=2)
    assert [p.number for p in page.parts] == [3, 4] and page.parts[0].etag == p3.etag
    assert page.next_part_number_marker == 4
    page = await store.list_parts("bucket", "k", up.upload_id, after=4)
    assert [p.number for p in page.parts] == [5] and not page.truncated
    updir = os.path.join(store.root, ".multipart", up.upload_id)
    assert len([n for n in os.listdir(updir) if n.startswith("part-00003.")]) == 2  # json+data


async def test_concurrent_reuploads_of_one_part(store: FileStore) -> None:
    up = await store.create_multipart_upload("bucket", "k", ObjectWrite())
    bodies = [bytes([i]) * 50_000 for i in range(10)]
    async with anyio.create_task_group() as tg:
        for b in bodies:
            tg.start_soon(
                store.upload_part, "bucket", "k", up.upload_id, 1, chunks(b), ObjectWrite()
            )
    (part,) = (await store.list_parts("bucket", "k", up.upload_id)).parts
    meta = await store.complete_multipart_upload(
        "bucket", "k", up.upload_id, [CompletedPart(1, part.etag)], ObjectWrite()
    )
    async with await store.open_object("bucket", "k") as reader:
        data = await reader.read_all()
    assert hashlib.md5(data).hexdigest() == part.etag and meta.size == 50_000


async def test_a_part_replaced_during_completion_stays_what_it_assembles(
    store: FileStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An UploadPart does not wait for a Complete: the part it replaces mid-assembly
    was gone from under it, and the Complete answered NoSuchUpload for an open upload.
    It assembles links to the parts it chose, made first."""
    up = await store.create_multipart_upload("bucket", "k", ObjectWrite())
    one, two = os.urandom(BIG), b"two"
    parts = []
    for n, body in ((1, one), (2, two)):
        part = await store.upload_part("bucket", "k", up.upload_id, n, chunks(body), ObjectWrite())
        parts.append(CompletedPart(n, part.etag))
    assembling, replaced = threading.Event(), threading.Event()
    calls: list[list[str]] = []

    def assemble_after_the_race(out: str, sources: list[str], digesters: list) -> Spooled:
        calls.append(list(sources))
        assembling.set()
        assert replaced.wait(10)
        return assemble(out, sources, digesters)

    monkeypatch.setattr(filemultipart, "assemble", assemble_after_the_race)
    done: list[ObjectMeta] = []

    async def complete() -> None:
        done.append(
            await store.complete_multipart_upload("bucket", "k", up.upload_id, parts, ObjectWrite())
        )

    async with anyio.create_task_group() as tg:
        tg.start_soon(complete)
        assert await anyio.to_thread.run_sync(assembling.wait, 10)
        await store.upload_part("bucket", "k", up.upload_id, 1, chunks(b"new"), ObjectWrite())
        replaced.set()
    assert len(calls) == 1 and done[0].size == BIG + 3
    async with await store.open_object("bucket", "k") as reader:
        assert await reader.read_all() == one + two
    assert not [n for n in os.listdir(store.temp.dir) if n.endswith(".part")]


async def test_a_part_replaced_before_its_link_is_chosen_again(
    store: FileStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    up = await store.create_multipart_upload("bucket", "k", ObjectWrite())
    part = await store.upload_part("bucket", "k", up.upload_id, 1, chunks(b"x"), ObjectWrite())
    links: list[str] = []
    real_link = os.link

    def link_late_once(src: str, dst: str) -> None:
        links.append(src)
        if len(links) == 1:
            raise FileNotFoundError(src)  # as if a racing UploadPart had just replaced it
        real_link(src, dst)

    monkeypatch.setattr(filemultipart.os, "link", link_late_once)
    meta = await store.complete_multipart_upload(
        "bucket", "k", up.upload_id, [CompletedPart(1, part.etag)], ObjectWrite()
    )
    assert meta.size == 1 and len(links) == 2


async def test_without_hard_links_parts_are_read_in_place(
    store: FileStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    up = await store.create_multipart_upload("bucket", "k", ObjectWrite())
    part = await store.upload_part("bucket", "k", up.upload_id, 1, chunks(b"x"), ObjectWrite())

    def no_links(src: str, dst: str) -> None:
        raise PermissionError(errno.EPERM, "hard links not supported", src)

    monkeypatch.setattr(filemultipart.os, "link", no_links)
    meta = await store.complete_multipart_upload(
        "bucket", "k", up.upload_id, [CompletedPart(1, part.etag)], ObjectWrite()
    )
    async with await store.open_object("bucket", "k") as reader:
        assert meta.size == 1 and await reader.read_all() == b"x"


async def test_wrong_ids_and_abort(store: FileStore) -> None:
    up = await store.create_multipart_upload("bucket", "k", ObjectWrite())
    for bad in ["nope", "../../etc", up.upload_id + "x"]:
        with pytest.raises(errors.NoSuchUpload):
            await store.upload_part("bucket", "k", bad, 1, chunks(b"x"), ObjectWrite())
    with pytest.raises(errors.NoSuchUpload):
        await store.get_upload("bucket", "other-key", up.upload_id)
    await store.create_bucket("other")
    with pytest.raises(errors.NoSuchUpload):
        await store.list_parts("other", "k", up.upload_id)
    await store.abort_multipart_upload("bucket", "k", up.upload_id)
    with pytest.raises(errors.NoSuchUpload):
        await store.abort_multipart_upload("bucket", "k", up.upload_id)
    with pytest.raises(errors.NoSuchUpload):
        await store.upload_part("bucket", "k", up.upload_id, 1, chunks(b"x"), ObjectWrite())
    assert os.listdir(store.temp.dir) == ["owner.lock"]


async def test_list_uploads_expiry_and_restart(tmp_path: Path) -> None:
    fs = FileStore(tmp_path / "d")
    await fs.open()
    await fs.create_bucket("b")
    await fs.create_bucket("c")
    ids = [(await fs.create_multipart_upload("b", k, ObjectWrite())).upload_id for k in "xyx"]
    await fs.create_multipart_upload("c", "x", ObjectWrite())
    await fs.upload_part("b", "x", ids[0], 1, chunks(b"kept"), ObjectWrite())
    await fs.close()
    fs = FileStore(tmp_path / "d")
    await fs.open()
    try:
        page = await fs.list_multipart_uploads("b")
        assert [u.key for u in page.uploads] == ["x", "x", "y"]
        assert [u.upload_id for u in page.uploads[:2]] == [ids[0], ids[2]]
        parts = (await fs.list_parts("b", "x", ids[0])).parts
        assert parts[0].size == 4
        page = await fs.list_multipart_uploads("b", max_uploads=1)
        assert page.truncated and page.next_upload_id_marker == ids[0]
        assert await fs.expire_multipart_uploads(now() - timedelta(days=1)) == 0
        assert await fs.expire_multipart_uploads(now() + timedelta(seconds=1)) == 4
        assert (await fs.list_multipart_uploads("b")).uploads == []
    finally:
        await fs.close()


async def test_housekeeping_task_expires(tmp_path: Path) -> None:
    fs = FileStore(tmp_path / "d", multipart_expiration_days=0)
    await fs.open()
    await fs.create_bucket("b")
    await fs.close()
    fs2 = FileStore(tmp_path / "d")
    await fs2.open()
    await fs2.create_multipart_upload("b", "x", ObjectWrite())
    await fs2.close()
    fs = FileStore(tmp_path / "d", multipart_expiration_days=0)
    await fs.open()
    try:
        with anyio.fail_after(5):
            while (await fs.list_multipart_uploads("b")).uploads:
                await anyio.sleep(0.01)
    finally:
        await fs.close()
