"""Tagging through boto3 at its defaults in every mode (standalone and erasure-coded, HTTP
and HTTPS): bucket tag sets, object tags set on write (PutObject, multipart, POST form,
copy directives) and by Put/Get/DeleteObjectTagging, x-amz-tagging-count, AWS's errors,
and the IAM actions."""

from __future__ import annotations

import base64
import hashlib
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from botocore.exceptions import ClientError

from shoal.app.server import SyncServer
from tests.integration.conftest import (
    auth_config,
    error_code,
    multipart_put,
    signed_client,
    ssl_context,
)
from tests.integration.test_cluster import make_nodes, running

TAG_SET = [{"Key": "a", "Value": "1"}, {"Key": "b", "Value": "2"}]
ELEVEN = "&".join(f"k{i}=v" for i in range(11))


def _count(response: dict[str, Any]) -> str | None:
    return response["ResponseMetadata"]["HTTPHeaders"].get("x-amz-tagging-count")


def _code(call: Any, **kwargs: Any) -> tuple[str, int]:
    with pytest.raises(ClientError) as info:
        call(**kwargs)
    return error_code(info.value), info.value.response["ResponseMetadata"]["HTTPStatusCode"]


def test_bucket_tagging(s3: Any, bucket: str) -> None:
    assert _code(s3.get_bucket_tagging, Bucket=bucket) == ("NoSuchTagSet", 404)
    s3.put_bucket_tagging(Bucket=bucket, Tagging={"TagSet": TAG_SET})
    assert s3.get_bucket_tagging(Bucket=bucket)["TagSet"] == TAG_SET
    # A new set replaces the old one whole.
    s3.put_bucket_tagging(Bucket=bucket, Tagging={"TagSet": [{"Key": "c", "Value": ""}]})
    assert s3.get_bucket_tagging(Bucket=bucket)["TagSet"] == [{"Key": "c", "Value": ""}]
    deleted = s3.delete_bucket_tagging(Bucket=bucket)
    assert deleted["ResponseMetadata"]["HTTPStatusCode"] == 204
    assert _code(s3.get_bucket_tagging, Bucket=bucket) == ("NoSuchTagSet", 404)
    fifty = [{"Key": f"k{i}", "Value": "v"} for i in range(50)]
    s3.put_bucket_tagging(Bucket=bucket, Tagging={"TagSet": fifty})
    assert len(s3.get_bucket_tagging(Bucket=bucket)["TagSet"]) == 50


@pytest.mark.parametrize(
    ("tag_set", "expected"),
    [
        ([{"Key": f"k{i}", "Value": "v"} for i in range(51)], ("BadRequest", 400)),
        ([{"Key": "a", "Value": "1"}, {"Key": "a", "Value": "2"}], ("InvalidTag", 400)),
        ([{"Key": "k" * 129, "Value": "v"}], ("InvalidTag", 400)),
        ([{"Key": "k", "Value": "v" * 257}], ("InvalidTag", 400)),
        ([{"Key": "aws:stack", "Value": "v"}], ("InvalidTag", 400)),
    ],
)
def test_bucket_tagging_errors(
    s3: Any, bucket: str, tag_set: list[dict[str, str]], expected: tuple[str, int]
) -> None:
    s3.put_bucket_tagging(Bucket=bucket, Tagging={"TagSet": TAG_SET})
    assert _code(s3.put_bucket_tagging, Bucket=bucket, Tagging={"TagSet": tag_set}) == expected
    assert s3.get_bucket_tagging(Bucket=bucket)["TagSet"] == TAG_SET  # untouched


def test_bucket_tagging_malformed_and_missing(http: httpx.Client, s3: Any, bucket: str) -> None:
    body = b"<Tagging><TagSet><Tag><Key>a</Key></Tag></TagSet></Tagging>"
    md5 = base64.b64encode(hashlib.md5(body).digest()).decode()
    response = http.put(f"/{bucket}?tagging", content=body, headers={"content-md5": md5})
    assert response.status_code == 400 and "<Code>MalformedXML</Code>" in response.text
    assert http.post(f"/{bucket}?tagging", content=b"").status_code == 405
    missing = f"missing-{uuid.uuid4().hex[:8]}"
    assert _code(s3.get_bucket_tagging, Bucket=missing) == ("NoSuchBucket", 404)


