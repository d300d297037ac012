"""Growing a cluster by pools: the view's arithmetic and where keys go."""

from __future__ import annotations

from collections import Counter

import pytest
import xxhash

from shoal.cluster.membership import View, form_view, grow_view
from shoal.storage.erasure.versions import placement


def test_one_pool_places_keys_as_before_pools_existed() -> None:
    for i in range(200):
        where = placement("b", f"key{i}", [3], 6)
        h = xxhash.xxh64_intdigest(f"b\0key{i}".encode())
        assert where.candidates == (h % 3,) and where.home == h % 3
        assert where.rot == (h >> 32) % 6


def test_each_pool_offers_one_candidate_and_new_keys_spread_by_set_count() -> None:
    pools = [2, 1, 3]  # sets 0-1, 2, 3-5
    homes: Counter[int] = Counter()
    for i in range(6000):
        where = placement("bkt", f"k/{i}", pools, 6)
        first, second, third = where.candidates
        assert 0 <= first < 2 and second == 2 and 3 <= third < 6
        assert where.home in where.candidates
        # The key's set within an older pool never changes when pools are added.
        assert placement("bkt", f"k/{i}", pools[:1], 6).candidates == (first,)
        assert placement("bkt", f"k/{i}", pools[:2], 6).rot == where.rot
        homes[where.home] += 1
    # Every set takes about an equal share of new keys (1000 each, wide margins).
    assert all(800 < homes[s] < 1200 for s in range(6)), homes


def test_a_joining_node_adds_a_pool_of_its_own_sets() -> None:
    view = form_view(
        [("a", "127.0.0.1:1", 2), ("b", "127.0.0.1:2", 2), ("c", "127.0.0.1:3", 2)], 4, 2
    )
    assert view.pools == [1]
    grown = grow_view(view, "d", "127.0.0.1:4", 12)
    assert grown.version == view.version + 1 and grown.cluster_id == view.cluster_id
    assert grown.pools == [1, 2] and grown.sets[:1] == view.sets
    assert [{node for node, _ in members} for members in grown.sets[1:]] == [{"d"}, {"d"}]
    assert sorted(d for members in grown.sets[1:] for _, d in members) == sorted(
        grown.nodes["d"].drives
    )
    assert View.from_dict(grown.to_dict()) == grown
    with pytest.raises(ValueError, match="cannot join: 4 drives cannot form sets of 6"):
        grow_view(view, "e", "127.0.0.1:5", 4)


def test_a_view_saved_before_pools_is_one_pool() -> None:
    view = form_view([("a", "x:1", 6)], 4, 2)
    saved = view.to_dict()
    del saved["pools"]
    assert View.from_dict(saved).pools == [1]
