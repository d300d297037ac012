"""The scenario's steps with the aws CLI (`aws s3 ...` and `aws s3api ...`), run with a
config file and credentials of its own so that a developer's ~/.aws never leaks in."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any


def aws_command() -> str | None:
    """The `aws` installed beside this interpreter (shoal[test]), or on PATH."""
    import sys

    beside = Path(sys.executable).parent / "aws"
    return str(beside) if beside.exists() else shutil.which("aws")


class AwsCliClient:
    unsupported: frozenset[str] = frozenset()

    def __init__(self, target: dict[str, Any], home: Path) -> None:
        aws = aws_command()
        assert aws is not None
        config = home / "aws-config"
        config.write_text(
            "[default]\nregion = {region}\ns3 =\n"
            "  multipart_threshold = 5MB\n  multipart_chunksize = 5MB\n".format(**target)
        )
        self.env = {
            "PATH": os.environ.get("PATH", ""),
            "HOME": str(home),
            "AWS_CONFIG_FILE": str(config),
            "AWS_SHARED_CREDENTIALS_FILE": str(home / "no-credentials"),
            "AWS_ACCESS_KEY_ID": target["access_key"],
            "AWS_SECRET_ACCESS_KEY": target["secret_key"],
            "AWS_DEFAULT_REGION": target["region"],
            **({"AWS_CA_BUNDLE": target["ca_file"]} if target["ca_file"] else {}),
        }
        self.base = [aws, "--endpoint-url", target["endpoint"]]
        self.home = home

    def run(self, *args: str) -> str:
        done = subprocess.run(
            [*self.base, *args], env=self.env, capture_output=True, text=True, timeout=300
        )
        assert done.returncode == 0, f"aws {' '.join(args)}: {done.stderr}"
        return done.stdout

    def api(self, *args: str) -> Any:
        out = self.run("s3api", *args, "--output", "json")
        return json.loads(out) if out.strip() else {}

    def version(self) -> str:
        return self.run("--version").split()[0].split("/")[1]

    def create_bucket(self, bucket: str) -> None:
        self.run("s3", "mb", f"s3://{bucket}")

    def upload(self, bucket: str, key: str, path: str, metadata: dict[str, str] | None) -> None:
        extra = ["--content-type", "text/plain"]
        if metadata:
            extra += ["--metadata", ",".join(f"{k}={v}" for k, v in metadata.items())]
        self.run("s3", "cp", path, f"s3://{bucket}/{key}", *extra)

    def upload_multipart(self, bucket: str, key: str, path: str) -> None:
        self.run("s3", "cp", path, f"s3://{bucket}/{key}")

    def list(self, bucket: str, prefix: str, delimiter: str) -> tuple[list[str], list[str]]:
        got = self.api(
            "list-objects-v2", "--bucket", bucket, "--prefix", prefix, "--delimiter", delimiter
        )
        keys = [o["Key"] for o in got.get("Contents", [])]
        return keys, [p["Prefix"] for p in got.get("CommonPrefixes", [])]

    def read_range(self, bucket: str, key: str, start: int, end: int) -> bytes:
        out = self.home / "range.out"
        self.api(
            "get-object",
            "--bucket",
            bucket,
            "--key",
            key,
            "--range",
            f"bytes={start}-{end}",
            str(out),
        )
        return out.read_bytes()

    def copy(self, bucket: str, source: str, destination: str) -> None:
        self.run("s3", "cp", f"s3://{bucket}/{source}", f"s3://{bucket}/{destination}")

    def metadata(self, bucket: str, key: str) -> dict[str, str]:
        return dict(self.api("head-object", "--bucket", bucket, "--key", key)["Metadata"])

    def delete_many(self, bucket: str, keys: list[str]) -> None:
        self.run("s3", "rm", f"s3://{bucket}", "--recursive")

    def delete_bucket(self, bucket: str) -> None:
        self.run("s3", "rb", f"s3://{bucket}")
