"""`make bench`'s table (bench/table.py) and its load generator's parts: SigV4 signing
that matches botocore's, the request file format, a short loadgen run against the
do-nothing server (a smoke of the tool, not a benchmark), and the rows' ratios and
verdicts."""

from __future__ import annotations

import hashlib
import os
import shutil
import struct
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials as BotoCredentials

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))

import procs  # noqa: E402
import table  # noqa: E402
import wrk  # noqa: E402
from sigv4 import EMPTY_SHA256, Credentials, request_bytes, signed_headers  # noqa: E402

from tests.integration.conftest import wait_for  # noqa: E402

NOW = datetime(2026, 12, 3, 20, 0, 0, tzinfo=UTC)
CREDS = Credentials("bench", "s3cr3t/with+chars")


def botocore_signature(method: str, target: str, body: bytes) -> tuple[str, str]:
    """(signature, payload hash) botocore's S3 signer computes for the request at NOW."""
    req = AWSRequest(method=method, url=f"http://127.0.0.1:9000{target}", data=body)
    req.context["timestamp"] = NOW.strftime("%Y%m%dT%H%M%SZ")
    auth = S3SigV4Auth(BotoCredentials(CREDS.access_key, CREDS.secret), "s3", "us-east-1")
    auth._modify_request_before_signing(req)
    canonical = auth.canonical_request(req)
    return auth.signature(auth.string_to_sign(req, canonical), req), req.headers[
        "X-Amz-Content-SHA256"
    ]


@pytest.mark.parametrize(
    ("method", "target", "body"),
    [
        ("GET", "/bench/s/k00001", b""),
        ("PUT", "/bench/s/k00001", b"x" * 4096),
        # a ListObjectsV2 page: an encoded continuation token is decoded, then signed
        ("GET", "/lst?max-keys=1000&list-type=2&continuation-token=a%2Bb%2Fc%3D%3D", b""),
    ],
)
def test_signature_matches_botocore(method: str, target: str, body: bytes) -> None:
    path, _, query = target.partition("?")
    payload = hashlib.sha256(body).hexdigest()
    headers = signed_headers(
        CREDS, method, path, "127.0.0.1:9000", query=query, payload_hash=payload, now=NOW
    )
    signature, boto_payload = botocore_signature(method, target, body)
    assert boto_payload == payload
    assert headers["authorization"].endswith(f"Signature={signature}")
    assert headers["x-amz-date"] == "20261203T200000Z"


def test_request_bytes_signs_the_body_and_sends_its_length() -> None:
    raw = request_bytes("PUT", "/b/k", "127.0.0.1:1", b"abc", CREDS)
    head, _, body = raw.partition(b"\r\n\r\n")
    assert body == b"abc"
    assert b"content-length: 3" in head
    assert f"x-amz-content-sha256: {hashlib.sha256(b'abc').hexdigest()}".encode() in head
    get = request_bytes("GET", "/b/k", "127.0.0.1:1", creds=CREDS)
    assert get.endswith(b"\r\n\r\n") and b"content-length" not in get
    assert f"x-amz-content-sha256: {EMPTY_SHA256}".encode() in get


def test_request_file_records(tmp_path: Path) -> None:
    path = str(tmp_path / "r.req")
    assert wrk.write_requests(path, [b"one", b"", b"three!"]) == 3
    data = Path(path).read_bytes()
    out, i = [], 0
    while i < len(data):
        (n,) = struct.unpack_from("<I", data, i)
        out.append(data[i + 4 : i + 4 + n])
        i += 4 + n
    assert out == [b"one", b"", b"three!"]


@pytest.mark.skipif(shutil.which("cc") is None and shutil.which("gcc") is None, reason="no cc")
def test_loadgen_counts_every_answer_of_a_do_nothing_server(tmp_path: Path) -> None:
    binary = wrk.build(str(tmp_path))
    reqs = str(tmp_path / "get.req")
    wrk.write_requests(reqs, [request_bytes("GET", f"/b/k{i}", "127.0.0.1") for i in range(50)])
    null = procs.Server("null", procs.null_argv(), str(tmp_path / "null.log"), None)
    try:
        with null:
            once = wrk.run(
                binary, "127.0.0.1", null.port, reqs, conns=4, duration=30, once=True,
                expect_body=4096,
            )  # fmt: skip
            wrong = wrk.run(
                binary, "127.0.0.1", null.port, reqs, conns=2, duration=0.2, expect_body=10,
            )  # fmt: skip
    finally:
        procs.stop_all()
    assert once["ok"] == 50 and once["errors"] == 0 and once["bad_length"] == 0
    assert once["requests"] == 50
    assert wrong["ops"] > 0 and wrong["bad_length"] == wrong["ops"]


def result(value: float, load: float = 1.0, field: str = "ops_per_s") -> dict[str, Any]:
    return {field: value, "load1": load}


