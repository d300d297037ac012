"""Bucket policies: validation as S3 does on PutBucketPolicy, and IAM-style evaluation.

Identities: in policies every credential is an IAM user of one account, `ACCOUNT_ID`
(``000000000000``; auth/accounts.py makes each credential an account of its own for
ownership and ACLs). A caller signing with access key K is the IAM user
``arn:aws:iam::000000000000:user/K`` (a runtime account named N also
``arn:aws:iam::000000000000:user/N``, whichever of its keys signs); an anonymous
caller has no identity and is matched only by the principal ``"*"`` / ``{"AWS": "*"}``.
The account id ``000000000000`` or ``arn:aws:iam::000000000000:root`` as principal
matches every authenticated caller.

Identity policies (attached to runtime accounts through the admin API) are parsed by
`parse_identity_policy`: the same grammar without Principal (the identity is whoever the
policy is attached to; its statements match that caller, recorded as principal "*"), and
resources naming any bucket (`arn:aws:s3:::...`) or `*`. app/authz.py combines the two
kinds by AWS's rules.

`evaluate` returns DENY when a Deny statement matches (explicit Deny always wins),
ALLOW when an Allow statement matches, else DEFAULT (app/authz.py then decides by
owner and ACLs); `is_allowed` is the reference's rule for DEFAULT (authenticated
callers allowed, anonymous ones denied). Pure logic:
no I/O, the caller supplies the request context (aws:SourceIp, aws:SecureTransport,
s3:prefix, ...). Not supported: policy variables (``${aws:username}``) in resources,
Principal types other than AWS / CanonicalUser (CanonicalUser never matches).
"""

from __future__ import annotations

import enum
import ipaddress
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property, lru_cache
from typing import Any

from shoal.auth.actions import ARN_PREFIX, S3_ACTIONS

ACCOUNT_ID = "000000000000"
MAX_POLICY_BYTES = 20 * 1024
VERSIONS = ("2012-10-17", "2008-10-17")
EVERYONE = "*"

ContextValue = str | int | float | bool | datetime | Sequence[str] | None

_TOP_KEYS = {"Version", "Id", "Statement"}
_STATEMENT_KEYS = {
    "Sid", "Effect", "Principal", "NotPrincipal", "Action", "NotAction",
    "Resource", "NotResource", "Condition",
}  # fmt: skip
_ACCOUNT_RE = re.compile(r"\d{12}")
_IAM_ARN_RE = re.compile(r"arn:aws:iam::(\d{12}):(root|(?:user|role)/[\w+=,.@/-]+)")
_CONDITION_KEY_RE = re.compile(r"(aws|s3):[A-Za-z0-9_./-]+", re.IGNORECASE)

# Base operator -> (family, negated).
_OPERATORS: dict[str, tuple[str, bool]] = {
    "StringEquals": ("str", False),
    "StringNotEquals": ("str", True),
    "StringEqualsIgnoreCase": ("stri", False),
    "StringNotEqualsIgnoreCase": ("stri", True),
    "StringLike": ("like", False),
    "StringNotLike": ("like", True),
    "ArnEquals": ("like", False),
    "ArnLike": ("like", False),
    "ArnNotEquals": ("like", True),
    "ArnNotLike": ("like", True),
    "NumericEquals": ("num=", False),
    "NumericNotEquals": ("num=", True),
    "NumericLessThan": ("num<", False),
    "NumericLessThanEquals": ("num<=", False),
    "NumericGreaterThan": ("num>", False),
    "NumericGreaterThanEquals": ("num>=", False),
    "DateEquals": ("date=", False),
    "DateNotEquals": ("date=", True),
    "DateLessThan": ("date<", False),
    "DateLessThanEquals": ("date<=", False),
    "DateGreaterThan": ("date>", False),
    "DateGreaterThanEquals": ("date>=", False),
    "Bool": ("bool", False),
    "IpAddress": ("ip", False),
    "NotIpAddress": ("ip", True),
    "Null": ("null", False),
}
_COMPARE = {
    "=": lambda a, b: a == b,
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
}


