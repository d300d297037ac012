"""The one scenario every client in the matrix is put through, and the checks on what
it left on the server (made with a separate boto3 client, the verifier).

A client is an adapter with the methods of `Client`; it does each step its own way (an
SDK call, a CLI command, a file-system call). Steps a client cannot express at all are
named in its `unsupported` set and recorded as such, never silently passed.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

MIB = 1024 * 1024
#: Multipart: parts of 5 MiB (S3's smallest), so 11 MiB makes three.
PART_SIZE = 5 * MIB
BIG_SIZE = 11 * MIB

SMALL_KEYS = ("docs/a.txt", "docs/sub/b.txt", "top.txt", "docs/space and+plus é.txt")
META_KEY = "docs/a.txt"
METADATA = {"color": "blue", "shoal-test": "compat"}
BIG_KEY = "big.bin"
COPY_KEY = "copied/a.txt"
STEPS = (
    "create_bucket",
    "upload",
    "upload_multipart",
    "list",
    "read_range",
    "copy",
    "metadata",
    "delete_many",
    "delete_bucket",
)


@dataclass(frozen=True)
class Target:
    """How a client reaches the server under test."""

    endpoint: str  # e.g. https://127.0.0.1:41234
    access_key: str
    secret_key: str
    region: str
    ca_file: str | None  # the self-signed certificate to trust, over HTTPS

    @property
    def https(self) -> bool:
        return self.endpoint.startswith("https:")

    @property
    def host_port(self) -> str:
        return self.endpoint.split("://", 1)[1]

    def as_dict(self) -> dict[str, Any]:
        return {
            "endpoint": self.endpoint,
            "access_key": self.access_key,
            "secret_key": self.secret_key,
            "region": self.region,
            "ca_file": self.ca_file,
        }


class Client(Protocol):
    """One client's way of doing each step. `path` arguments are local files."""

    unsupported: frozenset[str]

    def create_bucket(self, bucket: str) -> None: ...
    def upload(self, bucket: str, key: str, path: str, metadata: dict[str, str] | None) -> None: ...
    def upload_multipart(self, bucket: str, key: str, path: str) -> None: ...
    def list(self, bucket: str, prefix: str, delimiter: str) -> tuple[list[str], list[str]]: ...
    def read_range(self, bucket: str, key: str, start: int, end: int) -> bytes: ...
    def copy(self, bucket: str, source: str, destination: str) -> None: ...
    def metadata(self, bucket: str, key: str) -> dict[str, str]: ...
    def delete_many(self, bucket: str, keys: list[str]) -> None: ...
    def delete_bucket(self, bucket: str) -> None: ...


@dataclass
class Files:
    """The local files the scenario uploads."""

    small: dict[str, Path]
    big: Path

    @classmethod
    def make(cls, directory: Path) -> Files:
        directory.mkdir(parents=True, exist_ok=True)
        small = {}
        for i, key in enumerate(SMALL_KEYS):
            path = directory / f"small{i}.txt"
            path.write_bytes(f"object {key}\n".encode() * (i + 1))
            small[key] = path
        big = directory / "big.bin"
        big.write_bytes(os.urandom(BIG_SIZE))
        return cls(small, big)


@dataclass
class Report:
    """What one scenario run did: the steps run, and those the client cannot express."""

    ran: list[str] = field(default_factory=list)
    unsupported: list[str] = field(default_factory=list)


def new_bucket_name(client_name: str) -> str:
    return f"compat-{client_name}-{uuid.uuid4().hex[:10]}"


def md5_etag(data: bytes) -> str:
    return f'"{hashlib.md5(data).hexdigest()}"'


def run_scenario(client: Client, verifier: Any, bucket: str, files: Files) -> Report:
    """Drive `client` through every step; after each, check the server's state."""
    report = Report()

    def step(name: str) -> bool:
        if name in client.unsupported:
            report.unsupported.append(name)
            return False
        report.ran.append(name)
        return True

    if step("create_bucket"):
        client.create_bucket(bucket)
    else:
        verifier.create_bucket(Bucket=bucket)
    verifier.head_bucket(Bucket=bucket)

    if step("upload"):
        for key, path in files.small.items():
            client.upload(bucket, key, str(path), METADATA if key == META_KEY else None)
        for key, path in files.small.items():
            head = verifier.head_object(Bucket=bucket, Key=key)
            # Single-part ETag is the body's MD5: rclone and others check it.
            assert head["ETag"] == md5_etag(path.read_bytes()), key
            body = verifier.get_object(Bucket=bucket, Key=key)["Body"].read()
            assert body == path.read_bytes(), key

    if step("upload_multipart"):
        client.upload_multipart(bucket, BIG_KEY, str(files.big))
        head = verifier.head_object(Bucket=bucket, Key=BIG_KEY)
        assert head["ContentLength"] == BIG_SIZE
        parts = int(head["ETag"].strip('"').rpartition("-")[2])
        assert parts >= 2, head["ETag"]
        body = verifier.get_object(Bucket=bucket, Key=BIG_KEY)["Body"].read()
        assert hashlib.sha256(body).digest() == hashlib.sha256(files.big.read_bytes()).digest()

    if step("list"):
        keys, prefixes = client.list(bucket, "docs/", "/")
        assert sorted(keys) == ["docs/a.txt", "docs/space and+plus é.txt"]
        assert prefixes == ["docs/sub/"]

    source = BIG_KEY if "upload_multipart" in report.ran else SMALL_KEYS[0]
    if step("read_range"):
        data = files.big.read_bytes() if source == BIG_KEY else files.small[source].read_bytes()
        start = PART_SIZE - 10 if source == BIG_KEY else 2
        end = start + 19
        assert client.read_range(bucket, source, start, end) == data[start : end + 1]

    if step("copy"):
        client.copy(bucket, META_KEY, COPY_KEY)
        got = verifier.get_object(Bucket=bucket, Key=COPY_KEY)
        assert got["Body"].read() == files.small[META_KEY].read_bytes()
        assert got["ETag"] == md5_etag(files.small[META_KEY].read_bytes())

    if step("metadata"):
        got = {k.lower(): v for k, v in client.metadata(bucket, META_KEY).items()}
        assert got.items() >= METADATA.items(), got
        stored = verifier.head_object(Bucket=bucket, Key=META_KEY)["Metadata"]
        assert stored.items() >= METADATA.items(), stored  # tools may add their own

    if step("delete_many"):
        existing = [o["Key"] for o in verifier.list_objects_v2(Bucket=bucket).get("Contents", [])]
        client.delete_many(bucket, existing)
        assert verifier.list_objects_v2(Bucket=bucket).get("KeyCount") == 0
    else:
        for key in [o["Key"] for o in verifier.list_objects_v2(Bucket=bucket).get("Contents", [])]:
            verifier.delete_object(Bucket=bucket, Key=key)

    if step("delete_bucket"):
        client.delete_bucket(bucket)
    else:
        verifier.delete_bucket(Bucket=bucket)
    names = [b["Name"] for b in verifier.list_buckets()["Buckets"]]
    assert bucket not in names
    return report
