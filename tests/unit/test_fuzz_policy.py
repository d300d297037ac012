"""Bucket policies (auth/policy.py), fuzzed: any document parses to a Policy or is refused
with PolicyError, and any parsed policy evaluates any request to a Decision, with work
bounded by the input's size.

Findings, each kept as a named example below:
- 20 KiB of nested `[` raised RecursionError out of json.loads (a 500 on PutBucketPolicy);
- wildcards were one regex (`*` -> `.*`): an action, resource or StringLike pattern with a
  few dozen stars backtracked for hours on PutBucketPolicy, and on every request evaluated
  against such a policy (the event loop stalled).
"""

from __future__ import annotations

import json
import re
import string
import threading
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from shoal.auth.actions import S3_ACTIONS
from shoal.auth.policy import (
    MAX_POLICY_BYTES,
    Decision,
    Policy,
    PolicyError,
    PolicyRequest,
    Wildcard,
    evaluate,
    parse_policy,
)

BUCKET = "fuzz-bucket"
#: A watchdog, not a timing assertion: a backtracking matcher never returns at all.
WATCHDOG_SECONDS = 30

text = st.text(max_size=30)
json_scalar = st.none() | st.booleans() | st.integers() | st.floats() | text
json_value = st.recursive(
    json_scalar,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(text, inner, max_size=4),
    max_leaves=20,
)


def _parse(document: str) -> Policy | PolicyError:
    try:
        return parse_policy(document, BUCKET)
    except PolicyError as error:
        assert error.reason
        return error


def _bounded(call: Any) -> Any:
    """Run `call` in a thread; fail (rather than hang the suite) if it never returns."""
    outcome: list[Any] = []

    def run() -> None:
        try:
            outcome.append((True, call()))
        except Exception as exc:  # handed to the test's thread, which re-raises it
            outcome.append((False, exc))

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(WATCHDOG_SECONDS)
    assert not worker.is_alive(), "still matching after the watchdog expired"
    returned, value = outcome[0]
    if not returned:
        raise value
    return value


@given(document=st.text(max_size=200))
@example(document='{"a":' + "[" * 9000 + "]" * 9000 + "}").via("RecursionError in json.loads")
def test_any_text_parses_or_is_malformed(document: str) -> None:
    _parse(document)


@given(document=json_value)
def test_any_json_parses_or_is_malformed(document: Any) -> None:
    _parse(json.dumps(document))


def test_deep_nesting_is_malformed_policy() -> None:
    """Regression: RecursionError escaped json.loads (a 500 from PutBucketPolicy)."""
    document = '{"Statement":' + "[" * 9000 + "]" * 9000 + "}"
    assert len(document) < MAX_POLICY_BYTES
    with pytest.raises(PolicyError):
        parse_policy(document, BUCKET)


# Near-valid statements: every field drawn from valid values, hostile ones and garbage.
star_soup = st.text(alphabet="*?ab/", max_size=40)
principal = st.sampled_from(
    ["*", {"AWS": "*"}, {"AWS": ["000000000000"]}, {"AWS": "arn:aws:iam::000000000000:user/k"},
     {"AWS": "arn:aws:iam::000000000000:root"}, {"CanonicalUser": "x"}, {"Service": "s3"}, {}]
) | json_value  # fmt: skip
action = st.sampled_from(["*", "s3:*", "s3:Get*", "s3:GetObject", "s3:?etObject", "iam:*"])
action = action | star_soup.map(lambda s: "s3:" + s) | text
resource = st.sampled_from(
    [f"arn:aws:s3:::{BUCKET}", f"arn:aws:s3:::{BUCKET}/*", f"arn:aws:s3:::{BUCKET}*", "*"]
)
resource = resource | star_soup.map(lambda s: f"arn:aws:s3:::{BUCKET}/{s}") | text
operator = st.sampled_from(
    ["StringEquals", "StringNotEquals", "StringEqualsIgnoreCase", "StringLike",
     "StringNotLike", "ArnLike", "NumericLessThan", "NumericGreaterThanEquals", "DateLessThan",
     "DateGreaterThan", "Bool", "IpAddress", "NotIpAddress", "Null"]
)  # fmt: skip
operator = (
    st.tuples(
        st.sampled_from(["", "ForAnyValue:", "ForAllValues:"]),
        operator,
        st.sampled_from(["", "IfExists"]),
    ).map("".join)
    | text
)
condition_key = st.sampled_from(
    ["aws:SourceIp", "aws:SecureTransport", "s3:prefix", "s3:max-keys", "aws:CurrentTime",
     "aws:username", "s3:x-amz-acl", "aws:Referer"]
) | text  # fmt: skip
condition_value = (
    st.sampled_from(
        ["10.0.0.0/8", "::1/128", "true", "false", "2026-01-01T00:00:00Z", "1e400", "nan",
         "-inf", "99999999999999999999", "1_000", "\u0663"]
    )
    | star_soup
    | st.integers()
    | st.floats()
    | text
)  # fmt: skip
condition = st.dictionaries(
    operator,
    st.dictionaries(
        condition_key, condition_value | st.lists(condition_value, max_size=3), max_size=3
    ),
    max_size=3,
)
statement = st.fixed_dictionaries(
    {"Effect": st.sampled_from(["Allow", "Deny"]) | json_scalar},
    optional={
        "Sid": text,
        "Principal": principal,
        "NotPrincipal": principal,
        "Action": action | st.lists(action, max_size=3),
        "NotAction": action | st.lists(action, max_size=3),
        "Resource": resource | st.lists(resource, max_size=3),
        "NotResource": resource | st.lists(resource, max_size=3),
        "Condition": condition | json_value,
    },
)
policy_document = st.fixed_dictionaries(
    {"Statement": statement | st.lists(statement, max_size=3)},
    optional={"Version": st.sampled_from(["2012-10-17", "2008-10-17"]) | text, "Id": text},
)
context_value = st.none() | st.booleans() | st.integers() | st.floats() | text
request = st.builds(
    PolicyRequest,
    principal=st.none() | st.sampled_from(["k", "other"]) | text,
    action=st.sampled_from(sorted(S3_ACTIONS)) | text,
    resource=st.sampled_from([f"arn:aws:s3:::{BUCKET}", f"arn:aws:s3:::{BUCKET}/a/b"])
    | st.text(max_size=200).map(lambda k: f"arn:aws:s3:::{BUCKET}/{k}"),
    context=st.dictionaries(
        condition_key.map(str.lower),
        context_value
        | st.lists(text, max_size=3)
        | st.datetimes(timezones=st.just(UTC))
        | st.datetimes(),
        max_size=4,
    ),
)


