"""Authorization, in the order AWS evaluates a request to S3:

1. an explicit Deny in the bucket policy refuses (never the bucket owner's own
   Get/Put/DeleteBucketPolicy: AWS spares the owning account's root user, so no policy
   locks its owner out);
2. the bucket's owner, and an admin account (the owner of every bucket), may do
   anything to the bucket and its objects;
3. an Allow in the bucket policy allows (not for others than the owner when the policy
   is public and RestrictPublicBuckets is on);
4. with ACLs enabled (no BucketOwnerEnforced), a bucket grant (READ: list, WRITE: put
   and delete objects, READ_ACP / WRITE_ACP: its ACL) or, for an existing object, the
   object's owner (ObjectWriter) or an object grant (READ, READ_ACP, WRITE_ACP) allows
   (grants to AllUsers / AuthenticatedUsers ignored under IgnorePublicAcls);
5. anything else is AccessDenied. Anonymous callers go the same way.

Identity policies (attached to runtime accounts, auth/accounts.py) join by AWS's rules: an
explicit Deny in them refuses anything, first of all; an account without any is the
root of its own account (as configured accounts are) and goes the way above; an account
with some is an IAM user: in its own buckets (same account) an Allow from its policies
or from the bucket's policy or ACL suffices, elsewhere (cross-account) its policies
must allow AND the bucket's policy or ACL must allow. Admin accounts stay admins, only
their policies' Deny applies.

A bucket's owner, policy, ACL, ownership rule and public access block are cached per
bucket for a second (`BucketSettings`) and dropped at once when this process changes
one, so most requests cost no read. An object's metadata is read only for a caller
that neither owns the bucket nor is allowed by its policy, and only once some object
of the bucket has an owner or grants of its own ("object-grants").
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, replace

from shoal.app.errors import AccessDenied
from shoal.auth import Principal
from shoal.auth.accounts import Account, Accounts
from shoal.auth.acl import BUCKET_PERMISSIONS, OBJECT_PERMISSIONS, READ, WRITE, effective, permits
from shoal.auth.actions import OPERATIONS, resource_arn
from shoal.auth.bucketauth import (
    ACL_DOCUMENT,
    OBJECT_GRANTS_DOCUMENT,
    OWNERSHIP_DOCUMENT,
    PUBLIC_ACCESS_DOCUMENT,
    BucketAuth,
    acl_from_document,
    ownership_from_document,
    public_access_from_document,
)
from shoal.auth.policy import (
    Decision,
    Policy,
    PolicyError,
    PolicyRequest,
    evaluate,
    parse_policy,
)
from shoal.auth.publicpolicy import is_public_policy
from shoal.storage.backend import Backend, ObjectMeta
from shoal.storage.errors import (
    NoSuchBucket,
    NoSuchBucketDocument,
    NoSuchBucketPolicy,
    StorageError,
)
from shoal.storage.ttlcache import TtlCache
from shoal.storage.version_ids import valid_version_id

CACHE_SECONDS = 1.0
#: What the bucket owner may always do, whatever its policy denies.
POLICY_ACTIONS = frozenset({"s3:GetBucketPolicy", "s3:PutBucketPolicy", "s3:DeleteBucketPolicy"})


class BucketSettings:
    """Each bucket's BucketAuth, read from the store at most once a second (one read at
    a time: the requests that find it expired wait for the same one)."""

    def __init__(self, backend: Backend, accounts: Accounts) -> None:
        self.backend = backend
        self.accounts = accounts
        # A one-element tuple, so "no such bucket" (None) is a cached answer too.
        self._cache: TtlCache[str, tuple[BucketAuth | None]] = TtlCache(CACHE_SECONDS)

    def forget(self, bucket: str) -> None:
        """Call after a bucket, its policy, ACL, ownership or public access block changed."""
        self._cache.forget(bucket)

    async def get(self, bucket: str) -> BucketAuth | None:
        """The bucket's settings; None when it does not exist."""
        return (await self._cache.load(bucket, lambda: self._load(bucket)))[0]

    async def _load(self, bucket: str) -> tuple[BucketAuth | None]:
        try:
            info = await self.backend.head_bucket(bucket)
            policy, acl, ownership, block, grants = await asyncio.gather(
                self._policy(bucket),
                self._document(bucket, ACL_DOCUMENT),
                self._document(bucket, OWNERSHIP_DOCUMENT),
                self._document(bucket, PUBLIC_ACCESS_DOCUMENT),
                self._document(bucket, OBJECT_GRANTS_DOCUMENT),
            )
        except NoSuchBucket:
            return (None,)
        owner = self.accounts.owner_id(info.owner)
        return (
            BucketAuth(
                owner,
                acl_from_document(acl, owner),
                ownership_from_document(ownership),
                public_access_from_document(block),
                policy,
                is_public_policy(policy),
                grants is not None,
            ),
        )

    async def note_object_grants(self, bucket: str) -> None:
        """Record, before the write that needs it, that some object of the bucket may be
        another account's or carry grants (once: later calls read the cache)."""
        auth = await self.get(bucket)
        if auth is None or auth.object_grants:
            return
        await self.backend.put_bucket_document(bucket, OBJECT_GRANTS_DOCUMENT, "true")
        self.forget(bucket)

    async def _policy(self, bucket: str) -> Policy | None:
        try:
            return parse_policy(await self.backend.get_bucket_policy(bucket), bucket)
        except (NoSuchBucketPolicy, PolicyError):
            return None

    async def _document(self, bucket: str, name: str) -> str | None:
        try:
            return await self.backend.get_bucket_document(bucket, name)
        except NoSuchBucketDocument:
            return None


