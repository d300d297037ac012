"""Tag sets: parsing the Tagging document and the x-amz-tagging header, and AWS's rules.

Pure functions, shared by object and bucket tagging. AWS's limits: 10 tags on an
object, 50 on a bucket; keys of 1 to 128 and values of 0 to 256 Unicode characters,
counted as S3 counts them (UTF-16 code units), made of letters, numbers, white space and
`_ . : / = + - @`; unique keys; no `aws:` prefix (reserved for AWS's own tags).
"""

from __future__ import annotations

import unicodedata
from urllib.parse import unquote_plus
from xml.etree.ElementTree import Element

from shoal.app.errors import BadRequest, InvalidArgument, InvalidTag, MalformedXML
from shoal.app.xml import Node, document, parse

MAX_OBJECT_TAGS = 10
MAX_BUCKET_TAGS = 50
MAX_KEY = 128
MAX_VALUE = 256
RESERVED_PREFIX = "aws:"
HEADER = "x-amz-tagging"
_SYMBOLS = frozenset("_.:/=+-@")
_HEADER_MESSAGE = (
    "The header 'x-amz-tagging' shall be encoded as UTF-8 then URLEncoded URL query"
    " parameters without tag name duplicates."
)


def utf16_length(text: str) -> int:
    """Characters as S3 counts them: UTF-16 code units (a character beyond the BMP is 2)."""
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


def _allowed(text: str) -> bool:
    return all(c in _SYMBOLS or unicodedata.category(c)[0] in "LNZ" for c in text)


def validate(pairs: list[tuple[str, str]], *, limit: int) -> dict[str, str]:
    """The tag set `pairs` make, or the S3 error for the first rule it breaks."""
    if len(pairs) > limit:
        kind = "Object" if limit == MAX_OBJECT_TAGS else "Bucket"
        raise BadRequest(f"{kind} tags cannot be greater than {limit}")
    tags: dict[str, str] = {}
    for key, value in pairs:
        if key in tags:
            raise InvalidTag("Cannot provide multiple Tags with the same key")
        if utf16_length(key) > MAX_KEY:
            raise InvalidTag(f"The TagKey you have provided is too long, max {MAX_KEY}")
        if utf16_length(value) > MAX_VALUE:
            raise InvalidTag(f"The TagValue you have provided is too long, max {MAX_VALUE}")
        if not key or not _allowed(key):
            raise InvalidTag("The TagKey you have provided is invalid")
        if not _allowed(value):
            raise InvalidTag("The TagValue you have provided is invalid")
        if key.lower().startswith(RESERVED_PREFIX):
            raise InvalidTag("Your TagKey cannot be prefixed with aws:")
        tags[key] = value
    return tags


def _text(element: Element, tag: str) -> str:
    """The one `tag` child's text ('' when empty); MalformedXML when absent or repeated."""
    found = element.findall(tag)
    if len(found) != 1:
        raise MalformedXML()
    return found[0].text or ""


def parse_document(body: bytes, *, limit: int) -> dict[str, str]:
    """A `<Tagging><TagSet><Tag><Key/><Value/></Tag>...</TagSet></Tagging>` body."""
    root = parse(body)
    if root.tag != "Tagging":
        raise MalformedXML()
    tag_sets = root.findall("TagSet")
    if len(tag_sets) != 1:
        raise MalformedXML()
    pairs = []
    for child in tag_sets[0]:
        if child.tag != "Tag":
            raise MalformedXML()
        pairs.append((_text(child, "Key"), _text(child, "Value")))
    return validate(pairs, limit=limit)


def parse_header(value: str) -> dict[str, str]:
    """x-amz-tagging: URL query parameters ('a=1&b=2'); a key without '=' has the empty
    value. More than one '=' in a pair, or a repeated key, is InvalidArgument as S3 says."""
    pairs: list[tuple[str, str]] = []
    for piece in value.split("&"):
        if not piece:
            continue
        name, _, rest = piece.partition("=")
        if "=" in rest:
            raise InvalidArgument(_HEADER_MESSAGE, ArgumentName=HEADER, ArgumentValue=value)
        try:
            key = unquote_plus(name, errors="strict")
            val = unquote_plus(rest, errors="strict")
        except UnicodeDecodeError as exc:
            raise InvalidArgument(
                _HEADER_MESSAGE, ArgumentName=HEADER, ArgumentValue=value
            ) from exc
        pairs.append((key, val))
    if len({k for k, _ in pairs}) != len(pairs):
        raise InvalidArgument(_HEADER_MESSAGE, ArgumentName=HEADER, ArgumentValue=value)
    return validate(pairs, limit=MAX_OBJECT_TAGS)


def request_tags(headers: dict[str, str]) -> dict[str, str]:
    """The tags a write asks for through x-amz-tagging (none without the header)."""
    value = headers.get(HEADER)
    return {} if value is None else parse_header(value)


def request_condition_keys(header: str | None) -> dict[str, object]:
    """The policy condition keys of a write's x-amz-tagging: s3:RequestObjectTagKeys (every
    key, for ForAnyValue/ForAllValues) and s3:RequestObjectTag/<key> per tag. A header
    that breaks the rules gives none here; the handler refuses it after authorization."""
    if header is None:
        return {}
    try:
        tags = parse_header(header)
    except (InvalidArgument, InvalidTag, BadRequest):
        return {}
    if not tags:
        return {}
    keys: dict[str, object] = {"s3:RequestObjectTagKeys": tuple(tags)}
    keys.update({f"s3:RequestObjectTag/{k}": v for k, v in tags.items()})
    return keys


def render(tags: dict[str, str]) -> bytes:
    """The Tagging document GetObjectTagging and GetBucketTagging answer, keys in order."""
    tag_nodes: list[Node] = [("Tag", [("Key", key), ("Value", tags[key])]) for key in sorted(tags)]
    return document("Tagging", [("TagSet", tag_nodes)])
