"""The check made before a DeleteObjects body is read (app/authz.py could_allow): an
anonymous caller gets past it only when some Allow statement could name it for
s3:DeleteObject; it must never refuse a caller some key would admit."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shoal.app.authz import could_allow
from shoal.auth import ANONYMOUS
from shoal.auth.policy import PolicyRequest, evaluate, is_allowed, parse_policy

BUCKET = "b"


def policy(*statements: dict) -> object:
    return parse_policy(
        json.dumps({"Version": "2012-10-17", "Statement": list(statements)}), BUCKET
    )


def allow(**fields: object) -> dict:
    resource = {} if "NotResource" in fields else {"Resource": f"arn:aws:s3:::{BUCKET}/*"}
    return {"Effect": "Allow", **resource, **fields}


@pytest.mark.parametrize(
    ("statements", "anonymous_may_try"),
    [
        ([], False),
        ([allow(Principal="*", Action="s3:DeleteObject")], True),
        ([allow(Principal={"AWS": "*"}, Action="s3:Delete*")], True),
        ([allow(Principal="*", Action="s3:*", Resource=f"arn:aws:s3:::{BUCKET}/public/*")], True),
        (
            [
                allow(
                    Principal="*",
                    Action="s3:DeleteObject",
                    Condition={"IpAddress": {"aws:SourceIp": "10.0.0.0/8"}},
                )
            ],
            True,
        ),
        ([allow(Principal="*", NotAction="s3:GetObject")], True),
        ([allow(Principal="*", Action="s3:GetObject")], False),
        ([allow(Principal="*", NotAction="s3:DeleteObject")], False),
        ([allow(Principal={"AWS": "arn:aws:iam::000000000000:user/AKIDUSER"}, Action="*")], False),
        ([allow(NotPrincipal={"AWS": "000000000000"}, Action="s3:DeleteObject")], True),
        ([{**allow(Principal="*", Action="s3:DeleteObject"), "Effect": "Deny"}], False),
    ],
)
def test_anonymous_deleters_need_a_statement_that_could_allow_them(
    statements: list[dict], anonymous_may_try: bool
) -> None:
    parsed = policy(*statements) if statements else None
    assert could_allow(parsed, ANONYMOUS, "s3:DeleteObject") is anonymous_may_try


POOL = [
    allow(Principal="*", Action="s3:DeleteObject", Resource=f"arn:aws:s3:::{BUCKET}/public/*"),
    allow(Principal="*", Action="s3:Get*"),
    allow(Principal="*", NotAction="s3:PutObject", Resource=f"arn:aws:s3:::{BUCKET}/a?c"),
    allow(Principal="*", Action="s3:*", NotResource=f"arn:aws:s3:::{BUCKET}/private/*"),
    allow(
        Principal="*",
        Action="s3:DeleteObject",
        Condition={"StringLike": {"aws:SourceIp": "127.*"}},
    ),
    {**allow(Principal="*", Action="s3:DeleteObject"), "Effect": "Deny"},
    allow(Principal={"AWS": "000000000000"}, Action="*"),
]


@given(
    st.lists(st.sampled_from(POOL), min_size=1, max_size=4, unique_by=json.dumps),
    st.text(max_size=30),
    st.sampled_from([None, "127.0.0.1", "10.1.2.3"]),
)
def test_never_refuses_a_caller_some_key_admits(
    statements: list[dict], key: str, source_ip: str | None
) -> None:
    """Soundness: whenever the per-key check would allow a key, the early check passed."""
    parsed = policy(*statements)
    resource = f"arn:aws:s3:::{BUCKET}/{key}"
    request = PolicyRequest(None, "s3:DeleteObject", resource, {"aws:SourceIp": source_ip})
    if is_allowed(evaluate(parsed, request), authenticated=False):
        assert could_allow(parsed, ANONYMOUS, "s3:DeleteObject")
