"""Concurrent writers to one key never produce a torn object; readers always see a
body that matches its own ETag."""

from __future__ import annotations

import hashlib
from concurrent.futures import ThreadPoolExecutor


def body_for(writer: int, round_: int) -> bytes:
    seed = hashlib.sha256(f"{writer}:{round_}".encode()).digest()
    return seed * (20_000 + writer * 3_000)  # 640 KB .. 1.3 MB


def test_concurrent_writers_and_readers_one_key(s3, bucket):
    s3.put_object(Bucket=bucket, Key="hot", Body=b"start")
    written: set[str] = {hashlib.md5(b"start").hexdigest()}

    def write(writer: int) -> None:
        for round_ in range(4):
            data = body_for(writer, round_)
            written.add(hashlib.md5(data).hexdigest())
            put = s3.put_object(Bucket=bucket, Key="hot", Body=data)
            assert put["ETag"].strip('"') == hashlib.md5(data).hexdigest()

    def read(_: int) -> list[tuple[str, str]]:
        seen = []
        for _round in range(12):
            got = s3.get_object(Bucket=bucket, Key="hot")
            seen.append((got["ETag"].strip('"'), hashlib.md5(got["Body"].read()).hexdigest()))
        return seen

    with ThreadPoolExecutor(12) as pool:
        writers = [pool.submit(write, w) for w in range(6)]
        readers = [pool.submit(read, r) for r in range(6)]
        for future in writers:
            future.result()
        observations = [pair for future in readers for pair in future.result()]

    for etag, md5 in observations:
        assert etag == md5, "a reader saw bytes from one version and metadata from another"
        assert md5 in written
    final = s3.get_object(Bucket=bucket, Key="hot")
    assert hashlib.md5(final["Body"].read()).hexdigest() == final["ETag"].strip('"')


def test_parallel_uploads_distinct_keys(s3, bucket):
    def put(i: int) -> None:
        s3.put_object(Bucket=bucket, Key=f"p/{i:03d}", Body=str(i).encode() * 100)

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(put, range(200)))
    keys = [
        o["Key"]
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket)
        for o in page.get("Contents", [])
    ]
    assert keys == [f"p/{i:03d}" for i in range(200)]
