"""Prometheus metrics of a real server, parsed with prometheus-client's own parser: each
family moves as boto3 and raw HTTP requests are made; the scrape's place (bare GET
/metrics beside a bucket named "metrics", /-/metrics, signed-only, a port of its own,
off); drives, healing and cluster families on erasure-coded nodes."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from botocore.exceptions import ClientError
from prometheus_client.parser import text_string_to_metric_families

from shoal.app import SyncServer
from shoal.auth.signer import signed_headers
from tests.integration.conftest import erasure_config, error_code, multipart_put, ssl_context

#: The families the deploy/ dashboard and alert rules use: present in every mode.
CONTRACT = [
    "shoal_requests",
    "shoal_request_duration_seconds",
    "shoal_received_bytes",
    "shoal_sent_bytes",
    "shoal_errors",
    "shoal_requests_in_flight",
    "shoal_bucket_objects",
    "shoal_bucket_bytes",
    "shoal_multipart_uploads_in_progress",
    "shoal_build_info",
    "shoal_ready",
    "shoal_node_up",
    "shoal_node_heartbeat_rtt_seconds",
    "shoal_drive_online",
    "shoal_drive_errors",
    "shoal_drive_free_bytes",
    "shoal_drive_total_bytes",
    "shoal_rpc_duration_seconds",
    "shoal_rpc_bytes",
    "shoal_heal_shards_healed",
    "shoal_heal_backlog",
    "shoal_heal_objects_scanned",
]


@dataclass
class Scrape:
    """One parsed exposition: family name -> type, and every sample's value."""

    types: dict[str, str]
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float]

    def value(self, name: str, **labels: str) -> float:
        """A sample's value; 0 for one not exposed (yet)."""
        return self.samples.get((name, frozenset(labels.items())), 0.0)

    def labelled(self, name: str) -> dict[frozenset[tuple[str, str]], float]:
        return {labels: v for (n, labels), v in self.samples.items() if n == name}


def parse(text: str) -> Scrape:
    types, samples = {}, {}
    for family in text_string_to_metric_families(text):
        types[family.name] = family.type
        for s in family.samples:
            samples[(s.name, frozenset(s.labels.items()))] = s.value
    return Scrape(types, samples)


def scrape(client: httpx.Client, path: str = "/metrics") -> Scrape:
    response = client.get(path)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return parse(response.text)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ---------------------------------------------------------------- the session's server


def test_every_family_is_exposed_on_both_paths(http: httpx.Client) -> None:
    for path in ("/metrics", "/-/metrics"):
        got = scrape(http, path)
        for name in CONTRACT:
            assert name in got.types, (path, name)
        assert got.types["shoal_request_duration_seconds"] == "histogram"
        assert got.types["shoal_requests"] == "counter"
        assert got.value("shoal_ready") == 1
        ((labels, value),) = got.labelled("shoal_build_info").items()
        assert dict(labels)["version"] and value == 1
    # Asked for OpenMetrics (as Prometheus does), it answers OpenMetrics.
    response = http.get("/metrics", headers={"accept": "application/openmetrics-text"})
    assert response.headers["content-type"].startswith("application/openmetrics-text")
    assert response.text.rstrip().endswith("# EOF")


def test_requests_are_counted_by_operation_and_status(
    http: httpx.Client, s3: Any, bucket: str
) -> None:
    before = scrape(http)
    s3.put_object(Bucket=bucket, Key="a", Body=b"12345")
    s3.put_object(Bucket=bucket, Key="b", Body=b"")
    s3.get_object(Bucket=bucket, Key="a")["Body"].read()
    s3.head_object(Bucket=bucket, Key="a")
    s3.list_objects_v2(Bucket=bucket)
    s3.delete_object(Bucket=bucket, Key="b")
    after = scrape(http)

    def delta(name: str, **labels: str) -> float:
        return after.value(name, **labels) - before.value(name, **labels)

    expected = [
        ("PutObject", "200", 2),
        ("GetObject", "200", 1),
        ("HeadObject", "200", 1),
        ("ListObjectsV2", "200", 1),
        ("DeleteObject", "204", 1),
    ]
    for operation, status, n in expected:
        assert delta("shoal_requests_total", operation=operation, status=status) == n
        assert delta("shoal_request_duration_seconds_count", operation=operation) == n
        assert delta("shoal_request_duration_seconds_sum", operation=operation) > 0
        bucket_inf = delta("shoal_request_duration_seconds_bucket", operation=operation, le="+Inf")
        assert bucket_inf == n
    # The scrape counts itself.
    assert delta("shoal_requests_total", operation="GetMetrics", status="200") == 1


