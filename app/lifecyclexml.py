"""The LifecycleConfiguration document: parse and validate it as AWS does, render it back.

PutBucketLifecycleConfiguration's body becomes the typed records of
storage/lifecycle/rules.py (stored as their JSON, which the worker reads without this
module); GetBucketLifecycleConfiguration renders those records as XML again, in the form
the rule was written (legacy top-level Prefix, Filter with one predicate, or And).

AWS's answers: a document that does not follow the schema (unknown or repeated
elements, a bad Status, Filter and Prefix together, Days and Date together, a number
that is not one) is MalformedXML; a value the schema allows but S3 does not (Days of 0,
a Date not at midnight UTC, a rule ID over 255 characters or used twice,
NewerNoncurrentVersions beyond 1..100) is InvalidArgument; a combination S3 refuses
(no action in a rule, AbortIncompleteMultipartUpload or ExpiredObjectDeleteMarker with
a tag filter, more than 1,000 rules) is InvalidRequest. Transitions are refused with
InvalidRequest too: shoal has one storage class, so there is nothing to move objects to.
"""

from __future__ import annotations

import base64
import os
from datetime import UTC, datetime
from xml.etree.ElementTree import Element

from shoal.app.errors import InvalidArgument, InvalidRequest, MalformedXML
from shoal.app.xml import Node, document, parse, timestamp
from shoal.storage.lifecycle.rules import (
    Configuration,
    Expiration,
    Filter,
    NoncurrentExpiration,
    Rule,
)

MAX_RULES = 1000
MAX_ID = 255
MAX_NEWER_NONCURRENT = 100
RULE_CHILDREN = frozenset(
    {
        "ID",
        "Status",
        "Filter",
        "Prefix",
        "Expiration",
        "NoncurrentVersionExpiration",
        "AbortIncompleteMultipartUpload",
        "Transition",
        "NoncurrentVersionTransition",
    }
)
TRANSITIONS_REFUSED = (
    "Transition and NoncurrentVersionTransition are not supported: this server has one"
    " storage class (STANDARD), so there is nothing to transition objects to."
)


def parse_configuration(body: bytes) -> Configuration:
    """The validated configuration a PUT body holds, or the S3 error AWS gives."""
    root = parse(body)
    if root.tag != "LifecycleConfiguration":
        raise MalformedXML()
    elements = list(root)
    if not elements or any(e.tag != "Rule" for e in elements):
        raise MalformedXML()
    if len(elements) > MAX_RULES:
        raise InvalidRequest(
            f"The number of lifecycle rules should not exceed allowed limit of {MAX_RULES} rules"
        )
    rules = tuple(_rule(e) for e in elements)
    seen: set[str] = set()
    for rule in rules:
        if rule.id in seen:
            raise InvalidArgument(
                "Rule ID must be unique. Found same ID for more than one rule",
                ArgumentName="ID",
                ArgumentValue=rule.id,
            )
        seen.add(rule.id)
    return Configuration(rules)


def _one(parent: Element, tag: str) -> Element | None:
    found = parent.findall(tag)
    if len(found) > 1:
        raise MalformedXML()
    return found[0] if found else None


def _only(parent: Element, allowed: frozenset[str]) -> None:
    """Every child of `parent` is one of `allowed`, none of them repeated."""
    tags = [child.tag for child in parent]
    if any(t not in allowed for t in tags) or len(set(tags)) != len(tags):
        raise MalformedXML()


def _integer(element: Element) -> int:
    text = (element.text or "").strip()
    if not text or not text.lstrip("-").isdigit():
        raise MalformedXML()
    return int(text)


def _positive(element: Element | None, what: str) -> int | None:
    if element is None:
        return None
    value = _integer(element)
    if value <= 0:
        raise InvalidArgument(f"{what} must be a positive integer", ArgumentName=element.tag)
    return value


