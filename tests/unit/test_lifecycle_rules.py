"""storage/lifecycle: the pure parts — day arithmetic, filters, the worker's decisions,
the stored JSON form, pacing and which node runs a bucket."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shoal.storage.lifecycle import rules
from shoal.storage.lifecycle.ownership import ByMembership, OneProcess, owner
from shoal.storage.lifecycle.pace import Pace
from shoal.storage.lifecycle.rules import (
    Configuration,
    Expiration,
    Filter,
    NoncurrentExpiration,
    Rule,
)

T0 = datetime(2014, 1, 15, 10, 30, tzinfo=UTC)
DAY = 86400

times = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
)


def test_due_is_the_next_midnight_after_the_days() -> None:
    # S3's own example: created 1/15/2014 10:30 UTC, Days = 3 -> 1/19/2014 00:00 UTC.
    assert rules.due(T0, 3) == datetime(2014, 1, 19, tzinfo=UTC)
    # Created exactly at midnight still rounds to the *next* midnight.
    assert rules.due(datetime(2014, 1, 15, tzinfo=UTC), 1) == datetime(2014, 1, 17, tzinfo=UTC)


@given(start=times, days=st.integers(1, 3650), day=st.sampled_from([1, 2, 60, DAY]))
def test_due_properties(start: datetime, days: int, day: int) -> None:
    when = rules.due(start, days, day)
    assert when.timestamp() % day == 0  # a "midnight"
    assert start + timedelta(seconds=days * day) < when  # strictly after creation + days
    assert when <= start + timedelta(seconds=(days + 1) * day)  # by at most one more day


tag_pairs = st.lists(
    st.tuples(st.text("abc", min_size=1, max_size=3), st.text("xy", max_size=2)),
    max_size=3,
    unique_by=lambda t: t[0],
)


@given(
    prefix=st.text("ab/", max_size=3),
    key=st.text("ab/", max_size=5),
    size=st.integers(0, 100),
    gt=st.none() | st.integers(0, 100),
    lt=st.none() | st.integers(0, 100),
    wanted=tag_pairs,
    tags=st.dictionaries(st.text("abc", min_size=1, max_size=3), st.text("xy", max_size=2)),
)
def test_filter_matches_every_predicate(
    prefix: str,
    key: str,
    size: int,
    gt: int | None,
    lt: int | None,
    wanted: list[tuple[str, str]],
    tags: dict[str, str],
) -> None:
    f = Filter(prefix, tuple(wanted), gt, lt, "and")
    expected = (
        key.startswith(prefix)
        and (gt is None or size > gt)
        and (lt is None or size < lt)
        and all(tags.get(k) == v for k, v in wanted)
    )
    assert f.matches(key, size, tags) == expected
    # Tags unknown (a listing): the tag predicates are taken to hold, never the others.
    assert f.matches(key, size, None) == f.matches(key, size, dict(wanted))


def _config(*rule_list: Rule) -> Configuration:
    return Configuration(tuple(rule_list))


def test_current_expiry_and_header_pick_the_earliest_enabled_rule() -> None:
    config = _config(
        Rule("late", True, Filter(), Expiration(days=10)),
        Rule("soon", True, Filter(prefix="logs/", form="prefix"), Expiration(days=2)),
        Rule("off", False, Filter(), Expiration(days=1)),
        Rule("dated", True, Filter(tags=(("t", "1"),), form="tag"), Expiration(date=T0)),
    )
    found = rules.object_expiration(config, "logs/a", 1, {}, T0, DAY)
    assert found == (datetime(2014, 1, 18, tzinfo=UTC), "soon")
    assert rules.object_expiration(config, "other", 1, {}, T0, DAY)[1] == "late"  # type: ignore[index]
    assert rules.object_expiration(config, "other", 1, {"t": "1"}, T0, DAY) == (T0, "dated")
    before, after = datetime(2014, 1, 17, 23, tzinfo=UTC), datetime(2014, 1, 18, tzinfo=UTC)
    assert rules.current_expired(config, "logs/a", 1, {}, T0, before, DAY) is None
    assert rules.current_expired(config, "logs/a", 1, {}, T0, after, DAY) == "soon"
    assert rules.object_expiration(_config(), "k", 1, {}, T0, DAY) is None


@given(
    newer=st.integers(0, 10),
    keep=st.none() | st.integers(1, 10),
    age_days=st.integers(0, 10),
    days=st.integers(1, 5),
)
def test_noncurrent_keeps_the_newest_and_waits_the_days(
    newer: int, keep: int | None, age_days: int, days: int
) -> None:
    config = _config(Rule("n", True, Filter(), noncurrent=NoncurrentExpiration(days, keep)))
    since = T0
    now = T0 + timedelta(days=age_days)
    got = rules.noncurrent_expired(config, "k", 1, {}, since, newer, now, DAY)
    expected = (keep is None or newer >= keep) and rules.due(since, days) <= now
    assert (got == "n") == expected


def test_markers_and_uploads() -> None:
    config = _config(
        Rule(
            "m",
            True,
            Filter(prefix="a", form="prefix"),
            Expiration(expired_object_delete_marker=True),
        ),
        Rule("d", True, Filter(prefix="b", form="prefix"), Expiration(days=2)),
        Rule("u", True, Filter(prefix="c", form="prefix"), abort_days=1),
    )
    now = T0 + timedelta(days=1)
    assert rules.marker_expired(config, "a1", T0, now, DAY) == "m"
    assert rules.marker_expired(config, "b1", T0, now, DAY) is None  # not 2 days old yet
    assert rules.marker_expired(config, "b1", T0, T0 + timedelta(days=3), DAY) == "d"
    assert rules.marker_expired(config, "c1", T0, now, DAY) is None
    assert rules.upload_expired(config, "c1", T0, now, DAY) is None
    assert rules.upload_expired(config, "c1", T0, now + timedelta(days=1), DAY) == "u"
    assert rules.upload_expired(config, "a1", T0, now + timedelta(days=9), DAY) is None


filters = st.builds(
    Filter,
    prefix=st.text(max_size=5),
    tags=st.lists(st.tuples(st.text(max_size=3), st.text(max_size=3)), max_size=2).map(tuple),
    size_greater_than=st.none() | st.integers(0, 10**12),
    size_less_than=st.none() | st.integers(0, 10**12),
    form=st.sampled_from(rules.FILTER_FORMS),
)
midnights = st.dates(min_value=datetime(2000, 1, 1).date()).map(
    lambda d: datetime(d.year, d.month, d.day, tzinfo=UTC)
)
rule_strategy = st.builds(
    Rule,
    id=st.text(max_size=10),
    enabled=st.booleans(),
    filter=filters,
    expiration=st.none()
    | st.builds(
        Expiration,
        days=st.none() | st.integers(1, 1000),
        date=st.none() | midnights,
        expired_object_delete_marker=st.none() | st.booleans(),
    ),
    noncurrent=st.none()
    | st.builds(NoncurrentExpiration, st.integers(1, 100), st.none() | st.integers(1, 100)),
    abort_days=st.none() | st.integers(1, 100),
)


@given(st.lists(rule_strategy, max_size=4))
def test_json_round_trip(rule_list: list[Rule]) -> None:
    config = Configuration(tuple(rule_list))
    assert rules.from_json(rules.to_json(config)) == config


def test_json_refuses_unknown_versions() -> None:
    with pytest.raises(ValueError):
        rules.from_json('{"version": 2, "rules": []}')


@given(
    bucket=st.text(min_size=1, max_size=20),
    nodes=st.lists(
        st.text("abcdef0123", min_size=1, max_size=6), min_size=2, max_size=6, unique=True
    ),
)
def test_one_owner_and_only_its_buckets_move(bucket: str, nodes: list[str]) -> None:
    chosen = owner(bucket, nodes)
    assert chosen in nodes
    assert owner(bucket, list(reversed(nodes))) == chosen  # order does not matter
    others = [n for n in nodes if n != chosen]
    # Another node going away leaves the bucket where it is.
    assert owner(bucket, [n for n in nodes if n != others[0]]) == chosen


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


@pytest.mark.anyio
async def test_pace_bounds_operations_per_second() -> None:
    clock = _Clock()
    pace = Pace(50, clock=clock, sleep=clock.sleep)
    for _ in range(500):
        await pace.take()
    # 500 operations at 50/s take about 10 s of (fake) time, never less.
    assert 9.9 <= clock.now <= 10.1
    with pytest.raises(ValueError):
        Pace(0)


@dataclass
class View:
    nodes: dict[str, object]


@dataclass
class Members:
    """Membership's shape as data: this node, the view, and who it declared offline."""

    node_id: str
    view: View | None
    offline: set[str]

    def reachable(self, node_id: str) -> bool:
        return node_id not in self.offline


