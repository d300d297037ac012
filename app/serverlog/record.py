"""One access-log record in S3's server access log format, and how it is made from a
request that has been answered.

The line is S3's documented format: space-separated fields, `-` for what is unknown
or does not apply, the time in brackets, Request-URI, Referer and User-Agent quoted:

    bucket-owner bucket [time] remote-ip requester request-id operation key
    "request-uri" status error-code bytes-sent object-size total-time turn-around-time
    "referer" "user-agent" version-id host-id signature-version cipher-suite
    authentication-type host-header tls-version access-point-arn acl-required

What shoal cannot know is `-`: the turn-around time (the exchange does not time the
first response byte), the host id (shoal sends no x-amz-id-2), the TLS cipher and
version (the ASGI scope does not carry them), access points and ACL-based grants.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from shoal.auth import Principal
from shoal.auth.accounts import Accounts, canonical_id

#: The resource type S3 logs for an operation (`REST.<METHOD>.<TYPE>`); the method is
#: the request's own.
RESOURCE_TYPES = {
    "GetObject": "OBJECT",
    "HeadObject": "OBJECT",
    "PutObject": "OBJECT",
    "DeleteObject": "OBJECT",
    "PostObject": "OBJECT",
    "CopyObject": "OBJECT",
    "GetObjectAcl": "ACL",
    "PutObjectAcl": "ACL",
    "GetBucketAcl": "ACL",
    "PutBucketAcl": "ACL",
    "GetObjectTagging": "OBJECT_TAGGING",
    "PutObjectTagging": "OBJECT_TAGGING",
    "DeleteObjectTagging": "OBJECT_TAGGING",
    "GetObjectAttributes": "OBJECT_ATTRIBUTES",
    "GetObjectRetention": "RETENTION",
    "PutObjectRetention": "RETENTION",
    "GetObjectLegalHold": "LEGAL_HOLD",
    "PutObjectLegalHold": "LEGAL_HOLD",
    "CreateMultipartUpload": "UPLOADS",
    "ListMultipartUploads": "UPLOADS",
    "UploadPart": "PART",
    "UploadPartCopy": "PART",
    "CompleteMultipartUpload": "UPLOAD",
    "AbortMultipartUpload": "UPLOAD",
    "ListParts": "UPLOAD",
    "ListObjects": "BUCKET",
    "ListObjectsV2": "BUCKET",
    "HeadBucket": "BUCKET",
    "CreateBucket": "BUCKET",
    "DeleteBucket": "BUCKET",
    "ListObjectVersions": "BUCKETVERSIONS",
    "GetBucketLocation": "LOCATION",
    "GetBucketVersioning": "VERSIONING",
    "PutBucketVersioning": "VERSIONING",
    "GetBucketPolicy": "BUCKETPOLICY",
    "PutBucketPolicy": "BUCKETPOLICY",
    "DeleteBucketPolicy": "BUCKETPOLICY",
    "GetBucketCors": "CORS",
    "PutBucketCors": "CORS",
    "DeleteBucketCors": "CORS",
    "GetBucketTagging": "TAGGING",
    "PutBucketTagging": "TAGGING",
    "DeleteBucketTagging": "TAGGING",
    "GetBucketLogging": "LOGGING_STATUS",
    "PutBucketLogging": "LOGGING_STATUS",
    "GetBucketLifecycleConfiguration": "LIFECYCLE",
    "PutBucketLifecycleConfiguration": "LIFECYCLE",
    "DeleteBucketLifecycle": "LIFECYCLE",
    "GetObjectLockConfiguration": "OBJECT_LOCK_CONFIGURATION",
    "PutObjectLockConfiguration": "OBJECT_LOCK_CONFIGURATION",
    "DeleteObjects": "MULTI_OBJECT_DELETE",
}
#: Operations whose request body is the object (its size is the bytes received).
_WRITES = frozenset({"PutObject", "UploadPart", "PostObject"})
#: Operations whose response body is the object.
_READS = frozenset({"GetObject"})


@dataclass(frozen=True)
class AccessRecord:
    bucket_owner: str
    bucket: str
    time: float  # when the request arrived, seconds since the epoch
    remote_ip: str
    requester: str
    request_id: str
    operation: str  # e.g. REST.GET.OBJECT
    key: str  # URL-encoded, or "-"
    request_uri: str  # "METHOD /path?query HTTP/1.1", unquoted
    status: int
    error_code: str
    bytes_sent: int
    object_size: int | None
    total_ms: int
    referer: str
    user_agent: str
    version_id: str
    signature_version: str
    auth_type: str
    host: str


def requester_id(scope: dict[str, Any], accounts: Accounts, auth_enabled: bool) -> str:
    """Who made the request, as S3's log names them: the canonical user id of the
    account that signed it, `-` for anonymous (and refused) requests; with auth off,
    everyone acts as the default owner (as RequestContext.requester has it)."""
    if not auth_enabled:
        return accounts.default_owner.canonical_id
    principal: Principal | None = (scope.get("state") or {}).get("principal")
    key = principal.access_key if principal is not None else None
    if key is None:
        return "-"
    account = accounts.by_key(key)
    return account.canonical_id if account is not None else canonical_id(key)


def owner_id(owner: str, accounts: Accounts) -> str:
    """A bucket's owner as the log names it: its canonical id (a bucket recorded
    without one belongs to the default owner)."""
    return accounts.owner_id(owner)


def operation_name(method: str, op_name: str) -> str:
    """S3's REST.<METHOD>.<RESOURCE> (CopyObject and UploadPartCopy are REST.COPY.*)."""
    kind = RESOURCE_TYPES.get(op_name, op_name.upper())
    if op_name == "CopyObject":
        return "REST.COPY.OBJECT"
    if op_name == "UploadPartCopy":
        return "REST.COPY.PART"
    return f"REST.{method}.{kind}"


