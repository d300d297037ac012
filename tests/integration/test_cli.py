"""The aws CLI (v1, from the same environment as the tests) against a real server:
`aws s3` high-level commands, including multipart copies and sync, and `aws s3api`
calls with their JSON output parsed."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import botocore.exceptions
import pytest

from tests.integration.conftest import AwsCli

pytestmark = pytest.mark.cli

MiB = 1024 * 1024

Run = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def aws(shoal_descriptor: Any, verify: str | bool, tmp_path: Path) -> Run:
    """Run `aws <args> --endpoint-url ...` with credentials from the descriptor and a
    private config file (path-style addressing, 5 MB multipart threshold and parts)."""
    home = tmp_path / "aws-home"
    home.mkdir()
    config = home / "config"
    config.write_text(
        "[default]\n"
        f"region = {shoal_descriptor.region}\n"
        "s3 =\n"
        "    addressing_style = path\n"
        "    multipart_threshold = 5MB\n"
        "    multipart_chunksize = 5MB\n"
    )
    return AwsCli.of(home, shoal_descriptor, verify, config_file=config).run


@pytest.fixture
def http_only(shoal_descriptor: Any) -> None:
    """The CLI over TLS (AWS_CA_BUNDLE) is covered by test_mb_cp_ls_rm_rb; the other CLI
    tests run over HTTP only, since every CLI start costs most of a second."""
    if shoal_descriptor.use_ssl:
        pytest.skip("CLI over HTTPS is covered by test_mb_cp_ls_rm_rb")


def api(aws: Run, *args: str) -> dict[str, Any]:
    """An `aws s3api` call's JSON output ({} when it prints nothing)."""
    out = aws("s3api", *args, "--output", "json").stdout
    return json.loads(out) if out.strip() else {}


def md5_hex(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def tree(root: Path) -> dict[str, bytes]:
    """Relative path -> bytes for every file under root."""
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def remove_bucket(s3: Any, name: str) -> None:
    """Best-effort cleanup of a bucket a CLI test made itself."""
    try:
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=name):
            for obj in page.get("Contents", []):
                s3.delete_object(Bucket=name, Key=obj["Key"])
        s3.delete_bucket(Bucket=name)
    except botocore.exceptions.ClientError:
        pass


def test_mb_cp_ls_rm_rb(aws: Run, s3: Any, tmp_path: Path) -> None:
    """mb, cp up and down (small and multipart), ls, rb refusing a full bucket, rm
    --recursive, rb."""
    name = f"t-cli-{uuid.uuid4().hex[:16]}"
    up, down = tmp_path / "up", tmp_path / "down"
    up.mkdir()
    small = up / "small.txt"
    small.write_bytes(b"hello from the aws cli\n")
    big = up / "big.bin"
    big.write_bytes(os.urandom(20 * MiB))
    try:
        assert aws("s3", "mb", f"s3://{name}").stdout.strip() == f"make_bucket: {name}"
        aws("s3", "cp", str(small), f"s3://{name}/small.txt")
        aws("s3", "cp", str(big), f"s3://{name}/dir/big.bin")

        head = s3.head_object(Bucket=name, Key="dir/big.bin")
        assert head["ContentLength"] == 20 * MiB
        assert head["ETag"].strip('"').endswith("-4")  # 5 MB parts from the config file
        assert head["ETag"] != f'"{md5_hex(big.read_bytes())}"'
        assert s3.head_object(Bucket=name, Key="small.txt")["ETag"] == (
            f'"{md5_hex(small.read_bytes())}"'
        )

        aws("s3", "cp", f"s3://{name}/dir/big.bin", str(down / "big.bin"))
        aws("s3", "cp", f"s3://{name}/small.txt", str(down / "small.txt"))
        assert tree(down) == tree(up)

        listing = aws("s3", "ls", f"s3://{name}").stdout
        assert "PRE dir/" in listing
        assert "small.txt" in listing
        assert "big.bin" not in listing
        recursive = aws("s3", "ls", f"s3://{name}", "--recursive").stdout.splitlines()
        sizes = {line.split()[-1]: int(line.split()[-2]) for line in recursive}
        assert sizes == {"dir/big.bin": 20 * MiB, "small.txt": small.stat().st_size}

        refused = aws("s3", "rb", f"s3://{name}", check=False)
        assert refused.returncode != 0
        assert "BucketNotEmpty" in refused.stderr

        removed = aws("s3", "rm", f"s3://{name}", "--recursive").stdout
        assert sorted(line.split()[-1] for line in removed.splitlines()) == [
            f"s3://{name}/dir/big.bin",
            f"s3://{name}/small.txt",
        ]
        assert aws("s3", "rb", f"s3://{name}").stdout.strip() == f"remove_bucket: {name}"
        with pytest.raises(botocore.exceptions.ClientError):
            s3.head_bucket(Bucket=name)
    finally:
        remove_bucket(s3, name)


