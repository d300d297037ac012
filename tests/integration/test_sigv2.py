"""SigV2 against a real server with auth on, over HTTP and HTTPS: boto3's SigV2 client,
boto3's default presigned URLs and POST policies, `aws s3 presign`, fetched with httpx
and curl; expiry and the week-long ceiling; SigV4 presign limits; `auth.sigv2 = false`."""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import boto3
import httpx
import pytest
from boto3.s3.transfer import TransferConfig
from botocore.auth import HmacV1QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.config import Config as BotoConfig
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from shoal.app.server import SyncServer
from tests.integration.conftest import (
    auth_config,
    erasure_config,
    error_code,
    make_certificate,
    multipart_put,
    signed_client,
    ssl_context,
)

KEY, SECRET = "AKIDSIGV2TEST", "sigv2+secret/key"
DOMAIN = "s3.localhost"
CURL = shutil.which("curl")
AWS_CLI = str(Path(sys.executable).with_name("aws"))


class Endpoint:
    """A running server and how to reach it (CA bundle for HTTPS)."""

    def __init__(self, server: SyncServer, verify: str | bool) -> None:
        self.server = server
        self.url = server.endpoint_url
        self.verify = verify

    def client(self, key: str = KEY, secret: str = SECRET, **config: Any) -> Any:
        """boto3 with its default signature choices (SigV2 presigns in us-east-1)."""
        addressing = config.pop("addressing", "path")
        endpoint = self.url
        if addressing == "virtual":
            endpoint = self.url.replace("127.0.0.1", DOMAIN)
        return boto3.client(
            "s3",
            endpoint_url=endpoint,
            verify=self.verify,
            aws_access_key_id=key,
            aws_secret_access_key=secret,
            region_name="us-east-1",
            config=BotoConfig(
                s3={"addressing_style": addressing}, retries={"max_attempts": 1}, **config
            ),
        )

    def v2(self, key: str = KEY, secret: str = SECRET, **config: Any) -> Any:
        return self.client(key, secret, signature_version="s3", **config)

    def http(self) -> httpx.Client:
        return httpx.Client(timeout=30, verify=ssl_context(self.verify))

    def curl(self, url: str, *args: str) -> tuple[int, bytes]:
        """`curl` fetching a URL as given (status, body); *.localhost resolved to us."""
        assert CURL is not None
        port = str(urlsplit(self.url).port)
        argv = [CURL, "-sS", "-g", "-o", "-", "-w", "\n%{http_code}", *args]
        argv += ["--connect-to", f"::127.0.0.1:{port}"]
        if isinstance(self.verify, str):
            argv += ["--cacert", self.verify]
        argv.append(url)
        out = subprocess.run(argv, capture_output=True, timeout=60, check=True).stdout
        body, _, status = out.rpartition(b"\n")
        return int(status), body


