"""GetObjectAttributes through boto3 in every mode (standalone and erasure-coded, HTTP
and HTTPS): a plain object, a multipart object with per-part SHA-256 checksums and its
ObjectParts paging, versions and delete markers, the IAM action, and the errors."""

from __future__ import annotations

import base64
import hashlib
import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from botocore.exceptions import ClientError
from hypothesis import given
from hypothesis import strategies as st

from shoal.app.errors import InvalidArgument
from shoal.app.handlers.attributes import ATTRIBUTES, parts_node, requested_attributes
from shoal.app.server import SyncServer
from shoal.storage.backend import ObjectMeta, PartInfo
from tests.integration.conftest import auth_config, error_code, multipart_put, signed_client
from tests.integration.test_cluster import make_nodes, running

ALL = ["ETag", "Checksum", "ObjectParts", "StorageClass", "ObjectSize"]
PART = 5 * 1024 * 1024


def _sha256(data: bytes) -> str:
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


def _headers(response: dict[str, Any]) -> dict[str, str]:
    return response["ResponseMetadata"]["HTTPHeaders"]


def _sha256_upload(s3: Any, bucket: str, key: str, pieces: list[bytes]) -> None:
    """A multipart upload whose every part carries its SHA-256 (ChecksumAlgorithm on
    create and on each part, as boto3 wants it)."""
    upload = s3.create_multipart_upload(Bucket=bucket, Key=key, ChecksumAlgorithm="SHA256")
    parts = []
    for number, piece in enumerate(pieces, start=1):
        done = s3.upload_part(
            Bucket=bucket,
            Key=key,
            UploadId=upload["UploadId"],
            PartNumber=number,
            Body=piece,
            ChecksumAlgorithm="SHA256",
        )
        parts.append(
            {"PartNumber": number, "ETag": done["ETag"], "ChecksumSHA256": done["ChecksumSHA256"]}
        )
    s3.complete_multipart_upload(
        Bucket=bucket, Key=key, UploadId=upload["UploadId"], MultipartUpload={"Parts": parts}
    )


def test_plain_object(s3: Any, bucket: str) -> None:
    body = b"attributes of a plain object"
    put = s3.put_object(Bucket=bucket, Key="plain", Body=body, ChecksumAlgorithm="SHA256")
    head = s3.head_object(Bucket=bucket, Key="plain")
    got = s3.get_object_attributes(Bucket=bucket, Key="plain", ObjectAttributes=ALL)
    assert got["ETag"] == put["ETag"].strip('"') == hashlib.md5(body).hexdigest()
    assert got["ObjectSize"] == len(body)
    assert got["StorageClass"] == "STANDARD"
    assert got["Checksum"]["ChecksumSHA256"] == _sha256(body)
    assert got["Checksum"]["ChecksumType"] == "FULL_OBJECT"
    assert "ObjectParts" not in got  # not a multipart object
    assert got["LastModified"] == head["LastModified"]
    assert "x-amz-version-id" not in _headers(got)  # never-versioned bucket


def test_only_the_attributes_asked_for(s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="k", Body=b"12345", StorageClass="STANDARD_IA")
    got = s3.get_object_attributes(Bucket=bucket, Key="k", ObjectAttributes=["StorageClass"])
    assert got["StorageClass"] == "STANDARD_IA"
    assert not {"ETag", "ObjectSize", "Checksum", "ObjectParts"} & set(got)
    got = s3.get_object_attributes(Bucket=bucket, Key="k", ObjectAttributes=["ObjectSize"])
    assert got["ObjectSize"] == 5 and "StorageClass" not in got


