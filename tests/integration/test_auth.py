"""With auth.enabled, requests must carry a valid SigV4 signature (header or presigned)
and pass the bucket policy; refused requests store nothing."""

from __future__ import annotations

import hashlib
import io
import json
import time
from collections.abc import Iterator
from typing import Any

import boto3
import httpx
import pytest
from botocore.exceptions import ClientError

from shoal.app.server import SyncServer
from shoal.auth.signer import signed_headers
from tests.integration.conftest import auth_config, error_code, signed_client, spawn_server

KEY, SECRET = "AKIDSHOALTEST", "shoal-secret-key"
OTHER_KEY, OTHER_SECRET = "AKIDOTHERUSER", "other-secret"


@pytest.fixture(scope="module")
def server() -> Iterator[SyncServer]:
    with SyncServer(auth_config((KEY, SECRET), (OTHER_KEY, OTHER_SECRET))) as running:
        yield running


def client(server: SyncServer, key: str = KEY, secret: str = SECRET, **config: Any) -> Any:
    return signed_client(server.endpoint_url, key, secret, **config)


@pytest.fixture(scope="module")
def s3(server: SyncServer) -> Any:
    return client(server)


@pytest.fixture
def bucket(s3: Any) -> str:
    name = f"auth-{time.monotonic_ns()}"
    s3.create_bucket(Bucket=name)
    s3.put_object(Bucket=name, Key="secret.txt", Body=b"classified")
    return name


@pytest.mark.parametrize("mode", ["when_supported", "when_required"])
def test_signed_clients_work(server: SyncServer, bucket: str, mode: str) -> None:
    s3 = client(server, request_checksum_calculation=mode)
    s3.put_object(Bucket=bucket, Key="a b/ü+%.txt", Body=b"x" * 1000, Metadata={"m": "1"})
    assert s3.get_object(Bucket=bucket, Key="a b/ü+%.txt")["Body"].read() == b"x" * 1000
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix="a ")["Contents"]]
    assert keys == ["a b/ü+%.txt"]
    body = io.BytesIO(b"y" * (6 * 1024 * 1024))
    s3.upload_fileobj(
        body,
        bucket,
        "big",
        Config=boto3.s3.transfer.TransferConfig(
            multipart_threshold=5 * 1024 * 1024, multipart_chunksize=5 * 1024 * 1024
        ),
    )
    assert s3.head_object(Bucket=bucket, Key="big")["ETag"].endswith('-2"')
    s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": "big"}]})
    s3.copy_object(Bucket=bucket, Key="copy", CopySource=f"{bucket}/secret.txt")


@pytest.mark.parametrize(
    ("key", "secret", "code"),
    [(KEY, "wrong-secret", "SignatureDoesNotMatch"), ("AKIDUNKNOWN", SECRET, "InvalidAccessKeyId")],
)
def test_bad_credentials_store_nothing(
    server: SyncServer, s3: Any, bucket: str, key: str, secret: str, code: str
) -> None:
    bad = client(server, key, secret)
    with pytest.raises(ClientError) as info:
        bad.put_object(Bucket=bucket, Key="secret.txt", Body=b"overwritten")
    assert error_code(info.value) == code
    with pytest.raises(ClientError) as info:
        bad.get_object(Bucket=bucket, Key="secret.txt")
    assert error_code(info.value) == code
    assert s3.get_object(Bucket=bucket, Key="secret.txt")["Body"].read() == b"classified"


def test_anonymous_requests_are_denied(server: SyncServer, s3: Any, bucket: str) -> None:
    with httpx.Client(base_url=server.endpoint_url) as http:
        assert "AccessDenied" in http.get(f"/{bucket}/secret.txt").text
        # Preconditions never reveal anything to a caller who may not read.
        assert http.get(f"/{bucket}/secret.txt", headers={"If-None-Match": "*"}).status_code == 403
        assert http.put(f"/{bucket}/new", content=b"x").status_code == 403
        assert http.get("/").status_code == 403
    assert "Contents" not in s3.list_objects_v2(Bucket=bucket, Prefix="new")


def test_unsigned_amz_header_is_refused(server: SyncServer, s3: Any, bucket: str) -> None:
    def add_header(request: Any, **_: Any) -> None:
        request.headers["x-amz-meta-sneaky"] = "added after signing"

    sneaky = client(server)
    sneaky.meta.events.register("before-send.s3.PutObject", add_header)
    with pytest.raises(ClientError) as info:
        sneaky.put_object(Bucket=bucket, Key="secret.txt", Body=b"overwritten")
    assert error_code(info.value) == "AccessDenied"
    assert s3.get_object(Bucket=bucket, Key="secret.txt")["Body"].read() == b"classified"


