"""The versions of one key in a versioned bucket of the FileStore.

The key's files in the bucket directory always hold its *current* version when that is
an object (not a delete marker), exactly as in a bucket that was never versioned, so
browsing the folder, ListObjects and a plain GET see nothing new. Every other version
and every delete marker lives in the key's version directory:

    {dir}/.versions/{bucket}/{encoded key dirs}/{encoded leaf}._storage_object/
        {version-id}        object bytes          (no data file for a delete marker)
        {version-id}.json   metadata record (ObjectMeta; delete_marker for a marker)
        null, null.json     the null version, if it is not current

A version id (storage.version_ids) starts with the nanosecond it was committed, minted
under the key's lock, so its order is the order writes were acknowledged; a null
version's record carries that nanosecond as `order` (0 for an object written before
versioning was turned on: it precedes every version). The current object is newer than
everything in the version directory; with no current object, the newest entry there is
the current version (a delete marker, since an object would have been moved back).
Listing a key's versions therefore needs only the names in its directory, plus the
null record's `order`; the version directories form a tree shaped like the bucket's, so
storage.walk finds keys with versions in S3 order.

Changes that move several files go through storage.journal; this module builds their
plans. Everything here blocks and expects the key's lock to be held by the caller.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from shoal.storage.backend import NULL_VERSION, DeleteResult, Guard, ObjectMeta
from shoal.storage.commit import TempArea
from shoal.storage.diskio import read_json, remove_empty_parents, replace_atomically, rmtree_quiet
from shoal.storage.errors import MethodNotAllowed, NoSuchKey, NoSuchVersion
from shoal.storage.journal import KEY, TEMP, VERSIONS, Move, Plan, decide
from shoal.storage.keys import KeyPath, join_below
from shoal.storage.records import dumps, meta_from_dict, meta_to_dict, now
from shoal.storage.version_ids import new_version_id, valid_version_id
from shoal.storage.walk import ListingCache

VERSIONS_DIR = ".versions"
RECORD_SUFFIX = ".json"
#: Record field: a null version's commit nanosecond (its place among the key's versions).
ORDER = "order"


def versions_root(root: str, bucket: str) -> str:
    return os.path.join(root, VERSIONS_DIR, bucket)


def stamp(vid: str, record: dict[str, Any] | None = None) -> int:
    """Where a version sorts among its key's versions (larger: newer)."""
    if vid != NULL_VERSION:
        return int(vid[:16], 16)
    return int((record or {}).get(ORDER) or 0)


def mint(after: int) -> str:
    """A fresh version id, newer than `after` even if the clock stepped back."""
    vid = new_version_id()
    if int(vid[:16], 16) <= after:
        vid = f"{after + 1:016x}{vid[16:]}"
    return vid


def no_key(marker: str | None = None) -> NoSuchKey:
    return NoSuchKey("The specified key does not exist.", delete_marker=marker)


def no_version() -> NoSuchVersion:
    return NoSuchVersion("The specified version does not exist.")


def _inode(path: str) -> int | None:
    try:
        return os.lstat(path).st_ino
    except (FileNotFoundError, NotADirectoryError):
        return None


def _read(path: str) -> dict[str, Any] | None:
    try:
        return read_json(path)
    except (FileNotFoundError, NotADirectoryError):
        return None


@dataclass(frozen=True)
class Stored:
    """A version in a key's version directory."""

    vid: str
    stamp: int


def sorted_versions(vdir: str, cache: ListingCache | None = None) -> list[Stored]:
    """The versions in `vdir`, newest first (names only, plus the null record's order);
    kept in `cache` while the directory is unchanged."""
    key = "v\0" + vdir
    mark = cache.stamp(vdir) if cache is not None else (0, 0)
    if cache is not None:
        hit = cache.get(key, mark)
        if hit is not None:
            return hit  # type: ignore[no-any-return]
    out: list[Stored] = []
    try:
        with os.scandir(vdir) as it:
            names = [de.name for de in it]
    except (FileNotFoundError, NotADirectoryError):
        names = []
    for name in names:
        if not name.endswith(RECORD_SUFFIX):
            continue
        vid = name[: -len(RECORD_SUFFIX)]
        if not valid_version_id(vid):
            continue
        record = _read(os.path.join(vdir, name)) if vid == NULL_VERSION else None
        out.append(Stored(vid, stamp(vid, record)))
    out.sort(key=lambda s: (s.stamp, s.vid), reverse=True)
    if cache is not None:
        cache.put(key, mark, out)
    return out