SYNC_TREE = {
    "top.txt": b"top level\n",
    "empty.txt": b"",
    "nested/.hidden": b"dot file",
    "nested/deeper/deepest/file.bin": os.urandom(100_000),
    "with space/file name.txt": b"spaces",
    "ünïcødé/日本語.txt": b"unicode names",
    "plus+and&/x=y;z,w.txt": b"reserved characters",
    "percent%20/100%.txt": b"percent signs",
}


@pytest.mark.usefixtures("http_only")
def test_sync_up_change_down(aws: Run, s3: Any, bucket: str, tmp_path: Path) -> None:
    """sync uploads a tree with odd names, then only a changed file, then downloads an
    identical tree into an empty directory."""
    src, dst = tmp_path / "src", tmp_path / "dst"
    an_hour_ago = time.time() - 3600
    for rel, data in SYNC_TREE.items():
        path = src / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        # Older than anything the server stamps, so whole-second LastModified values
        # never make sync think a file changed.
        os.utime(path, (an_hour_ago, an_hour_ago))
    target = f"s3://{bucket}/backup/"

    first = aws("s3", "sync", str(src), target).stdout
    assert sum(line.startswith("upload:") for line in first.splitlines()) == len(SYNC_TREE)
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]]
    assert keys == sorted(f"backup/{rel}" for rel in SYNC_TREE)
    for rel, data in SYNC_TREE.items():
        assert s3.get_object(Bucket=bucket, Key=f"backup/{rel}")["Body"].read() == data

    (src / "top.txt").write_bytes(b"top level, changed\n")
    second = aws("s3", "sync", str(src), target).stdout.splitlines()
    uploads = [line for line in second if line.startswith("upload:")]
    assert len(uploads) == 1, second
    assert uploads[0].endswith(f"{target}top.txt")

    dst.mkdir()
    third = aws("s3", "sync", target, str(dst)).stdout
    assert sum(line.startswith("download:") for line in third.splitlines()) == len(SYNC_TREE)
    assert tree(dst) == tree(src)

    listing = aws("s3", "ls", target, "--recursive").stdout.splitlines()
    assert len(listing) == len(SYNC_TREE)
    assert any(line.endswith("backup/ünïcødé/日本語.txt") for line in listing)


@pytest.mark.usefixtures("http_only")
def test_s3api_json(aws: Run, bucket: str, tmp_path: Path) -> None:
    """s3api object, copy, multi-delete and multipart-upload calls with JSON output."""
    body = tmp_path / "body.txt"
    body.write_bytes(b"s3api body\n" * 100)
    etag = f'"{md5_hex(body.read_bytes())}"'
    key = "doc/a b+c.txt"

    put = api(
        aws, "put-object", "--bucket", bucket, "--key", key, "--body", str(body),
        "--content-type", "text/plain", "--metadata", "color=blue",
    )  # fmt: skip
    assert put["ETag"] == etag

    head = api(aws, "head-object", "--bucket", bucket, "--key", key)
    assert head["ContentLength"] == body.stat().st_size
    assert head["ContentType"] == "text/plain"
    assert head["Metadata"] == {"color": "blue"}
    assert head["ETag"] == etag

    out = tmp_path / "out.txt"
    got = api(aws, "get-object", "--bucket", bucket, "--key", key, str(out))
    assert got["ContentLength"] == body.stat().st_size
    assert out.read_bytes() == body.read_bytes()

    copied = api(
        aws, "copy-object", "--bucket", bucket, "--key", "copy/of it.txt",
        "--copy-source", f"{bucket}/{key}",
    )  # fmt: skip
    assert copied["CopyObjectResult"]["ETag"] == etag

    listed = api(aws, "list-objects-v2", "--bucket", bucket)
    assert [o["Key"] for o in listed["Contents"]] == ["copy/of it.txt", key]

    missing = aws("s3api", "head-object", "--bucket", bucket, "--key", "nope", check=False)
    assert missing.returncode != 0
    assert "404" in missing.stderr

    delete = {"Objects": [{"Key": key}, {"Key": "copy/of it.txt"}]}
    deleted = api(aws, "delete-objects", "--bucket", bucket, "--delete", json.dumps(delete))
    assert sorted(d["Key"] for d in deleted["Deleted"]) == ["copy/of it.txt", key]
    assert "Contents" not in api(aws, "list-objects-v2", "--bucket", bucket)

    created = api(aws, "create-multipart-upload", "--bucket", bucket, "--key", "mp/obj")
    assert (created["Bucket"], created["Key"]) == (bucket, "mp/obj")
    uploads = api(aws, "list-multipart-uploads", "--bucket", bucket)
    assert [(u["Key"], u["UploadId"]) for u in uploads["Uploads"]] == [
        ("mp/obj", created["UploadId"])
    ]
    aws(
        "s3api", "abort-multipart-upload", "--bucket", bucket, "--key", "mp/obj",
        "--upload-id", created["UploadId"],
    )  # fmt: skip
    assert "Uploads" not in api(aws, "list-multipart-uploads", "--bucket", bucket)