def test_multipart_object_parts_and_checksums(s3: Any, bucket: str) -> None:
    pieces = [bytes([65 + i]) * PART for i in range(3)] + [b"tail"]
    _sha256_upload(s3, bucket, "mp", pieces)
    head = s3.head_object(Bucket=bucket, Key="mp", ChecksumMode="ENABLED")
    got = s3.get_object_attributes(Bucket=bucket, Key="mp", ObjectAttributes=ALL)
    assert got["ETag"] == head["ETag"].strip('"') and got["ETag"].endswith("-4")
    assert got["ObjectSize"] == sum(map(len, pieces))
    assert got["Checksum"]["ChecksumSHA256"] == head["ChecksumSHA256"]
    assert got["Checksum"]["ChecksumType"] == "COMPOSITE"
    parts = got["ObjectParts"]
    assert parts["TotalPartsCount"] == 4 and parts["IsTruncated"] is False
    assert [p["PartNumber"] for p in parts["Parts"]] == [1, 2, 3, 4]
    assert [p["Size"] for p in parts["Parts"]] == [len(p) for p in pieces]
    assert [p["ChecksumSHA256"] for p in parts["Parts"]] == [_sha256(p) for p in pieces]

    seen: list[int] = []
    marker = 0
    for _ in range(4):
        page = s3.get_object_attributes(
            Bucket=bucket,
            Key="mp",
            ObjectAttributes=["ObjectParts"],
            MaxParts=3,
            PartNumberMarker=marker,
        )["ObjectParts"]
        assert page["MaxParts"] == 3 and page["TotalPartsCount"] == 4
        seen += [p["PartNumber"] for p in page["Parts"]]
        if not page["IsTruncated"]:
            break
        marker = int(page["NextPartNumberMarker"])
        assert marker == seen[-1]
    assert seen == [1, 2, 3, 4]
    past = s3.get_object_attributes(
        Bucket=bucket, Key="mp", ObjectAttributes=["ObjectParts"], PartNumberMarker=4
    )["ObjectParts"]
    assert past.get("Parts", []) == [] and past["IsTruncated"] is False


def test_multipart_without_checksums_counts_parts(s3_required: Any, bucket: str) -> None:
    # boto3 configured to send checksums only when required: the parts carry none
    # (S3 then lists no Part elements, only the count).
    multipart_put(s3_required, bucket, "plain-mp", [b"x" * PART, b"y"])
    got = s3_required.get_object_attributes(
        Bucket=bucket, Key="plain-mp", ObjectAttributes=["ObjectParts", "ETag"]
    )
    assert got["ObjectParts"]["TotalPartsCount"] == 2 and got["ETag"].endswith("-2")


def test_versions_and_delete_markers(s3: Any, bucket: str) -> None:
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    first = s3.put_object(Bucket=bucket, Key="v", Body=b"one")["VersionId"]
    s3.put_object(Bucket=bucket, Key="v", Body=b"second")
    current = s3.get_object_attributes(Bucket=bucket, Key="v", ObjectAttributes=["ObjectSize"])
    assert current["ObjectSize"] == 6 and current["VersionId"] != first
    old = s3.get_object_attributes(
        Bucket=bucket, Key="v", VersionId=first, ObjectAttributes=["ObjectSize", "ETag"]
    )
    assert old["ObjectSize"] == 3 and old["VersionId"] == first
    assert old["ETag"] == hashlib.md5(b"one").hexdigest()
    marker = s3.delete_object(Bucket=bucket, Key="v")["VersionId"]
    with pytest.raises(ClientError) as info:
        s3.get_object_attributes(Bucket=bucket, Key="v", ObjectAttributes=["ETag"])
    assert error_code(info.value) == "NoSuchKey"
    headers = info.value.response["ResponseMetadata"]["HTTPHeaders"]
    assert headers["x-amz-delete-marker"] == "true" and headers["x-amz-version-id"] == marker
    with pytest.raises(ClientError) as info:
        s3.get_object_attributes(
            Bucket=bucket, Key="v", VersionId="nope", ObjectAttributes=["ETag"]
        )
    assert error_code(info.value) == "InvalidArgument"


