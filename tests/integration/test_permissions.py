"""Accounts, ownership, ACLs, ownership controls and public access block, with three
configured accounts (owner, other, admin) and anonymous callers, through boto3 at its
defaults and plain httpx, in standalone and erasure-node mode (and a three-node cluster, slow).

The table: requester x bucket policy x ACL x ownership setting x public access block x
action → allowed or AccessDenied, the expectation written from AWS's documented
evaluation (`expected`), every row asked of a real server.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from botocore.exceptions import ClientError

from shoal.app.server import SyncServer
from shoal.auth.accounts import ANONYMOUS_ID, canonical_id
from shoal.auth.signer import signed_headers
from tests.integration.conftest import erasure_config, error_code, signed_client, wait_for

OWNER, OTHER, ADMIN = "AKIDOWNER", "AKIDOTHER", "AKIDADMIN"
SECRETS = {OWNER: "owner-secret", OTHER: "other-secret", ADMIN: "admin-secret"}
EMAILS = {OWNER: "owner@example.com", OTHER: "other@example.com"}
OWNER_ID, OTHER_ID = canonical_id(OWNER), canonical_id(OTHER)


def accounts_config() -> dict[str, Any]:
    return {
        "auth": {
            "enabled": True,
            "credentials": [
                {
                    "access_key_id": OWNER,
                    "secret_access_key": SECRETS[OWNER],
                    "email": EMAILS[OWNER],
                    "display_name": "Olive Owner",
                },
                {
                    "access_key_id": OTHER,
                    "secret_access_key": SECRETS[OTHER],
                    "email": EMAILS[OTHER],
                },
                {"access_key_id": ADMIN, "secret_access_key": SECRETS[ADMIN], "admin": True},
            ],
        }
    }


@pytest.fixture(scope="module", params=["standalone", "erasure"])
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SyncServer]:
    config = accounts_config()
    if request.param == "erasure":
        config |= erasure_config(tmp_path_factory.mktemp("drives"))
    with SyncServer(config) as running:
        yield running


@pytest.fixture(scope="module")
def clients(server: SyncServer) -> dict[str, Any]:
    return {k: signed_client(server.endpoint_url, k, s) for k, s in SECRETS.items()}


@pytest.fixture(scope="module")
def anonymous(server: SyncServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.endpoint_url) as client:
        yield client


def new_bucket(prefix: str = "perm") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def code_of(call: Any, **kwargs: Any) -> str:
    with pytest.raises(ClientError) as info:
        call(**kwargs)
    return error_code(info.value)


# ---------------------------------------------------------------------------- the table

REQUESTERS = ("owner", "other", "anonymous", "admin")
POLICIES = ("none", "allow-other", "public-read", "deny-all-get")
ACLS = ("private", "public-read", "grant-other")
OWNERSHIP = ("none", "BucketOwnerEnforced")
BLOCKS = ("none", "ignore-and-restrict")
ACTIONS = ("get", "put", "list", "get-acl")
IAM = {
    "get": "s3:GetObject",
    "put": "s3:PutObject",
    "list": "s3:ListBucket",
    "get-acl": "s3:GetObjectAcl",
}
SETUPS = list(itertools.product(POLICIES, ACLS, OWNERSHIP, BLOCKS))
TABLE_ROWS = len(SETUPS) * len(REQUESTERS) * len(ACTIONS)


def expected(
    requester: str, policy: str, acl: str, ownership: str, block: str, action: str
) -> bool:
    """AWS's evaluation, restated: explicit Deny; the owner (and the admin, owner of every
    bucket); a policy Allow (a public one only for the owner's account under
    RestrictPublicBuckets); ACL grants unless ACLs are disabled (public grants ignored
    under IgnorePublicAcls)."""
    iam = IAM[action]
    if policy == "deny-all-get" and iam == "s3:GetObject":
        return False
    if requester in ("owner", "admin"):
        return True
    restricted = block == "ignore-and-restrict"
    if policy == "allow-other" and requester == "other" and iam != "s3:GetObjectAcl":
        return True
    if policy == "public-read" and iam in ("s3:GetObject", "s3:ListBucket") and not restricted:
        return True
    if ownership == "BucketOwnerEnforced":
        return False
    if acl == "public-read" and not restricted:
        return iam in ("s3:GetObject", "s3:ListBucket")
    if acl == "grant-other" and requester == "other":
        # bucket: READ and WRITE; object: READ (no READ_ACP)
        return iam in ("s3:GetObject", "s3:ListBucket", "s3:PutObject")
    return False


def policy_document(kind: str, bucket: str) -> str | None:
    arns = [f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"]
    other = {"AWS": f"arn:aws:iam::000000000000:user/{OTHER}"}
    statements = {
        "none": None,
        "allow-other": {
            "Effect": "Allow",
            "Principal": other,
            "Action": ["s3:GetObject", "s3:PutObject", "s3:ListBucket"],
            "Resource": arns,
        },
        "public-read": {
            "Effect": "Allow",
            "Principal": "*",
            "Action": ["s3:GetObject", "s3:ListBucket"],
            "Resource": arns,
        },
        "deny-all-get": {
            "Effect": "Deny",
            "Principal": "*",
            "Action": "s3:GetObject",
            "Resource": arns[1],
        },
    }[kind]
    if statements is None:
        return None
    return json.dumps({"Version": "2012-10-17", "Statement": [statements]})


def set_up(owner: Any, bucket: str, policy: str, acl: str, ownership: str, block: str) -> None:
    owner.create_bucket(Bucket=bucket)
    owner.put_object(Bucket=bucket, Key="obj", Body=b"payload")
    if acl == "public-read":
        owner.put_bucket_acl(Bucket=bucket, ACL="public-read")
        owner.put_object_acl(Bucket=bucket, Key="obj", ACL="public-read")
    elif acl == "grant-other":
        owner.put_bucket_acl(
            Bucket=bucket,
            GrantRead=f'id="{OTHER_ID}"',
            GrantWrite=f"emailAddress={EMAILS[OTHER]}",
            GrantFullControl=f'id="{OWNER_ID}"',
        )
        owner.put_object_acl(Bucket=bucket, Key="obj", GrantRead=f'id="{OTHER_ID}"')
    document = policy_document(policy, bucket)
    if document is not None:
        owner.put_bucket_policy(Bucket=bucket, Policy=document)
    if ownership != "none":
        if acl != "private":  # S3 refuses BucketOwnerEnforced while the bucket ACL grants out
            rule = {"Rules": [{"ObjectOwnership": ownership}]}
            refused = code_of(
                owner.put_bucket_ownership_controls, Bucket=bucket, OwnershipControls=rule
            )
            assert refused == "InvalidBucketAclWithObjectOwnership"
            owner.put_bucket_acl(Bucket=bucket, ACL="private")
        owner.put_bucket_ownership_controls(
            Bucket=bucket, OwnershipControls={"Rules": [{"ObjectOwnership": ownership}]}
        )
    if block != "none":
        owner.put_public_access_block(
            Bucket=bucket,
            PublicAccessBlockConfiguration={
                "IgnorePublicAcls": True,
                "RestrictPublicBuckets": True,
            },
        )


def attempt(
    requester: str, action: str, bucket: str, clients: dict[str, Any], anonymous: httpx.Client
) -> bool:
    """Whether the request succeeded (False only for 403 AccessDenied; anything else fails)."""
    key = f"new-{requester}-{action}"
    if requester == "anonymous":
        response = {
            "get": lambda: anonymous.get(f"/{bucket}/obj"),
            "put": lambda: anonymous.put(f"/{bucket}/{key}", content=b"anon"),
            "list": lambda: anonymous.get(f"/{bucket}?list-type=2"),
            "get-acl": lambda: anonymous.get(f"/{bucket}/obj?acl"),
        }[action]()
        if response.status_code == 403:
            assert b"<Code>AccessDenied</Code>" in response.content
            return False
        assert response.status_code == 200, response.text
        return True
    client = clients[{"owner": OWNER, "other": OTHER, "admin": ADMIN}[requester]]
    call = {
        "get": lambda: client.get_object(Bucket=bucket, Key="obj")["Body"].read(),
        "put": lambda: client.put_object(Bucket=bucket, Key=key, Body=b"x"),
        "list": lambda: client.list_objects_v2(Bucket=bucket),
        "get-acl": lambda: client.get_object_acl(Bucket=bucket, Key="obj"),
    }[action]
    try:
        call()
    except ClientError as exc:
        assert error_code(exc) == "AccessDenied", exc
        return False
    return True


@pytest.mark.parametrize(("policy", "acl", "ownership", "block"), SETUPS)
def test_permission_table(
    clients: dict[str, Any],
    anonymous: httpx.Client,
    policy: str,
    acl: str,
    ownership: str,
    block: str,
) -> None:
    """One bucket per setup; every requester x action of it against `expected`."""
    bucket = new_bucket("table")
    set_up(clients[OWNER], bucket, policy, acl, ownership, block)
    wrong = []
    for requester, action in itertools.product(REQUESTERS, ACTIONS):
        want = expected(requester, policy, acl, ownership, block, action)
        got = attempt(requester, action, bucket, clients, anonymous)
        if got != want:
            wrong.append((requester, action, f"expected {want}, got {got}"))
    assert not wrong, wrong


def test_table_size() -> None:
    """The table's rows per mode (requester x policy x ACL x ownership x block x action)."""
    assert TABLE_ROWS == 4 * 4 * 3 * 2 * 2 * 4 == 768


