"""A bucket's lifecycle configuration as frozen records, their stored JSON form, and the
pure decisions the worker and GET/HEAD make from them.

Days are counted as S3 counts them: an object created at T with `Days = n` expires at
the first midnight UTC after T + n days (S3: "rounding the resulting time to the next
day midnight UTC"). `day_seconds` stands in for the 86,400 seconds of a day, so tests
can run a day in a second; "midnight" is then the next multiple of `day_seconds` since
the epoch. A noncurrent version's days count from when it became noncurrent: the
last-modified time of the version that replaced it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

DAY_SECONDS = 86400

#: How a rule named its filter, so GET gives back the form PUT used: the legacy
#: top-level <Prefix>, an empty <Filter/>, one predicate, or <And>.
FILTER_FORMS = ("legacy", "empty", "prefix", "tag", "gt", "lt", "and")


@dataclass(frozen=True)
class Filter:
    """Which objects a rule applies to: every predicate set must hold."""

    prefix: str = ""
    tags: tuple[tuple[str, str], ...] = ()
    size_greater_than: int | None = None  # bytes: size > this
    size_less_than: int | None = None  # bytes: size < this
    form: str = "empty"  # one of FILTER_FORMS

    def matches(self, key: str, size: int, tags: Mapping[str, str] | None) -> bool:
        """`tags` None: not known yet (a listing carries none); the tag predicates are
        then taken to hold, and the caller checks again once it has the version."""
        if not key.startswith(self.prefix):
            return False
        if self.size_greater_than is not None and not size > self.size_greater_than:
            return False
        if self.size_less_than is not None and not size < self.size_less_than:
            return False
        if tags is None:
            return True
        return all(tags.get(k) == v for k, v in self.tags)


@dataclass(frozen=True)
class Expiration:
    days: int | None = None
    date: datetime | None = None  # midnight UTC
    #: None: absent from the document; False is kept as given (S3 echoes it).
    expired_object_delete_marker: bool | None = None


@dataclass(frozen=True)
class NoncurrentExpiration:
    noncurrent_days: int
    newer_noncurrent_versions: int | None = None  # how many noncurrent versions to keep


@dataclass(frozen=True)
class Rule:
    id: str
    enabled: bool
    filter: Filter = field(default_factory=Filter)
    expiration: Expiration | None = None
    noncurrent: NoncurrentExpiration | None = None
    abort_days: int | None = None  # AbortIncompleteMultipartUpload DaysAfterInitiation

    @property
    def acts_on_objects(self) -> bool:
        return self.expiration is not None or self.noncurrent is not None


@dataclass(frozen=True)
class Configuration:
    rules: tuple[Rule, ...]

    @property
    def enabled(self) -> tuple[Rule, ...]:
        return tuple(r for r in self.rules if r.enabled)


# ---------------------------------------------------------------- stored form


def to_json(config: Configuration) -> str:
    """The stored form: JSON any layer can read back without the S3 XML parser."""
    return json.dumps({"version": 1, "rules": [_rule_dict(r) for r in config.rules]})


def from_json(text: str) -> Configuration:
    """Inverse of to_json; ValueError (or KeyError/TypeError) on anything else."""
    data = json.loads(text)
    if data.get("version") != 1:
        raise ValueError(f"unknown lifecycle record version {data.get('version')!r}")
    return Configuration(tuple(_rule_from(d) for d in data["rules"]))


def _rule_dict(rule: Rule) -> dict[str, Any]:
    f = rule.filter
    out: dict[str, Any] = {
        "id": rule.id,
        "enabled": rule.enabled,
        "filter": {
            "prefix": f.prefix,
            "tags": [list(t) for t in f.tags],
            "gt": f.size_greater_than,
            "lt": f.size_less_than,
            "form": f.form,
        },
    }
    if rule.expiration is not None:
        e = rule.expiration
        out["expiration"] = {
            "days": e.days,
            "date": e.date.isoformat() if e.date is not None else None,
            "marker": e.expired_object_delete_marker,
        }
    if rule.noncurrent is not None:
        n = rule.noncurrent
        out["noncurrent"] = {"days": n.noncurrent_days, "newer": n.newer_noncurrent_versions}
    if rule.abort_days is not None:
        out["abort_days"] = rule.abort_days
    return out


def _rule_from(d: dict[str, Any]) -> Rule:
    f = d["filter"]
    if f["form"] not in FILTER_FORMS:
        raise ValueError(f"unknown filter form {f['form']!r}")
    expiration = None
    if (e := d.get("expiration")) is not None:
        date = datetime.fromisoformat(e["date"]) if e["date"] is not None else None
        expiration = Expiration(e["days"], date, e["marker"])
    noncurrent = None
    if (n := d.get("noncurrent")) is not None:
        noncurrent = NoncurrentExpiration(n["days"], n["newer"])
    return Rule(
        id=str(d["id"]),
        enabled=bool(d["enabled"]),
        filter=Filter(
            prefix=str(f["prefix"]),
            tags=tuple((str(k), str(v)) for k, v in f["tags"]),
            size_greater_than=f["gt"],
            size_less_than=f["lt"],
            form=f["form"],
        ),
        expiration=expiration,
        noncurrent=noncurrent,
        abort_days=d.get("abort_days"),
    )


# ---------------------------------------------------------------- dates


def due(start: datetime, days: int, day_seconds: int = DAY_SECONDS) -> datetime:
    """The first "midnight" after `start` + `days` days: when an action on something
    that started then becomes due."""
    day = math.floor(start.timestamp() / day_seconds)
    return datetime.fromtimestamp((day + days + 1) * day_seconds, UTC)


def current_due(rule: Rule, created: datetime, day_seconds: int) -> datetime | None:
    """When `rule` expires a current version created at `created` (None: never)."""
    e = rule.expiration
    if e is None:
        return None
    if e.days is not None:
        return due(created, e.days, day_seconds)
    return e.date


# ---------------------------------------------------------------- decisions


def object_expiration(
    config: Configuration,
    key: str,
    size: int,
    tags: Mapping[str, str] | None,
    created: datetime,
    day_seconds: int,
) -> tuple[datetime, str] | None:
    """(expiry date, rule id) of the earliest enabled expiration rule that applies to a
    current object: what x-amz-expiration reports, and when the worker expires it."""
    best: tuple[datetime, str] | None = None
    for rule in config.enabled:
        when = current_due(rule, created, day_seconds)
        if when is None or not rule.filter.matches(key, size, tags):
            continue
        if best is None or when < best[0]:
            best = (when, rule.id)
    return best


def current_expired(
    config: Configuration,
    key: str,
    size: int,
    tags: Mapping[str, str] | None,
    created: datetime,
    now: datetime,
    day_seconds: int,
) -> str | None:
    """The id of a rule that has expired this current object by `now`, if any."""
    found = object_expiration(config, key, size, tags, created, day_seconds)
    return found[1] if found is not None and found[0] <= now else None


def marker_expired(
    config: Configuration, key: str, marker_time: datetime, now: datetime, day_seconds: int
) -> str | None:
    """Whether a delete marker that is its key's only version goes: a rule with
    ExpiredObjectDeleteMarker, or one with Days once the marker is that old (S3 cleans
    such markers up under a Days rule too)."""
    for rule in config.enabled:
        e = rule.expiration
        if e is None or not rule.filter.matches(key, 0, {}):
            continue
        if e.expired_object_delete_marker:
            return rule.id
        if e.days is not None and due(marker_time, e.days, day_seconds) <= now:
            return rule.id
    return None


def noncurrent_expired(
    config: Configuration,
    key: str,
    size: int,
    tags: Mapping[str, str] | None,
    noncurrent_since: datetime,
    newer_noncurrent: int,
    now: datetime,
    day_seconds: int,
) -> str | None:
    """Whether a noncurrent version goes: it became noncurrent at `noncurrent_since`,
    and `newer_noncurrent` noncurrent versions of its key are newer than it (the
    NewerNoncurrentVersions newest ones are kept whatever their age)."""
    for rule in config.enabled:
        n = rule.noncurrent
        if n is None or not rule.filter.matches(key, size, tags):
            continue
        if n.newer_noncurrent_versions is not None and newer_noncurrent < (
            n.newer_noncurrent_versions
        ):
            continue
        if due(noncurrent_since, n.noncurrent_days, day_seconds) <= now:
            return rule.id
    return None


def upload_expired(
    config: Configuration, key: str, initiated: datetime, now: datetime, day_seconds: int
) -> str | None:
    """Whether an incomplete multipart upload is aborted (prefix filters only: S3 refuses
    AbortIncompleteMultipartUpload with tag filters)."""
    for rule in config.enabled:
        if rule.abort_days is None or not key.startswith(rule.filter.prefix):
            continue
        if due(initiated, rule.abort_days, day_seconds) <= now:
            return rule.id
    return None


def acts_on_objects(config: Configuration) -> bool:
    """Whether any enabled rule expires objects, versions or delete markers."""
    return any(r.expiration is not None or r.noncurrent is not None for r in config.enabled)


def acts_on_uploads(config: Configuration) -> bool:
    """Whether any enabled rule aborts incomplete multipart uploads."""
    return any(r.abort_days is not None for r in config.enabled)


def walk_prefixes(config: Configuration, *, uploads: bool = False) -> list[str]:
    """The key prefixes a pass must list to see everything the enabled rules act on
    (objects, or with `uploads` multipart uploads), ascending, none inside another: a
    rule for "logs/" spares the worker a walk over the rest of the bucket."""
    wanted = sorted(
        r.filter.prefix
        for r in config.enabled
        if (r.abort_days is not None if uploads else r.acts_on_objects)
    )
    kept: list[str] = []
    for prefix in wanted:
        if not kept or not prefix.startswith(kept[-1]):
            kept.append(prefix)
    return kept
