"""Bucket settings as documents (auth/bucketauth.py) and the request bodies that set
them (app/handlers/ownership.py, app/handlers/publicaccess.py): pure, no server."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shoal.app.errors import MalformedXML
from shoal.app.handlers.ownership import parse_ownership
from shoal.app.handlers.publicaccess import parse_public_access_block
from shoal.auth.acl import ALL_USERS, FULL_CONTROL, PERMISSIONS
from shoal.auth.bucketauth import (
    ENFORCED,
    OWNERSHIP_RULES,
    PUBLIC_ACCESS_FIELDS,
    BucketAuth,
    PublicAccessBlock,
    acl_document,
    acl_from_document,
    ownership_from_document,
    public_access_document,
    public_access_from_document,
)
from shoal.storage.backend import Grant

OWNER = "a" * 64

GRANTS = st.lists(
    st.one_of(
        st.builds(Grant, st.sampled_from([OWNER, "b" * 64]), st.sampled_from(PERMISSIONS)),
        st.builds(Grant, st.just(ALL_USERS), st.sampled_from(PERMISSIONS), st.just(True)),
    ),
    max_size=8,
).map(tuple)


@given(GRANTS)
def test_acl_documents_round_trip(grants: tuple[Grant, ...]) -> None:
    assert acl_from_document(acl_document(grants), OWNER) == grants


def test_no_acl_document_is_private() -> None:
    assert acl_from_document(None, OWNER) == (Grant(OWNER, FULL_CONTROL),)


@given(st.booleans(), st.booleans(), st.booleans(), st.booleans())
def test_public_access_documents_round_trip(a: bool, b: bool, c: bool, d: bool) -> None:
    block = PublicAccessBlock(a, b, c, d)
    assert public_access_from_document(public_access_document(block)) == block
    assert public_access_from_document(None) is None


def test_ownership_documents() -> None:
    for rule in OWNERSHIP_RULES:
        assert ownership_from_document(rule) == rule
    assert ownership_from_document(None) == ""
    assert ownership_from_document("Nonsense") == ""
    assert BucketAuth(OWNER, ()).acls_enabled
    assert not BucketAuth(OWNER, (), ENFORCED).acls_enabled


def _ownership(value: str, rules: int = 1) -> bytes:
    rule = f"<Rule><ObjectOwnership>{value}</ObjectOwnership></Rule>" * rules
    return f'<OwnershipControls xmlns="http://s3.amazonaws.com/doc/2006-03-01/">{rule}</OwnershipControls>'.encode()


def test_parse_ownership() -> None:
    for rule in OWNERSHIP_RULES:
        assert parse_ownership(_ownership(rule)) == rule
    for body in (_ownership("Nobody"), _ownership(ENFORCED, 0), _ownership(ENFORCED, 2),
                 b"<Other/>", b"not xml"):  # fmt: skip
        with pytest.raises(MalformedXML):
            parse_ownership(body)


@given(st.dictionaries(st.sampled_from([tag for tag, _ in PUBLIC_ACCESS_FIELDS]), st.booleans()))
def test_parse_public_access_block(values: dict[str, bool]) -> None:
    inner = "".join(f"<{k}>{'true' if v else 'FALSE'}</{k}>" for k, v in values.items())
    block = parse_public_access_block(
        f"<PublicAccessBlockConfiguration>{inner}</PublicAccessBlockConfiguration>".encode()
    )
    names = dict(PUBLIC_ACCESS_FIELDS)
    wanted = PublicAccessBlock(**{names[k]: v for k, v in values.items()})
    assert block == wanted


@pytest.mark.parametrize(
    "body",
    [
        b"<PublicAccessBlockConfiguration><BlockPublicAcls>yes</BlockPublicAcls>"
        b"</PublicAccessBlockConfiguration>",
        b"<PublicAccessBlockConfiguration><Other>true</Other></PublicAccessBlockConfiguration>",
        b"<PublicAccessBlockConfiguration><BlockPublicAcls>true</BlockPublicAcls>"
        b"<BlockPublicAcls>true</BlockPublicAcls></PublicAccessBlockConfiguration>",
        b"<Nope/>",
    ],
)
def test_malformed_public_access_blocks(body: bytes) -> None:
    with pytest.raises(MalformedXML):
        parse_public_access_block(body)
