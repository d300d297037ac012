"""S3 XML: rendering response documents and parsing request bodies safely.

Rendering builds text directly (every text node escaped, including characters XML 1.0
cannot carry raw); parsing goes through defusedxml with DTDs and entities refused, so
XML bombs and external entities never expand.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from xml.etree.ElementTree import Element, ParseError, TreeBuilder

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import DefusedXMLParser

from shoal.app.errors import MalformedXML

S3_NS = "http://s3.amazonaws.com/doc/2006-03-01/"
#: S3's deepest request documents nest about 6 deep; the largest, a 10,000-part
#: CompleteMultipartUpload with a checksum per part, holds about 40,000 elements.
MAX_DEPTH = 32
MAX_ELEMENTS = 64 * 1024
DECLARATION = '<?xml version="1.0" encoding="UTF-8"?>\n'

_ESCAPES = {"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&apos;"}
#: The encoding an XML declaration names (a UTF-8 BOM may precede it).
_DECLARED_ENCODING = re.compile(
    rb"""(?:\xef\xbb\xbf)?<\?xml\s[^>]*?\bencoding\s*=\s*(["'])([^"'>]*)\1"""
)
_EXPAT_ENCODINGS = frozenset({b"utf-8", b"utf-16", b"iso-8859-1", b"us-ascii"})
#: \r too: a parser turns a raw one into \n, so a key "a\rb" would come back as "a\nb".
_NEEDS_ESCAPE = re.compile(r"""[&<>"'\x00-\x08\x0b-\x1f\x7f\ud800-\udfff\ufffe\uffff]""")

#: One child: (tag, text) or (tag, [children]); None values are left out. A tag may
#: carry attributes after a space ('Grantee xsi:type="CanonicalUser"'), left off its end tag.
Node = tuple[str, "str | int | bool | Iterable[Node] | None"]


#: Characters XML 1.0 cannot carry even as a character reference.
NOT_XML_10 = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def _escape_one(m: re.Match[str]) -> str:
    return _ESCAPES.get(m[0]) or f"&#x{ord(m[0]):x};"


def escape(text: str) -> str:
    if _NEEDS_ESCAPE.search(text) is None:  # the common case: one scan, no new string
        return text
    return _NEEDS_ESCAPE.sub(_escape_one, text)


class Raw(str):
    """Element content already rendered (escaped) by the caller: a listing renders its
    thousand Contents elements with one f-string each instead of a Node tree."""

    __slots__ = ()


def escape_lossy(text: str) -> str:
    """escape() for text only a person reads (error documents echo request values): a
    character XML 1.0 cannot carry becomes U+FFFD, so every client can parse the error
    and see its code, instead of failing on a reference such as &#x0;."""
    return escape(NOT_XML_10.sub("\ufffd", text))


def _render(tag: str, value: object, out: list[str], esc: Callable[[str], str]) -> None:
    if value is None:
        return
    end = tag.split(" ", 1)[0]
    if type(value) is Raw:
        out.append(f"<{tag}>{value}</{end}>")
    elif isinstance(value, bool):
        out.append(f"<{tag}>{'true' if value else 'false'}</{end}>")
    elif isinstance(value, str | int):
        out.append(f"<{tag}>{esc(str(value))}</{end}>")
    else:
        out.append(f"<{tag}>")
        for child_tag, child in value:  # type: ignore[attr-defined]
            _render(child_tag, child, out, esc)
        out.append(f"</{end}>")


def document(
    root: str, children: Iterable[Node], *, namespace: bool = True, lossy: bool = False
) -> bytes:
    """Render a whole response document (`lossy`: with escape_lossy, for error documents)."""
    out = [DECLARATION, f'<{root} xmlns="{S3_NS}">' if namespace else f"<{root}>"]
    esc = escape_lossy if lossy else escape
    for tag, value in children:
        _render(tag, value, out, esc)
    out.append(f"</{root}>")
    return "".join(out).encode()


def text_document(root: str, text: str) -> bytes:
    """A document whose root holds only text, such as LocationConstraint."""
    return f'{DECLARATION}<{root} xmlns="{S3_NS}">{escape(text)}</{root}>'.encode()


def timestamp(when: datetime) -> str:
    """ISO 8601 with milliseconds, as S3 writes LastModified and Initiated (formatted
    by hand: strftime costs several times more, once per listed key)."""
    if when.tzinfo is not UTC:
        when = when.astimezone(UTC)
    return (
        f"{when.year:04d}-{when.month:02d}-{when.day:02d}T{when.hour:02d}:{when.minute:02d}:"
        f"{when.second:02d}.{when.microsecond // 1000:03d}Z"
    )


class _BoundedBuilder(TreeBuilder):
    """Builds the tree as expat reads it, refusing documents no S3 call sends: nested
    deeper than MAX_DEPTH (expat and the tree cost grows faster than linearly with depth:
    2 MB of `<a>` held the event loop for seconds) or holding more than MAX_ELEMENTS
    elements. Namespaces are stripped here, so callers match plain tag names."""

    def __init__(self) -> None:
        super().__init__()
        self._depth = 0
        self._elements = 0

    def start(self, tag: str, attrs: dict[str, str]) -> Element:
        self._depth += 1
        self._elements += 1
        if self._depth > MAX_DEPTH or self._elements > MAX_ELEMENTS:
            raise MalformedXML()
        return super().start(tag.rpartition("}")[2], attrs)

    def end(self, tag: str) -> Element:
        self._depth -= 1
        return super().end(tag.rpartition("}")[2])


def parse(body: bytes) -> Element:
    """Parse a request body; namespaces are stripped so callers match plain tag names.

    Every way a body can fail to parse is MalformedXML: expat's errors, defusedxml's
    refusals (DTDs, entities), the LookupError/UnicodeError an unknown or non-text
    encoding raises, and the depth and size bounds of _BoundedBuilder. Only the
    encodings expat decodes itself are accepted, so a declaration never hands the body
    to an arbitrary Python codec.
    """
    if not body.strip():
        raise MalformedXML()
    declared = _DECLARED_ENCODING.match(body)
    if declared is not None and declared[2].lower() not in _EXPAT_ENCODINGS:
        raise MalformedXML()
    parser = DefusedXMLParser(
        target=_BoundedBuilder(), forbid_dtd=True, forbid_entities=True, forbid_external=True
    )
    try:
        parser.feed(body)
        root: Element = parser.close()
    except (ParseError, DefusedXmlException, ValueError, LookupError) as exc:
        raise MalformedXML() from exc
    return root


def child_text(element: Element, tag: str) -> str | None:
    found = element.find(tag)
    return None if found is None else (found.text or "")