@dataclass
class PolicyGate:
    settings: BucketSettings

    @property
    def accounts(self) -> Accounts:
        return self.settings.accounts

    def forget(self, bucket: str) -> None:
        """Call after a policy, ACL, setting (or its bucket) changed."""
        self.settings.forget(bucket)

    async def policy(self, bucket: str) -> Policy | None:
        auth = await self.settings.get(bucket)
        return None if auth is None else auth.policy

    def account(self, principal: Principal) -> Account | None:
        return self.accounts.by_key(principal.access_key)

    async def check(
        self,
        principal: Principal,
        action: str,
        bucket: str | None,
        key: str | None = None,
        context: dict[str, object] | None = None,
        version_id: str | None = None,
    ) -> None:
        """AccessDenied unless `principal` may do `action` on the bucket or object."""
        if not await self.allows(principal, action, bucket, key, context, version_id):
            raise AccessDenied()

    async def allows(
        self,
        principal: Principal,
        action: str,
        bucket: str | None,
        key: str | None = None,
        context: dict[str, object] | None = None,
        version_id: str | None = None,
    ) -> bool:
        """Whether `principal` may do `action` on the bucket or object (the version
        `version_id` of it, for object grants); see the module docstring."""
        account = self.account(principal)
        identity = None  # (computed only for accounts with policies: most have none)
        if account is not None and account.policy is not None:
            conditions = _conditions(principal, context)
            identity = _identity(account, principal, action, resource_arn(bucket, key), conditions)
        if identity is Decision.DENY:
            return False
        # An account with identity policies (and no admin flag) is an IAM user: only
        # what they, or a resource's policy or ACL, allow is allowed.
        user = identity is not None and not (account is not None and account.admin)
        if not bucket:
            return account is not None and (not user or identity is Decision.ALLOW)
        auth = await self.settings.get(bucket)
        if auth is None:  # no such bucket: the handler answers NoSuchBucket
            return account is not None and (not user or identity is Decision.ALLOW)
        me = account.canonical_id if account is not None else None
        owner = me is not None and (me == auth.owner or (account is not None and account.admin))
        if owner and not user and (action in POLICY_ACTIONS or not auth.policy_denies):
            return True
        decision = Decision.DEFAULT
        if auth.policy is not None:
            arn = resource_arn(bucket, key)
            request = _request(account, principal, action, arn, _conditions(principal, context))
            decision = evaluate(auth.policy, request)
        if decision is Decision.DENY:
            return False
        policy_allows = decision is Decision.ALLOW and not (
            auth.policy_public and auth.block.restrict_public_buckets
        )
        if owner:
            # Same account: the owner's root, or one of its users that either its own
            # policies or the bucket policy allow (ACL grants name accounts, not users).
            return not user or identity is Decision.ALLOW or policy_allows
        if user and identity is not Decision.ALLOW:
            return False  # cross-account: the identity side must allow too
        if policy_allows:
            return True
        return await self._acl_allows(auth, me, action, bucket, key, version_id)

    async def _acl_allows(
        self,
        auth: BucketAuth,
        me: str | None,
        action: str,
        bucket: str,
        key: str | None,
        version_id: str | None,
    ) -> bool:
        """Whether the bucket's or the object's ACL (or owning the object) allows."""
        if not auth.acls_enabled:
            return False
        ignore = auth.block.ignore_public_acls
        permission = BUCKET_PERMISSIONS.get(action)
        if permission is not None:
            return permits(auth.acl, me, permission, ignore_public=ignore)
        if key is None:
            return False
        if not auth.object_grants and not permits(auth.acl, me, READ, ignore_public=ignore):
            # Every object is the owner's and private, and a missing one is not the
            # caller's to learn of: refused without reading the object.
            return False
        meta = await self._version(bucket, key, version_id)
        if meta is None:  # missing: a caller that may list learns it (NoSuchKey)
            return permits(auth.acl, me, READ, ignore_public=ignore)
        writer = self.accounts.owner_id(meta.owner) if meta.owner else auth.owner
        if me is not None and me == writer:
            return True
        permission = OBJECT_PERMISSIONS.get(action)
        grants = effective(meta.acl, writer)
        return permission is not None and permits(grants, me, permission, ignore_public=ignore)

    def identity_permits(
        self, principal: Principal, action: str, arn: str, context: dict[str, object]
    ) -> bool:
        """Whether a signed caller's own policies let it ask for `action` at all (the
        check of operations no bucket policy applies to: ListBuckets, CreateBucket)."""
        account = self.account(principal)
        if account is None:
            return False
        identity = _identity(account, principal, action, arn, _conditions(principal, context))
        if identity is Decision.DENY:
            return False
        return identity is None or identity is Decision.ALLOW or account.admin

    async def _version(self, bucket: str, key: str, version_id: str | None) -> ObjectMeta | None:
        """The version whose grants decide, or None when there is none to read (the
        handler then answers NoSuchKey, NoSuchVersion, ... after authorization)."""
        if version_id is not None and not valid_version_id(version_id):
            return None
        try:
            return await self.settings.backend.head_object(bucket, key, version_id)
        except StorageError:
            return None

    async def check_operation(
        self,
        name: str,
        principal: Principal,
        bucket: str | None,
        key: str | None,
        context: dict[str, object],
        action: str | None = None,
        version_id: str | None = None,
    ) -> None:
        """The check one operation needs, made before any body byte is read; `action`
        (the Operation's own) replaces the table's where a request names a version.

        DeleteObjects names its keys in its body: here it only has to be possible that
        this caller may delete some key of the bucket; its handler then checks each key.
        CreateBucket needs only a signed caller (the handler decides who owns the name).
        """
        entry = OPERATIONS[name]
        if action is not None and action != entry.action:
            entry = replace(entry, action=action)
        if name == "DeleteObjects":
            if not await self.could_delete(principal, bucket, entry.action):
                raise AccessDenied()
            return
        if entry.resource == "service" or name == "CreateBucket":
            arn = resource_arn(None if entry.resource == "service" else bucket)
            if not self.identity_permits(principal, entry.action, arn, context):
                raise AccessDenied()
            return
        object_key = key if entry.resource == "object" else None
        await self.check(principal, entry.action, bucket, object_key, context, version_id)

    async def could_delete(self, principal: Principal, bucket: str | None, action: str) -> bool:
        """Whether `action` may be allowed to `principal` on some object of the bucket,
        keys not yet known: admin, owner, a WRITE grant, or `could_allow` (for an IAM
        user, also by its identity policies: either side in its own bucket, both
        elsewhere)."""
        account = self.account(principal)
        user = account is not None and account.policy is not None and not account.admin
        if account is not None and account.admin:
            return True
        auth = await self.settings.get(bucket) if bucket else None
        if auth is None:
            return account is not None
        me = account.canonical_id if account is not None else None
        name = account.display_name if account is not None and account.runtime else None
        identity = account is not None and could_allow(account.policy, principal, action)
        if me == auth.owner:
            return not user or identity or could_allow(auth.policy, principal, action, name)
        if user and not identity:
            return False
        ignore = auth.block.ignore_public_acls
        if auth.acls_enabled and permits(auth.acl, me, WRITE, ignore_public=ignore):
            return True
        return could_allow(auth.policy, principal, action, name)


