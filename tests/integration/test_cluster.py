"""Several real shoal node processes on 127.0.0.1 forming one erasure-coded cluster over
QUIC: any node serves any request, and node failures are survived within the erasure
code's tolerance."""

from __future__ import annotations

import contextlib
import os
import random
import select
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from botocore.exceptions import ClientError

from shoal.auth.signer import signed_headers
from shoal.storage.keys import OBJECT_MARKER
from tests.integration.conftest import error_code, multipart_put, signed_client, wait_for

pytestmark = pytest.mark.slow

SECRET = "cluster-test-secret"
KEY, SECRET_KEY = "admin", "admin-secret"


def free_udp_port() -> int:
    """A free UDP port below the kernel's ephemeral range (32768 and up), so that no
    socket bound to port 0 elsewhere (other tests' QUIC clients) takes it before the
    node binds it."""
    while True:
        port = random.randrange(20000, 32768)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port


@dataclass
class Node:
    name: str
    directory: Path
    quic_port: int
    config: Path
    proc: subprocess.Popen[str] | None = None
    endpoint: str = ""

    def start(self) -> None:
        argv = [sys.executable, "-m", "shoal", "serve", "--address", "127.0.0.1"]
        argv += ["--port", "0", "--dir", str(self.directory / "state"), "--log-level", "error"]
        argv += ["--config", str(self.config)]
        with open(self.directory / "stderr.log", "ab") as errors:
            self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=errors, text=True)

    def wait_ready(self, timeout: float = 120) -> None:
        """Until the node serves (its cluster formed); a node that dies or hangs fails
        the test with what it logged instead of blocking it."""
        assert self.proc is not None and self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        line = self.proc.stdout.readline() if ready else ""
        if "listening on" not in line:
            log = (self.directory / "stderr.log").read_text(errors="replace")[-3000:]
            raise AssertionError(f"{self.name} is not serving ({line!r}); it logged:\n{log}")
        self.endpoint = line.strip().rsplit(" ", 1)[1]

    def s3(self) -> Any:
        return signed_client(self.endpoint, KEY, SECRET_KEY)

    def status(self) -> dict[str, Any]:
        host = self.endpoint.split("://", 1)[1]
        headers = signed_headers("GET", "/-/cluster", host, KEY, SECRET_KEY, "us-east-1")
        return httpx.get(self.endpoint + "/-/cluster", headers=headers, timeout=10).json()

    def kill(self, sig: int = signal.SIGKILL) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)
        if sig == signal.SIGKILL:
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def make_nodes(
    tmp_path: Path, count: int, drives: int, *, secret: str = SECRET, create_drives: bool = True
) -> list[Node]:
    """`count` nodes of `drives` drive folders each (`create_drives=False`: folders
    that do not exist yet, which a fresh node creates)."""
    ports = [free_udp_port() for _ in range(count)]
    nodes = []
    for i in range(count):
        directory = tmp_path / f"node{i}"
        directory.mkdir(parents=True)
        paths = []
        for d in range(drives):
            if create_drives:
                (directory / f"drive{d}").mkdir()
            paths.append(str(directory / f"drive{d}"))
        seeds = [f"127.0.0.1:{p}" for j, p in enumerate(ports) if j != i]
        config = directory / "shoal.toml"
        config.write_text(
            f"""
[auth]
enabled = true
credentials = [{{ access_key_id = "{KEY}", secret_access_key = "{SECRET_KEY}" }}]

[cluster]
enabled = true
node_id = "node{i}"
quic_port = {ports[i]}
seed_nodes = {seeds!r}
secret = "{secret}"
heartbeat_interval_ms = 200
heartbeat_timeout_ms = 2000

[cluster.drives]
paths = {paths!r}
timeout_ms = 3000
probe_interval_ms = 300

[cluster.erasure]
chunk_size_bytes = 262144
""".replace("'", '"')
        )
        nodes.append(Node(f"node{i}", directory, ports[i], config))
    return nodes