def test_tags_on_put_and_read(s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="k", Body=b"tagged", Tagging="a=1&b=2")
    assert s3.get_object_tagging(Bucket=bucket, Key="k")["TagSet"] == TAG_SET
    head = s3.head_object(Bucket=bucket, Key="k")
    assert head["ResponseMetadata"]["HTTPHeaders"]["x-amz-tagging-count"] == "2"
    got = s3.get_object(Bucket=bucket, Key="k")
    assert got["TagCount"] == 2 and got["Body"].read() == b"tagged"
    s3.put_object(Bucket=bucket, Key="plain", Body=b"x")
    assert _count(s3.head_object(Bucket=bucket, Key="plain")) is None
    assert s3.get_object_tagging(Bucket=bucket, Key="plain")["TagSet"] == []
    # An overwrite without tags leaves none (tags belong to the version written).
    s3.put_object(Bucket=bucket, Key="k", Body=b"again")
    assert s3.get_object_tagging(Bucket=bucket, Key="k")["TagSet"] == []
    # Encoded characters, a key without '=' (empty value).
    s3.put_object(Bucket=bucket, Key="enc", Body=b"x", Tagging="p%20q=r%2Fs&solo")
    assert s3.get_object_tagging(Bucket=bucket, Key="enc")["TagSet"] == [
        {"Key": "p q", "Value": "r/s"},
        {"Key": "solo", "Value": ""},
    ]
    assert _code(s3.get_object_tagging, Bucket=bucket, Key="absent") == ("NoSuchKey", 404)


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (ELEVEN, ("BadRequest", 400)),
        ("a=1&a=2", ("InvalidArgument", 400)),
        ("k=" + "v" * 257, ("InvalidTag", 400)),
        ("aws%3Ax=1", ("InvalidTag", 400)),
    ],
)
def test_put_tagging_header_errors(
    s3: Any, bucket: str, header: str, expected: tuple[str, int]
) -> None:
    assert _code(s3.put_object, Bucket=bucket, Key="k", Body=b"x", Tagging=header) == expected
    assert _code(s3.head_object, Bucket=bucket, Key="k")[1] == 404  # nothing stored


def test_multipart_carries_tags(s3: Any, bucket: str) -> None:
    multipart_put(s3, bucket, "mp", [b"p" * 5 * 1024 * 1024, b"q"], Tagging="a=1&b=2")
    assert s3.get_object_tagging(Bucket=bucket, Key="mp")["TagSet"] == TAG_SET
    assert _count(s3.head_object(Bucket=bucket, Key="mp")) == "2"
    code = _code(s3.create_multipart_upload, Bucket=bucket, Key="bad", Tagging=ELEVEN)
    assert code == ("BadRequest", 400)


def test_copy_tagging_directive(s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="src", Body=b"copied", Tagging="a=1&b=2")
    s3.copy_object(Bucket=bucket, Key="kept", CopySource={"Bucket": bucket, "Key": "src"})
    assert s3.get_object_tagging(Bucket=bucket, Key="kept")["TagSet"] == TAG_SET
    s3.copy_object(
        Bucket=bucket,
        Key="replaced",
        CopySource={"Bucket": bucket, "Key": "src"},
        TaggingDirective="REPLACE",
        Tagging="c=3",
    )
    assert s3.get_object_tagging(Bucket=bucket, Key="replaced")["TagSet"] == [
        {"Key": "c", "Value": "3"}
    ]
    s3.copy_object(
        Bucket=bucket,
        Key="cleared",
        CopySource={"Bucket": bucket, "Key": "src"},
        TaggingDirective="REPLACE",
    )
    assert s3.get_object_tagging(Bucket=bucket, Key="cleared")["TagSet"] == []
    # The metadata directive does not decide the tags.
    s3.copy_object(
        Bucket=bucket,
        Key="meta",
        CopySource={"Bucket": bucket, "Key": "src"},
        MetadataDirective="REPLACE",
        Metadata={"m": "1"},
    )
    assert s3.get_object_tagging(Bucket=bucket, Key="meta")["TagSet"] == TAG_SET


