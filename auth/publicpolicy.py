"""Whether a bucket policy is public, as S3 defines it (GetBucketPolicyStatus, and what
BlockPublicPolicy and RestrictPublicBuckets act on).

S3 considers a policy public unless every Allow statement either names fixed principals
(no "*", no NotPrincipal) or is limited by a condition to fixed values of aws:SourceIp
(a CIDR range narrower than the whole address space), aws:SourceArn, aws:SourceVpc,
aws:SourceVpce, aws:SourceOwner, aws:SourceAccount,
s3:x-amz-server-side-encryption-aws-kms-key-id or aws:userid (outside "AROLEID:*").
"Fixed" means an equality operator (or a Like operator without wildcards), not negated.
"""

from __future__ import annotations

import ipaddress

from shoal.auth.policy import EVERYONE, Condition, Policy, Statement

FIXED_KEYS = frozenset(
    {
        "aws:sourcearn",
        "aws:sourcevpc",
        "aws:sourcevpce",
        "aws:sourceowner",
        "aws:sourceaccount",
        "s3:x-amz-server-side-encryption-aws-kms-key-id",
        "aws:userid",
    }
)
_EQUALITY = frozenset({"str", "stri", "like"})


def is_public_policy(policy: Policy | None) -> bool:
    return policy is not None and any(_public(s) for s in policy.statements)


def _public(statement: Statement) -> bool:
    if statement.effect != "Allow":
        return False
    if not statement.not_principal and EVERYONE not in statement.principals:
        return False
    return not any(_limits(c) for c in statement.conditions)


def _limits(condition: Condition) -> bool:
    """Whether a condition pins the caller to fixed values, making the statement
    non-public."""
    if condition.negated or condition.if_exists or condition.qualifier == "ForAllValues":
        return False
    if condition.key == "aws:sourceip":
        return condition.family == "ip" and all(_narrow(v) for v in condition.values)
    if condition.key not in FIXED_KEYS or condition.family not in _EQUALITY:
        return False
    if condition.key == "aws:userid" and any(v.endswith(":*") for v in condition.values):
        return False
    return not any("*" in v or "?" in v for v in condition.values)


def _narrow(cidr: str) -> bool:
    try:
        network = ipaddress.ip_network(cidr, strict=False)
    except ValueError:
        return False
    return network.prefixlen > 0