# ------------------------------------------------------------------- owners and buckets


def test_create_bucket_owners(clients: dict[str, Any]) -> None:
    """The creator owns the name: another account gets BucketAlreadyExists, the owner
    re-creating it 200 in us-east-1 with nothing changed."""
    owner, other = clients[OWNER], clients[OTHER]
    bucket = new_bucket()
    owner.create_bucket(Bucket=bucket)
    owner.put_bucket_tagging(Bucket=bucket, Tagging={"TagSet": [{"Key": "k", "Value": "v"}]})
    assert code_of(other.create_bucket, Bucket=bucket) == "BucketAlreadyExists"
    again = owner.create_bucket(Bucket=bucket, ACL="public-read")
    assert again["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert owner.get_bucket_tagging(Bucket=bucket)["TagSet"] == [{"Key": "k", "Value": "v"}]
    grants = owner.get_bucket_acl(Bucket=bucket)["Grants"]
    assert [g["Grantee"].get("URI") for g in grants] == [None]  # still private
    assert owner.get_bucket_acl(Bucket=bucket)["Owner"] == {
        "ID": OWNER_ID,
        "DisplayName": "Olive Owner",
    }


def test_list_buckets_lists_ones_own(clients: dict[str, Any], anonymous: httpx.Client) -> None:
    mine, theirs = new_bucket(), new_bucket()
    clients[OWNER].create_bucket(Bucket=mine)
    clients[OTHER].create_bucket(Bucket=theirs)
    owned = clients[OWNER].list_buckets()
    assert owned["Owner"] == {"ID": OWNER_ID, "DisplayName": "Olive Owner"}
    names = {b["Name"] for b in owned["Buckets"]}
    assert mine in names and theirs not in names
    other = clients[OTHER].list_buckets()
    assert other["Owner"] == {"ID": OTHER_ID, "DisplayName": OTHER}
    assert {b["Name"] for b in other["Buckets"]} >= {theirs} and mine not in str(other)
    every = {b["Name"] for b in clients[ADMIN].list_buckets()["Buckets"]}
    assert {mine, theirs} <= every
    assert anonymous.get("/").status_code == 403


def test_object_owners_in_listings(clients: dict[str, Any]) -> None:
    owner = clients[OWNER]
    bucket = new_bucket()
    owner.create_bucket(Bucket=bucket)
    owner.put_object(Bucket=bucket, Key="a", Body=b"1")
    listed = owner.list_objects_v2(Bucket=bucket, FetchOwner=True)["Contents"][0]
    assert listed["Owner"]["ID"] == OWNER_ID
    assert "Owner" not in owner.list_objects_v2(Bucket=bucket)["Contents"][0]
    assert owner.list_objects(Bucket=bucket)["Contents"][0]["Owner"]["ID"] == OWNER_ID


def test_bucket_already_owned_by_you_outside_us_east_1(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    config = accounts_config() | {"server": {"region": "eu-west-1"}}
    with SyncServer(config) as running:
        owner = signed_client(running.endpoint_url, OWNER, SECRETS[OWNER], region_name=None)
        bucket = new_bucket()
        create = {
            "Bucket": bucket,
            "CreateBucketConfiguration": {"LocationConstraint": "eu-west-1"},
        }
        owner.create_bucket(**create)
        assert code_of(owner.create_bucket, **create) == "BucketAlreadyOwnedByYou"
        other = signed_client(running.endpoint_url, OTHER, SECRETS[OTHER])
        assert code_of(other.create_bucket, **create) == "BucketAlreadyExists"


def test_buckets_made_before_owners_belong_to_the_first_credential(tmp_path: Path) -> None:
    """A bucket made with auth off is recorded without an owner: with accounts, it is
    the first configured credential's."""
    storage = {"storage": {"directory": str(tmp_path), "clean_slate": False}}
    with SyncServer({**storage, "auth": {"enabled": False}}) as running:
        running.create_bucket("from-before")
    with SyncServer({**accounts_config(), **storage}) as running:
        owner = signed_client(running.endpoint_url, OWNER, SECRETS[OWNER])
        other = signed_client(running.endpoint_url, OTHER, SECRETS[OTHER])
        assert "from-before" in {b["Name"] for b in owner.list_buckets()["Buckets"]}
        assert owner.get_bucket_acl(Bucket="from-before")["Owner"]["ID"] == OWNER_ID
        owner.put_object(Bucket="from-before", Key="k", Body=b"v")
        assert code_of(other.get_object, Bucket="from-before", Key="k") == "AccessDenied"


def test_a_single_credential_works_as_before(tmp_path: Path) -> None:
    """One credential owns everything and may use every operation, as before accounts."""
    single = {"auth": {"enabled": True, "credentials": [
        {"access_key_id": "ONLY", "secret_access_key": "only-secret"}]}}  # fmt: skip
    with SyncServer(single) as running:
        only = signed_client(running.endpoint_url, "ONLY", "only-secret")
        only.create_bucket(Bucket="only-bucket")
        only.put_object(Bucket="only-bucket", Key="k", Body=b"v")
        assert only.get_object(Bucket="only-bucket", Key="k")["Body"].read() == b"v"
        assert [b["Name"] for b in only.list_buckets()["Buckets"]] == ["only-bucket"]
        assert only.list_buckets()["Owner"]["ID"] == canonical_id("ONLY")


# ------------------------------------------------------------------------------- ACLs


def test_acl_documents_and_grantees(clients: dict[str, Any], anonymous: httpx.Client) -> None:
    owner, other = clients[OWNER], clients[OTHER]
    bucket = new_bucket()
    owner.create_bucket(Bucket=bucket)
    policy = {
        "Owner": {"ID": OWNER_ID},
        "Grants": [
            {"Grantee": {"Type": "CanonicalUser", "ID": OWNER_ID}, "Permission": "FULL_CONTROL"},
            {"Grantee": {"Type": "AmazonCustomerByEmail", "EmailAddress": EMAILS[OTHER]},
             "Permission": "READ"},
            {"Grantee": {"Type": "Group", "URI": "http://acs.amazonaws.com/groups/global/AuthenticatedUsers"},
             "Permission": "READ_ACP"},
        ],
    }  # fmt: skip
    owner.put_bucket_acl(Bucket=bucket, AccessControlPolicy=policy)
    got = owner.get_bucket_acl(Bucket=bucket)["Grants"]
    assert {"Grantee": {"Type": "CanonicalUser", "ID": OTHER_ID, "DisplayName": OTHER},
            "Permission": "READ"} in got  # fmt: skip
    assert len(got) == 3
    assert other.list_objects_v2(Bucket=bucket)["KeyCount"] == 0
    assert other.get_bucket_acl(Bucket=bucket)["Owner"]["ID"] == OWNER_ID  # READ_ACP
    assert code_of(other.put_bucket_acl, Bucket=bucket, ACL="private") == "AccessDenied"
    assert anonymous.get(f"/{bucket}?acl").status_code == 403
    bad_grantee = {**policy, "Grants": [{"Grantee": {"Type": "AmazonCustomerByEmail",
                   "EmailAddress": "nobody@example.com"}, "Permission": "READ"}]}  # fmt: skip
    assert (
        code_of(owner.put_bucket_acl, Bucket=bucket, AccessControlPolicy=bad_grantee)
        == "UnresolvableGrantByEmailAddress"
    )
    assert code_of(owner.put_bucket_acl, Bucket=bucket, GrantRead='id="0123"') == "InvalidArgument"
    assert (
        code_of(owner.put_bucket_acl, Bucket=bucket, GrantRead='uri="http://example.com/g"')
        == "InvalidArgument"
    )
    assert code_of(owner.put_bucket_acl, Bucket=bucket, ACL="world-writable") == "InvalidArgument"
    both = {"Bucket": bucket, "ACL": "private", "GrantRead": f'id="{OTHER_ID}"'}
    assert code_of(owner.put_bucket_acl, **both) == "InvalidRequest"
    url = f"/{bucket}?acl"
    for body in (b"<AccessControlPolicy><Owner><ID>x</ID></Owner></AccessControlPolicy>",
                 b"<Nonsense/>", b"<AccessControlPolicy><AccessControlList><Grant><Grantee>"
                 b"<ID>x</ID></Grantee><Permission>READ</Permission></Grant>"
                 b"</AccessControlList></AccessControlPolicy>", b"not xml"):  # fmt: skip
        response = _signed_put(owner, url, body)
        assert response.status_code == 400 and b"MalformedACLError" in response.content, body


def _signed_put(client: Any, path: str, body: bytes) -> httpx.Response:
    """A PUT with this exact body, SigV4-signed by botocore with the client's credentials."""
    from botocore.auth import S3SigV4Auth
    from botocore.awsrequest import AWSRequest

    endpoint = client.meta.endpoint_url
    request = AWSRequest("PUT", endpoint + path, data=body)
    credentials = client._request_signer._credentials
    S3SigV4Auth(credentials, "s3", "us-east-1").add_auth(request)
    return httpx.put(endpoint + path, content=body, headers=dict(request.headers.items()))


def test_object_acl_with_versions(
    clients: dict[str, Any], anonymous: httpx.Client, server: SyncServer
) -> None:
    owner = clients[OWNER]
    bucket = new_bucket()
    owner.create_bucket(Bucket=bucket)
    owner.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    first = owner.put_object(Bucket=bucket, Key="k", Body=b"one")["VersionId"]
    second = owner.put_object(Bucket=bucket, Key="k", Body=b"two")["VersionId"]
    owner.put_object_acl(Bucket=bucket, Key="k", VersionId=first, ACL="public-read")
    assert anonymous.get(f"/{bucket}/k?versionId={first}").content == b"one"
    assert anonymous.get(f"/{bucket}/k?versionId={second}").status_code == 403
    assert anonymous.get(f"/{bucket}/k").status_code == 403
    acl = owner.get_object_acl(Bucket=bucket, Key="k", VersionId=first)
    assert acl["ResponseMetadata"]["HTTPHeaders"]["x-amz-version-id"] == first
    assert len(acl["Grants"]) == 2
    assert len(owner.get_object_acl(Bucket=bucket, Key="k")["Grants"]) == 1
    other = clients[OTHER]
    assert (
        code_of(other.put_object_acl, Bucket=bucket, Key="k", ACL="public-read") == "AccessDenied"
    )


def test_delete_markers_name_who_made_them(clients: dict[str, Any]) -> None:
    """With ACLs on, a delete marker is owned by the account that deleted (as a new
    version would be); ListObjectVersions names it."""
    owner, other = clients[OWNER], clients[OTHER]
    bucket = new_bucket()
    owner.create_bucket(
        Bucket=bucket, GrantWrite=f'id="{OTHER_ID}"', GrantFullControl=f'id="{OWNER_ID}"'
    )
    owner.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    owner.put_object(Bucket=bucket, Key="k", Body=b"x")
    other.delete_object(Bucket=bucket, Key="k")
    owner.delete_object(Bucket=bucket, Key="k")
    markers = owner.list_object_versions(Bucket=bucket)["DeleteMarkers"]
    assert [m["Owner"]["ID"] for m in markers] == [OWNER_ID, OTHER_ID]


def test_acl_on_write(clients: dict[str, Any], anonymous: httpx.Client) -> None:
    """x-amz-acl and x-amz-grant-* on PutObject, CopyObject, CreateMultipartUpload and a
    POST form's acl field; the writer owns what it writes (ObjectWriter)."""
    owner, other = clients[OWNER], clients[OTHER]
    bucket = new_bucket()
    owner.create_bucket(
        Bucket=bucket, GrantWrite=f'id="{OTHER_ID}"', GrantFullControl=f'id="{OWNER_ID}"'
    )
    other.put_object(Bucket=bucket, Key="put", Body=b"p", ACL="public-read")
    other.copy_object(Bucket=bucket, Key="copy", CopySource={"Bucket": bucket, "Key": "put"},
                      GrantRead=f"emailAddress={EMAILS[OWNER]}")  # fmt: skip
    upload = other.create_multipart_upload(Bucket=bucket, Key="mpu", ACL="public-read")
    part = other.upload_part(
        Bucket=bucket, Key="mpu", UploadId=upload["UploadId"], PartNumber=1, Body=b"m"
    )
    other.complete_multipart_upload(Bucket=bucket, Key="mpu", UploadId=upload["UploadId"],
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]})  # fmt: skip
    post = other.generate_presigned_post(bucket, "posted", Fields={"acl": "public-read"},
                                         Conditions=[{"acl": "public-read"}])  # fmt: skip
    posted = httpx.post(post["url"], data=post["fields"], files={"file": b"f"})
    assert posted.status_code == 204, posted.text
    assert anonymous.get(f"/{bucket}/put").content == b"p"
    assert anonymous.get(f"/{bucket}/mpu").content == b"m"
    assert anonymous.get(f"/{bucket}/posted").content == b"f"
    assert anonymous.get(f"/{bucket}/copy").status_code == 403  # a copy keeps no ACL
    for key in ("put", "copy", "mpu", "posted"):
        assert other.get_object_acl(Bucket=bucket, Key=key)["Owner"]["ID"] == OTHER_ID, key
    listed = owner.list_objects_v2(Bucket=bucket, FetchOwner=True)["Contents"]
    assert {o["Key"]: o["Owner"]["ID"] for o in listed}["put"] == OTHER_ID
    versions = owner.list_object_versions(Bucket=bucket)["Versions"]
    assert {v["Key"]: v["Owner"]["ID"] for v in versions}["mpu"] == OTHER_ID
    # The bucket owner may do anything in its bucket, also to objects others wrote.
    assert owner.get_object(Bucket=bucket, Key="copy")["Body"].read() == b"p"