def test_post_form_tagging(s3: Any, bucket: str, verify: str | bool) -> None:
    document = (
        "<Tagging><TagSet><Tag><Key>a</Key><Value>1</Value></Tag>"
        "<Tag><Key>b</Key><Value>2</Value></Tag></TagSet></Tagging>"
    )
    form = s3.generate_presigned_post(
        bucket, "form", Fields={"tagging": document}, Conditions=[{"tagging": document}]
    )
    response = httpx.post(
        form["url"],
        data=form["fields"],
        files={"file": ("f", b"posted")},
        verify=ssl_context(verify),
    )
    assert response.status_code == 204, response.text
    assert s3.get_object_tagging(Bucket=bucket, Key="form")["TagSet"] == TAG_SET


def test_object_tagging_operations(s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="k", Body=b"x", Tagging="a=1")
    s3.put_object_tagging(Bucket=bucket, Key="k", Tagging={"TagSet": TAG_SET})
    assert s3.get_object_tagging(Bucket=bucket, Key="k")["TagSet"] == TAG_SET
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"x"  # bytes untouched
    deleted = s3.delete_object_tagging(Bucket=bucket, Key="k")
    assert deleted["ResponseMetadata"]["HTTPStatusCode"] == 204
    assert s3.get_object_tagging(Bucket=bucket, Key="k")["TagSet"] == []
    assert _count(s3.head_object(Bucket=bucket, Key="k")) is None
    eleven = [{"Key": f"k{i}", "Value": "v"} for i in range(11)]
    code = _code(s3.put_object_tagging, Bucket=bucket, Key="k", Tagging={"TagSet": eleven})
    assert code == ("BadRequest", 400)
    code = _code(s3.put_object_tagging, Bucket=bucket, Key="absent", Tagging={"TagSet": TAG_SET})
    assert code == ("NoSuchKey", 404)


def test_object_tagging_of_versions(s3: Any, bucket: str) -> None:
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    first = s3.put_object(Bucket=bucket, Key="v", Body=b"1", Tagging="a=1")["VersionId"]
    second = s3.put_object(Bucket=bucket, Key="v", Body=b"2")["VersionId"]
    put = s3.put_object_tagging(
        Bucket=bucket, Key="v", VersionId=first, Tagging={"TagSet": TAG_SET}
    )
    assert put["VersionId"] == first
    got = s3.get_object_tagging(Bucket=bucket, Key="v", VersionId=first)
    assert got["TagSet"] == TAG_SET and got["VersionId"] == first
    current = s3.get_object_tagging(Bucket=bucket, Key="v")
    assert current["TagSet"] == [] and current["VersionId"] == second
    s3.delete_object_tagging(Bucket=bucket, Key="v", VersionId=first)
    assert s3.get_object_tagging(Bucket=bucket, Key="v", VersionId=first)["TagSet"] == []
    for version in (first, second):
        s3.delete_object(Bucket=bucket, Key="v", VersionId=version)


def test_tags_survive_a_restart(tmp_path: Path) -> None:
    """Object tags (set on write and by PutObjectTagging) and a bucket's tag set are
    persisted: a new server on the same data directory reads them back."""
    config = {"storage": {"directory": str(tmp_path / "data"), "clean_slate": False}}
    with SyncServer(config) as first:
        s3 = signed_client(first.endpoint_url)
        s3.create_bucket(Bucket="kept-tags")
        s3.put_bucket_tagging(Bucket="kept-tags", Tagging={"TagSet": TAG_SET})
        s3.put_object(Bucket="kept-tags", Key="on-write", Body=b"x", Tagging="a=1")
        s3.put_object(Bucket="kept-tags", Key="later", Body=b"y")
        s3.put_object_tagging(Bucket="kept-tags", Key="later", Tagging={"TagSet": TAG_SET})
    with SyncServer(config) as second:
        s3 = signed_client(second.endpoint_url)
        assert s3.get_bucket_tagging(Bucket="kept-tags")["TagSet"] == TAG_SET
        got = s3.get_object_tagging(Bucket="kept-tags", Key="on-write")["TagSet"]
        assert got == [{"Key": "a", "Value": "1"}]
        assert s3.get_object_tagging(Bucket="kept-tags", Key="later")["TagSet"] == TAG_SET
        assert _count(s3.head_object(Bucket="kept-tags", Key="later")) == "2"