class PolicyError(ValueError):
    """A policy document S3 would refuse; `reason` goes into MalformedPolicy."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Decision(enum.Enum):
    DENY = "deny"
    ALLOW = "allow"
    DEFAULT = "default"


@dataclass(frozen=True)
class Condition:
    """One key under one operator: ``{"StringLike": {"s3:prefix": ["a/*"]}}``."""

    operator: str  # as written, e.g. "ForAnyValue:StringLikeIfExists"
    family: str
    negated: bool
    if_exists: bool
    qualifier: str | None  # "ForAnyValue", "ForAllValues" or None
    key: str  # lower-cased: condition keys are case-insensitive
    values: tuple[str, ...]

    @cached_property
    def patterns(self) -> tuple[Wildcard, ...]:
        """The values as wildcards (String/ArnLike), compiled once per parsed policy."""
        return tuple(Wildcard(v, False) for v in self.values)


@dataclass(frozen=True)
class Statement:
    effect: str  # "Allow" or "Deny"
    principals: tuple[str, ...]  # "*", a 12-digit account id, or a user/role ARN
    not_principal: bool
    actions: tuple[str, ...]
    not_action: bool
    resources: tuple[str, ...]
    not_resource: bool
    conditions: tuple[Condition, ...] = ()
    sid: str | None = None

    # Compiled once per parsed (and cached) policy: a policy with more distinct patterns
    # than any shared cache holds would otherwise recompile them on every request.
    @cached_property
    def action_patterns(self) -> tuple[Wildcard, ...]:
        return tuple(Wildcard(p, True) for p in self.actions)

    @cached_property
    def resource_patterns(self) -> tuple[Wildcard, ...]:
        return tuple(Wildcard(p, False) for p in self.resources)


@dataclass(frozen=True)
class Policy:
    statements: tuple[Statement, ...]
    version: str | None = None
    id: str | None = None


@dataclass(frozen=True)
class PolicyRequest:
    """What a request asks: who (access key or None), which action, on which resource."""

    principal: str | None
    action: str
    resource: str
    context: Mapping[str, ContextValue] = field(default_factory=dict)
    #: A runtime account's name: it is also ``user/<name>``, whichever of its keys signs.
    user: str | None = None


def user_arn(access_key: str) -> str:
    """The IAM identity of a caller signing with `access_key`."""
    return f"arn:aws:iam::{ACCOUNT_ID}:user/{access_key}"


# ----------------------------------------------------------------------------- parsing


def parse_policy(text: str, bucket: str) -> Policy:
    """Validate a bucket policy for `bucket` as S3 does; PolicyError(reason) if refused."""
    return _parse_document(text, bucket)


def parse_identity_policy(text: str) -> Policy:
    """Validate an identity (user) policy as IAM does; PolicyError(reason) if refused."""
    return _parse_document(text, None)


def merge_policies(policies: Iterable[Policy]) -> Policy | None:
    """Several attached policies as one (every statement of each); None for none."""
    statements = tuple(s for p in policies for s in p.statements)
    return Policy(statements) if statements else None


def _parse_document(text: str, bucket: str | None) -> Policy:
    """A bucket policy (`bucket` named) or an identity policy (None)."""
    if len(text.encode("utf-8", "surrogatepass")) > MAX_POLICY_BYTES:
        raise PolicyError("Policy exceeds the maximum allowed document size.")
    if not text.startswith("{"):
        raise PolicyError("Policies must be valid JSON and the first byte must be '{'")
    try:
        doc = json.loads(text)
    except (ValueError, RecursionError) as exc:  # 20 KiB of `[` nests past the stack limit
        raise PolicyError("Policies must be valid JSON and the first byte must be '{'") from exc
    _check_keys(doc, _TOP_KEYS)
    version = doc.get("Version")
    if version is not None and version not in VERSIONS:
        raise PolicyError("The policy must contain a valid version string")
    policy_id = doc.get("Id")
    if policy_id is not None and not isinstance(policy_id, str):
        raise PolicyError("Policy Id must be a string")
    if "Statement" not in doc:
        raise PolicyError("Missing required field Statement")
    raw = doc["Statement"]
    raw_list = [raw] if isinstance(raw, dict) else raw
    if not isinstance(raw_list, list):
        raise PolicyError("Statement must be an object or a list of objects")
    if not raw_list:
        raise PolicyError("Could not parse the policy: Statement is empty!")
    statements = tuple(_parse_statement(s, bucket) for s in raw_list)
    sids = [s.sid for s in statements if s.sid]
    if len(sids) != len(set(sids)):
        raise PolicyError("Statement IDs (SID) in a single policy must be unique")
    return Policy(statements, version, policy_id)


def _check_keys(obj: Any, allowed: set[str]) -> None:
    if not isinstance(obj, dict):
        raise PolicyError("Policies must be valid JSON and the first byte must be '{'")
    for key in obj:
        if key not in allowed:
            raise PolicyError(f"Unknown field {key}")


def _pick(stmt: dict[str, Any], name: str) -> tuple[Any, bool]:
    """The value of Name or NotName (exactly one), and whether it was the Not form."""
    has, has_not = name in stmt, f"Not{name}" in stmt
    if has and has_not:
        raise PolicyError(f"Statement cannot contain both {name} and Not{name}")
    if not has and not has_not:
        raise PolicyError(f"Missing required field {name}")
    return (stmt[f"Not{name}"], True) if has_not else (stmt[name], False)


def _strings(value: Any, reason: str) -> list[str]:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not items:
        raise PolicyError(reason)
    if not all(isinstance(v, str) and v for v in items):
        raise PolicyError(reason)
    return items


def _parse_statement(stmt: Any, bucket: str | None) -> Statement:
    if not isinstance(stmt, dict):
        raise PolicyError("Statement must be an object or a list of objects")
    _check_keys(stmt, _STATEMENT_KEYS)
    sid = stmt.get("Sid")
    if sid is not None and not isinstance(sid, str):
        raise PolicyError("Sid must be a string")
    if "Effect" not in stmt:
        raise PolicyError("Missing required field Effect")
    effect = stmt["Effect"]
    if effect not in ("Allow", "Deny"):
        raise PolicyError(f"Invalid effect: {effect}")
    if bucket is None:
        if "Principal" in stmt or "NotPrincipal" in stmt:
            raise PolicyError("Policy document should not specify a principal.")
        principals, not_principal = (EVERYONE,), False
    else:
        raw_principal, not_principal = _pick(stmt, "Principal")
        principals = _parse_principal(raw_principal)
    raw_action, not_action = _pick(stmt, "Action")
    raw_resource, not_resource = _pick(stmt, "Resource")
    actions = tuple(_parse_action(a) for a in _strings(raw_action, "Policy has invalid action"))
    resources = _strings(raw_resource, "Policy has invalid resource")
    for resource in resources:
        _check_resource(resource, bucket)
    return Statement(
        effect=effect,
        principals=principals,
        not_principal=not_principal,
        actions=actions,
        not_action=not_action,
        resources=tuple(resources),
        not_resource=not_resource,
        conditions=_parse_conditions(stmt.get("Condition")),
        sid=sid,
    )


def _parse_principal(raw: Any) -> tuple[str, ...]:
    if raw == EVERYONE:
        return (EVERYONE,)
    if not isinstance(raw, dict) or not raw:
        raise PolicyError("Invalid principal in policy")
    out: list[str] = []
    for kind, value in raw.items():
        items = _strings(value, "Invalid principal in policy")
        if kind == "CanonicalUser":
            continue  # shoal has no canonical user ids: never matches
        if kind != "AWS":
            raise PolicyError("Invalid principal in policy")
        for item in items:
            if item == EVERYONE or _ACCOUNT_RE.fullmatch(item):
                out.append(item)
                continue
            match = _IAM_ARN_RE.fullmatch(item)
            if match is None:
                raise PolicyError("Invalid principal in policy")
            out.append(match.group(1) if match.group(2) == "root" else item)
    return tuple(out)


def _parse_action(action: str) -> str:
    if action == "*":
        return action
    service, sep, name = action.partition(":")
    if not sep or service.lower() != "s3" or not name:
        raise PolicyError("Policy has invalid action")
    if not any(_wildcard(action, True).fullmatch(known) for known in S3_ACTIONS):
        raise PolicyError("Policy has invalid action")
    return action


def _check_resource(resource: str, bucket: str | None) -> None:
    """A resource must be able to name this bucket or an object in it (S3 refuses the
    rest as "Policy has invalid resource"); wildcards count: `arn:aws:s3:::*`,
    `arn:aws:s3:::*/*` and `arn:aws:s3:::buck*` all cover bucket `bucket`. An identity
    policy (`bucket` None) may name any S3 resource, or `*`."""
    if bucket is None:
        if resource != EVERYONE and not resource.startswith(ARN_PREFIX):
            raise PolicyError("Policy has invalid resource")
        return
    if not resource.startswith(ARN_PREFIX):
        raise PolicyError("Policy has invalid resource")
    rest = resource[len(ARN_PREFIX) :]
    if not (_wildcard(rest, False).fullmatch(bucket) or _may_start_with(rest, bucket + "/")):
        raise PolicyError("Policy has invalid resource")


def _may_start_with(pattern: str, prefix: str) -> bool:
    """Whether some string the IAM wildcard `pattern` matches begins with `prefix`: the
    pattern positions reachable after reading the prefix, `*` absorbing any run."""
    states = _closure({0}, pattern)
    for char in prefix:
        states = _closure(
            {
                i + (pattern[i] != "*")
                for i in states
                if i < len(pattern) and pattern[i] in ("*", "?", char)
            },
            pattern,
        )
        if not states:
            return False
    return True


def _closure(states: set[int], pattern: str) -> set[int]:
    """Add the positions past each `*` (it may match nothing)."""
    out, todo = set(states), list(states)
    while todo:
        i = todo.pop()
        if i < len(pattern) and pattern[i] == "*" and i + 1 not in out:
            out.add(i + 1)
            todo.append(i + 1)
    return out


def _split_operator(operator: str) -> tuple[str | None, str, bool]:
    qualifier = None
    for prefix in ("ForAnyValue:", "ForAllValues:"):
        if operator.startswith(prefix):
            qualifier, operator = prefix[:-1], operator[len(prefix) :]
    if_exists = operator.endswith("IfExists")
    if if_exists:
        operator = operator[: -len("IfExists")]
    if operator not in _OPERATORS or (operator == "Null" and (if_exists or qualifier)):
        raise PolicyError(f"Invalid Condition type : {operator}")
    return qualifier, operator, if_exists


def _parse_conditions(raw: Any) -> tuple[Condition, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, dict):
        raise PolicyError("Invalid Condition block")
    out: list[Condition] = []
    for operator, block in raw.items():
        qualifier, base, if_exists = _split_operator(operator)
        if not isinstance(block, dict) or not block:
            raise PolicyError(f"Invalid Condition block for {operator}")
        family, negated = _OPERATORS[base]
        for key, value in block.items():
            if not _CONDITION_KEY_RE.fullmatch(key):
                raise PolicyError(f"Policy has an invalid condition key: {key}")
            items = value if isinstance(value, list) else [value]
            if not items or not all(isinstance(v, str | int | float) for v in items):
                raise PolicyError(f"Invalid Condition value for {operator}")
            values = tuple(_condition_string(v) for v in items)
            for v in values:
                _check_value(family, v, operator)
            out.append(
                Condition(operator, family, negated, if_exists, qualifier, key.lower(), values)
            )
    return tuple(out)


def _condition_string(value: str | int | float | bool) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _check_value(family: str, value: str, operator: str) -> None:
    if family.startswith("num"):
        ok = _number(value) is not None
    elif family.startswith("date"):
        ok = _date(value) is not None
    elif family == "ip":
        ok = _network(value) is not None
    elif family in ("bool", "null"):
        ok = value.lower() in ("true", "false")
    else:
        ok = True
    if not ok:
        raise PolicyError(f"Invalid Condition value for {operator}: {value}")


# -------------------------------------------------------------------------- evaluation


def evaluate(policy: Policy | None, request: PolicyRequest) -> Decision:
    """DENY if a Deny statement matches, else ALLOW if an Allow matches, else DEFAULT."""
    if policy is None:
        return Decision.DEFAULT
    context = _normalise_context(request)
    decision = Decision.DEFAULT
    for stmt in policy.statements:
        if _statement_matches(stmt, request, context):
            if stmt.effect == "Deny":
                return Decision.DENY
            decision = Decision.ALLOW
    return decision


def is_allowed(decision: Decision, authenticated: bool) -> bool:
    """The reference's rule: explicit Deny/Allow decide, else only signed callers pass."""
    if decision is Decision.DEFAULT:
        return authenticated
    return decision is Decision.ALLOW


