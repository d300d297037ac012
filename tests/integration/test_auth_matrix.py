"""Every operation, in every payload mode, refuses a forged signature: a valid access
key alone is never enough (the class of bug behind CVE-2026-40344 elsewhere)."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from shoal.app.server import SyncServer
from shoal.auth.actions import BODY_OPERATIONS, OPERATIONS
from shoal.auth.signer import signed_headers
from tests.integration.conftest import auth_config, signed_client

KEY, SECRET = "AKIDMATRIX", "the-real-secret"
DELETE_XML = b"<Delete><Object><Key>kept</Key></Object></Delete>"
COMPLETE_XML = (
    b"<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>x</ETag></Part>"
    b"</CompleteMultipartUpload>"
)

CORS_XML = (
    b"<CORSConfiguration><CORSRule><AllowedOrigin>*</AllowedOrigin>"
    b"<AllowedMethod>GET</AllowedMethod></CORSRule></CORSConfiguration>"
)

VERSIONING_XML = b"<VersioningConfiguration><Status>Enabled</Status></VersioningConfiguration>"
LOCK_XML = (
    b"<ObjectLockConfiguration><ObjectLockEnabled>Enabled</ObjectLockEnabled>"
    b"</ObjectLockConfiguration>"
)
RETENTION_XML = (
    b"<Retention><Mode>GOVERNANCE</Mode><RetainUntilDate>2099-01-01T00:00:00Z</RetainUntilDate>"
    b"</Retention>"
)
LEGAL_HOLD_XML = b"<LegalHold><Status>ON</Status></LegalHold>"
OWNERSHIP_XML = (
    b"<OwnershipControls><Rule><ObjectOwnership>BucketOwnerEnforced</ObjectOwnership></Rule>"
    b"</OwnershipControls>"
)
BLOCK_XML = b"<PublicAccessBlockConfiguration><BlockPublicAcls>true</BlockPublicAcls></PublicAccessBlockConfiguration>"  # noqa: E501
TAGGING_XML = b"<Tagging><TagSet><Tag><Key>a</Key><Value>1</Value></Tag></TagSet></Tagging>"
LOGGING_XML = (
    b"<BucketLoggingStatus><LoggingEnabled><TargetBucket>matrix</TargetBucket>"
    b"<TargetPrefix>logs/</TargetPrefix></LoggingEnabled></BucketLoggingStatus>"
)
LIFECYCLE_XML = (
    b"<LifecycleConfiguration><Rule><ID>r</ID><Filter><Prefix>x/</Prefix></Filter>"
    b"<Status>Enabled</Status><Expiration><Days>1</Days></Expiration></Rule>"
    b"</LifecycleConfiguration>"
)
ENCRYPTION_XML = (
    b"<ServerSideEncryptionConfiguration><Rule><ApplyServerSideEncryptionByDefault>"
    b"<SSEAlgorithm>AES256</SSEAlgorithm></ApplyServerSideEncryptionByDefault></Rule>"
    b"</ServerSideEncryptionConfiguration>"
)

# operation -> (method, path, query, body, extra headers); {upload} is a live upload id.
REQUESTS: dict[str, tuple[str, str, str, bytes, dict[str, str]]] = {
    "ListBuckets": ("GET", "/", "", b"", {}),
    "CreateBucket": ("PUT", "/forged-new-bucket", "", b"", {}),
    "DeleteBucket": ("DELETE", "/matrix", "", b"", {}),
    "HeadBucket": ("HEAD", "/matrix", "", b"", {}),
    "GetBucketLocation": ("GET", "/matrix", "location=", b"", {}),
    "GetBucketVersioning": ("GET", "/matrix", "versioning=", b"", {}),
    "PutBucketVersioning": ("PUT", "/matrix", "versioning=", VERSIONING_XML, {}),
    "ListObjectVersions": ("GET", "/matrix", "versions=", b"", {}),
    "GetObjectLockConfiguration": ("GET", "/matrix", "object-lock=", b"", {}),
    "PutObjectLockConfiguration": ("PUT", "/matrix", "object-lock=", LOCK_XML, {}),
    "GetBucketAcl": ("GET", "/matrix", "acl=", b"", {}),
    "PutBucketAcl": ("PUT", "/matrix", "acl=", b"", {"x-amz-acl": "public-read"}),
    "GetBucketOwnershipControls": ("GET", "/matrix", "ownershipControls=", b"", {}),
    "PutBucketOwnershipControls": ("PUT", "/matrix", "ownershipControls=", OWNERSHIP_XML, {}),
    "DeleteBucketOwnershipControls": ("DELETE", "/matrix", "ownershipControls=", b"", {}),
    "GetPublicAccessBlock": ("GET", "/matrix", "publicAccessBlock=", b"", {}),
    "PutPublicAccessBlock": ("PUT", "/matrix", "publicAccessBlock=", BLOCK_XML, {}),
    "DeletePublicAccessBlock": ("DELETE", "/matrix", "publicAccessBlock=", b"", {}),
    "GetBucketPolicyStatus": ("GET", "/matrix", "policyStatus=", b"", {}),
    "ListObjects": ("GET", "/matrix", "", b"", {}),
    "ListObjectsV2": ("GET", "/matrix", "list-type=2", b"", {}),
    "ListMultipartUploads": ("GET", "/matrix", "uploads=", b"", {}),
    "GetBucketPolicy": ("GET", "/matrix", "policy=", b"", {}),
    "PutBucketPolicy": ("PUT", "/matrix", "policy=", b'{"Statement": []}', {}),
    "DeleteBucketPolicy": ("DELETE", "/matrix", "policy=", b"", {}),
    "GetBucketCors": ("GET", "/matrix", "cors=", b"", {}),
    "PutBucketCors": ("PUT", "/matrix", "cors=", CORS_XML, {}),
    "DeleteBucketCors": ("DELETE", "/matrix", "cors=", b"", {}),
    "GetBucketTagging": ("GET", "/matrix", "tagging=", b"", {}),
    "PutBucketTagging": ("PUT", "/matrix", "tagging=", TAGGING_XML, {}),
    "DeleteBucketTagging": ("DELETE", "/matrix", "tagging=", b"", {}),
    "GetBucketLifecycleConfiguration": ("GET", "/matrix", "lifecycle=", b"", {}),
    "PutBucketLifecycleConfiguration": ("PUT", "/matrix", "lifecycle=", LIFECYCLE_XML, {}),
    "DeleteBucketLifecycle": ("DELETE", "/matrix", "lifecycle=", b"", {}),
    "GetBucketEncryption": ("GET", "/matrix", "encryption=", b"", {}),
    "PutBucketEncryption": ("PUT", "/matrix", "encryption=", ENCRYPTION_XML, {}),
    "DeleteBucketEncryption": ("DELETE", "/matrix", "encryption=", b"", {}),
    "GetBucketLogging": ("GET", "/matrix", "logging=", b"", {}),
    "PutBucketLogging": ("PUT", "/matrix", "logging=", LOGGING_XML, {}),
    "DeleteObjects": ("POST", "/matrix", "delete=", DELETE_XML, {}),
    "PutObject": ("PUT", "/matrix/kept", "", b"forged", {}),
    "CopyObject": ("PUT", "/matrix/copy", "", b"", {"x-amz-copy-source": "/matrix/kept"}),
    "GetObject": ("GET", "/matrix/kept", "", b"", {}),
    "HeadObject": ("HEAD", "/matrix/kept", "", b"", {}),
    "GetObjectAcl": ("GET", "/matrix/kept", "acl=", b"", {}),
    "PutObjectAcl": ("PUT", "/matrix/kept", "acl=", b"", {"x-amz-acl": "public-read"}),
    "GetObjectAttributes": (
        "GET",
        "/matrix/kept",
        "attributes=",
        b"",
        {"x-amz-object-attributes": "ETag"},
    ),
    "DeleteObject": ("DELETE", "/matrix/kept", "", b"", {}),
    "GetObjectRetention": ("GET", "/matrix/kept", "retention=", b"", {}),
    "PutObjectRetention": ("PUT", "/matrix/kept", "retention=", RETENTION_XML, {}),
    "GetObjectLegalHold": ("GET", "/matrix/kept", "legal-hold=", b"", {}),
    "PutObjectLegalHold": ("PUT", "/matrix/kept", "legal-hold=", LEGAL_HOLD_XML, {}),
    "GetObjectTagging": ("GET", "/matrix/kept", "tagging=", b"", {}),
    "PutObjectTagging": ("PUT", "/matrix/kept", "tagging=", TAGGING_XML, {}),
    "DeleteObjectTagging": ("DELETE", "/matrix/kept", "tagging=", b"", {}),
    "CreateMultipartUpload": ("POST", "/matrix/kept", "uploads=", b"", {}),
    "UploadPart": ("PUT", "/matrix/kept", "partNumber=1&uploadId={upload}", b"part", {}),
    "UploadPartCopy": (
        "PUT",
        "/matrix/kept",
        "partNumber=1&uploadId={upload}",
        b"",
        {"x-amz-copy-source": "/matrix/kept"},
    ),
    "CompleteMultipartUpload": ("POST", "/matrix/kept", "uploadId={upload}", COMPLETE_XML, {}),
    "AbortMultipartUpload": ("DELETE", "/matrix/kept", "uploadId={upload}", b"", {}),
    "ListParts": ("GET", "/matrix/kept", "uploadId={upload}", b"", {}),
}
MODES = [
    "UNSIGNED-PAYLOAD",
    "sha256",
    "STREAMING-UNSIGNED-PAYLOAD-TRAILER",
    "STREAMING-AWS4-HMAC-SHA256-PAYLOAD",
]


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[SyncServer, Any, str]]:
    with SyncServer(auth_config((KEY, SECRET))) as running:
        s3 = signed_client(running.endpoint_url, KEY, SECRET)
        s3.create_bucket(Bucket="matrix")
        s3.put_object(Bucket="matrix", Key="kept", Body=b"original")
        upload = s3.create_multipart_upload(Bucket="matrix", Key="kept")["UploadId"]
        yield running, s3, upload


def _body_for(mode: str, body: bytes) -> tuple[str, bytes, dict[str, str]]:
    """(x-amz-content-sha256, bytes on the wire, framing headers) for a payload mode."""
    if mode == "sha256":
        return hashlib.sha256(body).hexdigest(), body, {}
    if mode.startswith("STREAMING"):
        chunk = f"{len(body):x};chunk-signature={'0' * 64}\r\n".encode() + body + b"\r\n"
        final = f"0;chunk-signature={'0' * 64}\r\n\r\n".encode()
        framed = (chunk if body else b"") + final
        headers = {
            "content-encoding": "aws-chunked",
            "x-amz-decoded-content-length": str(len(body)),
        }
        return mode, framed, headers
    return mode, body, {}


def test_every_operation_is_in_the_matrix() -> None:
    # PostObject is authenticated by its form's signed policy, not by headers: its
    # forged signatures are refused in test_post_object.py.
    assert set(REQUESTS) == set(OPERATIONS) - {"PostObject"}


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("operation", sorted(REQUESTS))
def test_forged_signature_is_refused(server: Any, operation: str, mode: str) -> None:
    running, s3, upload = server
    method, path, query, body, extra = REQUESTS[operation]
    query = query.format(upload=upload)
    payload_hash, wire, framing = _body_for(mode, body)
    host = running.endpoint_url.split("://", 1)[1]
    extra = {**extra, **framing}
    if method in ("PUT", "POST") and operation in (
        "DeleteObjects",
        "PutBucketPolicy",
        "PutBucketCors",
        "PutBucketVersioning",
        "PutObjectLockConfiguration",
        "PutObjectRetention",
        "PutObjectLegalHold",
    ):
        extra["content-md5"] = base64.b64encode(hashlib.md5(body).digest()).decode()
    headers = signed_headers(
        method,
        path,
        host,
        KEY,
        "a-forged-secret",
        "us-east-1",
        query=query,
        payload_hash=payload_hash,
        extra=extra,
    )
    url = running.endpoint_url + path + (f"?{query}" if query else "")
    response = httpx.request(method, url, content=wire, headers=headers)
    assert response.status_code == 403, (operation, mode, response.text)
    if method != "HEAD":
        assert "<Code>SignatureDoesNotMatch</Code>" in response.text
    # Nothing changed.
    assert s3.get_object(Bucket="matrix", Key="kept")["Body"].read() == b"original"
    assert [o["Key"] for o in s3.list_objects_v2(Bucket="matrix")["Contents"]] == ["kept"]
    uploads = s3.list_multipart_uploads(Bucket="matrix").get("Uploads", [])
    assert [u["UploadId"] for u in uploads] == [upload]
    assert [b["Name"] for b in s3.list_buckets()["Buckets"]] == ["matrix"]
    with pytest.raises(Exception, match="NoSuchCORSConfiguration"):
        s3.get_bucket_cors(Bucket="matrix")


@pytest.mark.parametrize(
    "operation", ["GetObject", "ListObjectsV2", "GetBucketAcl", "ListParts", "GetObjectTagging"]
)
def test_the_same_request_with_the_real_secret_passes(server: Any, operation: str) -> None:
    """The control: only the signature made the requests above fail."""
    running, _, upload = server
    method, path, query, body, extra = REQUESTS[operation]
    query = query.format(upload=upload)
    host = running.endpoint_url.split("://", 1)[1]
    headers = signed_headers(method, path, host, KEY, SECRET, "us-east-1", query=query, extra=extra)
    url = running.endpoint_url + path + (f"?{query}" if query else "")
    assert httpx.request(method, url, content=body, headers=headers).status_code == 200


@pytest.mark.parametrize("operation", sorted(op for op in REQUESTS if op not in BODY_OPERATIONS))
def test_bodiless_operations_refuse_streaming_payloads(server: Any, operation: str) -> None:
    """The payload-mode table: a streaming body is refused where no body belongs,
    even when correctly signed."""
    running, s3, upload = server
    method, path, query, body, extra = REQUESTS[operation]
    query = query.format(upload=upload)
    payload_hash, wire, framing = _body_for("STREAMING-AWS4-HMAC-SHA256-PAYLOAD", body)
    host = running.endpoint_url.split("://", 1)[1]
    headers = signed_headers(
        method,
        path,
        host,
        KEY,
        SECRET,
        "us-east-1",
        query=query,
        payload_hash=payload_hash,
        extra={**extra, **framing},
    )
    url = running.endpoint_url + path + (f"?{query}" if query else "")
    response = httpx.request(method, url, content=wire, headers=headers)
    assert response.status_code == 400, (operation, response.text)
    assert s3.get_object(Bucket="matrix", Key="kept")["Body"].read() == b"original"
    assert [b["Name"] for b in s3.list_buckets()["Buckets"]] == ["matrix"]
