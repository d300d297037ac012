"""Object lock through boto3 (and the aws CLI once) against a standalone server: lock
buckets and their configuration, retention and legal holds on versions, and what they
refuse: deleting a protected version, weakening a retention, bypassing GOVERNANCE
without the header or without s3:BypassGovernanceRetention, COMPLIANCE ever."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from shoal.app.server import SyncServer
from tests.integration.conftest import (
    AwsCli,
    auth_config,
    client_error,
    erasure_config,
    error_code,
    error_status,
    signed_client,
)

KEY, SECRET = "AKIDLOCK", "lock-secret"


@pytest.fixture(scope="module", params=["http", "https", "http-erasure"])
def server(
    request: pytest.FixtureRequest,
    tls_files: tuple[str, str],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[SyncServer]:
    """Over HTTPS boto3 sends its checksums as aws-chunked trailers, over HTTP as headers:
    both satisfy the lock bucket's integrity rule. An erasure node keeps the same rules."""
    config: dict[str, Any] = auth_config((KEY, SECRET))
    if request.param.endswith("erasure"):
        config |= erasure_config(tmp_path_factory.mktemp("lock-erasure"))
    if request.param == "https":
        config["server"] = {"tls": {"cert_file": tls_files[0], "key_file": tls_files[1]}}
    with SyncServer(config) as running:
        yield running


@pytest.fixture(scope="module")
def s3(server: SyncServer, tls_files: tuple[str, str]) -> Any:
    verify = tls_files[0] if server.endpoint_url.startswith("https") else True
    return signed_client(server.endpoint_url, KEY, SECRET, verify)


@pytest.fixture(scope="module")
def s3_required(server: SyncServer, tls_files: tuple[str, str]) -> Any:
    """boto3 sending checksums only where an operation's model requires them."""
    verify = tls_files[0] if server.endpoint_url.startswith("https") else True
    return signed_client(
        server.endpoint_url,
        KEY,
        SECRET,
        verify,
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
    )


@pytest.fixture
def locked(s3: Any) -> str:
    name = f"lock-{uuid.uuid4().hex[:16]}"
    s3.create_bucket(Bucket=name, ObjectLockEnabledForBucket=True)
    return name


@pytest.fixture
def plain(s3: Any) -> str:
    name = f"plain-{uuid.uuid4().hex[:16]}"
    s3.create_bucket(Bucket=name)
    return name


def _later(**delta: float) -> dt.datetime:
    return (dt.datetime.now(dt.UTC) + dt.timedelta(**delta)).replace(microsecond=0)


def _md5(body: bytes) -> str:
    return base64.b64encode(hashlib.md5(body).digest()).decode()


def test_lock_bucket_is_versioned_and_configured(s3: Any, locked: str) -> None:
    assert s3.get_bucket_versioning(Bucket=locked)["Status"] == "Enabled"
    config = s3.get_object_lock_configuration(Bucket=locked)["ObjectLockConfiguration"]
    assert config == {"ObjectLockEnabled": "Enabled"}
    rule = {"DefaultRetention": {"Mode": "GOVERNANCE", "Days": 2}}
    s3.put_object_lock_configuration(
        Bucket=locked, ObjectLockConfiguration={"ObjectLockEnabled": "Enabled", "Rule": rule}
    )
    config = s3.get_object_lock_configuration(Bucket=locked)["ObjectLockConfiguration"]
    assert config == {"ObjectLockEnabled": "Enabled", "Rule": rule}
    error = client_error(
        s3.put_bucket_versioning, Bucket=locked, VersioningConfiguration={"Status": "Suspended"}
    )
    assert error_code(error) == "InvalidBucketState" and error_status(error) == 409
    assert s3.get_bucket_versioning(Bucket=locked)["Status"] == "Enabled"


def test_lock_configuration_on_other_buckets(s3: Any, plain: str) -> None:
    error = client_error(s3.get_object_lock_configuration, Bucket=plain)
    assert (
        error_code(error) == "ObjectLockConfigurationNotFoundError" and error_status(error) == 404
    )
    enabled = {"ObjectLockEnabled": "Enabled"}
    error = client_error(
        s3.put_object_lock_configuration, Bucket=plain, ObjectLockConfiguration=enabled
    )
    assert error_code(error) == "InvalidBucketState" and error_status(error) == 409
    # A versioned bucket can have object lock turned on (and then never off).
    s3.put_bucket_versioning(Bucket=plain, VersioningConfiguration={"Status": "Enabled"})
    s3.put_object_lock_configuration(Bucket=plain, ObjectLockConfiguration=enabled)
    config = s3.get_object_lock_configuration(Bucket=plain)["ObjectLockConfiguration"]
    assert config == enabled


