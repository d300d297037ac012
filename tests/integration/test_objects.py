"""Object operations through boto3: bodies, metadata, ranges, conditions, checksums, copies."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import os
import zlib

import pytest
from botocore.exceptions import ClientError

from tests.integration.conftest import error_code

ODD_KEYS = [
    "plain.txt",
    "ünïcödé/日本語/ключ",
    "a/../b",
    "../escape",
    "./dot",
    "a/./b",
    "..",
    ".",
    "a//b",
    "//lead",
    "trail/",
    "x" * 300 + "/y",
    "seg/" + "é" * 200,
    "xml &<>\"' chars",
    "sp ace+plus%percent",
    "tab\tand\u00a0nbsp",
    "k" * 1024,
    "name._storage_object",
    "name._storage_object.metadata.json",
]


def test_put_get_roundtrip_and_md5_etag(any_s3, bucket):
    body = os.urandom(100_000)
    put = any_s3.put_object(Bucket=bucket, Key="obj", Body=body)
    assert put["ETag"] == f'"{hashlib.md5(body).hexdigest()}"'
    got = any_s3.get_object(Bucket=bucket, Key="obj")
    assert got["Body"].read() == body
    assert got["ETag"] == put["ETag"]
    assert got["ContentLength"] == len(body)
    assert "x-amz-request-id" in got["ResponseMetadata"]["HTTPHeaders"]


@pytest.mark.parametrize("key", ODD_KEYS)
def test_odd_keys_roundtrip(s3, bucket, key):
    s3.put_object(Bucket=bucket, Key=key, Body=key.encode())
    assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == key.encode()
    listed = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]
    assert listed == [key]
    s3.delete_object(Bucket=bucket, Key=key)
    assert s3.list_objects_v2(Bucket=bucket)["KeyCount"] == 0


def test_odd_keys_coexist_and_list_sorted(s3, bucket):
    for key in ODD_KEYS:
        s3.put_object(Bucket=bucket, Key=key, Body=key.encode())
    listed = [
        o["Key"]
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, MaxKeys=4)
        for o in page.get("Contents", [])
    ]
    assert listed == sorted(ODD_KEYS)
    for key in ODD_KEYS:
        assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == key.encode()


def test_key_too_long(s3, bucket):
    with pytest.raises(ClientError) as info:
        s3.put_object(Bucket=bucket, Key="k" * 1025, Body=b"x")
    assert error_code(info.value) == "KeyTooLongError"


def test_metadata_and_stored_headers(s3, bucket):
    s3.put_object(
        Bucket=bucket,
        Key="m",
        Body=b"data",
        ContentType="text/plain",
        CacheControl="max-age=60",
        ContentDisposition='attachment; filename="m.txt"',
        ContentLanguage="en",
        Metadata={"color": "blue", "Mixed-Case": "Value"},
    )
    head = s3.head_object(Bucket=bucket, Key="m")
    assert head["ContentType"] == "text/plain"
    assert head["CacheControl"] == "max-age=60"
    assert head["ContentDisposition"] == 'attachment; filename="m.txt"'
    assert head["ContentLanguage"] == "en"
    assert head["Metadata"] == {"color": "blue", "mixed-case": "Value"}
    assert head["ContentLength"] == 4
    assert head["AcceptRanges"] == "bytes"


def test_reserved_headers_never_stored(http, s3, bucket):
    response = http.put(
        f"/{bucket}/r",
        content=b"abc",
        headers={
            # (SSE headers are not reserved: a bad one is refused, see test_sse.py)
            "x-amz-version-id": "forged",
            "x-amz-mp-parts-count": "9",
        },
    )
    assert response.status_code == 200
    head = http.head(f"/{bucket}/r")
    assert "x-amz-version-id" not in head.headers
    assert "x-amz-mp-parts-count" not in head.headers
    assert not any(h.startswith("x-amz-server-side") for h in head.headers)


def test_metadata_too_large(s3, bucket):
    with pytest.raises(ClientError) as info:
        s3.put_object(Bucket=bucket, Key="big", Body=b"", Metadata={"a": "x" * 2100})
    assert error_code(info.value) == "MetadataTooLarge"


def test_missing_key_and_bucket(s3, bucket):
    with pytest.raises(ClientError) as info:
        s3.get_object(Bucket=bucket, Key="nope")
    assert error_code(info.value) == "NoSuchKey"
    with pytest.raises(ClientError) as info:
        s3.head_object(Bucket=bucket, Key="nope")
    assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    with pytest.raises(ClientError) as info:
        s3.put_object(Bucket="no-such-bucket-here", Key="k", Body=b"x")
    assert error_code(info.value) == "NoSuchBucket"


def test_error_document_shape(http, bucket):
    response = http.get(f"/{bucket}/missing")
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/xml"
    text = response.text
    assert "<Code>NoSuchKey</Code>" in text and "<RequestId>" in text
    assert response.headers["x-amz-request-id"] in text
    head = http.head(f"/{bucket}/missing")
    assert head.status_code == 404 and head.content == b""


def test_delete_is_idempotent(s3, bucket):
    s3.put_object(Bucket=bucket, Key="d", Body=b"1")
    assert s3.delete_object(Bucket=bucket, Key="d")["ResponseMetadata"]["HTTPStatusCode"] == 204
    assert s3.delete_object(Bucket=bucket, Key="d")["ResponseMetadata"]["HTTPStatusCode"] == 204


def test_empty_object(s3, bucket):
    s3.put_object(Bucket=bucket, Key="empty", Body=b"")
    got = s3.get_object(Bucket=bucket, Key="empty")
    assert got["Body"].read() == b""
    assert got["ETag"] == f'"{hashlib.md5(b"").hexdigest()}"'


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("bytes=0-9", (0, 9)),
        ("bytes=10-", (10, 999_999)),
        ("bytes=-100", (999_900, 999_999)),
        ("bytes=999990-2000000", (999_990, 999_999)),
        ("bytes=500000-500000", (500_000, 500_000)),
    ],
)
def test_range_reads(s3, bucket, header, expected):
    body = os.urandom(1_000_000)
    s3.put_object(Bucket=bucket, Key="r", Body=body)
    got = s3.get_object(Bucket=bucket, Key="r", Range=header)
    start, end = expected
    assert got["Body"].read() == body[start : end + 1]
    assert got["ContentRange"] == f"bytes {start}-{end}/{len(body)}"
    assert got["ResponseMetadata"]["HTTPStatusCode"] == 206


def test_invalid_range(s3, http, bucket):
    s3.put_object(Bucket=bucket, Key="r", Body=b"0123456789")
    with pytest.raises(ClientError) as info:
        s3.get_object(Bucket=bucket, Key="r", Range="bytes=10-20")
    assert error_code(info.value) == "InvalidRange"
    # Malformed ranges are ignored, as S3 does: the whole object comes back.
    response = http.get(f"/{bucket}/r", headers={"Range": "bytes=abc"})
    assert response.status_code == 200 and response.content == b"0123456789"


def test_conditional_get_and_head(s3, bucket):
    put = s3.put_object(Bucket=bucket, Key="c", Body=b"hello")
    etag = put["ETag"]
    assert s3.get_object(Bucket=bucket, Key="c", IfMatch=etag)["Body"].read() == b"hello"
    with pytest.raises(ClientError) as info:
        s3.get_object(Bucket=bucket, Key="c", IfMatch='"0000"')
    assert error_code(info.value) == "PreconditionFailed"
    with pytest.raises(ClientError) as info:
        s3.get_object(Bucket=bucket, Key="c", IfNoneMatch=etag)
    assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 304
    past = dt.datetime.now(dt.UTC) - dt.timedelta(days=1)
    modified = s3.head_object(Bucket=bucket, Key="c")["LastModified"]
    with pytest.raises(ClientError) as info:
        s3.head_object(Bucket=bucket, Key="c", IfModifiedSince=modified)
    assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 304
    assert s3.head_object(Bucket=bucket, Key="c", IfModifiedSince=past)["ETag"] == etag
    with pytest.raises(ClientError) as info:
        s3.get_object(Bucket=bucket, Key="c", IfUnmodifiedSince=past)
    assert error_code(info.value) == "PreconditionFailed"
    # If-Match that holds wins over a failing If-Unmodified-Since (RFC 7232, as S3).
    assert s3.get_object(Bucket=bucket, Key="c", IfMatch=etag, IfUnmodifiedSince=past)


def test_conditional_put(s3, bucket):
    first = s3.put_object(Bucket=bucket, Key="lock", Body=b"one", IfNoneMatch="*")
    with pytest.raises(ClientError) as info:
        s3.put_object(Bucket=bucket, Key="lock", Body=b"two", IfNoneMatch="*")
    assert error_code(info.value) == "PreconditionFailed"
    with pytest.raises(ClientError) as info:
        s3.put_object(Bucket=bucket, Key="lock", Body=b"two", IfMatch='"deadbeef"')
    assert error_code(info.value) == "PreconditionFailed"
    assert s3.get_object(Bucket=bucket, Key="lock")["Body"].read() == b"one"
    s3.put_object(Bucket=bucket, Key="lock", Body=b"three", IfMatch=first["ETag"])
    assert s3.get_object(Bucket=bucket, Key="lock")["Body"].read() == b"three"
    with pytest.raises(ClientError) as info:
        s3.put_object(Bucket=bucket, Key="absent", Body=b"x", IfMatch=first["ETag"])
    assert error_code(info.value) == "NoSuchKey"


def test_response_overrides(s3, bucket):
    s3.put_object(Bucket=bucket, Key="o", Body=b"x", ContentType="text/plain")
    got = s3.get_object(
        Bucket=bucket,
        Key="o",
        ResponseContentType="application/json",
        ResponseContentDisposition="inline",
        ResponseCacheControl="no-cache",
        ResponseContentLanguage="de",
        ResponseContentEncoding="identity",
    )
    assert got["ContentType"] == "application/json"
    assert got["ContentDisposition"] == "inline"
    assert got["CacheControl"] == "no-cache"
    assert got["ContentLanguage"] == "de"
    assert got["ContentEncoding"] == "identity"


def test_content_md5(s3_required, bucket):
    s3 = s3_required
    body = b"payload"
    good = base64.b64encode(hashlib.md5(body).digest()).decode()
    s3.put_object(Bucket=bucket, Key="md5", Body=body, ContentMD5=good)
    bad = base64.b64encode(hashlib.md5(b"other").digest()).decode()
    with pytest.raises(ClientError) as info:
        s3.put_object(Bucket=bucket, Key="md5", Body=b"changed", ContentMD5=bad)
    assert error_code(info.value) == "BadDigest"
    with pytest.raises(ClientError) as info:
        s3.put_object(Bucket=bucket, Key="md5", Body=b"changed", ContentMD5="not-base64!")
    assert error_code(info.value) == "InvalidDigest"
    assert s3.get_object(Bucket=bucket, Key="md5")["Body"].read() == body


@pytest.mark.parametrize("algorithm", ["CRC32", "CRC32C", "CRC64NVME", "SHA1", "SHA256"])
def test_checksums_stored_and_returned(s3, http, bucket, algorithm):
    body = os.urandom(70_000)
    put = s3.put_object(Bucket=bucket, Key="ck", Body=body, ChecksumAlgorithm=algorithm)
    value = put[f"Checksum{algorithm}"]
    got = s3.get_object(Bucket=bucket, Key="ck", ChecksumMode="ENABLED")
    assert got["Body"].read() == body
    assert got[f"Checksum{algorithm}"] == value
    if algorithm == "CRC32":
        assert value == base64.b64encode(zlib.crc32(body).to_bytes(4, "big")).decode()
    if algorithm == "SHA256":
        assert value == base64.b64encode(hashlib.sha256(body).digest()).decode()
    head = s3.head_object(Bucket=bucket, Key="ck", ChecksumMode="ENABLED")
    assert head[f"Checksum{algorithm}"] == value
    ranged = s3.get_object(Bucket=bucket, Key="ck", Range="bytes=0-9", ChecksumMode="ENABLED")
    assert f"Checksum{algorithm}" not in ranged
    # Only asked-for checksums are returned (boto3 asks by default, so ask over raw HTTP).
    assert "x-amz-checksum-" + algorithm.lower() not in http.get(f"/{bucket}/ck").headers


def test_default_checksum_is_crc64nvme(s3_required, bucket):
    s3_required.put_object(Bucket=bucket, Key="d", Body=b"abc")
    head = s3_required.head_object(Bucket=bucket, Key="d", ChecksumMode="ENABLED")
    assert "ChecksumCRC64NVME" in head


def test_checksum_mismatch_keeps_old_object(http, s3, bucket):
    s3.put_object(Bucket=bucket, Key="keep", Body=b"old")
    wrong = base64.b64encode(zlib.crc32(b"something else").to_bytes(4, "big")).decode()
    response = http.put(f"/{bucket}/keep", content=b"new", headers={"x-amz-checksum-crc32": wrong})
    assert response.status_code == 400 and "<Code>BadDigest</Code>" in response.text
    assert s3.get_object(Bucket=bucket, Key="keep")["Body"].read() == b"old"


def test_aws_chunked_body_is_decoded(http, s3, bucket):
    data = b"hello chunked world"
    crc = base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode()
    framed = (
        f"{len(data):x}\r\n".encode()
        + data
        + b"\r\n0\r\n"
        + f"x-amz-checksum-crc32:{crc}\r\n\r\n".encode()
    )
    headers = {
        "content-encoding": "aws-chunked",
        "x-amz-content-sha256": "STREAMING-UNSIGNED-PAYLOAD-TRAILER",
        "x-amz-decoded-content-length": str(len(data)),
        "x-amz-trailer": "x-amz-checksum-crc32",
    }
    assert http.put(f"/{bucket}/ch", content=framed, headers=headers).status_code == 200
    got = s3.get_object(Bucket=bucket, Key="ch", ChecksumMode="ENABLED")
    assert got["Body"].read() == data
    assert got["ChecksumCRC32"] == crc
    assert "ContentEncoding" not in got
    bad = framed.replace(crc.encode(), b"AAAAAA==")
    response = http.put(f"/{bucket}/ch", content=bad, headers=headers)
    assert response.status_code == 400 and "BadDigest" in response.text
    short = dict(headers, **{"x-amz-decoded-content-length": "5"})
    assert http.put(f"/{bucket}/ch", content=framed, headers=short).status_code == 400
    assert s3.get_object(Bucket=bucket, Key="ch")["Body"].read() == data


def test_content_sha256_values(http, s3, bucket):
    body = b"sha body"
    good = hashlib.sha256(body).hexdigest()
    assert (
        http.put(f"/{bucket}/s", content=body, headers={"x-amz-content-sha256": good}).status_code
        == 200
    )
    bad = hashlib.sha256(b"x").hexdigest()
    response = http.put(f"/{bucket}/s", content=b"other", headers={"x-amz-content-sha256": bad})
    assert "XAmzContentSHA256Mismatch" in response.text
    response = http.put(f"/{bucket}/s", content=b"other", headers={"x-amz-content-sha256": "BOGUS"})
    assert response.status_code == 400 and "InvalidArgument" in response.text
    assert s3.get_object(Bucket=bucket, Key="s")["Body"].read() == body


def test_copy_object_directives(s3, bucket):
    s3.put_object(
        Bucket=bucket, Key="src", Body=b"copy me", ContentType="text/x", Metadata={"a": "1"}
    )
    copied = s3.copy_object(Bucket=bucket, Key="dst", CopySource={"Bucket": bucket, "Key": "src"})
    assert copied["CopyObjectResult"]["ETag"] == f'"{hashlib.md5(b"copy me").hexdigest()}"'
    head = s3.head_object(Bucket=bucket, Key="dst")
    assert head["Metadata"] == {"a": "1"} and head["ContentType"] == "text/x"
    s3.copy_object(
        Bucket=bucket,
        Key="dst2",
        CopySource=f"{bucket}/src",
        MetadataDirective="REPLACE",
        Metadata={"b": "2"},
        ContentType="text/y",
    )
    head = s3.head_object(Bucket=bucket, Key="dst2")
    assert head["Metadata"] == {"b": "2"} and head["ContentType"] == "text/y"
    with pytest.raises(ClientError) as info:
        s3.copy_object(Bucket=bucket, Key="src", CopySource={"Bucket": bucket, "Key": "src"})
    assert error_code(info.value) == "InvalidRequest"
    s3.copy_object(
        Bucket=bucket,
        Key="src",
        CopySource={"Bucket": bucket, "Key": "src"},
        MetadataDirective="REPLACE",
        Metadata={"c": "3"},
    )
    assert s3.head_object(Bucket=bucket, Key="src")["Metadata"] == {"c": "3"}
    assert s3.get_object(Bucket=bucket, Key="src")["Body"].read() == b"copy me"


def test_copy_source_conditions_and_errors(s3, bucket):
    put = s3.put_object(Bucket=bucket, Key="src", Body=b"x")
    s3.copy_object(
        Bucket=bucket, Key="d1", CopySource=f"{bucket}/src", CopySourceIfMatch=put["ETag"]
    )
    for kwargs in ({"CopySourceIfMatch": '"nope"'}, {"CopySourceIfNoneMatch": put["ETag"]}):
        with pytest.raises(ClientError) as info:
            s3.copy_object(Bucket=bucket, Key="d2", CopySource=f"{bucket}/src", **kwargs)
        assert error_code(info.value) == "PreconditionFailed"
    with pytest.raises(ClientError) as info:
        s3.copy_object(Bucket=bucket, Key="d3", CopySource=f"{bucket}/missing")
    assert error_code(info.value) == "NoSuchKey"
    with pytest.raises(ClientError) as info:
        s3.copy_object(Bucket=bucket, Key="d3", CopySource=f"{bucket}/src", MetadataDirective="BAD")
    assert error_code(info.value) == "InvalidArgument"


def test_copy_odd_key_names(s3, bucket):
    key = "dir with space/ü+%&.txt"
    s3.put_object(Bucket=bucket, Key=key, Body=b"odd")
    s3.copy_object(Bucket=bucket, Key="copy/" + key, CopySource={"Bucket": bucket, "Key": key})
    assert s3.get_object(Bucket=bucket, Key="copy/" + key)["Body"].read() == b"odd"


def test_delete_objects(any_s3, bucket):
    keys = [f"del/{i}" for i in range(20)] + ["keep"]
    for key in keys:
        any_s3.put_object(Bucket=bucket, Key=key, Body=b"x")
    result = any_s3.delete_objects(
        Bucket=bucket,
        Delete={"Objects": [{"Key": k} for k in keys[:20]] + [{"Key": "never-existed"}]},
    )
    assert sorted(d["Key"] for d in result["Deleted"]) == sorted([*keys[:20], "never-existed"])
    assert [o["Key"] for o in any_s3.list_objects_v2(Bucket=bucket)["Contents"]] == ["keep"]
    quiet = any_s3.delete_objects(
        Bucket=bucket, Delete={"Objects": [{"Key": "keep"}], "Quiet": True}
    )
    assert "Deleted" not in quiet
