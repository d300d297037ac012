"""Access control lists: canned ACLs, x-amz-grant-* headers, AccessControlPolicy
documents, and what a grant lets its grantee do.

Grants are `Grant(grantee, permission, group)` records (storage/backend.py): a grantee is
a canonical user id, or a group URI. A grant by e-mail address is resolved to the
account's canonical id when it is set, as S3 does, so only ids and groups are stored.
Which ACL permission covers which IAM action follows S3's "Mapping of ACL permissions
and access policy permissions". Pure logic: parsing takes an already parsed XML element.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from xml.etree.ElementTree import Element

from shoal.auth.accounts import Accounts
from shoal.storage.backend import Grant

READ, WRITE, READ_ACP, WRITE_ACP = "READ", "WRITE", "READ_ACP", "WRITE_ACP"
FULL_CONTROL = "FULL_CONTROL"
PERMISSIONS = (FULL_CONTROL, WRITE, WRITE_ACP, READ, READ_ACP)

ALL_USERS = "http://acs.amazonaws.com/groups/global/AllUsers"
AUTHENTICATED_USERS = "http://acs.amazonaws.com/groups/global/AuthenticatedUsers"
LOG_DELIVERY = "http://acs.amazonaws.com/groups/s3/LogDelivery"
GROUPS = frozenset({ALL_USERS, AUTHENTICATED_USERS, LOG_DELIVERY})
#: Grants to these make a resource public (S3's "The meaning of public").
PUBLIC_GROUPS = frozenset({ALL_USERS, AUTHENTICATED_USERS})

CANNED = (
    "private",
    "public-read",
    "public-read-write",
    "authenticated-read",
    "bucket-owner-read",
    "bucket-owner-full-control",
    "log-delivery-write",
)
GRANT_HEADERS = {
    "x-amz-grant-read": READ,
    "x-amz-grant-write": WRITE,
    "x-amz-grant-read-acp": READ_ACP,
    "x-amz-grant-write-acp": WRITE_ACP,
    "x-amz-grant-full-control": FULL_CONTROL,
}
#: S3 refuses an ACL of more grants than this.
MAX_GRANTS = 100

#: IAM action -> the bucket ACL permission that allows it.
BUCKET_PERMISSIONS = {
    "s3:ListBucket": READ,
    "s3:ListBucketVersions": READ,
    "s3:ListBucketMultipartUploads": READ,
    "s3:PutObject": WRITE,
    "s3:DeleteObject": WRITE,
    # s3:DeleteObjectVersion: never by a bucket grant (AWS: only for the bucket owner).
    "s3:AbortMultipartUpload": WRITE,
    "s3:ListMultipartUploadParts": WRITE,
    "s3:GetBucketAcl": READ_ACP,
    "s3:PutBucketAcl": WRITE_ACP,
}
#: IAM action -> the object ACL permission that allows it.
OBJECT_PERMISSIONS = {
    "s3:GetObject": READ,
    "s3:GetObjectVersion": READ,
    "s3:GetObjectAttributes": READ,
    "s3:GetObjectVersionAttributes": READ,
    "s3:GetObjectAcl": READ_ACP,
    "s3:GetObjectVersionAcl": READ_ACP,
    "s3:PutObjectAcl": WRITE_ACP,
    "s3:PutObjectVersionAcl": WRITE_ACP,
}

XSI_TYPE = "{http://www.w3.org/2001/XMLSchema-instance}type"
_CANONICAL_ID = re.compile(r"[0-9a-f]{64}")
#: One `type="value"` pair of an x-amz-grant-* header (quotes optional).
_GRANT_PAIR = re.compile(r'\s*([A-Za-z]+)\s*=\s*(?:"([^"]*)"|([^,\s]*))\s*(?:,|$)')

MALFORMED = (
    "The XML you provided was not well-formed or did not validate against our published schema"
)


class AclError(ValueError):
    """An ACL S3 would refuse: the error code, its message and extra fields."""

    def __init__(self, code: str, message: str = "", **fields: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code, self.message, self.fields = code, message, fields


def default_acl(owner: str) -> tuple[Grant, ...]:
    """A private resource's ACL: its owner has FULL_CONTROL."""
    return (Grant(owner, FULL_CONTROL),)


