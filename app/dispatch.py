"""The one place that maps a request to an S3 operation.

Method, addressing style (path or virtual-hosted), bucket, key and sub-resource query
are turned into an `Operation` once; handlers never look at the URL shape again. The
IAM action each operation needs (auth/actions.py's table) travels with it: a request
that names a version (`versionId`) needs the version's action (s3:GetObjectVersion, ...).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from functools import lru_cache
from urllib.parse import unquote

from shoal.app.errors import (
    InvalidArgument,
    InvalidBucketName,
    InvalidRequest,
    KeyTooLongError,
    MethodNotAllowed,
    NotImplementedFeature,
)
from shoal.auth.actions import action_for
from shoal.storage.backend import MAX_KEY_BYTES


@dataclass(frozen=True)
class Operation:
    name: str
    bucket: str | None
    key: str | None
    action: str  # the IAM action, e.g. "s3:GetObject"


#: Sub-resources shoal does not implement: answered 501 NotImplemented, never a 500 or
#: a silent fall-through to the plain operation.
UNSUPPORTED_BUCKET = frozenset(
    [
        "accelerate",
        "analytics",
        "intelligent-tiering",
        "inventory",
        "metadataTable",
        "metrics",
        "notification",
        "replication",
        "requestPayment",
        "website",
    ]
)
UNSUPPORTED_OBJECT = frozenset(
    [
        "renameObject",
        "restore",
        "select",
        "torrent",
    ]
)

#: Sub-resources served with these methods only (HEAD reads like GET): any other method
#: is 405, never a fall-through to the plain operation (DELETE ?versions must not
#: delete the bucket, nor DELETE ?retention the object).
SUBRESOURCE_METHODS = {
    "versioning": frozenset({"GET", "HEAD", "PUT"}),
    "versions": frozenset({"GET", "HEAD"}),
    "object-lock": frozenset({"GET", "HEAD", "PUT"}),
    "retention": frozenset({"GET", "HEAD", "PUT"}),
    "legal-hold": frozenset({"GET", "HEAD", "PUT"}),
    "attributes": frozenset({"GET", "HEAD"}),
    "logging": frozenset({"GET", "HEAD", "PUT"}),
    "acl": frozenset({"GET", "HEAD", "PUT"}),
    "ownershipControls": frozenset({"GET", "HEAD", "PUT", "DELETE"}),
    "publicAccessBlock": frozenset({"GET", "HEAD", "PUT", "DELETE"}),
    "policyStatus": frozenset({"GET", "HEAD"}),
    "tagging": frozenset({"GET", "HEAD", "PUT", "DELETE"}),
    "lifecycle": frozenset({"GET", "HEAD", "PUT", "DELETE"}),
    "encryption": frozenset({"GET", "HEAD", "PUT", "DELETE"}),
}

_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_BAD_PREFIXES = ("xn--", "sthree-", "amzn-s3-demo-")
_BAD_SUFFIXES = ("-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3")


@lru_cache(maxsize=1024)
def valid_bucket_name(name: str) -> bool:
    """S3's general-purpose bucket naming rules (cached: asked on every request, and the
    IPv4 test raises for every good name)."""
    if not _BUCKET_RE.match(name) or ".." in name or ".-" in name or "-." in name:
        return False
    if name.startswith(_BAD_PREFIXES) or name.endswith(_BAD_SUFFIXES):
        return False
    try:
        ipaddress.IPv4Address(name)
    except ValueError:
        return True
    return False


def split_target(
    raw_path: bytes, host: str, base_domain: str | None
) -> tuple[str | None, str | None]:
    """(bucket, key) from the raw path and Host header.

    The key is decoded from the raw path so that '%2F', '//' and '..' survive exactly
    as the client sent them.
    """
    path = raw_path.decode("latin-1")
    bucket = _virtual_host_bucket(host, base_domain)
    if bucket is None:
        rest = path[1:] if path.startswith("/") else path
        if not rest:
            return None, None
        bucket_part, sep, key_part = rest.partition("/")
        bucket = unquote(bucket_part)
        if not sep or key_part == "":
            return bucket, None
        return bucket, _decode_key(key_part)
    key_part = path[1:] if path.startswith("/") else path
    return bucket, (_decode_key(key_part) if key_part else None)


def _decode_key(part: str) -> str:
    try:
        return unquote(part, errors="strict")
    except UnicodeDecodeError as exc:
        raise InvalidRequest("Object key is not valid UTF-8") from exc


@lru_cache(maxsize=256)
def _virtual_host_bucket(host: str, base_domain: str | None) -> str | None:
    """The bucket a virtual-hosted Host names (`<bucket>.<base_domain>` or
    `<bucket>.localhost`), or None for path style. The base domain itself is path style:
    clients that address buckets by host still send ListBuckets to it, and
    `s3.localhost` must not read as bucket `s3` of `localhost`."""
    hostname = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    hostname = hostname.lower().rstrip(".")
    domains = [d.lower().rstrip(".") for d in (base_domain, "localhost") if d]
    if hostname in domains:
        return None
    for domain in domains:
        if hostname.endswith("." + domain):
            return hostname[: -len(domain) - 1]
    return None


def resolve(
    method: str,
    raw_path: bytes,
    host: str,
    query: dict[str, str],
    headers: dict[str, str],
    *,
    base_domain: str | None = None,
) -> Operation:
    """Turn a request into the operation it asks for, or raise the S3 error AWS gives."""
    bucket, key = split_target(raw_path, host, base_domain)
    if bucket is None:
        if method in ("GET", "HEAD"):
            return _op("ListBuckets", None, None)
        raise MethodNotAllowed(Method=method, ResourceType="SERVICE")
    if not valid_bucket_name(bucket):
        raise InvalidBucketName(BucketName=bucket)
    if key is None:
        return _op(_bucket_operation(method, query), bucket, None)
    if len(key.encode("utf-8", "surrogatepass")) > MAX_KEY_BYTES:
        raise KeyTooLongError(Size=len(key.encode()), MaxSizeAllowed=MAX_KEY_BYTES)
    name = _object_operation(method, query, headers)
    return _op(name, bucket, key, version="versionId" in query)


def _op(name: str, bucket: str | None, key: str | None, *, version: bool = False) -> Operation:
    return Operation(name, bucket, key, action_for(name, version=version))


def _unsupported(query: dict[str, str], names: frozenset[str], method: str, kind: str) -> None:
    for name in query:
        if name in names:
            raise NotImplementedFeature(f"The {name} sub-resource is not implemented.")
        allowed = SUBRESOURCE_METHODS.get(name)
        if allowed is not None and method not in allowed:
            raise MethodNotAllowed(Method=method, ResourceType=kind)


def _bucket_operation(method: str, query: dict[str, str]) -> str:
    _unsupported(query, UNSUPPORTED_BUCKET, method, "BUCKET")
    if method == "GET":
        if "location" in query:
            return "GetBucketLocation"
        if "policy" in query:
            return "GetBucketPolicy"
        if "uploads" in query:
            return "ListMultipartUploads"
        if "versioning" in query:
            return "GetBucketVersioning"
        if "versions" in query:
            return "ListObjectVersions"
        if "object-lock" in query:
            return "GetObjectLockConfiguration"
        if "acl" in query:
            return "GetBucketAcl"
        if "ownershipControls" in query:
            return "GetBucketOwnershipControls"
        if "publicAccessBlock" in query:
            return "GetPublicAccessBlock"
        if "policyStatus" in query:
            return "GetBucketPolicyStatus"
        if "cors" in query:
            return "GetBucketCors"
        if "logging" in query:
            return "GetBucketLogging"
        if "tagging" in query:
            return "GetBucketTagging"
        if "lifecycle" in query:
            return "GetBucketLifecycleConfiguration"
        if "encryption" in query:
            return "GetBucketEncryption"
        return _list_operation(query)
    if method == "HEAD":
        return "HeadBucket"
    if method == "PUT":
        if "policy" in query:
            return "PutBucketPolicy"
        if "cors" in query:
            return "PutBucketCors"
        if "logging" in query:
            return "PutBucketLogging"
        if "versioning" in query:
            return "PutBucketVersioning"
        if "object-lock" in query:
            return "PutObjectLockConfiguration"
        if "tagging" in query:
            return "PutBucketTagging"
        if "lifecycle" in query:
            return "PutBucketLifecycleConfiguration"
        if "acl" in query:
            return "PutBucketAcl"
        if "ownershipControls" in query:
            return "PutBucketOwnershipControls"
        if "publicAccessBlock" in query:
            return "PutPublicAccessBlock"
        if "encryption" in query:
            return "PutBucketEncryption"
        return "CreateBucket"
    if method == "DELETE":
        if "cors" in query:
            return "DeleteBucketCors"
        if "tagging" in query:
            return "DeleteBucketTagging"
        if "ownershipControls" in query:
            return "DeleteBucketOwnershipControls"
        if "publicAccessBlock" in query:
            return "DeletePublicAccessBlock"
        if "lifecycle" in query:
            return "DeleteBucketLifecycle"
        if "encryption" in query:
            return "DeleteBucketEncryption"
        return "DeleteBucketPolicy" if "policy" in query else "DeleteBucket"
    if method == "POST" and "delete" in query:
        return "DeleteObjects"
    if method == "POST":
        # Any other POST to a bucket is a form upload; one that is not multipart/form-data
        # is S3's 412 PreconditionFailed, answered by the handler (app/form.py).
        return "PostObject"
    raise MethodNotAllowed(Method=method, ResourceType="BUCKET")


def _list_operation(query: dict[str, str]) -> str:
    """ListObjects without list-type, ListObjectsV2 with list-type=2; nothing else exists."""
    list_type = query.get("list-type")
    if list_type is None:
        return "ListObjects"
    if list_type == "2":
        return "ListObjectsV2"
    raise InvalidArgument(
        "Invalid List Type specified in Request", ArgumentName="list-type", ArgumentValue=list_type
    )


def _object_operation(method: str, query: dict[str, str], headers: dict[str, str]) -> str:
    _unsupported(query, UNSUPPORTED_OBJECT, method, "OBJECT")
    upload = "uploadId" in query
    if method == "GET":
        if upload:
            return "ListParts"
        if "retention" in query:
            return "GetObjectRetention"
        if "legal-hold" in query:
            return "GetObjectLegalHold"
        if "attributes" in query:
            return "GetObjectAttributes"
        if "tagging" in query:
            return "GetObjectTagging"
        return "GetObjectAcl" if "acl" in query else "GetObject"
    if method == "HEAD":
        return "HeadObject"
    if method == "PUT":
        if "acl" in query:
            return "PutObjectAcl"
        if "retention" in query:
            return "PutObjectRetention"
        if "legal-hold" in query:
            return "PutObjectLegalHold"
        if "tagging" in query:
            return "PutObjectTagging"
        copy = "x-amz-copy-source" in headers
        if upload or "partNumber" in query:
            return "UploadPartCopy" if copy else "UploadPart"
        return "CopyObject" if copy else "PutObject"
    if method == "DELETE":
        if "tagging" in query:
            return "DeleteObjectTagging"
        return "AbortMultipartUpload" if upload else "DeleteObject"
    if method == "POST":
        if "uploads" in query:
            return "CreateMultipartUpload"
        if upload:
            return "CompleteMultipartUpload"
    raise MethodNotAllowed(Method=method, ResourceType="OBJECT")
