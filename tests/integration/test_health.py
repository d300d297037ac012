"""Health endpoints: /-/live, /-/ready and /-/version answer anyone (GET and HEAD), even
with auth on, while the rest of the management API stays admin-only; readiness follows
the erasure sets' drives and, in a cluster, whether this node hears from a majority."""

from __future__ import annotations

import platform
import signal
import time
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from shoal.app import SyncServer
from tests.integration.conftest import auth_config, erasure_config, signed_client
from tests.integration.test_cluster import Node, make_nodes

HEALTH = ("/-/live", "/-/ready", "/-/version")


@pytest.fixture
def secured() -> Iterator[SyncServer]:
    with SyncServer({**auth_config(("admin", "admin-secret"))}) as server:
        yield server


def test_health_answers_without_credentials(secured: SyncServer) -> None:
    url = secured.endpoint_url
    for path in HEALTH:
        got = httpx.get(url + path, timeout=30)
        assert got.status_code == 200, (path, got.text)
        assert got.headers["content-type"] == "application/json"
        assert got.headers["cache-control"] == "no-store" and "x-amz-request-id" in got.headers
        head = httpx.head(url + path, timeout=30)
        assert head.status_code == 200 and head.content == b""
    assert httpx.get(url + "/-/live", timeout=30).json() == {"status": "live"}
    assert httpx.get(url + "/-/ready", timeout=30).json() == {"status": "ready"}
    assert httpx.get(url + "/-/version", timeout=30).json() == {
        "version": version("shoal"),
        "python": platform.python_version(),
        "mode": "standalone",
    }


def test_only_health_is_public(secured: SyncServer) -> None:
    url = secured.endpoint_url
    cluster = httpx.get(url + "/-/cluster", timeout=30)
    assert cluster.status_code == 403 and b"<Code>AccessDenied</Code>" in cluster.content
    assert httpx.get(url + "/-/heal", timeout=30).status_code == 403
    assert httpx.get(url + "/", timeout=30).status_code == 403  # S3 itself: signed only
    refused = httpx.post(url + "/-/ready", timeout=30)
    assert refused.status_code == 405 and b"MethodNotAllowed" in refused.content
    desc = secured.get_storage_descriptor()
    assert signed_client(desc.endpoint_url, "admin", "admin-secret").list_buckets()["Buckets"] == []


def ready(url: str) -> httpx.Response:
    return httpx.get(url + "/-/ready", timeout=30)


def wait_ready(url: str, status: int, what: str = "", timeout: float = 30) -> dict[str, Any]:
    """Poll /-/ready until it answers `status` (with `what` in its reason)."""
    deadline = time.monotonic() + timeout
    while True:
        got = ready(url)
        if got.status_code == status and what in got.json().get("reason", ""):
            return dict(got.json())
        assert time.monotonic() < deadline, (got.status_code, got.text)
        time.sleep(0.1)


def test_readiness_follows_the_drives_of_an_erasure_node(tmp_path: Path) -> None:
    settings = erasure_config(tmp_path / "drives")
    settings["cluster"]["drives"] = {**settings["cluster"]["drives"], "probe_interval_ms": 200}
    drives = [Path(p) for p in settings["cluster"]["drives"]["paths"]]
    with SyncServer(settings) as server:
        url = server.endpoint_url
        assert ready(url).json() == {"status": "ready"}
        assert httpx.get(url + "/-/version", timeout=30).json()["mode"] == "erasure"
        httpx.put(url + "/health", timeout=30).raise_for_status()
        # Two of six drives unmounted: 4 left, fewer than k+1 = 5. Each is taken offline
        # once calls on it keep failing; readiness follows.
        for drive in drives[:2]:
            (drive / ".smartstorage").rename(drive / ".smartstorage.away")
        deadline = time.monotonic() + 30
        while ready(url).status_code == 200:
            assert time.monotonic() < deadline
            httpx.put(url + "/health/probe", content=b"x", timeout=30)
        reason = ready(url).json()
        assert reason["status"] == "unavailable"
        assert reason["reason"] == "erasure set 0 has 4 of 6 drives online, needs 5"
        assert ready_gauge(url) == 0.0
        for drive in drives[:2]:
            (drive / ".smartstorage.away").rename(drive / ".smartstorage")
        assert wait_ready(url, 200) == {"status": "ready"}  # the probe brings them back
        assert ready_gauge(url) == 1.0


def ready_gauge(url: str) -> float:
    """shoal_ready from /metrics: it says what /-/ready says."""
    text = httpx.get(url + "/metrics", timeout=30).text
    (family,) = [f for f in text_string_to_metric_families(text) if f.name == "shoal_ready"]
    return float(family.samples[0].value)


@pytest.mark.slow
def test_readiness_in_a_cluster_needs_quorum(tmp_path: Path) -> None:
    """Three nodes of two drives, 4+2: one node down leaves 4 drives, fewer than k+1;
    two down leave a node that hears from 1 of 3. Both back: ready again."""
    nodes: list[Node] = make_nodes(tmp_path, 3, 2)
    try:
        for node in nodes:
            node.start()
        for node in nodes:
            node.wait_ready()
        a, b, c = nodes
        for node in nodes:
            wait_ready(node.endpoint, 200)
        c.kill(signal.SIGKILL)
        wait_ready(a.endpoint, 503, "erasure set 0 has 4 of 6 drives online, needs 5")
        b.kill(signal.SIGKILL)
        got = wait_ready(a.endpoint, 503, "hears from 1 of 3 nodes, needs a majority")
        assert "erasure set 0 has 2 of 6 drives online" in got["reason"]
        for node in (b, c):
            node.start()
        for node in (b, c):
            node.wait_ready()
        for node in nodes:
            wait_ready(node.endpoint, 200, timeout=60)
    finally:
        for node in nodes:
            node.stop()
