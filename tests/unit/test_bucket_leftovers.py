"""A bucket deletion cut off by a crash after the bucket itself went (its folder, or its
record on the erasure drives) leaves its policy, documents and versions behind; a bucket
made again under that name starts without them, in both stores."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from shoal.storage.backend import ObjectWrite
from shoal.storage.erasure.store import ErasureStore
from shoal.storage.errors import NoSuchBucketDocument, NoSuchBucketPolicy
from shoal.storage.filestore import FileStore
from tests.unit.conftest import chunks

pytestmark = pytest.mark.anyio


async def test_filestore(tmp_path: Path) -> None:
    fs = FileStore(str(tmp_path))
    await fs.open()
    try:
        await fs.create_bucket("b")
        await fs.update_bucket("b", versioning="Enabled")
        await fs.put_object("b", "k", chunks(b"old"), ObjectWrite())
        await fs.delete_object("b", "k")  # a marker: the old version lives in .versions
        await fs.put_bucket_policy("b", '{"Version": "2012-10-17", "Statement": []}')
        await fs.put_bucket_document("b", "cors", "<CORSConfiguration/>")
        # The deletion's first steps only: the folder and the record are gone.
        os.rename(tmp_path / "b", tmp_path / "b.gone")
        os.unlink(fs.buckets.path("b"))
        fs.buckets.forget("b")
        await fs.create_bucket("b")
        with pytest.raises(NoSuchBucketPolicy):
            await fs.get_bucket_policy("b")
        with pytest.raises(NoSuchBucketDocument):
            await fs.get_bucket_document("b", "cors")
        assert (await fs.list_object_versions("b")).versions == []
    finally:
        await fs.close()


async def test_erasure_store(tmp_path: Path) -> None:
    store = ErasureStore([str(tmp_path / f"d{i}") for i in range(6)], chunk_size=65536)
    await store.open()
    try:
        await store.create_bucket("b")
        await store.put_object("b", "k", chunks(b"old"), ObjectWrite())
        await store.put_bucket_policy("b", '{"Version": "2012-10-17", "Statement": []}')
        await store.put_bucket_document("b", "cors", "<CORSConfiguration/>")
        # The deletion's first step only: the bucket record is gone from every drive.
        await store.buckets.write("buckets/b.json", None, "bucket b")
        store.buckets.forget("b")
        await store.create_bucket("b")
        with pytest.raises(NoSuchBucketPolicy):
            await store.get_bucket_policy("b")
        with pytest.raises(NoSuchBucketDocument):
            await store.get_bucket_document("b", "cors")
        assert (await store.list_objects("b")).objects == []
    finally:
        await store.close()