def effective(acl: tuple[Grant, ...] | None, owner: str) -> tuple[Grant, ...]:
    """The stored grants, or the default ones when none were ever set."""
    return default_acl(owner) if acl is None else acl


def canned_acl(name: str, owner: str, bucket_owner: str, *, bucket: bool) -> tuple[Grant, ...]:
    """The grants a canned ACL stands for, on a bucket or on an object (the
    bucket-owner-* ACLs add the bucket owner on objects only)."""
    if name not in CANNED:
        raise AclError("InvalidArgument", "", ArgumentName="x-amz-acl", ArgumentValue=name)
    grants = [Grant(owner, FULL_CONTROL)]
    if name in ("public-read", "public-read-write"):
        grants.append(Grant(ALL_USERS, READ, True))
    if name == "public-read-write":
        grants.append(Grant(ALL_USERS, WRITE, True))
    elif name == "authenticated-read":
        grants.append(Grant(AUTHENTICATED_USERS, READ, True))
    elif name == "log-delivery-write":
        grants += [Grant(LOG_DELIVERY, WRITE, True), Grant(LOG_DELIVERY, READ_ACP, True)]
    elif name.startswith("bucket-owner-") and not bucket and bucket_owner != owner:
        permission = READ if name == "bucket-owner-read" else FULL_CONTROL
        grants.append(Grant(bucket_owner, permission))
    return tuple(grants)


def grantee(kind: str, value: str, accounts: Accounts) -> tuple[str, bool]:
    """(canonical id or group URI, is a group) for a grantee named by canonical id,
    e-mail address or group URI; AWS's errors for ones that name nobody."""
    if kind == "id":
        if not _CANONICAL_ID.fullmatch(value) or accounts.by_id(value) is None:
            raise AclError("InvalidArgument", "Invalid id", ArgumentName="CanonicalUser/ID",
                           ArgumentValue=value)  # fmt: skip
        return value, False
    if kind == "emailAddress":
        account = accounts.by_email(value)
        if account is None:
            raise AclError(
                "UnresolvableGrantByEmailAddress",
                "The e-mail address you provided does not match any account on record.",
                EmailAddress=value,
            )
        return account.canonical_id, False
    if kind == "uri":
        if value not in GROUPS:
            raise AclError("InvalidArgument", "Invalid group uri", ArgumentName="Group/URI",
                           ArgumentValue=value)  # fmt: skip
        return value, True
    raise AclError("InvalidArgument", "Argument format not recognized", ArgumentName=kind,
                   ArgumentValue=value)  # fmt: skip


def header_grants(headers: Mapping[str, str], accounts: Accounts) -> tuple[Grant, ...] | None:
    """The grants of the x-amz-grant-* headers (`id="..."`, `emailAddress="..."`,
    `uri="..."`, comma-separated); None when there are none."""
    grants: list[Grant] = []
    given = False
    for name, permission in GRANT_HEADERS.items():
        value = headers.get(name)
        if value is None:
            continue
        given = True
        pos = 0
        while pos < len(value):
            match = _GRANT_PAIR.match(value, pos)
            if match is None or match.end() == pos:
                raise AclError("InvalidArgument", "Argument format not recognized",
                               ArgumentName=name, ArgumentValue=value)  # fmt: skip
            kind, text = match[1], match[2] if match[2] is not None else match[3]
            who, group = grantee(kind, text, accounts)
            grants.append(Grant(who, permission, group))
            pos = match.end()
    if not given:
        return None
    return _bounded(grants)


