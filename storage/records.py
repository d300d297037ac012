"""JSON records kept on disk: object metadata, uploads, parts, buckets.

Every record carries `"format": 1` and every field of its dataclass, datetimes as ISO 8601
UTC. Readers ignore fields they do not know, so later features (versions, tags, retention,
encryption) add fields without migrating anything already stored.
"""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime
from typing import Any

from shoal.storage.backend import (
    NULL_VERSION,
    Encryption,
    Grant,
    ObjectMeta,
    ObjectWrite,
    PartInfo,
    Retention,
    UploadInfo,
)

FORMAT = 1


def now(whole_seconds: bool = False) -> datetime:
    """Current UTC time; whole seconds for objects, since that is what clients compare."""
    t = datetime.now(UTC)
    return t.replace(microsecond=0) if whole_seconds else t


def iso(t: datetime) -> str:
    return t.astimezone(UTC).isoformat().replace("+00:00", "Z")


def parse_iso(text: str) -> datetime:
    t = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def dumps(record: Any) -> bytes:
    # Compact: with indent, json falls back to its pure-Python encoder (3x slower per PUT).
    return json.dumps(record, ensure_ascii=False, separators=(",", ":"), sort_keys=True).encode(
        "utf-8"
    )


def loads(data: bytes) -> dict[str, Any]:
    record = json.loads(data)
    if not isinstance(record, dict):
        raise ValueError("record is not a JSON object")
    return record


def part_to_dict(part: PartInfo) -> dict[str, Any]:
    return {
        "number": part.number,
        "size": part.size,
        "etag": part.etag,
        "last_modified": iso(part.last_modified),
        "checksums": dict(part.checksums),
    }


def part_from_dict(d: dict[str, Any]) -> PartInfo:
    return PartInfo(
        number=int(d["number"]),
        size=int(d["size"]),
        etag=str(d["etag"]),
        last_modified=parse_iso(d["last_modified"]),
        checksums=dict(d.get("checksums") or {}),
    )


def retention_to_dict(retention: Retention | None) -> dict[str, str] | None:
    return None if retention is None else {"mode": retention.mode, "until": iso(retention.until)}


def retention_from_dict(d: dict[str, Any] | None) -> Retention | None:
    return None if not d else Retention(mode=str(d["mode"]), until=parse_iso(d["until"]))


def acl_to_list(acl: tuple[Grant, ...] | None) -> list[list[Any]] | None:
    return None if acl is None else [[g.grantee, g.permission, g.group] for g in acl]


def acl_from_list(items: list[list[Any]] | None) -> tuple[Grant, ...] | None:
    if items is None:
        return None
    return tuple(Grant(str(g[0]), str(g[1]), bool(g[2])) for g in items)


def encryption_to_dict(enc: Encryption | None) -> dict[str, Any] | None:
    return None if enc is None else dataclasses.asdict(enc)


def encryption_from_dict(d: dict[str, Any] | None) -> Encryption | None:
    if not d:
        return None
    known = {f.name for f in dataclasses.fields(Encryption)}
    return Encryption(**{k: v for k, v in d.items() if k in known})


def shown_size_etag(record: dict[str, Any]) -> tuple[int, str]:
    """(size, ETag) as clients see them, from a stored meta record: the plaintext's for an
    encrypted version (listings read records without building an ObjectMeta)."""
    enc = record.get("encryption")
    if enc:
        return int(enc["plain_size"]), str(enc["plain_etag"])
    return int(record["size"]), str(record["etag"])


def new_meta(
    key: str,
    size: int,
    etag: str,
    write: ObjectWrite,
    checksums: dict[str, str],
    *,
    parts: list[PartInfo] | None = None,
    upload: UploadInfo | None = None,
) -> ObjectMeta:
    """A new version's metadata from what the write (or the upload's creation) asked for;
    its version id is set at the commit. Called once the body is consumed."""
    source = upload.write if upload is not None else write
    return ObjectMeta(
        key=key,
        size=size,
        etag=etag,
        last_modified=now(whole_seconds=True),
        content_type=source.content_type,
        headers=dict(source.headers),
        user_metadata=dict(source.user_metadata),
        checksums=dict(checksums or {}),
        checksum_type=write.checksum_type or (upload.checksum_type if upload else None),
        parts=parts,
        retention=source.retention,
        legal_hold=source.legal_hold,
        tags=dict(source.tags),
        owner=source.owner,
        acl=source.acl,
        encryption=write.encryption,
        extra=dict(source.extra),
    )


