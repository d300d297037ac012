"""Which IAM action and which resource each S3 operation shoal serves is checked against.

One table, `OPERATIONS`, maps every operation name the app routes to the IAM action a
bucket policy names for it and to the kind of resource it acts on:

- ``service``: no bucket (ListBuckets); bucket policies never apply to it.
- ``bucket``: the bucket ARN, ``arn:aws:s3:::bucket``.
- ``object``: the object ARN, ``arn:aws:s3:::bucket/key``. DeleteObjects is listed as
  an object operation on s3:DeleteObject: before its body is read the caller must be one
  that could delete some key of the bucket, then every key of the request is checked.

CopyObject and UploadPartCopy additionally need s3:GetObject on the copy source; see
`source_requirement`. A request naming a version (``versionId``) is checked against the
version's action instead, as AWS does (`VERSION_ACTIONS`: a GET of a version needs
s3:GetObjectVersion).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

ResourceKind = Literal["service", "bucket", "object"]

ARN_PREFIX = "arn:aws:s3:::"


@dataclass(frozen=True)
class OperationAction:
    """The IAM action an operation needs and the kind of resource it is checked on."""

    action: str
    resource: ResourceKind


OPERATIONS: dict[str, OperationAction] = {
    "ListBuckets": OperationAction("s3:ListAllMyBuckets", "service"),
    "CreateBucket": OperationAction("s3:CreateBucket", "bucket"),
    "DeleteBucket": OperationAction("s3:DeleteBucket", "bucket"),
    "HeadBucket": OperationAction("s3:ListBucket", "bucket"),
    "GetBucketLocation": OperationAction("s3:GetBucketLocation", "bucket"),
    "GetBucketVersioning": OperationAction("s3:GetBucketVersioning", "bucket"),
    "PutBucketVersioning": OperationAction("s3:PutBucketVersioning", "bucket"),
    "ListObjectVersions": OperationAction("s3:ListBucketVersions", "bucket"),
    "GetObjectLockConfiguration": OperationAction("s3:GetBucketObjectLockConfiguration", "bucket"),
    "PutObjectLockConfiguration": OperationAction("s3:PutBucketObjectLockConfiguration", "bucket"),
    "GetBucketAcl": OperationAction("s3:GetBucketAcl", "bucket"),
    "PutBucketAcl": OperationAction("s3:PutBucketAcl", "bucket"),
    "GetBucketOwnershipControls": OperationAction("s3:GetBucketOwnershipControls", "bucket"),
    "PutBucketOwnershipControls": OperationAction("s3:PutBucketOwnershipControls", "bucket"),
    # As AWS: removing the setting needs the PUT action.
    "DeleteBucketOwnershipControls": OperationAction("s3:PutBucketOwnershipControls", "bucket"),
    "GetPublicAccessBlock": OperationAction("s3:GetBucketPublicAccessBlock", "bucket"),
    "PutPublicAccessBlock": OperationAction("s3:PutBucketPublicAccessBlock", "bucket"),
    "DeletePublicAccessBlock": OperationAction("s3:PutBucketPublicAccessBlock", "bucket"),
    "GetBucketPolicyStatus": OperationAction("s3:GetBucketPolicyStatus", "bucket"),
    "ListObjects": OperationAction("s3:ListBucket", "bucket"),
    "ListObjectsV2": OperationAction("s3:ListBucket", "bucket"),
    "ListMultipartUploads": OperationAction("s3:ListBucketMultipartUploads", "bucket"),
    "GetBucketPolicy": OperationAction("s3:GetBucketPolicy", "bucket"),
    "PutBucketPolicy": OperationAction("s3:PutBucketPolicy", "bucket"),
    "DeleteBucketPolicy": OperationAction("s3:DeleteBucketPolicy", "bucket"),
    "GetBucketCors": OperationAction("s3:GetBucketCORS", "bucket"),
    "GetBucketLogging": OperationAction("s3:GetBucketLogging", "bucket"),
    "PutBucketLogging": OperationAction("s3:PutBucketLogging", "bucket"),
    "PutBucketCors": OperationAction("s3:PutBucketCORS", "bucket"),
    "DeleteBucketCors": OperationAction("s3:PutBucketCORS", "bucket"),
    "GetBucketTagging": OperationAction("s3:GetBucketTagging", "bucket"),
    "PutBucketTagging": OperationAction("s3:PutBucketTagging", "bucket"),
    # As AWS: removing a bucket's tags is putting an empty tag set.
    "DeleteBucketTagging": OperationAction("s3:PutBucketTagging", "bucket"),
    "GetBucketLifecycleConfiguration": OperationAction("s3:GetLifecycleConfiguration", "bucket"),
    "PutBucketLifecycleConfiguration": OperationAction("s3:PutLifecycleConfiguration", "bucket"),
    # As AWS: removing a bucket's lifecycle configuration needs the PUT action.
    "DeleteBucketLifecycle": OperationAction("s3:PutLifecycleConfiguration", "bucket"),
    "GetBucketEncryption": OperationAction("s3:GetEncryptionConfiguration", "bucket"),
    "PutBucketEncryption": OperationAction("s3:PutEncryptionConfiguration", "bucket"),
    # As AWS: removing the default encryption needs the PUT action.
    "DeleteBucketEncryption": OperationAction("s3:PutEncryptionConfiguration", "bucket"),
    "DeleteObjects": OperationAction("s3:DeleteObject", "object"),
    "PutObject": OperationAction("s3:PutObject", "object"),
    "CopyObject": OperationAction("s3:PutObject", "object"),
    "GetObject": OperationAction("s3:GetObject", "object"),
    "HeadObject": OperationAction("s3:GetObject", "object"),
    "GetObjectAcl": OperationAction("s3:GetObjectAcl", "object"),
    "PutObjectAcl": OperationAction("s3:PutObjectAcl", "object"),
    "GetObjectAttributes": OperationAction("s3:GetObjectAttributes", "object"),
    "DeleteObject": OperationAction("s3:DeleteObject", "object"),
    "GetObjectRetention": OperationAction("s3:GetObjectRetention", "object"),
    "PutObjectRetention": OperationAction("s3:PutObjectRetention", "object"),
    "GetObjectLegalHold": OperationAction("s3:GetObjectLegalHold", "object"),
    "PutObjectLegalHold": OperationAction("s3:PutObjectLegalHold", "object"),
    "GetObjectTagging": OperationAction("s3:GetObjectTagging", "object"),
    "PutObjectTagging": OperationAction("s3:PutObjectTagging", "object"),
    "DeleteObjectTagging": OperationAction("s3:DeleteObjectTagging", "object"),
    "CreateMultipartUpload": OperationAction("s3:PutObject", "object"),
    "UploadPart": OperationAction("s3:PutObject", "object"),
    "UploadPartCopy": OperationAction("s3:PutObject", "object"),
    "CompleteMultipartUpload": OperationAction("s3:PutObject", "object"),
    "AbortMultipartUpload": OperationAction("s3:AbortMultipartUpload", "object"),
    "ListParts": OperationAction("s3:ListMultipartUploadParts", "object"),
    # Its key is in the form: the handler checks s3:PutObject on the object itself.
    "PostObject": OperationAction("s3:PutObject", "bucket"),
}

#: The action an operation needs instead when it names a version (`?versionId=`).
VERSION_ACTIONS: dict[str, str] = {
    "GetObject": "s3:GetObjectVersion",
    "HeadObject": "s3:GetObjectVersion",
    "GetObjectAcl": "s3:GetObjectVersionAcl",
    "PutObjectAcl": "s3:PutObjectVersionAcl",
    "GetObjectAttributes": "s3:GetObjectVersionAttributes",
    "DeleteObject": "s3:DeleteObjectVersion",
    "GetObjectTagging": "s3:GetObjectVersionTagging",
    "PutObjectTagging": "s3:PutObjectVersionTagging",
    "DeleteObjectTagging": "s3:DeleteObjectVersionTagging",
}
#: What bypassing a GOVERNANCE retention needs besides x-amz-bypass-governance-retention.
BYPASS_GOVERNANCE_ACTION = "s3:BypassGovernanceRetention"

#: Operations that carry a request body, and so accept every payload mode
#: (UNSIGNED-PAYLOAD, a hex SHA-256, and the aws-chunked STREAMING-* modes, which boto3
#: uses over HTTPS even for DeleteObjects). Every other operation has no body: it accepts
#: UNSIGNED-PAYLOAD or the hash of the empty string, and a streaming mode is refused.
BODY_OPERATIONS = frozenset(
    {
        "CreateBucket",
        "PutBucketAcl",
        "PutObjectAcl",
        "PutBucketOwnershipControls",
        "PutPublicAccessBlock",
        "PutBucketPolicy",
        "PutBucketCors",
        "PutBucketLogging",
        "PutBucketVersioning",
        "PutObjectLockConfiguration",
        "PutObjectRetention",
        "PutObjectLegalHold",
        "PutBucketTagging",
        "PutBucketLifecycleConfiguration",
        "PutBucketEncryption",
        "PutObjectTagging",
        "DeleteObjects",
        "PutObject",
        "UploadPart",
        "CompleteMultipartUpload",
    }
)
EMPTY_SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


def accepts_payload(operation: str, payload_hash: str) -> bool:
    """Whether `operation` may be sent with this x-amz-content-sha256 value."""
    if operation in BODY_OPERATIONS:
        return True
    return payload_hash in ("UNSIGNED-PAYLOAD", EMPTY_SHA256)


# Operations that read a copy source, and what they need on it.
COPY_OPERATIONS = frozenset({"CopyObject", "UploadPartCopy"})
SOURCE_ACTION = "s3:GetObject"
SOURCE_VERSION_ACTION = "s3:GetObjectVersion"


def resource_arn(bucket: str | None, key: str | None = None) -> str:
    """ARN of a bucket (key None) or of an object; ``*`` when there is no bucket."""
    if not bucket:
        return "*"
    if key is None:
        return f"{ARN_PREFIX}{bucket}"
    return f"{ARN_PREFIX}{bucket}/{key}"


def action_for(operation: str, *, version: bool = False) -> str:
    """IAM action of an operation (`version`: the request names a version); KeyError for
    an operation not in the table."""
    if version and operation in VERSION_ACTIONS:
        return VERSION_ACTIONS[operation]
    return OPERATIONS[operation].action


def operation_resource(operation: str, bucket: str | None, key: str | None = None) -> str:
    """The resource ARN `operation` is checked against for this bucket and key."""
    kind = OPERATIONS[operation].resource
    if kind == "service":
        return "*"
    if kind == "bucket":
        return resource_arn(bucket)
    return resource_arn(bucket, key or "")


def source_requirement(
    operation: str, source_bucket: str, source_key: str, *, version: bool = False
) -> tuple[str, str] | None:
    """(action, resource ARN) a copy needs on its source (`version`: the source names a
    version), or None for other operations."""
    if operation not in COPY_OPERATIONS:
        return None
    action = SOURCE_VERSION_ACTION if version else SOURCE_ACTION
    return action, resource_arn(source_bucket, source_key)


# S3 actions a policy may name (AWS refuses a policy naming an action that does not
# exist: "Policy has invalid action"). A pattern with wildcards must match one of them.
_S3_ACTION_NAMES = """
    AbortMultipartUpload BypassGovernanceRetention CreateAccessPoint CreateBucket
    CreateJob DeleteAccessPoint DeleteAccessPointPolicy DeleteBucket DeleteBucketPolicy
    DeleteBucketOwnershipControls DeleteBucketWebsite DeleteObject DeleteObjectTagging
    DeleteObjectVersion DeleteObjectVersionTagging GetAccelerateConfiguration
    GetAccessPoint GetAccessPointPolicy GetAnalyticsConfiguration GetBucketAcl
    GetBucketCORS GetBucketLocation GetBucketLogging GetBucketNotification
    GetBucketObjectLockConfiguration GetBucketOwnershipControls GetBucketPolicy
    GetBucketPolicyStatus GetBucketPublicAccessBlock GetBucketRequestPayment
    GetBucketTagging GetBucketVersioning GetBucketWebsite GetEncryptionConfiguration
    GetIntelligentTieringConfiguration GetInventoryConfiguration GetLifecycleConfiguration
    GetMetricsConfiguration GetObject GetObjectAcl GetObjectAttributes
    GetObjectLegalHold GetObjectRetention GetObjectTagging GetObjectTorrent
    GetObjectVersion GetObjectVersionAcl GetObjectVersionAttributes
    GetObjectVersionForReplication GetObjectVersionTagging GetObjectVersionTorrent
    GetReplicationConfiguration ListAllMyBuckets ListBucket ListBucketMultipartUploads
    ListBucketVersions ListMultipartUploadParts ObjectOwnerOverrideToBucketOwner
    PutAccelerateConfiguration PutAnalyticsConfiguration PutBucketAcl PutBucketCORS
    PutBucketLogging PutBucketNotification PutBucketObjectLockConfiguration
    PutBucketOwnershipControls PutBucketPolicy PutBucketPublicAccessBlock
    PutBucketRequestPayment PutBucketTagging PutBucketVersioning PutBucketWebsite
    PutEncryptionConfiguration PutIntelligentTieringConfiguration
    PutInventoryConfiguration PutLifecycleConfiguration PutMetricsConfiguration
    PutObject PutObjectAcl PutObjectLegalHold PutObjectRetention PutObjectTagging
    PutObjectVersionAcl PutObjectVersionTagging PutReplicationConfiguration
    ReplicateDelete ReplicateObject ReplicateTags RestoreObject
"""
S3_ACTIONS: frozenset[str] = frozenset("s3:" + name for name in _S3_ACTION_NAMES.split())