def _normalise_context(request: PolicyRequest) -> dict[str, tuple[str, ...]]:
    context: dict[str, tuple[str, ...]] = {}
    if request.principal is not None:
        context["aws:username"] = (request.user or request.principal,)
        context["aws:userid"] = (request.principal,)
        context["aws:principalaccount"] = (ACCOUNT_ID,)
        context["aws:principalarn"] = (user_arn(request.principal),)
    context["aws:currenttime"] = (datetime.now(UTC).isoformat(),)
    for key, value in request.context.items():
        if value is None:
            continue
        if isinstance(value, str | int | float | bool):
            context[key.lower()] = (_condition_string(value),)
        elif isinstance(value, datetime):
            context[key.lower()] = (value.isoformat(),)
        else:
            context[key.lower()] = tuple(_condition_string(v) for v in value)
    return context


def _statement_matches(
    stmt: Statement, request: PolicyRequest, context: Mapping[str, tuple[str, ...]]
) -> bool:
    if _principal_matches(stmt.principals, request.principal, request.user) == stmt.not_principal:
        return False
    action_hit = any(p.fullmatch(request.action) for p in stmt.action_patterns)
    if action_hit == stmt.not_action:
        return False
    resource_hit = any(p.fullmatch(request.resource) for p in stmt.resource_patterns)
    if resource_hit == stmt.not_resource:
        return False
    return all(_condition_holds(c, context) for c in stmt.conditions)