KEY, SECRET = "AKIDTAGGING", "tagging-secret"


@pytest.fixture(scope="module")
def auth_server() -> Iterator[SyncServer]:
    with SyncServer(auth_config((KEY, SECRET))) as running:
        yield running


def test_iam_actions(auth_server: SyncServer) -> None:
    """Each tagging operation needs its own action: an anonymous caller allowed only
    s3:GetObjectTagging and s3:GetBucketTagging reads tags and nothing else."""
    owner = signed_client(auth_server.endpoint_url, KEY, SECRET)
    bucket = f"tags-{uuid.uuid4().hex[:12]}"
    owner.create_bucket(Bucket=bucket)
    owner.put_object(Bucket=bucket, Key="k", Body=b"x", Tagging="a=1")
    owner.put_bucket_tagging(Bucket=bucket, Tagging={"TagSet": TAG_SET})
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": "*",
                "Action": "s3:GetObjectTagging",
                "Resource": f"arn:aws:s3:::{bucket}/*",
            },
            {
                "Effect": "Allow",
                "Principal": "*",
                "Action": "s3:GetBucketTagging",
                "Resource": f"arn:aws:s3:::{bucket}",
            },
        ],
    }
    owner.put_bucket_policy(Bucket=bucket, Policy=json.dumps(policy))
    with httpx.Client(base_url=auth_server.endpoint_url) as anonymous:
        got = anonymous.get(f"/{bucket}/k?tagging")
        assert got.status_code == 200 and "<Key>a</Key>" in got.text
        assert anonymous.get(f"/{bucket}?tagging").status_code == 200
        assert anonymous.get(f"/{bucket}/k").status_code == 403
        assert anonymous.get(f"/{bucket}/k?tagging&versionId=null").status_code == 403
        assert anonymous.delete(f"/{bucket}/k?tagging").status_code == 403
        assert anonymous.delete(f"/{bucket}?tagging").status_code == 403
    owner.delete_bucket_policy(Bucket=bucket)
    owner.delete_object(Bucket=bucket, Key="k")
    owner.delete_bucket(Bucket=bucket)


def test_request_tag_conditions(auth_server: SyncServer) -> None:
    """A policy may allow writes by the tags they carry: s3:RequestObjectTag/<key> and
    s3:RequestObjectTagKeys see PutObject's x-amz-tagging."""
    owner = signed_client(auth_server.endpoint_url, KEY, SECRET)
    bucket = f"tagc-{uuid.uuid4().hex[:12]}"
    owner.create_bucket(Bucket=bucket)
    arn = f"arn:aws:s3:::{bucket}/*"
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": "*",
                "Action": "s3:PutObject",
                "Resource": arn,
                "Condition": {
                    "StringEquals": {"s3:RequestObjectTag/project": "blue"},
                    "ForAllValues:StringEquals": {"s3:RequestObjectTagKeys": ["project", "owner"]},
                },
            }
        ],
    }
    owner.put_bucket_policy(Bucket=bucket, Policy=json.dumps(policy))
    with httpx.Client(base_url=auth_server.endpoint_url) as anonymous:

        def put(key: str, tagging: str | None) -> int:
            headers = {} if tagging is None else {"x-amz-tagging": tagging}
            return anonymous.put(f"/{bucket}/{key}", content=b"x", headers=headers).status_code

        assert put("blue", "project=blue&owner=me") == 200
        assert put("red", "project=red") == 403
        assert put("untagged", None) == 403
        assert put("extra", "project=blue&cost=1") == 403  # a key outside the allowed set
    assert owner.get_object_tagging(Bucket=bucket, Key="blue")["TagSet"] == [
        {"Key": "owner", "Value": "me"},
        {"Key": "project", "Value": "blue"},
    ]
    owner.delete_bucket_policy(Bucket=bucket)
    owner.delete_object(Bucket=bucket, Key="blue")
    owner.delete_bucket(Bucket=bucket)


