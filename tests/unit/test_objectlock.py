"""The object-lock rules (app/objectlock.py) as pure functions: what may be removed,
how a retention may change, the write headers, and the request documents."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shoal.app import objectlock
from shoal.app.errors import (
    AccessDenied,
    InvalidArgument,
    InvalidRequest,
    MalformedXML,
    MethodNotAllowed,
    NoSuchKey,
    PreconditionFailed,
    S3Error,
)
from shoal.storage.backend import ObjectMeta, Retention

NOW = datetime(2030, 6, 15, 12, 0, tzinfo=UTC)
LATER = NOW + timedelta(days=1)
EARLIER = NOW - timedelta(days=1)


def meta(retention: Retention | None = None, legal_hold: bool = False) -> ObjectMeta:
    return ObjectMeta(
        "k", 1, "etag", NOW, version_id="v" * 24, retention=retention, legal_hold=legal_hold
    )


# ---------------------------------------------------------------- removal


def test_unprotected_versions_may_go() -> None:
    objectlock.check_removal(None, bypass=False, now=NOW)
    objectlock.check_removal(meta(), bypass=False, now=NOW)
    for mode in objectlock.MODES:
        objectlock.check_removal(meta(Retention(mode, EARLIER)), bypass=False, now=NOW)
        objectlock.check_removal(meta(Retention(mode, NOW)), bypass=False, now=NOW)


def test_governance_yields_only_to_the_bypass() -> None:
    locked = meta(Retention("GOVERNANCE", LATER))
    with pytest.raises(AccessDenied):
        objectlock.check_removal(locked, bypass=False, now=NOW)
    objectlock.check_removal(locked, bypass=True, now=NOW)


def test_compliance_and_legal_hold_yield_to_nothing() -> None:
    for protected in (
        meta(Retention("COMPLIANCE", LATER)),
        meta(legal_hold=True),
        meta(Retention("GOVERNANCE", EARLIER), legal_hold=True),
    ):
        for bypass in (False, True):
            with pytest.raises(AccessDenied):
                objectlock.check_removal(protected, bypass=bypass, now=NOW)


# ---------------------------------------------------------------- retention changes

MODES = st.sampled_from(objectlock.MODES)
OFFSETS = st.integers(min_value=-5, max_value=5).map(lambda d: NOW + timedelta(days=d))
RETENTIONS = st.none() | st.builds(Retention, MODES, OFFSETS)


def _allowed(old: Retention | None, new: Retention | None, bypass: bool) -> bool:
    try:
        objectlock.check_retention_change(old, new, bypass=bypass, now=NOW)
    except AccessDenied:
        return False
    return True


@given(RETENTIONS, RETENTIONS, st.booleans())
def test_retention_change_rules(old: Retention | None, new: Retention | None, bypass: bool) -> None:
    allowed = _allowed(old, new, bypass)
    if old is None or old.until <= NOW:
        assert allowed  # nothing in force
    elif old.mode == "COMPLIANCE":
        # Only ever COMPLIANCE, only ever as long or longer; the bypass changes nothing.
        expected = new is not None and new.mode == "COMPLIANCE" and new.until >= old.until
        assert allowed is expected
        assert _allowed(old, new, not bypass) is allowed
    else:
        expected = bypass or (new is not None and new.until >= old.until)
        assert allowed is expected


@given(RETENTIONS, RETENTIONS)
def test_the_bypass_only_ever_widens(old: Retention | None, new: Retention | None) -> None:
    if _allowed(old, new, False):
        assert _allowed(old, new, True)


@given(st.builds(Retention, MODES, OFFSETS), st.integers(0, 10))
def test_extending_is_always_allowed(old: Retention, days: int) -> None:
    stricter = Retention("COMPLIANCE" if old.mode == "COMPLIANCE" else old.mode, old.until)
    longer = Retention(stricter.mode, max(old.until, NOW) + timedelta(days=days))
    assert _allowed(old, longer, False)


def test_retention_change_callback() -> None:
    new = Retention("GOVERNANCE", LATER + timedelta(days=1))
    change = objectlock.retention_change(new, bypass=False, clock=lambda: NOW)
    changed = change(meta(Retention("GOVERNANCE", LATER)))
    assert changed.retention == new and changed.key == "k"
    shorter = objectlock.retention_change(
        Retention("GOVERNANCE", NOW), bypass=False, clock=lambda: NOW
    )
    with pytest.raises(AccessDenied):
        shorter(meta(Retention("GOVERNANCE", LATER)))
    marker = meta()
    marker.delete_marker = True
    with pytest.raises(MethodNotAllowed):
        change(marker)
    hold = objectlock.legal_hold_change(True)(meta(Retention("COMPLIANCE", LATER)))
    assert hold.legal_hold and hold.retention == Retention("COMPLIANCE", LATER)


# ---------------------------------------------------------------- delete guards


def test_delete_guard() -> None:
    assert (
        objectlock.delete_guard(if_match=None, version_id=None, bypass=False, clock=lambda: NOW)
        is None
    )
    guard = objectlock.delete_guard(
        if_match='"etag"', version_id=None, bypass=False, clock=lambda: NOW
    )
    assert guard is not None
    guard(meta(Retention("COMPLIANCE", LATER)))  # a marker is added: no lock applies
    with pytest.raises(PreconditionFailed):
        guard(ObjectMeta("k", 1, "other", NOW))
    with pytest.raises(NoSuchKey):
        guard(None)
    versioned = objectlock.delete_guard(
        if_match=None, version_id="v" * 24, bypass=True, clock=lambda: NOW
    )
    assert versioned is not None
    versioned(meta(Retention("GOVERNANCE", LATER)))
    with pytest.raises(AccessDenied):
        versioned(meta(Retention("COMPLIANCE", LATER)))
    versioned(None)


# ---------------------------------------------------------------- write headers

MODE, UNTIL, HOLD = objectlock.MODE_HEADER, objectlock.UNTIL_HEADER, objectlock.LEGAL_HOLD_HEADER


def test_write_lock_headers() -> None:
    headers = {MODE: "COMPLIANCE", UNTIL: "2030-06-16T00:00:00Z", HOLD: "ON"}
    retention, hold = objectlock.write_lock(headers, True, None, NOW)
    assert retention == Retention("COMPLIANCE", datetime(2030, 6, 16, tzinfo=UTC))
    assert hold is True
    default = objectlock.DefaultRetention("GOVERNANCE", days=3)
    assert objectlock.write_lock({}, True, default, NOW) == (
        Retention("GOVERNANCE", NOW + timedelta(days=3)),
        False,
    )
    assert objectlock.write_lock({}, True, None, NOW) == (None, False)
    assert objectlock.write_lock({}, False, None, NOW) == (None, False)


@pytest.mark.parametrize(
    ("headers", "error"),
    [
        ({MODE: "GOVERNANCE"}, InvalidArgument),
        ({UNTIL: "2031-01-01T00:00:00Z"}, InvalidArgument),
        ({MODE: "governance", UNTIL: "2031-01-01T00:00:00Z"}, InvalidArgument),
        ({MODE: "GOVERNANCE", UNTIL: "tomorrow"}, InvalidArgument),
        ({MODE: "GOVERNANCE", UNTIL: "2020-01-01T00:00:00Z"}, InvalidArgument),
        ({HOLD: "on"}, InvalidArgument),
    ],
)
def test_write_lock_refusals(headers: dict[str, str], error: type[S3Error]) -> None:
    with pytest.raises(error):
        objectlock.write_lock(headers, True, None, NOW)


def test_lock_headers_need_a_lock_bucket() -> None:
    for headers in ({MODE: "GOVERNANCE", UNTIL: "2031-01-01T00:00:00Z"}, {HOLD: "OFF"}):
        with pytest.raises(InvalidRequest):
            objectlock.write_lock(headers, False, None, NOW)


def test_default_retention_periods() -> None:
    assert objectlock.DefaultRetention("GOVERNANCE", years=1).until(NOW) == NOW.replace(year=2031)
    leap = datetime(2028, 2, 29, tzinfo=UTC)
    assert objectlock.DefaultRetention("GOVERNANCE", years=1).until(leap) == datetime(
        2029, 2, 28, tzinfo=UTC
    )


# ---------------------------------------------------------------- documents


def test_configuration_documents() -> None:
    body = (
        b"<ObjectLockConfiguration><ObjectLockEnabled>Enabled</ObjectLockEnabled><Rule>"
        b"<DefaultRetention><Mode>COMPLIANCE</Mode><Years>2</Years></DefaultRetention>"
        b"</Rule></ObjectLockConfiguration>"
    )
    config = objectlock.parse_configuration(body)
    assert config == objectlock.LockConfiguration(
        objectlock.DefaultRetention("COMPLIANCE", None, 2)
    )
    assert objectlock.parse_configuration(objectlock.render_configuration(config)) == config
    bare = objectlock.LockConfiguration()
    assert objectlock.parse_configuration(objectlock.render_configuration(bare)) == bare


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (b"<ObjectLockConfiguration/>", MalformedXML),
        (b"<Other><ObjectLockEnabled>Enabled</ObjectLockEnabled></Other>", MalformedXML),
        (
            b"<ObjectLockConfiguration><ObjectLockEnabled>Enabled</ObjectLockEnabled><Rule/>"
            b"</ObjectLockConfiguration>",
            MalformedXML,
        ),
        (
            b"<ObjectLockConfiguration><ObjectLockEnabled>Enabled</ObjectLockEnabled><Rule>"
            b"<DefaultRetention><Mode>GOVERNANCE</Mode><Days>x</Days></DefaultRetention></Rule>"
            b"</ObjectLockConfiguration>",
            MalformedXML,
        ),
        (
            b"<ObjectLockConfiguration><ObjectLockEnabled>Enabled</ObjectLockEnabled><Rule>"
            b"<DefaultRetention><Mode>GOVERNANCE</Mode><Days>0</Days></DefaultRetention></Rule>"
            b"</ObjectLockConfiguration>",
            InvalidArgument,
        ),
        (
            b"<ObjectLockConfiguration><ObjectLockEnabled>Enabled</ObjectLockEnabled><Rule>"
            b"<DefaultRetention><Mode>GOVERNANCE</Mode><Days>99999999999999999999</Days>"
            b"</DefaultRetention></Rule></ObjectLockConfiguration>",
            InvalidArgument,
        ),
    ],
)
def test_bad_configuration_documents(body: bytes, error: type[S3Error]) -> None:
    with pytest.raises(error):
        objectlock.parse_configuration(body)


def test_retention_and_legal_hold_documents() -> None:
    body = (
        b"<Retention><Mode>GOVERNANCE</Mode>"
        b"<RetainUntilDate>2030-06-16T00:00:00.000Z</RetainUntilDate></Retention>"
    )
    retention = objectlock.parse_retention(body, NOW)
    assert retention == Retention("GOVERNANCE", datetime(2030, 6, 16, tzinfo=UTC))
    assert objectlock.parse_retention(objectlock.render_retention(retention), NOW) == retention
    assert objectlock.parse_retention(b"<Retention/>", NOW) is None
    with pytest.raises(MalformedXML):
        objectlock.parse_retention(b"<Retention><Mode>GOVERNANCE</Mode></Retention>", NOW)
    with pytest.raises(InvalidArgument):
        past = body.replace(b"2030-06-16", b"2030-06-14")
        objectlock.parse_retention(past, NOW)
    assert objectlock.parse_legal_hold(objectlock.render_legal_hold(True)) is True
    assert objectlock.parse_legal_hold(b"<LegalHold><Status>OFF</Status></LegalHold>") is False
    with pytest.raises(MalformedXML):
        objectlock.parse_legal_hold(b"<LegalHold><Status>on</Status></LegalHold>")


@given(st.binary(max_size=80) | st.text(max_size=40).map(str.encode))
def test_documents_parse_or_refuse(body: bytes) -> None:
    """Any body yields a value or an S3 error, never another exception."""
    for parse in (
        objectlock.parse_configuration,
        objectlock.parse_legal_hold,
        lambda b: objectlock.parse_retention(b, NOW),
    ):
        try:
            parse(body)
        except S3Error as exc:
            assert exc.status == 400
