"""The backend interface shared by the standalone FileStore and the cluster's DistributedStore.

Records here are plain data: the ASGI layer turns them into headers and XML, a backend
turns them into files or shards. They are shaped for what comes later (versions, tags,
retention, encryption) through `version_id` and `extra`, so adding those needs no
migration of stored records.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

#: Smallest size of every part but the last in a multipart upload (S3's rule).
MIN_PART_SIZE = 5 * 1024 * 1024
#: S3's limit on key length, in UTF-8 bytes.
MAX_KEY_BYTES = 1024
MAX_PARTS = 10000


class Digester(Protocol):
    """Anything with hashlib's `update`: fed every body byte in the backend's I/O thread."""

    def update(self, data: bytes, /) -> None: ...


#: A bucket's versioning state as S3 names it; "" for a bucket that was never versioned
#: (it can go from "" to either, and between the two, but never back to "").
VERSIONING_STATES = ("", "Enabled", "Suspended")
#: The version id of an object written while versioning was off or suspended.
NULL_VERSION = "null"


@dataclass(frozen=True)
class BucketInfo:
    name: str
    created: datetime
    versioning: str = ""  # one of VERSIONING_STATES
    #: Object lock enabled (at creation, or later on a versioned bucket); never turned off.
    object_lock: bool = False
    #: The canonical user id of the account that created it; "" for a bucket made
    #: before buckets had owners (the ASGI layer decides whom that means).
    owner: str = ""


@dataclass(frozen=True)
class Retention:
    """An object version's object-lock retention (S3's x-amz-object-lock-mode and
    -retain-until-date)."""

    mode: str  # "GOVERNANCE" | "COMPLIANCE"
    until: datetime  # UTC


@dataclass(frozen=True)
class Grant:
    """One ACL entry: who (a canonical user id, or a group URI when `group`) may do what
    (READ, WRITE, READ_ACP, WRITE_ACP or FULL_CONTROL)."""

    grantee: str
    permission: str
    group: bool = False


@dataclass(frozen=True)
class Encryption:
    """How a version's (or an upload's) stored bytes are sealed: server-side encryption.

    Storage keeps this with the version and reads nothing in it but `plain_size` and
    `plain_etag` (what listings show); the stored bytes, `ObjectMeta.size` and `etag` are
    the ciphertext's. The data key in it is sealed (by a keyring key or the customer's
    key), so the record reveals nothing without that key.
    """

    algorithm: str  # "AES256" (SSE-S3, SSE-C) | "aws:kms" (SSE-KMS)
    customer: bool = False  # SSE-C: the key comes with every request, never stored
    key_id: str = ""  # the keyring key sealing the data key (SSE-S3, SSE-KMS)
    sealed_key: str = ""  # base64 of the object's data key, sealed
    key_md5: str = ""  # SSE-C: base64 MD5 of the customer's key, as S3 echoes it
    key_proof: str = ""  # SSE-C: a salted HMAC that proves a later key is the same
    context: str = ""  # SSE-KMS encryption context (base64 JSON, as given)
    bucket_key: bool = False  # x-amz-server-side-encryption-bucket-key-enabled
    plain_size: int = 0  # bytes the client wrote (what listings and HEAD show)
    plain_etag: str = ""  # the ETag clients see (no quotes)


@dataclass
class PartInfo:
    """One part of a multipart upload, or of a completed multipart object."""

    number: int
    size: int
    etag: str  # hex MD5 of the part, no quotes
    last_modified: datetime
    checksums: dict[str, str] = field(default_factory=dict)  # "CRC32" -> base64


@dataclass
class ObjectMeta:
    """Everything stored about one version of an object, apart from its bytes."""

    key: str
    size: int
    etag: str  # no quotes: hex MD5, or "hex-N" for multipart
    last_modified: datetime  # UTC, whole seconds are what clients see
    content_type: str = "binary/octet-stream"
    #: Standard stored headers, lower-case names: cache-control, content-disposition,
    #: content-encoding, content-language, expires, x-amz-website-redirect-location,
    #: x-amz-storage-class.
    headers: dict[str, str] = field(default_factory=dict)
    #: x-amz-meta-* without the prefix; names lower-case.
    user_metadata: dict[str, str] = field(default_factory=dict)
    #: Algorithm name ("CRC32", "CRC32C", "CRC64NVME", "SHA1", "SHA256") -> base64 value,
    #: a multipart COMPOSITE value carries its "-N" suffix.
    checksums: dict[str, str] = field(default_factory=dict)
    checksum_type: str | None = None  # "FULL_OBJECT" | "COMPOSITE"
    parts: list[PartInfo] | None = None  # set for objects made by CompleteMultipartUpload
    version_id: str = NULL_VERSION
    #: A delete marker (size 0, no bytes, etag ""): what a DELETE without a version id
    #: leaves in a versioned bucket. Reads of the key answer NoSuchKey while it is current.
    delete_marker: bool = False
    retention: Retention | None = None
    legal_hold: bool = False
    #: The version's tag set (S3 object tags: key -> value, at most 10).
    tags: dict[str, str] = field(default_factory=dict)
    #: The canonical user id of the account that wrote it; "" if unknown.
    owner: str = ""
    #: The version's ACL grants; None is the default (its owner has FULL_CONTROL).
    acl: tuple[Grant, ...] | None = None
    #: Set when the stored bytes are encrypted (then `size` and `etag` are the
    #: ciphertext's; `encryption.plain_size`/`plain_etag` what the client wrote).
    encryption: Encryption | None = None
    #: Attributes added by later features.
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def shown_size(self) -> int:
        """The size clients see: the plaintext's for an encrypted version."""
        return self.size if self.encryption is None else self.encryption.plain_size

    @property
    def shown_etag(self) -> str:
        """The ETag clients see."""
        return self.etag if self.encryption is None else self.encryption.plain_etag