def _loopback_localhost(monkeypatch: pytest.MonkeyPatch) -> None:
    """`*.localhost` resolves to loopback in this process (RFC 6761), as in
    test_virtual_host: not every resolver here does it."""
    real = socket.getaddrinfo

    def loopback(host: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(host, str) and (host == "localhost" or host.endswith(".localhost")):
            host = "127.0.0.1"
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", loopback)


def _settings(tls_files: tuple[str, str] | None, **auth: Any) -> dict[str, Any]:
    config = auth_config((KEY, SECRET))
    config["auth"].update(auth)
    config["server"] = {"base_domain": DOMAIN}
    if tls_files:
        config["server"]["tls"] = {"cert_file": tls_files[0], "key_file": tls_files[1]}
    return config


@pytest.fixture(scope="module", params=["http", "https", "https-erasure"])
def served(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Endpoint]:
    """Standalone over HTTP and HTTPS, and an erasure-coded node over HTTPS."""
    tls = None
    if request.param.startswith("https"):  # a certificate for the virtual hosts too
        names = ("localhost", f"*.{DOMAIN}")
        tls = make_certificate(tmp_path_factory.mktemp("tls"), names)
    settings = _settings(tls)
    if request.param.endswith("erasure"):
        settings |= erasure_config(tmp_path_factory.mktemp("drives"))
    with SyncServer(settings) as server:
        yield Endpoint(server, tls[0] if tls else True)


@pytest.fixture(scope="module")
def strict() -> Iterator[Endpoint]:
    """A server that accepts SigV4 only (`auth.sigv2 = false`)."""
    with SyncServer(_settings(None, sigv2=False)) as server:
        yield Endpoint(server, True)


@pytest.fixture
def bucket(served: Endpoint) -> str:
    name = f"sigv2-{time.monotonic_ns()}"
    served.v2().create_bucket(Bucket=name)
    served.v2().put_object(Bucket=name, Key="obj ü+%.txt", Body=b"hello sigv2")
    return name


# --- boto3 with signature_version="s3" ----------------------------------------------


@pytest.mark.parametrize("addressing", ["path", "virtual"])
def test_boto3_sigv2_client_round_trip(
    served: Endpoint, addressing: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    _loopback_localhost(monkeypatch)
    s3 = served.v2(addressing=addressing)
    name = f"v2-{addressing}-{time.monotonic_ns()}"
    s3.create_bucket(Bucket=name)
    s3.put_object(
        Bucket=name, Key="a b/ü+%.txt", Body=b"x" * 1000, Metadata={"m": "1"}, ContentType="t/p"
    )
    got = s3.get_object(Bucket=name, Key="a b/ü+%.txt", ResponseContentDisposition="inline")
    assert got["Body"].read() == b"x" * 1000
    assert (got["Metadata"], got["ContentDisposition"]) == ({"m": "1"}, "inline")
    listed = s3.list_objects_v2(Bucket=name, Prefix="a ")["Contents"]
    assert [o["Key"] for o in listed] == ["a b/ü+%.txt"]
    multipart_put(s3, name, "parts", [b"p" * (5 * 1024 * 1024), b"q"])
    assert s3.head_object(Bucket=name, Key="parts")["ETag"].endswith('-2"')
    s3.upload_fileobj(
        io.BytesIO(b"y" * (6 * 1024 * 1024)),
        name,
        "big",
        Config=TransferConfig(multipart_threshold=5 * 1024 * 1024, multipart_chunksize=5 * 1024**2),
    )
    s3.copy_object(Bucket=name, Key="copy", CopySource={"Bucket": name, "Key": "a b/ü+%.txt"})
    s3.delete_objects(Bucket=name, Delete={"Objects": [{"Key": "big"}, {"Key": "copy"}]})
    s3.delete_object(Bucket=name, Key="parts")
    s3.delete_object(Bucket=name, Key="a b/ü+%.txt")
    assert s3.list_objects_v2(Bucket=name)["KeyCount"] == 0
    s3.delete_bucket(Bucket=name)


@pytest.mark.parametrize(
    ("key", "secret", "code"),
    [(KEY, "wrong", "SignatureDoesNotMatch"), ("AKIDNOBODY", SECRET, "InvalidAccessKeyId")],
)
def test_bad_sigv2_credentials_store_nothing(
    served: Endpoint, bucket: str, key: str, secret: str, code: str
) -> None:
    with pytest.raises(ClientError) as info:
        served.v2(key, secret).put_object(Bucket=bucket, Key="obj ü+%.txt", Body=b"overwritten")
    assert error_code(info.value) == code
    assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    body = served.v2().get_object(Bucket=bucket, Key="obj ü+%.txt")["Body"].read()
    assert body == b"hello sigv2"


def test_mismatch_answers_the_string_to_sign(served: Endpoint, bucket: str) -> None:
    url = served.client(secret="wrong").generate_presigned_url(
        "get_object", Params={"Bucket": bucket, "Key": "obj ü+%.txt"}
    )
    with served.http() as http:
        response = http.get(url)
    assert response.status_code == 403
    assert "<Code>SignatureDoesNotMatch</Code>" in response.text
    assert f"/{bucket}/obj%20%C3%BC%2B%25.txt</StringToSign>" in response.text
    signature = re.search(r"Signature=([^&]+)", url)
    assert signature is not None and signature.group(1) not in response.text


# --- presigned URLs: boto3's defaults, the aws CLI, curl --------------------------------


def test_boto3_default_presigned_get_is_sigv2_and_works(served: Endpoint, bucket: str) -> None:
    url = served.client().generate_presigned_url(
        "get_object", Params={"Bucket": bucket, "Key": "obj ü+%.txt"}
    )
    assert "AWSAccessKeyId=" in url and "X-Amz-Credential" not in url  # SigV2, as installed
    with served.http() as http:
        response = http.get(url)
    assert (response.status_code, response.content) == (200, b"hello sigv2")
    if CURL:
        assert served.curl(url) == (200, b"hello sigv2")


def test_presigned_response_overrides_are_signed(served: Endpoint, bucket: str) -> None:
    params = {
        "Bucket": bucket,
        "Key": "obj ü+%.txt",
        "ResponseContentType": "text/x-a+b c",
        "ResponseContentDisposition": 'attachment; filename="a b.txt"',
    }
    url = served.client().generate_presigned_url("get_object", Params=params)
    with served.http() as http:
        response = http.get(url)
        assert response.status_code == 200, response.text
        assert response.headers["content-type"] == "text/x-a+b c"
        assert response.headers["content-disposition"] == 'attachment; filename="a b.txt"'
        tampered = url.replace("text%2Fx-a", "text%2Fhtml-a")
        assert http.get(tampered).status_code == 403


def test_presigned_put_and_virtual_hosted_get(
    served: Endpoint, bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    _loopback_localhost(monkeypatch)
    put = served.v2().generate_presigned_url(
        "put_object", Params={"Bucket": bucket, "Key": "put-by-url"}
    )
    with served.http() as http:
        assert http.put(put, content=b"from a url").status_code == 200
    get = served.client(addressing="virtual").generate_presigned_url(
        "get_object", Params={"Bucket": bucket, "Key": "put-by-url"}
    )
    assert urlsplit(get).hostname == f"{bucket}.{DOMAIN}"
    if CURL:
        assert served.curl(get) == (200, b"from a url")
    with served.http() as http:
        assert http.get(get).content == b"from a url"


@pytest.mark.skipif(not Path(AWS_CLI).exists(), reason="aws CLI not installed in the venv")
def test_aws_cli_presign(served: Endpoint, bucket: str, tmp_path: Path) -> None:
    env = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": KEY,
        "AWS_SECRET_ACCESS_KEY": SECRET,
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_CONFIG_FILE": str(tmp_path / "none"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"),
    }
    argv = [AWS_CLI, "s3", "presign", f"s3://{bucket}/obj ü+%.txt", "--endpoint-url", served.url]
    url = subprocess.run(argv, env=env, capture_output=True, text=True, check=True).stdout.strip()
    assert "AWSAccessKeyId=" in url, url
    with served.http() as http:
        response = http.get(url)
    assert (response.status_code, response.content) == (200, b"hello sigv2")
    if CURL:
        assert served.curl(url) == (200, b"hello sigv2")


def _v2_url(served: Endpoint, bucket: str, expires: int) -> str:
    """A SigV2 URL from botocore's own signer with any lifetime, negative included."""
    request = AWSRequest("GET", f"{served.url}/{bucket}/plain")
    HmacV1QueryAuth(Credentials(KEY, SECRET), expires=expires).add_auth(request)
    return request.url


def test_expired_and_overlong_urls_are_refused(served: Endpoint, bucket: str) -> None:
    served.v2().put_object(Bucket=bucket, Key="plain", Body=b"p")
    with served.http() as http:
        assert http.get(_v2_url(served, bucket, 600)).status_code == 200
        expired = http.get(_v2_url(served, bucket, -5))
        assert expired.status_code == 403
        assert "<Code>AccessDenied</Code>" in expired.text
        assert "<Message>Request has expired</Message>" in expired.text
        week = served.client().generate_presigned_url(
            "get_object", Params={"Bucket": bucket, "Key": "plain"}, ExpiresIn=604800
        )
        assert http.get(week).status_code == 200
        overlong = served.client().generate_presigned_url(
            "get_object", Params={"Bucket": bucket, "Key": "plain"}, ExpiresIn=604800 + 3600
        )
        refused = http.get(overlong)
        assert refused.status_code == 403 and "<Code>AccessDenied</Code>" in refused.text


def test_sigv4_presign_limits(served: Endpoint, bucket: str) -> None:
    s3v4 = served.client(signature_version="s3v4")
    params = {"Bucket": bucket, "Key": "obj ü+%.txt"}
    with served.http() as http:
        week = s3v4.generate_presigned_url("get_object", Params=params, ExpiresIn=604800)
        assert http.get(week).status_code == 200
        for expires in (604801, -1):
            url = week.replace("X-Amz-Expires=604800", f"X-Amz-Expires={expires}")
            refused = http.get(url)
            assert refused.status_code == 400, refused.text
            assert "<Code>AuthorizationQueryParametersError</Code>" in refused.text
        later = datetime.now(UTC) + timedelta(hours=1)
        future = re.sub(r"X-Amz-Date=\d{8}T\d{6}Z", f"X-Amz-Date={later:%Y%m%dT%H%M%SZ}", week)
        future = re.sub(r"%2F\d{8}%2F", f"%2F{later:%Y%m%d}%2F", future)
        not_yet = http.get(future)
        assert not_yet.status_code == 403 and "Request is not valid yet" in not_yet.text


def test_query_and_header_auth_in_one_request(served: Endpoint, bucket: str) -> None:
    url = served.client().generate_presigned_url(
        "get_object", Params={"Bucket": bucket, "Key": "obj ü+%.txt"}
    )
    with served.http() as http:
        both = http.get(url, headers={"Authorization": f"AWS {KEY}:c2lnbmF0dXJl"})
        assert both.status_code == 400 and "<Code>InvalidArgument</Code>" in both.text
        v4 = http.get(url + "&X-Amz-Algorithm=AWS4-HMAC-SHA256")
        assert v4.status_code == 400 and "Only one auth mechanism allowed" in v4.text


def test_malformed_sigv2_header(served: Endpoint, bucket: str) -> None:
    with served.http() as http:
        response = http.put(
            f"{served.url}/{bucket}/x",
            content=b"bar",
            headers={"Authorization": "AWS HAHAHA", "Date": "Thu, 01 Jan 2026 00:00:00 GMT"},
        )
    assert response.status_code == 400 and "<Code>InvalidArgument</Code>" in response.text


# --- POST Object signed with SigV2 (boto3's generate_presigned_post default) ----------


def test_boto3_default_post_policy_uploads(served: Endpoint, bucket: str) -> None:
    form = served.client().generate_presigned_post(
        bucket, "forms/${filename}", Conditions=[["starts-with", "$key", "forms/"]]
    )
    assert "signature" in form["fields"] and "x-amz-signature" not in form["fields"]
    with served.http() as http:
        response = http.post(form["url"], data=form["fields"], files={"file": ("f.txt", b"form")})
        assert response.status_code == 204, response.text
        forged = {**form["fields"], "signature": "c2lnbmF0dXJl"}
        refused = http.post(form["url"], data=forged, files={"file": ("g.txt", b"no")})
        assert refused.status_code == 403 and "SignatureDoesNotMatch" in refused.text
    s3 = served.v2()
    assert s3.get_object(Bucket=bucket, Key="forms/f.txt")["Body"].read() == b"form"
    with pytest.raises(ClientError):
        s3.head_object(Bucket=bucket, Key="forms/g.txt")


def test_bucket_policy_can_deny_sigv2(served: Endpoint, bucket: str) -> None:
    """s3:signatureversion and s3:authType in a bucket policy, as AWS documents them."""
    deny = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Deny",
                "Principal": "*",
                "Action": "s3:GetObject",
                "Resource": f"arn:aws:s3:::{bucket}/*",
                "Condition": {"StringEquals": {"s3:signatureversion": "AWS"}},
            },
            {
                "Effect": "Deny",
                "Principal": "*",
                "Action": "s3:PutObject",
                "Resource": f"arn:aws:s3:::{bucket}/*",
                "Condition": {"StringEquals": {"s3:authType": "POST"}},
            },
        ],
    }
    s3v4 = served.client(signature_version="s3v4")
    s3v4.put_bucket_policy(Bucket=bucket, Policy=json.dumps(deny))
    key = "obj ü+%.txt"
    with pytest.raises(ClientError) as info:
        served.v2().get_object(Bucket=bucket, Key=key)
    assert error_code(info.value) == "AccessDenied"
    assert s3v4.get_object(Bucket=bucket, Key=key)["Body"].read() == b"hello sigv2"
    v2_url = served.client().generate_presigned_url(
        "get_object", Params={"Bucket": bucket, "Key": key}
    )
    form = s3v4.generate_presigned_post(bucket, "posted")
    with served.http() as http:
        assert http.get(v2_url).status_code == 403
        posted = http.post(form["url"], data=form["fields"], files={"file": ("f", b"x")})
        assert posted.status_code == 403, posted.text
    served.v2().put_object(Bucket=bucket, Key="put-v2", Body=b"allowed")  # not denied
    s3v4.delete_bucket_policy(Bucket=bucket)