def test_errors_are_counted_by_s3_code(http: httpx.Client, s3: Any, bucket: str) -> None:
    before = scrape(http)
    with pytest.raises(ClientError) as info:
        s3.get_object(Bucket=bucket, Key="missing")
    assert error_code(info.value) == "NoSuchKey"
    with pytest.raises(ClientError):
        s3.head_object(Bucket=bucket, Key="missing")  # HEAD: status only, still counted
    with pytest.raises(ClientError):
        s3.list_objects_v2(Bucket="no-such-bucket-for-metrics")
    assert http.get("/Bad_Bucket").status_code == 400  # refused before any operation
    after = scrape(http)

    def delta(name: str, **labels: str) -> float:
        return after.value(name, **labels) - before.value(name, **labels)

    assert delta("shoal_errors_total", operation="GetObject", code="NoSuchKey") == 1
    assert delta("shoal_requests_total", operation="GetObject", status="404") == 1
    assert delta("shoal_errors_total", operation="HeadObject", code="NoSuchKey") == 1
    assert delta("shoal_errors_total", operation="ListObjectsV2", code="NoSuchBucket") == 1
    assert delta("shoal_errors_total", operation="Unknown", code="InvalidBucketName") == 1
    assert delta("shoal_requests_total", operation="Unknown", status="400") == 1


def test_bytes_in_and_out_are_the_bodies(
    http: httpx.Client, s3: Any, s3_required: Any, bucket: str
) -> None:
    small, big = os.urandom(1000), os.urandom(3 * 1024 * 1024 + 5)
    before = scrape(http)
    s3_required.put_object(Bucket=bucket, Key="small", Body=small)  # a plain body
    s3_required.put_object(Bucket=bucket, Key="big", Body=big)
    mid = scrape(http)
    received = mid.value("shoal_received_bytes_total", operation="PutObject") - before.value(
        "shoal_received_bytes_total", operation="PutObject"
    )
    assert received == len(small) + len(big)

    assert s3.get_object(Bucket=bucket, Key="big")["Body"].read() == big  # streamed
    assert s3.get_object(Bucket=bucket, Key="small", Range="bytes=10-19")["Body"].read()
    after = scrape(http)
    sent = after.value("shoal_sent_bytes_total", operation="GetObject") - mid.value(
        "shoal_sent_bytes_total", operation="GetObject"
    )
    assert sent == len(big) + 10

    # aws-chunked uploads (boto3's default checksums) count their framing too: the
    # bytes on the wire.
    s3.put_object(Bucket=bucket, Key="framed", Body=small)
    last = scrape(http)
    framed = last.value("shoal_received_bytes_total", operation="PutObject") - after.value(
        "shoal_received_bytes_total", operation="PutObject"
    )
    assert framed >= len(small)