@dataclass(frozen=True)
class DeleteResult:
    """What a DELETE did: S3's x-amz-version-id and x-amz-delete-marker answers."""

    #: The delete marker made, or the version removed; None in a never-versioned bucket
    #: (nothing to report).
    version_id: str | None = None
    #: A marker was made, or the version removed was a marker.
    delete_marker: bool = False


@dataclass(frozen=True)
class VersionSummary:
    """One version (or delete marker) in ListObjectVersions."""

    key: str
    version_id: str
    is_latest: bool
    delete_marker: bool
    size: int
    etag: str  # "" for a delete marker
    last_modified: datetime
    storage_class: str = "STANDARD"
    #: The version's owner (canonical user id); "" if unknown to the listing.
    owner: str = ""


@dataclass
class VersionListPage:
    """Keys ascending (UTF-8 byte order), each key's versions newest first (by the order
    they were acknowledged, the null version in its place), markers included."""

    versions: list[VersionSummary]
    common_prefixes: list[str]
    truncated: bool
    next_key_marker: str | None
    next_version_id_marker: str | None


#: Called under the key's lock with the version a delete or metadata change is about to
#: touch (None: the key has no such version); raising aborts the change untouched. How
#: the ASGI layer applies If-Match and object-lock rules atomically with the change.
Guard = Callable[["ObjectMeta | None"], None]


@dataclass
class ObjectWrite:
    """What the ASGI layer hands a backend along with a body to store."""

    content_type: str = "binary/octet-stream"
    headers: dict[str, str] = field(default_factory=dict)
    user_metadata: dict[str, str] = field(default_factory=dict)
    #: Fed every byte of the body, in order, in the backend's I/O thread, so the
    #: event loop never hashes.
    digesters: list[Digester] = field(default_factory=list)
    #: Called once the whole body is durable in a temporary place but before it becomes
    #: visible, with (size, md5 hex). Returns the checksums to store; raises to abort
    #: the write (BadDigest, checksum mismatch, ...), leaving the previous object intact.
    finalize: Callable[[int, str], dict[str, str]] | None = None
    checksum_type: str | None = None
    #: Conditional write, checked atomically with the commit:
    if_match: str | None = None  # ETag (no quotes) the current object must have
    if_none_match: bool = False  # True for "If-None-Match: *": fail if the key exists
    max_size: int | None = None  # EntityTooLarge beyond this many bytes
    #: Object lock settings stored with the new version (x-amz-object-lock-* headers, or
    #: the bucket's default retention, resolved by the ASGI layer).
    retention: Retention | None = None
    legal_hold: bool = False
    #: The new version's tag set (x-amz-tagging, a POST form's tagging, a copy's tags).
    tags: dict[str, str] = field(default_factory=dict)
    #: The writer's canonical user id (stored as the version's owner).
    owner: str = ""
    #: The new version's ACL grants (x-amz-acl, x-amz-grant-*); None: the default.
    acl: tuple[Grant, ...] | None = None
    #: How the body handed over is sealed; stored with the version. A backend reads it
    #: once the body is consumed (the sealing stream fills in the plain size and ETag as
    #: it ends). An upload keeps its creation's; CompleteMultipartUpload's write carries
    #: the object's final record.
    encryption: Encryption | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class ObjectSummary:
    """One key in a listing."""

    key: str
    size: int
    etag: str
    last_modified: datetime
    storage_class: str = "STANDARD"
    #: The object's owner (canonical user id); "" if unknown to the listing.
    owner: str = ""