def _principal_matches(
    patterns: Iterable[str], access_key: str | None, user: str | None = None
) -> bool:
    for pattern in patterns:
        if pattern == EVERYONE:
            return True
        if access_key is None:
            continue
        if pattern == ACCOUNT_ID or pattern == user_arn(access_key):
            return True
        if user is not None and pattern == user_arn(user):
            return True
    return False


class Wildcard:
    """An IAM wildcard: ``*`` any run of characters, ``?`` exactly one, nothing else special.

    Matched segment by segment (the text between stars, leftmost match first), never as one
    regex: ``.*a.*a.*a...b`` backtracks exponentially in the number of stars, and both a
    policy's patterns and the keys matched against them come from clients."""

    def __init__(self, pattern: str, ignore_case: bool) -> None:
        flags = re.DOTALL | (re.IGNORECASE if ignore_case else 0)
        pieces = pattern.split("*")
        self._starred = len(pieces) > 1
        self._sizes = [len(p) for p in pieces]
        self._segments = [re.compile(_segment_regex(p), flags) for p in pieces]

    def fullmatch(self, text: str) -> bool:
        """Whether the whole of `text` matches (linear-time segment searches, no backtracking)."""
        first, last = self._segments[0], self._segments[-1]
        if not self._starred:
            return first.fullmatch(text) is not None
        end = len(text) - self._sizes[-1]
        if end < self._sizes[0] or first.match(text) is None:
            return False
        if last.fullmatch(text, end) is None:
            return False
        pos = self._sizes[0]
        for segment, size in zip(self._segments[1:-1], self._sizes[1:-1], strict=True):
            if size:
                found = segment.search(text, pos, end)
                if found is None:
                    return False
                pos = found.end()
        return True


