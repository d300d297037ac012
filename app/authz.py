"""Authorization: the bucket policy (if any) decides, else the reference's default.

Explicit Deny wins, then Allow; with neither, authenticated callers are allowed and
anonymous ones denied. Parsed policies are cached per bucket for a second and dropped at
once when this process changes them, so a request costs no policy file read.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace

from shoal.app.errors import AccessDenied
from shoal.auth import Principal
from shoal.auth.actions import OPERATIONS, resource_arn
from shoal.auth.policy import (
    Decision,
    Policy,
    PolicyError,
    PolicyRequest,
    evaluate,
    is_allowed,
    parse_policy,
)
from shoal.storage.backend import Backend
from shoal.storage.errors import NoSuchBucket, NoSuchBucketPolicy

CACHE_SECONDS = 1.0


@dataclass
class PolicyGate:
    backend: Backend
    _cache: dict[str, tuple[float, Policy | None]] = field(default_factory=dict)

    def forget(self, bucket: str) -> None:
        """Call after a policy (or its bucket) changed."""
        self._cache.pop(bucket, None)

    async def policy(self, bucket: str) -> Policy | None:
        cached = self._cache.get(bucket)
        if cached is not None and cached[0] > time.monotonic():
            return cached[1]
        try:
            policy: Policy | None = parse_policy(
                await self.backend.get_bucket_policy(bucket), bucket
            )
        except (NoSuchBucketPolicy, NoSuchBucket, PolicyError):
            policy = None
        self._cache[bucket] = (time.monotonic() + CACHE_SECONDS, policy)
        return policy

    async def check(
        self,
        principal: Principal,
        action: str,
        bucket: str | None,
        key: str | None = None,
        context: dict[str, object] | None = None,
    ) -> None:
        """AccessDenied unless `principal` may do `action` on the bucket or object."""
        if not await self.allows(principal, action, bucket, key, context):
            raise AccessDenied()

    async def allows(
        self,
        principal: Principal,
        action: str,
        bucket: str | None,
        key: str | None = None,
        context: dict[str, object] | None = None,
    ) -> bool:
        """Whether `principal` may do `action` on the bucket or object: for a second
        action a request needs only in some cases (s3:BypassGovernanceRetention)."""
        policy = await self.policy(bucket) if bucket else None
        # How the caller signed (s3:signatureversion, s3:authType) is a condition too.
        context = {**(context or {}), **principal.condition_keys()}
        request = PolicyRequest(principal.access_key, action, resource_arn(bucket, key), context)
        return is_allowed(evaluate(policy, request), authenticated=not principal.anonymous)

    async def check_operation(
        self,
        name: str,
        principal: Principal,
        bucket: str | None,
        key: str | None,
        context: dict[str, object],
        action: str | None = None,
    ) -> None:
        """The check one operation needs, made before any body byte is read; `action`
        (the Operation's own) replaces the table's where a request names a version.

        DeleteObjects names its keys in its body: here it only has to be possible that
        this caller may delete some key of the bucket; its handler then checks each key.
        """
        entry = OPERATIONS[name]
        if action is not None:
            entry = replace(entry, action=action)
        if name == "DeleteObjects":
            policy = await self.policy(bucket) if bucket else None
            if not could_allow(policy, principal, entry.action):
                raise AccessDenied()
            return
        if entry.resource == "service":
            if principal.anonymous:
                raise AccessDenied()
            return
        await self.check(
            principal, entry.action, bucket, key if entry.resource == "object" else None, context
        )


def could_allow(policy: Policy | None, principal: Principal, action: str) -> bool:
    """Whether `action` may be allowed to `principal` on some object, keys not yet known.

    Authenticated callers are allowed by default (per-key Denies come later); an
    anonymous one needs an Allow statement that names it and the action. Each such
    statement is tried with its resources and conditions ignored, which can only widen
    it: a caller refused here is refused for every key.
    """
    if is_allowed(Decision.DEFAULT, authenticated=not principal.anonymous):
        return True
    if policy is None:
        return False
    probe = PolicyRequest(principal.access_key, action, "*")
    for statement in policy.statements:
        if statement.effect != "Allow":
            continue
        widened = replace(statement, resources=("*",), not_resource=False, conditions=())
        if evaluate(Policy((widened,)), probe) is Decision.ALLOW:
            return True
    return False
