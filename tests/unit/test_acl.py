"""ACL logic (auth/acl.py), accounts (auth/accounts.py) and what makes a policy public
(auth/publicpolicy.py): pure functions, no server."""

from __future__ import annotations

import json
from xml.etree.ElementTree import fromstring

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shoal.auth.accounts import ANONYMOUS_ID, Accounts, AccountSpec, canonical_id
from shoal.auth.acl import (
    ALL_USERS,
    AUTHENTICATED_USERS,
    CANNED,
    FULL_CONTROL,
    LOG_DELIVERY,
    PERMISSIONS,
    READ,
    READ_ACP,
    WRITE,
    AclError,
    canned_acl,
    grants_outside,
    header_grants,
    is_public,
    permits,
    policy_grants,
    request_acl,
)
from shoal.auth.policy import parse_policy
from shoal.auth.publicpolicy import is_public_policy
from shoal.storage.backend import Grant

ACCOUNTS = Accounts.build(
    [
        AccountSpec("AKIDOWNER", "Owner", "owner@example.com"),
        AccountSpec("AKIDOTHER", None, "Other@Example.com"),
        AccountSpec("AKIDADMIN", admin=True),
    ]
)
OWNER, OTHER = canonical_id("AKIDOWNER"), canonical_id("AKIDOTHER")


# ------------------------------------------------------------------------- accounts


def test_canonical_ids_are_stable_64_hex_and_distinct() -> None:
    assert canonical_id("AKIDOWNER") == canonical_id("AKIDOWNER")
    assert len(OWNER) == 64 and int(OWNER, 16) >= 0
    assert OWNER != OTHER


def test_accounts() -> None:
    owner = ACCOUNTS.by_key("AKIDOWNER")
    assert owner is not None and owner.display_name == "Owner" and not owner.admin
    other = ACCOUNTS.by_id(OTHER)
    assert other is not None and other.display_name == "AKIDOTHER"  # default: the key
    assert ACCOUNTS.by_email("other@EXAMPLE.com") is other
    assert ACCOUNTS.by_key(None) is None and ACCOUNTS.by_key("nobody") is None
    assert ACCOUNTS.owner_id("") == OWNER  # buckets from before owners: the first
    assert ACCOUNTS.owner_id(OTHER) == OTHER
    assert ACCOUNTS.display_name(ANONYMOUS_ID) == ""
    admin = ACCOUNTS.by_key("AKIDADMIN")
    assert admin is not None and admin.admin


def test_a_lone_credential_is_admin() -> None:
    (only,) = Accounts.build([AccountSpec("ONLY")]).accounts
    assert only.admin
    assert not any(a.admin for a in Accounts.build([AccountSpec("A"), AccountSpec("B")]).accounts)


# ---------------------------------------------------------------------- canned ACLs


@pytest.mark.parametrize(
    ("name", "extra"),
    [
        ("private", []),
        ("public-read", [Grant(ALL_USERS, READ, True)]),
        ("public-read-write", [Grant(ALL_USERS, READ, True), Grant(ALL_USERS, WRITE, True)]),
        ("authenticated-read", [Grant(AUTHENTICATED_USERS, READ, True)]),
        ("log-delivery-write", [Grant(LOG_DELIVERY, WRITE, True),
                                Grant(LOG_DELIVERY, READ_ACP, True)]),
        ("bucket-owner-read", [Grant(OWNER, READ)]),
        ("bucket-owner-full-control", [Grant(OWNER, FULL_CONTROL)]),
    ],
)  # fmt: skip
def test_canned_acls_on_objects(name: str, extra: list[Grant]) -> None:
    assert canned_acl(name, OTHER, OWNER, bucket=False) == (Grant(OTHER, FULL_CONTROL), *extra)


def test_bucket_owner_acls_add_nothing_on_buckets_or_for_the_owner() -> None:
    for name in ("bucket-owner-read", "bucket-owner-full-control"):
        assert canned_acl(name, OWNER, OWNER, bucket=True) == (Grant(OWNER, FULL_CONTROL),)
        assert canned_acl(name, OWNER, OWNER, bucket=False) == (Grant(OWNER, FULL_CONTROL),)


def test_unknown_canned_acl() -> None:
    with pytest.raises(AclError) as info:
        canned_acl("world", OWNER, OWNER, bucket=True)
    assert info.value.code == "InvalidArgument"


# ------------------------------------------------------------------- grant headers


