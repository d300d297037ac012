"""A bucket's default encryption (PutBucketEncryption): its record, its XML, and the
cached read that object writes make.

The configuration is a bucket document ("encryption", JSON) in every mode, so the erasure
and cluster stores replicate it as they do the other bucket settings. A write without
encryption headers takes the bucket's default (`bucket_default_encryption`); the value
read is cached for a second per bucket, forgotten at once when this process changes it
(another process's or node's change shows within the second), as the lifecycle and CORS
rules are read.

As S3: one Rule with ApplyServerSideEncryptionByDefault (SSEAlgorithm AES256 or
aws:kms; KMSMasterKeyID only with aws:kms, not checked against the keyring at PUT time:
"Amazon S3 doesn't validate the KMS key ID provided in PutBucketEncryption requests",
so an unknown id fails the object writes that use it) and an optional BucketKeyEnabled.
"""

from __future__ import annotations

import json
import weakref
from dataclasses import dataclass
from xml.etree.ElementTree import Element

from shoal.app.errors import InvalidArgument, MalformedXML, NotImplementedFeature
from shoal.app.xml import Node, document, parse
from shoal.storage.backend import Backend
from shoal.storage.errors import NoSuchBucket, NoSuchBucketDocument
from shoal.storage.ttlcache import TtlCache

DOCUMENT = "encryption"
AES256 = "AES256"
KMS = "aws:kms"
ALGORITHMS = frozenset({AES256, KMS})
#: Values S3 accepts that shoal does not implement (dual-layer KMS; FSx and Backup
#: access points): answered 501 rather than stored and silently not applied.
UNIMPLEMENTED_ALGORITHMS = frozenset({"aws:kms:dsse", "aws:fsx", "aws:backup"})
CACHE_SECONDS = 1.0


@dataclass(frozen=True)
class DefaultEncryption:
    """What a bucket applies to a write that asks for no encryption itself."""

    algorithm: str  # "AES256" (SSE-S3) | "aws:kms" (SSE-KMS)
    kms_key_id: str | None = None  # as given (an id or an ARN); None: the keyring's default
    bucket_key: bool = False  # BucketKeyEnabled, echoed on the objects it applies to

    def to_json(self) -> str:
        return json.dumps(
            {
                "algorithm": self.algorithm,
                "kms_key_id": self.kms_key_id,
                "bucket_key": self.bucket_key,
            }
        )

    @classmethod
    def from_json(cls, text: str) -> DefaultEncryption:
        raw = json.loads(text)
        algorithm, key_id, bucket_key = raw["algorithm"], raw["kms_key_id"], raw["bucket_key"]
        if algorithm not in ALGORITHMS or not isinstance(bucket_key, bool):
            raise ValueError(f"not a default encryption record: {text!r}")
        if key_id is not None and (algorithm != KMS or not isinstance(key_id, str)):
            raise ValueError(f"not a default encryption record: {text!r}")
        return cls(algorithm, key_id, bucket_key)


