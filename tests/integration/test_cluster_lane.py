"""The bulk lane between real shoal node processes on 127.0.0.1: shards travel over it,
a node without it still serves (its peers fall back to QUIC), and nobody without the
cluster secret gets a request served through it. Which path carried the shards is read
from each node's /-/cluster status (the transport's counters), never from timing."""

from __future__ import annotations

import asyncio
import os
import socket
from pathlib import Path
from typing import Any

import pytest

from shoal.cluster import frames, lane
from shoal.cluster.frames import Kind
from shoal.cluster.lane import FrameConnection, LaneError
from tests.integration.test_cluster import Node, make_nodes, running

pytestmark = pytest.mark.slow


def paths(node: Node) -> dict[str, dict[str, Any]]:
    """Per peer QUIC address: the lane's state and the bulk calls by path."""
    return node.status()["transport"]["peers"]


def put_and_read_back(nodes: list[Node], bucket: str) -> bytes:
    a, b = nodes[0], nodes[1]
    a.s3().create_bucket(Bucket=bucket)
    body = os.urandom(6 * 1024 * 1024 + 17)
    a.s3().put_object(Bucket=bucket, Key="big", Body=body)
    assert b.s3().get_object(Bucket=bucket, Key="big")["Body"].read() == body
    return body


def test_shards_travel_over_the_lane(tmp_path: Path) -> None:
    nodes = make_nodes(tmp_path, 3, 2)
    with running(nodes):
        body = put_and_read_back(nodes, "lane")
        a, b, c = nodes
        for peer in (b, c):
            counts = paths(a)[f"127.0.0.1:{peer.quic_port}"]
            assert counts["lane"] == "open"
            assert counts["lane_calls"] > 0 and counts["quic_calls"] == 0
        # 4+2 over 3 nodes of 2 drives: 4 of the 6 shards (len(body) bytes) are remote.
        sent = sum(paths(a)[f"127.0.0.1:{p.quic_port}"]["lane_bytes"] for p in (b, c))
        assert sent >= len(body) // 2


def test_a_node_without_a_lane_is_reached_over_quic(tmp_path: Path) -> None:
    """node2's TCP port (the QUIC port number) is taken: it runs without a lane and its
    peers send it shards over QUIC, while node0 and node1 still use theirs."""
    nodes = make_nodes(tmp_path, 3, 2)
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", nodes[2].quic_port))
    blocker.listen()
    with blocker, running(nodes):
        put_and_read_back(nodes, "fallback")
        a, b, c = nodes
        to_c = paths(a)[f"127.0.0.1:{c.quic_port}"]
        assert to_c["lane"] == "none" and to_c["lane_calls"] == 0 and to_c["quic_calls"] > 0
        to_b = paths(a)[f"127.0.0.1:{b.quic_port}"]
        assert to_b["lane_calls"] > 0 and to_b["quic_calls"] == 0
        assert c.status()["transport"]["lane_port"] is None
        assert a.status()["transport"]["lane_port"] == a.quic_port


async def _unproven_request(port: int) -> tuple[Any, bool]:
    """Ask a node's lane for a drive's format without proving the secret: the answer,
    and whether the node then closed the connection."""
    loop = asyncio.get_running_loop()
    _, conn = await loop.create_connection(
        lambda: FrameConnection((Kind.RESPONSE, Kind.ERROR)),
        "127.0.0.1",
        port,
        ssl=lane.client_context(),
    )
    args = {"method": "drive.read_format", "args": {"drive": "any"}}
    await conn.write_frame(frames.encode_head(Kind.REQUEST, args, 0), b"")
    answer = await asyncio.wait_for(conn.read_frame(), 10)
    try:
        await asyncio.wait_for(conn.read_frame(), 10)
    except LaneError:
        return answer, True
    return answer, False


def test_nobody_without_the_secret_is_served_through_the_lane(tmp_path: Path) -> None:
    nodes = make_nodes(tmp_path, 3, 2)
    with running(nodes):
        answer, closed = asyncio.run(_unproven_request(nodes[0].quic_port))
        assert answer.kind is Kind.ERROR and answer.header["code"] == "AccessDenied"
        assert closed
        put_and_read_back(nodes, "still")  # the nodes' own lanes are unaffected
