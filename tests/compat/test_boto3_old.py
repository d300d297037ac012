"""boto3 before 1.36, in a venv of its own under .venv-compat/: it sends Content-MD5
(PutObject, DeleteObjects) and no CRC checksums or aws-chunked trailers, and over
HTTPS signs bodies as UNSIGNED-PAYLOAD."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.compat.agents import python_agent, python_env
from tests.compat.scenario import STEPS, Files, Target, new_bucket_name, run_scenario

#: What the test installs, and the README's "Works with" table names.
REQUIREMENTS = ["boto3==1.35.99"]


def test_scenario(
    target: Target, verifier: Any, tmp_path: Path, cleanup_buckets: list[str]
) -> None:
    python = python_env("boto3-1.35", REQUIREMENTS)
    bucket = new_bucket_name("boto3-old")
    cleanup_buckets.append(bucket)
    with python_agent(python, "boto3_client", "Boto3Client", target.as_dict()) as client:
        assert client.version() == REQUIREMENTS[0].split("==")[1]
        report = run_scenario(client, verifier, bucket, Files.make(tmp_path))
    assert report.ran == list(STEPS)
