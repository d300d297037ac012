"""The erasure store's persisted records as types: a version of an object, its parts'
layout, what a listing needs of it, and an upload part's record.

A drive keeps an object's newest versions in one JSON file, newest first, and older ones
in history segments it names (storage.erasure.history: so a PUT's cost does not grow
with the key's versions):

    {"format": 1, "versions": [version, ...], "history": [segment summaries]}
    version: {"schema": 3, "v": version id (names its folder), "rot": shard rotation,
              "meta": ObjectMeta as storage.records.meta_to_dict writes it (a delete
                      marker's too; {} for one that only stands for a deletion, below),
              "deleted": true for a delete marker,
              "rev": how often its metadata was changed since it was written,
              "parts": [{"n": part number (0 for a plain PUT), "size": bytes,
                         "chunk": chunk size, "crc": [[CRC32C of shard 0..n-1] per chunk]}],
              "order": the id that orders it among the key's versions, when not "v",
              "inline": base64 of this drive's shard of a one-chunk object (optional),
              "inl": true when the version's shards are inline (on every drive's copy)}

`schema` is the one version number of this shape. Records written before it existed
have no such field and are schema 1; schema 2 added "order", schema 3 "rev" and markers
with metadata, schema 4 "inline" shards (an older shoal would look for shard files an
inline version does not have, so it refuses these instead). A record of a newer schema
than this code knows is refused (UnsupportedRecord) rather than misordered or rewritten
without the fields it cannot see.

Why "order": a write's shards go into a folder named by an id taken when it starts
("v"), but the version that is current must be the write acknowledged last. So the id
that orders versions ("order") is taken at the commit, under the key's lock: a long
upload that began first and finished last is not hidden by a short one begun later.
Records without it are ordered by "v", as they always were.

Which versions a key has (S3's versions, records.visible): an object's
S3 version id is its meta.version_id — the commit's "order" when its bucket had
versioning Enabled, else "null". The newest null entry hides older ones (a null write
replaces the null version; they are retired in the background). A marker without
metadata stands for a deletion in a bucket that never had versioning: it hides the
null entries before it and is itself no version; once they are gone, it goes too.

Why "rev": metadata changes after the write (retention, legal hold, tags) rewrite the
entry in place with rev + 1. The copies of one version may then differ for a while;
the one with the highest rev is the version's metadata (healing copies it over).

`inline` keeps a small object's shards in the record (storage.erasure.objects: which
objects): the drive's shard of the version's only chunk lives in its entry instead of in
chunk-0/, so a small PUT writes one file per drive, not a shard file and the record with
the fsyncs of each, and a GET reads the record it reads anyway. Every drive's copy of an
inline version has its own shard (its CRC32C is in "parts", as for a shard file, so a
damaged one is found and rebuilt from the others); the other fields, "inl" among them
(which says where the shards are whatever one copy holds), are the same on every drive.
A copy sent to every drive (a metadata change) goes without `inline`, and a drive keeps
the shard its copy already has (history.KeyRecord.keeping_inline).

Records cross the cluster's RPC as these dicts too (cluster.drive_rpc converts at that
boundary); everywhere else in storage.erasure they are the types below.
"""

from __future__ import annotations

import base64
import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from shoal.storage.backend import NULL_VERSION, ObjectMeta, PartInfo
from shoal.storage.records import (
    dumps,
    meta_from_dict,
    meta_to_dict,
    part_from_dict,
    part_to_dict,
    shown_size_etag,
)

#: (order, id) of an entry: the same entry ranks the same on every drive, and a newer
#: one ranks higher (see the module docstring: why the order is not always the id).
Rank = tuple[str, str]

#: The version record's on-disk shape (see the module docstring).
SCHEMA = 4


class UnsupportedRecord(ValueError):
    """A record written by a newer shoal, in a schema this code does not know."""


def _crcs_from(raw: Any) -> tuple[tuple[int, ...], ...]:
    return tuple(tuple(int(c) for c in chunk) for chunk in raw or ())


@dataclass(frozen=True)
class PartLayout:
    """Where one part's bytes are: `chunks` chunks of `chunk` bytes (the last shorter),
    each with the CRC32C of every shard. Part 0 is a plain PUT's only part."""

    number: int
    size: int
    chunk: int
    crcs: tuple[tuple[int, ...], ...]

    def to_dict(self) -> dict[str, Any]:
        return {"n": self.number, "size": self.size, "chunk": self.chunk, "crc": self._crc_lists()}

    def _crc_lists(self) -> list[list[int]]:
        return [list(chunk) for chunk in self.crcs]

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PartLayout:
        return cls(int(d.get("n") or 0), int(d["size"]), int(d["chunk"]), _crcs_from(d["crc"]))


