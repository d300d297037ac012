"""boto3 at the newest release: with its default checksums (CRC32 on every upload, as
aws-chunked trailers over HTTPS) and with request_checksum_calculation="when_required"."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.compat.clients.boto3_client import Boto3Client
from tests.compat.scenario import STEPS, Files, Target, new_bucket_name, run_scenario


@pytest.mark.parametrize("checksums", ["when_supported", "when_required"])
def test_scenario(
    checksums: str, target: Target, verifier: Any, tmp_path: Path, cleanup_buckets: list[str]
) -> None:
    client = Boto3Client(
        target.as_dict(),
        request_checksum_calculation=checksums,
        response_checksum_validation=checksums,
    )
    bucket = new_bucket_name("boto3")
    cleanup_buckets.append(bucket)
    report = run_scenario(client, verifier, bucket, Files.make(tmp_path))
    assert report.ran == list(STEPS)
