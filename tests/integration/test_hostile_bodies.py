"""Hostile request bodies against a real server, auth on and off, standalone and erasure:
aws-chunked framing that once hung the whole server (a negative chunk size spun the event
loop at 100% CPU) or was stored anyway, undecodable Content-MD5 values, XML declaring an
unknown encoding, and bodies read before the caller was authorized. Every one is a 4xx
S3 error, stores nothing, and the server keeps answering other clients.

The servers run as child processes (a spinning event loop must not take the test process
with it); `raw` and `http` from conftest talk to them through the `endpoint` below.
"""

from __future__ import annotations

import base64
import hashlib
import json
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from botocore.exceptions import ClientError

from shoal.auth.signer import signed_headers
from shoal.auth.sigv4 import STREAMING_PAYLOAD, STREAMING_UNSIGNED_TRAILER
from tests.integration.conftest import auth_config, erasure_config, error_code, signed_client
from tests.integration.serving import Proc
from tests.unit.test_fuzz_chunked import ChunkSigner, frame

KEY, SECRET = "AKIDHOSTILE", "hostile-secret"
CANARY = b"canary: must survive every request here"
NEGATIVE = b"-5\r\nabc\r\n0\r\n\r\n"
DELETE_XML = b"<Delete><Object><Key>canary</Key></Object></Delete>"
BOGUS_XML = b'<?xml version="1.0" encoding="bogus"?>' + DELETE_XML


@dataclass
class Server:
    proc: Proc
    url: str
    auth: bool
    s3: Any

    @property
    def host(self) -> str:
        return urlsplit(self.url).netloc


@pytest.fixture(scope="module", params=["files", "erasure", "files-auth", "erasure-auth"])
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp(request.param)
    settings: dict[str, Any] = {}
    if request.param.startswith("erasure"):
        settings |= erasure_config(tmp / "drives")
    if request.param.endswith("auth"):
        settings |= auth_config((KEY, SECRET))
    proc = Proc(tmp, settings=settings)
    try:
        yield Server(proc, proc.url, "auth" in request.param, signed_client(proc.url, KEY, SECRET))
    finally:
        proc.kill()


@pytest.fixture(scope="module")
def endpoint(server: Server) -> str:
    """conftest's `raw` and `http` fixtures talk to this module's server."""
    return server.url


@pytest.fixture(scope="module")
def verify() -> bool:
    return True  # plain HTTP: the framing under test is the same over TLS


@pytest.fixture
def bucket(server: Server) -> Iterator[str]:
    """A bucket holding only `canary`; afterwards it must still hold exactly that."""
    name = f"hostile-{uuid.uuid4().hex[:16]}"
    server.s3.create_bucket(Bucket=name)
    server.s3.put_object(Bucket=name, Key="canary", Body=CANARY)
    yield name
    assert_untouched(server, name)
    server.s3.delete_object(Bucket=name, Key="canary")
    for upload in server.s3.list_multipart_uploads(Bucket=name).get("Uploads", []):
        server.s3.abort_multipart_upload(
            Bucket=name, Key=upload["Key"], UploadId=upload["UploadId"]
        )
    server.s3.delete_bucket(Bucket=name)


def assert_untouched(server: Server, bucket: str) -> None:
    listed = server.s3.list_objects_v2(Bucket=bucket).get("Contents", [])
    assert [o["Key"] for o in listed] == ["canary"]
    assert server.s3.get_object(Bucket=bucket, Key="canary")["Body"].read() == CANARY


@dataclass
class Reply:
    status: int
    text: str

    def code(self) -> str:
        return (
            self.text.split("<Code>", 1)[1].split("</Code>", 1)[0] if "<Code>" in self.text else ""
        )


def send(
    raw: Callable[..., str],
    method: str,
    target: str,
    headers: dict[str, str],
    body: bytes = b"",
    *,
    length: int | None = None,
) -> Reply:
    """One request on its own connection (headers as given, Host filled in by `raw`)."""
    lines = [f"{method} {target} HTTP/1.1", "Host: {host}"]
    lines += [f"{k}: {v}" for k, v in headers.items() if k.lower() != "host"]
    lines += [f"Content-Length: {len(body) if length is None else length}", "Connection: close"]
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8")
    reply = raw(head + body)
    status_line, _, rest = reply.partition("\r\n")
    assert status_line.startswith("HTTP/1.1 "), reply[:200]
    # Skip an interim 100 Continue to the final answer.
    while status_line.startswith("HTTP/1.1 100"):
        status_line, _, rest = rest.split("\r\n\r\n", 1)[1].partition("\r\n")
    return Reply(int(status_line.split(" ", 2)[1]), rest)


