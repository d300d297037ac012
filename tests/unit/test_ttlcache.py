"""storage/ttlcache.py: entries expire, forget works, and the map stays bounded."""

from __future__ import annotations

import time

from shoal.storage.ttlcache import TtlCache


def test_entries_expire_and_can_be_forgotten(monkeypatch) -> None:
    clock = [100.0]
    monkeypatch.setattr(time, "monotonic", lambda: clock[0])
    cache: TtlCache[str, int] = TtlCache(1.0)
    cache.put("a", 1)
    cache.put("b", 2)
    assert (cache.get("a"), cache.get("b"), cache.get("c")) == (1, 2, None)
    cache.forget("b")
    assert cache.get("b") is None
    clock[0] += 1.5
    assert cache.get("a") is None and len(cache) == 0


def test_bounded_whatever_is_asked(monkeypatch) -> None:
    clock = [0.0]
    monkeypatch.setattr(time, "monotonic", lambda: clock[0])
    cache: TtlCache[int, int] = TtlCache(10.0, max_entries=100)
    for i in range(1000):
        cache.put(i, i)
        clock[0] += 0.01
        assert len(cache) <= 100
    assert cache.get(999) == 999