# --- other SigV2 signers: s3cmd (signature_v2) and rclone (v2_auth) -------------------


@pytest.mark.skipif(not shutil.which("s3cmd"), reason="s3cmd not installed")
def test_s3cmd_signature_v2(served: Endpoint, tmp_path: Path) -> None:
    address = urlsplit(served.url).netloc
    https = isinstance(served.verify, str)
    config = tmp_path / "s3cfg"
    config.write_text(
        "[default]\n"
        f"access_key = {KEY}\nsecret_key = {SECRET}\n"
        f"host_base = {address}\nhost_bucket = {address}\n"
        f"use_https = {https}\nsignature_v2 = True\n"
        + (f"ca_certs_file = {served.verify}\n" if https else "")
    )
    source = tmp_path / "f.txt"
    source.write_bytes(b"hello s3cmd")

    def s3cmd(*args: str) -> str:
        argv = ["s3cmd", "-c", str(config), *args]
        return subprocess.run(argv, capture_output=True, text=True, check=True, timeout=60).stdout

    name, key = f"s3cmd-{time.monotonic_ns()}", "dir/a b+ü.txt"
    s3cmd("mb", f"s3://{name}")
    s3cmd("put", str(source), f"s3://{name}/{key}")
    assert f"s3://{name}/{key}" in s3cmd("ls", "-r", f"s3://{name}")
    s3cmd("get", f"s3://{name}/{key}", str(tmp_path / "g.txt"))
    assert (tmp_path / "g.txt").read_bytes() == b"hello s3cmd"
    url = s3cmd("signurl", f"s3://{name}/{key}", "+600").strip()
    if https:  # s3cmd writes http:// whatever use_https says; the scheme is not signed
        url = url.replace("http://", "https://", 1)
    with served.http() as http:
        assert http.get(url).content == b"hello s3cmd"
    s3cmd("del", f"s3://{name}/{key}")
    s3cmd("rb", f"s3://{name}")