def signed(
    server: Server,
    method: str,
    path: str,
    query: str = "",
    payload_hash: str = "UNSIGNED-PAYLOAD",
    **extra: str,
) -> dict[str, str]:
    headers = {k.replace("_", "-"): v for k, v in extra.items()}
    return signed_headers(
        method,
        path,
        server.host,
        KEY,
        SECRET,
        "us-east-1",
        query=query,
        payload_hash=payload_hash,
        extra=headers,
    )


def md5(body: bytes) -> str:
    return base64.b64encode(hashlib.md5(body).digest()).decode()


def chunked_headers(decoded: int | str) -> dict[str, str]:
    return {"content-encoding": "aws-chunked", "x-amz-decoded-content-length": str(decoded)}


def still_serving(server: Server, bucket: str) -> None:
    """Another client is answered (the hostile request did not take the event loop)."""
    assert_untouched(server, bucket)
    with httpx.Client(base_url=server.url, timeout=10) as other:
        assert other.get("/hostile-no-such-bucket").status_code in (403, 404)


# ----------------------------------------------------------------- negative chunk size


def _upload_id(server: Server, bucket: str) -> str:
    return server.s3.create_multipart_upload(Bucket=bucket, Key="canary")["UploadId"]


@pytest.mark.parametrize(
    "operation", ["PutObject", "UploadPart", "PutBucketPolicy", "PutBucketCors", "DeleteObjects"]
)
@pytest.mark.parametrize("who", ["anonymous", "signed-unsigned-chunks", "signed-chunks"])
def test_negative_chunk_size_is_refused_and_the_server_keeps_serving(
    raw, server: Server, bucket: str, operation: str, who: str
) -> None:
    method, path, query = {
        "PutObject": ("PUT", f"/{bucket}/canary", ""),
        "UploadPart": ("PUT", f"/{bucket}/canary", "partNumber=1&uploadId={upload}"),
        "PutBucketPolicy": ("PUT", f"/{bucket}", "policy="),
        "PutBucketCors": ("PUT", f"/{bucket}", "cors="),
        "DeleteObjects": ("POST", f"/{bucket}", "delete="),
    }[operation]
    if "{upload}" in query:
        query = query.format(upload=_upload_id(server, bucket))
    extra = {**chunked_headers(3), "content-md5": md5(b"abc")}
    mode = STREAMING_PAYLOAD if who == "signed-chunks" else STREAMING_UNSIGNED_TRAILER
    if who == "anonymous":
        headers = {**extra, "x-amz-content-sha256": mode}
    else:
        headers = signed(server, method, path, query, mode, **extra)
    reply = send(raw, method, f"{path}?{query}", headers, NEGATIVE)
    if who == "anonymous" and server.auth:
        assert (reply.status, reply.code()) == (403, "AccessDenied")
    else:
        assert (reply.status, reply.code()) == (400, "IncompleteBody"), reply.text
    still_serving(server, bucket)


# ----------------------------------------------- authorization before any body byte


@pytest.mark.parametrize(
    ("method", "query"),
    [
        ("POST", "delete="),
        ("PUT", "policy="),
        ("PUT", "cors="),
    ],
)
def test_anonymous_bodies_are_refused_before_they_are_read(
    raw, server: Server, bucket: str, method: str, query: str
) -> None:
    """With auth on an anonymous caller is refused without the body being invited: with
    Expect: 100-continue the answer is the 403, never a 100 Continue."""
    if not server.auth:
        pytest.skip("auth off: every caller may send a body")
    headers = {"content-md5": md5(DELETE_XML), "expect": "100-continue"}
    reply = raw(
        (
            f"{method} /{bucket}?{query} HTTP/1.1\r\nHost: {{host}}\r\nContent-Length: 100\r\n"
            + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
            + "Connection: close\r\n\r\n"
        ).encode()
    )
    assert reply.startswith("HTTP/1.1 403") and "<Code>AccessDenied</Code>" in reply
    assert "100 Continue" not in reply