@given(document=policy_document, requests=st.lists(request, min_size=1, max_size=3))
def test_near_valid_policies_parse_and_evaluate(document: dict, requests: list) -> None:
    parsed = _parse(json.dumps(document))
    if isinstance(parsed, Policy):
        for one in requests:
            assert evaluate(parsed, one) in Decision


def _reference(pattern: str, ignore_case: bool) -> re.Pattern[str]:
    """The former regex translation: correct, but exponential with many stars."""
    parts = (".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.compile("".join(parts), re.DOTALL | (re.IGNORECASE if ignore_case else 0))


@given(
    pattern=st.text(alphabet="*?abA/.", max_size=12).filter(lambda p: p.count("*") <= 4),
    candidate=st.text(alphabet="abAB/.?*", max_size=16),
    ignore_case=st.booleans(),
)
@example(pattern="a*b*a", candidate="aba", ignore_case=False)
@example(pattern="*a", candidate="", ignore_case=False)
@example(pattern="a*", candidate="A", ignore_case=True)
@example(pattern="??*??", candidate="abc", ignore_case=False)
def test_wildcard_matches_like_the_regex_translation(
    pattern: str, candidate: str, ignore_case: bool
) -> None:
    expected = _reference(pattern, ignore_case).fullmatch(candidate) is not None
    assert Wildcard(pattern, ignore_case).fullmatch(candidate) == expected


def _policy(statement: dict) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": [statement]})


def test_many_star_action_is_refused_without_backtracking() -> None:
    """Regression: `s3:` + 40 stars + `!` took hours to refuse (exponential regex)."""
    document = _policy(
        {"Effect": "Allow", "Principal": "*", "Action": "s3:" + "*" * 40 + "!",
         "Resource": f"arn:aws:s3:::{BUCKET}/*"}
    )  # fmt: skip
    with pytest.raises(PolicyError, match="invalid action"):
        _bounded(lambda: parse_policy(document, BUCKET))


def test_many_star_resource_and_condition_evaluate_without_backtracking() -> None:
    """Regression: every request against such a policy stalled the event loop."""
    stars = "*a" * 60 + "*b"
    document = _policy(
        {
            "Effect": "Deny",
            "Principal": "*",
            "Action": "s3:" + "*" * 40,
            "Resource": f"arn:aws:s3:::{BUCKET}/{stars}",
            "Condition": {"StringLike": {"s3:prefix": stars}},
        }
    )
    policy = parse_policy(document, BUCKET)
    request = PolicyRequest(
        None,
        "s3:GetObject",
        f"arn:aws:s3:::{BUCKET}/" + "a" * 1000,
        {"s3:prefix": "a" * 1000, "aws:currenttime": datetime.now(UTC)},
    )
    assert _bounded(lambda: evaluate(policy, request)) is Decision.DEFAULT
    prefix = "a" * 60 + "b"
    matching = PolicyRequest(None, "s3:GetObject", request.resource + "b", {"s3:prefix": prefix})
    assert _bounded(lambda: evaluate(policy, matching)) is Decision.DENY


@given(pattern=star_soup, candidate=st.text(alphabet="ab/", max_size=300))
def test_wildcard_is_total_on_star_soup(pattern: str, candidate: str) -> None:
    assert Wildcard(pattern, False).fullmatch(candidate) in (True, False)
    assert set(pattern) <= set(string.printable)


def test_a_parsed_policy_compiles_its_patterns_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """Evaluating a parsed policy (app/authz.py caches them) compiles nothing: a shared
    cache of patterns thrashes once buckets' policies hold more than it can keep, and then
    every request recompiled every pattern."""
    resources = [f"arn:aws:s3:::{BUCKET}/{i}*" for i in range(500)]
    statement = {"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject"}
    policy = parse_policy(_policy({**statement, "Resource": resources}), BUCKET)
    request = PolicyRequest(None, "s3:GetObject", f"arn:aws:s3:::{BUCKET}/nowhere")
    assert evaluate(policy, request) is Decision.DEFAULT
    built: list[str] = []

    class Counting(Wildcard):
        def __init__(self, pattern: str, ignore_case: bool) -> None:
            built.append(pattern)
            super().__init__(pattern, ignore_case)

    monkeypatch.setattr("shoal.auth.policy.Wildcard", Counting)
    assert evaluate(policy, request) is Decision.DEFAULT
    assert evaluate(policy, PolicyRequest("k", "s3:GetObject", resources[-1][:-1] + "x")) is (
        Decision.ALLOW
    )
    assert built == []