@contextlib.contextmanager
def running(nodes: list[Node]) -> Iterator[list[Node]]:
    """Start every node (together: a cluster forms once all seeds answer), wait until
    each serves; stop them all on the way out."""
    try:
        for node in nodes:
            node.start()
        for node in nodes:
            node.wait_ready()
        yield nodes
    finally:
        for node in nodes:
            node.stop()


@pytest.fixture
def three(tmp_path: Path) -> Iterator[list[Node]]:
    # A fresh cluster's nodes create their drive folders (absent until the first start).
    nodes = make_nodes(tmp_path, 3, 2, create_drives=False)
    with running(nodes):
        yield nodes


def test_write_on_one_node_read_on_the_others(three: list[Node]) -> None:
    a, b, c = three
    a.s3().create_bucket(Bucket="shared")
    body = os.urandom(1_000_000)
    a.s3().put_object(Bucket="shared", Key="dir/obj", Body=body, Metadata={"who": "a"})
    for node in (b, c):
        got = node.s3().get_object(Bucket="shared", Key="dir/obj")
        assert got["Body"].read() == body
        assert got["Metadata"] == {"who": "a"}
        ranged = node.s3().get_object(Bucket="shared", Key="dir/obj", Range="bytes=300000-700000")
        assert ranged["Body"].read() == body[300000:700001]
    big = os.urandom(5 * 1024 * 1024 + 1234)
    multipart_put(b.s3(), "shared", "mp", [big[: 5 * 1024 * 1024], big[5 * 1024 * 1024 :]])
    assert c.s3().get_object(Bucket="shared", Key="mp")["Body"].read() == big
    listed = [o["Key"] for o in c.s3().list_objects_v2(Bucket="shared")["Contents"]]
    assert listed == ["dir/obj", "mp"]
    assert [x["Name"] for x in b.s3().list_buckets()["Buckets"]] == ["shared"]
    # Every node's drives hold shards: the set spans all three.
    for node in three:
        assert list(node.directory.glob("drive*/.smartstorage/data/shared/dir/obj*/*/chunk-0"))
    status = a.status()
    assert {n["node_id"] for n in status["nodes"]} == {"node0", "node1", "node2"}
    # Each node's heartbeats carry its drives' space, named as the others name them.
    wait_for(
        "every node reported its drives' space",
        lambda: all(len(x["drives"]) == 2 for x in a.status()["nodes"]),  # 2 drives each
    )
    status = a.status()
    remote = {d["name"] for members in status["sets"] for d in members if ":" in d["name"]}
    reported = {name for x in status["nodes"] if not x["self"] for name in x["drives"]}
    assert reported == remote
    for x in status["nodes"]:
        for space in x["drives"].values():
            assert 0 < space["free_bytes"] <= space["total_bytes"], x
    c.s3().delete_object(Bucket="shared", Key="dir/obj")
    with pytest.raises(ClientError) as info:
        a.s3().head_object(Bucket="shared", Key="dir/obj")
    assert error_code(info.value) == "404"


def test_a_killed_node_leaves_reads_working_and_refuses_writes(three: list[Node]) -> None:
    a, b, c = three
    a.s3().create_bucket(Bucket="survive")
    objects = {f"k{i}": os.urandom(100_000 * (i + 1)) for i in range(4)}
    for key, body in objects.items():
        a.s3().put_object(Bucket="survive", Key=key, Body=body)
    c.kill()
    for key, body in objects.items():
        assert b.s3().get_object(Bucket="survive", Key=key)["Body"].read() == body
    # 4+2 over 3 nodes of 2 drives: one node down leaves 4 drives, fewer than k+1.
    with pytest.raises(ClientError) as info:
        a.s3().put_object(Bucket="survive", Key="new", Body=b"x" * 1000)
    assert error_code(info.value) == "ServiceUnavailable"
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        states = {n["node_id"]: n["state"] for n in a.status()["nodes"]}
        if states["node2"] == "offline":
            break
        time.sleep(0.2)
    assert states["node2"] == "offline"