def test_null_version(s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="n", Body=b"null")
    got = s3.get_object_attributes(
        Bucket=bucket, Key="n", VersionId="null", ObjectAttributes=["ObjectSize"]
    )
    assert got["ObjectSize"] == 4 and got["VersionId"] == "null"


def test_missing_object_and_bucket(s3: Any, bucket: str) -> None:
    with pytest.raises(ClientError) as info:
        s3.get_object_attributes(Bucket=bucket, Key="absent", ObjectAttributes=["ETag"])
    assert error_code(info.value) == "NoSuchKey"
    with pytest.raises(ClientError) as info:
        s3.get_object_attributes(Bucket=bucket + "-gone", Key="k", ObjectAttributes=["ETag"])
    assert error_code(info.value) == "NoSuchBucket"


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"x-amz-object-attributes": ""},
        {"x-amz-object-attributes": "ETag,Colour"},
        {"x-amz-object-attributes": "ETag", "x-amz-max-parts": "many"},
        {"x-amz-object-attributes": "ETag", "x-amz-part-number-marker": "-1"},
    ],
)
def test_bad_requests(s3: Any, http: Any, bucket: str, headers: dict[str, str]) -> None:
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    response = http.get(f"/{bucket}/k?attributes", headers=headers)
    assert response.status_code == 400, response.text
    assert "<Code>InvalidArgument</Code>" in response.text


def test_other_methods(s3: Any, http: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="k", Body=b"12345")
    head = http.head(f"/{bucket}/k?attributes")  # HEAD reads as HeadObject, as always
    assert head.status_code == 200 and head.headers["content-length"] == "5"
    for method in ("PUT", "DELETE", "POST"):
        response = http.request(method, f"/{bucket}/k?attributes", content=b"")
        assert response.status_code == 405 and "MethodNotAllowed" in response.text
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"12345"


KEY, SECRET = "AKIDATTRIBUTES", "attributes-secret"
OTHER_KEY, OTHER_SECRET = "AKIDATTROTHER", "other-attributes-secret"


@pytest.fixture(scope="module")
def auth_server() -> Iterator[SyncServer]:
    with SyncServer(auth_config((KEY, SECRET), (OTHER_KEY, OTHER_SECRET))) as running:
        yield running


def test_iam_actions(auth_server: SyncServer) -> None:
    """s3:GetObjectAttributes, and s3:GetObjectVersionAttributes with a versionId: neither
    s3:GetObject nor the other of the two grants it."""
    owner = signed_client(auth_server.endpoint_url, KEY, SECRET)
    other = signed_client(auth_server.endpoint_url, OTHER_KEY, OTHER_SECRET)
    bucket = f"attr-{uuid.uuid4().hex[:12]}"
    owner.create_bucket(Bucket=bucket)
    owner.put_object(Bucket=bucket, Key="k", Body=b"guarded")
    arn = f"arn:aws:s3:::{bucket}/*"
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": "*",
                "Action": "s3:GetObjectAttributes",
                "Resource": arn,
            },
            {
                "Effect": "Deny",
                "Principal": {"AWS": f"arn:aws:iam::000000000000:user/{OTHER_KEY}"},
                "Action": "s3:GetObjectAttributes",
                "Resource": arn,
            },
        ],
    }
    owner.put_bucket_policy(Bucket=bucket, Policy=json.dumps(policy))
    asked = {"x-amz-object-attributes": "ObjectSize"}
    with httpx.Client(base_url=auth_server.endpoint_url) as anonymous:
        got = anonymous.get(f"/{bucket}/k?attributes", headers=asked)
        assert got.status_code == 200 and "<ObjectSize>7</ObjectSize>" in got.text
        assert anonymous.get(f"/{bucket}/k").status_code == 403
        versioned = anonymous.get(f"/{bucket}/k?attributes&versionId=null", headers=asked)
        assert versioned.status_code == 403 and "AccessDenied" in versioned.text
    with pytest.raises(ClientError) as info:
        other.get_object_attributes(Bucket=bucket, Key="k", ObjectAttributes=["ETag"])
    assert error_code(info.value) == "AccessDenied"
    with pytest.raises(ClientError) as info:  # the owner's object: nothing allows it
        other.get_object(Bucket=bucket, Key="k")
    assert error_code(info.value) == "AccessDenied"
    owner.delete_bucket_policy(Bucket=bucket)
    owner.delete_object(Bucket=bucket, Key="k")
    owner.delete_bucket(Bucket=bucket)


