"""app/lifecyclexml.py: the LifecycleConfiguration document, parsed and checked as AWS
does (MalformedXML / InvalidArgument / InvalidRequest) and rendered back."""

from __future__ import annotations

from datetime import UTC, datetime
from xml.etree.ElementTree import fromstring

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shoal.app.errors import InvalidArgument, InvalidRequest, MalformedXML, S3Error
from shoal.app.lifecyclexml import parse_configuration, render
from shoal.storage.lifecycle.rules import Configuration, Expiration, Filter, Rule


def doc(*rules: str) -> bytes:
    return ("<LifecycleConfiguration>" + "".join(rules) + "</LifecycleConfiguration>").encode()


def rule(body: str, *, rid: str = "r", status: str = "Enabled") -> str:
    rid_xml = f"<ID>{rid}</ID>" if rid is not None else ""
    return f"<Rule>{rid_xml}<Status>{status}</Status>{body}</Rule>"


EXP = "<Expiration><Days>3</Days></Expiration>"
NC_TRANSITION = (
    "<NoncurrentVersionTransition><NoncurrentDays>1</NoncurrentDays>"
    "<StorageClass>GLACIER</StorageClass></NoncurrentVersionTransition>"
)


def test_full_document() -> None:
    config = parse_configuration(
        doc(
            rule("<Prefix>old/</Prefix>" + EXP, rid="legacy"),
            rule(
                "<Filter><And><Prefix>logs/</Prefix><Tag><Key>t</Key><Value>1</Value></Tag>"
                "<ObjectSizeGreaterThan>10</ObjectSizeGreaterThan>"
                "<ObjectSizeLessThan>100</ObjectSizeLessThan></And></Filter>"
                "<Expiration><Date>2030-01-01T00:00:00Z</Date></Expiration>"
                "<NoncurrentVersionExpiration><NoncurrentDays>2</NoncurrentDays>"
                "<NewerNoncurrentVersions>3</NewerNoncurrentVersions>"
                "</NoncurrentVersionExpiration>",
                rid="and",
                status="Disabled",
            ),
            rule(
                "<Filter></Filter><Expiration><ExpiredObjectDeleteMarker>true"
                "</ExpiredObjectDeleteMarker></Expiration><AbortIncompleteMultipartUpload>"
                "<DaysAfterInitiation>7</DaysAfterInitiation></AbortIncompleteMultipartUpload>",
                rid="all",
            ),
        )
    )
    legacy, both, everything = config.rules
    assert legacy == Rule("legacy", True, Filter(prefix="old/", form="legacy"), Expiration(days=3))
    assert both.filter == Filter("logs/", (("t", "1"),), 10, 100, "and") and not both.enabled
    assert both.expiration == Expiration(date=datetime(2030, 1, 1, tzinfo=UTC))
    assert both.noncurrent is not None and both.noncurrent.newer_noncurrent_versions == 3
    assert everything.abort_days == 7 and everything.filter.form == "empty"
    assert parse_configuration(render(config)) == config


def test_rendered_forms() -> None:
    text = render(parse_configuration(doc(rule("<Prefix>p</Prefix>" + EXP))))
    root = fromstring(text)
    ns = "{http://s3.amazonaws.com/doc/2006-03-01/}"
    r = root.find(f"{ns}Rule")
    assert r is not None and r.find(f"{ns}Prefix") is not None and r.find(f"{ns}Filter") is None
    text = render(
        parse_configuration(
            doc(rule("<Filter><Tag><Key>a</Key><Value>b</Value></Tag></Filter>" + EXP))
        )
    )
    assert b"<Filter><Tag><Key>a</Key><Value>b</Value></Tag></Filter>" in text


