"""Virtual-hosted addressing with `server.base_domain`: buckets as `<bucket>.<domain>`,
and the domain itself answering path-style requests (ListBuckets above all), as the AWS
SDKs send them when configured for virtual hosts."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import boto3
import httpx
import pytest
from botocore.config import Config as BotoConfig

from tests.integration.serving import Proc

pytestmark = pytest.mark.slow

DOMAIN = "s3.localhost"


@pytest.fixture
def server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Proc]:
    """A server with base_domain set; `*.localhost` resolves to loopback in this process
    (RFC 6761 says it should; not every resolver here does)."""
    real = socket.getaddrinfo

    def loopback(host: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(host, str) and (host == "localhost" or host.endswith(".localhost")):
            host = "127.0.0.1"
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", loopback)
    proc = Proc(tmp_path, "--log-level", "error", settings={"server": {"base_domain": DOMAIN}})
    try:
        yield proc
    finally:
        assert proc.stop() == 0, proc.stderr()


def virtual_client(port: int) -> Any:
    return boto3.client(
        "s3",
        endpoint_url=f"http://{DOMAIN}:{port}",
        aws_access_key_id="k",
        aws_secret_access_key="s",
        region_name="us-east-1",
        config=BotoConfig(
            s3={"addressing_style": "virtual"},
            signature_version="s3v4",
            retries={"max_attempts": 1},
        ),
    )


def test_boto3_virtual_hosted_against_base_domain(server: Proc) -> None:
    s3 = virtual_client(server.port)
    sent: list[str] = []
    s3.meta.events.register(
        "before-send.s3", lambda request, **_: sent.append(urlsplit(request.url).netloc)
    )
    assert s3.list_buckets()["Buckets"] == []  # was 400 InvalidBucketName (bucket "s3")
    s3.create_bucket(Bucket="photos")
    s3.put_object(Bucket="photos", Key="a/b.txt", Body=b"hello")
    assert s3.get_object(Bucket="photos", Key="a/b.txt")["Body"].read() == b"hello"
    listed = s3.list_objects_v2(Bucket="photos")["Contents"]
    assert [o["Key"] for o in listed] == ["a/b.txt"]
    assert [b["Name"] for b in s3.list_buckets()["Buckets"]] == ["photos"]
    # The requests really were virtual-hosted, ListBuckets at the domain itself.
    assert sent[0] == f"{DOMAIN}:{server.port}"
    assert f"photos.{DOMAIN}:{server.port}" in sent


@pytest.mark.parametrize(
    "host", [DOMAIN, "S3.LocalHost", f"{DOMAIN}.", f"{DOMAIN}:{{port}}", f"{DOMAIN}.:{{port}}"]
)
def test_base_domain_itself_is_path_style(server: Proc, host: str) -> None:
    host = host.format(port=server.port)
    with httpx.Client(base_url=server.url, headers={"Host": host}, timeout=30) as http:
        assert http.put("/pathstyle").status_code == 200
        listing = http.get("/")
        assert listing.status_code == 200, listing.text
        assert (
            "<ListAllMyBucketsResult" in listing.text and "<Name>pathstyle</Name>" in listing.text
        )
        bucket = http.get("/pathstyle")
        assert bucket.status_code == 200 and "<ListBucketResult" in bucket.text