def _segment_regex(piece: str) -> str:
    """A fixed-length regex for the text between two stars (``?`` is any one character)."""
    return "".join("." if c == "?" else re.escape(c) for c in piece)


@lru_cache(maxsize=1024)
def _wildcard(pattern: str, ignore_case: bool) -> Wildcard:
    """The compiled matcher for a pattern, cached: the same few patterns match every request."""
    return Wildcard(pattern, ignore_case)


def _condition_holds(cond: Condition, context: Mapping[str, tuple[str, ...]]) -> bool:
    present = context.get(cond.key)
    if cond.family == "null":
        return (not present) == (cond.values[0].lower() == "true")
    if not present:
        if cond.if_exists or cond.qualifier == "ForAllValues":
            return True
        return cond.negated and cond.qualifier is None
    hits = [_value_matches(cond, v) != cond.negated for v in present]
    if cond.qualifier == "ForAllValues":
        return all(hits)
    if cond.qualifier == "ForAnyValue" or not cond.negated:
        return any(hits)
    return all(hits)


def _value_matches(cond: Condition, actual: str) -> bool:
    """Whether one request value matches any of the condition's values (positive form)."""
    family = cond.family
    if family == "str":
        return actual in cond.values
    if family == "stri":
        return actual.casefold() in {v.casefold() for v in cond.values}
    if family == "like":
        return any(p.fullmatch(actual) for p in cond.patterns)
    if family == "bool":
        return actual.lower() in {v.lower() for v in cond.values}
    if family == "ip":
        try:
            address = ipaddress.ip_address(actual)
        except ValueError:
            return False
        # An IPv4 range never contains an IPv6 address and vice versa (`in` is False).
        return any((net := _network(v)) is not None and address in net for v in cond.values)
    parse = _number if family.startswith("num") else _date
    compare = _COMPARE[family[3:] if family.startswith("num") else family[4:]]
    left = parse(actual)
    if left is None:
        return False
    return any((right := parse(v)) is not None and compare(left, right) for v in cond.values)


def _number(value: str) -> float | None:
    try:
        return float(value)
    except ValueError:
        return None


def _date(value: str) -> datetime | None:
    """ISO 8601 (naive means UTC) or seconds since the epoch."""
    number = _number(value)
    if number is not None:
        try:
            return datetime.fromtimestamp(number, UTC)
        except (OverflowError, OSError, ValueError):
            return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _network(value: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network | None:
    try:
        return ipaddress.ip_network(value, strict=False)
    except ValueError:
        return None
