"""Logs: one structlog pipeline for the access log, shoal's own loggers (lifecycle,
storage and cluster events) and uvicorn's, as JSON or text; one line per request with
its fields and never a secret; `--silent` and `logging.enabled = false` print nothing;
plain `uvicorn shoal:create_app` gets the same pipeline."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from botocore.exceptions import ClientError

from tests.integration.conftest import auth_config, erasure_config, signed_client
from tests.integration.serving import Proc

KEY, SECRET = "AKIDLOGTEST", "very-secret-value"
COMMON = ("timestamp", "level", "logger", "event")
ACCESS_FIELDS = (
    "request_id",
    "operation",
    "bucket",
    "key",
    "status",
    "bytes_in",
    "bytes_out",
    "duration_ms",
    "remote",
    "access_key",
)


def access_lines(lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [line for line in lines if line["logger"] == "shoal.access"]


def events(lines: list[dict[str, Any]], logger: str) -> list[str]:
    return [line["event"] for line in lines if line["logger"] == logger]


def test_json_request_lines_have_their_fields_and_no_secret(tmp_path: Path) -> None:
    proc = Proc(tmp_path, "--log-format", "json", settings=auth_config((KEY, SECRET)))
    try:
        s3 = signed_client(proc.url, KEY, SECRET)
        s3.create_bucket(Bucket="logs")
        body = b"hello, log" * 100
        put = s3.put_object(Bucket="logs", Key="a/b c.txt", Body=body)
        put_id = put["ResponseMetadata"]["HTTPHeaders"]["x-amz-request-id"]
        url = s3.generate_presigned_url(
            "get_object", Params={"Bucket": "logs", "Key": "a/b c.txt"}, ExpiresIn=300
        )
        signature = url.rsplit("X-Amz-Signature=", 1)[1]
        presigned = httpx.get(url, timeout=30)
        assert presigned.content == body
        forged = "AWS4-HMAC-SHA256 Credential=AKIDFORGED/20250101/us-east-1/s3/aws4_request, "
        forged += "SignedHeaders=host, Signature=" + "ab" * 32
        refused = httpx.get(f"{proc.url}/logs", headers={"Authorization": forged}, timeout=30)
        assert refused.status_code == 403
        with pytest.raises(ClientError):
            signed_client(proc.url, KEY, "wrong-secret").head_bucket(Bucket="logs")
    finally:
        assert proc.stop() == 0
    lines = proc.json_lines()
    assert all(tuple(line)[:4] == COMMON for line in lines)
    requests = access_lines(lines)
    assert [r["operation"] for r in requests] == [
        "CreateBucket",
        "PutObject",
        "GetObject",
        "ListObjects",
        "HeadBucket",
    ]
    for r in requests:
        assert set(ACCESS_FIELDS) <= set(r) and r["event"] == "request", r
        assert r["remote"] == "127.0.0.1" and r["duration_ms"] >= 0
    _, put_line, get_line, forged_line, wrong_line = requests
    assert put_line["request_id"] == put_id
    assert (put_line["bucket"], put_line["key"], put_line["status"]) == ("logs", "a/b c.txt", 200)
    assert put_line["bytes_in"] >= len(body) and put_line["access_key"] == KEY
    assert get_line["bytes_out"] == len(body) and get_line["access_key"] == KEY
    assert (forged_line["status"], forged_line["access_key"]) == (403, "AKIDFORGED")
    assert (wrong_line["status"], wrong_line["access_key"]) == (403, KEY)
    text = proc.stderr()
    for secret in (SECRET, "wrong-secret", signature, "Signature=", "X-Amz-Signature", "ab" * 32):
        assert secret not in text


def test_lifecycle_storage_and_uvicorn_events_are_json_too(tmp_path: Path) -> None:
    settings = erasure_config(tmp_path / "drives")
    proc = Proc(tmp_path, "--log-format", "json", settings=settings)
    assert proc.stop() == 0
    lines = proc.json_lines()
    assert events(lines, "shoal.server") == [
        "starting",
        "storage open",
        "listening",
        "shutting down",
        "stopped",
    ]
    by_event = {line["event"]: line for line in lines if line["logger"] == "shoal.server"}
    assert by_event["starting"]["mode"] == "erasure" and by_event["starting"]["version"]
    assert len(by_event["storage open"]["drives"]) == 6
    assert by_event["listening"]["url"] == proc.url
    assert by_event["shutting down"]["signal"] == "SIGTERM"
    # storage/ and cluster/ log through the stdlib "shoal.*" loggers, rendered alike
    assert any(e.startswith("formatted 6 drives") for e in events(lines, "shoal.storage"))
    assert "Application startup complete." in events(lines, "uvicorn.error")


def test_text_lines_stay_one_line_per_request(tmp_path: Path) -> None:
    proc = Proc(tmp_path)
    awkward = 'odd key\nwith "quotes"=and\ttabs'
    try:
        assert httpx.put(f"{proc.url}/text-logs", timeout=30).status_code == 200
        url = f"{proc.url}/text-logs/{quote(awkward, safe='')}"
        assert httpx.put(url, content=b"x", timeout=30).status_code == 200
    finally:
        assert proc.stop() == 0
    requests = [line for line in proc.stderr().splitlines() if " shoal.access: " in line]
    assert len(requests) == 2
    put = requests[1]
    assert " info  shoal.access: request " in put and "operation=PutObject" in put
    assert f"key={json.dumps(awkward)}" in put and "bucket=text-logs" in put
    assert "status=200" in put and "bytes_in=1 " in put


@pytest.mark.parametrize(
    ("flags", "settings"),
    [(("--silent",), {}), ((), {"logging": {"enabled": False}})],
    ids=["silent", "logging-disabled"],
)
def test_silent_prints_nothing(tmp_path: Path, flags: tuple[str, ...], settings: dict) -> None:
    proc = Proc(tmp_path, *flags, settings=settings)
    try:
        assert httpx.put(f"{proc.url}/quiet", timeout=30).status_code == 200
        assert httpx.get(f"{proc.url}/nothing-here/x", timeout=30).status_code == 404
    finally:
        assert proc.stop() == 0
    assert proc.stderr() == ""


def test_plain_uvicorn_goes_through_the_same_pipeline(tmp_path: Path) -> None:
    proc = Proc(tmp_path, settings={"logging": {"format": "json"}}, uvicorn=True)
    try:
        assert httpx.put(f"{proc.url}/via-uvicorn", timeout=30).status_code == 200
    finally:
        proc.stop()
    lines = proc.json_lines()
    assert any(e.startswith("Uvicorn running on") for e in events(lines, "uvicorn.error"))
    assert [r["operation"] for r in access_lines(lines)] == ["CreateBucket"]
    assert events(lines, "shoal.server")[-1] == "stopped"
    assert events(lines, "uvicorn.error")[-1].startswith("Finished server process")