def test_a_node_without_the_secret_is_refused(tmp_path: Path, three: list[Node]) -> None:
    a = three[0]
    a.s3().create_bucket(Bucket="guarded")
    a.s3().put_object(Bucket="guarded", Key="k", Body=b"secret data")
    (intruder,) = make_nodes(tmp_path / "intruder", 1, 6, secret="wrong")
    text = intruder.config.read_text()
    text = text.replace("seed_nodes = []", f'seed_nodes = ["127.0.0.1:{a.quic_port}"]')
    intruder.config.write_text(text)
    intruder.start()
    try:
        # Refused by the seed, it never learns the cluster: it neither formats its
        # drives nor starts serving, and the cluster does not list it.
        time.sleep(3)
        assert intruder.proc is not None
        assert not list(intruder.directory.glob("drive*/.smartstorage/format.json"))
        assert {n["node_id"] for n in a.status()["nodes"]} == {"node0", "node1", "node2"}
        assert a.s3().get_object(Bucket="guarded", Key="k")["Body"].read() == b"secret data"
    finally:
        intruder.stop()


def heal(node: Node) -> dict[str, Any]:
    host = node.endpoint.split("://", 1)[1]
    headers = signed_headers("POST", "/-/heal", host, KEY, SECRET_KEY, "us-east-1")
    reply = httpx.post(node.endpoint + "/-/heal", headers=headers, timeout=120)
    assert reply.status_code == 200, reply.text
    return reply.json()


def test_six_nodes_survive_one_and_heal_it_back(tmp_path: Path) -> None:
    nodes = make_nodes(tmp_path, 6, 1)
    with running(nodes):
        first, victim = nodes[0], nodes[5]
        first.s3().create_bucket(Bucket="six")
        before = {f"old{i}": os.urandom(300_000 + i) for i in range(3)}
        for key, body in before.items():
            first.s3().put_object(Bucket="six", Key=key, Body=body)
        victim.kill()
        # 4+2 over six single-drive nodes: five drives left are enough for both.
        during = {f"new{i}": os.urandom(400_000 + i) for i in range(3)}
        for key, body in during.items():
            nodes[1].s3().put_object(Bucket="six", Key=key, Body=body)
        for key, body in {**before, **during}.items():
            assert nodes[2].s3().get_object(Bucket="six", Key=key)["Body"].read() == body
        victim.start()
        victim.wait_ready()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            drives = [d for members in first.status()["sets"] for d in members]
            if all(d["state"] == "online" for d in drives):
                break
            time.sleep(0.3)
        # Its return starts a healing scan by itself (on node0, the smallest id alive).
        report: dict[str, Any] = {}
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            report = first.status()["healing"]["last_scan"] or {}
            if report.get("shards_healed", 0) >= len(during):  # the writes it missed
                break
            time.sleep(0.3)
        assert report["unrecoverable"] == [] and report["errors"] == []
        assert report["shards_healed"] >= len(during)
        again = heal(first)
        assert again["shards_missing"] == 0 and again["records_healed"] == 0
        # Full redundancy again: two other nodes may now go.
        nodes[1].kill()
        nodes[2].kill()
        for key, body in {**before, **during}.items():
            assert victim.s3().get_object(Bucket="six", Key=key)["Body"].read() == body


def test_a_hung_node_costs_at_most_the_rpc_timeout(three: list[Node]) -> None:
    a, b, c = three
    a.s3().create_bucket(Bucket="hung")
    body = os.urandom(700_000)
    a.s3().put_object(Bucket="hung", Key="k", Body=body)
    c.kill(signal.SIGSTOP)  # alive to the kernel, sockets open, never answers
    try:
        started = time.monotonic()
        assert b.s3().get_object(Bucket="hung", Key="k")["Body"].read() == body
        with pytest.raises(ClientError) as info:
            a.s3().put_object(Bucket="hung", Key="other", Body=b"y" * 1000)
        assert error_code(info.value) == "ServiceUnavailable"
        # Drive calls time out after cluster.drives.timeout_ms (3 s here).
        assert time.monotonic() - started < 15
    finally:
        c.kill(signal.SIGCONT)
    assert a.s3().get_object(Bucket="hung", Key="k")["Body"].read() == body


