"""Multipart uploads on the erasure sets.

An upload lives on the object's erasure set (named in its id once the cluster has
several pools): `multipart/{bucket}/{upload}/upload.json` on each drive of the set, and
each part encoded like an object into `part-{P}.{pv}/` with its record `part-{P}.json`
(storage.erasure.records.PartRecord). Completion hard-links, not rewrites, the parts'
shard files into the new version; the upload stays whole until the version is
committed, so a completion cut off by a crash is simply retried.

An upload's part records, its Complete and its Abort are ordered by the upload's lock.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import AsyncIterable, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from shoal.storage.backend import (
    CompletedPart,
    ObjectMeta,
    ObjectWrite,
    PartInfo,
    PartListPage,
    UploadInfo,
    UploadListPage,
)
from shoal.storage.erasure.buckets import agreed
from shoal.storage.erasure.commits import entry_size
from shoal.storage.erasure.completed import Completions
from shoal.storage.erasure.drive import Drive, object_dir
from shoal.storage.erasure.healing import ABANDONED_AFTER_SECONDS
from shoal.storage.erasure.objects import check_conditions, check_key_name
from shoal.storage.erasure.quorum import fan_out
from shoal.storage.erasure.records import PartRecord
from shoal.storage.erasure.shards import read_chunk
from shoal.storage.erasure.versions import ChunkRef, chunk_refs
from shoal.storage.errors import NoSuchUpload, ServiceUnavailable
from shoal.storage.listing import uploads_page
from shoal.storage.multipart import (
    check_completion,
    check_part_number,
    is_upload_id,
    multipart_etag,
    new_upload,
    no_upload,
)
from shoal.storage.records import (
    dumps,
    new_meta,
    now,
    parse_iso,
    upload_from_dict,
    upload_to_dict,
)
from shoal.storage.threads import run
from shoal.storage.version_ids import new_version_id

if TYPE_CHECKING:
    from shoal.storage.erasure.store import ErasureStore

Body = AsyncIterable[bytes]

log = logging.getLogger("shoal.storage")


def upload_lock(upload_id: str) -> str:
    """The lock that orders an upload's part records, its Complete and its Abort."""
    return f"u\0{upload_id}"