@dataclass
class ListPage:
    """One page of a listing: keys and common prefixes, each sorted, interleaved by name."""

    objects: list[ObjectSummary]
    common_prefixes: list[str]
    truncated: bool
    #: The greatest key or common prefix on this page: resuming "after" it continues
    #: the listing without repeats (a common prefix resumes past everything under it).
    last: str | None


@dataclass
class UploadInfo:
    key: str
    upload_id: str
    initiated: datetime
    write: ObjectWrite  # content type, headers and metadata given at creation
    checksum_algorithm: str | None = None
    checksum_type: str | None = None


@dataclass
class UploadListPage:
    uploads: list[UploadInfo]
    common_prefixes: list[str]
    truncated: bool
    next_key_marker: str | None
    next_upload_id_marker: str | None


@dataclass
class PartListPage:
    upload: UploadInfo
    parts: list[PartInfo]
    truncated: bool
    next_part_number_marker: int | None


@dataclass(frozen=True)
class CompletedPart:
    """A part as named in a CompleteMultipartUpload request."""

    number: int
    etag: str  # no quotes
    checksums: dict[str, str] = field(default_factory=dict)


class ObjectReader(Protocol):
    """An open object: its metadata and bytes stay consistent until closed, even if the key
    is overwritten or deleted meanwhile."""

    meta: ObjectMeta

    def stream(self, start: int = 0, end: int | None = None) -> AsyncIterator[bytes | memoryview]:
        """Bytes [start, end] inclusive (end None: to the last byte), in large chunks."""
        ...

    async def close(self) -> None: ...


