"""rclone (Debian package) with an S3 remote: copy/sync/check/lsf, and the scenario."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from tests.compat.clients.cli_tools import RcloneClient
from tests.compat.conftest import require_command
from tests.compat.scenario import STEPS, Files, Target, new_bucket_name, run_scenario


@pytest.fixture
def rclone(target: Target, tmp_path: Path) -> RcloneClient:
    require_command("rclone", "apt-get install rclone (.ci/run does)")
    home = tmp_path / "home"
    home.mkdir()
    return RcloneClient(target.as_dict(), home)


def test_scenario(
    rclone: RcloneClient, verifier: Any, tmp_path: Path, cleanup_buckets: list[str]
) -> None:
    bucket = new_bucket_name("rclone")
    cleanup_buckets.append(bucket)
    report = run_scenario(rclone, verifier, bucket, Files.make(tmp_path / "files"))
    assert report.ran == list(STEPS)


def test_sync_check_lsf(rclone: RcloneClient, tmp_path: Path, cleanup_buckets: list[str]) -> None:
    """rclone check compares MD5s: the single-part ETag, and for multipart objects the
    md5chksum metadata rclone sets itself."""
    bucket = new_bucket_name("rclone-sync")
    cleanup_buckets.append(bucket)
    rclone.create_bucket(bucket)
    source = tmp_path / "tree"
    Files.make(source / "nested")
    (source / "top level.txt").write_text("top\n")
    sizes = ["--s3-upload-cutoff", "5M", "--s3-chunk-size", "5M"]
    rclone.rclone("sync", str(source), f"shoal:{bucket}/tree", *sizes)
    rclone.rclone("check", str(source), f"shoal:{bucket}/tree")
    listed = rclone.rclone("lsf", "-R", "--files-only", f"shoal:{bucket}/tree").splitlines()
    assert sorted(listed) == sorted(
        str(p.relative_to(source)) for p in source.rglob("*") if p.is_file()
    )
    (source / "top level.txt").unlink()
    (source / "new.txt").write_text("new\n")
    rclone.rclone("sync", str(source), f"shoal:{bucket}/tree", *sizes)
    rclone.rclone("check", str(source), f"shoal:{bucket}/tree")
    back = tmp_path / "back"
    rclone.rclone("copy", f"shoal:{bucket}/tree", str(back))
    assert sorted(os.listdir(back)) == sorted(os.listdir(source))
    rclone.rclone("check", str(source), str(back))
    rclone.rclone("purge", f"shoal:{bucket}")
