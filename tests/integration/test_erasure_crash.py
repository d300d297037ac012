"""Crash cycles on a real erasure-coded node: SIGKILL during concurrent PUTs, overwrites,
deletes and multipart uploads, restart, and after one healing scan not one orphaned
byte is left (every shard file belongs to a version its drive's record names, every
part folder to its part record, no temp files), every acknowledged write reads back
whole, and every CompleteMultipartUpload cut off by the kill completes when retried.
The same on a versioned bucket: every acknowledged version (and delete marker) is
there by its id, whole, until a delete of that id; nothing listed is torn.

The cycle count is SHOAL_CRASH_CYCLES (12 by default); with -s the test prints the
leftover and live bytes, e.g.

    SHOAL_CRASH_CYCLES=100 .venv/bin/python -m pytest -s -n 0 \\
        tests/integration/test_erasure_crash.py
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import random
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.integration.conftest import error_code
from tests.integration.crashing import at_random, kill_while_writing
from tests.integration.test_erasure_faults import BUCKET, CHUNK, PART, Node

pytestmark = pytest.mark.slow

CYCLES = int(os.environ.get("SHOAL_CRASH_CYCLES", "12"))
PLAIN = ["p/a", "p/b", "p/deep/c/d", "p/e"]
MULTI = ["m/one", "m/two"]


def body(key: str, version: int) -> bytes:
    """Recognisable bytes; plain sizes span 0-4 chunks, multipart ones a part and a tail."""
    stamp = f"<{key} v{version}>".encode()
    size = PART + 30_000 + version if key in MULTI else (version * 97_331) % (4 * CHUNK)
    return (stamp * (size // len(stamp) + 1))[:size]


@dataclass
class Ledger:
    """What the writers tried and what the server acknowledged."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    next_version: int = 1
    attempted: dict[str, set[int]] = field(default_factory=dict)
    started: dict[int, float] = field(default_factory=dict)
    acked: dict[int, float] = field(default_factory=dict)
    deleted: dict[str, float] = field(default_factory=dict)  # key -> last delete sent
    #: Completions sent and not answered: (key, upload id, version, parts).
    completing: dict[str, tuple[str, str, int, list[dict[str, Any]]]] = field(default_factory=dict)

    def begin(self, key: str) -> int:
        with self.lock:
            version = self.next_version
            self.next_version += 1
            self.attempted.setdefault(key, set()).add(version)
            self.started[version] = time.monotonic()
            return version

    def ack(self, version: int) -> None:
        with self.lock:
            self.acked[version] = time.monotonic()


def write(s3: Any, ledger: Ledger, key: str, version: int) -> None:
    data = body(key, version)
    meta = {"version": str(version)}
    if key not in MULTI:
        s3.put_object(Bucket=BUCKET, Key=key, Body=data, Metadata=meta)
        return
    upload = s3.create_multipart_upload(Bucket=BUCKET, Key=key, Metadata=meta)["UploadId"]
    parts = []
    for number, piece in enumerate((data[:PART], data[PART:]), start=1):
        etag = s3.upload_part(
            Bucket=BUCKET, Key=key, UploadId=upload, PartNumber=number, Body=piece
        )["ETag"]
        parts.append({"PartNumber": number, "ETag": etag})
    with ledger.lock:
        ledger.completing[upload] = (key, upload, version, parts)
    s3.complete_multipart_upload(
        Bucket=BUCKET, Key=key, UploadId=upload, MultipartUpload={"Parts": parts}
    )
    with ledger.lock:
        del ledger.completing[upload]


def writer(seed: int, s3: Any, ledger: Ledger, stop: threading.Event) -> None:
    rng = random.Random(seed)
    while not stop.is_set():
        key = rng.choice(PLAIN + MULTI)
        if key in PLAIN and rng.random() < 0.15:
            with ledger.lock:  # before it is sent: the kill may cut off only its answer
                ledger.deleted[key] = time.monotonic()
            try:
                s3.delete_object(Bucket=BUCKET, Key=key)
            except Exception:
                return  # the server died under us
            continue
        version = ledger.begin(key)
        try:
            write(s3, ledger, key, version)
        except Exception:
            return
        ledger.ack(version)


def retry_completions(node: Node, ledger: Ledger) -> int:
    """Every completion the kill cut off completes when retried. If it had finished and
    only its answer was lost, the retry gets the first one's answer (S3 repeats it), or
    NoSuchUpload when it finished before it was remembered. Returns how many were
    retried."""
    s3 = node.s3()
    listed = {u["UploadId"] for u in s3.list_multipart_uploads(Bucket=BUCKET).get("Uploads", [])}
    for upload, (key, _, version, parts) in sorted(ledger.completing.items()):
        try:
            s3.complete_multipart_upload(
                Bucket=BUCKET, Key=key, UploadId=upload, MultipartUpload={"Parts": parts}
            )
        except ClientError as exc:
            assert upload not in listed, f"{key}: a listed upload's completion failed: {exc}"
            assert error_code(exc) == "NoSuchUpload"
            continue
        ledger.ack(version)  # check_objects, next, finds it (or what replaced it) whole
    retried = len(ledger.completing)
    ledger.completing.clear()
    return retried