def _conditions(principal: Principal, context: dict[str, object] | None) -> dict[str, object]:
    """The request's condition keys; how the caller signed (s3:signatureversion,
    s3:authType) is a condition too."""
    return {**(context or {}), **principal.condition_keys()}


def _identity(
    account: Account | None,
    principal: Principal,
    action: str,
    arn: str,
    context: dict[str, object],
) -> Decision | None:
    """What the caller's identity policies say; None when it has none (unrestricted)."""
    if account is None or account.policy is None:
        return None
    return evaluate(account.policy, _request(account, principal, action, arn, context))


def _request(
    account: Account | None,
    principal: Principal,
    action: str,
    arn: str,
    context: dict[str, object],
) -> PolicyRequest:
    """What a policy is asked; a runtime account is also named by its name."""
    user = account.display_name if account is not None and account.runtime else None
    return PolicyRequest(principal.access_key, action, arn, context, user)


def could_allow(
    policy: Policy | None, principal: Principal, action: str, user: str | None = None
) -> bool:
    """Whether some Allow statement of `policy` could allow `action` to `principal` on
    some object, keys not yet known. Each statement is tried with its resources and
    conditions ignored, which can only widen it: a caller refused here is refused by
    the policy for every key."""
    if policy is None:
        return False
    probe = PolicyRequest(principal.access_key, action, "*", user=user)
    for statement in policy.statements:
        if statement.effect != "Allow":
            continue
        widened = replace(statement, resources=("*",), not_resource=False, conditions=())
        if evaluate(Policy((widened,)), probe) is Decision.ALLOW:
            return True
    return False
