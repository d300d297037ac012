"""The scenario's steps with rclone and s3cmd (Debian packages), each configured only
through its own files and flags in a scratch folder."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

PART_MB = 5


def run(argv: list[str], env: dict[str, str]) -> str:
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"{' '.join(argv)}: {done.stderr}"
    return done.stdout


class RcloneClient:
    """An S3 remote named `shoal`, provider Other, path style, from environment variables."""

    unsupported: frozenset[str] = frozenset()

    def __init__(self, target: dict[str, Any], home: Path) -> None:
        (home / "rclone.conf").write_text("")
        self.env = {
            "PATH": os.environ.get("PATH", ""),
            "HOME": str(home),
            "RCLONE_CONFIG": str(home / "rclone.conf"),
            "RCLONE_CONFIG_SHOAL_TYPE": "s3",
            "RCLONE_CONFIG_SHOAL_PROVIDER": "Other",
            "RCLONE_CONFIG_SHOAL_ACCESS_KEY_ID": target["access_key"],
            "RCLONE_CONFIG_SHOAL_SECRET_ACCESS_KEY": target["secret_key"],
            "RCLONE_CONFIG_SHOAL_ENDPOINT": target["endpoint"],
            "RCLONE_CONFIG_SHOAL_REGION": target["region"],
            "RCLONE_CONFIG_SHOAL_FORCE_PATH_STYLE": "true",
        }
        self.flags = ["--retries", "1", "--low-level-retries", "1"]
        if target["ca_file"]:
            self.flags += ["--ca-cert", target["ca_file"]]

    def rclone(self, *args: str) -> str:
        return run(["rclone", *self.flags, *args], self.env)

    def version(self) -> str:
        return self.rclone("version").split()[1].lstrip("v").removesuffix("-DEV")

    def create_bucket(self, bucket: str) -> None:
        self.rclone("mkdir", f"shoal:{bucket}")

    def upload(self, bucket: str, key: str, path: str, metadata: dict[str, str] | None) -> None:
        extra = ["--header-upload", "Content-Type: text/plain"]
        for name, value in (metadata or {}).items():
            extra += ["--metadata", "--metadata-set", f"{name}={value}"]
        self.rclone("copyto", path, f"shoal:{bucket}/{key}", *extra)

    def upload_multipart(self, bucket: str, key: str, path: str) -> None:
        sizes = ["--s3-upload-cutoff", f"{PART_MB}M", "--s3-chunk-size", f"{PART_MB}M"]
        self.rclone("copyto", path, f"shoal:{bucket}/{key}", *sizes)

    def list(self, bucket: str, prefix: str, delimiter: str) -> tuple[list[str], list[str]]:
        assert delimiter == "/", "rclone lsf lists one level"
        names = self.rclone("lsf", f"shoal:{bucket}/{prefix}").splitlines()
        keys = [prefix + n for n in names if not n.endswith("/")]
        return keys, [prefix + n for n in names if n.endswith("/")]

    def read_range(self, bucket: str, key: str, start: int, end: int) -> bytes:
        argv = ["rclone", *self.flags, "cat", f"shoal:{bucket}/{key}"]
        argv += ["--offset", str(start), "--count", str(end - start + 1)]
        done = subprocess.run(argv, env=self.env, capture_output=True, timeout=300)
        assert done.returncode == 0, done.stderr
        return done.stdout

    def copy(self, bucket: str, source: str, destination: str) -> None:
        self.rclone("copyto", f"shoal:{bucket}/{source}", f"shoal:{bucket}/{destination}")

    def metadata(self, bucket: str, key: str) -> dict[str, str]:
        (entry,) = json.loads(self.rclone("lsjson", "--metadata", f"shoal:{bucket}/{key}"))
        return dict(entry["Metadata"])

    def delete_many(self, bucket: str, keys: list[str]) -> None:
        self.rclone("delete", f"shoal:{bucket}")

    def delete_bucket(self, bucket: str) -> None:
        self.rclone("rmdir", f"shoal:{bucket}")


class S3cmdClient:
    """A config file naming the endpoint for host_base and host_bucket (path style)."""

    #: `s3cmd get` has no byte-range option.
    unsupported: frozenset[str] = frozenset({"read_range"})

    def __init__(self, target: dict[str, Any], home: Path) -> None:
        host = target["endpoint"].split("://", 1)[1]
        https = target["endpoint"].startswith("https:")
        lines = [
            "[default]",
            f"access_key = {target['access_key']}",
            f"secret_key = {target['secret_key']}",
            f"host_base = {host}",
            f"host_bucket = {host}",
            f"bucket_location = {target['region']}",
            f"use_https = {https}",
            "check_ssl_certificate = True",
            f"ca_certs_file = {target['ca_file'] or ''}",
            "signature_v2 = False",
            f"multipart_chunk_size_mb = {PART_MB}",
            "preserve_attrs = False",
            "guess_mime_type = False",
            "progress_meter = False",
        ]
        self.config = home / "s3cfg"
        self.config.write_text("\n".join(lines) + "\n")
        self.env = {"PATH": os.environ.get("PATH", ""), "HOME": str(home)}

    def s3cmd(self, *args: str) -> str:
        return run(["s3cmd", "-c", str(self.config), *args], self.env)

    def version(self) -> str:
        return self.s3cmd("--version").split()[-1]

    def create_bucket(self, bucket: str) -> None:
        self.s3cmd("mb", f"s3://{bucket}")

    def upload(self, bucket: str, key: str, path: str, metadata: dict[str, str] | None) -> None:
        extra = ["--mime-type", "text/plain"]
        for name, value in (metadata or {}).items():
            extra.append(f"--add-header=x-amz-meta-{name}:{value}")
        self.s3cmd("put", path, f"s3://{bucket}/{key}", *extra)

    def upload_multipart(self, bucket: str, key: str, path: str) -> None:
        self.s3cmd("put", path, f"s3://{bucket}/{key}")

    def list(self, bucket: str, prefix: str, delimiter: str) -> tuple[list[str], list[str]]:
        assert delimiter == "/", "s3cmd ls lists one level"
        keys, prefixes = [], []
        for line in self.s3cmd("ls", f"s3://{bucket}/{prefix}").splitlines():
            name = line.split(f"s3://{bucket}/", 1)[1]
            (prefixes if line.lstrip().startswith("DIR") else keys).append(name)
        return keys, prefixes

    def read_range(self, bucket: str, key: str, start: int, end: int) -> bytes:
        raise NotImplementedError

    def copy(self, bucket: str, source: str, destination: str) -> None:
        self.s3cmd("cp", f"s3://{bucket}/{source}", f"s3://{bucket}/{destination}")

    def metadata(self, bucket: str, key: str) -> dict[str, str]:
        found = {}
        for line in self.s3cmd("info", f"s3://{bucket}/{key}").splitlines():
            name, _, value = line.strip().partition(":")
            if name.lower().startswith("x-amz-meta-"):
                found[name.lower().removeprefix("x-amz-meta-")] = value.strip()
        return found

    def delete_many(self, bucket: str, keys: list[str]) -> None:
        self.s3cmd("del", "--recursive", "--force", f"s3://{bucket}")

    def delete_bucket(self, bucket: str) -> None:
        self.s3cmd("rb", f"s3://{bucket}")
