"""UploadPart, CompleteMultipartUpload and AbortMultipartUpload of one upload, raced.

A fuzzer found the erasure store answering 503 "Not enough drives to write" when a
Complete removed the upload's folder under a racing Complete's links or a part's shard
writes. S3's answers: one Complete wins (200), the other gets NoSuchUpload; parts sent
before it succeed, after it NoSuchUpload — never a 5xx — and nothing of the upload is
left on the drives.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.integration.conftest import error_code, wait_for

BODY = b"hello"
ETAG = f'"{hashlib.md5(BODY).hexdigest()}"'
ROUNDS = 8


def attempt(call: Callable[[], Any]) -> str:
    """The answer: "200" or the S3 error code; a 5xx fails the test with its message."""
    try:
        call()
    except ClientError as exc:
        status = exc.response["ResponseMetadata"]["HTTPStatusCode"]
        assert status < 500, exc.response["Error"]
        return error_code(exc)
    return "200"


def upload_folders(config: dict, bucket: str) -> list[Path]:
    """What the erasure node's drives hold of the bucket's uploads."""
    drives = config.get("cluster", {}).get("drives", {}).get("paths", [])
    folders = (Path(d) / ".smartstorage" / "multipart" / bucket for d in drives)
    return [upload for folder in folders if folder.is_dir() for upload in folder.iterdir()]


@pytest.mark.parametrize("ender", ["complete", "abort"])
def test_parts_and_completions_racing_never_answer_5xx(
    s3: Any, bucket: str, shoal_config: dict, ender: str
) -> None:
    parts = {"Parts": [{"PartNumber": 1, "ETag": ETAG}]}
    seen: Counter[str] = Counter()

    with ThreadPoolExecutor(5) as pool:
        for _ in range(ROUNDS):
            upload = s3.create_multipart_upload(Bucket=bucket, Key="mp")["UploadId"]
            ids = {"Bucket": bucket, "Key": "mp", "UploadId": upload}
            s3.upload_part(**ids, PartNumber=1, Body=BODY)

            def put_part(ids: dict[str, str] = ids) -> str:
                return attempt(lambda: s3.upload_part(**ids, PartNumber=1, Body=BODY))

            def end(ids: dict[str, str] = ids) -> str:
                if ender == "abort":
                    return attempt(lambda: s3.abort_multipart_upload(**ids))
                return attempt(lambda: s3.complete_multipart_upload(**ids, MultipartUpload=parts))

            puts = [pool.submit(put_part) for _ in range(3)]
            ends = [pool.submit(end) for _ in range(2)]
            answers = [f.result() for f in puts + ends]
            assert set(answers) <= {"200", "NoSuchUpload"}, answers
            seen.update(answers)
            # Exactly one of the two Aborts ended the upload; of two Completes with the
            # same parts, the second answers the first's result (S3 is idempotent here).
            wanted = ["200", "NoSuchUpload"] if ender == "abort" else ["200", "200"]
            assert sorted(f.result() for f in ends) == wanted
            assert attempt(lambda ids=ids: s3.list_parts(**ids)) == "NoSuchUpload"
            if ender == "complete":
                got = s3.get_object(Bucket=bucket, Key="mp")
                assert got["Body"].read() == BODY
                assert got["ETag"] == f'"{hashlib.md5(bytes.fromhex(ETAG[1:-1])).hexdigest()}-1"'

    if ender == "abort":
        assert seen["NoSuchUpload"] >= ROUNDS  # the losing Abort of every round
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    # Parts refused after the upload ended leave nothing behind once their cleanup ran.
    wait_for("no upload folder is left", lambda: not upload_folders(shoal_config, bucket))
