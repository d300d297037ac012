"""GetObjectAttributes: HeadObject's facts and ListParts' per-part checksums in one
answer, chosen by the x-amz-object-attributes header.

It needs nothing but `backend.head_object`, so every store serves it.
"""

from __future__ import annotations

from starlette.responses import Response

from shoal.app import sse
from shoal.app.context import RequestContext
from shoal.app.errors import InvalidArgument
from shoal.app.handlers.registry import handler, xml_response
from shoal.app.headers import http_date, version_headers, version_param
from shoal.app.xml import Node
from shoal.auth.numbers import parse_uint
from shoal.storage.backend import MAX_PARTS, NULL_VERSION, ObjectMeta, PartInfo

#: What x-amz-object-attributes may name, in the order the answer gives them.
ATTRIBUTES = ("ETag", "Checksum", "ObjectParts", "StorageClass", "ObjectSize")
DEFAULT_MAX_PARTS = 1000
HEADER = "x-amz-object-attributes"


def requested_attributes(value: str | None) -> frozenset[str]:
    """The attributes a request asks for; none, or a name S3 does not know, is
    400 InvalidArgument as AWS answers."""
    names = frozenset(n.strip() for n in (value or "").split(",") if n.strip())
    if not names or not names <= frozenset(ATTRIBUTES):
        raise InvalidArgument(
            "Invalid attribute name specified.", ArgumentName=HEADER, ArgumentValue=value or ""
        )
    return names


def _uint_header(headers: dict[str, str], name: str, default: int) -> int:
    text = headers.get(name)
    if text is None or text == "":
        return default
    value = parse_uint(text)
    if value is None or value > 2**31 - 1:
        raise InvalidArgument(
            f"Provided {name} not an integer or within integer range",
            ArgumentName=name,
            ArgumentValue=text,
        )
    return value


def parts_node(meta: ObjectMeta, *, after: int, max_parts: int) -> list[Node] | None:
    """ObjectParts for a multipart object (None for any other). Part elements are given
    only where the object has additional checksums, as S3 does for general-purpose
    buckets; the paging fields are given either way."""
    parts = meta.parts
    if not parts:
        return None
    following = [p for p in parts if p.number > after]
    page = following[:max_parts]
    truncated = len(following) > len(page)
    node: list[Node] = [
        ("PartNumberMarker", after),
        ("NextPartNumberMarker", page[-1].number if truncated and page else None),
        ("MaxParts", max_parts),
        ("IsTruncated", truncated),
        ("PartsCount", len(parts)),
    ]
    if meta.checksums:
        node += [("Part", _part(p)) for p in page]
    return node


def _part(part: PartInfo) -> list[Node]:
    fields: list[Node] = [(f"Checksum{a}", v) for a, v in part.checksums.items()]
    return [*fields, ("PartNumber", part.number), ("Size", part.size)]


def attributes_document(
    meta: ObjectMeta, names: frozenset[str], *, after: int, max_parts: int
) -> list[Node]:
    """The children of GetObjectAttributesResponse for the attributes asked for."""
    nodes: dict[str, Node] = {
        "ETag": ("ETag", meta.etag),  # no quotes in this API, as S3 answers
        "StorageClass": ("StorageClass", meta.headers.get("x-amz-storage-class", "STANDARD")),
        "ObjectSize": ("ObjectSize", meta.size),
    }
    if meta.checksums:
        checksum: list[Node] = [(f"Checksum{a}", v) for a, v in meta.checksums.items()]
        nodes["Checksum"] = ("Checksum", [*checksum, ("ChecksumType", meta.checksum_type)])
    parts = parts_node(meta, after=after, max_parts=max_parts)
    if parts is not None:
        nodes["ObjectParts"] = ("ObjectParts", parts)
    return [nodes[name] for name in ATTRIBUTES if name in names and name in nodes]


@handler("GetObjectAttributes")
async def get_object_attributes(ctx: RequestContext) -> Response:
    names = requested_attributes(ctx.headers.get(HEADER))
    max_parts = min(_uint_header(ctx.headers, "x-amz-max-parts", DEFAULT_MAX_PARTS), 1000)
    after = min(_uint_header(ctx.headers, "x-amz-part-number-marker", 0), MAX_PARTS)
    version_id = version_param(ctx.query)
    # An encrypted version's sizes and ETag as S3 shows them (SSE-C: with its key only).
    meta = sse.check_read(ctx, await ctx.backend.head_object(ctx.bucket, ctx.key, version_id))
    versioned = version_id is not None or meta.version_id != NULL_VERSION
    if not versioned:
        versioned = bool((await ctx.backend.head_bucket(ctx.bucket)).versioning)
    headers = {"last-modified": http_date(meta.last_modified)}
    headers.update(version_headers(meta.version_id, versioned=versioned))
    body = attributes_document(meta, names, after=after, max_parts=max_parts)
    return xml_response("GetObjectAttributesResponse", body, headers=headers)
