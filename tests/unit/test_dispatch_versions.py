"""Dispatch of versioning and object-lock requests: each sub-resource reaches its
operation with the IAM action AWS checks (the version's own where a version is named),
and nothing of it is left in the 501 tables."""

from __future__ import annotations

import pytest

from shoal.app.dispatch import UNSUPPORTED_BUCKET, UNSUPPORTED_OBJECT, resolve
from shoal.app.errors import InvalidArgument, MethodNotAllowed
from shoal.app.handlers.registry import HANDLERS
from shoal.app.headers import version_headers, version_param

V = "0123456789abcdef01234567"

CASES = [
    ("GET", b"/bkt", {"versioning": ""}, "GetBucketVersioning", "s3:GetBucketVersioning"),
    ("PUT", b"/bkt", {"versioning": ""}, "PutBucketVersioning", "s3:PutBucketVersioning"),
    ("GET", b"/bkt", {"versions": ""}, "ListObjectVersions", "s3:ListBucketVersions"),
    (
        "GET",
        b"/bkt",
        {"versions": "", "prefix": "a", "key-marker": "k", "version-id-marker": V},
        "ListObjectVersions",
        "s3:ListBucketVersions",
    ),
    (
        "GET",
        b"/bkt",
        {"object-lock": ""},
        "GetObjectLockConfiguration",
        "s3:GetBucketObjectLockConfiguration",
    ),
    (
        "PUT",
        b"/bkt",
        {"object-lock": ""},
        "PutObjectLockConfiguration",
        "s3:PutBucketObjectLockConfiguration",
    ),
    ("GET", b"/bkt/k", {"retention": ""}, "GetObjectRetention", "s3:GetObjectRetention"),
    ("PUT", b"/bkt/k", {"retention": ""}, "PutObjectRetention", "s3:PutObjectRetention"),
    (
        "PUT",
        b"/bkt/k",
        {"retention": "", "versionId": V},
        "PutObjectRetention",
        "s3:PutObjectRetention",
    ),
    ("GET", b"/bkt/k", {"legal-hold": ""}, "GetObjectLegalHold", "s3:GetObjectLegalHold"),
    ("PUT", b"/bkt/k", {"legal-hold": ""}, "PutObjectLegalHold", "s3:PutObjectLegalHold"),
    ("GET", b"/bkt/k", {}, "GetObject", "s3:GetObject"),
    ("GET", b"/bkt/k", {"versionId": V}, "GetObject", "s3:GetObjectVersion"),
    ("GET", b"/bkt/k", {"versionId": "null"}, "GetObject", "s3:GetObjectVersion"),
    ("HEAD", b"/bkt/k", {"versionId": V}, "HeadObject", "s3:GetObjectVersion"),
    ("DELETE", b"/bkt/k", {}, "DeleteObject", "s3:DeleteObject"),
    ("DELETE", b"/bkt/k", {"versionId": V}, "DeleteObject", "s3:DeleteObjectVersion"),
    ("GET", b"/bkt/k", {"acl": "", "versionId": V}, "GetObjectAcl", "s3:GetObjectVersionAcl"),
    # A copy names its source's version in a header: the write itself is a PutObject.
    ("PUT", b"/bkt/k", {}, "CopyObject", "s3:PutObject"),
]


@pytest.mark.parametrize(("method", "path", "query", "name", "action"), CASES)
def test_versioning_and_lock_dispatch(
    method: str, path: bytes, query: dict[str, str], name: str, action: str
) -> None:
    headers = {"x-amz-copy-source": "/bkt/src?versionId=null"} if name == "CopyObject" else {}
    op = resolve(method, path, "127.0.0.1:9000", query, headers)
    assert (op.name, op.action) == (name, action)
    assert op.name in HANDLERS


def test_nothing_of_versioning_is_unsupported() -> None:
    assert not {"versioning", "versions", "object-lock"} & UNSUPPORTED_BUCKET
    assert not {"retention", "legal-hold", "versionId"} & UNSUPPORTED_OBJECT
    # Tagging is served, with or without a version.
    assert resolve("GET", b"/bkt/k", "", {"tagging": "", "versionId": V}, {}).action == (
        "s3:GetObjectVersionTagging"
    )


@pytest.mark.parametrize(
    ("method", "path", "query"),
    [
        ("DELETE", b"/bkt", "versions"),
        ("PUT", b"/bkt", "versions"),
        ("POST", b"/bkt", "versions"),
        ("DELETE", b"/bkt", "versioning"),
        ("DELETE", b"/bkt", "object-lock"),
        ("POST", b"/bkt", "object-lock"),
        ("DELETE", b"/bkt/k", "retention"),
        ("DELETE", b"/bkt/k", "legal-hold"),
        ("POST", b"/bkt/k", "retention"),
    ],
)
def test_other_methods_on_these_subresources_are_405(method: str, path: bytes, query: str) -> None:
    """Never a fall-through to DeleteBucket, DeleteObject, CreateBucket or PostObject."""
    with pytest.raises(MethodNotAllowed):
        resolve(method, path, "", {query: ""}, {})


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        (V, True),
        ("null", True),
        ("", False),
        ("NULL", False),
        (V.upper(), False),
        (V[:-1], False),
        ("../" + V, False),
        (V + "\x00", False),
    ],
)
def test_version_param(value: str, ok: bool) -> None:
    """A versionId is "null" or an id shoal could have made; anything else is 400
    InvalidArgument before any storage is touched (so it never reaches a path)."""
    if ok:
        assert version_param({"versionId": value}) == value
        return
    with pytest.raises(InvalidArgument) as info:
        version_param({"versionId": value})
    assert info.value.status == 400


def test_version_headers() -> None:
    assert version_param({}) is None
    assert version_headers(V, versioned=False) == {"x-amz-version-id": V}
    assert version_headers("null", versioned=False) == {}
    assert version_headers("null", versioned=True) == {"x-amz-version-id": "null"}