@pytest.mark.skipif(not shutil.which("rclone"), reason="rclone not installed")
def test_rclone_v2_auth(served: Endpoint, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "AWS_CA_BUNDLE"}
    env |= {
        "RCLONE_CONFIG_V2_TYPE": "s3",
        "RCLONE_CONFIG_V2_PROVIDER": "Other",
        "RCLONE_CONFIG_V2_ACCESS_KEY_ID": KEY,
        "RCLONE_CONFIG_V2_SECRET_ACCESS_KEY": SECRET,
        "RCLONE_CONFIG_V2_ENDPOINT": served.url,
        "RCLONE_CONFIG_V2_V2_AUTH": "true",
        "RCLONE_CONFIG_V2_FORCE_PATH_STYLE": "true",
    }
    tls = ["--ca-cert", served.verify] if isinstance(served.verify, str) else []

    def rclone(*args: str) -> str:
        argv = ["rclone", "--config", "/dev/null", *tls, *args]
        done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0 and "ERROR" not in done.stderr, done.stderr
        return done.stdout

    big = tmp_path / "big"
    big.write_bytes(os.urandom(11 * 1024 * 1024))
    name = f"rclone-{time.monotonic_ns()}"
    rclone("mkdir", f"v2:{name}")  # reads the versioning status: ?versioning= signed bare
    chunks = ["--s3-upload-cutoff", "5M", "--s3-chunk-size", "5M"]
    rclone("copyto", *chunks, str(big), f"v2:{name}/x y+é")
    assert rclone("ls", f"v2:{name}").split() == [str(big.stat().st_size), "x", "y+é"]
    assert served.v2().head_object(Bucket=name, Key="x y+é")["ETag"].endswith('-3"')
    rclone("purge", f"v2:{name}")