@dataclass(frozen=True)
class VersionRecord:
    """One version of an object as each drive of its set lists it (see the module
    docstring). `meta` is None for a delete marker."""

    vid: str
    rot: int = 0
    meta: ObjectMeta | None = None
    deleted: bool = False
    parts: tuple[PartLayout, ...] = ()
    #: This drive's shard of a small one-chunk object, kept in the record (None: the
    #: version's shards are files, or this is a copy for every drive: `shared`).
    inline: bytes | None = None
    #: The id taken at the commit, which orders versions (None: `vid` orders it).
    committed: str | None = None
    #: Metadata changes since the write (the copy with the highest one is current).
    revision: int = 0
    #: Whether the version's shards are inline (the same on every drive's copy; true
    #: whenever `inline` is set).
    inlined: bool = False

    def __post_init__(self) -> None:
        if self.inline is not None and not self.inlined:
            object.__setattr__(self, "inlined", True)

    @property
    def order(self) -> str:
        """Newer versions have greater orders (see the module docstring)."""
        return self.committed or self.vid

    @property
    def rank(self) -> Rank:
        """What sorts the key's versions, newest highest: (order, id)."""
        return self.order, self.vid

    @classmethod
    def marker(cls, vid: str, meta: ObjectMeta | None = None) -> VersionRecord:
        """A delete marker: a version of its own with `meta` (versioned buckets);
        without, it only stands for a deletion (see the module docstring)."""
        return cls(vid, meta=meta, deleted=True)

    @property
    def version_id(self) -> str:
        """The id S3 clients see ("null" for the null version)."""
        return NULL_VERSION if self.meta is None else self.meta.version_id

    @property
    def is_null(self) -> bool:
        """The null version (or a deletion that replaces it)."""
        return self.version_id == NULL_VERSION

    @property
    def transient(self) -> bool:
        """A marker that only stands for a deletion and is no version of its own."""
        return self.deleted and self.meta is None

    @property
    def size(self) -> int | None:
        """The object's size; None for a delete marker."""
        return None if self.deleted or self.meta is None else self.meta.size

    @property
    def is_inline(self) -> bool:
        """Whether the version's shards are inline, not files (this copy's may be
        missing: `inline` None)."""
        return self.inlined

    def shared(self) -> VersionRecord:
        """This entry as a copy for every drive: without this drive's inline shard (a
        drive that lists the version keeps its own, history.KeyRecord.keeping_inline)."""
        if self.inline is None:
            return self
        return dataclasses.replace(self, inline=None, inlined=True)

    def holding(self, shard: bytes) -> VersionRecord:
        """This entry as one drive's copy, holding that drive's inline `shard`. A small
        PUT makes one for each drive of the set, and all but the shard is the same: the
        copy's encoding is this entry's (made once) with the shard spliced in, where
        encoding each copy afresh was a sixth of the drives' work for a 4 KiB PUT."""
        own = dataclasses.replace(self, inline=shard)
        stored, summary = self._encoded()
        # Keys are sorted and "inline" follows "inl", which a shared copy has (true):
        # the first '"inl":true,' is that key (only "deleted" can come before it).
        marker = b'"inl":true,'
        if self.inline is None and self.inlined and marker in stored:
            field = b'"inline":"' + base64.b64encode(shard) + b'",'
            own.__dict__["_encoding"] = (stored.replace(marker, marker + field, 1), summary)
        return own

    def live_meta(self) -> ObjectMeta:
        assert self.meta is not None and not self.deleted, "a delete marker has no object"
        return self.meta

    @property
    def stored(self) -> bytes:
        """This entry as a record file holds it (records.dumps of to_dict)."""
        return self._encoded()[0]

    @property
    def summary(self) -> RecordSummary:
        """What a listing reads of this entry (RecordSummary.of_stored of to_dict)."""
        return self._encoded()[1]

    def _encoded(self) -> tuple[bytes, RecordSummary]:
        """`stored` and `summary`, made once from one to_dict: an overwrite keeps the
        version it replaced in the record until the next write (storage.erasure.commits),
        and each record write encoded and summarised both again. Kept in the instance's
        __dict__ (it is frozen, so they never go stale), without functools.cached_property:
        on Python 3.11 that takes one lock shared by every instance, and the six drive
        threads of a PUT would queue on it. Two threads may both make it: equal values."""
        made: tuple[bytes, RecordSummary] | None = self.__dict__.get("_encoding")
        if made is None:
            d = self.to_dict()
            made = self.__dict__["_encoding"] = (dumps(d), RecordSummary.of_stored(d))
        return made

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "schema": SCHEMA,
            "v": self.vid,
            "rot": self.rot,
            "meta": {} if self.meta is None else meta_to_dict(self.meta),
            "parts": [p.to_dict() for p in self.parts],
        }
        if self.deleted:
            d["deleted"] = True
        if self.inline is not None:
            d["inline"] = base64.b64encode(self.inline).decode("ascii")
        if self.is_inline:
            d["inl"] = True
        if self.committed is not None:
            d["order"] = self.committed
        if self.revision:
            d["rev"] = self.revision
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> VersionRecord:
        """Today's records and those written before `schema` existed alike."""
        schema = int(d.get("schema", SCHEMA))
        if schema > SCHEMA:
            raise UnsupportedRecord(
                f"version {d.get('v')!r} has record schema {schema}; this shoal reads "
                f"up to {SCHEMA}"
            )
        meta = d.get("meta")
        inline = d.get("inline")
        return cls(
            vid=str(d["v"]),
            rot=int(d.get("rot") or 0),
            meta=meta_from_dict(meta) if meta else None,
            deleted=bool(d.get("deleted")),
            parts=tuple(PartLayout.from_dict(p) for p in d.get("parts") or ()),
            inline=None if inline is None else _inline_from(inline),
            inlined=bool(d.get("inl")) or inline is not None,
            committed=str(d["order"]) if d.get("order") else None,
            revision=int(d.get("rev") or 0),
        )


