"""A bucket's logging status (PutBucketLogging's BucketLoggingStatus document): where
its access-log records go and how their objects are named.

Stored as the bucket document "logging" (the rendered XML), so it works in every mode;
an empty status (no LoggingEnabled) turns logging off.
"""

from __future__ import annotations

from dataclasses import dataclass
from xml.etree.ElementTree import Element

from shoal.app.errors import MalformedXML
from shoal.app.xml import Node, child_text, document, parse

DOCUMENT = "logging"
#: The namespace S3 answers GetBucketLogging in (not the usual S3 one).
NAMESPACE = "http://doc.s3.amazonaws.com/2006-03-01"
_XSI = "http://www.w3.org/2001/XMLSchema-instance"
SIMPLE, PARTITIONED = "SimplePrefix", "PartitionedPrefix"
DATE_SOURCES = ("EventTime", "DeliveryTime")
PERMISSIONS = ("FULL_CONTROL", "READ", "WRITE")
#: Grantee type -> the element that names it.
GRANTEE_TYPES = {"CanonicalUser": "ID", "AmazonCustomerByEmail": "EmailAddress", "Group": "URI"}


@dataclass(frozen=True)
class TargetGrant:
    grantee_type: str  # a key of GRANTEE_TYPES
    grantee: str  # its ID, e-mail address or group URI
    permission: str
    display_name: str | None = None


@dataclass(frozen=True)
class LoggingStatus:
    """LoggingEnabled: records of the bucket's requests go to `target_bucket` as objects
    named `target_prefix` + (SimplePrefix or PartitionedPrefix) key format."""

    target_bucket: str
    target_prefix: str
    key_format: str = SIMPLE  # SIMPLE or PARTITIONED
    date_source: str = "EventTime"  # PartitionedPrefix's PartitionDateSource
    grants: tuple[TargetGrant, ...] = ()


def parse_status(body: bytes) -> LoggingStatus | None:
    """The status a PutBucketLogging body asks for (None: logging off), or MalformedXML
    for anything S3's schema refuses."""
    root = parse(body)
    if root.tag != "BucketLoggingStatus":
        raise MalformedXML()
    enabled = root.find("LoggingEnabled")
    if enabled is None:
        return None
    target = child_text(enabled, "TargetBucket")
    prefix = child_text(enabled, "TargetPrefix")
    if not target or prefix is None:
        raise MalformedXML()
    key_format, date_source = SIMPLE, "EventTime"
    key_element = enabled.find("TargetObjectKeyFormat")
    if key_element is not None:
        chosen = [e for e in key_element if e.tag in (SIMPLE, PARTITIONED)]
        if len(chosen) != 1 or len(chosen) != len(key_element):
            raise MalformedXML()
        key_format = chosen[0].tag
        if key_format == PARTITIONED:
            date_source = child_text(chosen[0], "PartitionDateSource") or "EventTime"
            if date_source not in DATE_SOURCES:
                raise MalformedXML()
    grants: tuple[TargetGrant, ...] = ()
    grants_element = enabled.find("TargetGrants")
    if grants_element is not None:
        grants = tuple(_grant(g) for g in grants_element)
    return LoggingStatus(target.strip(), prefix, key_format, date_source, grants)


def _grant(element: Element) -> TargetGrant:
    grantee = element.find("Grantee")
    permission = child_text(element, "Permission")
    if element.tag != "Grant" or grantee is None or permission not in PERMISSIONS:
        raise MalformedXML()
    kind = next((v for k, v in grantee.attrib.items() if k.rpartition("}")[2] == "type"), None)
    if kind not in GRANTEE_TYPES:
        raise MalformedXML()
    value = child_text(grantee, GRANTEE_TYPES[kind])
    if not value:
        raise MalformedXML()
    return TargetGrant(kind, value, permission, child_text(grantee, "DisplayName"))


def render_status(status: LoggingStatus | None) -> bytes:
    """The BucketLoggingStatus document, as stored and as GetBucketLogging answers it."""
    children: list[Node] = []
    if status is not None:
        enabled: list[Node] = [("TargetBucket", status.target_bucket)]
        if status.grants:
            enabled.append(("TargetGrants", [("Grant", _grant_nodes(g)) for g in status.grants]))
        enabled.append(("TargetPrefix", status.target_prefix))
        if status.key_format == PARTITIONED:
            source = [("PartitionDateSource", status.date_source)]
            enabled.append(("TargetObjectKeyFormat", [(PARTITIONED, source)]))
        else:
            enabled.append(("TargetObjectKeyFormat", [(SIMPLE, [])]))
        children.append(("LoggingEnabled", enabled))
    body = document("BucketLoggingStatus", children, namespace=False).decode()
    return body.replace(
        "<BucketLoggingStatus>", f'<BucketLoggingStatus xmlns="{NAMESPACE}">', 1
    ).encode()


def _grant_nodes(grant: TargetGrant) -> list[Node]:
    grantee: list[Node] = [(GRANTEE_TYPES[grant.grantee_type], grant.grantee)]
    if grant.display_name:
        grantee.append(("DisplayName", grant.display_name))
    tag = f'Grantee xmlns:xsi="{_XSI}" xsi:type="{grant.grantee_type}"'
    return [(tag, grantee), ("Permission", grant.permission)]


def load_status(text: str) -> LoggingStatus | None:
    """A stored document back (it was rendered by render_status, so it parses)."""
    return parse_status(text.encode())