# ----------------------------------------------------------------- ownership controls


def test_ownership_controls(clients: dict[str, Any]) -> None:
    owner, other = clients[OWNER], clients[OTHER]
    bucket = new_bucket()
    owner.create_bucket(
        Bucket=bucket, GrantWrite=f'id="{OTHER_ID}"', GrantFullControl=f'id="{OWNER_ID}"'
    )
    assert (
        code_of(owner.get_bucket_ownership_controls, Bucket=bucket)
        == "OwnershipControlsNotFoundError"
    )
    preferred = {"Rules": [{"ObjectOwnership": "BucketOwnerPreferred"}]}
    owner.put_bucket_ownership_controls(Bucket=bucket, OwnershipControls=preferred)
    assert owner.get_bucket_ownership_controls(Bucket=bucket)["OwnershipControls"] == preferred
    other.put_object(Bucket=bucket, Key="given", Body=b"g", ACL="bucket-owner-full-control")
    other.put_object(Bucket=bucket, Key="kept", Body=b"k")
    assert owner.get_object_acl(Bucket=bucket, Key="given")["Owner"]["ID"] == OWNER_ID
    assert other.get_object_acl(Bucket=bucket, Key="kept")["Owner"]["ID"] == OTHER_ID
    owner.delete_bucket_ownership_controls(Bucket=bucket)
    assert (
        code_of(owner.get_bucket_ownership_controls, Bucket=bucket)
        == "OwnershipControlsNotFoundError"
    )
    enforced = {"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]}
    assert (
        code_of(owner.put_bucket_ownership_controls, Bucket=bucket, OwnershipControls=enforced)
        == "InvalidBucketAclWithObjectOwnership"
    )
    owner.put_bucket_acl(Bucket=bucket, ACL="private")
    owner.put_bucket_ownership_controls(Bucket=bucket, OwnershipControls=enforced)
    put = {"Bucket": bucket, "Key": "x", "Body": b"x"}
    assert code_of(owner.put_object, **put, ACL="public-read") == "AccessControlListNotSupported"
    assert (
        code_of(owner.put_object, **put, GrantRead=f'id="{OTHER_ID}"')
        == "AccessControlListNotSupported"
    )
    owner.put_object(**put, ACL="bucket-owner-full-control")
    assert (
        code_of(owner.put_object_acl, Bucket=bucket, Key="x", ACL="public-read")
        == "AccessControlListNotSupported"
    )
    assert (
        code_of(owner.put_bucket_acl, Bucket=bucket, ACL="public-read")
        == "AccessControlListNotSupported"
    )
    acl = owner.get_object_acl(
        Bucket=bucket, Key="kept"
    )  # written by other before: now the bucket owner's
    assert acl["Owner"]["ID"] == OWNER_ID and len(acl["Grants"]) == 1
    malformed = {"Rules": [{"ObjectOwnership": "Nobody"}]}
    assert (
        code_of(owner.put_bucket_ownership_controls, Bucket=bucket, OwnershipControls=malformed)
        == "MalformedXML"
    )
    assert code_of(other.get_bucket_ownership_controls, Bucket=bucket) == "AccessDenied"


def test_create_bucket_with_object_ownership(clients: dict[str, Any]) -> None:
    owner = clients[OWNER]
    bucket = new_bucket()
    owner.create_bucket(Bucket=bucket, ObjectOwnership="BucketOwnerEnforced")
    rules = owner.get_bucket_ownership_controls(Bucket=bucket)["OwnershipControls"]["Rules"]
    assert rules == [{"ObjectOwnership": "BucketOwnerEnforced"}]
    refused = new_bucket()
    code = code_of(
        owner.create_bucket,
        Bucket=refused,
        ObjectOwnership="BucketOwnerEnforced",
        ACL="public-read",
    )
    assert code == "InvalidBucketAclWithObjectOwnership"


# ---------------------------------------------------------------- public access block


def test_public_access_block(clients: dict[str, Any], anonymous: httpx.Client) -> None:
    owner = clients[OWNER]
    bucket = new_bucket()
    owner.create_bucket(Bucket=bucket)
    assert (
        code_of(owner.get_public_access_block, Bucket=bucket)
        == "NoSuchPublicAccessBlockConfiguration"
    )
    assert code_of(owner.get_bucket_policy_status, Bucket=bucket) == "NoSuchBucketPolicy"
    owner.put_object(Bucket=bucket, Key="k", Body=b"v", ACL="public-read")
    assert anonymous.get(f"/{bucket}/k").status_code == 200
    block = {"BlockPublicAcls": True, "IgnorePublicAcls": True, "BlockPublicPolicy": True,
             "RestrictPublicBuckets": False}  # fmt: skip
    owner.put_public_access_block(Bucket=bucket, PublicAccessBlockConfiguration=block)
    assert owner.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"] == block
    assert anonymous.get(f"/{bucket}/k").status_code == 403  # IgnorePublicAcls
    put = {"Bucket": bucket, "Key": "k2", "Body": b"v"}
    assert code_of(owner.put_object, **put, ACL="public-read") == "AccessDenied"
    assert code_of(owner.put_object, **put, ACL="authenticated-read") == "AccessDenied"
    owner.put_object(**put, GrantRead=f'id="{OTHER_ID}"')  # not public
    assert code_of(owner.put_bucket_acl, Bucket=bucket, ACL="public-read-write") == "AccessDenied"
    assert (
        code_of(owner.put_object_acl, Bucket=bucket, Key="k", ACL="public-read") == "AccessDenied"
    )
    public = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": "*",
              "Action": "s3:GetObject", "Resource": f"arn:aws:s3:::{bucket}/*"}]}  # fmt: skip
    assert (
        code_of(owner.put_bucket_policy, Bucket=bucket, Policy=json.dumps(public)) == "AccessDenied"
    )
    limited = json.loads(json.dumps(public))
    limited["Statement"][0]["Condition"] = {"IpAddress": {"aws:SourceIp": "127.0.0.0/8"}}
    owner.put_bucket_policy(Bucket=bucket, Policy=json.dumps(limited))
    assert owner.get_bucket_policy_status(Bucket=bucket)["PolicyStatus"] == {"IsPublic": False}
    owner.delete_public_access_block(Bucket=bucket)
    assert (
        code_of(owner.get_public_access_block, Bucket=bucket)
        == "NoSuchPublicAccessBlockConfiguration"
    )
    assert anonymous.get(f"/{bucket}/k").status_code == 200
    owner.put_bucket_policy(Bucket=bucket, Policy=json.dumps(public))
    assert owner.get_bucket_policy_status(Bucket=bucket)["PolicyStatus"] == {"IsPublic": True}
    assert code_of(clients[OTHER].get_public_access_block, Bucket=bucket) == "AccessDenied"


