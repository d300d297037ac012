"""Several real shoal node processes on 127.0.0.1 forming one erasure-coded cluster over
QUIC: any node serves any request, and node failures are survived within the erasure
code's tolerance."""

from __future__ import annotations

import os
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

from auth.signer import signed_headers
from tests.integration.conftest import error_code, multipart_put, signed_client

pytestmark = pytest.mark.slow

SECRET = "cluster-test-secret"
KEY, SECRET_KEY = "admin", "admin-secret"


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Node:
    name: str
    directory: Path
    quic_port: int
    config: Path
    proc: subprocess.Popen[str] | None = None
    endpoint: str = ""

    def start(self) -> None:
        argv = [sys.executable, "-m", "app.cli", "serve", "--address", "127.0.0.1"]
        argv += ["--port", "0", "--dir", str(self.directory / "state"), "--log-level", "error"]
        argv += ["--config", str(self.config)]
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)

    def wait_ready(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        line = self.proc.stdout.readline()
        assert "listening on" in line, f"{self.name}: {line!r}"
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


def make_nodes(tmp_path: Path, count: int, drives: int, *, secret: str = SECRET) -> list[Node]:
    ports = [free_udp_port() for _ in range(count)]
    nodes = []
    for i in range(count):
        directory = tmp_path / f"node{i}"
        paths = []
        for d in range(drives):
            (directory / f"drive{d}").mkdir(parents=True)
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


@pytest.fixture
def three(tmp_path: Path) -> Iterator[list[Node]]:
    nodes = make_nodes(tmp_path, 3, 2)
    try:
        for node in nodes:
            node.start()
        for node in nodes:
            node.wait_ready()
        yield nodes
    finally:
        for node in nodes:
            node.stop()


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
    try:
        for node in nodes:
            node.start()
        for node in nodes:
            node.wait_ready()
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
        report = heal(first)
        assert report["unrecoverable"] == [] and report["errors"] == []
        assert report["shards_healed"] >= len(during)  # the writes it missed
        again = heal(first)
        assert again["shards_missing"] == 0 and again["records_healed"] == 0
        # Full redundancy again: two other nodes may now go.
        nodes[1].kill()
        nodes[2].kill()
        for key, body in {**before, **during}.items():
            assert victim.s3().get_object(Bucket="six", Key=key)["Body"].read() == body
    finally:
        for node in nodes:
            node.stop()


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