def test_grant_headers() -> None:
    headers = {
        "x-amz-grant-read": f'id="{OTHER}", uri="{ALL_USERS}"',
        "x-amz-grant-write-acp": "emailAddress=owner@example.com",
        "x-amz-grant-full-control": f"id={OWNER}",
    }
    assert header_grants(headers, ACCOUNTS) == (
        Grant(OTHER, READ),
        Grant(ALL_USERS, READ, True),
        Grant(OWNER, "WRITE_ACP"),
        Grant(OWNER, FULL_CONTROL),
    )
    assert header_grants({}, ACCOUNTS) is None


@pytest.mark.parametrize(
    ("value", "code"),
    [
        ('id="abc"', "InvalidArgument"),
        (f'id="{canonical_id("nobody")}"', "InvalidArgument"),
        ('emailAddress="nobody@example.com"', "UnresolvableGrantByEmailAddress"),
        ('uri="http://acs.amazonaws.com/groups/global/Nobody"', "InvalidArgument"),
        ('name="x"', "InvalidArgument"),
        ("garbage", "InvalidArgument"),
    ],
)
def test_bad_grantees(value: str, code: str) -> None:
    with pytest.raises(AclError) as info:
        header_grants({"x-amz-grant-read": value}, ACCOUNTS)
    assert info.value.code == code


def test_canned_and_grants_together_are_refused() -> None:
    headers = {"x-amz-acl": "private", "x-amz-grant-read": f'id="{OTHER}"'}
    with pytest.raises(AclError) as info:
        request_acl(headers, ACCOUNTS, OWNER, OWNER, bucket=True)
    assert info.value.code == "InvalidRequest"
    assert request_acl({}, ACCOUNTS, OWNER, OWNER, bucket=True) is None


GRANTEES = st.sampled_from(
    [
        ("id", OWNER, Grant(OWNER, READ)),
        ("id", OTHER, Grant(OTHER, READ)),
        ("emailAddress", "owner@example.com", Grant(OWNER, READ)),
        ("uri", ALL_USERS, Grant(ALL_USERS, READ, True)),
        ("uri", AUTHENTICATED_USERS, Grant(AUTHENTICATED_USERS, READ, True)),
    ]
)


SEPARATORS = st.sampled_from([",", ", ", " , "])


@given(st.lists(st.tuples(GRANTEES, st.booleans(), SEPARATORS), min_size=1, max_size=6))
def test_grant_header_lists_parse_whatever_their_spacing_and_quotes(items: list) -> None:
    parts = []
    for (kind, value, _), quoted, _sep in items:
        parts.append(f'{kind}="{value}"' if quoted else f"{kind}={value}")
    text = "".join(p + (items[i][2] if i < len(parts) - 1 else "") for i, p in enumerate(parts))
    wanted = tuple(dict.fromkeys(grant for (_, _, grant), _, _ in items))
    assert header_grants({"x-amz-grant-read": text}, ACCOUNTS) == wanted


# ----------------------------------------------------------- AccessControlPolicy XML

XSI = 'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"'


def _policy(*grants: str, owner: str = f"<Owner><ID>{OWNER}</ID></Owner>") -> str:
    return (
        f"<AccessControlPolicy>{owner}<AccessControlList>{''.join(grants)}"
        "</AccessControlList></AccessControlPolicy>"
    )


def _grant(kind: str, inner: str, permission: str = "READ") -> str:
    return f'<Grant><Grantee {XSI} xsi:type="{kind}">{inner}</Grantee><Permission>{permission}</Permission></Grant>'  # noqa: E501


def test_policy_document() -> None:
    text = _policy(
        _grant("CanonicalUser", f"<ID>{OWNER}</ID><DisplayName>x</DisplayName>", FULL_CONTROL),
        _grant("AmazonCustomerByEmail", "<EmailAddress>other@example.com</EmailAddress>"),
        _grant("Group", f"<URI>{ALL_USERS}</URI>", READ_ACP),
    )
    assert policy_grants(fromstring(text), ACCOUNTS) == (
        Grant(OWNER, FULL_CONTROL),
        Grant(OTHER, READ),
        Grant(ALL_USERS, READ_ACP, True),
    )
    assert policy_grants(fromstring(_policy()), ACCOUNTS) == ()