def _inline_from(raw: Any) -> bytes:
    """An inline shard as stored; damaged base64 reads as no bytes, which its CRC32C
    then calls corrupt (so healing rebuilds it) instead of failing the whole record."""
    try:
        return base64.b64decode(str(raw), validate=True)
    except ValueError:
        return b""


@dataclass(frozen=True)
class RecordSummary:
    """What a listing needs of one version, read straight from the stored dict (a
    listing summarises every key of a page: it skips parsing the whole metadata)."""

    vid: str
    order: str
    deleted: bool
    size: int  # as clients see it (the plaintext's for an encrypted version)
    etag: str
    last_modified: str | None
    storage_class: str
    version_id: str = NULL_VERSION
    #: A marker that only stands for a deletion (VersionRecord.transient).
    transient: bool = False
    owner: str = ""

    @classmethod
    def of_stored(cls, version: dict[str, Any]) -> RecordSummary:
        """From a version record as stored (VersionRecord.to_dict's shape)."""
        meta = version.get("meta") or {}
        deleted = bool(version.get("deleted"))
        size, etag = shown_size_etag(meta) if "size" in meta else (0, "")
        return cls(
            vid=str(version["v"]),
            order=str(version.get("order") or version["v"]),
            deleted=deleted,
            size=size,
            etag=etag,
            last_modified=meta.get("last_modified"),
            storage_class=(meta.get("headers") or {}).get("x-amz-storage-class") or "STANDARD",
            version_id=str(meta.get("version_id") or NULL_VERSION),
            transient=deleted and not meta,
            owner=str(meta.get("owner") or ""),
        )

    @property
    def rank(self) -> Rank:
        return self.order, self.vid

    @property
    def is_null(self) -> bool:
        return self.version_id == NULL_VERSION

    def to_dict(self) -> dict[str, Any]:
        """For the wire: the stored names, "v" for the version id."""
        d = dataclasses.asdict(self)
        d["v"] = d.pop("vid")
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RecordSummary:
        names = [f.name for f in dataclasses.fields(cls) if f.name != "vid"]
        return cls(vid=str(d["v"]), **{name: d[name] for name in names if name in d})


@dataclass(frozen=True)
class PartRecord:
    """An uploaded part as the drives of its upload's set record it
    (`multipart/{bucket}/{upload}/part-{P}.json`); its shards are in `part-{P}.{pv}/`."""

    pv: str  # the part upload's own id: a later upload of the number replaces it
    info: PartInfo
    size: int
    chunk: int
    crcs: tuple[tuple[int, ...], ...]

    def layout(self, number: int | None = None) -> PartLayout:
        """As a part of a completed version (number 0: as a folder of its own)."""
        n = self.info.number if number is None else number
        return PartLayout(n, self.size, self.chunk, self.crcs)

    def to_dict(self) -> dict[str, Any]:
        return {
            "v": self.pv,
            "info": part_to_dict(self.info),
            "size": self.size,
            "chunk": self.chunk,
            "crc": self.layout()._crc_lists(),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PartRecord:
        return cls(
            pv=str(d["v"]),
            info=part_from_dict(d["info"]),
            size=int(d["size"]),
            chunk=int(d["chunk"]),
            crcs=_crcs_from(d["crc"]),
        )


class Entry(Protocol):
    """A version as listing or reading sees it (VersionRecord, RecordSummary)."""

    @property
    def is_null(self) -> bool: ...

    @property
    def deleted(self) -> bool: ...

    @property
    def transient(self) -> bool: ...


E = TypeVar("E", bound=Entry)


def visible(entries: Sequence[E]) -> list[E]:
    """A key's S3 versions out of its settled entries (newest first): the newest null
    entry hides older ones, and a marker that only stands for a deletion is none
    (records.py explains both)."""
    out: list[E] = []
    null_seen = False
    for e in entries:
        if e.is_null:
            if null_seen:
                continue
            null_seen = True
        if not e.transient:
            out.append(e)
    return out
