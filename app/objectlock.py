"""Object lock as S3 defines it: the documents and headers that carry it, and the rules
that decide what a request may do to a locked version.

Everything here is pure (time is a parameter), so the rules are tested without a
server. Handlers apply them atomically with the change through the backend's `guard`
and `change` callbacks (storage/backend.py), which run under the key's lock.
"""

from __future__ import annotations

import calendar
import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from shoal.app.errors import (
    AccessDenied,
    InvalidArgument,
    InvalidRequest,
    MalformedXML,
    MethodNotAllowed,
    NoSuchKey,
    PreconditionFailed,
)
from shoal.app.headers import etag_matches
from shoal.app.xml import Node, child_text, document, parse, timestamp
from shoal.storage.backend import Guard, ObjectMeta, Retention

MODES = ("GOVERNANCE", "COMPLIANCE")
#: The bucket document (Backend.put_bucket_document) holding the lock configuration.
DOCUMENT = "object-lock"
#: The longest default retention accepted (AWS allows a hundred years).
MAX_DAYS = 36500
MAX_YEARS = 100
MODE_HEADER = "x-amz-object-lock-mode"
UNTIL_HEADER = "x-amz-object-lock-retain-until-date"
LEGAL_HOLD_HEADER = "x-amz-object-lock-legal-hold"
BYPASS_HEADER = "x-amz-bypass-governance-retention"
#: S3's words when a lock refuses a change.
PROTECTED = "Access Denied because object protected by object lock."
MISSING_CONFIGURATION = "Bucket is missing Object Lock Configuration"


@dataclass(frozen=True)
class DefaultRetention:
    """A bucket's default retention: a mode and a period in days or in years."""

    mode: str
    days: int | None = None
    years: int | None = None

    def until(self, now: datetime) -> datetime:
        """The retain-until date of a version written at `now`."""
        if self.days is not None:
            return now + timedelta(days=self.days)
        years = self.years or 0
        year = now.year + years
        day = min(now.day, calendar.monthrange(year, now.month)[1])  # 29 February
        return now.replace(year=year, day=day)

    def retention(self, now: datetime) -> Retention:
        return Retention(self.mode, self.until(now))


@dataclass(frozen=True)
class LockConfiguration:
    """An ObjectLockConfiguration document: lock enabled, with an optional default."""

    default: DefaultRetention | None = None


def _positive(text: str | None, name: str, limit: int) -> int | None:
    if text is None:
        return None
    value = text.strip()
    if not value.isascii() or not value.lstrip("-").isdigit():
        raise MalformedXML()
    number = int(value) if len(value) < 12 else limit + 1
    if number <= 0:
        raise InvalidArgument(
            "Default retention period must be a positive integer value.", ArgumentName=name
        )
    if number > limit:
        raise InvalidArgument(
            f"Default retention period is too large: at most {limit} {name.lower()}.",
            ArgumentName=name,
        )
    return number


def parse_configuration(body: bytes) -> LockConfiguration:
    """An ObjectLockConfiguration request body, or MalformedXML / InvalidArgument."""
    root = parse(body)
    if root.tag != "ObjectLockConfiguration":
        raise MalformedXML()
    if (child_text(root, "ObjectLockEnabled") or "").strip() != "Enabled":
        raise MalformedXML()
    rule = root.find("Rule")
    if rule is None:
        return LockConfiguration()
    element = rule.find("DefaultRetention")
    if element is None:
        raise MalformedXML()
    mode = (child_text(element, "Mode") or "").strip()
    if mode not in MODES:
        raise MalformedXML()
    days = _positive(child_text(element, "Days"), "Days", MAX_DAYS)
    years = _positive(child_text(element, "Years"), "Years", MAX_YEARS)
    if (days is None) == (years is None):
        raise MalformedXML()
    return LockConfiguration(DefaultRetention(mode, days, years))


def render_configuration(config: LockConfiguration) -> bytes:
    children: list[Node] = [("ObjectLockEnabled", "Enabled")]
    default = config.default
    if default is not None:
        period: list[Node] = [("Mode", default.mode), ("Days", default.days)]
        period.append(("Years", default.years))
        children.append(("Rule", [("DefaultRetention", period)]))
    return document("ObjectLockConfiguration", children)


def parse_date(text: str) -> datetime | None:
    """An ISO 8601 date as clients send a retain-until date; None when it is not one.
    A date without a zone is UTC."""
    try:
        when = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return when.astimezone(UTC) if when.tzinfo else when.replace(tzinfo=UTC)


def _future(until: datetime, now: datetime) -> None:
    if until <= now:
        raise InvalidArgument(
            "The retain until date must be in the future!", ArgumentName="RetainUntilDate"
        )


def parse_retention(body: bytes, now: datetime) -> Retention | None:
    """A Retention request body; None when it names neither mode nor date (removing a
    GOVERNANCE retention, which needs the bypass)."""
    root = parse(body)
    if root.tag != "Retention":
        raise MalformedXML()
    mode, date = child_text(root, "Mode"), child_text(root, "RetainUntilDate")
    if mode is None and date is None:
        return None
    if mode is None or date is None or mode.strip() not in MODES:
        raise MalformedXML()
    until = parse_date(date)
    if until is None:
        raise MalformedXML()
    _future(until, now)
    return Retention(mode.strip(), until)


def render_retention(retention: Retention) -> bytes:
    return document(
        "Retention", [("Mode", retention.mode), ("RetainUntilDate", timestamp(retention.until))]
    )