@pytest.mark.parametrize(
    "text",
    [
        "<Other/>",
        "<AccessControlPolicy/>",
        _policy(_grant("CanonicalUser", f"<ID>{OWNER}</ID>", "EVERYTHING")),
        _policy(_grant("Nobody", f"<ID>{OWNER}</ID>")),
        _policy(_grant("CanonicalUser", "<URI>x</URI>")),
        _policy(f"<Grant><Grantee><ID>{OWNER}</ID></Grantee><Permission>READ</Permission></Grant>"),
        _policy("<NotAGrant/>"),
        _policy(owner="<Owner></Owner>"),
        _policy(*[_grant("Group", f"<URI>{ALL_USERS}</URI>", p) for p in PERMISSIONS] * 21),
    ],
)
def test_malformed_policies(text: str) -> None:
    with pytest.raises(AclError) as info:
        policy_grants(fromstring(text), ACCOUNTS)
    assert info.value.code == "MalformedACLError"


# ------------------------------------------------------------------------ evaluation

REQUESTERS = st.sampled_from([None, OWNER, OTHER])
GRANTS = st.lists(
    st.builds(
        Grant,
        st.sampled_from([OWNER, OTHER, ALL_USERS, AUTHENTICATED_USERS, LOG_DELIVERY]),
        st.sampled_from(PERMISSIONS),
    ).map(lambda g: Grant(g.grantee, g.permission, g.grantee.startswith("http"))),
    max_size=6,
)


@given(GRANTS, REQUESTERS, st.sampled_from(PERMISSIONS), st.booleans())
def test_permits_matches_the_definition(
    grants: list[Grant], requester: str | None, permission: str, ignore: bool
) -> None:
    def covers(g: Grant) -> bool:
        if g.permission not in (permission, FULL_CONTROL):
            return False
        if not g.group:
            return g.grantee == requester
        if ignore:
            return False
        return g.grantee == ALL_USERS or (
            g.grantee == AUTHENTICATED_USERS and requester is not None
        )

    assert permits(grants, requester, permission, ignore_public=ignore) == any(map(covers, grants))


@given(GRANTS, REQUESTERS, st.sampled_from(PERMISSIONS))
def test_ignoring_public_grants_never_widens(
    grants: list[Grant], requester: str | None, permission: str
) -> None:
    if permits(grants, requester, permission, ignore_public=True):
        assert permits(grants, requester, permission, ignore_public=False)
    if not is_public(grants):
        assert permits(grants, requester, permission, ignore_public=True) == permits(
            grants, requester, permission, ignore_public=False
        )


def test_public_and_outside() -> None:
    for name in CANNED:
        grants = canned_acl(name, OWNER, OTHER, bucket=False)
        assert is_public(grants) == (
            name in ("public-read", "public-read-write", "authenticated-read")
        )
    assert not grants_outside((Grant(OWNER, FULL_CONTROL),), OWNER)
    assert grants_outside((Grant(OTHER, READ),), OWNER)


# ------------------------------------------------------------------- public policies


def _bucket_policy(statement: dict) -> object:
    base = {"Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::b/*"}
    return parse_policy(json.dumps({"Version": "2012-10-17", "Statement": [base | statement]}), "b")


@pytest.mark.parametrize(
    ("statement", "public"),
    [
        ({"Principal": "*"}, True),
        ({"Principal": {"AWS": "*"}}, True),
        ({"Principal": {"AWS": "arn:aws:iam::000000000000:user/K"}}, False),
        ({"Principal": "*", "Effect": "Deny"}, False),
        ({"NotPrincipal": {"AWS": "000000000000"}}, True),
        ({"Principal": "*", "Condition": {"IpAddress": {"aws:SourceIp": "10.0.0.0/8"}}}, False),
        ({"Principal": "*", "Condition": {"IpAddress": {"aws:SourceIp": "0.0.0.0/0"}}}, True),
        ({"Principal": "*", "Condition": {"NotIpAddress": {"aws:SourceIp": "10.0.0.0/8"}}}, True),
        ({"Principal": "*",
          "Condition": {"StringEquals": {"aws:SourceAccount": "111122223333"}}}, False),
        ({"Principal": "*", "Condition": {"StringLike": {"aws:SourceVpce": "vpce-*"}}}, True),
        ({"Principal": "*", "Condition": {"StringEquals": {"aws:UserAgent": "x"}}}, True),
        ({"Principal": "*", "Condition": {"StringEquals": {"aws:userid": "AROLEID:*"}}}, True),
    ],
)  # fmt: skip
def test_public_policies(statement: dict, public: bool) -> None:
    assert is_public_policy(_bucket_policy(statement)) is public  # type: ignore[arg-type]
    assert not is_public_policy(None)
