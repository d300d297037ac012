"""Object I/O on the erasure sets: PUT, GET, HEAD and DELETE of one key.

The key's set is fixed by a hash of bucket/key (versions.placement); the body is cut
into chunks, each encoded into k data + m parity shards written to the set's drives in
parallel (storage.erasure.shards); then the version is committed to the object record
on every drive of the set (storage.erasure.commits). A body of one chunk goes in one
round trip per drive: its shard and the record together; a small object is read the
same way, its record and shard together. Up to INLINE_MAX the shards go into the
records themselves (records.py: inline): one file per drive per PUT, and a GET reads
nothing but the records.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterable, AsyncIterator, Callable, Sequence
from typing import TYPE_CHECKING

from shoal.storage.backend import (
    NULL_VERSION,
    DeleteResult,
    Guard,
    ObjectMeta,
    ObjectWrite,
)
from shoal.storage.erasure.commits import entry_size
from shoal.storage.erasure.drive import Drive, ShardWrite, object_dir, shard_path
from shoal.storage.erasure.health import HealthTrackedDrive
from shoal.storage.erasure.quorum import Answers, fan_out, fan_out_at
from shoal.storage.erasure.readers import ErasureObjectReader
from shoal.storage.erasure.recordreads import SMALL_READ, RecordReads, pick
from shoal.storage.erasure.records import PartLayout, Rank, VersionRecord, visible
from shoal.storage.erasure.shards import ON_LOOP, ChunkWriter, encode_whole
from shoal.storage.erasure.versions import resolve, settled
from shoal.storage.errors import (
    EntityTooLarge,
    InvalidRequest,
    NoSuchKey,
    PreconditionFailed,
    ServiceUnavailable,
)
from shoal.storage.keys import check_key
from shoal.storage.records import new_meta, now
from shoal.storage.streams import prepend, read_head
from shoal.storage.threads import run
from shoal.storage.version_ids import new_version_id

if TYPE_CHECKING:
    from shoal.storage.erasure.store import ErasureStore

#: Objects up to this size keep their shards in the version record (records.py: inline):
#: a PUT then writes one file per drive instead of a shard file and the record, with
#: the fsyncs of each (the fsyncs are most of a small PUT's time), and a GET reads only
#: the record. Above it, the record's rewrite on every change of the key (and its parse
#: by every listing of it) would cost more than the separate file saves: 128 KiB makes
#: a shard of 32 KiB at 4+2, some 43 KiB of base64 in each drive's record.
INLINE_MAX = 128 * 1024
#: In a bucket that ever had versioning the bound is this many times lower: its record
#: keeps up to history.HEAD_MAX versions, each with its shards (128 versions of 16 KiB
#: make a record under 1 MiB).
VERSIONED_DIVISOR = 8


def inline_limit(store_max: int, versioning: str) -> int:
    """The largest object whose shards go inline, in a bucket of `versioning` state
    (`store_max`: the store's bound, INLINE_MAX unless configured)."""
    return store_max // VERSIONED_DIVISOR if versioning else store_max


@dataclasses.dataclass
class Located:
    """Where a key is (see ObjectIO.locate): its set, shard rotation, the set's drives'
    answers, and other sets still holding live versions of it."""

    set: int
    rot: int
    answers: list[list[VersionRecord] | None]
    others: list[int] = dataclasses.field(default_factory=list)
    failed: str = ""  # the silent drives of the set and why (for errors)

    def current(self, k: int, what: str) -> VersionRecord | None:
        """The newest version a read quorum agrees on (see versions.resolve)."""
        return resolve(self.answers, k, what, failed=self.failed)


def _failed() -> PreconditionFailed:
    return PreconditionFailed("At least one of the pre-conditions you specified did not hold")


def check_key_name(key: str) -> None:
    if key == "":
        raise InvalidRequest("Key must not be empty")
    check_key(key)


def check_conditions(entry: VersionRecord | None, write: ObjectWrite) -> None:
    """If-None-Match / If-Match of a write against the key's current version."""
    current = None if entry is None or entry.deleted else entry.live_meta().etag
    if write.if_none_match and current is not None:
        raise _failed()
    if write.if_match is not None:
        if current is None:
            raise NoSuchKey("The specified key does not exist.")
        wanted = write.if_match.strip().strip('"')
        if wanted not in ("*", current):
            raise _failed()


def marker_meta(key: str, version_id: str, owner: str = "") -> ObjectMeta:
    """A delete marker's metadata in a versioned bucket."""
    return ObjectMeta(
        key=key,
        size=0,
        etag="",
        last_modified=now(whole_seconds=True),
        version_id=version_id,
        delete_marker=True,
        owner=owner,
    )


async def cut(
    body: AsyncIterable[bytes], chunk_size: int, max_size: int | None
) -> AsyncIterator[bytes]:
    """`body` in chunks of `chunk_size` (the last one shorter)."""
    buf = bytearray()
    received = 0
    async for piece in body:
        received += len(piece)
        if max_size is not None and received > max_size:
            raise EntityTooLarge("Your proposed upload exceeds the maximum allowed size")
        buf += piece
        while len(buf) >= chunk_size:
            chunk = bytes(memoryview(buf)[:chunk_size])
            del buf[:chunk_size]
            yield chunk
    if buf:
        yield bytes(buf)


@dataclasses.dataclass
class ObjectIO:
    """PUT, GET, HEAD and DELETE of objects (see the module docstring)."""

    store: ErasureStore

    # -- where a key is ----------------------------------------------------------------

    async def locate(
        self,
        bucket: str,
        key: str,
        version_id: str | None = None,
        everything: bool = False,
        below: Rank | None = None,
        limit: int = 0,
    ) -> Located:
        """The set holding the key's newest version, else its home set, with each drive's
        newest entries (and those of S3 version `version_id`; with `everything`, all;
        with `limit`, a page of them below `below`: Drive.read_object). With several
        pools every candidate set is asked; one that cannot tell (too few drives) makes
        the key unreadable and unwritable rather than risk a stale answer."""
        store = self.store
        where = store.place(bucket, key)

        plain = version_id is None and not everything and below is None and not limit

        async def entries(s: int) -> Answers[list[VersionRecord]]:
            drives = store.sets[s]
            return await fan_out_at(
                drives,
                lambda p: drives[p].read_object(bucket, key, version_id, everything, below, limit),
                known=(lambda p: drives[p].known(bucket, key)) if plain else None,
            )

        def located(s: int, each: Answers[list[VersionRecord]], others: list[int]) -> Located:
            return Located(s, where.rot, each.by_position(), others, each.failed())

        if len(where.candidates) == 1:
            return located(where.home, await entries(where.home), [])
        answers = await asyncio.gather(*(entries(s) for s in where.candidates))
        found = []
        for s, each in zip(where.candidates, answers, strict=True):
            entry = resolve(each.by_position(), store.k, f"{bucket}/{key}", failed=each.failed())
            if entry is not None:
                found.append((entry.order, s, entry.deleted))
        if not found:
            return located(where.home, answers[where.candidates.index(where.home)], [])
        _, s, _ = max(found)
        others = [t for _, t, deleted in found if t != s and not deleted]
        return located(s, answers[where.candidates.index(s)], others)

    async def target(self, bucket: str, key: str) -> int:
        """The set a write of the key goes to."""
        if len(self.store.pools) == 1:
            return self.store.place(bucket, key).home
        return (await self.locate(bucket, key)).set

    async def read_entries(
        self,
        bucket: str,
        key: str,
        everything: bool = False,
        below: Rank | None = None,
        limit: int = 0,
        version_id: str | None = None,
    ) -> tuple[list[HealthTrackedDrive], int, list[list[VersionRecord] | None]]:
        """(set drives, rotation, each drive's entries or None if it failed): the newest
        (and those of S3 version `version_id`), with `everything` all of them, with
        `limit` a page below `below` (Drive.read_object)."""
        found = await self.locate(bucket, key, version_id, everything, below, limit)
        return self.store.sets[found.set], found.rot, found.answers

    async def current(self, bucket: str, key: str) -> VersionRecord | None:
        """The newest version with a read quorum (a delete marker included), or None."""
        return (await self.locate(bucket, key)).current(self.store.k, f"{bucket}/{key}")

    # -- reads and writes --------------------------------------------------------------

    async def write_chunks(
        self,
        body: AsyncIterable[bytes],
        drives: Sequence[Drive],
        base: str,
        rot: int,
        what: str,
        write: ObjectWrite,
    ) -> ChunkWriter:
        """Stream `body` into chunks on `drives`; the writer knows size, MD5, CRCs.
        The body is read on while earlier chunks are written; the next chunk is cut
        only once the writer has taken the last, so one chunk waits for a write slot
        and none queue behind it (a reader task with a queue held three more copies)."""
        store = self.store
        writer = ChunkWriter(drives, store.coder, base, rot, what, list(write.digesters))
        try:
            async with contextlib.aclosing(cut(body, store.chunk_size, write.max_size)) as cuts:
                async for chunk in cuts:
                    await writer.add(chunk)
                    del chunk  # not held while the next one is read
            await writer.finish()
        except BaseException:
            await writer.abort()
            raise
        return writer

    async def discard(self, drives: Sequence[Drive], path: str) -> None:
        await fan_out(drives, lambda d: d.delete(path))

    async def put_object(
        self, bucket: str, key: str, body: AsyncIterable[bytes], write: ObjectWrite
    ) -> ObjectMeta:
        store = self.store
        check_key_name(key)
        versioning = (await store.buckets.head_bucket(bucket)).versioning
        versioned = versioning == "Enabled"
        s, rot = await self.target(bucket, key), store.place(bucket, key).rot
        drives = store.sets[s]
        vid = new_version_id()
        vdir = f"{object_dir(bucket, key)}/{vid}"
        what = f"{bucket}/{key}"
        chunks = aiter(body)
        head, more = await read_head(chunks, store.chunk_size, write.max_size)
        shards: list[list[ShardWrite]] | None = None
        inline: list[bytes] | None = None
        try:
            if more:
                rest = prepend(head, chunks)
                del head  # held by `rest` only until it is handed on, not for the whole write
                writer = await self.write_chunks(rest, drives, vdir, rot, what, write)
                size, md5, crcs, alive = writer.size, writer.md5, writer.crcs, writer.alive
            else:
                # One chunk: encoded here, then shard and record go to each drive together.
                size, md5, encoded, crcs = (
                    len(head),
                    *await encode_whole(store.coder, head, write.digesters),
                )
                alive = {p for p, d in enumerate(drives) if d.online}
                order = [(p - rot) % store.n for p in range(store.n)]
                if encoded and size <= inline_limit(store.inline_max, versioning):
                    inline = [encoded[j][0] for j in order]
                else:
                    shards = [
                        [(shard_path(vdir, 0, j), *encoded[j])] if encoded else [] for j in order
                    ]
            checksums = write.finalize(size, md5) if write.finalize else {}
            meta = new_meta(key, size, md5, write, checksums)
            layout = PartLayout(0, size, store.chunk_size, tuple(map(tuple, crcs)))
            async with store.locks.hold(f"o\0{bucket}\0{key}"):
                if write.if_none_match or write.if_match is not None:
                    check_conditions(await self.current(bucket, key), write)
                entry = self.new_version(vid, rot, meta, (layout,), versioned)
                before = await store.commits.commit(
                    bucket, key, entry, drives, alive, shards, inline
                )
        except BaseException:
            store.spawn(self.discard(drives, vdir))
            raise
        store.usage.object_written(bucket, key, entry_size(before), size)
        return entry.live_meta()

    @staticmethod
    def new_version(
        vid: str, rot: int, meta: ObjectMeta, parts: tuple[PartLayout, ...], versioned: bool
    ) -> VersionRecord:
        """A write's entry, made under the key's lock: ordered by when it commits, not
        when it began (records.py: "order"); in an Enabled bucket that id is also its
        S3 version id, else it is the null version."""
        order = new_version_id()
        meta = dataclasses.replace(meta, version_id=order if versioned else NULL_VERSION)
        return VersionRecord(vid, rot, meta, parts=parts, committed=order)

    async def head_object(self, bucket: str, key: str, version_id: str | None = None) -> ObjectMeta:
        check_key_name(key)
        await self.store.buckets.require(bucket)
        found = await self.locate(bucket, key, version_id)
        what = f"{bucket}/{key}"
        return pick(found.answers, self.store.k, what, version_id, found.failed).live_meta()

    async def open_object(
        self, bucket: str, key: str, version_id: str | None = None
    ) -> ErasureObjectReader:
        """One round trip for a small object: each drive answers with its entries and,
        when the newest is a single chunk, its shard of it (or the shard is inline in
        them). Only the k drives holding data shards are asked first; the others only
        when those cannot settle the read (storage.erasure.recordreads)."""
        store = self.store
        check_key_name(key)
        await store.buckets.require(bucket)
        what = f"{bucket}/{key}"
        with store.readers.opening(bucket, key):
            s, rot = await self.target(bucket, key), store.place(bucket, key).rot
            drives = store.sets[s]
            reads = RecordReads(store, drives, bucket, key, rot, version_id)
            results, failed = await reads.read()
            if reads.chosen is not None:
                entry, shards, lost = reads.chosen
            else:
                answers = [None if r is None else r[0] for r in results]
                entry = pick(answers, store.k, what, version_id, failed)
                shards, lost = reads.small_shards(results, entry)
            if entry.is_inline and len(shards) < store.k:
                raise ServiceUnavailable(
                    f"Not enough intact shards to read {what}: {len(shards)} of "
                    f"{store.n} readable, {store.k} needed."
                )
            reader = ErasureObjectReader(store, bucket, key, drives, entry)
        size = reader.meta.size
        if size == 0:
            reader.data = b""
        elif len(shards) >= store.k and len(entry.parts) == 1 and size <= SMALL_READ:
            if size <= ON_LOOP or all(j in shards for j in range(store.k)):
                # Every data shard here: a join of their payloads, no pyeclib call.
                reader.data = store.coder.decode(shards, size)
            else:
                reader.data = await run(store.coder.decode, shards, size)
            # A shard on an offline drive is not something healing can fix now.
            online = any(drives[p].online for p in lost)
            if online and store.healer is not None:
                store.healer.queue(bucket, key)
        return reader

    async def delete_object(
        self,
        bucket: str,
        key: str,
        version_id: str | None,
        guard: Guard | None,
        owner: str = "",
    ) -> DeleteResult:
        """Without a version id: a marker (a version of its own, `owner`'s, unless the
        bucket was never versioned); with one, that version removed for good."""
        store = self.store
        check_key_name(key)
        versioning = (await store.buckets.head_bucket(bucket)).versioning
        what = f"{bucket}/{key}"
        async with store.locks.hold(f"o\0{bucket}\0{key}"):
            found = await self.locate(bucket, key, version_id)
            entry = found.current(store.k, what)
            if version_id is not None:
                return await self._delete_version(bucket, key, found, version_id, guard)
            exists = entry is not None and not entry.deleted
            if guard is not None:
                guard(entry.live_meta() if exists and entry is not None else None)
            if not versioning and not exists:
                return DeleteResult()
            mvid = new_version_id()
            marker_id = mvid if versioning == "Enabled" else NULL_VERSION
            meta = marker_meta(key, marker_id, owner) if versioning else None
            marker = VersionRecord.marker(mvid, meta)
            # An older copy in another pool (two writers raced a pool's arrival) must
            # not resurface once this marker retires.
            for s in [found.set, *found.others]:
                drives = store.sets[s]
                before = await store.commits.commit(
                    bucket, key, marker, drives, set(range(len(drives)))
                )
        if marker.is_null:  # it replaced the null version
            store.usage.object_deleted(bucket, key, entry_size(before))
        if not versioning:
            return DeleteResult()
        return DeleteResult(version_id=marker_id, delete_marker=True)

    async def update_object_meta(
        self,
        bucket: str,
        key: str,
        version_id: str | None,
        change: Callable[[ObjectMeta], ObjectMeta],
    ) -> ObjectMeta:
        """A version's metadata replaced under the key's lock: its entry rewritten with
        one more revision (records.py: "rev") on k+1 of the drives."""
        store = self.store
        check_key_name(key)
        await store.buckets.require(bucket)
        what = f"{bucket}/{key}"
        async with store.locks.hold(f"o\0{bucket}\0{key}"):
            found = await self.locate(bucket, key, version_id)
            entry = pick(found.answers, store.k, what, version_id, found.failed)
            meta = change(entry.live_meta())
            updated = dataclasses.replace(entry.shared(), meta=meta, revision=entry.revision + 1)
            answers = await fan_out(
                store.sets[found.set], lambda d: d.update_object(bucket, key, add=updated)
            )
            answers.require(store.write_quorum, what)
        return meta

    async def _delete_version(
        self, bucket: str, key: str, found: Located, version_id: str, guard: Guard | None
    ) -> DeleteResult:
        """Remove one version (or marker) for good, under the key's lock: its entries
        leave k+1 drives' records at once — so no read quorum of them is left — and
        its shards go once no reader has it open. An id the key does not have is no
        error (S3 answers 204)."""
        store = self.store
        versions = visible(settled(found.answers, store.k))
        target = next((e for e in versions if e.version_id == version_id), None)
        if guard is not None:
            guard(None if target is None else target.meta)
        if target is None:
            return DeleteResult(version_id=version_id)
        drives = store.sets[found.set]
        # The null version goes with any older null entries it hid.
        gone = [target.rank]
        if target.is_null:
            gone += [
                e.rank for e in settled(found.answers, 1) if e.is_null and e.order < target.order
            ]
        dropped = await fan_out(
            drives, lambda d: d.update_object(bucket, key, drop=gone, keep_data=True)
        )
        dropped.require(store.write_quorum, f"{bucket}/{key}")
        store.spawn(self.remove_data(bucket, key, drives, target, gone))
        store.usage.object_deleted(bucket, key, entry_size(target))
        return DeleteResult(version_id=version_id, delete_marker=target.deleted)

    async def remove_data(
        self,
        bucket: str,
        key: str,
        drives: Sequence[Drive],
        target: VersionRecord,
        ranks: Sequence[Rank],
    ) -> None:
        """The shards of removed versions, once no reader (on any node) has them open;
        what a crash leaves is swept (no record names it)."""
        await self.store.commits.wait_for_readers(bucket, key, target.order)
        for _, vid in ranks:
            await self.discard(drives, f"{object_dir(bucket, key)}/{vid}")