def parse_legal_hold(body: bytes) -> bool:
    root = parse(body)
    if root.tag != "LegalHold":
        raise MalformedXML()
    status = (child_text(root, "Status") or "").strip()
    if status not in ("ON", "OFF"):
        raise MalformedXML()
    return status == "ON"


def render_legal_hold(on: bool) -> bytes:
    return document("LegalHold", [("Status", "ON" if on else "OFF")])


def requested_lock(headers: dict[str, str], now: datetime) -> tuple[Retention | None, bool | None]:
    """The x-amz-object-lock-* headers of a write: (retention, legal hold), None where
    a header is absent."""
    mode, date = headers.get(MODE_HEADER), headers.get(UNTIL_HEADER)
    retention = None
    if mode is not None or date is not None:
        if mode is None or date is None:
            raise InvalidArgument(
                "x-amz-object-lock-retain-until-date and x-amz-object-lock-mode must both be"
                " supplied",
                ArgumentName=MODE_HEADER if mode is None else UNTIL_HEADER,
            )
        if mode not in MODES:
            raise InvalidArgument(
                "Unknown wormMode directive.", ArgumentName=MODE_HEADER, ArgumentValue=mode
            )
        until = parse_date(date)
        if until is None:
            raise InvalidArgument(
                "The retain until date must be provided in ISO 8601 format",
                ArgumentName=UNTIL_HEADER,
                ArgumentValue=date,
            )
        _future(until, now)
        retention = Retention(mode, until)
    hold = headers.get(LEGAL_HOLD_HEADER)
    legal_hold = None
    if hold is not None:
        if hold not in ("ON", "OFF"):
            raise InvalidArgument(
                "Legal Hold must be either of 'ON' or 'OFF'",
                ArgumentName=LEGAL_HOLD_HEADER,
                ArgumentValue=hold,
            )
        legal_hold = hold == "ON"
    return retention, legal_hold


def write_lock(
    headers: dict[str, str], lock_enabled: bool, default: DefaultRetention | None, now: datetime
) -> tuple[Retention | None, bool]:
    """What a new version carries: its own headers' settings, else the bucket's default.
    Lock headers on a bucket without object lock are S3's InvalidRequest."""
    retention, legal_hold = requested_lock(headers, now)
    if not lock_enabled:
        if retention is not None or legal_hold is not None:
            raise InvalidRequest(MISSING_CONFIGURATION)
        return None, False
    if retention is None and default is not None:
        retention = default.retention(now)
    return retention, bool(legal_hold)


def active(retention: Retention | None, now: datetime) -> bool:
    return retention is not None and retention.until > now


def check_removal(meta: ObjectMeta | None, *, bypass: bool, now: datetime) -> None:
    """A version may be removed for good unless a legal hold or an unexpired retention
    protects it; GOVERNANCE yields to an allowed bypass, COMPLIANCE to nothing."""
    if meta is None:
        return
    if meta.legal_hold:
        raise AccessDenied(PROTECTED)
    retention = meta.retention
    if (
        retention is not None
        and active(retention, now)
        and (retention.mode == "COMPLIANCE" or not bypass)
    ):
        raise AccessDenied(PROTECTED)


def check_retention_change(
    old: Retention | None, new: Retention | None, *, bypass: bool, now: datetime
) -> None:
    """Whether a version's retention may go from `old` to `new`: anything once `old` has
    expired; COMPLIANCE only stays COMPLIANCE and only gets longer; GOVERNANCE may become
    COMPLIANCE or get longer, and anything else needs the bypass."""
    if not active(old, now):
        return
    assert old is not None
    if old.mode == "COMPLIANCE":
        if new is None or new.mode != "COMPLIANCE" or new.until < old.until:
            raise AccessDenied(PROTECTED)
        return
    if bypass:
        return
    if new is None or new.until < old.until:
        raise AccessDenied(PROTECTED)


def _not_a_marker(meta: ObjectMeta) -> None:
    if meta.delete_marker:
        error = MethodNotAllowed()
        error.headers.update({"x-amz-delete-marker": "true", "x-amz-version-id": meta.version_id})
        raise error


def retention_change(
    new: Retention | None, *, bypass: bool, clock: Callable[[], datetime]
) -> Callable[[ObjectMeta], ObjectMeta]:
    """The `change` for Backend.update_object_meta that PutObjectRetention makes."""

    def change(meta: ObjectMeta) -> ObjectMeta:
        _not_a_marker(meta)
        check_retention_change(meta.retention, new, bypass=bypass, now=clock())
        return dataclasses.replace(meta, retention=new)

    return change


def legal_hold_change(on: bool) -> Callable[[ObjectMeta], ObjectMeta]:
    """The `change` PutObjectLegalHold makes (a hold can always be placed or lifted)."""

    def change(meta: ObjectMeta) -> ObjectMeta:
        _not_a_marker(meta)
        return dataclasses.replace(meta, legal_hold=on)

    return change


def delete_guard(
    *,
    if_match: str | None,
    version_id: str | None,
    bypass: bool,
    clock: Callable[[], datetime],
) -> Guard | None:
    """The guard a DELETE needs: If-Match against the current version, and the lock
    rules when a version is removed for good (a delete marker removes nothing). None
    when there is nothing to check, so an unconditional DELETE costs nothing more."""
    if if_match is None and version_id is None:
        return None

    def guard(meta: ObjectMeta | None) -> None:
        if if_match is not None:
            if meta is None or meta.delete_marker:
                raise NoSuchKey()
            if not etag_matches(if_match, meta.shown_etag):
                raise PreconditionFailed(Condition="If-Match")
        if version_id is not None:
            check_removal(meta, bypass=bypass, now=clock())

    return guard


def now() -> datetime:
    return datetime.now(UTC)