def parse_configuration(body: bytes) -> DefaultEncryption:
    """A ServerSideEncryptionConfiguration with exactly one Rule (S3 answers MalformedXML
    to none or two); its ApplyServerSideEncryptionByDefault is required here, as shoal
    has no other rule content to keep (BlockedEncryptionTypes NONE is accepted: SSE-C is
    never blocked)."""
    root = parse(body)
    if root.tag != "ServerSideEncryptionConfiguration" or len(root) != 1 or root[0].tag != "Rule":
        raise MalformedXML()
    rule = _children(
        root[0],
        {"ApplyServerSideEncryptionByDefault", "BucketKeyEnabled", "BlockedEncryptionTypes"},
    )
    if "BlockedEncryptionTypes" in rule:
        _blocked_types(rule["BlockedEncryptionTypes"])
    apply = rule.get("ApplyServerSideEncryptionByDefault")
    if apply is None:
        raise MalformedXML()
    fields = _children(apply, {"SSEAlgorithm", "KMSMasterKeyID"})
    if "SSEAlgorithm" not in fields:
        raise MalformedXML()
    algorithm = (fields["SSEAlgorithm"].text or "").strip()
    if algorithm in UNIMPLEMENTED_ALGORITHMS:
        raise NotImplementedFeature(f"The {algorithm} default encryption is not implemented.")
    if algorithm not in ALGORITHMS:
        raise MalformedXML()
    key_id: str | None = None
    if "KMSMasterKeyID" in fields:
        if algorithm != KMS:
            raise InvalidArgument(
                "a KMSMasterKeyID is not applicable if the default sse algorithm is not aws:kms"
                " or aws:kms:dsse",
                ArgumentName="ApplyServerSideEncryptionByDefault",
            )
        key_id = (fields["KMSMasterKeyID"].text or "").strip()
        if not key_id:
            raise MalformedXML()
    bucket_key = False
    if "BucketKeyEnabled" in rule:
        text = (rule["BucketKeyEnabled"].text or "").strip().lower()
        if text not in ("true", "false"):
            raise MalformedXML()
        bucket_key = text == "true"
    return DefaultEncryption(algorithm, key_id, bucket_key)


def _children(element: Element, allowed: set[str]) -> dict[str, Element]:
    """An element's children by tag: each at most once, none outside `allowed`."""
    found: dict[str, Element] = {}
    for child in element:
        if child.tag not in allowed or child.tag in found:
            raise MalformedXML()
        found[child.tag] = child
    return found


def _blocked_types(element: Element) -> None:
    types = [(child.tag, (child.text or "").strip()) for child in element]
    if not types or any(tag != "EncryptionType" for tag, _ in types):
        raise MalformedXML()
    for _, value in types:
        if value == "SSE-C":
            raise NotImplementedFeature("Blocking SSE-C uploads is not implemented.")
        if value != "NONE":
            raise MalformedXML()


def render(config: DefaultEncryption) -> bytes:
    """The document GetBucketEncryption answers (BucketKeyEnabled always, as S3)."""
    default: list[Node] = [
        ("SSEAlgorithm", config.algorithm),
        ("KMSMasterKeyID", config.kms_key_id),
    ]
    rule: list[Node] = [
        ("ApplyServerSideEncryptionByDefault", default),
        ("BucketKeyEnabled", config.bucket_key),
    ]
    return document("ServerSideEncryptionConfiguration", [("Rule", rule)])


class BucketEncryptions:
    """Each bucket's default encryption, read at most once a second per bucket."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        # A one-element tuple, so "no configuration" (None) is a cached answer too.
        self._cache: TtlCache[str, tuple[DefaultEncryption | None]] = TtlCache(CACHE_SECONDS)

    def forget(self, bucket: str) -> None:
        """Call after this process put or deleted the bucket's configuration."""
        self._cache.forget(bucket)

    async def get(self, bucket: str) -> DefaultEncryption | None:
        """The bucket's default; None without one (or without the bucket: the write
        itself then answers NoSuchBucket)."""
        return (await self._cache.load(bucket, lambda: self._read(bucket)))[0]

    async def _read(self, bucket: str) -> tuple[DefaultEncryption | None]:
        try:
            document = await self.backend.get_bucket_document(bucket, DOCUMENT)
        except (NoSuchBucketDocument, NoSuchBucket):
            return (None,)
        return (DefaultEncryption.from_json(document),)


#: One cache per open backend (servers in one process each have their own).
_CACHES: weakref.WeakKeyDictionary[Backend, BucketEncryptions] = weakref.WeakKeyDictionary()


def encryptions(backend: Backend) -> BucketEncryptions:
    """The default-encryption cache of `backend`."""
    cache = _CACHES.get(backend)
    if cache is None:
        cache = _CACHES[backend] = BucketEncryptions(backend)
    return cache


async def bucket_default_encryption(backend: Backend, bucket: str) -> DefaultEncryption | None:
    """The default encryption a write to `bucket` without encryption headers gets."""
    return await encryptions(backend).get(bucket)