def test_presigned_urls(s3: Any, bucket: str) -> None:
    url = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "secret.txt"})
    with httpx.Client() as http:
        assert http.get(url).content == b"classified"
        tampered = url.replace("X-Amz-Signature=", "X-Amz-Signature=0")
        assert "SignatureDoesNotMatch" in http.get(tampered[:-1]).text
        other_key = url.replace("secret.txt", "other.txt")
        assert "SignatureDoesNotMatch" in http.get(other_key).text
        expired = s3.generate_presigned_url(
            "get_object", Params={"Bucket": bucket, "Key": "secret.txt"}, ExpiresIn=1
        )
        time.sleep(2)
        response = http.get(expired)
        assert response.status_code == 403 and "Request has expired" in response.text
        put_url = s3.generate_presigned_url(
            "put_object", Params={"Bucket": bucket, "Key": "uploaded"}
        )
        assert http.put(put_url, content=b"via presigned").status_code == 200
    assert s3.get_object(Bucket=bucket, Key="uploaded")["Body"].read() == b"via presigned"


def test_bucket_policy_is_enforced(server: SyncServer, s3: Any, bucket: str) -> None:
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "PublicRead",
                "Effect": "Allow",
                "Principal": "*",
                "Action": "s3:GetObject",
                "Resource": f"arn:aws:s3:::{bucket}/*",
            },
            {
                "Sid": "NoDeleteForOther",
                "Effect": "Deny",
                "Principal": {"AWS": f"arn:aws:iam::000000000000:user/{OTHER_KEY}"},
                "Action": "s3:DeleteObject",
                "Resource": f"arn:aws:s3:::{bucket}/*",
            },
        ],
    }
    s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps(policy))
    with httpx.Client(base_url=server.endpoint_url) as http:
        assert http.get(f"/{bucket}/secret.txt").content == b"classified"
        relabelled = http.get(f"/{bucket}/secret.txt?response-content-type=text/html")
        assert relabelled.status_code == 400 and b"anonymous GET" in relabelled.content
        assert http.put(f"/{bucket}/secret.txt", content=b"x").status_code == 403
        assert http.get(f"/{bucket}?list-type=2").status_code == 403
    other = client(server, OTHER_KEY, OTHER_SECRET)
    with pytest.raises(ClientError) as info:
        other.delete_object(Bucket=bucket, Key="secret.txt")
    assert error_code(info.value) == "AccessDenied"
    with pytest.raises(ClientError) as info:  # not the owner: refused before the body
        other.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": "secret.txt"}]})
    assert error_code(info.value) == "AccessDenied"
    assert s3.get_object(Bucket=bucket, Key="secret.txt")["Body"].read() == b"classified"
    s3.delete_bucket_policy(Bucket=bucket)
    with httpx.Client(base_url=server.endpoint_url) as http:
        assert http.get(f"/{bucket}/secret.txt").status_code == 403
    with pytest.raises(ClientError) as info:  # the bucket is the owner's alone
        other.delete_object(Bucket=bucket, Key="secret.txt")
    assert error_code(info.value) == "AccessDenied"
    s3.delete_object(Bucket=bucket, Key="secret.txt")


def test_embedded_subprocess_server_signs_its_own_calls() -> None:
    config = {
        "auth": {
            "enabled": True,
            "credentials": [{"access_key_id": KEY, "secret_access_key": SECRET}],
        }
    }
    with SyncServer(config, subprocess=True) as running:
        running.create_bucket("made-by-embedded-api")
        names = [b["Name"] for b in client(running).list_buckets()["Buckets"]]
        assert names == ["made-by-embedded-api"]


def test_minio_client_with_signed_payloads(server: SyncServer) -> None:
    """The minio SDK signs each body's hex SHA-256, which shoal verifies as it streams."""
    minio = pytest.importorskip("minio")
    host = server.endpoint_url.split("://", 1)[1]
    m = minio.Minio(host, access_key=KEY, secret_key=SECRET, secure=False, region="us-east-1")
    m.make_bucket("minio-signed")
    data = b"z" * (6 * 1024 * 1024 + 5)
    m.put_object("minio-signed", "big", io.BytesIO(data), len(data), part_size=5 * 1024 * 1024)
    assert m.get_object("minio-signed", "big").read() == data
    m.put_object("minio-signed", "small", io.BytesIO(b"hi"), 2)
    assert sorted(o.object_name for o in m.list_objects("minio-signed")) == ["big", "small"]
    url = m.presigned_get_object("minio-signed", "small")
    assert httpx.get(url).content == b"hi"