def _rule(element: Element) -> Rule:
    tags = [child.tag for child in element]
    if any(t not in RULE_CHILDREN for t in tags):
        raise MalformedXML()
    if "Transition" in tags or "NoncurrentVersionTransition" in tags:
        raise InvalidRequest(TRANSITIONS_REFUSED)
    if len(set(tags)) != len(tags):
        raise MalformedXML()
    id_element = _one(element, "ID")
    rule_id = (id_element.text or "") if id_element is not None else ""
    if len(rule_id) > MAX_ID:
        raise InvalidArgument(
            f"ID length should not exceed allowed limit of {MAX_ID}",
            ArgumentName="ID",
            ArgumentValue=rule_id,
        )
    if not rule_id:
        # AWS names a rule given without an ID.
        rule_id = base64.b32encode(os.urandom(30)).decode().rstrip("=")
    status = _one(element, "Status")
    if status is None or status.text not in ("Enabled", "Disabled"):
        raise MalformedXML()
    filter_element, legacy = _one(element, "Filter"), _one(element, "Prefix")
    if (filter_element is None) == (legacy is None):
        raise MalformedXML()  # one of them, not both
    if legacy is not None:
        rule_filter = Filter(prefix=legacy.text or "", form="legacy")
    else:
        assert filter_element is not None
        rule_filter = _filter(filter_element)
    expiration = _expiration(_one(element, "Expiration"))
    noncurrent = _noncurrent(_one(element, "NoncurrentVersionExpiration"))
    abort_days = _abort(_one(element, "AbortIncompleteMultipartUpload"))
    if expiration is None and noncurrent is None and abort_days is None:
        raise InvalidRequest("At least one action needs to be specified in a rule")
    if rule_filter.tags and abort_days is not None:
        raise InvalidRequest("AbortIncompleteMultipartUpload cannot be specified with Tags.")
    if rule_filter.tags and expiration is not None and expiration.expired_object_delete_marker:
        raise InvalidRequest("ExpiredObjectDeleteMarker cannot be specified with Tags.")
    return Rule(
        id=rule_id,
        enabled=status.text == "Enabled",
        filter=rule_filter,
        expiration=expiration,
        noncurrent=noncurrent,
        abort_days=abort_days,
    )


def _tag(element: Element) -> tuple[str, str]:
    _only(element, frozenset({"Key", "Value"}))
    key = _one(element, "Key")
    if key is None or not key.text:
        raise MalformedXML()
    value = _one(element, "Value")
    return key.text, (value.text or "") if value is not None else ""


def _size(element: Element | None) -> int | None:
    if element is None:
        return None
    value = _integer(element)
    if value < 0:
        raise InvalidArgument(
            f"{element.tag} must be a non-negative integer", ArgumentName=element.tag
        )
    return value


def _filter(element: Element) -> Filter:
    predicates = frozenset({"Prefix", "Tag", "ObjectSizeGreaterThan", "ObjectSizeLessThan"})
    _only(element, predicates | {"And"})
    children = list(element)
    if not children:
        return Filter(form="empty")
    if len(children) > 1:
        raise MalformedXML()  # exactly one predicate, or And
    child = children[0]
    if child.tag == "Prefix":
        return Filter(prefix=child.text or "", form="prefix")
    if child.tag == "Tag":
        return Filter(tags=(_tag(child),), form="tag")
    if child.tag == "ObjectSizeGreaterThan":
        return Filter(size_greater_than=_size(child), form="gt")
    if child.tag == "ObjectSizeLessThan":
        return Filter(size_less_than=_size(child), form="lt")
    return _and(child)


def _and(element: Element) -> Filter:
    kinds = [c.tag for c in element]
    allowed = {"Prefix", "Tag", "ObjectSizeGreaterThan", "ObjectSizeLessThan"}
    if any(k not in allowed for k in kinds) or any(kinds.count(k) > 1 for k in allowed - {"Tag"}):
        raise MalformedXML()
    if len(kinds) < 2:
        raise MalformedXML()  # And combines two or more predicates
    tags = tuple(_tag(c) for c in element.findall("Tag"))
    if len({k for k, _ in tags}) != len(tags):
        raise InvalidRequest("Duplicate Tag Keys are not allowed.")
    prefix = _one(element, "Prefix")
    greater = _size(_one(element, "ObjectSizeGreaterThan"))
    less = _size(_one(element, "ObjectSizeLessThan"))
    if greater is not None and less is not None and greater >= less:
        raise InvalidArgument(
            "ObjectSizeGreaterThan must be less than ObjectSizeLessThan",
            ArgumentName="ObjectSizeGreaterThan",
        )
    return Filter(
        prefix=(prefix.text or "") if prefix is not None else "",
        tags=tags,
        size_greater_than=greater,
        size_less_than=less,
        form="and",
    )


def _date(element: Element) -> datetime:
    text = (element.text or "").strip()
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise MalformedXML() from exc
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    when = when.astimezone(UTC)
    if (when.hour, when.minute, when.second, when.microsecond) != (0, 0, 0, 0):
        raise InvalidArgument("'Date' must be at midnight GMT", ArgumentName="Date")
    return when