def test_bucket_gauges_follow_puts_overwrites_deletes_and_multipart(
    http: httpx.Client, s3: Any, bucket: str
) -> None:
    def figures() -> tuple[float, float, float]:
        got = scrape(http)
        return (
            got.value("shoal_bucket_objects", bucket=bucket),
            got.value("shoal_bucket_bytes", bucket=bucket),
            got.value("shoal_multipart_uploads_in_progress", bucket=bucket),
        )

    s3.put_object(Bucket=bucket, Key="one", Body=b"x" * 100)
    s3.put_object(Bucket=bucket, Key="two", Body=b"x" * 30)
    assert figures() == (2, 130, 0)
    s3.put_object(Bucket=bucket, Key="one", Body=b"x" * 10)  # overwrite: no double count
    assert figures() == (2, 40, 0)
    s3.copy_object(Bucket=bucket, Key="three", CopySource={"Bucket": bucket, "Key": "two"})
    assert figures() == (3, 70, 0)
    s3.delete_object(Bucket=bucket, Key="two")
    s3.delete_object(Bucket=bucket, Key="two")  # already gone: nothing changes
    assert figures() == (2, 40, 0)
    s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": "three"}, {"Key": "nope"}]})
    assert figures() == (1, 10, 0)

    upload = s3.create_multipart_upload(Bucket=bucket, Key="mp")["UploadId"]
    s3.create_multipart_upload(Bucket=bucket, Key="other")
    assert figures() == (1, 10, 2)
    s3.abort_multipart_upload(Bucket=bucket, Key="mp", UploadId=upload)
    assert figures() == (1, 10, 1)
    part = 5 * 1024 * 1024
    multipart_put(s3, bucket, "one", [b"a" * part, b"b" * 7])  # overwrites "one"
    assert figures() == (1, part + 7, 1)


def test_requests_in_flight(
    endpoint: str, http: httpx.Client, verify: str | bool, bucket: str
) -> None:
    """A PUT whose body is held back is in flight until its last byte arrives."""
    release = threading.Event()

    def body() -> Iterator[bytes]:
        yield b"first half"
        release.wait(30)
        yield b"second half"

    result: dict[str, int] = {}

    def upload() -> None:
        with httpx.Client(verify=ssl_context(verify), timeout=30) as client:
            response = client.put(
                f"{endpoint}/{bucket}/slow", content=body(), headers={"content-length": "21"}
            )
            result["status"] = response.status_code

    thread = threading.Thread(target=upload)
    thread.start()
    try:
        # The scrape itself is one request in flight; wait to see the upload's too.
        for _ in range(600):
            if scrape(http).value("shoal_requests_in_flight") >= 2:
                break
            time.sleep(0.05)
        else:
            pytest.fail("the held-back PUT never showed as in flight")
    finally:
        release.set()
        thread.join(30)
    assert result["status"] == 200
    assert scrape(http).value("shoal_requests_in_flight") == 1


def test_a_bucket_named_metrics_stays_usable(
    http: httpx.Client, endpoint: str, s3: Any, bucket: str
) -> None:
    """Only the bare GET /metrics is the scrape; every SDK call on a bucket named
    "metrics" carries a query string or a longer path."""
    s3.create_bucket(Bucket="metrics")
    try:
        s3.head_bucket(Bucket="metrics")
        s3.put_object(Bucket="metrics", Key="k", Body=b"data")
        assert s3.get_object(Bucket="metrics", Key="k")["Body"].read() == b"data"
        assert [o["Key"] for o in s3.list_objects_v2(Bucket="metrics")["Contents"]] == ["k"]
        assert [o["Key"] for o in s3.list_objects(Bucket="metrics")["Contents"]] == ["k"]
        assert s3.get_bucket_location(Bucket="metrics")["LocationConstraint"] is None
        assert "shoal_requests" in scrape(http).types  # the bare GET is still the scrape
        listing = http.get("/metrics?list-type=2")
        assert listing.status_code == 200 and "<Key>k</Key>" in listing.text
        # Virtual-hosted: GET /metrics is object "metrics" of the Host's bucket.
        s3.put_object(Bucket=bucket, Key="metrics", Body=b"an object")
        port = urlsplit(endpoint).port
        got = http.get("/metrics", headers={"host": f"{bucket}.localhost:{port}"})
        assert got.status_code == 200 and got.content == b"an object"
        s3.delete_object(Bucket="metrics", Key="k")
    finally:
        s3.delete_bucket(Bucket="metrics")


