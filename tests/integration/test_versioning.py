"""Versioning through boto3 and the aws CLI against a standalone server and an erasure
node alike: bucket states, version ids on every write and read, delete markers,
ListObjectVersions paging, version ids on copies and batch deletes."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import random
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from shoal.app.server import SyncServer
from tests.integration.conftest import (
    AwsCli,
    auth_config,
    client_error,
    erasure_config,
    error_code,
    signed_client,
)
from tests.integration.test_cluster import make_nodes, running


@pytest.fixture(scope="module", params=["standalone", "erasure"])
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SyncServer]:
    config = None
    if request.param == "erasure":
        config = erasure_config(tmp_path_factory.mktemp("versioning-erasure"))
    with SyncServer(config) as running:
        yield running


@pytest.fixture(scope="module")
def s3(server: SyncServer) -> Any:
    d = server.get_storage_descriptor()
    return signed_client(d.endpoint_url, d.access_key, d.access_secret)


def _name() -> str:
    return f"ver-{uuid.uuid4().hex[:16]}"


@pytest.fixture
def plain(s3: Any) -> str:
    """A new bucket, never versioned."""
    name = _name()
    s3.create_bucket(Bucket=name)
    return name


@pytest.fixture
def versioned(s3: Any, plain: str) -> str:
    """A new bucket with versioning Enabled."""
    s3.put_bucket_versioning(Bucket=plain, VersioningConfiguration={"Status": "Enabled"})
    return plain


def _headers(response: dict[str, Any]) -> dict[str, str]:
    return response["ResponseMetadata"]["HTTPHeaders"]


def test_versioning_states(s3: Any, plain: str) -> None:
    got = s3.get_bucket_versioning(Bucket=plain)
    assert "Status" not in got and "MFADelete" not in got
    for status in ("Enabled", "Suspended", "Enabled", "Suspended"):
        s3.put_bucket_versioning(Bucket=plain, VersioningConfiguration={"Status": status})
        assert s3.get_bucket_versioning(Bucket=plain)["Status"] == status


def test_mfa_delete_is_refused_clearly(s3: Any, plain: str) -> None:
    config = {"Status": "Enabled", "MFADelete": "Enabled"}
    error = client_error(s3.put_bucket_versioning, Bucket=plain, VersioningConfiguration=config)
    assert error_code(error) == "NotImplemented"
    assert "MFA Delete" in error.response["Error"]["Message"]
    assert "Status" not in s3.get_bucket_versioning(Bucket=plain)
    # MFADelete Disabled is what every bucket has: accepted.
    config = {"Status": "Enabled", "MFADelete": "Disabled"}
    s3.put_bucket_versioning(Bucket=plain, VersioningConfiguration=config)
    assert s3.get_bucket_versioning(Bucket=plain)["Status"] == "Enabled"


def test_bad_versioning_documents(server: SyncServer, s3: Any, plain: str) -> None:
    d = server.get_storage_descriptor()
    body = b"<VersioningConfiguration><Status>Off</Status></VersioningConfiguration>"
    headers = {"content-md5": _md5(body)}
    # Auth is off on this server: an unsigned request reaches the handler.
    answer = httpx.put(f"{d.endpoint_url}/{plain}?versioning", content=body, headers=headers)
    assert answer.status_code == 400 and "<Code>MalformedXML</Code>" in answer.text
    missing = httpx.put(f"{d.endpoint_url}/{_name()}?versioning", content=body, headers=headers)
    assert missing.status_code == 404 and "<Code>NoSuchBucket</Code>" in missing.text
    assert "Status" not in s3.get_bucket_versioning(Bucket=plain)


def _md5(body: bytes) -> str:
    return base64.b64encode(hashlib.md5(body).digest()).decode()


def test_unversioned_bucket_names_no_version(s3: Any, plain: str) -> None:
    put = s3.put_object(Bucket=plain, Key="k", Body=b"x")
    assert "VersionId" not in put
    assert "VersionId" not in s3.get_object(Bucket=plain, Key="k")
    assert "VersionId" not in s3.head_object(Bucket=plain, Key="k")
    deleted = s3.delete_object(Bucket=plain, Key="k")
    assert "VersionId" not in deleted and "DeleteMarker" not in deleted
    # The null version can be named in a bucket never versioned.
    s3.put_object(Bucket=plain, Key="k", Body=b"y")
    got = s3.get_object(Bucket=plain, Key="k", VersionId="null")
    assert got["Body"].read() == b"y" and got["VersionId"] == "null"


def test_every_write_makes_a_version(s3: Any, versioned: str) -> None:
    bodies = [os.urandom(100 + i) for i in range(3)]
    ids = [s3.put_object(Bucket=versioned, Key="k", Body=b)["VersionId"] for b in bodies]
    assert len(set(ids)) == 3 and "null" not in ids
    current = s3.get_object(Bucket=versioned, Key="k")
    assert current["Body"].read() == bodies[-1] and current["VersionId"] == ids[-1]
    for vid, body in zip(ids, bodies, strict=True):
        got = s3.get_object(Bucket=versioned, Key="k", VersionId=vid)
        assert got["Body"].read() == body and got["VersionId"] == vid
        head = s3.head_object(Bucket=versioned, Key="k", VersionId=vid)
        assert head["ContentLength"] == len(body) and head["VersionId"] == vid
    # Range reads of an old version.
    part = s3.get_object(Bucket=versioned, Key="k", VersionId=ids[0], Range="bytes=0-9")
    assert part["Body"].read() == bodies[0][:10]
    # ListObjects shows the key once, at its current size.
    listed = s3.list_objects_v2(Bucket=versioned)["Contents"]
    assert [(o["Key"], o["Size"]) for o in listed] == [("k", len(bodies[-1]))]


def test_version_ids_malformed_and_unknown(s3: Any, versioned: str) -> None:
    vid = s3.put_object(Bucket=versioned, Key="k", Body=b"x")["VersionId"]
    for bad in ("not-a-version", "../../etc", vid + "0"):
        error = client_error(s3.get_object, Bucket=versioned, Key="k", VersionId=bad)
        assert error_code(error) == "InvalidArgument"
        assert error.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    unknown = "0" * 24
    error = client_error(s3.get_object, Bucket=versioned, Key="k", VersionId=unknown)
    assert error_code(error) == "NoSuchVersion"
    error = client_error(s3.head_object, Bucket=versioned, Key="k", VersionId=unknown)
    assert error.response["ResponseMetadata"]["HTTPStatusCode"] == 404


def test_delete_marker_lifecycle(s3: Any, versioned: str) -> None:
    vid = s3.put_object(Bucket=versioned, Key="k", Body=b"kept")["VersionId"]
    deleted = s3.delete_object(Bucket=versioned, Key="k")
    assert deleted["DeleteMarker"] is True
    marker = deleted["VersionId"]
    assert marker not in (vid, "null")
    # Current version is a marker: 404 NoSuchKey, naming the marker.
    error = client_error(s3.get_object, Bucket=versioned, Key="k")
    assert error_code(error) == "NoSuchKey"
    headers = error.response["ResponseMetadata"]["HTTPHeaders"]
    assert headers["x-amz-delete-marker"] == "true"
    assert headers["x-amz-version-id"] == marker
    head = client_error(s3.head_object, Bucket=versioned, Key="k")
    assert head.response["ResponseMetadata"]["HTTPHeaders"]["x-amz-delete-marker"] == "true"
    # The marker by its id: 405.
    error = client_error(s3.get_object, Bucket=versioned, Key="k", VersionId=marker)
    assert error.response["ResponseMetadata"]["HTTPStatusCode"] == 405
    assert error_code(error) == "MethodNotAllowed"
    headers = error.response["ResponseMetadata"]["HTTPHeaders"]
    assert headers["x-amz-delete-marker"] == "true"
    listed = s3.list_object_versions(Bucket=versioned)["DeleteMarkers"][0]["LastModified"]
    assert parsedate_to_datetime(headers["last-modified"]) == listed  # as S3 answers a 405
    # The old version is still there, but listings show nothing.
    got = s3.get_object(Bucket=versioned, Key="k", VersionId=vid)
    assert got["Body"].read() == b"kept"
    assert s3.list_objects_v2(Bucket=versioned)["KeyCount"] == 0
    # Removing the marker undeletes the key.
    removed = s3.delete_object(Bucket=versioned, Key="k", VersionId=marker)
    assert removed["DeleteMarker"] is True and removed["VersionId"] == marker
    assert s3.get_object(Bucket=versioned, Key="k")["Body"].read() == b"kept"
    # Removing the last version for good.
    gone = s3.delete_object(Bucket=versioned, Key="k", VersionId=vid)
    assert gone["VersionId"] == vid and "DeleteMarker" not in gone
    assert error_code(client_error(s3.get_object, Bucket=versioned, Key="k")) == "NoSuchKey"
    assert "Versions" not in s3.list_object_versions(Bucket=versioned)


def test_preexisting_object_becomes_null_version(s3: Any, plain: str) -> None:
    s3.put_object(Bucket=plain, Key="k", Body=b"old")
    s3.put_bucket_versioning(Bucket=plain, VersioningConfiguration={"Status": "Enabled"})
    # The bucket was versioned: now even the null version is named.
    assert s3.get_object(Bucket=plain, Key="k")["VersionId"] == "null"
    new = s3.put_object(Bucket=plain, Key="k", Body=b"new")["VersionId"]
    versions = s3.list_object_versions(Bucket=plain)["Versions"]
    assert [(v["VersionId"], v["IsLatest"]) for v in versions] == [(new, True), ("null", False)]
    assert s3.get_object(Bucket=plain, Key="k", VersionId="null")["Body"].read() == b"old"


def test_suspended_writes_the_null_version(s3: Any, versioned: str) -> None:
    first = s3.put_object(Bucket=versioned, Key="k", Body=b"1")["VersionId"]
    s3.put_bucket_versioning(Bucket=versioned, VersioningConfiguration={"Status": "Suspended"})
    assert s3.put_object(Bucket=versioned, Key="k", Body=b"2")["VersionId"] == "null"
    assert s3.put_object(Bucket=versioned, Key="k", Body=b"3")["VersionId"] == "null"
    versions = s3.list_object_versions(Bucket=versioned)["Versions"]
    assert [v["VersionId"] for v in versions] == ["null", first]
    assert s3.get_object(Bucket=versioned, Key="k")["Body"].read() == b"3"
    assert s3.head_object(Bucket=versioned, Key="k")["VersionId"] == "null"
    deleted = s3.delete_object(Bucket=versioned, Key="k")
    assert deleted["DeleteMarker"] is True and deleted["VersionId"] == "null"
    listing = s3.list_object_versions(Bucket=versioned)
    assert [v["VersionId"] for v in listing["Versions"]] == [first]
    assert [(m["VersionId"], m["IsLatest"]) for m in listing["DeleteMarkers"]] == [("null", True)]


def _expected(keys: dict[str, list[str]]) -> list[tuple[str, str]]:
    """(key, version id) in ListObjectVersions order: keys ascending, newest first."""
    return [(k, v) for k in sorted(keys) for v in reversed(keys[k])]


def test_list_object_versions_pages(s3: Any, versioned: str) -> None:
    made: dict[str, list[str]] = {}
    for i, key in enumerate(["a", "b/1", "b/2", "c", "d/e/f"]):
        for n in range(1 + i % 3):
            made.setdefault(key, []).append(
                s3.put_object(Bucket=versioned, Key=key, Body=b"%d" % n)["VersionId"]
            )
    marker = s3.delete_object(Bucket=versioned, Key="c")["VersionId"]
    made["c"].append(marker)
    everything = s3.list_object_versions(Bucket=versioned)
    got = [(v["Key"], v["VersionId"]) for v in everything["Versions"]]
    assert sorted([*got, ("c", marker)]) == sorted(_expected(made))
    assert everything["DeleteMarkers"][0]["IsLatest"] is True
    assert everything["DeleteMarkers"][0]["Owner"]["ID"]
    assert all(v["ETag"].startswith('"') and v["Owner"]["ID"] for v in everything["Versions"])
    latest = {v["Key"]: v["VersionId"] for v in everything["Versions"] if v["IsLatest"]}
    assert latest == {k: vs[-1] for k, vs in made.items() if k != "c"}
    # Page by page, two at a time: the same sequence, markers and versions interleaved.
    seen: list[tuple[str, str]] = []
    kwargs: dict[str, Any] = {"Bucket": versioned, "MaxKeys": 2}
    while True:
        page = s3.list_object_versions(**kwargs)
        entries = page.get("Versions", []) + page.get("DeleteMarkers", [])
        assert len(entries) <= 2
        seen += sorted(
            ((e["Key"], e["VersionId"]) for e in entries),
            key=lambda e: (e[0], -made[e[0]].index(e[1])),
        )
        if not page["IsTruncated"]:
            break
        kwargs["KeyMarker"] = page["NextKeyMarker"]
        kwargs["VersionIdMarker"] = page["NextVersionIdMarker"]
    assert seen == _expected(made)
    # The paginator does the same.
    pages = s3.get_paginator("list_object_versions").paginate(
        Bucket=versioned, PaginationConfig={"PageSize": 3}
    )
    count = sum(len(p.get("Versions", [])) + len(p.get("DeleteMarkers", [])) for p in pages)
    assert count == len(seen)
    # Prefix and delimiter.
    grouped = s3.list_object_versions(Bucket=versioned, Delimiter="/")
    assert [p["Prefix"] for p in grouped["CommonPrefixes"]] == ["b/", "d/"]
    assert {v["Key"] for v in grouped["Versions"]} == {"a", "c"}
    assert [m["Key"] for m in grouped["DeleteMarkers"]] == ["c"]
    under = s3.list_object_versions(Bucket=versioned, Prefix="b/")
    assert [v["Key"] for v in under["Versions"]] == ["b/1"] * 2 + ["b/2"] * 3
    # Only a key marker: keys after it.
    after = s3.list_object_versions(Bucket=versioned, KeyMarker="b/2")
    assert {v["Key"] for v in after["Versions"]} == {"c", "d/e/f"}


def test_list_object_versions_parameters(s3: Any, server: SyncServer, versioned: str) -> None:
    key = "odd key/ü\x01"
    vid = s3.put_object(Bucket=versioned, Key=key, Body=b"x")["VersionId"]
    # boto3 asks for encoding-type=url by itself and decodes the answer.
    page = s3.list_object_versions(Bucket=versioned)
    assert [(v["Key"], v["VersionId"]) for v in page["Versions"]] == [(key, vid)]
    d = server.get_storage_descriptor()
    url = f"{d.endpoint_url}/{versioned}"
    answer = httpx.get(url, params={"versions": "", "encoding-type": "url"})
    assert "<Key>odd+key/%C3%BC%01</Key>" in answer.text
    assert "<EncodingType>url</EncodingType>" in answer.text
    answer = httpx.get(url, params={"versions": "", "version-id-marker": vid})
    assert answer.status_code == 400 and "<Code>InvalidArgument</Code>" in answer.text
    answer = httpx.get(url, params={"versions": "", "key-marker": "a", "version-id-marker": "x"})
    assert answer.status_code == 400 and "<Code>InvalidArgument</Code>" in answer.text
    answer = httpx.get(url, params={"versions": "", "max-keys": "-1"})
    assert answer.status_code == 400
    answer = httpx.get(url, params={"versions": "", "encoding-type": "base64"})
    assert answer.status_code == 400
    answer = httpx.get(url, params={"versions": "", "max-keys": "0"})
    assert answer.status_code == 200 and "<Version>" not in answer.text


def test_delete_objects_with_versions(s3: Any, versioned: str) -> None:
    v1 = s3.put_object(Bucket=versioned, Key="a", Body=b"1")["VersionId"]
    v2 = s3.put_object(Bucket=versioned, Key="a", Body=b"2")["VersionId"]
    s3.put_object(Bucket=versioned, Key="b", Body=b"b")
    answer = s3.delete_objects(
        Bucket=versioned,
        Delete={
            "Objects": [
                {"Key": "a", "VersionId": v1},
                {"Key": "b"},
                {"Key": "a", "VersionId": "not-a-version"},
            ]
        },
    )
    deleted = {(d["Key"], d.get("VersionId")): d for d in answer["Deleted"]}
    assert deleted[("a", v1)].get("DeleteMarker") is None
    marker = deleted[("b", None)]
    assert marker["DeleteMarker"] is True and marker["DeleteMarkerVersionId"] not in ("", "null")
    assert [(e["Key"], e["Code"]) for e in answer["Errors"]] == [("a", "InvalidArgument")]
    versions = s3.list_object_versions(Bucket=versioned)
    assert [(v["Key"], v["VersionId"]) for v in versions["Versions"]] == [
        ("a", v2),
        ("b", _vid(versions, "b")),
    ]
    # Removing the marker by id reports it as one.
    again = s3.delete_objects(
        Bucket=versioned,
        Delete={"Objects": [{"Key": "b", "VersionId": marker["DeleteMarkerVersionId"]}]},
    )
    (entry,) = again["Deleted"]
    assert entry["DeleteMarker"] is True
    assert entry["DeleteMarkerVersionId"] == marker["DeleteMarkerVersionId"]
    assert s3.get_object(Bucket=versioned, Key="b")["Body"].read() == b"b"


def _vid(listing: dict[str, Any], key: str) -> str:
    return next(v["VersionId"] for v in listing["Versions"] if v["Key"] == key)


def test_deleting_an_absent_version_is_idempotent(s3: Any, versioned: str) -> None:
    s3.put_object(Bucket=versioned, Key="k", Body=b"x")
    answer = s3.delete_object(Bucket=versioned, Key="k", VersionId="0" * 24)
    assert answer["ResponseMetadata"]["HTTPStatusCode"] == 204
    assert s3.get_object(Bucket=versioned, Key="k")["Body"].read() == b"x"


def test_bucket_with_only_versions_or_markers_is_not_empty(s3: Any, versioned: str) -> None:
    vid = s3.put_object(Bucket=versioned, Key="k", Body=b"x")["VersionId"]
    marker = s3.delete_object(Bucket=versioned, Key="k")["VersionId"]
    assert s3.list_objects_v2(Bucket=versioned)["KeyCount"] == 0
    error = client_error(s3.delete_bucket, Bucket=versioned)
    assert error_code(error) == "BucketNotEmpty"
    s3.delete_object(Bucket=versioned, Key="k", VersionId=vid)
    assert error_code(client_error(s3.delete_bucket, Bucket=versioned)) == "BucketNotEmpty"
    s3.delete_object(Bucket=versioned, Key="k", VersionId=marker)
    s3.delete_bucket(Bucket=versioned)
    assert error_code(client_error(s3.head_bucket, Bucket=versioned)) == "404"


def test_copy_from_a_version(s3: Any, versioned: str) -> None:
    v1 = s3.put_object(Bucket=versioned, Key="src", Body=b"first")["VersionId"]
    s3.put_object(Bucket=versioned, Key="src", Body=b"second")
    source = {"Bucket": versioned, "Key": "src", "VersionId": v1}
    copied = s3.copy_object(Bucket=versioned, Key="dst", CopySource=source)
    assert copied["CopySourceVersionId"] == v1
    assert copied["VersionId"] not in (v1, "null")
    got = s3.get_object(Bucket=versioned, Key="dst")
    assert got["Body"].read() == b"first" and got["VersionId"] == copied["VersionId"]
    # Restoring an old version onto its own key is an ordinary copy.
    restored = s3.copy_object(Bucket=versioned, Key="src", CopySource=source)
    assert s3.get_object(Bucket=versioned, Key="src")["Body"].read() == b"first"
    assert restored["VersionId"] != v1
    assert len(s3.list_object_versions(Bucket=versioned, Prefix="src")["Versions"]) == 3
    # The current version copied: its id reported.
    current = s3.copy_object(Bucket=versioned, Key="dst2", CopySource=f"{versioned}/src")
    assert current["CopySourceVersionId"] == restored["VersionId"]
    # A marker can not be copied, by id or as the current version.
    marker = s3.delete_object(Bucket=versioned, Key="src")["VersionId"]
    by_id = {"Bucket": versioned, "Key": "src", "VersionId": marker}
    error = client_error(s3.copy_object, Bucket=versioned, Key="dst3", CopySource=by_id)
    assert error_code(error) == "InvalidRequest"
    error = client_error(
        s3.copy_object, Bucket=versioned, Key="dst3", CopySource=f"{versioned}/src"
    )
    assert error_code(error) == "NoSuchKey"
    bad = {"Bucket": versioned, "Key": "src", "VersionId": "bad"}
    assert error_code(client_error(s3.copy_object, Bucket=versioned, Key="x", CopySource=bad)) == (
        "InvalidArgument"
    )


def test_upload_part_copy_from_a_version(s3: Any, versioned: str) -> None:
    old = os.urandom(6 * 1024 * 1024)
    v1 = s3.put_object(Bucket=versioned, Key="src", Body=old)["VersionId"]
    s3.put_object(Bucket=versioned, Key="src", Body=b"newer")
    upload = s3.create_multipart_upload(Bucket=versioned, Key="big")["UploadId"]
    part = s3.upload_part_copy(
        Bucket=versioned,
        Key="big",
        UploadId=upload,
        PartNumber=1,
        CopySource={"Bucket": versioned, "Key": "src", "VersionId": v1},
    )
    assert part["CopySourceVersionId"] == v1
    done = s3.complete_multipart_upload(
        Bucket=versioned,
        Key="big",
        UploadId=upload,
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": part["CopyPartResult"]["ETag"]}]},
    )
    assert done["VersionId"] not in ("", "null")
    got = s3.get_object(Bucket=versioned, Key="big", VersionId=done["VersionId"])
    assert hashlib.md5(got["Body"].read()).digest() == hashlib.md5(old).digest()


def test_conditional_requests_on_versions(s3: Any, versioned: str) -> None:
    first = s3.put_object(Bucket=versioned, Key="k", Body=b"1")
    error = client_error(s3.put_object, Bucket=versioned, Key="k", Body=b"2", IfNoneMatch="*")
    assert error_code(error) == "PreconditionFailed"
    error = client_error(s3.put_object, Bucket=versioned, Key="k", Body=b"2", IfMatch='"0000"')
    assert error_code(error) == "PreconditionFailed"
    second = s3.put_object(Bucket=versioned, Key="k", Body=b"2", IfMatch=first["ETag"])
    assert second["VersionId"] != first["VersionId"]
    # Behind a delete marker the key does not exist: If-None-Match: * writes, If-Match
    # finds no key.
    s3.put_object(Bucket=versioned, Key="gone", Body=b"g")
    s3.delete_object(Bucket=versioned, Key="gone")
    error = client_error(
        s3.put_object, Bucket=versioned, Key="gone", Body=b"n", IfMatch=first["ETag"]
    )
    assert error_code(error) == "NoSuchKey"
    s3.put_object(Bucket=versioned, Key="gone", Body=b"n", IfNoneMatch="*")
    assert s3.get_object(Bucket=versioned, Key="gone")["Body"].read() == b"n"
    # Conditional DELETE: If-Match against the current version's ETag.
    error = client_error(s3.delete_object, Bucket=versioned, Key="k", IfMatch=first["ETag"])
    assert error_code(error) == "PreconditionFailed"
    assert s3.get_object(Bucket=versioned, Key="k")["Body"].read() == b"2"
    deleted = s3.delete_object(Bucket=versioned, Key="k", IfMatch=second["ETag"])
    assert deleted["DeleteMarker"] is True
    error = client_error(s3.delete_object, Bucket=versioned, Key="k", IfMatch=second["ETag"])
    assert error_code(error) == "NoSuchKey"


def test_conditional_delete_unversioned(s3: Any, plain: str) -> None:
    put = s3.put_object(Bucket=plain, Key="k", Body=b"1")
    error = client_error(s3.delete_object, Bucket=plain, Key="k", IfMatch='"00"')
    assert error_code(error) == "PreconditionFailed"
    s3.delete_object(Bucket=plain, Key="k", IfMatch=put["ETag"])
    assert error_code(client_error(s3.get_object, Bucket=plain, Key="k")) == "NoSuchKey"


def test_multipart_and_post_report_version_ids(s3: Any, versioned: str) -> None:
    upload = s3.create_multipart_upload(Bucket=versioned, Key="mp")["UploadId"]
    part = s3.upload_part(Bucket=versioned, Key="mp", UploadId=upload, PartNumber=1, Body=b"p")
    done = s3.complete_multipart_upload(
        Bucket=versioned,
        Key="mp",
        UploadId=upload,
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]},
    )
    head = s3.head_object(Bucket=versioned, Key="mp")
    assert done["VersionId"] == head["VersionId"] != "null"
    post = s3.generate_presigned_post(Bucket=versioned, Key="form")
    answer = httpx.post(post["url"], data=post["fields"], files={"file": b"form body"})
    assert answer.status_code == 204
    assert (
        answer.headers["x-amz-version-id"]
        == s3.head_object(Bucket=versioned, Key="form")["VersionId"]
    )


def test_acl_of_a_version(s3: Any, versioned: str) -> None:
    vid = s3.put_object(Bucket=versioned, Key="k", Body=b"x")["VersionId"]
    s3.delete_object(Bucket=versioned, Key="k")
    acl = s3.get_object_acl(Bucket=versioned, Key="k", VersionId=vid)
    assert acl["Grants"][0]["Permission"] == "FULL_CONTROL"
    error = client_error(s3.get_object_acl, Bucket=versioned, Key="k", VersionId="0" * 24)
    assert error_code(error) == "NoSuchVersion"


def test_version_reads_need_get_object_version(tmp_path: Path) -> None:
    """A GET naming a version is authorised as s3:GetObjectVersion, as AWS does."""
    with SyncServer(auth_config(("AKIDVER", "secret"))) as running:
        s3 = signed_client(running.endpoint_url, "AKIDVER", "secret")
        s3.create_bucket(Bucket="pol")
        s3.put_bucket_versioning(Bucket="pol", VersioningConfiguration={"Status": "Enabled"})
        vid = s3.put_object(Bucket="pol", Key="k", Body=b"x")["VersionId"]
        deny = {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Deny",
                    "Principal": "*",
                    "Action": ["s3:GetObjectVersion", "s3:DeleteObjectVersion"],
                    "Resource": "arn:aws:s3:::pol/*",
                }
            ],
        }
        s3.put_bucket_policy(Bucket="pol", Policy=json.dumps(deny))
        assert s3.get_object(Bucket="pol", Key="k")["Body"].read() == b"x"
        assert error_code(client_error(s3.get_object, Bucket="pol", Key="k", VersionId=vid)) == (
            "AccessDenied"
        )
        assert (
            error_code(client_error(s3.head_object, Bucket="pol", Key="k", VersionId=vid)) == "403"
        )
        error = client_error(s3.delete_object, Bucket="pol", Key="k", VersionId=vid)
        assert error_code(error) == "AccessDenied"
        batch = s3.delete_objects(
            Bucket="pol", Delete={"Objects": [{"Key": "k", "VersionId": vid}]}
        )
        assert [e["Code"] for e in batch["Errors"]] == ["AccessDenied"]
        assert s3.get_object(Bucket="pol", Key="k")["VersionId"] == vid


def test_policy_condition_on_the_version_id(tmp_path: Path) -> None:
    """s3:versionid is the versionId a request names: a policy can pin readers to one."""
    with SyncServer(auth_config(("AKIDVER", "secret"))) as server:
        s3 = signed_client(server.endpoint_url, "AKIDVER", "secret")
        s3.create_bucket(Bucket="pin")
        s3.put_bucket_versioning(Bucket="pin", VersioningConfiguration={"Status": "Enabled"})
        first = s3.put_object(Bucket="pin", Key="k", Body=b"1")["VersionId"]
        second = s3.put_object(Bucket="pin", Key="k", Body=b"2")["VersionId"]
        deny = {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Deny",
                    "Principal": "*",
                    "Action": "s3:GetObjectVersion",
                    "Resource": "arn:aws:s3:::pin/*",
                    "Condition": {"StringNotEquals": {"s3:versionid": first}},
                }
            ],
        }
        s3.put_bucket_policy(Bucket="pin", Policy=json.dumps(deny))
        assert s3.get_object(Bucket="pin", Key="k", VersionId=first)["Body"].read() == b"1"
        error = client_error(s3.get_object, Bucket="pin", Key="k", VersionId=second)
        assert error_code(error) == "AccessDenied"


def test_aws_cli_versioning(server: SyncServer, tmp_path: Path, s3: Any, plain: str) -> None:
    api = AwsCli.of(tmp_path, server.get_storage_descriptor()).api

    api("put-bucket-versioning", "--bucket", plain, "--versioning-configuration", "Status=Enabled")
    assert api("get-bucket-versioning", "--bucket", plain)["Status"] == "Enabled"
    ids = [s3.put_object(Bucket=plain, Key="k", Body=b"%d" % i)["VersionId"] for i in range(2)]
    listed = api("list-object-versions", "--bucket", plain)
    assert [v["VersionId"] for v in listed["Versions"]] == ids[::-1]
    deleted = api("delete-object", "--bucket", plain, "--key", "k", "--version-id", ids[0])
    assert deleted["VersionId"] == ids[0]
    out = tmp_path / "out"
    api("get-object", "--bucket", plain, "--key", "k", "--version-id", ids[1], str(out))
    assert out.read_bytes() == b"1"


def test_list_object_versions_against_a_reference(s3: Any, versioned: str) -> None:
    """Random puts, deletes and version removals; every page size and the delimiter
    view agree with a model of the bucket."""
    rng = random.Random(13)
    keys = ["a", "a/b", "a/c/d", "b", "é", "a+b", "z/z"]
    model: dict[str, list[tuple[str, bool]]] = {}  # key -> [(version id, marker)], oldest first
    for _ in range(60):
        key = rng.choice(keys)
        roll = rng.random()
        if roll < 0.55:
            vid = s3.put_object(Bucket=versioned, Key=key, Body=b"x")["VersionId"]
            model.setdefault(key, []).append((vid, False))
        elif roll < 0.8:
            vid = s3.delete_object(Bucket=versioned, Key=key)["VersionId"]
            model.setdefault(key, []).append((vid, True))
        elif model.get(key):
            vid, _ = rng.choice(model[key])
            s3.delete_object(Bucket=versioned, Key=key, VersionId=vid)
            model[key] = [e for e in model[key] if e[0] != vid]
    order = sorted((k for k in model if model[k]), key=lambda k: k.encode())
    reference = [
        (k, vid, marker, i == 0)
        for k in order
        for i, (vid, marker) in enumerate(reversed(model[k]))
    ]
    position = {(k, vid): n for n, (k, vid, _, _) in enumerate(reference)}

    def entries(page: dict[str, Any]) -> list[tuple[str, str, bool, bool]]:
        found = [(v["Key"], v["VersionId"], False, v["IsLatest"]) for v in page.get("Versions", [])]
        found += [
            (m["Key"], m["VersionId"], True, m["IsLatest"]) for m in page.get("DeleteMarkers", [])
        ]
        return sorted(found, key=lambda e: position.get((e[0], e[1]), -1))

    for size in (1, 2, 3, 7, 1000):
        seen: list[tuple[str, str, bool, bool]] = []
        kwargs: dict[str, Any] = {"Bucket": versioned, "MaxKeys": size}
        while True:
            page = s3.list_object_versions(**kwargs)
            got = entries(page)
            assert len(got) <= size
            seen += got
            if not page["IsTruncated"]:
                break
            kwargs["KeyMarker"] = page["NextKeyMarker"]
            kwargs["VersionIdMarker"] = page["NextVersionIdMarker"]
        assert seen == reference, size
    grouped = s3.list_object_versions(Bucket=versioned, Delimiter="/")
    prefixes = sorted({k.split("/", 1)[0] + "/" for k in order if "/" in k})
    assert [p["Prefix"] for p in grouped.get("CommonPrefixes", [])] == prefixes
    assert entries(grouped) == [e for e in reference if "/" not in e[0]]
    under = s3.list_object_versions(Bucket=versioned, Prefix="a/", Delimiter="/")
    assert entries(under) == [e for e in reference if e[0] == "a/b"]
    assert [p["Prefix"] for p in under.get("CommonPrefixes", [])] == (
        ["a/c/"] if "a/c/d" in order else []
    )


@pytest.mark.slow
def test_in_a_cluster(tmp_path: Path) -> None:
    """Versioning turned on through one node of a three-node cluster holds on the others
    at once; versions written through each are listed, read and deleted through the
    others; object lock retention set through one refuses a delete through another."""
    with running(make_nodes(tmp_path, 3, 2)) as (a, b, c):
        bucket = _name()
        a.s3().create_bucket(Bucket=bucket)
        a.s3().put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
        assert b.s3().get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"
        ids = [
            node.s3().put_object(Bucket=bucket, Key="k", Body=b"%d" % i)["VersionId"]
            for i, node in enumerate((a, b, c))
        ]
        marker = b.s3().delete_object(Bucket=bucket, Key="k")["VersionId"]
        listed = c.s3().list_object_versions(Bucket=bucket)
        assert [v["VersionId"] for v in listed["Versions"]] == ids[::-1]
        assert [m["VersionId"] for m in listed["DeleteMarkers"]] == [marker]
        for i, vid in enumerate(ids):
            got = a.s3().get_object(Bucket=bucket, Key="k", VersionId=vid)
            assert got["Body"].read() == b"%d" % i
        c.s3().delete_object(Bucket=bucket, Key="k", VersionId=marker)
        assert b.s3().get_object(Bucket=bucket, Key="k")["Body"].read() == b"2"
        b.s3().delete_object(Bucket=bucket, Key="k", VersionId=ids[0])
        error = client_error(a.s3().get_object, Bucket=bucket, Key="k", VersionId=ids[0])
        assert error_code(error) == "NoSuchVersion"
        locked = _name()
        a.s3().create_bucket(Bucket=locked, ObjectLockEnabledForBucket=True)
        vid = b.s3().put_object(Bucket=locked, Key="k", Body=b"x", ChecksumAlgorithm="SHA256")[
            "VersionId"
        ]
        until = datetime.now(UTC) + timedelta(days=1)
        c.s3().put_object_retention(
            Bucket=locked,
            Key="k",
            VersionId=vid,
            Retention={"Mode": "COMPLIANCE", "RetainUntilDate": until},
        )
        error = client_error(a.s3().delete_object, Bucket=locked, Key="k", VersionId=vid)
        assert error_code(error) == "AccessDenied"
        got = b.s3().get_object_retention(Bucket=locked, Key="k", VersionId=vid)
        assert got["Retention"]["Mode"] == "COMPLIANCE"