def meta_to_dict(meta: ObjectMeta) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "key": meta.key,
        "size": meta.size,
        "etag": meta.etag,
        "last_modified": iso(meta.last_modified),
        "content_type": meta.content_type,
        "headers": dict(meta.headers),
        "user_metadata": dict(meta.user_metadata),
        "checksums": dict(meta.checksums),
        "checksum_type": meta.checksum_type,
        "parts": None if meta.parts is None else [part_to_dict(p) for p in meta.parts],
        "version_id": meta.version_id,
        "delete_marker": meta.delete_marker,
        "retention": retention_to_dict(meta.retention),
        "legal_hold": meta.legal_hold,
        "tags": dict(meta.tags),
        "owner": meta.owner,
        "acl": acl_to_list(meta.acl),
        "encryption": encryption_to_dict(meta.encryption),
        "extra": dict(meta.extra),
    }


def meta_from_dict(d: dict[str, Any]) -> ObjectMeta:
    parts = d.get("parts")
    return ObjectMeta(
        key=str(d["key"]),
        size=int(d["size"]),
        etag=str(d["etag"]),
        last_modified=parse_iso(d["last_modified"]),
        content_type=d.get("content_type") or "binary/octet-stream",
        headers=dict(d.get("headers") or {}),
        user_metadata=dict(d.get("user_metadata") or {}),
        checksums=dict(d.get("checksums") or {}),
        checksum_type=d.get("checksum_type"),
        parts=None if parts is None else [part_from_dict(p) for p in parts],
        version_id=str(d.get("version_id") or NULL_VERSION),
        delete_marker=bool(d.get("delete_marker")),
        retention=retention_from_dict(d.get("retention")),
        legal_hold=bool(d.get("legal_hold")),
        tags=dict(d.get("tags") or {}),
        owner=str(d.get("owner") or ""),
        acl=acl_from_list(d.get("acl")),
        encryption=encryption_from_dict(d.get("encryption")),
        extra=dict(d.get("extra") or {}),
    )


def write_to_dict(write: ObjectWrite) -> dict[str, Any]:
    """The storable part of an ObjectWrite (callables and conditions are per request)."""
    return {
        "content_type": write.content_type,
        "headers": dict(write.headers),
        "user_metadata": dict(write.user_metadata),
        "checksum_type": write.checksum_type,
        "retention": retention_to_dict(write.retention),
        "legal_hold": write.legal_hold,
        "tags": dict(write.tags),
        "owner": write.owner,
        "acl": acl_to_list(write.acl),
        "encryption": encryption_to_dict(write.encryption),
        "extra": dict(write.extra),
    }


def write_from_dict(d: dict[str, Any]) -> ObjectWrite:
    return ObjectWrite(
        content_type=d.get("content_type") or "binary/octet-stream",
        headers=dict(d.get("headers") or {}),
        user_metadata=dict(d.get("user_metadata") or {}),
        checksum_type=d.get("checksum_type"),
        retention=retention_from_dict(d.get("retention")),
        legal_hold=bool(d.get("legal_hold")),
        tags=dict(d.get("tags") or {}),
        owner=str(d.get("owner") or ""),
        acl=acl_from_list(d.get("acl")),
        encryption=encryption_from_dict(d.get("encryption")),
        extra=dict(d.get("extra") or {}),
    )


def upload_to_dict(bucket: str, info: UploadInfo) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "bucket": bucket,
        "key": info.key,
        "upload_id": info.upload_id,
        "initiated": iso(info.initiated),
        "write": write_to_dict(info.write),
        "checksum_algorithm": info.checksum_algorithm,
        "checksum_type": info.checksum_type,
    }


def upload_from_dict(d: dict[str, Any]) -> tuple[str, UploadInfo]:
    """(bucket, upload) from an upload record."""
    info = UploadInfo(
        key=str(d["key"]),
        upload_id=str(d["upload_id"]),
        initiated=parse_iso(d["initiated"]),
        write=write_from_dict(d.get("write") or {}),
        checksum_algorithm=d.get("checksum_algorithm"),
        checksum_type=d.get("checksum_type"),
    )
    return str(d["bucket"]), info
