"""The scenario's steps with s3fs (fsspec). Run by agent.py in a venv of its own:
aiobotocore pins botocore to a narrow range that would hold the project's boto3 back."""

from __future__ import annotations

from typing import Any

import s3fs

PART_SIZE = 5 * 1024 * 1024


class S3fsClient:
    unsupported: frozenset[str] = frozenset()

    def __init__(self, target: dict[str, Any]) -> None:
        self.fs = s3fs.S3FileSystem(
            key=target["access_key"],
            secret=target["secret_key"],
            endpoint_url=target["endpoint"],
            client_kwargs={"region_name": target["region"], "verify": target["ca_file"] or True},
            config_kwargs={"s3": {"addressing_style": "path"}},
            skip_instance_cache=True,
            use_listings_cache=False,
        )

    def version(self) -> str:
        return str(s3fs.__version__)

    def create_bucket(self, bucket: str) -> None:
        self.fs.mkdir(bucket)

    def upload(self, bucket: str, key: str, path: str, metadata: dict[str, str] | None) -> None:
        extra: dict[str, Any] = {"ContentType": "text/plain"}
        if metadata:
            extra["Metadata"] = metadata
        self.fs.put_file(path, f"{bucket}/{key}", **extra)

    def upload_multipart(self, bucket: str, key: str, path: str) -> None:
        # s3fs goes multipart from twice its chunk size up.
        self.fs.put_file(path, f"{bucket}/{key}", chunksize=PART_SIZE)

    def list(self, bucket: str, prefix: str, delimiter: str) -> tuple[list[str], list[str]]:
        assert delimiter == "/", "fs.ls lists one level"
        keys: list[str] = []
        prefixes: list[str] = []
        for entry in self.fs.ls(f"{bucket}/{prefix}", detail=True, refresh=True):
            name = entry["name"][len(bucket) + 1 :]
            if entry["type"] == "directory":
                prefixes.append(name.rstrip("/") + "/")
            else:
                keys.append(name)
        return keys, prefixes

    def read_range(self, bucket: str, key: str, start: int, end: int) -> bytes:
        return bytes(self.fs.cat_file(f"{bucket}/{key}", start=start, end=end + 1))

    def copy(self, bucket: str, source: str, destination: str) -> None:
        self.fs.copy(f"{bucket}/{source}", f"{bucket}/{destination}")

    def metadata(self, bucket: str, key: str) -> dict[str, str]:
        return dict(self.fs.metadata(f"{bucket}/{key}", refresh=True))

    def delete_many(self, bucket: str, keys: list[str]) -> None:
        self.fs.rm([f"{bucket}/{key}" for key in keys])

    def delete_bucket(self, bucket: str) -> None:
        self.fs.rmdir(bucket)

    def rm_recursive(self, bucket: str, prefix: str) -> None:
        self.fs.rm(f"{bucket}/{prefix}", recursive=True)