@pytest.mark.slow
def test_in_a_cluster(tmp_path: Path) -> None:
    """Written through one node of a three-node cluster, asked of another; and the other
    node's ListBuckets pages over the same buckets."""
    with running(make_nodes(tmp_path, 3, 2)) as (a, b, _):
        writer, reader = a.s3(), b.s3()
        prefix = f"cl{uuid.uuid4().hex[:8]}-"
        for i in range(3):
            writer.create_bucket(Bucket=f"{prefix}{i}")
        pieces = [b"p" * PART, b"q"]
        _sha256_upload(writer, f"{prefix}0", "mp", pieces)
        got = reader.get_object_attributes(Bucket=f"{prefix}0", Key="mp", ObjectAttributes=ALL)
        assert got["ObjectSize"] == PART + 1 and got["ETag"].endswith("-2")
        parts = got["ObjectParts"]
        assert parts["TotalPartsCount"] == 2
        assert [p["ChecksumSHA256"] for p in parts["Parts"]] == [_sha256(p) for p in pieces]
        first = reader.list_buckets(Prefix=prefix, MaxBuckets=2)
        assert [x["Name"] for x in first["Buckets"]] == [f"{prefix}0", f"{prefix}1"]
        rest = reader.list_buckets(Prefix=prefix, ContinuationToken=first["ContinuationToken"])
        assert [x["Name"] for x in rest["Buckets"]] == [f"{prefix}2"]
        assert "ContinuationToken" not in rest


# The header and the part pages on their own.


@given(st.lists(st.sampled_from([*ATTRIBUTES, "Colour", "etag", ""]), max_size=6))
def test_requested_attributes(names: list[str]) -> None:
    value = " , ".join(names)
    try:
        got = requested_attributes(value)
    except InvalidArgument:
        assert not set(names) - {""} or not set(names) <= {*ATTRIBUTES, ""}
        return
    assert got == set(names) - {""} and got <= set(ATTRIBUTES) and got


@given(st.integers(1, 40), st.integers(1, 12), st.booleans())
def test_part_pages_cover_each_part_once(count: int, max_parts: int, checksums: bool) -> None:
    when = datetime(2024, 1, 1, tzinfo=UTC)
    parts = [
        PartInfo(n, n * 10, f"{n:032x}", when, {"SHA256": f"s{n}"}) for n in range(1, count + 1)
    ]
    meta = ObjectMeta(
        "k", 0, "e-1", when, parts=parts, checksums={"SHA256": "x-1"} if checksums else {}
    )
    seen: list[int] = []
    after = 0
    while True:
        node = dict(parts_node(meta, after=after, max_parts=max_parts) or [])
        assert node["PartsCount"] == count and node["MaxParts"] == max_parts
        page = [
            p
            for tag, p in parts_node(meta, after=after, max_parts=max_parts) or []
            if tag == "Part"
        ]
        if checksums:
            seen += [dict(p)["PartNumber"] for p in page]
        if not node["IsTruncated"]:
            assert node["NextPartNumberMarker"] is None
            break
        after = node["NextPartNumberMarker"]
        if checksums:
            assert after == seen[-1]
    if checksums:
        assert seen == list(range(1, count + 1))
    assert parts_node(ObjectMeta("k", 0, "e", when), after=0, max_parts=5) is None