def test_anonymous_delete_objects_with_a_policy_still_checks_each_key(
    raw, server: Server, bucket: str
) -> None:
    """A policy letting anyone delete under public/ admits the body; other keys are
    still refused one by one, and the body is parsed only once admitted."""
    if not server.auth:
        pytest.skip("auth off: no policy applies")
    server.s3.put_object(Bucket=bucket, Key="public/x", Body=b"x")
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": "*",
                "Action": "s3:DeleteObject",
                "Resource": f"arn:aws:s3:::{bucket}/public/*",
            }
        ],
    }
    server.s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps(policy))
    try:
        keys = ("public/x", "canary")
        body = b"<Delete>%s</Delete>" % b"".join(
            b"<Object><Key>%s</Key></Object>" % k.encode() for k in keys
        )
        reply = send(raw, "POST", f"/{bucket}?delete=", {"content-md5": md5(body)}, body)
        assert reply.status == 200
        assert "<Deleted><Key>public/x</Key>" in reply.text
        assert "<Error><Key>canary</Key><Code>AccessDenied</Code>" in reply.text
        bogus = {"content-md5": md5(BOGUS_XML)}
        reply = send(raw, "POST", f"/{bucket}?delete=", bogus, BOGUS_XML)
        assert (reply.status, reply.code()) == (400, "MalformedXML")
    finally:
        server.s3.delete_bucket_policy(Bucket=bucket)


# ------------------------------------------------------------------------ XML bodies


@pytest.mark.parametrize("who", ["anonymous", "signed"])
@pytest.mark.parametrize("encoding", ["bogus", "rot13", "zlib"])
def test_xml_declaring_an_unknown_encoding_is_malformed(
    raw, server: Server, bucket: str, who: str, encoding: str
) -> None:
    body = BOGUS_XML.replace(b"bogus", encoding.encode())
    headers = {"content-md5": md5(body)}
    if who == "signed":
        headers = signed(server, "POST", f"/{bucket}", "delete=", **headers)
    reply = send(raw, "POST", f"/{bucket}?delete=", headers, body)
    if who == "anonymous" and server.auth:
        assert (reply.status, reply.code()) == (403, "AccessDenied")
    else:
        assert (reply.status, reply.code()) == (400, "MalformedXML"), reply.text
    still_serving(server, bucket)


@pytest.mark.parametrize(
    "body",
    [b"<Delete>" + b"<a>" * 600_000, b"<Delete>" + b"<a/>" * 400_000 + b"</Delete>"],
    ids=["nested", "flat"],
)
def test_huge_xml_is_refused_without_holding_the_server(
    raw, server: Server, bucket: str, body: bytes
) -> None:
    headers = signed(server, "POST", f"/{bucket}", "delete=", content_md5=md5(body))
    reply = send(raw, "POST", f"/{bucket}?delete=", headers, body)
    assert (reply.status, reply.code()) == (400, "MalformedXML"), reply.text
    still_serving(server, bucket)


# -------------------------------------------------------------------------- Content-MD5


@pytest.mark.parametrize("value", ["\xff\xff\xff\xff", "AAAA\xffAAAAAAAAAAAAAAAAAAA==", "%%%"])
@pytest.mark.parametrize("query", ["", "delete="])
def test_undecodable_content_md5_is_invalid_digest(
    raw, server: Server, bucket: str, value: str, query: str
) -> None:
    method, path = ("PUT", f"/{bucket}/canary") if not query else ("POST", f"/{bucket}")
    body = b"overwritten" if not query else DELETE_XML
    headers = signed(server, method, path, query)  # Content-MD5 itself left unsigned
    target = f"{path}?{query}" if query else path
    head = (
        (
            f"{method} {target} HTTP/1.1\r\nHost: {{host}}\r\n"
            + "".join(f"{k}: {v}\r\n" for k, v in headers.items() if k != "host")
            + f"Content-Length: {len(body)}\r\nConnection: close\r\n"
        ).encode()
        + b"Content-MD5: "
        + value.encode("latin-1")
        + b"\r\n\r\n"
    )
    reply = raw(head + body)
    assert reply.startswith("HTTP/1.1 400") and "<Code>InvalidDigest</Code>" in reply, reply
    still_serving(server, bucket)


# --------------------------------------------------------------- aws-chunked framing

