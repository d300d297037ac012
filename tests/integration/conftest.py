"""Fixtures for integration tests: the real server (from shoal's own pytest plugin),
boto3 clients in both checksum modes, a raw HTTP client for malformed requests."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import httpx
import pytest
from botocore.config import Config as BotoConfig


def make_client(descriptor: Any, **config: Any) -> Any:
    return boto3.client(
        "s3",
        endpoint_url=descriptor.endpoint_url,
        aws_access_key_id=descriptor.access_key,
        aws_secret_access_key=descriptor.access_secret,
        region_name=descriptor.region,
        config=BotoConfig(s3={"addressing_style": "path"}, retries={"max_attempts": 1}, **config),
    )


@pytest.fixture(scope="session")
def s3(shoal_descriptor: Any) -> Any:
    """boto3 with its defaults (checksums when supported: aws-chunked trailers)."""
    return make_client(shoal_descriptor)


@pytest.fixture(scope="session")
def s3_required(shoal_descriptor: Any) -> Any:
    """boto3 sending checksums only where an operation requires them."""
    return make_client(
        shoal_descriptor,
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
    )


@pytest.fixture(params=["when_supported", "when_required"])
def any_s3(request: pytest.FixtureRequest, s3: Any, s3_required: Any) -> Any:
    return s3 if request.param == "when_supported" else s3_required


@pytest.fixture
def bucket(s3: Any) -> Iterator[str]:
    name = f"t-{uuid.uuid4().hex[:20]}"
    s3.create_bucket(Bucket=name)
    yield name
    empty_bucket(s3, name)


def empty_bucket(s3: Any, name: str) -> None:
    try:
        for upload in s3.list_multipart_uploads(Bucket=name).get("Uploads", []):
            s3.abort_multipart_upload(Bucket=name, Key=upload["Key"], UploadId=upload["UploadId"])
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=name):
            for obj in page.get("Contents", []):
                s3.delete_object(Bucket=name, Key=obj["Key"])
        s3.delete_bucket(Bucket=name)
    except Exception:  # best effort: the server may have been the thing under test
        pass


@pytest.fixture(scope="session")
def endpoint(shoal_descriptor: Any) -> str:
    return shoal_descriptor.endpoint_url


@pytest.fixture
def http(endpoint: str) -> Iterator[httpx.Client]:
    """Raw HTTP for requests no SDK would send."""
    with httpx.Client(base_url=endpoint, timeout=30) as client:
        yield client


def error_code(exc: Any) -> str:
    return exc.response["Error"]["Code"]