@dataclass(frozen=True)
class KeyVersions:
    """Where one key's versions are."""

    key: str
    kp: KeyPath
    bucket_dir: str
    vroot: str  # versions_root of the bucket
    lock: str

    @property
    def meta(self) -> str:
        return self.kp.meta_path(self.bucket_dir)

    @property
    def data(self) -> str:
        return self.kp.data_path(self.bucket_dir)

    @property
    def vdir(self) -> str:
        return join_below(self.vroot, (*self.kp.dirs, self.kp.data_name))

    def entry_meta(self, vid: str) -> str:
        return os.path.join(self.vdir, vid + RECORD_SUFFIX)

    def entry_data(self, vid: str) -> str:
        return os.path.join(self.vdir, vid)

    def current(self) -> dict[str, Any] | None:
        """The current object's record, if the current version is an object."""
        return _read(self.meta)

    def entry(self, vid: str) -> dict[str, Any] | None:
        return _read(self.entry_meta(vid)) if valid_version_id(vid) else None

    def has_versions(self) -> bool:
        return os.path.isdir(self.vdir)

    def plan(self, moves: list[Move], final: str | None = None, **data: Any) -> Plan:
        return Plan(
            lock=self.lock,
            bucket_dir=self.bucket_dir,
            versions_root=self.vroot,
            dirs=self.kp.dirs,
            vname=self.kp.data_name,
            moves=tuple(moves),
            final=final,
            **data,
        )


def _moves(pairs: list[tuple[str, str]], place: str) -> list[Move]:
    out = []
    for src, dst in pairs:
        ino = _inode(src)
        if ino is not None:
            out.append(Move(src, dst, ino, place))
    return out


@dataclass
class Room:
    """What making room for a new current version decided (Versions._make_room)."""

    vid: str
    moves: list[Move] = field(default_factory=list)
    trash: list[str] = field(default_factory=list)
    #: Size of the object version that goes away (None: none goes).
    displaced: int | None = None
    #: Fields added to the new version's record (a null version's order).
    record_extra: dict[str, Any] = field(default_factory=dict)


