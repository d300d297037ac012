"""`shoal serve` logs one line per request, with its request id and without secrets."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import boto3

from tests.integration.conftest import spawn_server


def test_json_access_log_lines(tmp_path: Path) -> None:
    proc, url = spawn_server(tmp_path / "data", "--log-format", "json", stderr=subprocess.PIPE)
    try:
        s3 = boto3.client(
            "s3",
            endpoint_url=url,
            aws_access_key_id="AKIDLOGTEST",
            aws_secret_access_key="very-secret-value",
            region_name="us-east-1",
        )
        s3.create_bucket(Bucket="logs")
        put = s3.put_object(Bucket="logs", Key="a/b.txt", Body=b"hello")
        request_id = put["ResponseMetadata"]["HTTPHeaders"]["x-amz-request-id"]
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=30)
    lines = [json.loads(line) for line in err.splitlines() if '"shoal.access"' in line]
    assert [line["operation"] for line in lines] == ["CreateBucket", "PutObject"]
    put_line = lines[1]
    assert put_line["request_id"] == request_id
    assert (put_line["bucket"], put_line["key"], put_line["status"]) == ("logs", "a/b.txt", 200)
    assert put_line["duration_ms"] >= 0 and put_line["remote"] == "127.0.0.1"
    assert "very-secret-value" not in err and "Signature=" not in err
