"""The scenario's steps with the minio Python SDK. No region is given, so it asks the
server with GetBucketLocation (`?location`) as it does for its users."""

from __future__ import annotations

from typing import Any

import minio
import urllib3
from minio.commonconfig import CopySource
from minio.deleteobjects import DeleteObject

PART_SIZE = 5 * 1024 * 1024


class MinioClient:
    unsupported: frozenset[str] = frozenset()

    def __init__(self, target: dict[str, Any]) -> None:
        https = target["endpoint"].startswith("https:")
        pool = urllib3.PoolManager(
            cert_reqs="CERT_REQUIRED" if https else "CERT_NONE", ca_certs=target["ca_file"]
        )
        self.client = minio.Minio(
            target["endpoint"].split("://", 1)[1],
            access_key=target["access_key"],
            secret_key=target["secret_key"],
            secure=https,
            http_client=pool,
        )

    def version(self) -> str:
        return str(minio.__version__)

    def create_bucket(self, bucket: str) -> None:
        self.client.make_bucket(bucket)

    def upload(self, bucket: str, key: str, path: str, metadata: dict[str, str] | None) -> None:
        self.client.fput_object(
            bucket, key, path, content_type="text/plain", metadata=dict(metadata or {})
        )

    def upload_multipart(self, bucket: str, key: str, path: str) -> None:
        self.client.fput_object(bucket, key, path, part_size=PART_SIZE)

    def list(self, bucket: str, prefix: str, delimiter: str) -> tuple[list[str], list[str]]:
        assert delimiter == "/", "minio lists with '/' unless recursive"
        keys: list[str] = []
        prefixes: list[str] = []
        for item in self.client.list_objects(bucket, prefix=prefix, recursive=False):
            (prefixes if item.is_dir else keys).append(item.object_name)
        return keys, prefixes

    def read_range(self, bucket: str, key: str, start: int, end: int) -> bytes:
        response = self.client.get_object(bucket, key, offset=start, length=end - start + 1)
        try:
            return bytes(response.read())
        finally:
            response.close()
            response.release_conn()

    def copy(self, bucket: str, source: str, destination: str) -> None:
        self.client.copy_object(bucket, destination, CopySource(bucket, source))

    def metadata(self, bucket: str, key: str) -> dict[str, str]:
        headers = self.client.stat_object(bucket, key).metadata
        prefix = "x-amz-meta-"
        return {
            k.lower()[len(prefix) :]: v for k, v in headers.items() if k.lower().startswith(prefix)
        }

    def delete_many(self, bucket: str, keys: list[str]) -> None:
        errors = list(self.client.remove_objects(bucket, [DeleteObject(k) for k in keys]))
        assert not errors, errors

    def delete_bucket(self, bucket: str) -> None:
        self.client.remove_bucket(bucket)