def check_objects(node: Node, ledger: Ledger) -> None:
    """Each key holds one whole version that was written (or is absent after a delete),
    and no write acknowledged before another even started lost to it."""
    s3 = node.s3()
    for key, versions in ledger.attempted.items():
        try:
            got = s3.get_object(Bucket=BUCKET, Key=key)
        except ClientError as exc:
            assert error_code(exc) == "NoSuchKey", key
            acked = any(v in ledger.acked for v in versions)
            assert key in ledger.deleted or not acked, f"{key}: gone without a delete"
            continue
        version = int(got["Metadata"]["version"])
        assert version in versions, (key, version)
        assert got["Body"].read() == body(key, version), f"{key}: torn or mixed bytes"
        end = ledger.acked.get(version, float("inf"))
        lost = [v for v in versions if v in ledger.acked and ledger.started[v] > end]
        assert not lost or key in ledger.deleted, f"{key}: acknowledged writes {lost} lost"


def audit(drives: list[Path], versioned: bool = False) -> tuple[list[str], int, int]:
    """(orphans, their bytes, live bytes) on the drives: files no record names, temp
    files, and (unless `versioned`) records listing more than the current version."""
    orphans: list[str] = []
    leftover = live = 0

    def orphan(path: Path, why: str) -> None:
        nonlocal leftover
        orphans.append(f"{path}: {why}")
        leftover += path.stat().st_size

    for drive in drives:
        root = drive / ".smartstorage"
        stamps = [p for p in (root / "tmp").iterdir() if p.name.startswith("opened-")]
        for path in (root / "tmp").rglob("*"):
            if path.is_file() and path != max(stamps, key=lambda p: p.stat().st_mtime_ns):
                orphan(path, "temp file")
        for path in (root / "quarantine").rglob("*") if (root / "quarantine").exists() else ():
            if path.is_file():
                orphan(path, "quarantined")
        for path in (root / "data").rglob("*"):
            if not path.is_file() or path.name.endswith(".metadata.json"):
                continue
            parts = path.relative_to(root / "data").parts
            at = next(i for i, p in enumerate(parts) if p.endswith("._storage_object"))
            record = (
                (root / "data").joinpath(*parts[: at + 1]).with_name(parts[at] + ".metadata.json")
            )
            named = (
                [v["v"] for v in json.loads(record.read_text())["versions"]]
                if record.exists()
                else []
            )
            if path.suffix not in (".dat", ".meta"):
                orphan(path, "temp file")
            elif parts[at + 1] not in named:
                orphan(path, "version no record names")
            elif len(named) > 1 and not versioned:
                orphan(path, f"record still lists {len(named)} versions")
            else:
                live += path.stat().st_size
        for path in (root / "multipart").rglob("*"):
            if not path.is_file():
                continue
            upload = (root / "multipart").joinpath(*path.relative_to(root / "multipart").parts[:2])
            if not (upload / "upload.json").exists():
                orphan(path, "upload without a record")
                continue
            if path.parent == upload:
                live += path.stat().st_size
                continue
            folder = path.relative_to(upload).parts[0]  # part-P.pv
            number, _, pv = folder.partition(".")
            record = upload / f"{number}.json"
            if path.suffix not in (".dat", ".meta"):
                orphan(path, "temp file")
            elif not record.exists() or json.loads(record.read_text())["v"] != pv:
                orphan(path, "part no record names")
            else:
                live += path.stat().st_size
    return orphans, leftover, live


@pytest.fixture
def crashing(tmp_path: Path) -> Iterator[Node]:
    node = Node(tmp_path)
    node.start()
    try:
        yield node
    finally:
        node.kill()