class Multipart:
    """Create, upload parts to, list, complete and abort uploads (see the module
    docstring)."""

    def __init__(self, store: ErasureStore) -> None:
        self.store = store
        #: Uploads being created in this process (not yet on a quorum of drives).
        self.creating: set[str] = set()
        self.completions = Completions(store.k)

    def abandoned(self, upload_id: str, initiated: Sequence[str]) -> bool:
        """Whether an upload that no quorum of drives records can be removed: not one
        this process is creating; on a node that is its drives' only writer, any other;
        in a cluster, one begun more than ABANDONED_AFTER_SECONDS ago."""
        if upload_id in self.creating:
            return False
        if self.store.exclusive_drives:
            return True
        if not initiated:
            return False
        limit = now() - timedelta(seconds=ABANDONED_AFTER_SECONDS)
        try:
            return all(parse_iso(i) < limit for i in initiated)
        except ValueError:
            return False

    async def expire_periodically(self, days: float, interval: float) -> None:
        """Abort uploads begun more than `days` ago, every `interval` seconds."""
        while True:
            try:
                n = await self.expire_multipart_uploads(now() - timedelta(days=days))
                if n:
                    log.info("expired %d multipart uploads", n)
            except Exception:
                log.exception("multipart cleanup failed")
            await asyncio.sleep(max(interval, 1.0))

    @staticmethod
    def _upload_dir(bucket: str, upload_id: str) -> str:
        if not is_upload_id(upload_id):  # never text that could become a path
            raise no_upload()
        return f"multipart/{bucket}/{upload_id}"

    async def create_multipart_upload(
        self, bucket: str, key: str, write: ObjectWrite, algorithm: str | None, kind: str | None
    ) -> UploadInfo:
        """An upload whose parts will carry checksums of `algorithm`, of type `kind`."""
        check_key_name(key)
        await self.store.buckets.require(bucket)
        info = new_upload(key, write, algorithm, kind)
        s = await self.store.objects.target(bucket, key)
        if len(self.store.pools) > 1:  # the id says which set holds the upload
            info = dataclasses.replace(info, upload_id=f"s{s}.{info.upload_id}")
        drives = self.store.sets[s]
        data = dumps({**upload_to_dict(bucket, info), "v": info.upload_id})
        path = f"{self._upload_dir(bucket, info.upload_id)}/upload.json"
        self.creating.add(info.upload_id)
        try:
            answers = await fan_out(drives, lambda d: d.write_doc(path, data))
            if len(answers.ok()) < self.store.write_quorum:
                await self.store.objects.discard(drives, self._upload_dir(bucket, info.upload_id))
                answers.require(self.store.write_quorum, f"{bucket}/{key}")
        finally:
            self.creating.discard(info.upload_id)
        self.store.usage.upload_started(bucket, key)
        return info

    def upload_set(self, bucket: str, key: str, upload_id: str) -> tuple[int, int]:
        """(set, rotation) of an upload: named in its id once the cluster has several
        pools, else the key's set in the first pool (where it was before any joined)."""
        where = self.store.place(bucket, key)
        head, dot, _ = upload_id.partition(".")
        if dot and head[:1] == "s" and head[1:].isdigit() and int(head[1:]) < len(self.store.sets):
            return int(head[1:]), where.rot
        return where.candidates[0], where.rot

    async def _read_set_doc(
        self, drives: Sequence[Drive], path: str, what: str
    ) -> dict[str, Any] | None:
        """A record kept on the drives of one erasure set (uploads and their parts)."""
        return await agreed(drives, path, self.store.k, what)

    async def get_upload(self, bucket: str, key: str, upload_id: str) -> UploadInfo:
        check_key_name(key)
        await self.store.buckets.require(bucket)
        drives = self.store.sets[self.upload_set(bucket, key, upload_id)[0]]
        path = f"{self._upload_dir(bucket, upload_id)}/upload.json"
        record = await self._read_set_doc(drives, path, f"upload {upload_id}")
        if record is None:
            raise no_upload()
        rec_bucket, info = upload_from_dict(record)
        if rec_bucket != bucket or info.key != key:
            raise no_upload()
        return info

    async def upload_part(
        self, bucket: str, key: str, upload_id: str, number: int, body: Body, write: ObjectWrite
    ) -> PartInfo:
        check_part_number(number)
        await self.get_upload(bucket, key, upload_id)
        s, rot = self.upload_set(bucket, key, upload_id)
        drives = self.store.sets[s]
        udir = self._upload_dir(bucket, upload_id)
        pv = new_version_id()
        pdir = f"{udir}/part-{number}.{pv}"
        try:
            try:
                writer = await self.store.objects.write_chunks(
                    body, drives, pdir, rot, f"{bucket}/{key}", write
                )
            except ServiceUnavailable:
                # A Complete or Abort removed the upload's folder under the shard writes.
                if await self._upload_gone(bucket, key, upload_id):
                    raise no_upload() from None
                raise
            checksums = write.finalize(writer.size, writer.md5) if write.finalize else {}
            part = PartInfo(number, writer.size, writer.md5, now(), dict(checksums or {}))
            crcs = tuple(map(tuple, writer.crcs))
            record = PartRecord(pv, part, writer.size, self.store.chunk_size, crcs)
            path = f"{udir}/part-{number}.json"
            # The upload's lock, which Complete and Abort hold throughout: a record written
            # after either would name a part of an upload that is gone (a folder nothing
            # removes), and a part replaced while a Complete links it vanishes under it.
            async with self.store.locks.hold(upload_lock(upload_id)):
                await self.get_upload(bucket, key, upload_id)
                stored = await self._read_set_doc(drives, path, f"part {number}")
                previous = None if stored is None else PartRecord.from_dict(stored)
                # Of two uploads of one part number, the one that finishes last is the
                # part (as in S3), whichever began first: its record replaces the other.
                data = dumps(record.to_dict())
                answers = await fan_out(
                    drives,
                    lambda d: d.write_doc(path, data),
                    only=sorted(writer.alive),
                    skipped=sorted(writer.lost.items()),
                )
                answers.require(self.store.write_quorum, f"{bucket}/{key} part {number}")
        except BaseException:
            self.store.spawn(self.store.objects.discard(drives, pdir))
            raise
        if previous is not None:
            self.store.spawn(
                self.store.objects.discard(drives, f"{udir}/part-{number}.{previous.pv}")
            )
        return part

    async def _upload_gone(self, bucket: str, key: str, upload_id: str) -> bool:
        """Whether a quorum of drives says the upload no longer exists (False when they
        cannot tell)."""
        try:
            await self.get_upload(bucket, key, upload_id)
        except NoSuchUpload:
            return True
        except ServiceUnavailable:
            return False
        return False

    async def _parts(
        self, bucket: str, key: str, upload_id: str
    ) -> dict[int, tuple[PartInfo, PartRecord]]:
        drives = self.store.sets[self.upload_set(bucket, key, upload_id)[0]]
        udir = self._upload_dir(bucket, upload_id)
        numbers: set[int] = set()
        for listed in (await fan_out(drives, lambda d: d.list_dir(udir))).values():
            for name in listed:
                if name.startswith("part-") and name.endswith(".json"):
                    with contextlib.suppress(ValueError):
                        numbers.add(int(name[5:-5]))
        records = await asyncio.gather(
            *(self._read_set_doc(drives, f"{udir}/part-{n}.json", f"part {n}") for n in numbers)
        )
        parts = [PartRecord.from_dict(r) for r in records if r is not None]
        return {p.info.number: (p.info, p) for p in parts}

    async def list_parts(
        self, bucket: str, key: str, upload_id: str, *, after: int = 0, max_parts: int = 1000
    ) -> PartListPage:
        info = await self.get_upload(bucket, key, upload_id)
        stored = await self._parts(bucket, key, upload_id)
        numbers = sorted(n for n in stored if n > after)
        chosen = [stored[n][0] for n in numbers][: max(max_parts, 0)]
        truncated = len(numbers) > len(chosen)
        return PartListPage(info, chosen, truncated, chosen[-1].number if chosen else None)

    async def complete_multipart_upload(
        self, bucket: str, key: str, upload_id: str, parts: list[CompletedPart], write: ObjectWrite
    ) -> ObjectMeta:
        """Hard-links the parts' shard files into the new version: no data is rewritten,
        and the upload stays whole until the version is committed, so a completion cut
        off anywhere (a crash included) can simply be retried; what an unfinished one
        linked is an unnamed version folder, swept later. The digesters are fed by
        reading the parts back (data shards, no decoding).

        All of it under the upload's lock: the parts chosen stay as they were (an
        UploadPart commits its record only under that lock), and a racing Complete or
        Abort waits, then finds the upload gone: NoSuchUpload, not a failed link.

        The completion is remembered before the upload's folders go, so a crash while
        they go (some drives' gone, a quorum's left) leaves a repeat that is answered
        from memory, not retried against parts some drives no longer hold; the repeat
        finishes the removal."""
        async with self.store.locks.hold(upload_lock(upload_id)):
            drives = self.store.sets[self.upload_set(bucket, key, upload_id)[0]]
            udir = self._upload_dir(bucket, upload_id)
            recalled = await self.completions.recall(drives, bucket, key, upload_id, parts)
            if recalled is None:
                try:
                    meta = await self._complete(bucket, key, upload_id, parts, write)
                except NoSuchUpload:  # another node's Complete finished first?
                    recalled = await self.completions.recall(drives, bucket, key, upload_id, parts)
                    if recalled is None:
                        raise
                    return recalled
                await self.completions.remember(drives, bucket, upload_id, parts, meta)
            await self.store.objects.discard(drives, udir)  # gone once this returns
            return meta if recalled is None else recalled

    async def _complete(
        self, bucket: str, key: str, upload_id: str, parts: list[CompletedPart], write: ObjectWrite
    ) -> ObjectMeta:
        info = await self.get_upload(bucket, key, upload_id)
        stored = await self._parts(bucket, key, upload_id)
        chosen = check_completion(parts, stored)
        s, rot = self.upload_set(bucket, key, upload_id)
        drives = self.store.sets[s]
        udir = self._upload_dir(bucket, upload_id)
        vid = new_version_id()
        vdir = f"{object_dir(bucket, key)}/{vid}"
        infos = [p for p, _ in chosen]
        size = sum(p.size for p in infos)
        if write.digesters:
            refs = []
            offset = 0
            for p, r in chosen:
                for ref in chunk_refs(f"{udir}/part-{p.number}.{r.pv}", [r.layout(0)]):
                    refs.append(
                        ChunkRef(ref.base, ref.index, offset + ref.offset, ref.size, ref.crcs)
                    )
                offset += p.size
            await self._feed(drives, rot, refs, write.digesters, f"{bucket}/{key}")
        etag = multipart_etag(infos)
        checksums = write.finalize(size, etag) if write.finalize else {}
        meta = new_meta(key, size, etag, write, checksums, parts=infos, upload=info)
        layout = tuple(r.layout() for _, r in chosen)
        links = [(f"{udir}/part-{p.number}.{r.pv}", f"{vdir}/part-{p.number}") for p, r in chosen]

        async def link_all(d: Drive) -> None:
            # A drive that missed a part is not counted: update_object refuses a version
            # whose shards the drive does not hold.
            for src, dst in links:
                with contextlib.suppress(FileNotFoundError):
                    await d.link(src, dst)

        versioned = (await self.store.buckets.head_bucket(bucket)).versioning == "Enabled"
        async with self.store.locks.hold(f"o\0{bucket}\0{key}"):
            if write.if_none_match or write.if_match is not None:
                check_conditions(await self.store.objects.current(bucket, key), write)
            await self.get_upload(bucket, key, upload_id)
            try:
                linked = await fan_out(drives, link_all)
                entry = self.store.objects.new_version(vid, rot, meta, layout, versioned)
                before = await self.store.commits.commit(
                    bucket, key, entry, drives, set(linked.ok())
                )
            except BaseException as exc:
                self.store.spawn(self.store.objects.discard(drives, vdir))
                # In a cluster, another node's Complete or Abort (which this node's lock
                # does not hold back) may have removed the parts under the links.
                if isinstance(exc, ServiceUnavailable) and await self._upload_gone(
                    bucket, key, upload_id
                ):
                    raise no_upload() from None
                raise
        self.store.usage.object_written(bucket, key, entry_size(before), size)
        self.store.usage.upload_ended(bucket, key)
        return entry.live_meta()

    async def _feed(
        self,
        drives: Sequence[Drive],
        rot: int,
        refs: list[ChunkRef],
        digesters: Sequence[Any],
        what: str,
    ) -> None:
        def update(pieces: list[memoryview]) -> None:
            for piece in pieces:
                for d in digesters:
                    d.update(piece)

        for ref in refs:
            pieces, _, _ = await read_chunk(drives, self.store.coder, ref, rot, what)
            await run(update, pieces)

    async def abort_multipart_upload(self, bucket: str, key: str, upload_id: str) -> None:
        """Under the upload's lock, like Complete: of two, the second finds it gone."""
        async with self.store.locks.hold(upload_lock(upload_id)):
            await self.get_upload(bucket, key, upload_id)
            drives = self.store.sets[self.upload_set(bucket, key, upload_id)[0]]
            udir = self._upload_dir(bucket, upload_id)
            answers = await fan_out(drives, lambda d: d.delete(udir))
            answers.require(self.store.write_quorum, f"upload {upload_id}")
        self.store.usage.upload_ended(bucket, key)

    async def _all_uploads(self, bucket: str) -> list[UploadInfo]:
        found: dict[str, UploadInfo] = {}
        for drives in self.store.sets:
            ids: set[str] = set()
            listing = await fan_out(drives, lambda d: d.list_dir(f"multipart/{bucket}"))
            for listed in listing.values():
                ids.update(listed)
            for upload_id in ids:
                record = await self._read_set_doc(
                    drives, f"multipart/{bucket}/{upload_id}/upload.json", upload_id
                )
                if record is not None:
                    found[upload_id] = upload_from_dict(record)[1]
        return list(found.values())

    async def list_multipart_uploads(self, bucket: str, **page: Any) -> UploadListPage:
        """`page`: storage.listing.uploads_page's paging arguments."""
        await self.store.buckets.bucket_record(bucket)
        return uploads_page(await self._all_uploads(bucket), **page)

    async def expire_multipart_uploads(self, older_than: datetime) -> int:
        for drives in self.store.sets:
            await self.completions.forget_expired(drives)
        count = 0
        for bucket in await self.store.list_buckets():
            for info in await self._all_uploads(bucket.name):
                if info.initiated < older_than:
                    with contextlib.suppress(NoSuchUpload):
                        await self.abort_multipart_upload(bucket.name, info.key, info.upload_id)
                        count += 1
        return count
