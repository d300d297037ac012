"""Identity (user) policies of runtime accounts, evaluated with bucket policies by AWS's
rules (app/authz.py): an explicit Deny anywhere wins; in the caller's own bucket an Allow
from either side suffices; in another account's bucket both sides must allow. An
account without policies is the root of its own account (as configured ones are).

The gate runs over a real FileStore in a temporary directory; the runtime accounts are
the snapshot app/runtimeaccounts.py installs."""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shoal.app.authz import BucketSettings, PolicyGate
from shoal.app.runtimeaccounts import snapshot
from shoal.auth import Principal
from shoal.auth.accounts import Accounts, AccountSpec, runtime_canonical_id
from shoal.auth.policy import (
    Decision,
    PolicyError,
    PolicyRequest,
    evaluate,
    merge_policies,
    parse_identity_policy,
)
from shoal.storage.accounts import AccountRecord, KeyRecord
from shoal.storage.filestore import FileStore

ALICE_KEY = "SKALICE0000000000000"
T0 = datetime(2026, 1, 1, tzinfo=UTC)
GET, PUT = "s3:GetObject", "s3:PutObject"


def doc(*statements: dict) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


def stmt(effect: str, action: str, resource: str = "arn:aws:s3:::*") -> dict:
    return {"Effect": effect, "Action": action, "Resource": resource}


# -- parsing -------------------------------------------------------------------------


def test_identity_policies_name_no_principal() -> None:
    with pytest.raises(PolicyError, match="principal"):
        parse_identity_policy(doc({**stmt("Allow", GET), "Principal": "*"}))


@pytest.mark.parametrize("resource", ["*", "arn:aws:s3:::any-bucket/*", "arn:aws:s3:::x"])
def test_identity_policies_may_name_any_bucket(resource: str) -> None:
    policy = parse_identity_policy(doc(stmt("Allow", GET, resource)))
    assert policy.statements[0].principals == ("*",)


@pytest.mark.parametrize(
    "text",
    ["", "[]", "{", doc(stmt("Allow", "iam:CreateUser")), doc(stmt("Allow", GET, "x"))],
)
def test_bad_identity_policies_are_refused(text: str) -> None:
    with pytest.raises(PolicyError):
        parse_identity_policy(text)


# -- merging: a Deny in any attached policy wins --------------------------------------

ACTIONS = (GET, PUT, "s3:DeleteObject")
statement = st.tuples(st.sampled_from(["Allow", "Deny"]), st.sampled_from(ACTIONS))


@given(st.lists(st.lists(statement, min_size=1, max_size=3), max_size=4), st.sampled_from(ACTIONS))
def test_merged_policies_decide_as_any_deny_then_any_allow(
    policies: list[list[tuple[str, str]]], action: str
) -> None:
    parsed = [parse_identity_policy(doc(*(stmt(e, a) for e, a in p))) for p in policies]
    effects = {e for p in policies for e, a in p if a == action}
    expected = (
        Decision.DENY
        if "Deny" in effects
        else Decision.ALLOW
        if "Allow" in effects
        else Decision.DEFAULT
    )
    request = PolicyRequest(ALICE_KEY, action, "arn:aws:s3:::b/k")
    assert evaluate(merge_policies(parsed), request) is expected


# -- the gate: identity side x resource side x same or other account -----------------

IDENTITY = {  # what alice's own policies say of GetObject
    "none": None,  # no policies: the root of her account
    "allow": [stmt("Allow", GET)],
    "deny": [stmt("Deny", GET), stmt("Allow", "s3:*")],
    "silent": [stmt("Allow", PUT)],  # policies, none about GetObject
}
RESOURCE = ("allow", "deny", "none")  # what the bucket policy says of alice's GetObject


def bucket_policy(bucket: str, effect: str) -> str:
    principal = {"AWS": f"arn:aws:iam::000000000000:user/{ALICE_KEY}"}
    return doc(
        {**stmt(effect.capitalize(), GET, f"arn:aws:s3:::{bucket}/*"), "Principal": principal},
    )


def expected(identity: str, resource: str, own: bool) -> bool:
    """AWS's rule, written out."""
    if identity == "deny" or resource == "deny":
        return False
    identity_allows = identity in ("none", "allow")
    if own:
        return identity_allows or resource == "allow"
    return identity_allows and resource == "allow"