def test_crash_cycles_leave_no_orphans(crashing: Node) -> None:
    node = crashing
    rng = random.Random(20261203)
    s3 = node.s3()
    s3.create_bucket(Bucket=BUCKET)
    ledger = Ledger()
    retried = 0
    for cycle in range(CYCLES):
        writers = [functools.partial(writer, cycle * 10 + i, node.s3(), ledger) for i in range(3)]
        kill_while_writing(node.kill, writers, at_random(rng))
        node.start()
        retried += retry_completions(node, ledger)
        check_objects(node, ledger)
    # Uploads a killed client never came back for stay (S3 keeps them until aborted or
    # expired); a client that cleans up aborts them.
    s3 = node.s3()
    for upload in s3.list_multipart_uploads(Bucket=BUCKET).get("Uploads", []):
        s3.abort_multipart_upload(Bucket=BUCKET, Key=upload["Key"], UploadId=upload["UploadId"])
    report = node.heal()
    orphans, leftover, live = audit(node.drives)
    print(
        f"\n{CYCLES} crash cycles: {leftover} bytes left over in {len(orphans)} files, "
        f"{live} bytes live; {retried} completions retried; heal report: "
        f"{ {k: v for k, v in report.items() if isinstance(v, int) and v} }"
    )
    assert orphans == [], orphans[:20]
    assert report["unrecoverable"] == [] and report["shards_corrupt"] == 0, report
    check_objects(node, ledger)
    digests = {
        o["Key"]: hashlib.sha256(s3.get_object(Bucket=BUCKET, Key=o["Key"])["Body"].read())
        for o in s3.list_objects_v2(Bucket=BUCKET).get("Contents", [])
    }
    assert digests, "nothing survived to check"
    # And after one more restart nothing changed and nothing new is orphaned.
    node.kill()
    node.start()
    for key, digest in digests.items():
        data = node.s3().get_object(Bucket=BUCKET, Key=key)["Body"].read()
        assert hashlib.sha256(data).digest() == digest.digest(), key
    assert audit(node.drives)[0] == []


@dataclass
class VersionLedger:
    """A versioned bucket's writes: each version's key and bytes (None: a marker) by
    version id, which were acknowledged, and which ids a delete was sent for."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    count: int = 0
    acked: dict[str, tuple[str, bytes | None]] = field(default_factory=dict)
    deleting: set[str] = field(default_factory=set)

    def next(self) -> int:
        with self.lock:
            self.count += 1
            return self.count


def version_writer(seed: int, s3: Any, ledger: VersionLedger, stop: threading.Event) -> None:
    """PUTs (a new version each), DELETEs (a marker each), and deletes of an older
    version by its id."""
    rng = random.Random(seed)
    while not stop.is_set():
        key = rng.choice(PLAIN)
        roll = rng.random()
        try:
            if roll < 0.15:
                vid = s3.delete_object(Bucket=BUCKET, Key=key)["VersionId"]
                with ledger.lock:
                    ledger.acked[vid] = (key, None)
                continue
            with ledger.lock:
                mine = sorted(v for v, (k, _) in ledger.acked.items() if k == key)
            if roll < 0.3 and mine:
                vid = rng.choice(mine)
                with ledger.lock:
                    ledger.deleting.add(vid)
                s3.delete_object(Bucket=BUCKET, Key=key, VersionId=vid)
                continue
            n = ledger.next()
            data = body(key, n)
            vid = s3.put_object(Bucket=BUCKET, Key=key, Body=data, Metadata={"n": str(n)})[
                "VersionId"
            ]
        except Exception:
            return  # the server died under us
        with ledger.lock:
            ledger.acked[vid] = (key, data)


def check_versions(node: Node, ledger: VersionLedger) -> None:
    """Every acknowledged version not deleted by id is listed and reads back whole (a
    marker answers 405 by its id); every version listed reads back as some write."""
    s3 = node.s3()
    listed: dict[str, tuple[str, bool]] = {}
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=BUCKET):
        for v in page.get("Versions", []):
            listed[v["VersionId"]] = (v["Key"], False)
        for m in page.get("DeleteMarkers", []):
            listed[m["VersionId"]] = (m["Key"], True)
    for vid, (key, data) in ledger.acked.items():
        if vid in ledger.deleting:
            continue
        assert listed.get(vid) == (key, data is None), f"{key} {vid}: acknowledged, not listed"
    for vid, (key, marker) in listed.items():
        if marker:
            with pytest.raises(ClientError) as caught:
                s3.head_object(Bucket=BUCKET, Key=key, VersionId=vid)
            assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 405
            continue
        got = s3.get_object(Bucket=BUCKET, Key=key, VersionId=vid)
        assert got["Body"].read() == body(key, int(got["Metadata"]["n"])), f"{key} {vid}: torn"


def test_crash_cycles_on_a_versioned_bucket(crashing: Node) -> None:
    node = crashing
    rng = random.Random(20261204)
    s3 = node.s3()
    s3.create_bucket(Bucket=BUCKET)
    s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    ledger = VersionLedger()
    for cycle in range(CYCLES):
        writers = [
            functools.partial(version_writer, cycle * 10 + i, node.s3(), ledger) for i in range(3)
        ]
        kill_while_writing(node.kill, writers, at_random(rng))
        node.start()
        check_versions(node, ledger)
    report = node.heal()
    orphans, leftover, live = audit(node.drives, versioned=True)
    print(f"\n{CYCLES} crash cycles (versioned): {leftover} bytes left over, {live} live")
    assert orphans == [], orphans[:20]
    assert report["unrecoverable"] == [] and report["shards_corrupt"] == 0, report
    check_versions(node, ledger)
    assert ledger.acked, "nothing was acknowledged"
