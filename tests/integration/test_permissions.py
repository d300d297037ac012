"""Accounts, ownership, ACLs, ownership controls and public access block, with three
configured accounts (owner, other, admin) and anonymous callers, through boto3 at its
defaults and plain httpx, in standalone and erasure-node mode.

The table: requester x bucket policy x ACL x ownership setting x public access block x
action → allowed or AccessDenied, the expectation written from AWS's documented
evaluation (`expected`), every row asked of a real server.
"""

from __future__ import annotations

import itertools
import json
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from botocore.exceptions import ClientError

from shoal.app.server import SyncServer
from shoal.auth.accounts import canonical_id
from tests.integration.conftest import erasure_config, error_code, signed_client

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
    """AWS's evaluation, restated: admin; explicit Deny; the owner; a policy Allow (a public
    one only for the owner's account under RestrictPublicBuckets); ACL grants unless ACLs
    are disabled (public grants ignored under IgnorePublicAcls)."""
    iam = IAM[action]
    if requester == "admin":
        return True
    if policy == "deny-all-get" and iam == "s3:GetObject":
        return False
    if requester == "owner":
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