class Backend(Protocol):
    """The storage service: buckets, objects, multipart uploads and bucket policies."""

    async def open(self) -> None:
        """Prepare the store (recover interrupted writes, start housekeeping)."""

    async def close(self) -> None: ...

    # Buckets
    async def list_buckets(self) -> list[BucketInfo]: ...
    async def create_bucket(
        self, bucket: str, *, object_lock: bool = False, owner: str = ""
    ) -> BucketInfo:
        """With `object_lock`, the bucket starts with versioning Enabled and lock on;
        `owner` (a canonical user id) is stored with it."""
        ...

    async def delete_bucket(self, bucket: str) -> None:
        """BucketNotEmpty while any version or delete marker is left."""
        ...

    async def head_bucket(self, bucket: str) -> BucketInfo:
        """Cheap enough to call per request (backends may cache a bucket record for a
        second or two: S3 itself takes a while to apply a versioning change)."""
        ...

    async def update_bucket(
        self, bucket: str, *, versioning: str | None = None, object_lock: bool | None = None
    ) -> BucketInfo:
        """Persist a new versioning state and/or turn object lock on (the ASGI layer
        enforces S3's rules on which changes are allowed)."""
        ...

    # Objects. `version_id` None means the current version; "null" the null version.
    # Reads of a current delete marker raise NoSuchKey(delete_marker=True, version_id=..);
    # a version id that names a marker raises MethodNotAllowed(delete_marker=True, ...);
    # an unknown one NoSuchVersion.
    async def put_object(
        self, bucket: str, key: str, body: AsyncIterable[bytes], write: ObjectWrite
    ) -> ObjectMeta:
        """Enabled bucket: a new version with a fresh id; otherwise the null version,
        replacing the previous null one. The version acknowledged last is current."""
        ...

    async def head_object(
        self, bucket: str, key: str, version_id: str | None = None
    ) -> ObjectMeta: ...
    async def open_object(
        self, bucket: str, key: str, version_id: str | None = None
    ) -> ObjectReader: ...
    async def delete_object(
        self,
        bucket: str,
        key: str,
        *,
        version_id: str | None = None,
        guard: Guard | None = None,
        owner: str = "",
    ) -> DeleteResult:
        """Without a version id: never-versioned bucket, remove the object (idempotent);
        Enabled, add a delete marker (owned by `owner`, a canonical user id); Suspended,
        replace the null version by a marker.
        With one: remove that version (or marker) for good; the next newest becomes
        current. `guard` sees the version removed (or the current one, without a version
        id). The bucket must exist."""
        ...

    async def update_object_meta(
        self,
        bucket: str,
        key: str,
        version_id: str | None,
        change: Callable[[ObjectMeta], ObjectMeta],
    ) -> ObjectMeta:
        """Replace one version's metadata (retention, legal hold, later tags and ACLs)
        atomically: `change` gets the stored metadata under the key's lock and returns
        the new one (it may raise to refuse); the bytes and version id stay."""
        ...

    async def list_object_versions(
        self,
        bucket: str,
        *,
        prefix: str = "",
        delimiter: str = "",
        key_marker: str = "",
        version_id_marker: str = "",
        max_keys: int = 1000,
    ) -> VersionListPage:
        """Versions after (key_marker, version_id_marker): with only a key marker, keys
        greater than it; with both, that key's versions older than the marker version,
        then greater keys. Reads only as much as one page needs."""
        ...

    async def list_objects(
        self,
        bucket: str,
        *,
        prefix: str = "",
        delimiter: str = "",
        after: str = "",
        max_keys: int = 1000,
    ) -> ListPage:
        """Keys and common prefixes strictly greater than `after` in UTF-8 byte order."""
        ...

    # Multipart
    async def create_multipart_upload(
        self,
        bucket: str,
        key: str,
        write: ObjectWrite,
        checksum_algorithm: str | None = None,
        checksum_type: str | None = None,
    ) -> UploadInfo: ...
    async def upload_part(
        self,
        bucket: str,
        key: str,
        upload_id: str,
        part_number: int,
        body: AsyncIterable[bytes],
        write: ObjectWrite,
    ) -> PartInfo:
        """`write` carries only digesters, finalize and max_size."""
        ...

    async def list_parts(
        self, bucket: str, key: str, upload_id: str, *, after: int = 0, max_parts: int = 1000
    ) -> PartListPage: ...
    async def get_upload(self, bucket: str, key: str, upload_id: str) -> UploadInfo: ...
    async def complete_multipart_upload(
        self,
        bucket: str,
        key: str,
        upload_id: str,
        parts: list[CompletedPart],
        write: ObjectWrite,
    ) -> ObjectMeta:
        """Validates the part list (InvalidPartOrder, InvalidPart, EntityTooSmall), then
        assembles. `write.digesters` see the whole object's bytes where the backend reads
        them; `write.finalize(size, etag)` returns the checksums to store. The upload's own
        ObjectWrite (from creation) supplies content type, headers and metadata."""
        ...

    async def abort_multipart_upload(self, bucket: str, key: str, upload_id: str) -> None: ...
    async def list_multipart_uploads(
        self,
        bucket: str,
        *,
        prefix: str = "",
        delimiter: str = "",
        key_marker: str = "",
        upload_id_marker: str = "",
        max_uploads: int = 1000,
    ) -> UploadListPage: ...
    async def expire_multipart_uploads(self, older_than: datetime) -> int:
        """Abort uploads initiated before `older_than`; returns how many."""
        ...

    # Bucket sub-resource documents (cors, and later lifecycle, tagging, ...), stored as
    # given; NoSuchBucketDocument when unset.
    async def get_bucket_document(self, bucket: str, name: str) -> str: ...
    async def put_bucket_document(self, bucket: str, name: str, text: str) -> None: ...
    async def delete_bucket_document(self, bucket: str, name: str) -> None: ...

    # Bucket policies (stored as given; the auth layer parses them)
    async def get_bucket_policy(self, bucket: str) -> str: ...
    async def put_bucket_policy(self, bucket: str, policy: str) -> None: ...
    async def delete_bucket_policy(self, bucket: str) -> None: ...
