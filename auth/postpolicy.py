"""POST Object (browser form uploads): the POST policy and its signature.

The form carries a base64 JSON policy (`expiration`, `conditions`) signed with the
caller's SigV4 signing key, or with SigV2 (`AWSAccessKeyId`, `signature`: HMAC-SHA1 under
the secret); every form field must be allowed by a condition. The policy is read whole
and checked for shape before anything else (`decode_policy`), so any malformed document,
whatever it holds, is one InvalidPolicyDocument (400) and never an exception of the JSON
or datetime layers. Pure logic: the ASGI layer parses the form and
stores the file, enforcing `PostPolicy.length_range` as the file's bytes arrive.
Failures are AuthFailure, with AWS's codes and messages.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from shoal.auth import sigv2
from shoal.auth.numbers import parse_uint
from shoal.auth.sigv4 import (
    ALGORITHM,
    AuthFailure,
    CredentialLookup,
    _parse_credential,
    sign,
    signing_key,
)

#: Fields that need no condition (AWS's list) besides the x-ignore- ones.
EXEMPT = frozenset({"policy", "x-amz-signature", "file", "awsaccesskeyid", "signature"})
#: Condition operators on form fields (content-length-range is about the file).
OPERATORS = frozenset({"eq", "starts-with"})


@dataclass(frozen=True)
class Condition:
    """One field condition: `op` is "eq" or "starts-with", `name` lower-case without "$"."""

    op: str
    name: str
    value: str


@dataclass(frozen=True)
class PostPolicy:
    """A decoded, well-formed POST policy."""

    expiration: datetime  # aware, UTC
    conditions: tuple[Condition, ...]
    #: Inclusive (min, max) size of the file from `content-length-range`, if any.
    length_range: tuple[int, int] | None


def _invalid(reason: str) -> AuthFailure:
    return AuthFailure("InvalidPolicyDocument", f"Invalid Policy: {reason}")


def _denied(reason: str) -> AuthFailure:
    return AuthFailure("AccessDenied", f"Invalid according to Policy: {reason}")


def decode_policy(policy_b64: str) -> PostPolicy:
    """The policy field, decoded and checked for shape (InvalidPolicyDocument otherwise)."""
    try:
        document = json.loads(base64.b64decode(policy_b64, validate=True))
    except (binascii.Error, ValueError, UnicodeDecodeError, RecursionError) as exc:
        # RecursionError: JSON nested deeper than the parser's stack allows.
        raise _invalid("Invalid JSON.") from exc
    if not isinstance(document, dict):
        raise _invalid("Invalid JSON.")
    if "expiration" not in document:
        raise _invalid("Policy missing expiration.")
    conditions = document.get("conditions")
    if not isinstance(conditions, list):
        raise _invalid("Invalid 'conditions' value: must be a List.")
    fields: list[Condition] = []
    length_range: tuple[int, int] | None = None
    for item in conditions:
        if isinstance(item, list) and item and _text(item[0]).lower() == "content-length-range":
            low, high = _length_range(item)
            if length_range is not None:  # several: all must hold
                low, high = max(low, length_range[0]), min(high, length_range[1])
            length_range = (low, high)
        else:
            fields.append(_condition(item))
    return PostPolicy(_expiration(document["expiration"]), tuple(fields), length_range)


def _text(value: object) -> str:
    """A condition's string operand, or "" for anything else (refused by the caller)."""
    return value if isinstance(value, str) else ""


def _expiration(value: object) -> datetime:
    if not isinstance(value, str):
        raise _invalid("Invalid 'expiration' value.")
    try:
        expiration = datetime.fromisoformat(value.replace("Z", "+00:00"))
        if expiration.tzinfo is None:
            expiration = expiration.replace(tzinfo=UTC)
        return expiration.astimezone(UTC)
    except (ValueError, OverflowError) as exc:
        raise _invalid(f"Invalid 'expiration' value: '{value}'") from exc


def _value(value: object) -> str | None:
    """A condition value: JSON strings, and integers as their digits (not floats or bools)."""
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return None


def _field_name(value: object) -> str | None:
    if not isinstance(value, str) or not value:
        return None
    return value.removeprefix("$").lower()


def _condition(item: object) -> Condition:
    if isinstance(item, dict):
        if len(item) != 1:
            raise _invalid(
                "Invalid Simple-Condition: Simple-Conditions must have exactly one property."
            )
        ((raw_name, raw_value),) = item.items()
        name, value = _field_name(raw_name), _value(raw_value)
        if name is None or value is None:
            raise _invalid("Invalid Simple-Condition: value must be a string.")
        return Condition("eq", name, value)
    if not isinstance(item, list) or len(item) != 3:
        raise _invalid("Invalid condition: expecting a 3-element list or a 1-property object.")
    op, name, value = _text(item[0]).lower(), _field_name(item[1]), _value(item[2])
    if op not in OPERATORS:
        raise _invalid(f"Invalid condition: unknown operation '{_text(item[0])}'.")
    if name is None or value is None:
        raise _invalid(f"Invalid '{op}' condition: name and value must be strings.")
    return Condition(op, name, value)


