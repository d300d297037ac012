"""pytest fixtures for testing against a real shoal server (entry point `pytest11`).

Fixtures (all prefixed `shoal_` so they never clash with a project's own):

- `shoal_config`: session-scoped mapping of config overrides, `{}` by default; override
  it in a conftest.py to change the server's settings.
- `shoal_server`: session-scoped, running `SyncServer` (in-process, free port, temporary
  data directory). Under pytest-xdist each worker process gets its own.
- `shoal_descriptor`: its `StorageDescriptor` (endpoint, port, keys, region).
- `shoal_s3_client`: a boto3 S3 client for it (path-style); skips if boto3 is missing.
- `shoal_bucket`: a fresh, uniquely named bucket for one test, emptied and deleted after.

This module is loaded into every pytest run where shoal is installed, so it imports
nothing heavy until a fixture is used.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from shoal.app.server import StorageDescriptor, SyncServer

log = logging.getLogger("shoal.pytest")


@pytest.fixture(scope="session")
def shoal_config() -> Mapping[str, Any]:
    """Overrides applied on top of the embedded defaults (see app.server.embedded_config)."""
    return {}


@pytest.fixture(scope="session")
def shoal_server(shoal_config: Mapping[str, Any]) -> Iterator[SyncServer]:
    from shoal.app.server import SyncServer

    with SyncServer(shoal_config) as server:
        yield server


@pytest.fixture(scope="session")
def shoal_descriptor(shoal_server: SyncServer) -> StorageDescriptor:
    return shoal_server.get_storage_descriptor()


@pytest.fixture(scope="session")
def shoal_s3_client(shoal_descriptor: StorageDescriptor) -> Any:
    boto3 = pytest.importorskip(
        "boto3", reason="shoal_s3_client needs boto3 (pip install boto3, or shoal[test])"
    )
    from botocore.config import Config as BotoConfig

    return boto3.client(
        "s3",
        config=BotoConfig(
            s3={"addressing_style": "path"},
            signature_version="s3v4",
            retries={"max_attempts": 2, "mode": "standard"},
        ),
        **shoal_descriptor.boto3_kwargs(),
    )


@pytest.fixture
def shoal_bucket(shoal_s3_client: Any) -> Iterator[str]:
    """A new bucket named for this test; deleted afterwards with everything in it."""
    name = f"test-{uuid.uuid4().hex[:20]}"
    shoal_s3_client.create_bucket(Bucket=name)
    yield name
    _empty_and_delete(shoal_s3_client, name)


def _empty_and_delete(client: Any, bucket: str) -> None:
    """Best effort: a test may have deleted the bucket itself, or left uploads open.
    A bucket already gone is expected; any other failure is logged, not raised (the
    test's own outcome stands)."""
    from botocore.exceptions import BotoCoreError, ClientError

    def failed(exc: Exception) -> None:
        code = exc.response.get("Error", {}).get("Code") if isinstance(exc, ClientError) else ""
        if code != "NoSuchBucket":
            log.warning("shoal_bucket: cleaning up %s failed: %s", bucket, exc)

    try:
        for page in client.get_paginator("list_multipart_uploads").paginate(Bucket=bucket):
            for up in page.get("Uploads", []):
                client.abort_multipart_upload(Bucket=bucket, Key=up["Key"], UploadId=up["UploadId"])
    except (BotoCoreError, ClientError) as exc:
        failed(exc)
    try:
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
            for i in range(0, len(keys), 1000):
                client.delete_objects(
                    Bucket=bucket, Delete={"Objects": keys[i : i + 1000], "Quiet": True}
                )
        client.delete_bucket(Bucket=bucket)
    except (BotoCoreError, ClientError) as exc:
        failed(exc)
