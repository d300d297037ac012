"""Runtime accounts across a real 3-node cluster and on one erasure-coded node: a key
made through one node signs on every node, and disabling or revoking through any node
is in force on every node (app/runtimeaccounts.py: each node polls the replicated
generation record). The records are replicated with the bucket records' quorum
(storage/erasure/accounts.py) and written mode 0600 on every drive."""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from shoal.app.adminclient import AdminClient
from tests.integration.conftest import erasure_config, error_code, signed_client, wait_for
from tests.integration.serving import Proc
from tests.integration.test_cluster import KEY, SECRET_KEY, Node, make_nodes, running

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def three(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Node]]:
    nodes = make_nodes(tmp_path_factory.mktemp("cluster-accounts"), 3, 2, create_drives=False)
    with running(nodes):
        yield nodes


def admin(node: Node) -> AdminClient:
    return AdminClient(node.endpoint, KEY, SECRET_KEY)


def signs(endpoint: str, key: dict[str, Any]) -> bool:
    """Whether `key` is accepted (False once refused as an unknown key)."""
    try:
        signed_client(endpoint, key["access_key"], key["secret_key"]).list_buckets()
    except Exception as exc:
        if error_code(exc) != "InvalidAccessKeyId":
            raise
        return False
    return True


def test_a_key_made_on_one_node_works_on_every_node(three: list[Node]) -> None:
    a, b, c = three
    admin(a).add_user("alice")
    key = admin(a).create_key("alice")
    for node in three:
        wait_for(f"the key signs on {node.name}", lambda n=node: signs(n.endpoint, key))
    s3b = signed_client(b.endpoint, key["access_key"], key["secret_key"])
    s3b.create_bucket(Bucket="alice-cluster")
    s3b.put_object(Bucket="alice-cluster", Key="k", Body=b"v")
    s3c = signed_client(c.endpoint, key["access_key"], key["secret_key"])
    assert s3c.get_object(Bucket="alice-cluster", Key="k")["Body"].read() == b"v"
    assert "alice" in {u["name"] for u in admin(c).users()}
    assert admin(c).user("alice")["keys"][0]["access_key"] == key["access_key"]


def test_disabling_and_revoking_through_any_node_hold_on_every_node(three: list[Node]) -> None:
    a, b, c = three
    admin(a).add_user("bob")
    key = admin(a).create_key("bob")
    for node in three:
        wait_for(f"the key signs on {node.name}", lambda n=node: signs(n.endpoint, key))
    admin(b).set_enabled("bob", False)
    for node in three:
        wait_for(f"refused on {node.name}", lambda n=node: not signs(n.endpoint, key))
    admin(c).set_enabled("bob", True)
    for node in three:
        wait_for(f"signs again on {node.name}", lambda n=node: signs(n.endpoint, key))
    admin(c).revoke_key(key["access_key"])
    for node in three:
        wait_for(f"revoked on {node.name}", lambda n=node: not signs(n.endpoint, key))


def test_identity_policies_reach_every_node(three: list[Node]) -> None:
    a, b, _ = three
    admin(b).add_user("carol")
    key = admin(b).create_key("carol")
    deny = {"Effect": "Deny", "Action": "s3:ListAllMyBuckets", "Resource": "*"}
    admin(a).attach_policy("carol", "deny", json.dumps({"Statement": [deny]}))

    def listing_refused(node: Node) -> bool:
        try:
            signed_client(node.endpoint, key["access_key"], key["secret_key"]).list_buckets()
        except Exception as exc:
            return error_code(exc) == "AccessDenied"
        return False

    for node in three:
        wait_for(f"the policy holds on {node.name}", lambda n=node: listing_refused(n))


def test_a_node_that_was_down_learns_of_a_revocation(tmp_path: Path) -> None:
    nodes = make_nodes(tmp_path, 3, 2, create_drives=False)
    with running(nodes):
        a, b, c = nodes
        admin(a).add_user("erin")
        key = admin(a).create_key("erin")
        kept = admin(a).create_key("erin")
        wait_for("the key signs on node2", lambda: signs(c.endpoint, key))
        c.stop()
        admin(b).revoke_key(key["access_key"])  # a write quorum: 4 of the 6 drives
        late = admin(b).create_key("erin")
        c.start()
        c.wait_ready()
        wait_for("node2 back with the change", lambda: signs(c.endpoint, late))
        assert not signs(c.endpoint, key)
        assert signs(c.endpoint, kept)


def test_records_are_mode_0600_on_every_drive(three: list[Node]) -> None:
    admin(three[0]).add_user("frank")  # a record of its own (the test runs in any order)
    admin(three[0]).create_key("frank")
    records = [p for n in three for p in n.directory.rglob("system/accounts/frank.json")]
    assert len(records) >= 5  # on at least a write quorum (k + 1) of the 6 drives
    for node in three:
        for path in node.directory.rglob("system/accounts/*.json"):
            assert stat.S_IMODE(os.stat(path).st_mode) == 0o600, path
            assert SECRET_KEY not in path.read_text()  # config accounts are never stored


def test_one_erasure_node_keeps_accounts_across_a_restart(tmp_path: Path) -> None:
    settings: dict[str, Any] = {
        "auth": {
            "enabled": True,
            "credentials": [{"access_key_id": KEY, "secret_access_key": SECRET_KEY}],
        },
        **erasure_config(tmp_path / "drives", drives=4, data_shards=2, parity_shards=2),
    }
    proc = Proc(tmp_path, settings=settings)
    try:
        client = AdminClient(proc.url, KEY, SECRET_KEY)
        client.add_user("dave")
        key = client.create_key("dave")
        gone = client.create_key("dave")
        client.revoke_key(gone["access_key"])
        assert signs(proc.url, key) and not signs(proc.url, gone)
    finally:
        assert proc.stop() == 0
    proc = Proc(tmp_path, settings=settings)
    try:
        assert signs(proc.url, key) and not signs(proc.url, gone)
        records = list((tmp_path / "drives").rglob("system/accounts/dave.json"))
        assert len(records) == 4
        for path in records:
            assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        assert key["secret_key"] not in proc.stderr()
    finally:
        proc.stop()
