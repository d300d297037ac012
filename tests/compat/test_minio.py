"""The minio Python client: fput_object (multipart above its part size), list_objects,
and presigned URLs used by a plain HTTP client."""

from __future__ import annotations

import datetime as dt
import ssl
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.compat.clients.minio_client import MinioClient
from tests.compat.scenario import STEPS, Files, Target, new_bucket_name, run_scenario


def test_scenario(
    target: Target, verifier: Any, tmp_path: Path, cleanup_buckets: list[str]
) -> None:
    bucket = new_bucket_name("minio")
    cleanup_buckets.append(bucket)
    report = run_scenario(MinioClient(target.as_dict()), verifier, bucket, Files.make(tmp_path))
    assert report.ran == list(STEPS)


@pytest.fixture
def bucket(verifier: Any, cleanup_buckets: list[str]) -> str:
    name = new_bucket_name("minio-presign")
    cleanup_buckets.append(name)
    verifier.create_bucket(Bucket=name)
    return name


def test_presigned_urls(target: Target, bucket: str) -> None:
    client = MinioClient(target.as_dict()).client
    expires = dt.timedelta(minutes=5)
    key = "shared/report 1.txt"
    verify = ssl.create_default_context(cafile=target.ca_file)
    put_url = client.presigned_put_object(bucket, key, expires=expires)
    assert httpx.put(put_url, content=b"hello via presign", verify=verify).status_code == 200
    get_url = client.presigned_get_object(bucket, key, expires=expires)
    got = httpx.get(get_url, verify=verify)
    assert got.status_code == 200
    assert got.content == b"hello via presign"
    # The signature covers the method: a presigned GET does not let one DELETE.
    assert httpx.delete(get_url, verify=verify).status_code == 403
    assert httpx.get(get_url, verify=verify).status_code == 200