def joiner(tmp_path: Path, name: str, drives: int, seed: Node) -> Node:
    """A node not in the cluster's view, with `seed` as its only seed."""
    (node,) = make_nodes(tmp_path / name, 1, drives)
    text = node.config.read_text().replace('node_id = "node0"', f'node_id = "{name}"')
    text = text.replace("seed_nodes = []", f'seed_nodes = ["127.0.0.1:{seed.quic_port}"]')
    node.config.write_text(text)
    node.name = name
    return node


def keys_on(node: Node, bucket: str) -> set[str]:
    """Keys with records on `node`'s drives (a small object's shards are in its record)."""
    suffix = OBJECT_MARKER + ".metadata.json"
    found = node.directory.glob(f"drive*/.smartstorage/data/{bucket}/*{suffix}")
    return {p.name.removesuffix(suffix) for p in found}


def test_a_new_node_joins_and_takes_new_writes(tmp_path: Path, three: list[Node]) -> None:
    a, b, c = three
    a.s3().create_bucket(Bucket="grow")
    before = {f"old{i:02}": os.urandom(20_000 + i) for i in range(16)}
    for key, body in before.items():
        a.s3().put_object(Bucket="grow", Key=key, Body=body)
    mp_key = "old-multipart"
    upload = b.s3().create_multipart_upload(Bucket="grow", Key=mp_key)["UploadId"]
    part1 = os.urandom(5 * 1024 * 1024)
    etag1 = b.s3().upload_part(
        Bucket="grow", Key=mp_key, UploadId=upload, PartNumber=1, Body=part1
    )["ETag"]

    # Six drives of its own: one new 4+2 set, a pool of its own (nothing moves).
    new = joiner(tmp_path, "node3", 6, seed=b)  # b forwards to node0, which decides
    new.start()
    try:
        new.wait_ready()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            views = [n.status() for n in (a, b, c, new)]
            if all(
                {x["node_id"]: x["state"] for x in v["nodes"]}.get("node3") in ("alive", None)
                and len(v["pools"]) == 2
                for v in views
            ) and all(len(v["nodes"]) == 4 for v in views):
                break
            time.sleep(0.3)
        for view in views:
            assert view["pools"] == [1, 1] and view["view_version"] == 2
            assert {x["node_id"] for x in view["nodes"]} == {"node0", "node1", "node2", "node3"}
        assert keys_on(new, "grow") == set()  # existing data was not moved

        # Old objects read through every node, the new one included.
        for node in (a, b, c, new):
            for key, body in before.items():
                assert node.s3().get_object(Bucket="grow", Key=key)["Body"].read() == body
        # New keys spread over both pools: some land on the new node's drives.
        after = {f"new{i:02}": os.urandom(30_000 + i) for i in range(24)}
        for i, (key, body) in enumerate(after.items()):
            (new, c)[i % 2].s3().put_object(Bucket="grow", Key=key, Body=body)
        on_new = keys_on(new, "grow")
        assert on_new and on_new < set(after), on_new
        for node in (a, new):
            for key, body in after.items():
                assert node.s3().get_object(Bucket="grow", Key=key)["Body"].read() == body
        # An existing key overwritten through the new node stays in its pool.
        a_key = next(iter(before))
        new.s3().put_object(Bucket="grow", Key=a_key, Body=b"rewritten")
        assert c.s3().get_object(Bucket="grow", Key=a_key)["Body"].read() == b"rewritten"
        assert a_key not in keys_on(new, "grow")
        gone = next(iter(on_new))
        a.s3().delete_object(Bucket="grow", Key=gone)
        with pytest.raises(ClientError) as info:
            new.s3().head_object(Bucket="grow", Key=gone)
        assert error_code(info.value) == "404"
        # The upload begun before the join completes after it, through the new node.
        etag2 = new.s3().upload_part(
            Bucket="grow", Key=mp_key, UploadId=upload, PartNumber=2, Body=b"tail"
        )["ETag"]
        new.s3().complete_multipart_upload(
            Bucket="grow",
            Key=mp_key,
            UploadId=upload,
            MultipartUpload={
                "Parts": [{"PartNumber": 1, "ETag": etag1}, {"PartNumber": 2, "ETag": etag2}]
            },
        )
        assert a.s3().get_object(Bucket="grow", Key=mp_key)["Body"].read() == part1 + b"tail"
        multipart_put(new.s3(), "grow", "new-multipart", [part1, b"end"])
        assert b.s3().get_object(Bucket="grow", Key="new-multipart")["Body"].read() == (
            part1 + b"end"
        )
        # Every key listed once, through any node.
        expected = sorted({*before, *after, mp_key, "new-multipart"} - {gone})
        for node in (b, new):
            pages = node.s3().get_paginator("list_objects_v2").paginate(Bucket="grow", MaxKeys=7)
            assert [o["Key"] for p in pages for o in p.get("Contents", [])] == expected

        # Restarted, the new node rejoins from its saved view, its seed down.
        b.kill()
        new.stop()
        new.start()
        new.wait_ready()
        assert new.s3().get_object(Bucket="grow", Key=a_key)["Body"].read() == b"rewritten"
    finally:
        new.stop()


