"""Bucket policies: validation as PutBucketPolicy does, evaluation as IAM does."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from shoal.auth.actions import (
    OPERATIONS,
    S3_ACTIONS,
    action_for,
    operation_resource,
    resource_arn,
    source_requirement,
)
from shoal.auth.policy import (
    ACCOUNT_ID,
    Decision,
    Policy,
    PolicyError,
    PolicyRequest,
    evaluate,
    is_allowed,
    parse_policy,
    user_arn,
)

BUCKET = "public-assets"
OBJ = f"arn:aws:s3:::{BUCKET}/photos/cat.jpg"
BKT = f"arn:aws:s3:::{BUCKET}"
ALICE = "AKIAALICE"
BOB = "AKIABOB"


def stmt(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "Effect": "Allow",
        "Principal": "*",
        "Action": "s3:GetObject",
        "Resource": f"arn:aws:s3:::{BUCKET}/*",
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def policy(*statements: dict[str, Any], **top: Any) -> Policy:
    doc = {"Version": "2012-10-17", "Statement": list(statements), **top}
    return parse_policy(json.dumps(doc), BUCKET)


def decide(
    pol: Policy | None,
    principal: str | None = None,
    action: str = "s3:GetObject",
    resource: str = OBJ,
    **context: Any,
) -> Decision:
    ctx = {k.replace("__", ":").replace("_", "-"): v for k, v in context.items()}
    return evaluate(pol, PolicyRequest(principal, action, resource, ctx))


def reason(text: str, bucket: str = BUCKET) -> str:
    with pytest.raises(PolicyError) as info:
        parse_policy(text, bucket)
    return info.value.reason


# ------------------------------------------------------------------------- validation

REFERENCE_EXAMPLE = json.dumps(
    {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "PublicRead",
                "Effect": "Allow",
                "Principal": "*",
                "Action": ["s3:GetObject"],
                "Resource": ["arn:aws:s3:::public-assets/*"],
            }
        ],
    }
)


def doc(**fields: Any) -> str:
    return json.dumps({"Version": "2012-10-17", **fields})


def one(**overrides: Any) -> str:
    return doc(Statement=[stmt(**overrides)])


INVALID: list[tuple[str, str, str]] = [
    ("not json", "{nope", "Policies must be valid JSON and the first byte must be '{'"),
    ("array", "[]", "Policies must be valid JSON and the first byte must be '{'"),
    ("leading space", " " + REFERENCE_EXAMPLE, "must be valid JSON"),
    ("too big", doc(Id="x" * 21000, Statement=[stmt()]), "maximum allowed document size"),
    ("bad version", json.dumps({"Version": "2020-01-01", "Statement": [stmt()]}), "version"),
    ("unknown top key", doc(Statement=[stmt()], Extra=1), "Unknown field Extra"),
    ("no statement", doc(), "Missing required field Statement"),
    ("empty statement", doc(Statement=[]), "Statement is empty"),
    ("statement string", doc(Statement="x"), "Statement must be"),
    ("statement item", doc(Statement=["x"]), "Statement must be"),
    ("unknown stmt key", one(Foo="bar"), "Unknown field Foo"),
    ("no effect", one(Effect=None), "Missing required field Effect"),
    ("bad effect", one(Effect="Maybe"), "Invalid effect: Maybe"),
    ("sid not string", one(Sid=5), "Sid must be a string"),
    ("no principal", one(Principal=None), "Missing required field Principal"),
    ("both principals", one(NotPrincipal="*"), "both Principal and NotPrincipal"),
    ("principal string", one(Principal="everyone"), "Invalid principal in policy"),
    ("principal type", one(Principal={"Service": "x.amazonaws.com"}), "Invalid principal"),
    ("principal arn", one(Principal={"AWS": "arn:aws:iam::1:user/x"}), "Invalid principal"),
    ("principal glob", one(Principal={"AWS": "arn:aws:iam::*:root"}), "Invalid principal"),
    ("principal empty", one(Principal={"AWS": []}), "Invalid principal in policy"),
    ("no action", one(Action=None), "Missing required field Action"),
    ("both actions", one(NotAction="s3:*"), "both Action and NotAction"),
    ("unknown action", one(Action="s3:GetObjekt"), "Policy has invalid action"),
    ("other service", one(Action="iam:PassRole"), "Policy has invalid action"),
    ("no service", one(Action="GetObject"), "Policy has invalid action"),
    ("glob matches none", one(Action="s3:Fly*"), "Policy has invalid action"),
    ("empty action list", one(Action=[]), "Policy has invalid action"),
    ("action not string", one(Action=[1]), "Policy has invalid action"),
    ("no resource", one(Resource=None), "Missing required field Resource"),
    ("both resources", one(NotResource=BKT), "both Resource and NotResource"),
    ("other bucket", one(Resource="arn:aws:s3:::other/*"), "Policy has invalid resource"),
    ("bucket prefix", one(Resource=f"arn:aws:s3:::{BUCKET}x/*"), "Policy has invalid resource"),
    ("not an arn", one(Resource="*"), "Policy has invalid resource"),
    ("other service arn", one(Resource=f"arn:aws:sqs:::{BUCKET}"), "invalid resource"),
    ("bad operator", one(Condition={"StringEqualz": {"aws:username": "a"}}), "Condition type"),
    ("null ifexists", one(Condition={"NullIfExists": {"s3:prefix": "true"}}), "Condition type"),
    ("bad cond key", one(Condition={"StringEquals": {"foo": "a"}}), "invalid condition key"),
    ("bad cond block", one(Condition={"StringEquals": "a"}), "Invalid Condition block"),
    ("condition list", one(Condition=["a"]), "Invalid Condition block"),
    ("bad cidr", one(Condition={"IpAddress": {"aws:SourceIp": "10.0.0.0/99"}}), "value"),
    ("bad number", one(Condition={"NumericLessThan": {"s3:max-keys": "ten"}}), "value"),
    ("bad date", one(Condition={"DateLessThan": {"aws:CurrentTime": "soon"}}), "value"),
    ("bad bool", one(Condition={"Bool": {"aws:SecureTransport": "yes"}}), "value"),
    ("dict value", one(Condition={"StringEquals": {"s3:prefix": {"a": 1}}}), "value"),
    ("dup sid", doc(Statement=[stmt(Sid="A"), stmt(Sid="A")]), "must be unique"),
]


@pytest.mark.parametrize(
    ("text", "expected"), [c[1:] for c in INVALID], ids=[c[0] for c in INVALID]
)
def test_invalid_policies_are_refused_with_a_reason(text: str, expected: str) -> None:
    assert expected in reason(text)


def test_policy_error_is_a_value_error_carrying_the_reason() -> None:
    err = PolicyError("Policy has invalid action")
    assert isinstance(err, ValueError)
    assert str(err) == err.reason == "Policy has invalid action"


VALID: list[tuple[str, str]] = [
    ("reference example", REFERENCE_EXAMPLE),
    ("no version", json.dumps({"Statement": [stmt()]})),
    ("old version", json.dumps({"Version": "2008-10-17", "Statement": stmt()})),
    ("id", doc(Id="my-policy", Statement=[stmt()])),
    ("aws star", one(Principal={"AWS": "*"})),
    ("account id", one(Principal={"AWS": "123456789012"})),
    ("root arn", one(Principal={"AWS": "arn:aws:iam::123456789012:root"})),
    ("users", one(Principal={"AWS": [user_arn(ALICE), "arn:aws:iam::123456789012:user/a/b"]})),
    ("role", one(Principal={"AWS": "arn:aws:iam::123456789012:role/reader"})),
    ("canonical", one(Principal={"CanonicalUser": "79a59df900b949e55d96a1e698fbace"})),
    ("not principal", one(Principal=None, NotPrincipal={"AWS": user_arn(ALICE)})),
    ("star action", one(Action="*")),
    ("s3 star", one(Action="s3:*")),
    ("prefix glob", one(Action=["s3:Get*", "s3:List*"])),
    ("question", one(Action="s3:?etObject")),
    ("action case", one(Action="S3:getobject")),
    ("not action", one(Action=None, NotAction="s3:DeleteObject")),
    ("bucket arn", one(Resource=BKT, Action="s3:ListBucket")),
    ("not resource", one(Resource=None, NotResource=f"{BKT}/private/*")),
    ("key globs", one(Resource=[f"{BKT}/a?c/*", f"{BKT}/*.jpg"])),
    ("conditions", one(Condition={"ForAnyValue:StringLikeIfExists": {"s3:prefix": ["a", 1]}})),
    ("number values", one(Condition={"NumericLessThan": {"s3:max-keys": 10}})),
    ("bool value", one(Condition={"Bool": {"aws:SecureTransport": False}})),
]


@pytest.mark.parametrize("text", [c[1] for c in VALID], ids=[c[0] for c in VALID])
def test_valid_policies_parse(text: str) -> None:
    assert parse_policy(text, BUCKET).statements


def test_parsed_shape_of_the_reference_example() -> None:
    pol = parse_policy(REFERENCE_EXAMPLE, BUCKET)
    assert pol.version == "2012-10-17"
    (s,) = pol.statements
    assert (s.sid, s.effect, s.principals, s.not_principal) == (
        "PublicRead",
        "Allow",
        ("*",),
        False,
    )
    assert s.actions == ("s3:GetObject",)
    assert s.resources == ("arn:aws:s3:::public-assets/*",)


def test_resource_must_name_this_bucket() -> None:
    assert "invalid resource" in reason(REFERENCE_EXAMPLE, bucket="other-bucket")


def test_size_limit_is_20_kib_in_bytes() -> None:
    base = doc(Id="", Statement=[stmt()])
    fits = doc(Id="x" * (20 * 1024 - len(base)), Statement=[stmt()])
    assert len(fits.encode()) == 20 * 1024
    parse_policy(fits, BUCKET)
    with pytest.raises(PolicyError):
        parse_policy(doc(Id="é" * (20 * 1024 - len(base)), Statement=[stmt()]), BUCKET)


# ------------------------------------------------------------------------- evaluation


def test_reference_public_read_example() -> None:
    pol = parse_policy(REFERENCE_EXAMPLE, BUCKET)
    assert decide(pol) is Decision.ALLOW  # anonymous read
    assert decide(pol, ALICE) is Decision.ALLOW
    assert decide(pol, action="s3:PutObject") is Decision.DEFAULT
    assert decide(pol, action="s3:ListBucket", resource=BKT) is Decision.DEFAULT
    assert not is_allowed(decide(pol, action="s3:PutObject"), authenticated=False)
    assert is_allowed(decide(pol, ALICE, action="s3:PutObject"), authenticated=True)


def test_no_policy_is_default() -> None:
    assert decide(None) is Decision.DEFAULT
    assert decide(None, ALICE) is Decision.DEFAULT


@pytest.mark.parametrize(
    ("decision", "authenticated", "allowed"),
    [
        (Decision.DEFAULT, True, True),
        (Decision.DEFAULT, False, False),
        (Decision.ALLOW, True, True),
        (Decision.ALLOW, False, True),
        (Decision.DENY, True, False),
        (Decision.DENY, False, False),
    ],
)
def test_is_allowed(decision: Decision, authenticated: bool, allowed: bool) -> None:
    assert is_allowed(decision, authenticated) is allowed


def test_explicit_deny_beats_allow_in_any_order() -> None:
    allow, deny = stmt(Action="s3:*"), stmt(Effect="Deny", Action="s3:GetObject")
    for order in ((allow, deny), (deny, allow)):
        pol = policy(*order)
        assert decide(pol, ALICE) is Decision.DENY
        assert decide(pol, ALICE, action="s3:PutObject") is Decision.ALLOW


def test_deny_for_everyone_blocks_authenticated_callers() -> None:
    pol = policy(stmt(Effect="Deny", Action="s3:DeleteObject"))
    assert not is_allowed(decide(pol, ALICE, action="s3:DeleteObject"), authenticated=True)
    assert is_allowed(decide(pol, ALICE), authenticated=True)


# -------------------------------------------------------------------------- principals

OTHER_ACCOUNT = "123456789012"


@pytest.mark.parametrize(
    ("principal", "anonymous", "alice", "bob"),
    [
        ("*", True, True, True),
        ({"AWS": "*"}, True, True, True),
        ({"AWS": ["*"]}, True, True, True),
        ({"AWS": user_arn(ALICE)}, False, True, False),
        ({"AWS": [user_arn(BOB), user_arn(ALICE)]}, False, True, True),
        ({"AWS": ACCOUNT_ID}, False, True, True),
        ({"AWS": f"arn:aws:iam::{ACCOUNT_ID}:root"}, False, True, True),
        ({"AWS": OTHER_ACCOUNT}, False, False, False),
        ({"AWS": f"arn:aws:iam::{OTHER_ACCOUNT}:user/{ALICE}"}, False, False, False),
        ({"AWS": f"arn:aws:iam::{ACCOUNT_ID}:role/{ALICE}"}, False, False, False),
        ({"CanonicalUser": "abc"}, False, False, False),
    ],
)
def test_principal_forms(principal: Any, anonymous: bool, alice: bool, bob: bool) -> None:
    pol = policy(stmt(Principal=principal))
    for caller, expected in ((None, anonymous), (ALICE, alice), (BOB, bob)):
        assert (decide(pol, caller) is Decision.ALLOW) is expected, caller


def test_user_arn_uses_the_documented_account() -> None:
    assert ACCOUNT_ID == "000000000000"
    assert user_arn("AK") == "arn:aws:iam::000000000000:user/AK"


def test_not_principal() -> None:
    pol = policy(stmt(Effect="Deny", Principal=None, NotPrincipal={"AWS": user_arn(ALICE)}))
    assert decide(pol, ALICE) is Decision.DEFAULT
    assert decide(pol, BOB) is Decision.DENY
    assert decide(pol, None) is Decision.DENY
    everyone = policy(stmt(Effect="Deny", Principal=None, NotPrincipal="*"))
    assert decide(everyone, None) is decide(everyone, BOB) is Decision.DEFAULT
    account = policy(stmt(Effect="Deny", Principal=None, NotPrincipal={"AWS": ACCOUNT_ID}))
    assert decide(account, BOB) is Decision.DEFAULT
    assert decide(account, None) is Decision.DENY


# ------------------------------------------------------------------ actions, resources


@pytest.mark.parametrize(
    ("pattern", "action", "hit"),
    [
        ("s3:GetObject", "s3:GetObject", True),
        ("s3:GetObject", "s3:GetObjectAcl", False),
        ("s3:getobject", "s3:GetObject", True),
        ("S3:GETOBJECT", "s3:GetObject", True),
        ("s3:Get*", "s3:GetObject", True),
        ("s3:Get*", "s3:GetBucketPolicy", True),
        ("s3:Get*", "s3:PutObject", False),
        ("s3:*", "s3:DeleteBucket", True),
        ("*", "s3:ListBucket", True),
        ("s3:?utObject", "s3:PutObject", True),
        ("s3:?utObject", "s3:PPutObject", False),
        ("s3:*Object", "s3:GetObjectAcl", False),
        ("s3:*Object*", "s3:GetObjectAcl", True),
        ("s3:List*", "s3:ListBucketMultipartUploads", True),
    ],
)
def test_action_wildcards(pattern: str, action: str, hit: bool) -> None:
    pol = policy(stmt(Action=pattern, Resource=[BKT, f"{BKT}/*"]))
    assert (decide(pol, action=action) is Decision.ALLOW) is hit
    neg = policy(stmt(Action=None, NotAction=pattern, Resource=[BKT, f"{BKT}/*"]))
    assert (decide(neg, action=action) is Decision.ALLOW) is not hit


@pytest.mark.parametrize(
    ("pattern", "resource", "hit"),
    [
        (f"{BKT}/*", OBJ, True),
        (f"{BKT}/*", BKT, False),
        (BKT, BKT, True),
        (BKT, OBJ, False),
        (f"{BKT}*", BKT, True),
        (f"{BKT}/photos/*", OBJ, True),
        (f"{BKT}/Photos/*", OBJ, False),  # resources are case-sensitive
        (f"{BKT}/photos/???.jpg", OBJ, True),
        (f"{BKT}/photos/??.jpg", OBJ, False),
        (f"{BKT}/*.jpg", OBJ, True),
        (f"{BKT}/*.png", OBJ, False),
        (f"{BKT}/photos/[c]at.jpg", OBJ, False),  # brackets are literal
        (f"{BKT}/photos/cat.jpg", OBJ, True),
        (f"{BKT}/photos/cat.jp", OBJ, False),
        (f"{BKT}/a.b", f"{BKT}/axb", False),  # dots are literal
    ],
)
def test_resource_wildcards(pattern: str, resource: str, hit: bool) -> None:
    pol = policy(stmt(Action="s3:*", Resource=pattern))
    assert (decide(pol, action="s3:GetObject", resource=resource) is Decision.ALLOW) is hit
    neg = policy(stmt(Action="s3:*", Resource=None, NotResource=pattern))
    assert (decide(neg, action="s3:GetObject", resource=resource) is Decision.ALLOW) is not hit


def test_resource_with_special_key_characters() -> None:
    key_arn = resource_arn(BUCKET, "dir/ünï cøde\n(1)+$.txt")
    pol = policy(stmt(Resource=f"{BKT}/dir/*"))
    assert decide(pol, resource=key_arn) is Decision.ALLOW


def test_not_action_deny_leaves_listed_actions_alone() -> None:
    pol = policy(
        stmt(Action="s3:*"),
        stmt(Effect="Deny", Action=None, NotAction=["s3:Get*", "s3:List*"]),
    )
    assert decide(pol, ALICE) is Decision.ALLOW
    assert decide(pol, ALICE, action="s3:PutObject") is Decision.DENY


def test_not_resource_deny_protects_everything_outside_a_prefix() -> None:
    pol = policy(stmt(Effect="Deny", Action="s3:PutObject", Resource=None,
                      NotResource=f"{BKT}/uploads/*"))  # fmt: skip
    assert decide(pol, ALICE, "s3:PutObject", f"{BKT}/uploads/x") is Decision.DEFAULT
    assert decide(pol, ALICE, "s3:PutObject", OBJ) is Decision.DENY


# -------------------------------------------------------------------------- conditions


def cond_policy(condition: dict[str, Any]) -> Policy:
    return policy(stmt(Action="s3:*", Resource=[BKT, f"{BKT}/*"], Condition=condition))


def holds(condition: dict[str, Any], context: dict[str, Any]) -> bool:
    pol = cond_policy(condition)
    return evaluate(pol, PolicyRequest(ALICE, "s3:GetObject", OBJ, context)) is Decision.ALLOW


K = "s3:prefix"
CONDITIONS: list[tuple[str, Any, dict[str, Any], bool]] = [
    # String family
    ("StringEquals", "a/", {K: "a/"}, True),
    ("StringEquals", "a/", {K: "A/"}, False),
    ("StringEquals", ["x", "a/"], {K: "a/"}, True),  # values OR
    ("StringEquals", "a/", {}, False),  # missing key: positive false
    ("StringNotEquals", "a/", {K: "b/"}, True),
    ("StringNotEquals", "a/", {K: "a/"}, False),
    ("StringNotEquals", ["a/", "b/"], {K: "b/"}, False),
    ("StringNotEquals", "a/", {}, True),  # missing key: negated true
    ("StringEqualsIgnoreCase", "ABC", {K: "abc"}, True),
    ("StringEqualsIgnoreCase", "ABC", {K: "abd"}, False),
    ("StringNotEqualsIgnoreCase", "ABC", {K: "abc"}, False),
    ("StringNotEqualsIgnoreCase", "ABC", {K: "xyz"}, True),
    ("StringLike", "home/*", {K: "home/alice/"}, True),
    ("StringLike", "home/?", {K: "home/ab"}, False),
    ("StringLike", "Home/*", {K: "home/a"}, False),  # case-sensitive
    ("StringLike", "home/*", {}, False),
    ("StringNotLike", "home/*", {K: "etc/"}, True),
    ("StringNotLike", "home/*", {K: "home/x"}, False),
    ("StringNotLike", "home/*", {}, True),
    ("StringEqualsIfExists", "a/", {}, True),
    ("StringEqualsIfExists", "a/", {K: "b/"}, False),
    ("StringNotEqualsIfExists", "a/", {K: "a/"}, False),
    ("StringLikeIfExists", "a*", {K: "abc"}, True),
    # Multi-valued request keys with set qualifiers
    ("ForAnyValue:StringEquals", ["a", "b"], {K: ["z", "b"]}, True),
    ("ForAnyValue:StringEquals", ["a", "b"], {K: ["z", "y"]}, False),
    ("ForAnyValue:StringEquals", ["a"], {}, False),
    ("ForAnyValue:StringNotEquals", ["a"], {K: ["a", "b"]}, True),
    ("ForAnyValue:StringNotEquals", ["a"], {K: ["a"]}, False),
    ("ForAnyValue:StringNotEquals", ["a"], {}, False),
    ("ForAllValues:StringEquals", ["a", "b"], {K: ["a", "b"]}, True),
    ("ForAllValues:StringEquals", ["a", "b"], {K: ["a", "c"]}, False),
    ("ForAllValues:StringEquals", ["a"], {}, True),  # vacuously true
    ("ForAllValues:StringEquals", ["a"], {K: []}, True),
    ("ForAllValues:StringLike", ["a*"], {K: ["ab", "ac"]}, True),
    ("ForAllValues:StringNotLike", ["a*"], {K: ["b", "c"]}, True),
    ("ForAllValues:StringNotLike", ["a*"], {K: ["b", "ax"]}, False),
    ("ForAnyValue:StringLikeIfExists", ["a*"], {}, True),
    ("StringEquals", "b", {K: ["a", "b"]}, True),  # no qualifier, list: any
    ("StringNotEquals", "b", {K: ["a", "b"]}, False),  # negated, list: none may match
]


@pytest.mark.parametrize(
    ("operator", "values", "context", "expected"),
    CONDITIONS,
    ids=[f"{c[0]}-{i}" for i, c in enumerate(CONDITIONS)],
)
def test_string_conditions(
    operator: str, values: Any, context: dict[str, Any], expected: bool
) -> None:
    assert holds({operator: {K: values}}, context) is expected


N = "s3:max-keys"
NUMERIC: list[tuple[str, Any, Any, bool]] = [
    ("NumericEquals", "10", "10", True),
    ("NumericEquals", 10, "10.0", True),
    ("NumericEquals", "10", "11", False),
    ("NumericNotEquals", "10", "11", True),
    ("NumericNotEquals", "10", "10", False),
    ("NumericLessThan", "10", "9", True),
    ("NumericLessThan", "10", "10", False),
    ("NumericLessThanEquals", "10", "10", True),
    ("NumericLessThanEquals", "10", 11, False),
    ("NumericGreaterThan", "10", "11", True),
    ("NumericGreaterThan", "10", "10", False),
    ("NumericGreaterThanEquals", "10", "10", True),
    ("NumericGreaterThanEquals", "10", "9", False),
    ("NumericLessThan", "10", "many", False),  # unparseable request value
    ("NumericLessThan", "10", None, False),  # missing
    ("NumericNotEquals", "10", None, True),  # missing, negated
    ("NumericLessThanIfExists", "10", None, True),
]


@pytest.mark.parametrize(("operator", "value", "actual", "expected"), NUMERIC)
def test_numeric_conditions(operator: str, value: Any, actual: Any, expected: bool) -> None:
    context = {} if actual is None else {N: actual}
    assert holds({operator: {N: value}}, context) is expected


T = "aws:CurrentTime"
NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
DATES: list[tuple[str, str, Any, bool]] = [
    ("DateLessThan", "2026-06-02T00:00:00Z", NOW, True),
    ("DateLessThan", "2026-06-01T00:00:00Z", NOW, False),
    ("DateGreaterThan", "2026-06-01T00:00:00Z", NOW, True),
    ("DateGreaterThan", "2026-06-01T12:00:00Z", NOW, False),
    ("DateGreaterThanEquals", "2026-06-01T12:00:00Z", NOW, True),
    ("DateLessThanEquals", "2026-06-01T12:00:00+00:00", NOW, True),
    ("DateLessThanEquals", "2026-06-01T11:59:59Z", NOW, False),
    ("DateEquals", "2026-06-01T14:00:00+02:00", NOW, True),  # offsets honoured
    ("DateEquals", "2026-06-01T12:00:00", NOW, True),  # naive means UTC
    ("DateNotEquals", "2026-06-01T12:00:00Z", NOW, False),
    ("DateNotEquals", "2026-06-01T12:00:01Z", NOW, True),
    ("DateEquals", str(int(NOW.timestamp())), NOW, True),  # epoch in the policy
    ("DateLessThan", "2026-06-02", str(int(NOW.timestamp())), True),  # epoch in the request
    ("DateLessThan", "2026-06-02T00:00:00Z", "garbage", False),
    ("DateGreaterThan", "2026-06-01T00:00:00Z", "2026-06-01T00:00:01Z", True),
]


@pytest.mark.parametrize(("operator", "value", "actual", "expected"), DATES)
def test_date_conditions(operator: str, value: str, actual: Any, expected: bool) -> None:
    assert holds({operator: {T: value}}, {T: actual}) is expected


def test_current_time_window_defaults_to_now() -> None:
    now = datetime.now(UTC)
    inside = {
        "DateGreaterThan": {T: (now - timedelta(hours=1)).isoformat()},
        "DateLessThan": {T: (now + timedelta(hours=1)).isoformat()},
    }
    assert holds(inside, {})
    expired = {"DateLessThan": {T: (now - timedelta(hours=1)).isoformat()}}
    assert not holds(expired, {})
    assert holds(expired, {T: now - timedelta(hours=2)})


@pytest.mark.parametrize(
    ("value", "actual", "expected"),
    [
        ("true", True, True),
        ("true", "true", True),
        ("true", "TRUE", True),
        (True, "true", True),
        ("true", False, False),
        ("false", False, True),
        ("false", None, False),
    ],
)
def test_bool_secure_transport(value: Any, actual: Any, expected: bool) -> None:
    key = "aws:SecureTransport"
    context = {} if actual is None else {key: actual}
    assert holds({"Bool": {key: value}}, context) is expected


def test_deny_insecure_transport_pattern() -> None:
    pol = policy(
        stmt(Action="s3:*"),
        stmt(Effect="Deny", Action="s3:*", Condition={"Bool": {"aws:SecureTransport": "false"}}),
    )
    assert decide(pol, aws__SecureTransport=False) is Decision.DENY
    assert decide(pol, aws__SecureTransport=True) is Decision.ALLOW


IP = "aws:SourceIp"


@pytest.mark.parametrize(
    ("operator", "cidrs", "ip", "expected"),
    [
        ("IpAddress", "192.168.1.0/24", "192.168.1.77", True),
        ("IpAddress", "192.168.1.0/24", "192.168.2.1", False),
        ("IpAddress", "192.168.1.5", "192.168.1.5", True),  # bare address = /32
        ("IpAddress", "192.168.1.5/24", "192.168.1.200", True),  # host bits ignored
        ("IpAddress", ["10.0.0.0/8", "172.16.0.0/12"], "172.20.1.1", True),
        ("IpAddress", "2001:db8::/32", "2001:db8:1::1", True),
        ("IpAddress", "2001:db8::/32", "2001:db9::1", False),
        ("IpAddress", "0.0.0.0/0", "::1", False),  # v4 range never matches v6
        ("IpAddress", "::/0", "127.0.0.1", False),
        ("IpAddress", "10.0.0.0/8", "not-an-ip", False),
        ("IpAddress", "10.0.0.0/8", None, False),
        ("NotIpAddress", "10.0.0.0/8", "11.0.0.1", True),
        ("NotIpAddress", "10.0.0.0/8", "10.9.9.9", False),
        ("NotIpAddress", "2001:db8::/32", "2001:db8::5", False),
        ("NotIpAddress", "2001:db8::/32", "::1", True),
        ("NotIpAddress", "10.0.0.0/8", None, True),
        ("IpAddressIfExists", "10.0.0.0/8", None, True),
    ],
)
def test_ip_conditions(operator: str, cidrs: Any, ip: str | None, expected: bool) -> None:
    context = {} if ip is None else {IP: ip}
    assert holds({operator: {IP: cidrs}}, context) is expected


@pytest.mark.parametrize(
    ("value", "context", "expected"),
    [
        ("true", {}, True),
        ("true", {K: "a"}, False),
        ("false", {K: "a"}, True),
        ("false", {}, False),
        (True, {}, True),
    ],
)
def test_null_condition(value: Any, context: dict[str, Any], expected: bool) -> None:
    assert holds({"Null": {K: value}}, context) is expected


def test_condition_keys_are_case_insensitive() -> None:
    assert holds({"StringEquals": {"S3:Prefix": "a"}}, {"s3:prefix": "a"})
    assert holds({"StringEquals": {"s3:prefix": "a"}}, {"S3:PREFIX": "a"})


def test_keys_in_a_block_and_operators_and_together() -> None:
    condition = {
        "StringEquals": {K: "home/", "s3:delimiter": "/"},
        "NumericLessThanEquals": {N: "100"},
    }
    full = {K: "home/", "s3:delimiter": "/", N: 50}
    assert holds(condition, full)
    assert not holds(condition, {**full, "s3:delimiter": ""})
    assert not holds(condition, {**full, N: 500})
    assert not holds(condition, {K: "home/", N: 50})


def test_prefix_restricted_listing() -> None:
    pol = policy(
        stmt(
            Principal={"AWS": user_arn(ALICE)},
            Action="s3:ListBucket",
            Resource=BKT,
            Condition={"StringLike": {"s3:prefix": ["home/alice/*", ""]}},
        )
    )

    def listing(principal: str | None, prefix: str | None) -> Decision:
        context = {} if prefix is None else {"s3:prefix": prefix}
        return evaluate(pol, PolicyRequest(principal, "s3:ListBucket", BKT, context))

    assert listing(ALICE, "home/alice/docs/") is Decision.ALLOW
    assert listing(ALICE, "") is Decision.ALLOW
    assert listing(ALICE, "home/bob/") is Decision.DEFAULT
    assert listing(ALICE, None) is Decision.DEFAULT
    assert listing(BOB, "home/alice/") is Decision.DEFAULT
    assert not is_allowed(listing(None, "home/alice/"), authenticated=False)


def test_identity_keys_are_supplied_for_authenticated_callers() -> None:
    pol = policy(
        stmt(Condition={"StringEquals": {"aws:username": ALICE, "aws:userid": ALICE}}),
        stmt(Effect="Deny", Condition={"Null": {"aws:username": "true"}}),
    )
    assert decide(pol, ALICE) is Decision.ALLOW
    assert decide(pol, BOB) is Decision.DEFAULT
    assert decide(pol, None) is Decision.DENY
    acct = policy(stmt(Condition={"StringEquals": {"aws:PrincipalAccount": ACCOUNT_ID}}))
    assert decide(acct, BOB) is Decision.ALLOW
    assert decide(acct, None) is Decision.DEFAULT


def test_acl_header_condition() -> None:
    pol = policy(
        stmt(Action="s3:PutObject"),
        stmt(
            Effect="Deny",
            Action="s3:PutObject",
            Condition={"StringEquals": {"s3:x-amz-acl": ["public-read", "public-read-write"]}},
        ),
    )
    assert decide(pol, ALICE, "s3:PutObject", s3__x_amz_acl="private") is Decision.ALLOW
    assert decide(pol, ALICE, "s3:PutObject", s3__x_amz_acl="public-read") is Decision.DENY
    assert decide(pol, ALICE, "s3:PutObject") is Decision.ALLOW


def test_none_and_empty_context_values_count_as_missing() -> None:
    assert holds({"Null": {K: "true"}}, {K: None})
    assert holds({"Null": {K: "true"}}, {K: []})
    assert not holds({"StringEquals": {K: "a"}}, {K: []})
    assert holds({"StringNotEquals": {K: "a"}}, {K: None})


# ---------------------------------------------------------------- operation table

EXPECTED_TABLE = {
    "ListBuckets": ("s3:ListAllMyBuckets", "service"),
    "CreateBucket": ("s3:CreateBucket", "bucket"),
    "DeleteBucket": ("s3:DeleteBucket", "bucket"),
    "HeadBucket": ("s3:ListBucket", "bucket"),
    "GetBucketLocation": ("s3:GetBucketLocation", "bucket"),
    "GetBucketVersioning": ("s3:GetBucketVersioning", "bucket"),
    "PutBucketVersioning": ("s3:PutBucketVersioning", "bucket"),
    "ListObjectVersions": ("s3:ListBucketVersions", "bucket"),
    "GetObjectLockConfiguration": ("s3:GetBucketObjectLockConfiguration", "bucket"),
    "PutObjectLockConfiguration": ("s3:PutBucketObjectLockConfiguration", "bucket"),
    "GetBucketAcl": ("s3:GetBucketAcl", "bucket"),
    "PutBucketAcl": ("s3:PutBucketAcl", "bucket"),
    "GetBucketOwnershipControls": ("s3:GetBucketOwnershipControls", "bucket"),
    "PutBucketOwnershipControls": ("s3:PutBucketOwnershipControls", "bucket"),
    "DeleteBucketOwnershipControls": ("s3:PutBucketOwnershipControls", "bucket"),
    "GetPublicAccessBlock": ("s3:GetBucketPublicAccessBlock", "bucket"),
    "PutPublicAccessBlock": ("s3:PutBucketPublicAccessBlock", "bucket"),
    "DeletePublicAccessBlock": ("s3:PutBucketPublicAccessBlock", "bucket"),
    "GetBucketPolicyStatus": ("s3:GetBucketPolicyStatus", "bucket"),
    "ListObjects": ("s3:ListBucket", "bucket"),
    "ListObjectsV2": ("s3:ListBucket", "bucket"),
    "ListMultipartUploads": ("s3:ListBucketMultipartUploads", "bucket"),
    "GetBucketPolicy": ("s3:GetBucketPolicy", "bucket"),
    "PutBucketPolicy": ("s3:PutBucketPolicy", "bucket"),
    "DeleteBucketPolicy": ("s3:DeleteBucketPolicy", "bucket"),
    "GetBucketCors": ("s3:GetBucketCORS", "bucket"),
    "PutBucketCors": ("s3:PutBucketCORS", "bucket"),
    "DeleteBucketCors": ("s3:PutBucketCORS", "bucket"),
    "GetBucketLifecycleConfiguration": ("s3:GetLifecycleConfiguration", "bucket"),
    "PutBucketLifecycleConfiguration": ("s3:PutLifecycleConfiguration", "bucket"),
    "DeleteBucketLifecycle": ("s3:PutLifecycleConfiguration", "bucket"),
    "GetBucketEncryption": ("s3:GetEncryptionConfiguration", "bucket"),
    "PutBucketEncryption": ("s3:PutEncryptionConfiguration", "bucket"),
    "DeleteBucketEncryption": ("s3:PutEncryptionConfiguration", "bucket"),
    "GetBucketLogging": ("s3:GetBucketLogging", "bucket"),
    "PutBucketLogging": ("s3:PutBucketLogging", "bucket"),
    "PostObject": ("s3:PutObject", "bucket"),
    "DeleteObjects": ("s3:DeleteObject", "object"),
    "PutObject": ("s3:PutObject", "object"),
    "CopyObject": ("s3:PutObject", "object"),
    "GetObject": ("s3:GetObject", "object"),
    "HeadObject": ("s3:GetObject", "object"),
    "GetObjectAcl": ("s3:GetObjectAcl", "object"),
    "PutObjectAcl": ("s3:PutObjectAcl", "object"),
    "GetObjectAttributes": ("s3:GetObjectAttributes", "object"),
    "DeleteObject": ("s3:DeleteObject", "object"),
    "GetObjectRetention": ("s3:GetObjectRetention", "object"),
    "PutObjectRetention": ("s3:PutObjectRetention", "object"),
    "GetObjectLegalHold": ("s3:GetObjectLegalHold", "object"),
    "PutObjectLegalHold": ("s3:PutObjectLegalHold", "object"),
    "CreateMultipartUpload": ("s3:PutObject", "object"),
    "UploadPart": ("s3:PutObject", "object"),
    "UploadPartCopy": ("s3:PutObject", "object"),
    "CompleteMultipartUpload": ("s3:PutObject", "object"),
    "AbortMultipartUpload": ("s3:AbortMultipartUpload", "object"),
    "ListParts": ("s3:ListMultipartUploadParts", "object"),
    "GetBucketTagging": ("s3:GetBucketTagging", "bucket"),
    "PutBucketTagging": ("s3:PutBucketTagging", "bucket"),
    "DeleteBucketTagging": ("s3:PutBucketTagging", "bucket"),
    "GetObjectTagging": ("s3:GetObjectTagging", "object"),
    "PutObjectTagging": ("s3:PutObjectTagging", "object"),
    "DeleteObjectTagging": ("s3:DeleteObjectTagging", "object"),
}


def test_operation_table_is_complete_and_exact() -> None:
    assert {op: (a.action, a.resource) for op, a in OPERATIONS.items()} == EXPECTED_TABLE
    assert all(action_for(op) in S3_ACTIONS for op in OPERATIONS)


@pytest.mark.parametrize("operation", sorted(EXPECTED_TABLE))
def test_operation_resources(operation: str) -> None:
    kind = EXPECTED_TABLE[operation][1]
    expected = {"service": "*", "bucket": "arn:aws:s3:::b", "object": "arn:aws:s3:::b/k/x"}[kind]
    assert operation_resource(operation, "b", "k/x") == expected


def test_handlers_all_have_a_table_entry() -> None:
    import pathlib
    import re

    app = pathlib.Path(__file__).resolve().parents[2] / "app"
    names = set()
    for path in app.rglob("*.py"):
        names.update(re.findall(r'@handler\("(\w+)"\)', path.read_text()))
    assert names <= set(OPERATIONS), names - set(OPERATIONS)


def test_tagging_version_actions() -> None:
    """A tagging request naming a version needs the version's action, as AWS checks it."""
    for verb in ("Get", "Put", "Delete"):
        assert action_for(f"{verb}ObjectTagging") == f"s3:{verb}ObjectTagging"
        assert action_for(f"{verb}ObjectTagging", version=True) == (
            f"s3:{verb}ObjectVersionTagging"
        )
        assert action_for(f"{verb}ObjectTagging", version=True) in S3_ACTIONS
    assert action_for("DeleteBucketTagging", version=True) == "s3:PutBucketTagging"


def test_resource_arn() -> None:
    assert resource_arn("b") == "arn:aws:s3:::b"
    assert resource_arn("b", "k") == "arn:aws:s3:::b/k"
    assert resource_arn("b", "") == "arn:aws:s3:::b/"
    assert resource_arn(None) == "*"


def test_copy_needs_get_object_on_the_source() -> None:
    for op in ("CopyObject", "UploadPartCopy"):
        assert source_requirement(op, "src", "a/b") == ("s3:GetObject", "arn:aws:s3:::src/a/b")
    assert source_requirement("PutObject", "src", "a") is None
    pol = policy(stmt(Principal="*", Action="s3:GetObject", Resource=f"{BKT}/public/*"))
    action, arn = source_requirement("CopyObject", BUCKET, "public/x")  # type: ignore[misc]
    assert decide(pol, None, action, arn) is Decision.ALLOW
