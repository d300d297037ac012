"""Bucket operations, bucket policies and the sub-resources shoal answers 501."""

from __future__ import annotations

import json
import uuid

import pytest
from botocore.exceptions import ClientError

from tests.integration.conftest import error_code


def test_bucket_lifecycle(s3):
    name = f"life-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name)
    assert name in [b["Name"] for b in s3.list_buckets()["Buckets"]]
    head = s3.head_bucket(Bucket=name)
    assert head["ResponseMetadata"]["HTTPHeaders"]["x-amz-bucket-region"] == "us-east-1"
    assert s3.get_bucket_location(Bucket=name)["LocationConstraint"] is None
    # The owner creating its bucket again: 200 and nothing changed, as in us-east-1.
    s3.put_object(Bucket=name, Key="k", Body=b"x")
    assert s3.create_bucket(Bucket=name)["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert s3.get_object(Bucket=name, Key="k")["Body"].read() == b"x"
    with pytest.raises(ClientError) as info:
        s3.delete_bucket(Bucket=name)
    assert error_code(info.value) == "BucketNotEmpty"
    s3.delete_object(Bucket=name, Key="k")
    s3.delete_bucket(Bucket=name)
    with pytest.raises(ClientError) as info:
        s3.head_bucket(Bucket=name)
    assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    with pytest.raises(ClientError) as info:
        s3.delete_bucket(Bucket=name)
    assert error_code(info.value) == "NoSuchBucket"


def test_create_bucket_with_location_config(s3):
    name = f"loc-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    s3.delete_bucket(Bucket=name)


@pytest.mark.parametrize(
    "name",
    [
        "ab",
        "A-upper",
        "under_score",
        "-dash",
        "dash-",
        "a..b",
        "192.168.1.1",
        "xn--abc",
        "x" * 64,
        "a.-b",
        "bucket-s3alias",
    ],
)
def test_invalid_bucket_names(http, name):
    response = http.put(f"/{name}")
    assert response.status_code == 400, name
    assert "<Code>InvalidBucketName</Code>" in response.text


def public_read(bucket: str) -> dict:
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "PublicRead",
                "Effect": "Allow",
                "Principal": "*",
                "Action": ["s3:GetObject"],
                "Resource": [f"arn:aws:s3:::{bucket}/*"],
            }
        ],
    }


@pytest.mark.parametrize(
    ("policy", "reason"),
    [
        (
            {
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Principal": "*",
                        "Action": "s3:GetObjekt",
                        "Resource": "arn:aws:s3:::{b}/*",
                    }
                ]
            },
            "invalid action",
        ),
        (
            {
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Principal": "*",
                        "Action": "s3:GetObject",
                        "Resource": "arn:aws:s3:::another-bucket/*",
                    }
                ]
            },
            "invalid resource",
        ),
        (
            {
                "Statement": [
                    {
                        "Effect": "Maybe",
                        "Principal": "*",
                        "Action": "s3:GetObject",
                        "Resource": "arn:aws:s3:::{b}/*",
                    }
                ]
            },
            "",
        ),
        ({"Statement": []}, ""),
    ],
)
def test_bucket_policy_validated(s3, bucket, policy, reason):
    text = json.dumps(policy).replace("{b}", bucket)
    with pytest.raises(ClientError) as info:
        s3.put_bucket_policy(Bucket=bucket, Policy=text)
    assert error_code(info.value) == "MalformedPolicy"
    assert reason in info.value.response["Error"]["Message"]
    with pytest.raises(ClientError) as info:
        s3.get_bucket_policy(Bucket=bucket)
    assert error_code(info.value) == "NoSuchBucketPolicy"


def test_bucket_policy_crud(s3, bucket):
    with pytest.raises(ClientError) as info:
        s3.get_bucket_policy(Bucket=bucket)
    assert error_code(info.value) == "NoSuchBucketPolicy"
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "PublicRead",
                "Effect": "Allow",
                "Principal": "*",
                "Action": ["s3:GetObject"],
                "Resource": [f"arn:aws:s3:::{bucket}/*"],
            }
        ],
    }
    s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps(policy))
    assert json.loads(s3.get_bucket_policy(Bucket=bucket)["Policy"]) == policy
    with pytest.raises(ClientError) as info:
        s3.put_bucket_policy(Bucket=bucket, Policy="{not json")
    assert error_code(info.value) == "MalformedPolicy"
    s3.delete_bucket_policy(Bucket=bucket)
    with pytest.raises(ClientError) as info:
        s3.get_bucket_policy(Bucket=bucket)
    assert error_code(info.value) == "NoSuchBucketPolicy"


def test_policy_removed_with_bucket(s3):
    name = f"pol-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name)
    s3.put_bucket_policy(Bucket=name, Policy=json.dumps(public_read(name)))
    s3.delete_bucket(Bucket=name)
    s3.create_bucket(Bucket=name)
    with pytest.raises(ClientError) as info:
        s3.get_bucket_policy(Bucket=name)
    assert error_code(info.value) == "NoSuchBucketPolicy"
    s3.delete_bucket(Bucket=name)


def test_versioning_and_acl_reads(s3, bucket):
    assert "Status" not in s3.get_bucket_versioning(Bucket=bucket)
    acl = s3.get_bucket_acl(Bucket=bucket)
    assert acl["Grants"][0]["Permission"] == "FULL_CONTROL"
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    assert s3.get_object_acl(Bucket=bucket, Key="k")["Owner"]["ID"]


@pytest.mark.parametrize(
    ("method", "query"),
    [
        ("GET", "analytics"),
        ("PUT", "inventory"),
        ("GET", "intelligent-tiering"),
        ("GET", "replication"),
        ("PUT", "notification"),
        ("GET", "website"),
    ],
)
def test_unimplemented_bucket_subresources(http, bucket, method, query):
    response = http.request(method, f"/{bucket}?{query}", content=b"")
    assert response.status_code == 501
    assert "<Code>NotImplemented</Code>" in response.text


@pytest.mark.parametrize("query", ["select", "torrent"])
def test_unimplemented_object_subresources(http, bucket, query):
    response = http.get(f"/{bucket}/key?{query}")
    assert response.status_code == 501 and "NotImplemented" in response.text


def test_virtual_hosted_style(http, endpoint, s3, bucket):
    s3.put_object(Bucket=bucket, Key="vh/key", Body=b"virtual")
    port = endpoint.rsplit(":", 1)[1]
    response = http.get(f"{endpoint}/vh/key", headers={"Host": f"{bucket}.localhost:{port}"})
    assert response.status_code == 200 and response.content == b"virtual"
    listing = http.get(f"{endpoint}/?list-type=2", headers={"Host": f"{bucket}.localhost:{port}"})
    assert "<Key>vh/key</Key>" in listing.text


def test_request_id_on_every_response(http, bucket):
    for response in (http.get("/"), http.get(f"/{bucket}/missing"), http.put("/Bad_Name")):
        assert len(response.headers["x-amz-request-id"]) >= 16
