"""Keys that stress the on-disk layout: as many segments as a key can have (1,023 empty
ones), "." and ".." segments, one 1,024-byte segment, escapes that triple a key's size.

Each is a legal S3 key: it must be stored, served, listed (with and without a delimiter,
after a marker, under a prefix) and deleted like any other, and while it exists the
bucket's DeleteBucket answers BucketNotEmpty (409) — never a 500. Before the walker was
made iterative, the first key made every listing and DeleteBucket of its bucket a 500
(RecursionError).
"""

from __future__ import annotations

from typing import Any

import botocore.exceptions
import pytest

from tests.integration.conftest import error_code, multipart_put

PATHOLOGICAL = {
    "slashes": "/" * 1023 + "z",
    "dot-segments": "./" * 511 + "zz",
    "dotdot-segments": "../" * 341 + "z",
    "one-segment": "x" * 1024,
    "percents": "%" * 1024,
    "mixed": ("a//./../%/" * 103)[:1023] + "z",
}
for _key in PATHOLOGICAL.values():
    assert len(_key.encode()) == 1024


def listed(s3: Any, bucket: str, **params: Any) -> tuple[list[str], list[str]]:
    page = s3.list_objects_v2(Bucket=bucket, **params)
    keys = [o["Key"] for o in page.get("Contents", [])]
    return keys, [p["Prefix"] for p in page.get("CommonPrefixes", [])]


@pytest.mark.parametrize("key", PATHOLOGICAL.values(), ids=PATHOLOGICAL.keys())
def test_pathological_key_lifecycle(s3: Any, bucket: str, key: str) -> None:
    s3.put_object(Bucket=bucket, Key=key, Body=b"deep")
    s3.put_object(Bucket=bucket, Key="plain", Body=b"p")
    assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == b"deep"
    assert s3.head_object(Bucket=bucket, Key=key)["ContentLength"] == 4

    assert listed(s3, bucket) == (sorted([key, "plain"]), [])
    first = key[: key.index("/") + 1] if "/" in key else None
    assert listed(s3, bucket, Delimiter="/") == (
        sorted(["plain"] + ([] if first else [key])),
        [first] if first else [],
    )
    assert listed(s3, bucket, Prefix=key[:700]) == ([key], [])
    assert listed(s3, bucket, StartAfter=key) == ([k for k in ["plain"] if k > key], [])
    page = s3.list_objects(Bucket=bucket, Marker=key[:-1])
    assert [o["Key"] for o in page.get("Contents", [])] == sorted(
        k for k in [key, "plain"] if k > key[:-1]
    )

    with pytest.raises(botocore.exceptions.ClientError) as info:
        s3.delete_bucket(Bucket=bucket)
    assert error_code(info.value) == "BucketNotEmpty"

    s3.delete_object(Bucket=bucket, Key=key)
    s3.delete_object(Bucket=bucket, Key=key)  # idempotent, as S3
    assert listed(s3, bucket) == (["plain"], [])
    s3.delete_object(Bucket=bucket, Key="plain")
    s3.delete_bucket(Bucket=bucket)


def test_many_deep_keys_in_one_bucket(s3: Any, bucket: str) -> None:
    """Keys nested in one another's directory chains, paged a few at a time."""
    keys = sorted({"/" * depth + "z" for depth in (0, 1, 2, 3, 500, 998, 1021, 1022, 1023)})
    keys += ["/" * 1022 + "zz", "/" * 700 + "./z"]
    keys.sort()
    for key in keys:
        s3.put_object(Bucket=bucket, Key=key, Body=key[-8:].encode())
    seen: list[str] = []
    token: dict[str, str] = {}
    while True:
        page = s3.list_objects_v2(Bucket=bucket, MaxKeys=3, **token)
        seen += [o["Key"] for o in page.get("Contents", [])]
        if not page["IsTruncated"]:
            break
        token = {"ContinuationToken": page["NextContinuationToken"]}
    assert seen == keys
    assert listed(s3, bucket, Delimiter="/") == (["z"], ["/"])
    assert listed(s3, bucket, Prefix="/" * 1022, Delimiter="/") == (
        ["/" * 1022 + "z", "/" * 1022 + "zz"],
        ["/" * 1023],
    )
    s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": k} for k in keys]})
    assert listed(s3, bucket) == ([], [])
    s3.delete_bucket(Bucket=bucket)


def test_key_past_the_limit_is_refused(s3: Any, bucket: str) -> None:
    with pytest.raises(botocore.exceptions.ClientError) as info:
        s3.put_object(Bucket=bucket, Key="/" * 1024 + "z", Body=b"x")
    assert error_code(info.value) == "KeyTooLongError"
    assert listed(s3, bucket) == ([], [])


def test_multipart_and_copy_of_the_deepest_key(s3: Any, bucket: str) -> None:
    key = PATHOLOGICAL["slashes"]
    multipart_put(s3, bucket, key, [b"a" * (5 * 1024 * 1024), b"b"])
    assert s3.head_object(Bucket=bucket, Key=key)["ContentLength"] == 5 * 1024 * 1024 + 1
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    copy = PATHOLOGICAL["dot-segments"]
    s3.copy_object(Bucket=bucket, Key=copy, CopySource={"Bucket": bucket, "Key": key})
    assert s3.get_object(Bucket=bucket, Key=copy, Range="bytes=-2")["Body"].read() == b"ab"
    s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": key}, {"Key": copy}]})
    assert listed(s3, bucket) == ([], [])
    s3.delete_bucket(Bucket=bucket)