def _streaming_put(
    server: SyncServer, path: str, chunks: list[bytes], tamper: int = -1
) -> httpx.Response:
    """A STREAMING-AWS4-HMAC-SHA256-PAYLOAD upload, every chunk signed in the chain
    (the signatures' maths is checked against AWS's published examples in test_sigv4)."""
    from shoal.auth.sigv4 import EMPTY_SHA256, STREAMING_PAYLOAD, Scope, sign, signing_key

    host = server.endpoint_url.split("://", 1)[1]
    size = sum(len(c) for c in chunks)
    extra = {"content-encoding": "aws-chunked", "x-amz-decoded-content-length": str(size)}
    headers = signed_headers(
        "PUT", path, host, KEY, SECRET, "us-east-1", payload_hash=STREAMING_PAYLOAD, extra=extra
    )
    amz_date = headers["x-amz-date"]
    scope = Scope(amz_date[:8], "us-east-1")
    key = signing_key(SECRET, scope.date, "us-east-1")
    previous = headers["authorization"].rsplit("Signature=", 1)[1]
    body = b""
    for index, chunk in enumerate([*chunks, b""]):
        digest = hashlib.sha256(chunk).hexdigest()
        to_sign = (
            f"AWS4-HMAC-SHA256-PAYLOAD\n{amz_date}\n{scope}\n{previous}\n{EMPTY_SHA256}\n{digest}"
        )
        previous = sign(key, to_sign)
        sent = chunk[:-1] + b"!" if index == tamper else chunk
        body += f"{len(sent):x};chunk-signature={previous}\r\n".encode() + sent + b"\r\n"
    return httpx.put(server.endpoint_url + path, content=body, headers=headers)


def test_signed_streaming_upload(server: SyncServer, s3: Any, bucket: str) -> None:
    chunks = [b"a" * 65536, b"b" * 65536, b"c" * 100]
    assert _streaming_put(server, f"/{bucket}/streamed", chunks).status_code == 200
    assert s3.get_object(Bucket=bucket, Key="streamed")["Body"].read() == b"".join(chunks)
    refused = _streaming_put(server, f"/{bucket}/secret.txt", chunks, tamper=1)
    assert refused.status_code == 403 and "SignatureDoesNotMatch" in refused.text
    assert s3.get_object(Bucket=bucket, Key="secret.txt")["Body"].read() == b"classified"


def test_skewed_clock_is_refused_with_the_times(server: SyncServer, bucket: str) -> None:
    from datetime import UTC, datetime, timedelta

    host = server.endpoint_url.split("://", 1)[1]
    then = datetime.now(UTC) - timedelta(minutes=20)
    headers = signed_headers("GET", f"/{bucket}/secret.txt", host, KEY, SECRET, "us-east-1", then)
    response = httpx.get(f"{server.endpoint_url}/{bucket}/secret.txt", headers=headers)
    assert response.status_code == 403
    for field in (
        "RequestTimeTooSkewed",
        "<RequestTime>",
        "<ServerTime>",
        "<MaxAllowedSkewMilliseconds>900000<",
    ):
        assert field in response.text


@pytest.mark.cli
def test_aws_cli_with_auth(server: SyncServer, tmp_path: Any) -> None:
    import os
    import subprocess
    import sys
    from pathlib import Path

    aws = Path(sys.executable).parent / "aws"
    if not aws.exists():
        pytest.skip("the aws CLI is not installed (pip install awscli)")
    source = tmp_path / "file.txt"
    source.write_bytes(b"from the cli")

    def run(secret: str, *args: str) -> subprocess.CompletedProcess[str]:
        env = dict(
            os.environ,
            AWS_ACCESS_KEY_ID=KEY,
            AWS_SECRET_ACCESS_KEY=secret,
            AWS_DEFAULT_REGION="us-east-1",
            AWS_CONFIG_FILE=str(tmp_path / "none"),
        )
        return subprocess.run(
            [str(aws), "--endpoint-url", server.endpoint_url, *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )

    assert run(SECRET, "s3", "mb", "s3://cli-auth").returncode == 0
    assert run(SECRET, "s3", "cp", str(source), "s3://cli-auth/f.txt").returncode == 0
    denied = run("wrong", "s3", "cp", str(source), "s3://cli-auth/g.txt")
    assert denied.returncode != 0 and "SignatureDoesNotMatch" in denied.stderr
    listing = run(SECRET, "s3", "ls", "s3://cli-auth/")
    assert "f.txt" in listing.stdout and "g.txt" not in listing.stdout


def test_policy_survives_a_restart(tmp_path: Any) -> None:

    def start() -> tuple[Any, str]:
        flags = ("--auth", "--access-key", KEY, "--secret-key", SECRET, "--silent")
        return spawn_server(tmp_path / "data", *flags)

    proc, url = start()
    try:
        s3 = boto3.client(
            "s3",
            endpoint_url=url,
            aws_access_key_id=KEY,
            aws_secret_access_key=SECRET,
            region_name="us-east-1",
        )
        s3.create_bucket(Bucket="kept-policy")
        s3.put_object(Bucket="kept-policy", Key="public.txt", Body=b"hello")
        policy = {
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": "*",
                    "Action": "s3:GetObject",
                    "Resource": "arn:aws:s3:::kept-policy/*",
                }
            ]
        }
        s3.put_bucket_policy(Bucket="kept-policy", Policy=json.dumps(policy))
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    proc, url = start()
    try:
        assert httpx.get(f"{url}/kept-policy/public.txt").content == b"hello"
        assert httpx.put(f"{url}/kept-policy/other", content=b"x").status_code == 403
    finally:
        proc.terminate()
        proc.wait(timeout=30)
