"""auth/postpolicy.py: any policy field decodes to a PostPolicy or fails with
InvalidPolicyDocument; checking it and its signature gives None/an access key or an
AuthFailure, never another exception."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shoal.auth.postpolicy import PostPolicy, check_policy, decode_policy, verify_signature
from shoal.auth.sigv4 import ALGORITHM, AuthFailure, sign, signing_key

NOW = datetime(2026, 6, 1, tzinfo=UTC)
REGION = "us-east-1"
SECRETS = {"AKID": "secret"}
#: What a bad signature or credential in a form gets (all 4xx once mapped to S3 errors).
REFUSALS = {
    "InvalidArgument",
    "AuthorizationQueryParametersError",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
}


def b64(document: Any) -> str:
    return base64.b64encode(json.dumps(document).encode()).decode()


def decoded(policy_b64: str) -> PostPolicy | AuthFailure:
    try:
        return decode_policy(policy_b64)
    except AuthFailure as exc:
        assert exc.code == "InvalidPolicyDocument", exc.code
        return exc


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=12,
)
operands = st.sampled_from(["eq", "starts-with", "content-length-range", "EQ", "in", ""])
names = st.sampled_from(["$key", "$Content-Type", "key", "$x-amz-meta-a", "$bucket", "", "$"])
conditions = st.one_of(
    json_values,
    st.dictionaries(names.map(lambda n: n.lstrip("$")), json_values, max_size=2),
    st.tuples(operands, names | json_values, json_values).map(list),
    st.tuples(st.just("content-length-range"), json_values, json_values).map(list),
)
expirations = st.one_of(
    st.just("2030-01-01T00:00:00.000Z"),
    st.just("2020-01-01T00:00:00Z"),
    st.just("9999-12-31T23:59:59-23:59"),
    st.just("0001-01-01T00:00:00+23:59"),
    st.text(max_size=30),
    json_values,
)
documents = st.one_of(
    json_values,
    st.fixed_dictionaries(
        {}, optional={"expiration": expirations, "conditions": st.lists(conditions, max_size=6)}
    ),
)
form_fields = st.dictionaries(
    st.sampled_from(["key", "content-type", "x-amz-meta-a", "bucket", "success_action_status"]),
    st.text(max_size=20),
)


@given(text=st.text(max_size=200) | st.binary(max_size=200).map(lambda b: b.decode("latin-1")))
def test_any_text_decodes_or_is_invalid(text: str) -> None:
    decoded(text)


@given(document=documents, fields=form_fields, bucket=st.text(max_size=10))
def test_any_document_decodes_and_checks_or_fails_as_s3_does(
    document: Any, fields: dict[str, str], bucket: str
) -> None:
    policy = decoded(b64(document))
    if isinstance(policy, PostPolicy):
        try:
            check_policy(policy, fields, bucket, NOW)
        except AuthFailure as exc:
            assert exc.code == "AccessDenied", exc.code


@given(
    fields=st.dictionaries(
        st.sampled_from(
            ["x-amz-algorithm", "x-amz-credential", "x-amz-date", "x-amz-signature", "policy"]
        ),
        st.text(max_size=60),
    ),
    algorithm=st.booleans(),
)
def test_any_signature_fields_verify_or_fail(fields: dict[str, str], algorithm: bool) -> None:
    if algorithm:
        fields["x-amz-algorithm"] = ALGORITHM
    try:
        assert verify_signature(fields, SECRETS.get, REGION) == "AKID"
    except AuthFailure as exc:
        assert exc.code in REFUSALS, exc.code


def test_signed_policy_verifies() -> None:
    policy = b64({"expiration": "2030-01-01T00:00:00Z", "conditions": []})
    signature = sign(signing_key("secret", "20260601", REGION), policy)
    fields = {
        "x-amz-algorithm": ALGORITHM,
        "x-amz-credential": f"AKID/20260601/{REGION}/s3/aws4_request",
        "x-amz-date": "20260601T000000Z",
        "x-amz-signature": signature,
        "policy": policy,
    }
    assert verify_signature(fields, SECRETS.get, REGION) == "AKID"
    for forged in ("0" * 64, "é" * 64, ""):  # non-ASCII: compare_digest would raise on str
        with pytest.raises(AuthFailure) as caught:
            verify_signature({**fields, "x-amz-signature": forged}, SECRETS.get, REGION)
        assert caught.value.code == "SignatureDoesNotMatch"


def _doc(*conditions: Any, expiration: Any = "2030-01-01T00:00:00Z") -> str:
    return b64({"expiration": expiration, "conditions": list(conditions)})


@pytest.mark.parametrize(
    "policy",
    [
        b64({"conditions": []}),  # no expiration: 400, not 403
        _doc(["content-length-range", None, 10]),
        _doc(["content-length-range", 0, None]),
        _doc(["content-length-range", "abc", 10]),
        _doc(["content-length-range", 0, 512.0]),  # AWS refuses floats
        _doc(["content-length-range", -1, 10]),
        _doc(["content-length-range", 10, 1]),
        _doc(["content-length-range", 0, 10**30]),
        _doc(["content-length-range", 0, "\u0661\u0662"]),  # Arabic-Indic digits
        _doc(["content-length-range", True, 10]),
        _doc(["content-length-range", 1]),
        _doc(["eq", "$key"]),
        _doc(["eq", "$key", ["x"]]),
        _doc(["eq", "$key", None]),
        _doc(["like", "$key", "x"]),
        _doc({"key": "a", "bucket": "b"}),  # a simple condition has exactly one property
        _doc({"key": {"nested": 1}}),
        _doc(42),
        _doc(expiration=None),
        _doc(expiration=12),
        _doc(expiration="tomorrow"),
        _doc(expiration="9999-12-31T23:59:59-23:59"),  # past datetime.max in UTC
        b64({"expiration": "2030-01-01T00:00:00Z", "conditions": {"key": "a"}}),
        b64([]),
        base64.b64encode(b"[" * 100_000).decode(),  # deeper than the JSON parser's stack
        base64.b64encode(b'{"expiration": ' + b"1" * 5000 + b"}").decode(),
        base64.b64encode(b"\xff\xfe not json").decode(),
        "not base64!",
        "é",
    ],
)
def test_malformed_policies_are_invalid_policy_documents(policy: str) -> None:
    assert isinstance(decoded(policy), AuthFailure)


def test_length_range_from_numbers_and_digit_strings() -> None:
    policy = decode_policy(_doc(["content-length-range", 1, "1000"], ["starts-with", "$key", ""]))
    assert policy.length_range == (1, 1000)
    narrowed = decode_policy(
        _doc(["content-length-range", 1, 1000], ["content-length-range", 10, 100])
    )
    assert narrowed.length_range == (10, 100)


def test_conditions_hold_or_deny() -> None:
    policy = decode_policy(
        _doc(
            {"bucket": "b"},
            ["starts-with", "$key", "up/"],
            ["starts-with", "$Content-Type", "text/"],
            ["eq", "$x-amz-meta-a", "1"],
        )
    )
    fields = {"key": "up/a", "content-type": "text/plain", "x-amz-meta-a": "1"}
    check_policy(policy, fields, "b", NOW)
    for change in ({"key": "down/a"}, {"x-amz-meta-a": "2"}, {"x-amz-meta-b": "extra"}):
        with pytest.raises(AuthFailure) as caught:
            check_policy(policy, {**fields, **change}, "b", NOW)
        assert caught.value.code == "AccessDenied"
    with pytest.raises(AuthFailure, match="expired"):
        check_policy(decode_policy(_doc(expiration="2020-01-01T00:00:00Z")), {}, "b", NOW)