def test_missing_id_is_generated() -> None:
    config = parse_configuration(doc("<Rule><Status>Enabled</Status><Filter/>" + EXP + "</Rule>"))
    assert 0 < len(config.rules[0].id) <= 255


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (b"<Nope/>", MalformedXML),
        (doc(), MalformedXML),
        (doc(rule("<Filter/>" + EXP, status="enabled")), MalformedXML),
        (doc(rule("<Filter/><Prefix/>" + EXP)), MalformedXML),
        (doc(rule(EXP)), MalformedXML),  # neither Filter nor Prefix
        (
            doc(rule("<Filter><Prefix>a</Prefix><Tag><Key>k</Key><Value/></Tag></Filter>" + EXP)),
            MalformedXML,
        ),
        (doc(rule("<Filter><And><Prefix>a</Prefix></And></Filter>" + EXP)), MalformedXML),
        (
            doc(
                rule(
                    "<Filter/><Expiration><Days>1</Days><Date>2030-01-01T00:00:00Z</Date></Expiration>"
                )
            ),
            MalformedXML,
        ),
        (doc(rule("<Filter/><Expiration><Days>x</Days></Expiration>")), MalformedXML),
        (doc(rule("<Filter/><Expiration/>")), MalformedXML),
        (
            doc(
                rule(
                    "<Filter/><Expiration><Days>1</Days><ExpiredObjectDeleteMarker>true</ExpiredObjectDeleteMarker></Expiration>"
                )
            ),
            MalformedXML,
        ),
        (doc(rule("<Filter/>" + EXP + "<Bogus/>")), MalformedXML),
        (doc(rule("<Filter/>" + EXP + EXP)), MalformedXML),
        (doc(rule("<Filter/><Expiration><Days>0</Days></Expiration>")), InvalidArgument),
        (
            doc(rule("<Filter/><Expiration><Date>2030-01-01T10:00:00Z</Date></Expiration>")),
            InvalidArgument,
        ),
        (doc(rule("<Filter/>" + EXP, rid="x" * 256)), InvalidArgument),
        (
            doc(rule("<Filter/>" + EXP, rid="same"), rule("<Filter/>" + EXP, rid="same")),
            InvalidArgument,
        ),
        (
            doc(
                rule(
                    "<Filter/><NoncurrentVersionExpiration><NoncurrentDays>0</NoncurrentDays></NoncurrentVersionExpiration>"
                )
            ),
            InvalidArgument,
        ),
        (
            doc(
                rule(
                    "<Filter/><NoncurrentVersionExpiration><NoncurrentDays>1</NoncurrentDays><NewerNoncurrentVersions>101</NewerNoncurrentVersions></NoncurrentVersionExpiration>"
                )
            ),
            InvalidArgument,
        ),
        (
            doc(
                rule(
                    "<Filter/><AbortIncompleteMultipartUpload><DaysAfterInitiation>0</DaysAfterInitiation></AbortIncompleteMultipartUpload>"
                )
            ),
            InvalidArgument,
        ),
        (
            doc(
                rule(
                    "<Filter><And><ObjectSizeGreaterThan>10</ObjectSizeGreaterThan><ObjectSizeLessThan>5</ObjectSizeLessThan></And></Filter>"
                    + EXP
                )
            ),
            InvalidArgument,
        ),
        (doc(rule("<Filter/>")), InvalidRequest),  # no action
        (
            doc(
                rule(
                    "<Filter><Tag><Key>k</Key><Value>v</Value></Tag></Filter><AbortIncompleteMultipartUpload><DaysAfterInitiation>1</DaysAfterInitiation></AbortIncompleteMultipartUpload>"
                )
            ),
            InvalidRequest,
        ),
        (
            doc(
                rule(
                    "<Filter><Tag><Key>k</Key><Value>v</Value></Tag></Filter><Expiration><ExpiredObjectDeleteMarker>true</ExpiredObjectDeleteMarker></Expiration>"
                )
            ),
            InvalidRequest,
        ),
        (
            doc(
                rule(
                    "<Filter><And><Tag><Key>k</Key><Value>1</Value></Tag><Tag><Key>k</Key><Value>2</Value></Tag></And></Filter>"
                    + EXP
                )
            ),
            InvalidRequest,
        ),
        (
            doc(
                rule(
                    "<Filter/><Transition><Days>30</Days><StorageClass>GLACIER</StorageClass></Transition>"
                )
            ),
            InvalidRequest,
        ),
        (
            doc(rule("<Filter/>" + EXP + NC_TRANSITION)),
            InvalidRequest,
        ),
        (doc(*[rule("<Filter/>" + EXP, rid=f"r{i}") for i in range(1001)]), InvalidRequest),
    ],
)
def test_errors(body: bytes, error: type[S3Error]) -> None:
    with pytest.raises(error):
        parse_configuration(body)


def test_transitions_are_refused_with_a_clear_message() -> None:
    with pytest.raises(InvalidRequest, match="storage class"):
        parse_configuration(doc(rule("<Filter/><Transition><Days>1</Days></Transition>")))


ids = st.text(
    st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), min_size=1, max_size=40
)


@given(
    rid=ids,
    days=st.integers(-5, 5000),
    prefix=st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), max_size=20),
)
def test_days_and_ids_round_trip_or_fail_cleanly(rid: str, days: int, prefix: str) -> None:
    from shoal.app.xml import escape

    body = doc(
        rule(
            f"<Filter><Prefix>{escape(prefix)}</Prefix></Filter>"
            f"<Expiration><Days>{days}</Days></Expiration>",
            rid=escape(rid),
        )
    )
    if days <= 0:
        with pytest.raises(InvalidArgument):
            parse_configuration(body)
        return
    config = parse_configuration(body)
    assert config.rules[0].id == rid and config.rules[0].filter.prefix == prefix
    assert parse_configuration(render(config)) == config


def test_render_is_a_configuration() -> None:
    assert render(Configuration(())).startswith(b"<?xml")