def test_rows_are_ratios_with_targets_and_loads() -> None:
    results: dict[str, Any] = {
        "raw": {"get_c16": result(10_000, 2.0), "get_c64": result(12_000)},
        "shoal": {
            "get_c16": result(7_000, 3.0),
            "get_c64": result(6_000),
            "list": result(0.25, field="seconds"),
            "startup": {"median_ms": 350.0, "load1": 1.0},
        },
        "durable": {"put_c16": {"error": "refused", "load1": 1.0}},
    }
    rows = {r["what"]: r for r in table.build_rows(results, table.QUICK, {"standalone", "startup"})}
    c16 = rows["standalone 4 KiB GET c16 vs raw ASGI"]
    assert c16["ratio"] == pytest.approx(0.7) and c16["verdict"] == "PASS"
    assert c16["load"] == 3.0  # the higher of the two measurements'
    assert rows["standalone 4 KiB GET c64 vs raw ASGI"]["verdict"] == "SHORT"
    put = rows["standalone 4 KiB PUT c16 vs durable"]
    assert put["value"] is None and put["ratio"] is None and put["verdict"] == "SHORT"
    listing = rows["list 2,000 keys (2 pages)"]  # --quick: 1/5 of the keys and time
    assert listing["value"] == pytest.approx(250) and listing["verdict"] == "SHORT"
    assert listing["target"] == "< 60 ms"
    start = rows["standalone start to first answer"]
    assert start["verdict"] == "SHORT" and start["target"] == "< 300 ms"
    assert not any(r.startswith("erasure") for r in rows)
    text = "\n".join(table.render(list(rows.values())))
    assert "0.70" in text and "SHORT" in text


def test_every_row_of_the_issue_is_in_the_full_table() -> None:
    rows = table.rows_for(table.FULL)
    labels = [r.label for r in rows]
    assert len(rows) == 19
    assert "standalone 1 GiB GET vs raw ASGI" in labels
    assert "cluster (1452) 256 MiB GET x4 vs 16384" in labels
    assert {r.part for r in rows} == set(table.PARTS)


def test_median_round_keeps_every_rounds_figure() -> None:
    rounds = [result(3), result(1), {"error": "x"}, result(2)]
    best = table.median_round(rounds, "ops_per_s")
    assert best["ops_per_s"] == 2 and sorted(best["rounds"]) == [1, 2, 3]
    assert table.median_round([{"error": "x"}], "ops_per_s") == {"error": "x"}


def test_production_line_is_the_units() -> None:
    """The bench starts shoal with deploy/shoal.service's ExecStart flags."""
    unit = (BENCH.parent / "deploy" / "shoal.service").read_text()
    exec_start = unit.split("ExecStart=", 1)[1].split("\n# ", 1)[0].replace("\\\n", " ")
    flags = [f for f in exec_start.split() if f.startswith("--")]
    argv = procs.production_argv(1234)
    assert [f for f in argv if f.startswith("--")] == flags
    env = procs.production_env("/d", "s", 9)
    assert env["SHOAL_AUTH__ENABLED"] == "true" and env["SHOAL_LOGGING__FORMAT"] == "json"
    assert os.path.exists(env["SHOAL_CONFIG"])


def test_notes_name_the_ceiling_a_capped_baseline_and_failures() -> None:
    results: dict[str, Any] = {
        "ceiling": {"ops_per_s": 10_000.0, "client_cpu": 0.5},
        "raw": {"get_c16": {"ops_per_s": 9_000.0, "client_cpu": 0.4}, "put_c16": result(5_000)},
        "erasure": {"error": "did not start"},
        "shoal": {"list": {"error": "listed 9 of 10 keys"}},
    }
    text = "\n".join(table.notes(results))
    assert "10,000 ops/s at 50% of a core" in text
    assert "WARNING: raw ASGI get_c16" in text
    assert "no fsync, for scale): 5,000 ops/s" in text
    assert "erasure: FAILED: did not start" in text
    assert "shoal list: listed 9 of 10 keys" in text


def test_server_cpu_splits_user_from_system_per_request() -> None:
    """A child spinning in Python (user time, no system calls) while the 'loop' runs: its
    CPU lands in `user`, per request at the loop's rate."""
    child = subprocess.Popen([sys.executable, "-c", "while True: pass"])

    def loop() -> dict[str, Any]:
        start = procs.cpu_seconds(child.pid)
        wait_for("the child spun 0.3 s", lambda: procs.cpu_seconds(child.pid) >= start + 0.3)
        return {"ops_per_s": 100.0}

    try:
        r = table.with_server_cpu([child.pid], 0.0, loop)
    finally:
        child.kill()
        child.wait()
    us = r["server_us"]
    assert us["user"] > us["system"] >= 0


def test_server_cpu_is_left_out_when_the_server_is_gone() -> None:
    """A server that exits during the loop has no CPU figure to read at its end."""
    child = subprocess.Popen([sys.executable, "-c", "while True: pass"])

    def loop() -> dict[str, Any]:
        child.kill()
        child.wait()
        return {"ops_per_s": 100.0}

    wait_for("the child spun", lambda: procs.cpu_seconds(child.pid) > 0.1)
    assert "server_us" not in table.with_server_cpu([child.pid], 0.0, loop)


def test_server_cpu_needs_a_rate() -> None:
    r = table.with_server_cpu([os.getpid()], 0.0, lambda: {"error": "no answers"})
    assert "server_us" not in r


def test_notes_give_the_server_cpu_per_request() -> None:
    results: dict[str, Any] = {
        "shoal": {"get_c16": {"ops_per_s": 5_000.0, "server_us": {"user": 161.4, "system": 20.2}}},
        "erasure": {
            "put_c16": {"ops_per_s": 300.0, "server_us": {"user": 1650.0, "system": 2400.0}}
        },
    }
    text = "\n".join(table.notes(results))
    assert "shoal get_c16 161.4 + 20.2" in text
    assert "erasure put_c16 1,650 + 2,400" in text