def test_admin_owns_every_bucket(clients: dict[str, Any]) -> None:
    """An admin may do what a bucket's owner may: anything but what the policy denies,
    and the policy itself is never out of the owner's (or the admin's) reach."""
    owner, admin = clients[OWNER], clients[ADMIN]
    bucket = new_bucket()
    owner.create_bucket(Bucket=bucket)
    owner.put_object(Bucket=bucket, Key="k", Body=b"v")
    arns = [f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"]
    statement = {"Effect": "Deny", "Principal": "*", "Action": "s3:*", "Resource": arns}
    deny = {"Version": "2012-10-17", "Statement": [statement]}
    owner.put_bucket_policy(Bucket=bucket, Policy=json.dumps(deny))
    assert code_of(owner.get_object, Bucket=bucket, Key="k") == "AccessDenied"
    assert code_of(admin.get_object, Bucket=bucket, Key="k") == "AccessDenied"
    assert code_of(clients[OTHER].get_bucket_policy, Bucket=bucket) == "AccessDenied"
    assert json.loads(owner.get_bucket_policy(Bucket=bucket)["Policy"]) == deny
    admin.delete_bucket_policy(Bucket=bucket)
    assert admin.get_object(Bucket=bucket, Key="k")["Body"].read() == b"v"
    admin.put_object_acl(Bucket=bucket, Key="k", ACL="public-read")
    admin.delete_object(Bucket=bucket, Key="k")
    admin.delete_bucket(Bucket=bucket)


def test_management_api_is_for_admins(server: SyncServer) -> None:
    host = server.endpoint_url.split("://", 1)[1]
    for key, status in ((ADMIN, 200), (OTHER, 403), (OWNER, 403)):
        headers = signed_headers("GET", "/-/cluster", host, key, SECRETS[key], "us-east-1")
        response = httpx.get(server.endpoint_url + "/-/cluster", headers=headers)
        assert response.status_code == status, (key, response.text)


@pytest.mark.cli
def test_aws_cli_and_curl(server: SyncServer, clients: dict[str, Any], tmp_path: Path) -> None:
    """`aws s3 cp --acl public-read` and `aws s3api put-object-acl`, read with plain curl."""
    aws = Path(sys.executable).parent / "aws"
    if not aws.exists():
        pytest.skip("the aws CLI is not installed (pip install awscli)")
    curl = shutil.which("curl")
    if curl is None:
        pytest.skip("curl is not installed")
    bucket = new_bucket("cli")
    clients[OWNER].create_bucket(Bucket=bucket)
    source = tmp_path / "page.html"
    source.write_text("<p>public</p>")
    env = dict(
        os.environ,
        AWS_CONFIG_FILE=str(tmp_path / "none"),
        AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "none"),
        AWS_ACCESS_KEY_ID=OWNER,
        AWS_SECRET_ACCESS_KEY=SECRETS[OWNER],
        AWS_DEFAULT_REGION="us-east-1",
    )

    def aws_cli(*args: str) -> str:
        argv = [str(aws), "--endpoint-url", server.endpoint_url, *args]
        done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        return done.stdout

    def curl_status(key: str) -> str:
        argv = [
            curl,
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            f"{server.endpoint_url}/{bucket}/{key}",
        ]
        return subprocess.run(argv, capture_output=True, text=True, timeout=60).stdout

    aws_cli("s3", "cp", str(source), f"s3://{bucket}/public.html", "--acl", "public-read")
    aws_cli("s3", "cp", str(source), f"s3://{bucket}/private.html")
    assert curl_status("public.html") == "200"
    assert curl_status("private.html") == "403"
    aws_cli("s3api", "put-object-acl", "--bucket", bucket, "--key", "private.html",
            "--grant-read", "uri=http://acs.amazonaws.com/groups/global/AllUsers")  # fmt: skip
    assert curl_status("private.html") == "200"
    grants = json.loads(
        aws_cli("s3api", "get-object-acl", "--bucket", bucket, "--key", "public.html")
    )
    assert {"Type": "Group", "URI": "http://acs.amazonaws.com/groups/global/AllUsers"} in [
        g["Grantee"] for g in grants["Grants"]
    ]