@pytest.mark.parametrize(
    "rule",
    [
        {"DefaultRetention": {"Mode": "GOVERNANCE"}},
        {"DefaultRetention": {"Mode": "GOVERNANCE", "Days": 1, "Years": 1}},
        {"DefaultRetention": {"Mode": "FOREVER", "Days": 1}},
        {"DefaultRetention": {"Mode": "COMPLIANCE", "Days": 0}},
        {"DefaultRetention": {"Mode": "COMPLIANCE", "Years": -1}},
    ],
)
def test_bad_lock_configurations(s3: Any, locked: str, rule: dict[str, Any]) -> None:
    config = {"ObjectLockEnabled": "Enabled", "Rule": rule}
    error = client_error(
        s3.put_object_lock_configuration, Bucket=locked, ObjectLockConfiguration=config
    )
    assert error_code(error) in ("MalformedXML", "InvalidArgument") and error_status(error) == 400
    stored = s3.get_object_lock_configuration(Bucket=locked)["ObjectLockConfiguration"]
    assert "Rule" not in stored


def test_retention_on_write_and_governance_bypass(s3: Any, locked: str) -> None:
    until = _later(days=1)
    put = s3.put_object(
        Bucket=locked,
        Key="k",
        Body=b"locked",
        ObjectLockMode="GOVERNANCE",
        ObjectLockRetainUntilDate=until,
    )
    vid = put["VersionId"]
    head = s3.head_object(Bucket=locked, Key="k")
    assert head["ObjectLockMode"] == "GOVERNANCE"
    assert head["ObjectLockRetainUntilDate"] == until
    got = s3.get_object_retention(Bucket=locked, Key="k", VersionId=vid)["Retention"]
    assert got == {"Mode": "GOVERNANCE", "RetainUntilDate": until}
    # Deleting without a version id only adds a marker: allowed.
    marker = s3.delete_object(Bucket=locked, Key="k")
    assert marker["DeleteMarker"] is True
    # The version itself is protected.
    error = client_error(s3.delete_object, Bucket=locked, Key="k", VersionId=vid)
    assert error_code(error) == "AccessDenied" and error_status(error) == 403
    batch = s3.delete_objects(Bucket=locked, Delete={"Objects": [{"Key": "k", "VersionId": vid}]})
    assert [e["Code"] for e in batch["Errors"]] == ["AccessDenied"]
    assert s3.get_object(Bucket=locked, Key="k", VersionId=vid)["Body"].read() == b"locked"
    # Shortening GOVERNANCE needs the bypass; lengthening does not.
    shorter = {"Mode": "GOVERNANCE", "RetainUntilDate": _later(hours=1)}
    error = client_error(
        s3.put_object_retention, Bucket=locked, Key="k", VersionId=vid, Retention=shorter
    )
    assert error_code(error) == "AccessDenied"
    longer = {"Mode": "GOVERNANCE", "RetainUntilDate": _later(days=2)}
    s3.put_object_retention(Bucket=locked, Key="k", VersionId=vid, Retention=longer)
    s3.put_object_retention(
        Bucket=locked, Key="k", VersionId=vid, Retention=shorter, BypassGovernanceRetention=True
    )
    got = s3.get_object_retention(Bucket=locked, Key="k", VersionId=vid)["Retention"]
    assert got["RetainUntilDate"] == shorter["RetainUntilDate"]
    # With the bypass header (and, auth on, the configured credential's rights) it goes.
    gone = s3.delete_object(Bucket=locked, Key="k", VersionId=vid, BypassGovernanceRetention=True)
    assert gone["VersionId"] == vid
    error = client_error(s3.get_object, Bucket=locked, Key="k", VersionId=vid)
    assert error_code(error) == "NoSuchVersion"