# ---------------------------------------------------------------- configurations


def test_metrics_can_require_a_signature(tmp_path: Path) -> None:
    config = {"metrics": {"auth": True}, "storage": {"directory": str(tmp_path)}}
    with SyncServer(config) as server, httpx.Client(base_url=server.endpoint_url) as client:
        d = server.get_storage_descriptor()
        host = f"{d.endpoint}:{d.port}"
        for path in ("/metrics", "/-/metrics"):
            refused = client.get(path)
            assert refused.status_code == 403
            assert "<Code>AccessDenied</Code>" in refused.text
            wrong = signed_headers("GET", path, host, d.access_key, "not-it", "us-east-1")
            assert client.get(path, headers=wrong).status_code == 403
            headers = signed_headers("GET", path, host, d.access_key, d.access_secret, "us-east-1")
            signed = client.get(path, headers=headers)
            assert signed.status_code == 200
            assert "shoal_requests_total" in signed.text
        # S3 itself is still open (auth.enabled is false): only scrapes need signing.
        assert client.put("/open-bucket").status_code == 200


def test_metrics_on_a_port_of_their_own(tmp_path: Path) -> None:
    port = free_port()
    config = {
        "metrics": {"port": port, "address": "127.0.0.1"},
        "storage": {"directory": str(tmp_path)},
    }
    with SyncServer(config) as server, httpx.Client(base_url=server.endpoint_url) as s3:
        assert s3.put("/some-bucket").status_code == 200
        with httpx.Client(base_url=f"http://127.0.0.1:{port}") as metrics:
            got = scrape(metrics)
            assert got.value("shoal_requests_total", operation="CreateBucket", status="200") == 1
            assert got.value("shoal_bucket_objects", bucket="some-bucket") == 0
        # On the S3 listener these are S3 requests again.
        bare = s3.get("/metrics")
        assert bare.status_code == 404 and "<Code>NoSuchBucket</Code>" in bare.text
        assert s3.get("/-/metrics").status_code == 404
    with pytest.raises(httpx.ConnectError):  # closed with the server
        httpx.get(f"http://127.0.0.1:{port}/metrics")


def test_metrics_can_be_turned_off(tmp_path: Path) -> None:
    config = {"metrics": {"enabled": False}, "storage": {"directory": str(tmp_path)}}
    with SyncServer(config) as server, httpx.Client(base_url=server.endpoint_url) as client:
        assert client.get("/metrics").status_code == 404  # NoSuchBucket
        assert client.put("/metrics").status_code == 200  # just a bucket name
        assert client.get("/metrics").status_code == 200
        assert "<ListBucketResult" in client.get("/metrics").text


def test_stored_objects_are_counted_at_start(tmp_path: Path) -> None:
    """A restarted server finds what the last one stored (the background count)."""
    config = {"storage": {"directory": str(tmp_path), "clean_slate": False}}
    with SyncServer(config) as server, httpx.Client(base_url=server.endpoint_url) as client:
        client.put("/kept")
        for i in range(3):
            client.put(f"/kept/k{i}", content=b"x" * (i + 1))
        client.post("/kept/pending?uploads")
    with SyncServer(config) as server, httpx.Client(base_url=server.endpoint_url) as client:
        for _ in range(600):
            got = scrape(client)
            figures = [
                got.value(name, bucket="kept")
                for name in (
                    "shoal_bucket_objects",
                    "shoal_bucket_bytes",
                    "shoal_multipart_uploads_in_progress",
                )
            ]
            if figures == [3, 6, 1]:
                break
            time.sleep(0.05)
        assert figures == [3, 6, 1]
        assert scrape(client).value("shoal_drive_total_bytes", drive="data") > 0


