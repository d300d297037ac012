"""s3cmd (Debian package), path style through host_bucket = the endpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.compat.clients.cli_tools import S3cmdClient
from tests.compat.conftest import require_command
from tests.compat.scenario import STEPS, Files, Target, new_bucket_name, run_scenario


@pytest.fixture
def s3cmd(target: Target, tmp_path: Path) -> S3cmdClient:
    require_command("s3cmd", "apt-get install s3cmd (.ci/run does) or pip install s3cmd")
    home = tmp_path / "home"
    home.mkdir()
    return S3cmdClient(target.as_dict(), home)


def test_scenario(
    s3cmd: S3cmdClient, verifier: Any, tmp_path: Path, cleanup_buckets: list[str]
) -> None:
    bucket = new_bucket_name("s3cmd")
    cleanup_buckets.append(bucket)
    report = run_scenario(s3cmd, verifier, bucket, Files.make(tmp_path / "files"))
    assert report.ran == [s for s in STEPS if s != "read_range"]
    assert report.unsupported == ["read_range"]


def test_sync(s3cmd: S3cmdClient, tmp_path: Path, cleanup_buckets: list[str]) -> None:
    bucket = new_bucket_name("s3cmd-sync")
    cleanup_buckets.append(bucket)
    s3cmd.create_bucket(bucket)
    source = tmp_path / "tree"
    Files.make(source / "nested")
    s3cmd.s3cmd("sync", f"{source}/", f"s3://{bucket}/tree/")
    back = tmp_path / "back"
    back.mkdir()
    s3cmd.s3cmd("sync", f"s3://{bucket}/tree/", f"{back}/")
    for path in source.rglob("*"):
        if path.is_file():
            assert (back / path.relative_to(source)).read_bytes() == path.read_bytes()
    s3cmd.delete_many(bucket, [])
    s3cmd.delete_bucket(bucket)