class Versions:
    """Versioned writes, deletes, reads and metadata changes of a FileStore."""

    def __init__(self, root: str, temp: TempArea, cache: ListingCache) -> None:
        self.root = root
        self.temp = temp
        self.cache = cache

    # -- moves ---------------------------------------------------------------------------

    def _demote(self, kv: KeyVersions, vid: str) -> list[Move]:
        """The current object into the version directory (record first: it stops being
        current for lock-free readers in one step)."""
        pairs = [(kv.meta, kv.entry_meta(vid)), (kv.data, kv.entry_data(vid))]
        return _moves(pairs, VERSIONS)

    def _promote(self, kv: KeyVersions, vid: str) -> list[Move]:
        """A version back to current (data first: the record makes it visible)."""
        return _moves([(kv.entry_data(vid), kv.data), (kv.entry_meta(vid), kv.meta)], KEY)

    def _drop(self, meta: str, data: str) -> tuple[list[Move], list[str]]:
        """A version removed: moved into the temporary area, deleted after the plan."""
        trash = [self.temp.path(".trash"), self.temp.path(".trash")]
        return _moves([(meta, trash[0]), (data, trash[1])], TEMP), trash

    def _finish(self, kv: KeyVersions, trash: list[str], *, emptied: bool = True) -> None:
        """After a plan: delete what it removed; with `emptied`, remove the directories
        it may have left empty."""
        for path in trash:
            rmtree_quiet(path)
        if emptied:
            remove_empty_parents(kv.vdir, kv.vroot)
            remove_empty_parents(kv.kp.parent(kv.bucket_dir), kv.bucket_dir)
        self.cache.bump()

    # -- writes --------------------------------------------------------------------------

    def _make_room(
        self, kv: KeyVersions, state: str, cur: dict[str, Any] | None, *, overwrite: bool
    ) -> Room:
        """Where a new current version (an object or a delete marker) goes. Enabled: a
        fresh id, the current object demoted to an older version. Otherwise the null
        version, and the old null one goes: the current object if it is null (with
        `overwrite` a PUT installs over its files, else they are moved away), or the
        null entry among the older versions."""
        cur_vid = None if cur is None else str(cur.get("version_id") or NULL_VERSION)
        after = 0 if cur is None or cur_vid is None else stamp(cur_vid, cur)
        if state == "Enabled":
            room = Room(mint(after))
            if cur_vid is not None:
                room.moves += self._demote(kv, cur_vid)
            return room
        room = Room(NULL_VERSION, record_extra={ORDER: int(mint(after)[:16], 16)})
        if cur_vid == NULL_VERSION and cur is not None:
            room.displaced = int(cur["size"])
            if not overwrite:
                dropped, room.trash = self._drop(kv.meta, kv.data)
                room.moves += dropped
        elif cur_vid is not None:
            room.moves += self._demote(kv, cur_vid)
        old_null = kv.entry(NULL_VERSION)
        if old_null is not None:
            if not old_null.get("delete_marker"):
                room.displaced = int(old_null["size"])
            dropped, trash = self._drop(kv.entry_meta(NULL_VERSION), kv.entry_data(NULL_VERSION))
            room.moves += dropped
            room.trash += trash
        return room

    def put(
        self,
        kv: KeyVersions,
        state: str,
        meta: ObjectMeta,
        *,
        data_tmp: str,
        data_inode: int,
        data_synced: bool,
        extra_moves: list[Move],
    ) -> tuple[ObjectMeta, int | None]:
        """Store a new version whose data is at `data_tmp`: a fresh id when `state` is
        Enabled, else the null version. Returns it and the size of the object version it
        replaced (None: none; the new one adds to the count)."""
        room = self._make_room(kv, state, kv.current(), overwrite=True)
        meta = replace(meta, version_id=room.vid)
        install = Move(data_tmp, kv.data, data_inode, KEY)
        plan = kv.plan(
            [*room.moves, install, *extra_moves],
            kv.meta,
            data_tmp=data_tmp,
            data=kv.data,
            data_inode=data_inode,
        )
        record = {**meta_to_dict(meta), **room.record_extra}
        decide(self.temp, self.root, record, plan, data_synced=data_synced)
        self._finish(kv, room.trash, emptied=bool(room.trash))
        return meta, room.displaced

    def delete(
        self,
        kv: KeyVersions,
        state: str,
        version_id: str | None,
        guard: Guard | None,
        owner: str = "",
    ) -> tuple[DeleteResult, int | None]:
        """S3's DELETE in a versioned bucket (a marker it makes is `owner`'s); returns
        what it did and the size of the object version it removed (None: it removed
        none)."""
        if version_id is not None:
            return self._delete_version(kv, version_id, guard)
        cur = kv.current()
        if guard is not None:
            guard(None if cur is None else meta_from_dict(cur))
        room = self._make_room(kv, state, cur, overwrite=False)
        marker = ObjectMeta(
            key=kv.key,
            size=0,
            etag="",
            last_modified=now(whole_seconds=True),
            version_id=room.vid,
            delete_marker=True,
            owner=owner,
        )
        record = {**meta_to_dict(marker), **room.record_extra}
        decide(self.temp, self.root, record, kv.plan(room.moves, kv.entry_meta(room.vid)))
        self._finish(kv, room.trash, emptied=bool(room.trash))
        return DeleteResult(version_id=room.vid, delete_marker=True), room.displaced

    def _delete_version(
        self, kv: KeyVersions, vid: str, guard: Guard | None
    ) -> tuple[DeleteResult, int | None]:
        """Remove one version for good; the next newest becomes current if this one was.
        An id the key does not have changes nothing (S3 answers success)."""
        cur = kv.current()
        cur_vid = None if cur is None else str(cur.get("version_id") or NULL_VERSION)
        if cur is not None and cur_vid == vid:
            if guard is not None:
                guard(meta_from_dict(cur))
            moves, trash = self._drop(kv.meta, kv.data)
            rest = sorted_versions(kv.vdir)
            if rest and not self._is_marker(kv, rest[0].vid):
                moves += self._promote(kv, rest[0].vid)
            self._apply(kv, moves)
            self._finish(kv, trash)
            return DeleteResult(version_id=vid), int(cur["size"])
        record = kv.entry(vid)
        if guard is not None:
            guard(None if record is None else meta_from_dict(record))
        if record is None:
            return DeleteResult(version_id=vid), None
        marker = bool(record.get("delete_marker"))
        moves, trash = self._drop(kv.entry_meta(vid), kv.entry_data(vid))
        if cur is None:
            rest = sorted_versions(kv.vdir)
            if len(rest) > 1 and rest[0].vid == vid and not self._is_marker(kv, rest[1].vid):
                moves += self._promote(kv, rest[1].vid)
        self._apply(kv, moves)
        self._finish(kv, trash)
        return DeleteResult(version_id=vid, delete_marker=marker), (
            None if marker else int(record["size"])
        )

    def _apply(self, kv: KeyVersions, moves: list[Move]) -> None:
        decide(self.temp, self.root, {}, kv.plan(moves))

    @staticmethod
    def _is_marker(kv: KeyVersions, vid: str) -> bool:
        record = kv.entry(vid)
        return record is None or bool(record.get("delete_marker"))

    # -- reads ---------------------------------------------------------------------------

    def find(self, kv: KeyVersions, version_id: str | None) -> tuple[dict[str, Any], str]:
        """(record, data path) of a version, None: the current one. NoSuchKey (with the
        marker's id if a delete marker is current), NoSuchVersion, or MethodNotAllowed
        for a delete marker named by its id."""
        cur = kv.current()
        if version_id is None:
            if cur is not None:
                return cur, kv.data
            newest = sorted_versions(kv.vdir)
            if not newest:
                raise no_key()
            version_id = newest[0].vid
            record = kv.entry(version_id)
            if record is None:
                raise no_key()
            if record.get("delete_marker"):
                raise no_key(version_id)
            return record, kv.entry_data(version_id)
        if not valid_version_id(version_id):
            raise no_version()
        if cur is not None and str(cur.get("version_id") or NULL_VERSION) == version_id:
            return cur, kv.data
        record = kv.entry(version_id)
        if record is None:
            raise no_version()
        if record.get("delete_marker"):
            raise MethodNotAllowed(
                "The specified method is not allowed against this resource.",
                delete_marker=version_id,
                last_modified=meta_from_dict(record).last_modified,
            )
        return record, kv.entry_data(version_id)

    def update(
        self,
        kv: KeyVersions,
        version_id: str | None,
        change: Callable[[ObjectMeta], ObjectMeta],
    ) -> ObjectMeta:
        """Replace one version's record (its bytes and id stay)."""
        record, data = self.find(kv, version_id)
        path = kv.meta if data == kv.data else kv.entry_meta(str(record["version_id"]))
        old = meta_from_dict(record)
        new = change(old)
        new = replace(new, key=old.key, version_id=old.version_id, size=old.size, etag=old.etag)
        kept = {ORDER: record[ORDER]} if ORDER in record else {}
        replace_atomically(path, dumps({**meta_to_dict(new), **kept}), self.temp.dir)
        self.cache.bump()
        return new