def test_erasure_node_exposes_drives_and_healing(tmp_path: Path) -> None:
    config = erasure_config(tmp_path / "drives") | {"storage": {"directory": str(tmp_path)}}
    with SyncServer(config) as server, httpx.Client(base_url=server.endpoint_url) as client:
        assert client.put("/healme").status_code == 200
        assert client.put("/healme/obj", content=os.urandom(200_000)).status_code == 200
        got = scrape(client)
        drives = {dict(labels)["drive"] for labels in got.labelled("shoal_drive_online")}
        assert len(drives) == 6
        assert set(got.labelled("shoal_drive_online").values()) == {1}
        assert set(got.labelled("shoal_drive_errors_total").values()) == {0}
        for drive in drives:
            assert got.value("shoal_drive_free_bytes", drive=drive) > 0
            assert got.value("shoal_drive_free_bytes", drive=drive) <= got.value(
                "shoal_drive_total_bytes", drive=drive
            )
        assert list(got.labelled("shoal_node_up").values()) == [1]
        assert got.value("shoal_heal_backlog") == 0
        healed = got.value("shoal_heal_shards_healed_total")
        scanned = got.value("shoal_heal_objects_scanned_total")

        shards = sorted(  # (200 kB: past the size whose shards stay in the record)
            (tmp_path / "drives").glob("drive*/.smartstorage/data/healme/obj*/*/chunk-0")
        )
        (lost,) = list(shards[0].glob("shard-*.dat"))
        lost.unlink()
        report = client.post("/-/heal", timeout=60).json()
        assert report["shards_healed"] >= 1
        after = scrape(client)
        assert after.value("shoal_heal_shards_healed_total") >= healed + 1
        assert after.value("shoal_heal_objects_scanned_total") >= scanned + 1
        assert after.value("shoal_bucket_objects", bucket="healme") == 1
        assert after.value("shoal_bucket_bytes", bucket="healme") == 200_000


@pytest.mark.slow
def test_several_workers_add_up_in_multiprocess_mode(tmp_path: Path) -> None:
    """uvicorn --workers 2 with PROMETHEUS_MULTIPROC_DIR: whichever worker answers a
    scrape, it reports every worker's requests, and the bucket figures are their sum
    (what was stored before, counted once, plus each worker's writes)."""
    data, shared = tmp_path / "data", tmp_path / "prometheus"
    shared.mkdir()
    config = {"storage": {"directory": str(data), "clean_slate": False}}
    with SyncServer(config) as server, httpx.Client(base_url=server.endpoint_url) as client:
        client.put("/shared")
        for i in range(3):
            client.put(f"/shared/before{i}", content=b"12345")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("SHOAL_")}
    env |= {"PROMETHEUS_MULTIPROC_DIR": str(shared), "SHOAL_STORAGE__DIRECTORY": str(data)}
    argv = [sys.executable, "-m", "uvicorn", "shoal:create_app", "--factory", "--workers", "2"]
    argv += ["--host", "127.0.0.1", "--port", str(port), "--log-level", "error"]
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            try:
                if httpx.get(f"{base}/-/metrics").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        for i in range(20):  # a connection each, so that both workers take some
            assert httpx.put(f"{base}/shared/k{i}", content=b"x" * 10).status_code == 200
        wanted = (20, 23, 3 * 5 + 20 * 10)
        for _ in range(600):
            got = parse(httpx.get(f"{base}/metrics").text)
            figures = (
                got.value("shoal_requests_total", operation="PutObject", status="200"),
                got.value("shoal_bucket_objects", bucket="shared"),
                got.value("shoal_bucket_bytes", bucket="shared"),
            )
            if figures == wanted:  # the start-up count may still be running
                break
            time.sleep(0.05)
        assert figures == wanted
        for _ in range(5):  # and so says every worker
            got = parse(httpx.get(f"{base}/metrics").text)
            assert got.value("shoal_requests_total", operation="PutObject", status="200") == 20
            assert got.value("shoal_bucket_objects", bucket="shared") == 23
        assert len(list(shared.glob("gauge_livesum_*.db"))) == 2  # a file per worker
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.mark.slow
def test_cluster_nodes_expose_membership_and_rpc(tmp_path: Path) -> None:
    from tests.integration.test_cluster import make_nodes, running

    nodes = make_nodes(tmp_path, 3, 2)
    with running(nodes):
        first = nodes[0]
        first.s3().create_bucket(Bucket="spread")
        first.s3().put_object(Bucket="spread", Key="k", Body=os.urandom(300_000))
        with httpx.Client(base_url=first.endpoint) as client:
            for _ in range(600):
                got = scrape(client)
                up = {
                    dict(labels)["node"]: v for labels, v in got.labelled("shoal_node_up").items()
                }
                rtt = got.labelled("shoal_node_heartbeat_rtt_seconds")
                calls = {
                    dict(labels)["method"]: v
                    for labels, v in got.labelled("shoal_rpc_duration_seconds_count").items()
                }
                # A peer is up once it pinged us; its round trip, once we pinged it. Calls
                # count from when storage is open (metrics start then): the heartbeats
                # that found the peers may come before, a ping after it is counted.
                if (
                    up == {"node0": 1, "node1": 1, "node2": 1}
                    and len(rtt) == 2
                    and calls.get("cluster.ping", 0) > 0
                ):
                    break
                time.sleep(0.05)
            assert up == {"node0": 1, "node1": 1, "node2": 1}
            assert {dict(labels)["node"] for labels in rtt} == {"node1", "node2"}
            assert all(v > 0 for v in rtt.values())
            assert calls.get("cluster.ping", 0) > 0
            assert sum(calls.values()) > calls["cluster.ping"]  # shard RPCs too
            sent = sum(
                v
                for labels, v in got.labelled("shoal_rpc_bytes_total").items()
                if dict(labels)["direction"] == "sent"
            )
            assert sent >= 300_000 * 2 / 6  # the other nodes' shards, at least
            assert len(got.labelled("shoal_drive_online")) == 6
            assert got.value("shoal_bucket_objects", bucket="spread") == 1