def _headers(scope: dict[str, Any]) -> dict[bytes, bytes]:
    return {name: value for name, value in scope["headers"]}


def _signing(headers: dict[bytes, bytes], query: bytes) -> tuple[str, str]:
    """(signature version, authentication type) the request claims, `-` for neither."""
    auth = headers.get(b"authorization", b"")
    if auth.startswith(b"AWS4-"):
        return "SigV4", "AuthHeader"
    if auth.startswith(b"AWS "):
        return "SigV2", "AuthHeader"
    if b"X-Amz-Signature=" in query or b"x-amz-signature=" in query.lower():
        return "SigV4", "QueryString"
    if b"Signature=" in query and b"AWSAccessKeyId=" in query:
        return "SigV2", "QueryString"
    return "-", "-"


def build_record(
    scope: dict[str, Any],
    *,
    status: int,
    bytes_in: int,
    bytes_out: int,
    elapsed: float,
    bucket_owner: str,
    requester: str,
) -> AccessRecord | None:
    """The record of an answered request, or None when it named no bucket (S3 logs a
    request only against the bucket it was processed for)."""
    state = scope.get("state") or {}
    op = state.get("operation")
    if op is None or op.bucket is None:
        return None
    headers = _headers(scope)
    query: bytes = scope.get("query_string", b"")
    raw_path: bytes = scope.get("raw_path") or scope["path"].encode()
    target = raw_path + (b"?" + query if query else b"")
    version = scope.get("http_version", "1.1")
    method: str = scope["method"]
    signature, auth_type = _signing(headers, query)
    client = scope.get("client")
    size = None
    if op.name in _WRITES and status < 300:
        # aws-chunked bodies carry framing: the object is the decoded length.
        decoded = headers.get(b"x-amz-decoded-content-length", b"")
        size = int(decoded) if decoded.isdigit() else bytes_in
    elif op.name in _READS and status < 300:
        size = bytes_out
    version_id = "-"
    for pair in query.split(b"&"):
        if pair.startswith(b"versionId="):
            version_id = pair[len(b"versionId=") :].decode("latin-1") or "-"
    return AccessRecord(
        bucket_owner=bucket_owner,
        bucket=op.bucket,
        time=time.time() - elapsed,
        remote_ip=client[0] if client else "-",
        requester=requester,
        request_id=str(state.get("request_id") or "-"),
        operation=operation_name(method, op.name),
        key=quote(op.key, safe="/") if op.key is not None else "-",
        request_uri=f"{method} {target.decode('latin-1')} HTTP/{version}",
        status=status,
        error_code=str(state.get("error_code") or "-"),
        bytes_sent=bytes_out,
        object_size=size,
        total_ms=round(elapsed * 1000),
        referer=headers.get(b"referer", b"-").decode("latin-1"),
        user_agent=headers.get(b"user-agent", b"-").decode("latin-1"),
        version_id=version_id,
        signature_version=signature,
        auth_type=auth_type,
        host=headers.get(b"host", b"-").decode("latin-1"),
    )


def _quoted(text: str) -> str:
    """A quoted field: a `"` inside would end it early, control characters would break
    the line, so both are escaped (\\x22, \\xNN) as S3's own lines never contain them."""
    out = []
    for char in text:
        if char == '"' or char == "\\" or ord(char) < 0x20 or ord(char) == 0x7F:
            out.append(f"\\x{ord(char):02x}")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


def _bare(text: str) -> str:
    """An unquoted field: never empty, never containing a space or a line break."""
    if not text:
        return "-"
    return "".join(f"\\x{ord(c):02x}" if c in ' "\\' or ord(c) < 0x20 else c for c in text)


def log_time(when: float) -> str:
    """[06/Feb/2019:00:00:38 +0000]"""
    return datetime.fromtimestamp(when, UTC).strftime("[%d/%b/%Y:%H:%M:%S +0000]")


def format_line(record: AccessRecord) -> str:
    """The record as one line of a log object (without its newline)."""
    fields = [
        _bare(record.bucket_owner),
        _bare(record.bucket),
        log_time(record.time),
        _bare(record.remote_ip),
        _bare(record.requester),
        _bare(record.request_id),
        _bare(record.operation),
        _bare(record.key),
        _quoted(record.request_uri),
        str(record.status),
        _bare(record.error_code),
        str(record.bytes_sent) if record.bytes_sent else "-",
        str(record.object_size) if record.object_size is not None else "-",
        str(record.total_ms),
        "-",  # turn-around time: not measured (see the module docstring)
        _quoted(record.referer),
        _quoted(record.user_agent),
        _bare(record.version_id),
        "-",  # host id
        _bare(record.signature_version),
        "-",  # cipher suite
        _bare(record.auth_type),
        _bare(record.host),
        "-",  # TLS version
        "-",  # access point ARN
        "-",  # ACL required
    ]
    return " ".join(fields)
