"""Bucket-policy condition keys of server-side encryption: s3:x-amz-server-side-encryption,
s3:x-amz-server-side-encryption-aws-kms-key-id and
s3:x-amz-server-side-encryption-customer-algorithm.

A write that makes an object (PutObject, CopyObject, CreateMultipartUpload, and a POST
form's fields) carries them as the request gives them: the classic policy that denies
s3:PutObject when s3:x-amz-server-side-encryption is Null (or not AES256) refuses a plain
upload and lets an encrypted one through. A bucket default does not count: the key tests
what the request asked for, as in S3.

The parts of a multipart upload (UploadPart, UploadPartCopy, CompleteMultipartUpload) are
s3:PutObject too but send no such header: they carry the upload's own encryption (read
from its record, only when the bucket's policy tests one of these keys), so a policy that
requires encryption does not refuse the rest of an upload it let begin.
"""

from __future__ import annotations

from collections.abc import Mapping

from shoal.app.authz import PolicyGate
from shoal.app.dispatch import Operation
from shoal.storage.backend import Backend, Encryption
from shoal.storage.errors import StorageError

ALGORITHM = "x-amz-server-side-encryption"
KMS_KEY_ID = "x-amz-server-side-encryption-aws-kms-key-id"
CUSTOMER_ALGORITHM = "x-amz-server-side-encryption-customer-algorithm"
#: Request headers (or POST form fields) a bucket policy may test as s3:<name>.
CONDITION_HEADERS = (ALGORITHM, KMS_KEY_ID, CUSTOMER_ALGORITHM)
#: Policy keys are compared lower-cased; every one of them starts so.
KEY_PREFIX = f"s3:{ALGORITHM}"

WRITE_OPERATIONS = frozenset({"PutObject", "CopyObject", "CreateMultipartUpload", "PostObject"})
UPLOAD_OPERATIONS = frozenset({"UploadPart", "UploadPartCopy", "CompleteMultipartUpload"})


def request_condition_keys(fields: Mapping[str, str]) -> dict[str, object]:
    """The keys a write's lower-case headers (or POST form fields) give."""
    return {f"s3:{name}": fields[name].strip() for name in CONDITION_HEADERS if name in fields}


def record_condition_keys(encryption: Encryption | None) -> dict[str, object]:
    """The keys an upload's stored encryption gives its parts and completion."""
    if encryption is None:
        return {}
    if encryption.customer:
        return {f"s3:{CUSTOMER_ALGORITHM}": encryption.algorithm}
    keys: dict[str, object] = {f"s3:{ALGORITHM}": encryption.algorithm}
    if encryption.key_id and encryption.algorithm == "aws:kms":
        keys[f"s3:{KMS_KEY_ID}"] = encryption.key_id
    return keys


async def encryption_context(
    gate: PolicyGate,
    backend: Backend,
    op: Operation,
    query: Mapping[str, str],
    headers: Mapping[str, str],
) -> dict[str, object]:
    """The encryption condition keys of one request (see the module docstring). An
    upload that cannot be read gives none: its handler answers NoSuchUpload after
    authorization, as for any request."""
    if op.name in WRITE_OPERATIONS:
        return request_condition_keys(headers)
    if op.name not in UPLOAD_OPERATIONS or op.bucket is None or op.key is None:
        return {}
    policy = await gate.policy(op.bucket)
    if policy is None or not any(
        c.key.startswith(KEY_PREFIX) for s in policy.statements for c in s.conditions
    ):
        return {}
    upload_id = query.get("uploadId")
    if not upload_id:
        return {}
    try:
        upload = await backend.get_upload(op.bucket, op.key, upload_id)
    except StorageError:
        return {}
    return record_condition_keys(upload.write.encryption)