def test_compliance_is_never_bypassed(s3: Any, locked: str) -> None:
    until = _later(days=1)
    vid = s3.put_object(
        Bucket=locked,
        Key="k",
        Body=b"c",
        ObjectLockMode="COMPLIANCE",
        ObjectLockRetainUntilDate=until,
    )["VersionId"]
    error = client_error(
        s3.delete_object, Bucket=locked, Key="k", VersionId=vid, BypassGovernanceRetention=True
    )
    assert error_code(error) == "AccessDenied"
    for retention in (
        {"Mode": "COMPLIANCE", "RetainUntilDate": _later(hours=2)},
        {"Mode": "GOVERNANCE", "RetainUntilDate": _later(days=3)},
    ):
        error = client_error(
            s3.put_object_retention,
            Bucket=locked,
            Key="k",
            VersionId=vid,
            Retention=retention,
            BypassGovernanceRetention=True,
        )
        assert error_code(error) == "AccessDenied"
    extended = {"Mode": "COMPLIANCE", "RetainUntilDate": _later(days=5)}
    s3.put_object_retention(Bucket=locked, Key="k", VersionId=vid, Retention=extended)
    head = s3.head_object(Bucket=locked, Key="k", VersionId=vid)
    assert head["ObjectLockMode"] == "COMPLIANCE"
    assert head["ObjectLockRetainUntilDate"] == extended["RetainUntilDate"]


def test_legal_hold_blocks_deletion_whatever_the_mode(s3: Any, locked: str) -> None:
    vid = s3.put_object(Bucket=locked, Key="k", Body=b"h", ObjectLockLegalHoldStatus="ON")[
        "VersionId"
    ]
    head = s3.head_object(Bucket=locked, Key="k")
    assert head["ObjectLockLegalHoldStatus"] == "ON" and "ObjectLockMode" not in head
    assert s3.get_object_legal_hold(Bucket=locked, Key="k")["LegalHold"] == {"Status": "ON"}
    error = client_error(
        s3.delete_object, Bucket=locked, Key="k", VersionId=vid, BypassGovernanceRetention=True
    )
    assert error_code(error) == "AccessDenied"
    s3.put_object_legal_hold(Bucket=locked, Key="k", VersionId=vid, LegalHold={"Status": "OFF"})
    assert s3.get_object_legal_hold(Bucket=locked, Key="k")["LegalHold"] == {"Status": "OFF"}
    s3.delete_object(Bucket=locked, Key="k", VersionId=vid)
    assert "Versions" not in s3.list_object_versions(Bucket=locked)


def test_default_retention_applies_to_new_versions(s3: Any, locked: str) -> None:
    rule = {"DefaultRetention": {"Mode": "COMPLIANCE", "Days": 1}}
    s3.put_object_lock_configuration(
        Bucket=locked, ObjectLockConfiguration={"ObjectLockEnabled": "Enabled", "Rule": rule}
    )
    before = dt.datetime.now(dt.UTC)
    vid = s3.put_object(Bucket=locked, Key="k", Body=b"d")["VersionId"]
    retention = s3.get_object_retention(Bucket=locked, Key="k", VersionId=vid)["Retention"]
    assert retention["Mode"] == "COMPLIANCE"
    expected = before + dt.timedelta(days=1)
    assert abs((retention["RetainUntilDate"] - expected).total_seconds()) < 60
    # A version's own headers win over the default.
    own = _later(days=3)
    put = s3.put_object(
        Bucket=locked,
        Key="own",
        Body=b"o",
        ObjectLockMode="GOVERNANCE",
        ObjectLockRetainUntilDate=own,
    )
    head = s3.head_object(Bucket=locked, Key="own", VersionId=put["VersionId"])
    assert (head["ObjectLockMode"], head["ObjectLockRetainUntilDate"]) == ("GOVERNANCE", own)
    # Multipart and copies get it as well.
    upload = s3.create_multipart_upload(Bucket=locked, Key="mp")["UploadId"]
    part = s3.upload_part(Bucket=locked, Key="mp", UploadId=upload, PartNumber=1, Body=b"p")
    done = s3.complete_multipart_upload(
        Bucket=locked,
        Key="mp",
        UploadId=upload,
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]},
    )
    assert s3.head_object(Bucket=locked, Key="mp", VersionId=done["VersionId"])[
        "ObjectLockMode"
    ] == ("COMPLIANCE")
    copy = s3.copy_object(Bucket=locked, Key="cp", CopySource={"Bucket": locked, "Key": "k"})
    head = s3.head_object(Bucket=locked, Key="cp", VersionId=copy["VersionId"])
    assert head["ObjectLockMode"] == "COMPLIANCE"