@pytest.mark.slow
def test_cluster_nodes_recount_what_other_nodes_wrote(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A node's bucket figures take in objects, uploads and buckets written and deleted
    through another node at its next recount (every half second here)."""
    from tests.integration.test_cluster import make_nodes, running

    monkeypatch.setenv("SHOAL_USAGE_RECOUNT_SECONDS", "0.5")
    nodes = make_nodes(tmp_path, 3, 2)
    with running(nodes):
        a, b = nodes[0], nodes[1]

        Figures = dict[str, tuple[float, float, float]]

        def figures(client: httpx.Client, wanted: Figures) -> Figures:
            """A's figures per bucket, once they are `wanted` (or the last seen)."""
            for _ in range(600):
                got = scrape(client)
                seen = {
                    dict(labels)["bucket"]: (
                        got.value("shoal_bucket_objects", **dict(labels)),
                        got.value("shoal_bucket_bytes", **dict(labels)),
                        got.value("shoal_multipart_uploads_in_progress", **dict(labels)),
                    )
                    for labels in got.labelled("shoal_bucket_objects")
                }
                if seen == wanted:
                    break
                time.sleep(0.1)
            return seen

        s3 = b.s3()
        s3.create_bucket(Bucket="elsewhere")
        s3.create_bucket(Bucket="brief")
        for i, size in enumerate((100, 200, 300)):
            s3.put_object(Bucket="elsewhere", Key=f"k{i}", Body=b"x" * size)
        s3.create_multipart_upload(Bucket="elsewhere", Key="pending")
        with httpx.Client(base_url=a.endpoint) as client:
            wanted: Figures = {"elsewhere": (3, 600, 1), "brief": (0, 0, 0)}
            assert figures(client, wanted) == wanted
            s3.delete_object(Bucket="elsewhere", Key="k1")
            s3.put_object(Bucket="elsewhere", Key="k2", Body=b"y" * 50)
            s3.delete_bucket(Bucket="brief")
            wanted = {"elsewhere": (2, 150, 1)}
            assert figures(client, wanted) == wanted
