"""Every node of a cluster must hold the same kms keyring: real node processes with
differing keyrings refuse to form, join or rejoin, saying so without any key material;
with equal keyrings they form."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from tests.integration.conftest import wait_for
from tests.integration.test_cluster import Node, joiner, make_nodes, running

pytestmark = pytest.mark.slow

RING_A = {"key-1": bytes(range(32)), "key-2": bytes(range(50, 82))}
RING_B = {"key-1": bytes(range(1, 33)), "key-2": bytes(range(50, 82))}  # key-1 differs
REFUSAL = "kms keyring differs from the cluster's"


def with_keyring(node: Node, ring: dict[str, bytes]) -> None:
    """Append `[[kms.keys]]` tables to the node's config (replacing earlier ones)."""
    text = node.config.read_text().split("\n# kms\n")[0]
    tables = [
        f'[[kms.keys]]\nid = "{key_id}"\nsecret = "{base64.b64encode(secret).decode()}"\n'
        for key_id, secret in ring.items()
    ]
    node.config.write_text(text + "\n# kms\n" + "\n".join(tables))


def stderr(node: Node) -> str:
    return (node.directory / "stderr.log").read_text(errors="replace")


def refused(node: Node) -> str:
    """Wait for `node` to exit on its own, non-zero; what it logged."""
    assert node.proc is not None
    node.proc.wait(timeout=60)
    assert node.proc.returncode != 0, stderr(node)
    return stderr(node)


def assert_no_key_material(text: str) -> None:
    for ring in (RING_A, RING_B):
        for secret in ring.values():
            assert base64.b64encode(secret).decode() not in text
            assert secret.hex() not in text


def test_nodes_with_different_keyrings_refuse_to_form(tmp_path: Path) -> None:
    """No node forms while one seed's keyring differs; each says why. Restarted with
    the same keyring, the odd node completes the cluster."""
    nodes = make_nodes(tmp_path, 3, 2, create_drives=False)
    for node, ring in zip(nodes, (RING_A, RING_A, RING_B), strict=True):
        with_keyring(node, ring)
    try:
        for node in nodes:
            node.start()
        for node in nodes:
            wait_for(f"{node.name} logs the refusal", lambda n=node: REFUSAL in stderr(n), 60)
        for node in nodes:
            assert node.proc is not None and node.proc.poll() is None, stderr(node)
            assert not (node.directory / "state" / ".cluster" / "view.json").exists()
            assert not list(node.directory.glob("drive*/.smartstorage/format.json"))
            assert_no_key_material(stderr(node))
        assert "node node2 at" in stderr(nodes[0])  # names the odd node

        odd = nodes[2]
        odd.stop()
        with_keyring(odd, RING_A)
        odd.start()
        for node in nodes:
            node.wait_ready()
        names = {n["node_id"] for n in nodes[0].status()["nodes"]}
        assert names == {"node0", "node1", "node2"}
    finally:
        for node in nodes:
            node.stop()


def test_equal_keyrings_form_and_a_differing_node_cannot_join_or_rejoin(
    tmp_path: Path,
) -> None:
    nodes = make_nodes(tmp_path, 3, 2, create_drives=False)
    for node in nodes:
        with_keyring(node, RING_A)
    with running(nodes):
        a, _, c = nodes
        assert {n["node_id"] for n in a.status()["nodes"]} == {"node0", "node1", "node2"}

        stranger = joiner(tmp_path, "node9", 6, seed=a)
        with_keyring(stranger, RING_B)
        stranger.start()
        try:
            log = refused(stranger)
            assert REFUSAL in log, log
            assert_no_key_material(log)
        finally:
            stranger.stop()
        assert {n["node_id"] for n in a.status()["nodes"]} == {"node0", "node1", "node2"}
        assert not list(stranger.directory.glob("drive*/.smartstorage/format.json"))

        # A member restarted with another keyring (its view saved) refuses to rejoin;
        # given the cluster's keyring again, it serves.
        a.s3().create_bucket(Bucket="agreed")
        a.s3().put_object(Bucket="agreed", Key="k", Body=b"same keys everywhere")
        c.stop()
        with_keyring(c, {"key-1": RING_A["key-1"]})  # a key dropped
        c.start()
        log = refused(c)
        assert REFUSAL in log, log
        assert_no_key_material(log)
        with_keyring(c, RING_A)
        c.start()
        c.wait_ready()
        wait_for(
            "node2 sees every drive online",
            lambda: all(d["state"] == "online" for s in c.status()["sets"] for d in s),
        )
        body = c.s3().get_object(Bucket="agreed", Key="k")["Body"].read()
        assert body == b"same keys everywhere"