FRAMINGS = {
    "5000-byte extension": (b"5;" + b"e" * 5000 + b"\r\nhello\r\n0\r\n\r\n", 5),
    "5000-byte chunk-signature": (
        b"5;chunk-signature=" + b"0" * 5000 + b"\r\nhello\r\n0\r\n\r\n",
        5,
    ),
    "data after the final chunk": (b"5\r\nhello\r\n0\r\n\r\nEXTRA DATA", 5),
    "a second body after the final chunk": (b"5\r\nhello\r\n0\r\n\r\n5\r\nhello\r\n0\r\n\r\n", 5),
    "data after the trailers": (
        b"5\r\nhello\r\n0\r\nx-amz-checksum-crc32:NhCmhg==\r\n\r\nEXTRA",
        5,
    ),
    "0x chunk size": (b"0x5\r\nhello\r\n0\r\n\r\n", 5),
    "+ chunk size": (b"+5\r\nhello\r\n0\r\n\r\n", 5),
    "spaced chunk size": (b" 5\r\nhello\r\n0\r\n\r\n", 5),
    "_ chunk size": (b"0_5\r\nhello\r\n0\r\n\r\n", 5),
    "17-digit chunk size": (b"0" * 16 + b"5\r\nhello\r\n0\r\n\r\n", 5),
    "chunks longer than declared": (b"6\r\nhello!\r\n0\r\n\r\n", 5),
    "chunks shorter than declared": (b"5\r\nhello\r\n0\r\n\r\n", 6),
    "chunk data longer than its size": (b"4\r\nhello\r\n0\r\n\r\n", 4),
    "endless chunk header": (b"5" + b"0" * 20000, 5),
}


def expected_code(case: str) -> str:
    """Bytes past the final chunk are S3's MalformedTrailerError; the rest IncompleteBody."""
    return "MalformedTrailerError" if "after the" in case else "IncompleteBody"


@pytest.mark.parametrize("case", list(FRAMINGS))
def test_malformed_framing_is_refused_and_nothing_stored(
    raw, server: Server, bucket: str, case: str
) -> None:
    body, decoded = FRAMINGS[case]
    for key in ("canary", "fresh"):
        headers = signed(
            server,
            "PUT",
            f"/{bucket}/{key}",
            "",
            STREAMING_UNSIGNED_TRAILER,
            **chunked_headers(decoded),
        )
        reply = send(raw, "PUT", f"/{bucket}/{key}", headers, body)
        assert (reply.status, reply.code()) == (400, expected_code(case)), (case, reply.text)
    still_serving(server, bucket)


@pytest.mark.parametrize("case", ["5000-byte extension", "data after the final chunk"])
def test_malformed_signed_chunks_are_refused(raw, server: Server, bucket: str, case: str) -> None:
    path = f"/{bucket}/canary"
    headers = signed(server, "PUT", path, "", STREAMING_PAYLOAD, **chunked_headers(5))
    body = frame([b"hello"], signer=ChunkSigner.for_request(headers, SECRET))
    if case == "data after the final chunk":
        body += b"EXTRA"
    else:
        header, rest = body.split(b"\r\n", 1)
        body = header + b";x=" + b"e" * 5000 + b"\r\n" + rest
    reply = send(raw, "PUT", path, headers, body)
    assert (reply.status, reply.code()) == (400, expected_code(case)), reply.text
    still_serving(server, bucket)


def test_well_formed_signed_chunks_still_store(raw, server: Server, bucket: str) -> None:
    """The bounds refuse nothing a real client sends (the control for the cases above)."""
    path = f"/{bucket}/fresh"
    headers = signed(server, "PUT", path, "", STREAMING_PAYLOAD, **chunked_headers(10))
    body = frame([b"hello", b"world"], signer=ChunkSigner.for_request(headers, SECRET))
    assert send(raw, "PUT", path, headers, body).status == 200
    assert server.s3.get_object(Bucket=bucket, Key="fresh")["Body"].read() == b"helloworld"
    server.s3.delete_object(Bucket=bucket, Key="fresh")


@pytest.mark.parametrize("value", ["²", "\u0665", "1" * 5000, "-5", "0x5", "+5", "5_0", "5 5"])
def test_decoded_content_length_is_ascii_digits_only(
    raw, server: Server, bucket: str, value: str
) -> None:
    """Unicode digits and 5,000-digit values once gave 500s; now S3's 400."""
    path = f"/{bucket}/canary"
    headers = signed(server, "PUT", path, "", STREAMING_UNSIGNED_TRAILER, **chunked_headers(value))
    reply = send(raw, "PUT", path, headers, b"5\r\nhello\r\n0\r\n\r\n")
    assert 400 <= reply.status < 500, reply.text
    if reply.status == 400:
        assert reply.code() == "InvalidArgument", reply.text
    still_serving(server, bucket)


def test_deeply_nested_policy_is_malformed(server: Server, bucket: str) -> None:
    """JSON nested 9,000 deep (under the 20 KiB policy limit) raised RecursionError: a 500."""
    policy = '{"Statement": ' + "[" * 9000 + "]" * 9000 + "}"
    with pytest.raises(ClientError) as info:
        server.s3.put_bucket_policy(Bucket=bucket, Policy=policy)
    assert error_code(info.value) == "MalformedPolicy"
    still_serving(server, bucket)
