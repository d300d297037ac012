"""s3fs/fsspec (fs.put, fs.ls, fs.cat with ranges, fs.rm recursive), in a venv of its
own under .venv-compat/ (its aiobotocore pins an older botocore than the project's)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.compat.agents import python_agent, python_env
from tests.compat.scenario import STEPS, Files, Target, new_bucket_name, run_scenario

#: What the test installs, and the README's "Works with" table names.
REQUIREMENTS = ["s3fs==2026.9.0"]


def test_scenario(
    target: Target, verifier: Any, tmp_path: Path, cleanup_buckets: list[str]
) -> None:
    python = python_env("s3fs", REQUIREMENTS)
    bucket = new_bucket_name("s3fs")
    cleanup_buckets.append(bucket)
    with python_agent(python, "s3fs_client", "S3fsClient", target.as_dict()) as client:
        report = run_scenario(client, verifier, bucket, Files.make(tmp_path))
    assert report.ran == list(STEPS)


def test_rm_recursive(
    target: Target, verifier: Any, tmp_path: Path, cleanup_buckets: list[str]
) -> None:
    """fs.rm(recursive=True) on a prefix removes everything below it, and only that."""
    python = python_env("s3fs", REQUIREMENTS)
    bucket = new_bucket_name("s3fs-rm")
    cleanup_buckets.append(bucket)
    verifier.create_bucket(Bucket=bucket)
    for key in ("keep.txt", "tree/a", "tree/b/c", "tree/b/d e"):
        verifier.put_object(Bucket=bucket, Key=key, Body=key.encode())
    with python_agent(python, "s3fs_client", "S3fsClient", target.as_dict()) as client:
        client.call("rm_recursive", bucket, "tree")
    left = [o["Key"] for o in verifier.list_objects_v2(Bucket=bucket)["Contents"]]
    assert left == ["keep.txt"]