def test_exactly_one_member_runs_each_bucket() -> None:
    ids = ["node0", "node1", "node2"]
    view = View({n: None for n in ids})
    buckets = [f"bucket-{i}" for i in range(200)]
    runners = {
        b: [n for n in ids if ByMembership(Members(n, view, set())).runs(b)] for b in buckets
    }
    assert all(len(r) == 1 for r in runners.values())
    assert {r[0] for r in runners.values()} == set(ids)  # the work is spread
    # node2 goes offline (as the others see it): its buckets move, the others stay.
    for bucket, (was,) in runners.items():
        now = [n for n in ids[:2] if ByMembership(Members(n, view, {"node2"})).runs(bucket)]
        assert now == ([was] if was != "node2" else now) and len(now) == 1
    # A node with no view yet runs everything it is asked about.
    assert ByMembership(Members("solo", None, set())).runs("any")


@given(
    prefixes=st.lists(st.text("ab/", max_size=4), max_size=5),
    aborts=st.lists(st.booleans(), min_size=5, max_size=5),
    key=st.text("ab/", max_size=6),
)
def test_walk_prefixes_cover_every_rule_and_never_overlap(
    prefixes: list[str], aborts: list[bool], key: str
) -> None:
    rule_list = [
        Rule(
            f"r{i}",
            True,
            Filter(prefix=p, form="prefix"),
            abort_days=1 if aborts[i] else None,
            expiration=None if aborts[i] else Expiration(days=1),
        )
        for i, p in enumerate(prefixes)
    ]
    config = Configuration(tuple(rule_list))
    for uploads in (False, True):
        walked = rules.walk_prefixes(config, uploads=uploads)
        assert walked == sorted(walked)
        assert not any(b.startswith(a) for a, b in itertools.pairwise(walked))
        acting = [r for r in rule_list if (r.abort_days is not None) == uploads]
        # A key some rule covers is under exactly one walked prefix; no others are walked.
        covered = any(key.startswith(r.filter.prefix) for r in acting)
        assert sum(key.startswith(p) for p in walked) == (1 if covered else 0)


def test_one_process_per_data_directory(tmp_path: Path) -> None:
    """Several uvicorn workers over one directory: the lock holder runs the passes; when
    it lets go, the next to try takes over."""
    path = str(tmp_path / ".lifecycle.lock")
    first, second = OneProcess(path), OneProcess(path)
    first.refresh()
    second.refresh()
    assert first.runs("b") and not second.runs("b")
    first.release()
    second.refresh()
    assert second.runs("b") and not first.runs("b")
    first.refresh()
    assert not first.runs("b")
    second.release()