def _length_range(item: list[Any]) -> tuple[int, int]:
    """`["content-length-range", min, max]`: non-negative integers (S3 refuses 512.0)."""
    bounds = [_bound(v) for v in item[1:]]
    if len(bounds) != 2 or bounds[0] is None or bounds[1] is None or bounds[0] > bounds[1]:
        raise _invalid("Invalid content-length-range: expecting two integers, min <= max.")
    return bounds[0], bounds[1]


def _bound(value: object) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int | str):
        return None
    text = value if isinstance(value, str) else str(value)
    return parse_uint(text)


def is_sigv2(fields: Mapping[str, str]) -> bool:
    """Whether a form is signed with SigV2 (`AWSAccessKeyId`, `signature`: boto3's
    generate_presigned_post by default) rather than SigV4 (`x-amz-*` fields)."""
    return not any(name in fields for name in _SIGV4_FIELDS) and any(
        name in fields for name in ("awsaccesskeyid", "signature")
    )


_SIGV4_FIELDS = ("x-amz-algorithm", "x-amz-credential", "x-amz-signature", "x-amz-date")


def verify_signature(
    fields: Mapping[str, str], lookup: CredentialLookup, region: str, *, allow_sigv2: bool = True
) -> str:
    """The access key whose secret signed the policy (SigV4, or SigV2: base64 HMAC-SHA1
    of the policy field, refused as AWS's SigV4-only regions do unless `allow_sigv2`)."""
    if is_sigv2(fields):
        if not allow_sigv2:
            raise AuthFailure("InvalidRequest", sigv2.REFUSED)
        return _verify_sigv2(fields, lookup)
    if fields.get("x-amz-algorithm") != ALGORITHM:
        raise AuthFailure("InvalidArgument", f"Only {ALGORITHM} POST policies are accepted.")
    for name in ("x-amz-credential", "x-amz-date", "x-amz-signature", "policy"):
        _require(fields, name)
    access_key, scope = _parse_credential(fields["x-amz-credential"], region, presigned=True)
    secret = _secret(lookup, access_key)
    expected = sign(signing_key(secret, scope.date, region), fields["policy"])
    _compare(expected, fields["x-amz-signature"])
    return access_key


def _verify_sigv2(fields: Mapping[str, str], lookup: CredentialLookup) -> str:
    for name in ("awsaccesskeyid", "signature", "policy"):
        _require(fields, name)
    access_key = fields["awsaccesskeyid"]
    _compare(sigv2.sign(_secret(lookup, access_key), fields["policy"]), fields["signature"])
    return access_key


def _require(fields: Mapping[str, str], name: str) -> None:
    if name not in fields:
        label = _FIELD_LABELS.get(name, name)
        raise AuthFailure(
            "InvalidArgument",
            f"Bucket POST must contain a field named '{label}'.  If it is specified, please"
            " check the order of the fields.",
            ArgumentName=label,
        )


#: How AWS spells the fields it names in errors (form field names are read lower-case).
_FIELD_LABELS = {"awsaccesskeyid": "AWSAccessKeyId", "signature": "Signature"}


def _secret(lookup: CredentialLookup, access_key: str) -> str:
    secret = lookup(access_key)
    if secret is None:
        raise AuthFailure(
            "InvalidAccessKeyId",
            "The AWS Access Key Id you provided does not exist in our records.",
            AWSAccessKeyId=access_key,
        )
    return secret


def _compare(expected: str, given: str) -> None:
    # Bytes: compare_digest refuses str holding non-ASCII characters (a client's choice).
    if not hmac.compare_digest(expected.encode("ascii"), given.encode("utf-8", "surrogatepass")):
        raise AuthFailure(
            "SignatureDoesNotMatch",
            "The request signature we calculated does not match the signature you provided.",
        )


def check_policy(policy: PostPolicy, fields: Mapping[str, str], bucket: str, now: datetime) -> None:
    """Expiration, every field condition, and no form field left uncovered. The file's
    size (`policy.length_range`) is the caller's to enforce while it streams."""
    if now > policy.expiration:
        raise _denied("Policy expired.")
    values = {**{k.lower(): v for k, v in fields.items()}, "bucket": bucket}
    for condition in policy.conditions:
        actual = values.get(condition.name, "")
        if condition.op == "eq":
            ok = actual == condition.value
        else:
            parts = actual.split(",") if condition.name == "content-type" else [actual]
            ok = all(p.strip().startswith(condition.value) for p in parts)
        if not ok:
            raise _denied(
                f'Policy Condition failed: ["{condition.op}", "${condition.name}", '
                f'"{condition.value}"]'
            )
    covered = {condition.name for condition in policy.conditions}
    extra = [
        name
        for name in (k.lower() for k in fields)
        if name not in covered and name not in EXEMPT and not name.startswith("x-ignore-")
    ]
    if extra:
        raise _denied(f"Extra input fields: {', '.join(sorted(extra))}")
