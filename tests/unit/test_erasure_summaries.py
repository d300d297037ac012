"""The drives' listing caches (storage.erasure.summaries): a second listing reads no
record again, and whatever changes a key — an overwrite, a delete, a version, a write
that only some drives took, a deleted and re-created bucket — is listed as it now is.

The set-up is test_erasure_store's: one 4+2 set with 64 KiB chunks, FaultyDrive between
each LocalDrive and its health tracking, healing run when a test asks.
"""

from __future__ import annotations

import hashlib

import pytest

from shoal.storage.erasure.records import RecordSummary
from shoal.storage.erasure.summaries import RecordCache, SummaryCache
from tests.unit.test_erasure_store import BUCKET, Cluster, N, body, cluster, put

pytestmark = pytest.mark.anyio

__all__ = ["cluster"]  # the fixture, imported for this module's tests


async def listed(c: Cluster) -> dict[str, str]:
    """Every key of the bucket with its ETag, paging 3 keys at a time."""
    out: dict[str, str] = {}
    after = ""
    for _ in range(100):
        page = await c.store.list_objects(BUCKET, after=after, max_keys=3)
        out |= {o.key: o.etag for o in page.objects}
        if not page.truncated or page.last is None:
            return out
        after = page.last
    raise AssertionError("listing did not end")


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


async def test_a_second_listing_reads_no_record(cluster: Cluster) -> None:
    c = cluster
    bodies = {f"d/k{i}": body(100 + i, seed=i) for i in range(10)}
    for key, data in bodies.items():
        await put(c.store, key, data)
    want = {key: md5(data) for key, data in bodies.items()}
    assert await listed(c) == want
    assert all(len(d.records.summaries) == len(bodies) for d in c.local)
    misses = [d.records.summaries.misses for d in c.local]
    assert await listed(c) == want
    assert [d.records.summaries.misses for d in c.local] == misses


async def test_changes_are_listed_as_they_are(cluster: Cluster) -> None:
    c = cluster
    for i in range(6):
        await put(c.store, f"k{i}", body(50, seed=i))
    await listed(c)  # every drive now remembers them
    new = body(70, seed=99)
    await put(c.store, "k1", new)
    await c.store.delete_object(BUCKET, "k2")
    await put(c.store, "k9", body(10, seed=9))
    got = await listed(c)
    assert got["k1"] == md5(new) and "k2" not in got and "k9" in got
    # A write one drive missed: the others' newer entry is what is listed.
    c.fail_commit(c.pos("k3", 0))
    newer = body(80, seed=98)
    await put(c.store, "k3", newer)
    c.clear()
    assert (await listed(c))["k3"] == md5(newer)
    # A deleted and re-created bucket lists none of the old keys.
    for key in list(await listed(c)):
        await c.store.delete_object(BUCKET, key)
    await c.store.delete_bucket(BUCKET)
    await c.store.create_bucket(BUCKET)
    assert await listed(c) == {}
    await put(c.store, "k1", body(5, seed=5))
    assert await listed(c) == {"k1": md5(body(5, seed=5))}


async def test_a_versioned_bucket_lists_its_current_versions(cluster: Cluster) -> None:
    c = cluster
    await c.store.update_bucket(BUCKET, versioning="Enabled")
    await put(c.store, "v", body(10, seed=1))
    assert (await listed(c))["v"] == md5(body(10, seed=1))
    await put(c.store, "v", body(20, seed=2))
    assert (await listed(c))["v"] == md5(body(20, seed=2))
    await c.store.delete_object(BUCKET, "v")  # a delete marker
    assert "v" not in await listed(c)


def summary(vid: str) -> list[RecordSummary]:
    return [RecordSummary(vid, vid, False, 1, "e", None, "STANDARD")]


def test_a_summary_read_across_a_change_is_not_kept() -> None:
    cache = SummaryCache(size=2)
    seen = cache.generation
    cache.forget("/r/a")  # a write replaced some record while a page read "a"
    cache.put("/r/a", seen, summary("old"))
    assert cache.get("/r/a") is None
    cache.put("/r/a", cache.generation, summary("new"))
    assert cache.get("/r/a") == summary("new")
    for name in "bc":
        cache.put(f"/r/{name}", cache.generation, summary(name))
    assert cache.get("/r/a") is None and len(cache) == 2  # bounded: the oldest went
    cache.clear()
    assert len(cache) == 0


def test_a_weighed_cache_keeps_its_size_in_weight() -> None:
    """The newest-entries cache weighs records by their bytes: the least recently used
    go until the rest fit, and a re-put item counts once."""
    cache: RecordCache[str] = RecordCache(size=100)
    cache.put("/r/a", cache.generation, "a", weight=60)
    cache.put("/r/a", cache.generation, "a2", weight=60)  # replaces, not adds
    assert cache.get("/r/a") == "a2"
    cache.put("/r/b", cache.generation, "b", weight=30)
    assert len(cache) == 2
    cache.put("/r/c", cache.generation, "c", weight=30)  # 120 > 100: "a" goes
    assert cache.get("/r/a") is None and cache.get("/r/b") == "b"
    cache.forget("/r/b")
    cache.put("/r/d", cache.generation, "d", weight=70)  # fits once b's weight is gone
    assert cache.get("/r/c") == "c" and cache.get("/r/d") == "d"
    cache.put("/r/e", cache.generation, "e", weight=500)  # heavier than the whole cache
    assert len(cache) == 0


async def test_every_drive_has_its_own_cache(cluster: Cluster) -> None:
    assert len({id(d.records.summaries) for d in cluster.local}) == N


async def test_a_key_any_one_drive_missed_is_listed_as_the_others_have_it(
    cluster: Cluster,
) -> None:
    """Pages ask k drives first (storage.erasure.listing): whichever drive missed a
    write or a delete, the page is what a read quorum of all six says."""
    c = cluster
    for p in range(N):
        key = f"p{p}"
        await put(c.store, key, body(10, seed=p))
        c.fail_commit(p)  # p misses the overwrite
        await put(c.store, key, body(20, seed=p))
        c.clear()
        assert (await listed(c))[key] == md5(body(20, seed=p))
        gone = f"gone{p}"
        await put(c.store, gone, body(5, seed=p))
        c.fail_commit(p)  # p keeps the key the others delete
        await c.store.delete_object(BUCKET, gone)
        c.clear()
        assert gone not in await listed(c)
        half = f"half{p}"
        c.fail_commit(p)  # a new key on five drives: listed
        await put(c.store, half, body(7, seed=p))
        c.clear()
        assert (await listed(c))[half] == md5(body(7, seed=p))
