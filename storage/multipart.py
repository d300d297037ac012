"""Multipart upload directories: `.multipart/{upload-id}/`.

An upload directory holds `metadata.json` (bucket, key, initiation time, the creation
ObjectWrite, checksum algorithm and type) and, per part, `part-{N}.json` naming the data
file `part-{N}.{token}`. The part record is the commit point: re-uploading a part writes
a new data file, atomically replaces the record, then removes the superseded data, so a
part is never torn and concurrent uploads of one part number end with one of them whole.
All methods block; FileStore calls them from worker threads.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
import re
import secrets
from datetime import timedelta
from typing import Any, TypeVar

from shoal.storage.backend import (
    MAX_PARTS,
    MIN_PART_SIZE,
    CompletedPart,
    ObjectMeta,
    ObjectWrite,
    PartInfo,
    UploadInfo,
)
from shoal.storage.commit import TempArea
from shoal.storage.diskio import (
    StripedLocks,
    fsync_dir,
    part_lock_name,
    read_json,
    rmtree_quiet,
    unlink_quiet,
    write_json,
)
from shoal.storage.errors import (
    EntityTooSmall,
    InvalidPart,
    InvalidPartOrder,
    InvalidRequest,
    NoSuchUpload,
)
from shoal.storage.records import (
    iso,
    meta_from_dict,
    meta_to_dict,
    now,
    parse_iso,
    part_from_dict,
    part_to_dict,
    upload_from_dict,
    upload_to_dict,
)
from shoal.storage.streams import Spooled

T = TypeVar("T")
UPLOAD_RECORD = "metadata.json"
#: Where the FileStore remembers completed uploads: `.multipart/.completed/{id}.json`
#: (a name no upload id can have, so the upload scans pass it by).
COMPLETED_DIR = ".completed"
#: How long a completed upload's result is remembered: a CompleteMultipartUpload
#: repeated with the same parts within it answers 200 with that result, as S3 does
#: (an SDK retrying after a lost answer must not see NoSuchUpload for its success).
COMPLETION_MEMORY = timedelta(hours=24)
_ID_RE = re.compile(r"^[A-Za-z0-9_-]{16,128}$")
#: Any id a store issues: new_upload_id's, which the erasure store prefixes with
#: "s{set}." once it has several pools (the id then says which set holds the upload).
_ISSUED_ID_RE = re.compile(r"(?:s[0-9]{1,6}\.)?[A-Za-z0-9_-]{16,128}", re.ASCII)
#: A part's data file, as commit_part names it (part number, random token).
_PART_DATA_RE = re.compile(r"^part-([0-9]{5})\.[0-9a-f]{12}$")


def new_upload(
    key: str,
    write: ObjectWrite,
    checksum_algorithm: str | None,
    checksum_type: str | None,
) -> UploadInfo:
    """A new upload's record: the creation request's storable settings (no callables or
    per-request conditions), a fresh id, now."""
    stored = ObjectWrite(
        content_type=write.content_type,
        headers=dict(write.headers),
        user_metadata=dict(write.user_metadata),
        checksum_type=write.checksum_type,
        retention=write.retention,
        legal_hold=write.legal_hold,
        tags=dict(write.tags),
        owner=write.owner,
        acl=write.acl,
        encryption=write.encryption,  # the upload's sealed data key, for its parts
        extra=dict(write.extra),
    )
    return UploadInfo(key, new_upload_id(), now(), stored, checksum_algorithm, checksum_type)


def check_part_number(number: int) -> None:
    if not 1 <= number <= MAX_PARTS:
        raise InvalidRequest(f"Part number must be an integer between 1 and {MAX_PARTS}")


def is_upload_id(text: str) -> bool:
    """Whether some store could have issued `text`: anything else (NUL, '../', a 5 KB
    string) is NoSuchUpload before it can become part of a path on a drive."""
    return _ISSUED_ID_RE.fullmatch(text) is not None


def new_upload_id() -> str:
    """URL-safe and file-name-safe, unguessable; never starting with "-" or "_" (the
    aws CLI takes `--upload-id -abc...` for an option and refuses it)."""
    while True:
        upload_id = secrets.token_urlsafe(32)
        if upload_id[0].isalnum():
            return upload_id


def multipart_etag(parts: list[PartInfo]) -> str:
    """S3's multipart ETag: hex MD5 of the concatenated binary part MD5s, then "-N"."""
    digest = hashlib.md5(b"".join(bytes.fromhex(p.etag) for p in parts)).hexdigest()
    return f"{digest}-{len(parts)}"


def parts_digest(parts: list[CompletedPart]) -> str:
    """Names a CompleteMultipartUpload's part list (numbers and ETags, as S3 compares
    them) in a fixed size, so a 10,000-part list is remembered in 64 characters."""
    text = "\n".join(str(p.number) + ":" + p.etag.strip('"').lower() for p in parts)
    return hashlib.sha256(text.encode()).hexdigest()