def test_a_node_that_cannot_form_a_set_is_refused(tmp_path: Path, three: list[Node]) -> None:
    a = three[0]
    odd = joiner(tmp_path, "node9", 4, seed=a)  # 4 drives cannot form a 4+2 set
    odd.start()
    try:
        assert odd.proc is not None
        odd.proc.wait(timeout=30)
        assert odd.proc.returncode != 0
        assert {n["node_id"] for n in a.status()["nodes"]} == {"node0", "node1", "node2"}
        assert not list(odd.directory.glob("drive*/.smartstorage/format.json"))
    finally:
        odd.stop()


@pytest.mark.parametrize("lost_view", [False, True], ids=["saved-view", "lost-view"])
def test_a_node_back_at_another_address_is_reached_there(
    three: list[Node], lost_view: bool
) -> None:
    """A node that comes back on another QUIC port (with its saved view, or having lost
    it) tells the cluster; the view records its new address and its drives are reached
    there."""
    a, _, c = three
    a.s3().create_bucket(Bucket="moved")
    a.s3().put_object(Bucket="moved", Key="before", Body=b"1" * 300_000)
    c.stop()
    if lost_view:
        (c.directory / "state" / ".cluster" / "view.json").unlink()
    new_port = free_udp_port()
    text = c.config.read_text().replace(f"quic_port = {c.quic_port}", f"quic_port = {new_port}")
    c.config.write_text(text)
    c.quic_port = new_port
    c.start()
    c.wait_ready()
    # 4+2 over three nodes of two drives: a write needs c's drives (k+1 = 5 of 6).
    deadline = time.monotonic() + 20
    while True:
        try:
            a.s3().put_object(Bucket="moved", Key="after", Body=b"2" * 300_000)
            break
        except ClientError:
            assert time.monotonic() < deadline, "c's drives not reached at its new address"
            time.sleep(0.3)
    for node in three:
        status = node.status()
        assert status["view_version"] == 2
        (mine,) = [n for n in status["nodes"] if n["node_id"] == "node2"]
        assert mine["address"] == f"127.0.0.1:{new_port}"
    assert c.s3().get_object(Bucket="moved", Key="before")["Body"].read() == b"1" * 300_000
    assert len(list(c.directory.glob("drive*/.smartstorage/data/moved/after*/*/chunk-0"))) == 2