# --- auth.sigv2 = false ---------------------------------------------------------------


def test_sigv2_off_refuses_sigv2_and_serves_sigv4(strict: Endpoint) -> None:
    s3v4 = signed_client(strict.url, KEY, SECRET)
    s3v4.create_bucket(Bucket="strict")
    s3v4.put_object(Bucket="strict", Key="k", Body=b"v4 only")
    with pytest.raises(ClientError) as info:
        strict.v2().get_object(Bucket="strict", Key="k")
    assert error_code(info.value) == "InvalidRequest"
    assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    url = strict.client().generate_presigned_url(
        "get_object", Params={"Bucket": "strict", "Key": "k"}
    )
    form = strict.client().generate_presigned_post("strict", "posted")
    with strict.http() as http:
        refused = http.get(url)
        assert refused.status_code == 400 and "AWS4-HMAC-SHA256" in refused.text
        posted = http.post(form["url"], data=form["fields"], files={"file": ("f", b"x")})
        assert posted.status_code == 400 and "<Code>InvalidRequest</Code>" in posted.text
        v4_url = s3v4.generate_presigned_url("get_object", Params={"Bucket": "strict", "Key": "k"})
        assert http.get(v4_url).content == b"v4 only"
    assert s3v4.get_object(Bucket="strict", Key="k")["Body"].read() == b"v4 only"
    with pytest.raises(ClientError):
        s3v4.head_object(Bucket="strict", Key="posted")
