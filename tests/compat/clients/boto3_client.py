"""The scenario's steps with boto3 (any release: also run by agent.py in a venv with an
old boto3, so it imports nothing from the project)."""

from __future__ import annotations

from typing import Any

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config

PART_SIZE = 5 * 1024 * 1024


class Boto3Client:
    unsupported: frozenset[str] = frozenset()

    def __init__(self, target: dict[str, Any], **config: Any) -> None:
        self.s3 = boto3.client(
            "s3",
            endpoint_url=target["endpoint"],
            aws_access_key_id=target["access_key"],
            aws_secret_access_key=target["secret_key"],
            region_name=target["region"],
            verify=target["ca_file"] or True,
            config=Config(s3={"addressing_style": "path"}, **config),
        )

    def version(self) -> str:
        return str(boto3.__version__)

    def create_bucket(self, bucket: str) -> None:
        self.s3.create_bucket(Bucket=bucket)

    def upload(self, bucket: str, key: str, path: str, metadata: dict[str, str] | None) -> None:
        with open(path, "rb") as body:
            self.s3.put_object(
                Bucket=bucket, Key=key, Body=body, Metadata=metadata or {}, ContentType="text/plain"
            )

    def upload_multipart(self, bucket: str, key: str, path: str) -> None:
        config = TransferConfig(multipart_threshold=PART_SIZE, multipart_chunksize=PART_SIZE)
        self.s3.upload_file(path, bucket, key, Config=config)

    def list(self, bucket: str, prefix: str, delimiter: str) -> tuple[list[str], list[str]]:
        keys: list[str] = []
        prefixes: list[str] = []
        pages = self.s3.get_paginator("list_objects_v2").paginate(
            Bucket=bucket, Prefix=prefix, Delimiter=delimiter, PaginationConfig={"PageSize": 1}
        )
        for page in pages:
            keys += [o["Key"] for o in page.get("Contents", [])]
            prefixes += [p["Prefix"] for p in page.get("CommonPrefixes", [])]
        return keys, prefixes

    def read_range(self, bucket: str, key: str, start: int, end: int) -> bytes:
        got = self.s3.get_object(Bucket=bucket, Key=key, Range=f"bytes={start}-{end}")
        return bytes(got["Body"].read())

    def copy(self, bucket: str, source: str, destination: str) -> None:
        self.s3.copy_object(
            Bucket=bucket, Key=destination, CopySource={"Bucket": bucket, "Key": source}
        )

    def metadata(self, bucket: str, key: str) -> dict[str, str]:
        return dict(self.s3.head_object(Bucket=bucket, Key=key)["Metadata"])

    def delete_many(self, bucket: str, keys: list[str]) -> None:
        answer = self.s3.delete_objects(
            Bucket=bucket, Delete={"Objects": [{"Key": k} for k in keys]}
        )
        assert not answer.get("Errors"), answer["Errors"]
        assert sorted(d["Key"] for d in answer["Deleted"]) == sorted(keys)

    def delete_bucket(self, bucket: str) -> None:
        self.s3.delete_bucket(Bucket=bucket)
