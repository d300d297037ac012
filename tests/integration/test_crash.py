"""Crash safety: SIGKILL the server at random moments while objects are overwritten,
deleted and multipart uploads completed; after every restart each object is one whole
version (or absent only if a delete may have landed), no acknowledged write or delete is
lost, and nothing is orphaned on disk."""

from __future__ import annotations

import functools
import hashlib
import json
import os
import random
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import boto3
import pytest
from botocore.config import Config as BotoConfig

from shoal.storage.keys import META_SUFFIX, OBJECT_MARKER
from tests.integration.conftest import multipart_put, spawn_server
from tests.integration.crashing import at_random, kill_while_writing

pytestmark = pytest.mark.slow

KEYS = ["single/a", "single/b", "deep/x/y/z", "multi/one", "multi/two"]
PART = 5 * 1024 * 1024
ROUNDS = 6


def content(key: str, version: int) -> bytes:
    """A version's bytes, reproducible from its name; sizes vary so kills land mid-write."""
    seed = hashlib.sha256(f"{key}:{version}".encode()).digest()
    size = (PART + 1024 * 1024) if key.startswith("multi/") else 300_000 + version % 7 * 250_000
    return (seed * (size // len(seed) + 1))[:size]


def expected_etag(key: str, version: int) -> str:
    data = content(key, version)
    if not key.startswith("multi/"):
        return hashlib.md5(data).hexdigest()
    parts = [data[:PART], data[PART:]]
    digest = hashlib.md5(b"".join(hashlib.md5(p).digest() for p in parts)).hexdigest()
    return f"{digest}-2"


class Node:
    """One server process on a fixed data directory."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.proc: subprocess.Popen[str] | None = None
        self.url = ""

    def start(self) -> None:
        self.proc, self.url = spawn_server(self.directory)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def client(self):
        return boto3.client(
            "s3",
            endpoint_url=self.url,
            aws_access_key_id="k",
            aws_secret_access_key="s",
            region_name="us-east-1",
            config=BotoConfig(retries={"max_attempts": 1}, connect_timeout=2, read_timeout=10),
        )


def orphans(data_dir: Path) -> list[str]:
    """Everything a crash left behind that no object, upload or live process owns: object
    data without its metadata sidecar (or the reverse), empty directories in a bucket
    tree (a bucket's own may be empty: every key deleted), temp files other than the
    running process's claim, part data no record names."""
    found: list[str] = []
    for path in sorted(data_dir.rglob("*")):
        rel = path.relative_to(data_dir)
        top = rel.parts[0]
        if top == ".tmp":
            if path.is_file() and path.name != "owner.lock":
                found.append(f"temp file {rel}")
        elif top == ".multipart" and path.is_file() and path.name.startswith("part-"):
            if not path.name.endswith(".json"):
                record = path.with_name(path.name.split(".")[0] + ".json")
                named = json.loads(record.read_text())["data"] if record.exists() else None
                if named != path.name:
                    found.append(f"part data no record names: {rel}")
        elif not top.startswith("."):
            if len(rel.parts) > 1 and path.is_dir() and not any(path.iterdir()):
                found.append(f"empty directory {rel}")
            elif (
                path.name.endswith(OBJECT_MARKER)
                and not path.with_name(path.name + META_SUFFIX).exists()
            ):
                found.append(f"data without metadata: {rel}")
            elif (
                path.name.endswith(META_SUFFIX)
                and not path.with_name(path.name[: -len(META_SUFFIX)]).exists()
            ):
                found.append(f"metadata without data: {rel}")
    return found


def write_version(s3, bucket: str, key: str, version: int) -> None:
    data = content(key, version)
    if not key.startswith("multi/"):
        s3.put_object(Bucket=bucket, Key=key, Body=data)
        return
    multipart_put(s3, bucket, key, [data[:PART], data[PART:]])


def test_sigkill_during_overwrites_never_tears(tmp_path: Path) -> None:
    rng = random.Random(20261126)
    node = Node(tmp_path / "data")
    node.start()
    bucket = "crash"
    s3 = node.client()
    s3.create_bucket(Bucket=bucket)
    attempted = {key: {0} for key in KEYS}
    started: dict[int, float] = {}
    acked: dict[int, float] = {}  # version -> when its write was acknowledged
    for key in KEYS:
        write_version(s3, bucket, key, 0)
    next_version = 1
    lock = threading.Lock()

    try:
        for _ in range(ROUNDS):

            def writer(worker: int, client, stop: threading.Event) -> None:
                nonlocal next_version
                local = random.Random(worker)
                while not stop.is_set():
                    key = local.choice(KEYS)
                    with lock:
                        version = next_version
                        next_version += 1
                        attempted[key].add(version)
                        started[version] = time.monotonic()
                    try:
                        write_version(client, bucket, key, version)
                    except Exception:
                        return  # the server died under us
                    with lock:
                        acked[version] = time.monotonic()

            writers = [functools.partial(writer, i, node.client()) for i in range(4)]
            kill_while_writing(node.kill, writers, at_random(rng))

            node.start()
            s3 = node.client()
            for key in KEYS:
                got = s3.get_object(Bucket=bucket, Key=key)
                body = got["Body"].read()
                etag = got["ETag"].strip('"')
                matches = [v for v in attempted[key] if content(key, v) == body]
                assert matches, f"{key}: stored bytes match no version that was written"
                assert etag == expected_etag(key, matches[0]), f"{key}: torn metadata"
                # Concurrent writes may land in either order, but a write acknowledged
                # before another one even started can never be the survivor.
                final_end = acked.get(matches[0], float("inf"))
                lost = [v for v in attempted[key] if v in acked and started[v] > final_end]
                assert not lost, f"{key}: acknowledged writes {lost} lost"
            assert orphans(tmp_path / "data") == []
    finally:
        if node.proc and node.proc.poll() is None:
            node.kill()

    stray = [
        p.name
        for p in (tmp_path / "data" / bucket).rglob("*")
        if p.is_file() and not p.name.endswith(("._storage_object", ".metadata.json"))
    ]
    assert stray == []
    assert os.path.isdir(tmp_path / "data")


def test_restart_keeps_objects_and_uploads_in_progress(tmp_path: Path) -> None:
    node = Node(tmp_path / "data")
    node.start()
    try:
        s3 = node.client()
        s3.create_bucket(Bucket="keep")
        s3.put_object(Bucket="keep", Key="obj", Body=b"survives", Metadata={"m": "1"})
        upload = s3.create_multipart_upload(Bucket="keep", Key="mp")["UploadId"]
        first = s3.upload_part(
            Bucket="keep", Key="mp", UploadId=upload, PartNumber=1, Body=b"a" * PART
        )["ETag"]
        node.proc.terminate()  # type: ignore[union-attr]
        node.proc.wait()  # type: ignore[union-attr]
        node.start()
        s3 = node.client()
        got = s3.get_object(Bucket="keep", Key="obj")
        assert got["Body"].read() == b"survives" and got["Metadata"] == {"m": "1"}
        assert [u["UploadId"] for u in s3.list_multipart_uploads(Bucket="keep")["Uploads"]] == [
            upload
        ]
        second = s3.upload_part(Bucket="keep", Key="mp", UploadId=upload, PartNumber=2, Body=b"b")[
            "ETag"
        ]
        s3.complete_multipart_upload(
            Bucket="keep",
            Key="mp",
            UploadId=upload,
            MultipartUpload={
                "Parts": [{"PartNumber": 1, "ETag": first}, {"PartNumber": 2, "ETag": second}]
            },
        )
        assert s3.get_object(Bucket="keep", Key="mp")["ContentLength"] == PART + 1
    finally:
        node.kill()


CHURN_KEYS = ["k/0", "k/1", "k/2", "a/b/c/d/e", "/" * 40 + "slashes", "./x", "top", "multi/m"]


@dataclass
class Op:
    """One client operation: a write of `version` or a delete (version None)."""

    version: int | None
    start: float
    end: float = float("inf")  # when it was acknowledged; inf if never


def survivor_allowed(ops: list[Op], final: int | None) -> bool:
    """Whether the state found after a restart is one some operation left, and no
    acknowledged operation started after that one was acknowledged (it would be lost)."""
    for op in ops:
        if op.version != final:
            continue
        if not any(o.end != float("inf") and o.start > op.end for o in ops):
            return True
    return False


def test_sigkill_during_deletes_and_overwrites_leaves_no_orphans(tmp_path: Path) -> None:
    """Kills land while keys are written and deleted (deep keys too). Before recovery
    removed them, a delete cut off between its two unlinks left data without metadata."""
    rng = random.Random(20261203)
    data_dir = tmp_path / "data"
    node = Node(data_dir)
    node.start()
    bucket = "churn"
    s3 = node.client()
    s3.create_bucket(Bucket=bucket)
    history: dict[str, list[Op]] = {key: [] for key in CHURN_KEYS}
    for key in CHURN_KEYS:
        op = Op(0, time.monotonic())
        write_version(s3, bucket, key, 0)
        op.end = time.monotonic()
        history[key].append(op)
    counter = {"next": 1, "acked": 0}
    progress = threading.Condition()

    def worker(seed: int, client, stop: threading.Event) -> None:
        local = random.Random(seed)
        while not stop.is_set():
            key = local.choice(CHURN_KEYS)
            with progress:
                version: int | None = None
                if local.random() < 0.6:
                    version = counter["next"]
                    counter["next"] += 1
                op = Op(version, time.monotonic())
                history[key].append(op)
            try:
                if version is None:
                    client.delete_object(Bucket=bucket, Key=key)
                else:
                    write_version(client, bucket, key, version)
            except Exception:
                return  # the server died under us
            with progress:
                op.end = time.monotonic()
                counter["acked"] += 1
                progress.notify_all()

    try:
        for _ in range(ROUNDS):
            target = counter["acked"] + rng.randint(3, 40)

            def acknowledged(n: int = target) -> None:
                with progress:
                    assert progress.wait_for(lambda: counter["acked"] >= n, timeout=120)

            writers = [functools.partial(worker, rng.random(), node.client()) for _ in range(4)]
            kill_while_writing(node.kill, writers, acknowledged)

            node.start()
            assert orphans(data_dir) == []
            s3 = node.client()
            finals: dict[str, int | None] = {}
            for key in CHURN_KEYS:
                try:
                    body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
                except s3.exceptions.NoSuchKey:
                    finals[key] = None
                else:
                    versions = [o.version for o in history[key] if o.version is not None]
                    matches = [v for v in versions if content(key, v) == body]
                    assert matches, f"{key}: stored bytes match no version that was written"
                    finals[key] = matches[0]
                assert survivor_allowed(history[key], finals[key]), f"{key}: acked op lost"
            listed = {o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])}
            assert listed == {key for key, final in finals.items() if final is not None}
    finally:
        if node.proc and node.proc.poll() is None:
            node.kill()