def request_acl(
    headers: Mapping[str, str],
    accounts: Accounts,
    owner: str,
    bucket_owner: str,
    *,
    bucket: bool,
    canned_name: str = "x-amz-acl",
) -> tuple[Grant, ...] | None:
    """The ACL a request sets with x-amz-acl or x-amz-grant-* (None: neither given).
    Both at once is S3's InvalidRequest."""
    canned = headers.get(canned_name)
    grants = header_grants(headers, accounts)
    if canned is not None and grants is not None:
        raise AclError(
            "InvalidRequest", "Specifying both Canned ACLs and Header Grants is not allowed"
        )
    if canned is not None:
        return canned_acl(canned.strip(), owner, bucket_owner, bucket=bucket)
    return grants


def policy_grants(root: Element, accounts: Accounts) -> tuple[Grant, ...]:
    """The grants of an AccessControlPolicy document (namespaces already stripped);
    MalformedACLError for anything outside S3's schema."""
    if root.tag != "AccessControlPolicy":
        raise AclError("MalformedACLError", MALFORMED)
    owner = root.find("Owner")
    if owner is not None and not (owner.findtext("ID") or "").strip():
        raise AclError("MalformedACLError", MALFORMED)
    listing = root.find("AccessControlList")
    if listing is None:
        raise AclError("MalformedACLError", MALFORMED)
    grants: list[Grant] = []
    for element in listing:
        if element.tag != "Grant":
            raise AclError("MalformedACLError", MALFORMED)
        grants.append(_grant(element, accounts))
    return _bounded(grants)


_TYPES = {"CanonicalUser": ("ID", "id"), "AmazonCustomerByEmail": ("EmailAddress", "emailAddress"),
          "Group": ("URI", "uri")}  # fmt: skip


def _grant(element: Element, accounts: Accounts) -> Grant:
    who = element.find("Grantee")
    permission = (element.findtext("Permission") or "").strip()
    if who is None or permission not in PERMISSIONS:
        raise AclError("MalformedACLError", MALFORMED)
    kind = who.get(XSI_TYPE) or who.get("type")
    if kind not in _TYPES:
        raise AclError("MalformedACLError", MALFORMED)
    tag, header_kind = _TYPES[kind]
    value = who.findtext(tag)
    if value is None or not value.strip():
        raise AclError("MalformedACLError", MALFORMED)
    canonical, group = grantee(header_kind, value.strip(), accounts)
    return Grant(canonical, permission, group)


def _bounded(grants: list[Grant]) -> tuple[Grant, ...]:
    if len(grants) > MAX_GRANTS:
        raise AclError("MalformedACLError", MALFORMED)
    return tuple(dict.fromkeys(grants))


def permits(
    grants: Iterable[Grant], requester: str | None, permission: str, *, ignore_public: bool
) -> bool:
    """Whether a grant gives `permission` to the caller (`requester`: its canonical id,
    None for anonymous); `ignore_public`: grants to AllUsers and AuthenticatedUsers
    count for nothing (IgnorePublicAcls)."""
    for grant in grants:
        if grant.permission != permission and grant.permission != FULL_CONTROL:
            continue
        if not grant.group:
            if requester is not None and grant.grantee == requester:
                return True
        elif ignore_public:
            continue
        elif grant.grantee == ALL_USERS or (
            grant.grantee == AUTHENTICATED_USERS and requester is not None
        ):
            return True
    return False


def is_public(grants: Iterable[Grant]) -> bool:
    """Whether an ACL grants anything to AllUsers or AuthenticatedUsers."""
    return any(g.group and g.grantee in PUBLIC_GROUPS for g in grants)


def grants_outside(grants: Iterable[Grant], owner: str) -> bool:
    """Whether an ACL grants anything to anyone but `owner` (S3 refuses BucketOwnerEnforced
    on such a bucket)."""
    return any(g.group or g.grantee != owner for g in grants)