def completion_record(
    bucket: str, upload_id: str, parts: list[CompletedPart], meta: ObjectMeta
) -> dict[str, Any]:
    """What a store keeps of a completed upload: enough to answer a repeat of the same
    Complete (the object's record without its part list, which only GETs need)."""
    return {
        "format": 1,
        "v": iso(now()),
        "bucket": bucket,
        "upload_id": upload_id,
        "parts": parts_digest(parts),
        "meta": meta_to_dict(dataclasses.replace(meta, parts=None)),
    }


def recalled_completion(
    record: dict[str, Any] | None,
    bucket: str,
    key: str,
    upload_id: str,
    parts: list[CompletedPart],
) -> ObjectMeta | None:
    """The result a repeated Complete answers with, if `record` (completion_record's) is
    of this upload, completed with the same parts, within COMPLETION_MEMORY."""
    if record is None:
        return None
    try:
        meta = meta_from_dict(record["meta"])
        same = (record["bucket"], record["upload_id"], meta.key) == (bucket, upload_id, key)
        fresh = parse_iso(str(record["v"])) > now() - COMPLETION_MEMORY
    except (KeyError, TypeError, ValueError):
        return None  # a record of another format: as if none were kept
    if not (same and fresh and record.get("parts") == parts_digest(parts)):
        return None
    return meta


def completion_expired(record: dict[str, Any]) -> bool:
    """Whether a kept completion is past remembering (unreadable ones are too)."""
    try:
        return parse_iso(str(record["v"])) < now() - COMPLETION_MEMORY
    except (KeyError, TypeError, ValueError):
        return True


def no_upload() -> NoSuchUpload:
    """S3's NoSuchUpload, in its words (every store answers an unknown upload so)."""
    return NoSuchUpload(
        "The specified upload does not exist. The upload ID may be invalid, "
        "or the upload may have been aborted or completed."
    )