def _expiration(element: Element | None) -> Expiration | None:
    if element is None:
        return None
    _only(element, frozenset({"Days", "Date", "ExpiredObjectDeleteMarker"}))
    days_element, date_element = _one(element, "Days"), _one(element, "Date")
    marker_element = _one(element, "ExpiredObjectDeleteMarker")
    given = [e for e in (days_element, date_element, marker_element) if e is not None]
    if len(given) != 1:
        raise MalformedXML()  # exactly one of Days, Date, ExpiredObjectDeleteMarker
    days = _positive(days_element, "'Days' for Expiration action")
    date = _date(date_element) if date_element is not None else None
    marker = None
    if marker_element is not None:
        text = (marker_element.text or "").strip()
        if text not in ("true", "false"):
            raise MalformedXML()
        marker = text == "true"
    return Expiration(days=days, date=date, expired_object_delete_marker=marker)


def _noncurrent(element: Element | None) -> NoncurrentExpiration | None:
    if element is None:
        return None
    _only(element, frozenset({"NoncurrentDays", "NewerNoncurrentVersions"}))
    days = _positive(
        _one(element, "NoncurrentDays"), "'NoncurrentDays' for NoncurrentVersionExpiration action"
    )
    if days is None:
        raise MalformedXML()
    newer_element = _one(element, "NewerNoncurrentVersions")
    newer = None
    if newer_element is not None:
        newer = _integer(newer_element)
        if not 1 <= newer <= MAX_NEWER_NONCURRENT:
            raise InvalidArgument(
                f"NewerNoncurrentVersions must be between 1 and {MAX_NEWER_NONCURRENT}",
                ArgumentName="NewerNoncurrentVersions",
                ArgumentValue=str(newer),
            )
    return NoncurrentExpiration(days, newer)


def _abort(element: Element | None) -> int | None:
    if element is None:
        return None
    _only(element, frozenset({"DaysAfterInitiation"}))
    days = _positive(
        _one(element, "DaysAfterInitiation"),
        "'DaysAfterInitiation' for AbortIncompleteMultipartUpload action",
    )
    if days is None:
        raise MalformedXML()
    return days


# ---------------------------------------------------------------- rendering


def render(config: Configuration) -> bytes:
    """The GetBucketLifecycleConfiguration answer."""
    return document("LifecycleConfiguration", [("Rule", _render_rule(r)) for r in config.rules])


def _tag_node(key: str, value: str) -> Node:
    return ("Tag", [("Key", key), ("Value", value)])


def _render_filter(f: Filter) -> list[Node]:
    if f.form == "legacy":
        return [("Prefix", f.prefix)]
    inner: list[Node] = []
    if f.form == "prefix":
        inner = [("Prefix", f.prefix)]
    elif f.form == "tag":
        inner = [_tag_node(*f.tags[0])]
    elif f.form == "gt":
        inner = [("ObjectSizeGreaterThan", f.size_greater_than)]
    elif f.form == "lt":
        inner = [("ObjectSizeLessThan", f.size_less_than)]
    elif f.form == "and":
        parts: list[Node] = [("Prefix", f.prefix)] if f.prefix else []
        parts += [_tag_node(k, v) for k, v in f.tags]
        parts += [
            ("ObjectSizeGreaterThan", f.size_greater_than),
            ("ObjectSizeLessThan", f.size_less_than),
        ]
        inner = [("And", parts)]
    return [("Filter", inner)]


def _render_rule(rule: Rule) -> list[Node]:
    nodes: list[Node] = []
    if rule.expiration is not None:
        e = rule.expiration
        nodes.append(
            (
                "Expiration",
                [
                    ("Date", timestamp(e.date) if e.date is not None else None),
                    ("Days", e.days),
                    ("ExpiredObjectDeleteMarker", e.expired_object_delete_marker),
                ],
            )
        )
    nodes.append(("ID", rule.id))
    nodes += _render_filter(rule.filter)
    nodes.append(("Status", "Enabled" if rule.enabled else "Disabled"))
    if rule.noncurrent is not None:
        n = rule.noncurrent
        nodes.append(
            (
                "NoncurrentVersionExpiration",
                [
                    ("NoncurrentDays", n.noncurrent_days),
                    ("NewerNoncurrentVersions", n.newer_noncurrent_versions),
                ],
            )
        )
    if rule.abort_days is not None:
        nodes.append(("AbortIncompleteMultipartUpload", [("DaysAfterInitiation", rule.abort_days)]))
    return nodes