def test_existing_tag_conditions(auth_server: SyncServer) -> None:
    """s3:ExistingObjectTag/<key> tests the tags of the version a read acts on: a public
    read of objects tagged public=yes only, following PutObjectTagging's changes."""
    owner = signed_client(auth_server.endpoint_url, KEY, SECRET)
    bucket = f"tage-{uuid.uuid4().hex[:12]}"
    owner.create_bucket(Bucket=bucket)
    owner.put_object(Bucket=bucket, Key="open", Body=b"open", Tagging="public=yes")
    owner.put_object(Bucket=bucket, Key="closed", Body=b"closed", Tagging="public=no")
    owner.put_object(Bucket=bucket, Key="untagged", Body=b"untagged")
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": "*",
                "Action": ["s3:GetObject", "s3:GetObjectTagging"],
                "Resource": f"arn:aws:s3:::{bucket}/*",
                "Condition": {"StringEquals": {"s3:ExistingObjectTag/public": "yes"}},
            }
        ],
    }
    owner.put_bucket_policy(Bucket=bucket, Policy=json.dumps(policy))
    with httpx.Client(base_url=auth_server.endpoint_url) as anonymous:
        assert anonymous.get(f"/{bucket}/open").content == b"open"
        assert anonymous.get(f"/{bucket}/open?tagging").status_code == 200
        assert anonymous.get(f"/{bucket}/closed").status_code == 403
        assert anonymous.get(f"/{bucket}/untagged").status_code == 403
        assert anonymous.get(f"/{bucket}/absent").status_code == 403
        owner.put_object_tagging(
            Bucket=bucket, Key="closed", Tagging={"TagSet": [{"Key": "public", "Value": "yes"}]}
        )
        assert anonymous.get(f"/{bucket}/closed").content == b"closed"
    owner.delete_bucket_policy(Bucket=bucket)
    for key in ("open", "closed", "untagged"):
        owner.delete_object(Bucket=bucket, Key=key)
    owner.delete_bucket(Bucket=bucket)


@pytest.mark.slow
def test_in_a_cluster(tmp_path: Path) -> None:
    """Bucket and object tags written through one node of a three-node cluster are read
    from another, and changed in place through a third."""
    with running(make_nodes(tmp_path, 3, 2)) as (a, b, c):
        writer, reader = a.s3(), b.s3()
        bucket = f"cl{uuid.uuid4().hex[:8]}"
        writer.create_bucket(Bucket=bucket)
        writer.put_bucket_tagging(Bucket=bucket, Tagging={"TagSet": TAG_SET})
        writer.put_object(Bucket=bucket, Key="k", Body=b"x", Tagging="a=1&b=2")
        multipart_put(writer, bucket, "mp", [b"p" * 5 * 1024 * 1024, b"q"], Tagging="a=1")
        assert reader.get_bucket_tagging(Bucket=bucket)["TagSet"] == TAG_SET
        assert reader.get_object_tagging(Bucket=bucket, Key="k")["TagSet"] == TAG_SET
        assert _count(reader.head_object(Bucket=bucket, Key="mp")) == "1"
        c.s3().put_object_tagging(Bucket=bucket, Key="k", Tagging={"TagSet": [TAG_SET[0]]})
        assert reader.get_object_tagging(Bucket=bucket, Key="k")["TagSet"] == [TAG_SET[0]]
        assert reader.get_object(Bucket=bucket, Key="k")["Body"].read() == b"x"
