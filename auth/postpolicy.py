"""POST Object (browser form uploads): the POST policy and its SigV4 signature.

The form carries a base64 JSON policy (`expiration`, `conditions`) signed with the
caller's SigV4 signing key; every form field must be allowed by a condition. Pure
logic: the ASGI layer parses the form and stores the file. Failures are AuthFailure,
with AWS's codes and messages.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from auth.sigv4 import (
    ALGORITHM,
    AuthFailure,
    CredentialLookup,
    _parse_credential,
    sign,
    signing_key,
)

#: Fields that need no condition (AWS's list) besides the x-ignore- ones.
EXEMPT = frozenset({"policy", "x-amz-signature", "file", "awsaccesskeyid", "signature"})


def _denied(reason: str) -> AuthFailure:
    return AuthFailure("AccessDenied", f"Invalid according to Policy: {reason}")


def decode_policy(policy_b64: str) -> dict[str, Any]:
    try:
        policy = json.loads(base64.b64decode(policy_b64, validate=True))
    except (binascii.Error, ValueError, UnicodeDecodeError) as exc:
        raise AuthFailure("InvalidPolicyDocument", "Invalid Policy: Invalid JSON.") from exc
    if not isinstance(policy, dict) or not isinstance(policy.get("conditions"), list):
        raise AuthFailure("InvalidPolicyDocument", "Invalid Policy: Invalid 'conditions'.")
    if "expiration" not in policy:
        raise AuthFailure("InvalidPolicyDocument", "Invalid Policy: Policy missing expiration.")
    return policy


def verify_signature(fields: Mapping[str, str], lookup: CredentialLookup, region: str) -> str:
    """The access key whose secret signed the policy (SigV4 POST)."""
    if fields.get("x-amz-algorithm") != ALGORITHM:
        raise AuthFailure("InvalidArgument", f"Only {ALGORITHM} POST policies are accepted.")
    for name in ("x-amz-credential", "x-amz-date", "x-amz-signature", "policy"):
        if name not in fields:
            raise AuthFailure(
                "InvalidArgument", f"Bucket POST must contain a field named '{name}'."
            )
    access_key, scope = _parse_credential(fields["x-amz-credential"], region, presigned=True)
    secret = lookup(access_key)
    if secret is None:
        raise AuthFailure(
            "InvalidAccessKeyId",
            "The AWS Access Key Id you provided does not exist in our records.",
        )
    expected = sign(signing_key(secret, scope.date, region), fields["policy"])
    if not hmac.compare_digest(expected, fields["x-amz-signature"]):
        raise AuthFailure(
            "SignatureDoesNotMatch",
            "The request signature we calculated does not match the signature you provided.",
        )
    return access_key


def check_policy(
    policy: dict[str, Any], fields: Mapping[str, str], bucket: str, size: int, now: datetime
) -> None:
    """Expiration, every condition, and no form field left uncovered."""
    try:
        expiration = datetime.fromisoformat(str(policy["expiration"]).replace("Z", "+00:00"))
    except ValueError as exc:
        raise AuthFailure("InvalidPolicyDocument", "Invalid Policy: Invalid 'expiration'.") from exc
    if expiration.tzinfo is None:
        expiration = expiration.replace(tzinfo=UTC)
    if now > expiration:
        raise _denied("Policy expired.")
    values = {**{k.lower(): v for k, v in fields.items()}, "bucket": bucket}
    covered = set()
    for condition in policy["conditions"]:
        if isinstance(condition, dict):
            for name, wanted in condition.items():
                name = name.lower().lstrip("$")
                covered.add(name)
                if values.get(name) != str(wanted):
                    raise _denied(f'Policy Condition failed: ["eq", "${name}", "{wanted}"]')
        elif isinstance(condition, list) and len(condition) == 3:
            op, name, wanted = str(condition[0]).lower(), condition[1], condition[2]
            if op == "content-length-range":
                if not int(name) <= size <= int(wanted):
                    raise AuthFailure(
                        "EntityTooLarge" if size > int(wanted) else "EntityTooSmall",
                        "Your proposed upload size is outside the policy's content-length-range.",
                    )
                continue
            name = str(name).lower().lstrip("$")
            covered.add(name)
            actual = values.get(name, "")
            if op == "eq":
                ok = actual == str(wanted)
            elif op == "starts-with":
                parts = actual.split(",") if name == "content-type" else [actual]
                ok = all(p.strip().startswith(str(wanted)) for p in parts)
            else:
                raise AuthFailure(
                    "InvalidPolicyDocument", f"Invalid Policy: unknown condition {op}."
                )
            if not ok:
                raise _denied(f'Policy Condition failed: ["{op}", "${name}", "{wanted}"]')
        else:
            raise AuthFailure("InvalidPolicyDocument", "Invalid Policy: Invalid condition.")
    extra = [
        name
        for name in (k.lower() for k in fields)
        if name not in covered and name not in EXEMPT and not name.startswith("x-ignore-")
    ]
    if extra:
        raise _denied(f"Extra input fields: {', '.join(sorted(extra))}")
