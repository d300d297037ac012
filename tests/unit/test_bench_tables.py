"""The benchmark's encrypting-server report (bench/run.py, bench/plaintext.py): the sse
table's figures and ratios, its RSS row judged by the memory limit, and the on-disk
plaintext scan that keeps the figures honest."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))

import memory  # noqa: E402
import plaintext  # noqa: E402
import run  # noqa: E402

MiB = 1 << 20


def suite(put4k: float, get4k: float, put_mb: float, get_mb: float, peak: int) -> dict[str, Any]:
    """One server's results in the shape run.py records them."""
    return {
        "put4k_c16": {"ops_per_s": put4k, "p50_ms": 10.0},
        "get4k_c16": {"ops_per_s": get4k, "p50_ms": 4.0},
        "big_put": {
            "mb_per_s": put_mb,
            "status": 200,
            "rss_idle": 50 * MiB,
            "rss_peak": peak,
            "cpu_ms_per_mb": 1e3 / put_mb,
        },
        "big_get": {
            "mb_per_s": get_mb,
            "status": 200,
            "bytes": run.QUICK.big,
            "rss_peak": peak,
            "cpu_ms_per_mb": 1e3 / get_mb,
        },
    }


def test_sse_rows_ratio_to_standalone_and_rss_verdict() -> None:
    results: dict[str, Any] = {
        "shoal": suite(800, 3000, 200, 1400, 60 * MiB),
        "sse": suite(600, 2400, 100, 350, 50 * MiB + 70 * MiB),
    }
    results["sse_memory"] = run.erasure_memory(results, run.QUICK, "sse")
    rows = run.side_rows(
        results, run.QUICK, run.SSE_ROWS, run.SSE_NAMES, run.SSE_RATIOS, run.SSE_RSS
    )
    by = {r["metric"]: r for r in rows}
    assert by["4 KiB PUT, 16 conns"]["vs_shoal"] == pytest.approx(0.75)
    assert by["4 KiB GET, 16 conns"]["vs_shoal"] == pytest.approx(0.8)
    assert by["256 MiB PUT, 1 stream"]["sse"] == 100
    assert by["256 MiB PUT, 1 stream"]["vs_shoal"] == pytest.approx(0.5)
    assert by["256 MiB GET, 1 stream"]["vs_shoal"] == pytest.approx(0.25)
    cpu = by["server CPU, 256 MiB PUT"]
    assert cpu["vs_shoal"] == pytest.approx(2.0) and not cpu["higher_is_better"]
    rss = by["RSS growth, 256 MiB PUT+GET"]
    assert rss["sse"] == pytest.approx(70) and rss["shoal"] == pytest.approx(10)
    assert rss["verdict"] == "FAIL" and rss["target"] == f"< {memory.LIMIT // MiB} MiB"


def test_a_missing_server_leaves_its_cells_empty() -> None:
    results: dict[str, Any] = {"sse": suite(600, 2400, 100, 350, 60 * MiB)}
    rows = run.side_rows(
        results, run.QUICK, run.SSE_ROWS, run.SSE_NAMES, run.SSE_RATIOS, run.SSE_RSS
    )
    assert all(r["shoal"] is None and r["vs_shoal"] is None for r in rows)
    assert rows[0]["sse"] == 600


def test_sse_takes_part_in_the_erasure_nodes_steps_only() -> None:
    assert run.LIMITED_STEPS["sse"] == run.ERASURE_STEPS
    names = {name for name, _, _ in run.steps(run.QUICK)}
    assert set(run.SSE_STEPS) <= names


@settings(max_examples=25, deadline=None)
@given(
    before=st.integers(0, 3 * plaintext.BLOCK // 2),
    after=st.integers(0, 1000),
)
@example(before=plaintext.BLOCK - 32, after=0)  # split across two reads
@example(before=plaintext.BLOCK - 63, after=0)
@example(before=plaintext.BLOCK - 64, after=0)  # ends the first read
@example(before=plaintext.BLOCK, after=0)  # starts the second
def test_scan_finds_the_probe_anywhere_in_a_file(before: int, after: int) -> None:
    # Boundaries of the 8 MiB read blocks included (a probe split across two reads).
    needle = os.urandom(64)
    with tempfile.TemporaryDirectory() as d:
        with open(os.path.join(d, "holds"), "wb") as f:
            f.write(b"\0" * before + needle + b"\0" * after)
        with open(os.path.join(d, "clean"), "wb") as f:
            f.write(b"\0" * (before + after) + needle[:63])
        assert plaintext.files_holding(d, needle) == ["holds"]


def test_check_is_verified_only_with_a_control_that_finds_plaintext(tmp_path: Path) -> None:
    probe = os.urandom(64)
    enc, plain = tmp_path / "enc", tmp_path / "plain"
    (enc / "b").mkdir(parents=True)
    (plain / "b").mkdir(parents=True)
    (enc / "b" / "obj").write_bytes(os.urandom(4096))
    (plain / "b" / "obj").write_bytes(os.urandom(100) + probe + os.urandom(100))
    ok = plaintext.check(str(enc), probe.hex(), str(plain), probe.hex())
    assert ok == {"plaintext_files": [], "control_files": ["b/obj"], "verified": True}
    assert "stored encrypted" in run.describe_check(ok)
    blind = plaintext.check(str(enc), probe.hex(), str(enc), probe.hex())
    assert not blind["verified"] and "proves nothing" in run.describe_check(blind)
    leaked = plaintext.check(str(plain), probe.hex(), str(plain), probe.hex())
    assert leaked["plaintext_files"] == ["b/obj"] and not leaked["verified"]
    assert "PLAINTEXT ON DISK" in run.describe_check(leaked)