class UploadStore:
    """The upload directories of one FileStore."""

    def __init__(self, root: str, temp: TempArea, locks: StripedLocks) -> None:
        self.root = root
        self.temp = temp
        self.locks = locks

    def upload_dir(self, upload_id: str) -> str:
        """The directory of `upload_id`; ids that we cannot have issued are NoSuchUpload."""
        if not _ID_RE.match(upload_id):
            raise no_upload()
        return os.path.join(self.root, upload_id)

    def create(self, bucket: str, info: UploadInfo) -> None:
        """Built in the temp area and renamed in whole, so a half-made upload never shows."""
        os.makedirs(self.root, exist_ok=True)
        staging = self.temp.path(".upload")
        os.mkdir(staging)
        write_json(os.path.join(staging, UPLOAD_RECORD), upload_to_dict(bucket, info), staging)
        os.rename(staging, self.upload_dir(info.upload_id))
        fsync_dir(self.root)

    def load(self, bucket: str, key: str, upload_id: str) -> UploadInfo:
        """The upload, checked to belong to bucket/key; NoSuchUpload otherwise."""
        try:
            rec = read_json(os.path.join(self.upload_dir(upload_id), UPLOAD_RECORD))
            up_bucket, info = upload_from_dict(rec)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise no_upload() from exc
        if up_bucket != bucket or info.key != key or info.upload_id != upload_id:
            raise no_upload()
        return info

    def exists(self, upload_id: str) -> bool:
        return os.path.exists(os.path.join(self.upload_dir(upload_id), UPLOAD_RECORD))

    def all(self) -> list[tuple[str, UploadInfo]]:
        """Every readable upload as (bucket, info)."""
        out: list[tuple[str, UploadInfo]] = []
        for name in self._ids():
            try:
                out.append(
                    upload_from_dict(read_json(os.path.join(self.root, name, UPLOAD_RECORD)))
                )
            except (OSError, ValueError, KeyError, TypeError):
                continue
        return out

    def commit_part(self, upload_id: str, spooled: Spooled, part: PartInfo) -> None:
        """Make `part` the current one for its number (NoSuchUpload if the upload is gone)."""
        updir = self.upload_dir(upload_id)
        data_name = f"part-{part.number:05d}.{secrets.token_hex(6)}"
        record_path = os.path.join(updir, f"part-{part.number:05d}.json")
        with self.locks.hold(part_lock_name(upload_id, part.number)):
            if not os.path.exists(os.path.join(updir, UPLOAD_RECORD)):
                unlink_quiet(spooled.path)
                raise no_upload()
            try:
                os.replace(spooled.path, os.path.join(updir, data_name))
            except FileNotFoundError as exc:
                unlink_quiet(spooled.path)
                raise no_upload() from exc
            old: str | None = None
            with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
                old = str(read_json(record_path)["data"])
            rec = {"format": 1, **part_to_dict(part), "data": data_name}
            try:
                write_json(record_path, rec, self.temp.dir)
            except FileNotFoundError as exc:  # aborted meanwhile
                raise no_upload() from exc
            if old and old != data_name and "/" not in old:
                unlink_quiet(os.path.join(updir, old))

    def parts(self, upload_id: str) -> dict[int, tuple[PartInfo, str]]:
        """Current parts by number, each with the path of its data."""
        updir = self.upload_dir(upload_id)
        out: dict[int, tuple[PartInfo, str]] = {}
        try:
            names = os.listdir(updir)
        except FileNotFoundError as exc:
            raise no_upload() from exc
        for name in names:
            if not (name.startswith("part-") and name.endswith(".json")):
                continue
            try:
                rec = read_json(os.path.join(updir, name))
                part = part_from_dict(rec)
                data = str(rec["data"])
            except (OSError, ValueError, KeyError, TypeError):
                continue
            if "/" in data:
                continue
            out[part.number] = (part, os.path.join(updir, data))
        return out

    def remove_stray_parts(self) -> int:
        """Delete part data files no part record names (left by a crash between moving a
        part's data in and writing its record, or before removing superseded data)."""
        removed = 0
        for upload_id in self._ids():
            updir = os.path.join(self.root, upload_id)
            try:
                names = os.listdir(updir)
            except OSError:
                continue
            for name in names:
                match = _PART_DATA_RE.match(name)
                if match is None:
                    continue
                number = int(match.group(1))
                record_path = os.path.join(updir, f"part-{number:05d}.json")
                with self.locks.hold(part_lock_name(upload_id, number)):
                    try:
                        named = str(read_json(record_path)["data"])
                    except FileNotFoundError:
                        named = ""
                    except (OSError, ValueError, KeyError, TypeError):
                        continue  # an unreadable record: leave its upload as it is
                    if named != name and os.path.exists(os.path.join(updir, name)):
                        unlink_quiet(os.path.join(updir, name))
                        removed += 1
        return removed

    def _ids(self) -> list[str]:
        try:
            return [name for name in os.listdir(self.root) if _ID_RE.match(name)]
        except FileNotFoundError:
            return []

    def _completed_path(self, upload_id: str) -> str:
        if not _ID_RE.match(upload_id):
            raise no_upload()
        return os.path.join(self.root, COMPLETED_DIR, f"{upload_id}.json")

    def remember(
        self, bucket: str, upload_id: str, parts: list[CompletedPart], meta: ObjectMeta
    ) -> None:
        """Keep a completed upload's result (atomically written) for repeats of its
        Complete; written once the object is committed."""
        path = self._completed_path(upload_id)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        write_json(path, completion_record(bucket, upload_id, parts, meta), self.temp.dir)

    def recall(
        self, bucket: str, key: str, upload_id: str, parts: list[CompletedPart]
    ) -> ObjectMeta | None:
        """The remembered result of completing this upload with these parts, if any."""
        try:
            record: dict[str, Any] | None = read_json(self._completed_path(upload_id))
        except (OSError, ValueError):
            record = None
        return recalled_completion(record, bucket, key, upload_id, parts)

    def forget_completed(self) -> int:
        """Drop completions kept past COMPLETION_MEMORY."""
        folder = os.path.join(self.root, COMPLETED_DIR)
        try:
            names = os.listdir(folder)
        except FileNotFoundError:
            return 0
        removed = 0
        for name in names:
            path = os.path.join(folder, name)
            try:
                record = read_json(path)
            except FileNotFoundError:
                continue
            except (OSError, ValueError):
                record = {}
            if completion_expired(record):
                unlink_quiet(path)
                removed += 1
        return removed

    def remove(self, upload_id: str) -> bool:
        """Move the upload away (atomic), then delete it; False if it was not there."""
        trash = self.temp.path(".trash")
        try:
            os.replace(self.upload_dir(upload_id), trash)
        except FileNotFoundError:
            return False
        rmtree_quiet(trash)
        return True


def check_completion(
    requested: list[CompletedPart], stored: dict[int, tuple[PartInfo, T]]
) -> list[tuple[PartInfo, T]]:
    """The parts to assemble, in order, after S3's checks on the requested list."""
    if not requested:
        raise InvalidRequest("You must specify at least one part")
    prev = 0
    for cp in requested:
        if cp.number <= prev:
            raise InvalidPartOrder(
                "The list of parts was not in ascending order. "
                "Parts must be ordered by part number."
            )
        prev = cp.number
    chosen: list[tuple[PartInfo, T]] = []
    for cp in requested:
        got = stored.get(cp.number)
        if got is None or got[0].etag.lower() != cp.etag.strip('"').lower():
            raise InvalidPart(
                "One or more of the specified parts could not be found. The part may not "
                "have been uploaded, or the specified entity tag may not match the part's "
                "entity tag.",
                part_number=str(cp.number),
            )
        chosen.append(got)
    for part, _ in chosen[:-1]:
        if part.size < MIN_PART_SIZE:
            raise EntityTooSmall(
                "Your proposed upload is smaller than the minimum allowed object size.",
                part_number=str(part.number),
            )
    return chosen