def test_lock_headers_on_multipart_and_copy(s3: Any, locked: str) -> None:
    until = _later(days=1)
    upload = s3.create_multipart_upload(
        Bucket=locked,
        Key="mp",
        ObjectLockMode="GOVERNANCE",
        ObjectLockRetainUntilDate=until,
        ObjectLockLegalHoldStatus="ON",
    )["UploadId"]
    part = s3.upload_part(Bucket=locked, Key="mp", UploadId=upload, PartNumber=1, Body=b"p")
    done = s3.complete_multipart_upload(
        Bucket=locked,
        Key="mp",
        UploadId=upload,
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]},
    )
    head = s3.head_object(Bucket=locked, Key="mp", VersionId=done["VersionId"])
    assert head["ObjectLockMode"] == "GOVERNANCE"
    assert head["ObjectLockRetainUntilDate"] == until
    assert head["ObjectLockLegalHoldStatus"] == "ON"
    copy = s3.copy_object(
        Bucket=locked,
        Key="cp",
        CopySource={"Bucket": locked, "Key": "mp"},
        ObjectLockMode="COMPLIANCE",
        ObjectLockRetainUntilDate=until,
    )
    head = s3.head_object(Bucket=locked, Key="cp", VersionId=copy["VersionId"])
    assert head["ObjectLockMode"] == "COMPLIANCE"
    assert "ObjectLockLegalHoldStatus" not in head  # a copy does not inherit the hold


def test_lock_requests_refused(s3: Any, locked: str, plain: str) -> None:
    past = dt.datetime.now(dt.UTC) - dt.timedelta(days=1)
    error = client_error(
        s3.put_object,
        Bucket=locked,
        Key="k",
        Body=b"x",
        ObjectLockMode="GOVERNANCE",
        ObjectLockRetainUntilDate=past,
    )
    assert error_code(error) == "InvalidArgument"
    error = client_error(
        s3.put_object,
        Bucket=plain,
        Key="k",
        Body=b"x",
        ObjectLockMode="GOVERNANCE",
        ObjectLockRetainUntilDate=_later(days=1),
    )
    assert error_code(error) == "InvalidRequest"
    error = client_error(
        s3.put_object, Bucket=plain, Key="k", Body=b"x", ObjectLockLegalHoldStatus="ON"
    )
    assert error_code(error) == "InvalidRequest"
    s3.put_object(Bucket=plain, Key="k", Body=b"x")
    retention = {"Mode": "GOVERNANCE", "RetainUntilDate": _later(days=1)}
    error = client_error(s3.put_object_retention, Bucket=plain, Key="k", Retention=retention)
    assert error_code(error) == "InvalidRequest"
    error = client_error(s3.get_object_legal_hold, Bucket=plain, Key="k")
    assert error_code(error) == "InvalidRequest"
    # An object with no retention has no retention to show.
    s3.put_object(Bucket=locked, Key="free", Body=b"f")
    error = client_error(s3.get_object_retention, Bucket=locked, Key="free")
    assert error_code(error) == "NoSuchObjectLockConfiguration" and error_status(error) == 404
    past_retention = {"Mode": "GOVERNANCE", "RetainUntilDate": past}
    error = client_error(
        s3.put_object_retention, Bucket=locked, Key="free", Retention=past_retention
    )
    assert error_code(error) == "InvalidArgument"
    error = client_error(s3.put_object_retention, Bucket=locked, Key="absent", Retention=retention)
    assert error_code(error) == "NoSuchKey"


def test_lock_bucket_writes_need_an_integrity_header(
    s3: Any, s3_required: Any, locked: str
) -> None:
    body = b"needs a digest"
    error = client_error(s3_required.put_object, Bucket=locked, Key="k", Body=body)
    assert error_code(error) == "InvalidRequest"
    assert "Versions" not in s3.list_object_versions(Bucket=locked)
    s3_required.put_object(Bucket=locked, Key="k", Body=body, ContentMD5=_md5(body))
    s3.put_object(Bucket=locked, Key="k2", Body=body)  # boto3's default checksum suffices
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=locked)["Contents"]]
    assert keys == ["k", "k2"]


