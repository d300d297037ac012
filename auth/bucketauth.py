"""What authorization needs to know of a bucket, as typed records, and how its settings
are kept as bucket documents (every mode stores those):

- "acl": the bucket's grants, JSON; absent means private (the owner has FULL_CONTROL).
- "ownership-controls": the Object Ownership rule, as its name (BucketOwnerEnforced,
  BucketOwnerPreferred, ObjectWriter); absent means ObjectWriter with ACLs enabled.
- "public-access-block": the four switches, JSON; absent means none of them.
- "object-grants": present once some object of the bucket was given an owner other than
  the bucket's or grants of its own (written before that object); while it is absent
  every object is the bucket owner's and private, so authorization need not read one.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from functools import cached_property

from shoal.auth.acl import effective
from shoal.auth.policy import Policy
from shoal.storage.backend import Grant

ACL_DOCUMENT = "acl"
OWNERSHIP_DOCUMENT = "ownership-controls"
PUBLIC_ACCESS_DOCUMENT = "public-access-block"
OBJECT_GRANTS_DOCUMENT = "object-grants"
SETTINGS_DOCUMENTS = (
    ACL_DOCUMENT,
    OWNERSHIP_DOCUMENT,
    PUBLIC_ACCESS_DOCUMENT,
    OBJECT_GRANTS_DOCUMENT,
)

ENFORCED = "BucketOwnerEnforced"
PREFERRED = "BucketOwnerPreferred"
OBJECT_WRITER = "ObjectWriter"
OWNERSHIP_RULES = (ENFORCED, PREFERRED, OBJECT_WRITER)


@dataclass(frozen=True)
class PublicAccessBlock:
    block_public_acls: bool = False
    ignore_public_acls: bool = False
    block_public_policy: bool = False
    restrict_public_buckets: bool = False


NO_BLOCK = PublicAccessBlock()
#: PublicAccessBlockConfiguration element names, in S3's order, and their fields.
PUBLIC_ACCESS_FIELDS = (
    ("BlockPublicAcls", "block_public_acls"),
    ("IgnorePublicAcls", "ignore_public_acls"),
    ("BlockPublicPolicy", "block_public_policy"),
    ("RestrictPublicBuckets", "restrict_public_buckets"),
)


@dataclass(frozen=True)
class BucketAuth:
    """A bucket's owner (canonical id), grants, Object Ownership rule ("" when unset),
    public access block (None when unset) and parsed policy."""

    owner: str
    acl: tuple[Grant, ...]
    ownership: str = ""
    public_access: PublicAccessBlock | None = None
    policy: Policy | None = None
    policy_public: bool = False
    #: Some object may be owned by another account or carry grants of its own.
    object_grants: bool = False

    @cached_property
    def policy_denies(self) -> bool:
        """Whether the policy has a Deny statement (without one, nothing it says can
        refuse the owner, so the owner's requests skip evaluating it)."""
        return self.policy is not None and any(s.effect == "Deny" for s in self.policy.statements)

    @property
    def acls_enabled(self) -> bool:
        return self.ownership != ENFORCED

    @property
    def block(self) -> PublicAccessBlock:
        return self.public_access or NO_BLOCK


def acl_document(grants: tuple[Grant, ...]) -> str:
    return json.dumps({"grants": [[g.grantee, g.permission, g.group] for g in grants]})


def acl_from_document(text: str | None, owner: str) -> tuple[Grant, ...]:
    if text is None:
        return effective(None, owner)
    return tuple(Grant(str(g[0]), str(g[1]), bool(g[2])) for g in json.loads(text)["grants"])


def public_access_document(block: PublicAccessBlock) -> str:
    return json.dumps(dataclasses.asdict(block))


def public_access_from_document(text: str | None) -> PublicAccessBlock | None:
    if text is None:
        return None
    data = json.loads(text)
    return PublicAccessBlock(**{f: bool(data.get(f)) for _, f in PUBLIC_ACCESS_FIELDS})


def ownership_from_document(text: str | None) -> str:
    return text.strip() if text is not None and text.strip() in OWNERSHIP_RULES else ""