@pytest.mark.slow
def test_in_a_cluster(tmp_path: Path) -> None:
    """Owners, grants and ownership settings made through one node of a three-node
    cluster hold when asked of the others."""
    from tests.integration.test_cluster import KEY, SECRET_KEY, make_nodes, running

    nodes = make_nodes(tmp_path, 3, 2)
    accounts = (
        f'credentials = [{{ access_key_id = "{KEY}", secret_access_key = "{SECRET_KEY}", '
        f'admin = true }}, {{ access_key_id = "{OWNER}", secret_access_key = "{SECRETS[OWNER]}" }}, '  # noqa: E501
        f'{{ access_key_id = "{OTHER}", secret_access_key = "{SECRETS[OTHER]}" }}]'
    )
    for node in nodes:
        text = node.config.read_text()
        start = text.index("credentials = [")
        end = text.index("\n", start)
        node.config.write_text(text[:start] + accounts + text[end:])
    with running(nodes) as (a, b, c):
        owner = signed_client(a.endpoint, OWNER, SECRETS[OWNER])
        bucket = new_bucket("cluster")
        owner.create_bucket(Bucket=bucket)
        owner.put_object(Bucket=bucket, Key="open", Body=b"for all")
        owner.put_object(Bucket=bucket, Key="closed", Body=b"mine")
        owner.put_object_acl(Bucket=bucket, Key="open", ACL="public-read")
        owner.put_bucket_acl(Bucket=bucket, GrantRead=f'id="{OTHER_ID}"')
        other_b = signed_client(b.endpoint, OTHER, SECRETS[OTHER])

        def other_may_list() -> bool:
            try:
                return other_b.list_objects_v2(Bucket=bucket)["KeyCount"] == 2
            except ClientError as exc:
                assert error_code(exc) == "AccessDenied"
                return False

        wait_for("the grant reaches node b", other_may_list)
        assert httpx.get(f"{b.endpoint}/{bucket}/open").content == b"for all"
        assert code_of(other_b.get_object, Bucket=bucket, Key="closed") == "AccessDenied"
        other_c = signed_client(c.endpoint, OTHER, SECRETS[OTHER])
        assert code_of(other_c.create_bucket, Bucket=bucket) == "BucketAlreadyExists"
        assert bucket not in {x["Name"] for x in other_c.list_buckets()["Buckets"]}
        enforced = {"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]}
        owner.put_bucket_acl(Bucket=bucket, ACL="private")
        owner.put_bucket_ownership_controls(Bucket=bucket, OwnershipControls=enforced)

        def public_read_ignored() -> bool:
            return httpx.get(f"{c.endpoint}/{bucket}/open").status_code == 403

        wait_for("ACLs are off on node c too", public_read_ignored)
        assert c.s3().get_object(Bucket=bucket, Key="closed")["Body"].read() == b"mine"


def test_anonymous_writers(clients: dict[str, Any], anonymous: httpx.Client) -> None:
    """A public-read-write bucket takes anonymous writes, owned by S3's anonymous id;
    its owner still reads and deletes them."""
    owner = clients[OWNER]
    bucket = new_bucket()
    owner.create_bucket(Bucket=bucket, ACL="public-read-write")
    assert anonymous.put(f"/{bucket}/dropped", content=b"anon").status_code == 200
    acl = owner.get_object_acl(Bucket=bucket, Key="dropped")
    assert acl["Owner"]["ID"] == ANONYMOUS_ID
    assert owner.get_object(Bucket=bucket, Key="dropped")["Body"].read() == b"anon"
    assert anonymous.get(f"/{bucket}?list-type=2").status_code == 200
    assert anonymous.get(f"/{bucket}/dropped").status_code == 403  # the object is private
    owner.put_object(Bucket=bucket, Key="mine", Body=b"m")
    versions = owner.list_object_versions(Bucket=bucket)["Versions"]
    assert {v["Key"]: v["Owner"]["ID"] for v in versions}["mine"] == OWNER_ID
    assert anonymous.delete(f"/{bucket}/dropped").status_code == 204
    owner.put_bucket_acl(Bucket=bucket, ACL="private")
    assert anonymous.put(f"/{bucket}/again", content=b"x").status_code == 403


def test_post_form_grant_fields(clients: dict[str, Any], server: SyncServer) -> None:
    owner, other = clients[OWNER], clients[OTHER]
    bucket = new_bucket()
    owner.create_bucket(Bucket=bucket)
    grant = f'id="{OTHER_ID}"'
    post = owner.generate_presigned_post(
        bucket, "granted", Fields={"x-amz-grant-read": grant},
        Conditions=[{"x-amz-grant-read": grant}],
    )  # fmt: skip
    posted = httpx.post(post["url"], data=post["fields"], files={"file": b"form"})
    assert posted.status_code == 204, posted.text
    assert other.get_object(Bucket=bucket, Key="granted")["Body"].read() == b"form"
    unsigned = owner.generate_presigned_post(bucket, "sneaky")
    fields = {**unsigned["fields"], "acl": "public-read"}  # not in the signed policy
    refused = httpx.post(unsigned["url"], data=fields, files={"file": b"x"})
    assert refused.status_code == 403, refused.text