def test_bypass_needs_the_permission(server: SyncServer, s3: Any, locked: str) -> None:
    """x-amz-bypass-governance-retention is honoured only for a caller the bucket policy
    does not deny s3:BypassGovernanceRetention."""
    vid = s3.put_object(
        Bucket=locked,
        Key="k",
        Body=b"g",
        ObjectLockMode="GOVERNANCE",
        ObjectLockRetainUntilDate=_later(days=1),
    )["VersionId"]
    deny = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Deny",
                "Principal": "*",
                "Action": "s3:BypassGovernanceRetention",
                "Resource": f"arn:aws:s3:::{locked}/*",
            }
        ],
    }
    s3.put_bucket_policy(Bucket=locked, Policy=json.dumps(deny))
    error = client_error(
        s3.delete_object, Bucket=locked, Key="k", VersionId=vid, BypassGovernanceRetention=True
    )
    assert error_code(error) == "AccessDenied"
    shorter = {"Mode": "GOVERNANCE", "RetainUntilDate": _later(hours=1)}
    error = client_error(
        s3.put_object_retention,
        Bucket=locked,
        Key="k",
        VersionId=vid,
        Retention=shorter,
        BypassGovernanceRetention=True,
    )
    assert error_code(error) == "AccessDenied"
    s3.delete_bucket_policy(Bucket=locked)
    s3.delete_object(Bucket=locked, Key="k", VersionId=vid, BypassGovernanceRetention=True)
    assert "Versions" not in s3.list_object_versions(Bucket=locked)


def test_aws_cli_object_lock(server: SyncServer, s3: Any, locked: str, tmp_path: Path) -> None:
    if server.endpoint_url.startswith("https"):
        pytest.skip("one CLI run is enough: HTTP only")
    api = AwsCli(tmp_path, server.endpoint_url, KEY, SECRET).api

    vid = s3.put_object(Bucket=locked, Key="k", Body=b"x")["VersionId"]
    until = _later(days=1).strftime("%Y-%m-%dT%H:%M:%SZ")
    api(
        "put-object-retention",
        "--bucket",
        locked,
        "--key",
        "k",
        "--version-id",
        vid,
        "--retention",
        f"Mode=GOVERNANCE,RetainUntilDate={until}",
    )
    got = api("get-object-retention", "--bucket", locked, "--key", "k", "--version-id", vid)
    assert got["Retention"]["Mode"] == "GOVERNANCE"
    config = api("get-object-lock-configuration", "--bucket", locked)
    assert config["ObjectLockConfiguration"]["ObjectLockEnabled"] == "Enabled"


def test_lock_headers_need_their_read_permissions(s3: Any, locked: str) -> None:
    """GET/HEAD show x-amz-object-lock-* only to callers allowed s3:GetObjectRetention
    (mode, date) and s3:GetObjectLegalHold (hold), as S3 does."""
    s3.put_object(
        Bucket=locked,
        Key="k",
        Body=b"x",
        ObjectLockMode="GOVERNANCE",
        ObjectLockRetainUntilDate=_later(days=1),
        ObjectLockLegalHoldStatus="ON",
    )
    head = s3.head_object(Bucket=locked, Key="k")
    assert head["ObjectLockMode"] == "GOVERNANCE" and head["ObjectLockLegalHoldStatus"] == "ON"
    deny = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Deny",
                "Principal": "*",
                "Action": "s3:GetObjectRetention",
                "Resource": f"arn:aws:s3:::{locked}/*",
            }
        ],
    }
    s3.put_bucket_policy(Bucket=locked, Policy=json.dumps(deny))
    for answer in (s3.head_object(Bucket=locked, Key="k"), s3.get_object(Bucket=locked, Key="k")):
        assert "ObjectLockMode" not in answer and "ObjectLockRetainUntilDate" not in answer
        assert answer["ObjectLockLegalHoldStatus"] == "ON"
    s3.delete_bucket_policy(Bucket=locked)
