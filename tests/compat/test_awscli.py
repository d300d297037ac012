"""The aws CLI from PyPI (`aws s3 cp/sync/ls/rm --recursive`, `aws s3api`)."""

from __future__ import annotations

import filecmp
import os
import time
from pathlib import Path
from typing import Any

import pytest

from tests.compat.clients.awscli_client import AwsCliClient, aws_command
from tests.compat.scenario import STEPS, Files, Target, new_bucket_name, run_scenario


@pytest.fixture
def cli(target: Target, tmp_path: Path) -> AwsCliClient:
    if aws_command() is None:
        pytest.skip("the aws CLI is not installed: pip install awscli (or shoal[test])")
    home = tmp_path / "home"
    home.mkdir()
    return AwsCliClient(target.as_dict(), home)


def test_scenario(
    cli: AwsCliClient, verifier: Any, tmp_path: Path, cleanup_buckets: list[str]
) -> None:
    bucket = new_bucket_name("awscli")
    cleanup_buckets.append(bucket)
    report = run_scenario(cli, verifier, bucket, Files.make(tmp_path / "files"))
    assert report.ran == list(STEPS)


def test_sync_ls_rm(cli: AwsCliClient, tmp_path: Path, cleanup_buckets: list[str]) -> None:
    bucket = new_bucket_name("awscli-sync")
    cleanup_buckets.append(bucket)
    cli.create_bucket(bucket)
    source = tmp_path / "tree"
    Files.make(source / "nested")
    (source / "top level.txt").write_text("top\n")
    # sync sends a file whose mtime is after the object's LastModified, which S3 gives
    # to the second: files written this very second would go again, as against AWS.
    hour_ago = time.time() - 3600
    for path in source.rglob("*"):
        os.utime(path, (hour_ago, hour_ago))
    cli.run("s3", "sync", str(source), f"s3://{bucket}/tree")
    listed = cli.run("s3", "ls", f"s3://{bucket}/tree/", "--recursive").splitlines()
    assert sorted(line.split(maxsplit=3)[3] for line in listed) == sorted(
        f"tree/{p.relative_to(source)}" for p in source.rglob("*") if p.is_file()
    )
    # A second sync has nothing to send: sizes and times match what the server reports.
    assert cli.run("s3", "sync", str(source), f"s3://{bucket}/tree") == ""
    back = tmp_path / "back"
    cli.run("s3", "sync", f"s3://{bucket}/tree", str(back))
    comparison = filecmp.dircmp(source, back)
    assert not comparison.diff_files and not comparison.left_only and not comparison.right_only
    assert filecmp.cmp(source / "nested" / "big.bin", back / "nested" / "big.bin", shallow=False)
    cli.run("s3", "rm", f"s3://{bucket}/tree", "--recursive")
    assert cli.run("s3", "ls", f"s3://{bucket}/", "--recursive") == ""
    cli.delete_bucket(bucket)