class World:
    """A FileStore with one bucket per (owner, bucket policy); alice's policies vary."""

    def __init__(self, root: Path) -> None:
        self.loop = asyncio.new_event_loop()
        self.store = FileStore(root)
        self.accounts = Accounts.build([AccountSpec("admin", admin=True), AccountSpec("bob")])
        self.gate = PolicyGate(BucketSettings(self.store, self.accounts))
        self.run(self.store.open())
        alice = runtime_canonical_id("alice")
        for owner, resource in itertools.product(("alice", "bob"), RESOURCE):
            bucket = f"{owner}-{resource}"
            owner_id = alice if owner == "alice" else self.accounts.by_key("bob").canonical_id
            self.run(self.store.create_bucket(bucket, owner=owner_id))
            if resource != "none":
                self.run(self.store.put_bucket_policy(bucket, bucket_policy(bucket, resource)))
        bob = self.accounts.by_key("bob").canonical_id
        self.run(self.store.create_bucket("bob-byname", owner=bob))
        by_name = {
            **stmt("Allow", GET, "arn:aws:s3:::bob-byname/*"),
            "Principal": {"AWS": "arn:aws:iam::000000000000:user/alice"},
        }
        self.run(self.store.put_bucket_policy("bob-byname", doc(by_name)))

    def run(self, coro: object) -> object:
        return self.loop.run_until_complete(coro)  # type: ignore[arg-type]

    def alice(self, policies: list[dict] | None, *, disabled: bool = False) -> None:
        attached = () if policies is None else (("p", doc(*policies)),)
        key = KeyRecord(ALICE_KEY, "secret", T0)
        record = AccountRecord("alice", T0, disabled=disabled, keys=(key,), policies=attached)
        self.accounts.install(snapshot((record,), self.accounts))

    def allows(self, action: str, bucket: str | None, key: str | None = "k") -> bool:
        principal = Principal(ALICE_KEY)
        return bool(self.run(self.gate.allows(principal, action, bucket, key)))

    def close(self) -> None:
        self.run(self.store.close())
        self.loop.close()


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    w = World(tmp_path_factory.mktemp("identity"))
    yield w
    w.close()


@pytest.mark.parametrize("own", [True, False], ids=["own-bucket", "cross-account"])
@pytest.mark.parametrize("resource", RESOURCE)
@pytest.mark.parametrize("identity", list(IDENTITY))
def test_identity_and_bucket_policies_combine_as_aws_does(
    world: World, identity: str, resource: str, own: bool
) -> None:
    world.alice(IDENTITY[identity])
    bucket = f"{'alice' if own else 'bob'}-{resource}"
    assert world.allows(GET, bucket) is expected(identity, resource, own)


def test_an_identity_deny_binds_even_in_her_own_bucket(world: World) -> None:
    world.alice([stmt("Deny", "s3:DeleteObject")])
    assert not world.allows("s3:DeleteObject", "alice-none")
    world.alice(None)
    assert world.allows("s3:DeleteObject", "alice-none")


def test_service_actions_follow_identity_policies(world: World) -> None:
    world.alice(None)
    assert world.allows("s3:ListAllMyBuckets", None, None)
    world.alice([stmt("Allow", GET)])
    assert not world.allows("s3:ListAllMyBuckets", None, None)
    world.alice([stmt("Allow", "s3:ListAllMyBuckets", "*")])
    assert world.allows("s3:ListAllMyBuckets", None, None)


def test_a_disabled_account_has_no_key(world: World) -> None:
    world.alice(None, disabled=True)
    assert world.accounts.runtime_secret(ALICE_KEY) is None
    assert world.accounts.by_key(ALICE_KEY) is None
    assert not world.allows(GET, "alice-none")
    # Still known by its canonical id: the owner of what it made.
    assert world.accounts.display_name(runtime_canonical_id("alice")) == "alice"
    world.alice(None)
    assert world.accounts.runtime_secret(ALICE_KEY) == "secret"


def test_a_configured_key_is_never_shadowed(world: World) -> None:
    record = AccountRecord("mallory", T0, keys=(KeyRecord("bob", "guess", T0),))
    world.accounts.install(snapshot((record,), world.accounts))
    assert world.accounts.runtime_secret("bob") is None
    assert world.accounts.by_key("bob").canonical_id != runtime_canonical_id("mallory")


def test_runtime_canonical_ids_differ_from_configured_ones() -> None:
    from shoal.auth.accounts import canonical_id

    assert runtime_canonical_id("alice") != canonical_id("alice")
    assert runtime_canonical_id("alice") == runtime_canonical_id("alice")


def test_a_bucket_policy_may_name_a_runtime_account_by_its_name(world: World) -> None:
    world.alice(None)
    assert world.allows(GET, "bob-byname")  # user/alice, whichever of her keys signs
    assert not world.allows(PUT, "bob-byname")
