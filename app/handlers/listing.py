"""ListObjects (v1) and ListObjectsV2, with every paging parameter S3 has."""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable
from urllib.parse import quote_plus

from starlette.responses import Response

from shoal.app.context import RequestContext
from shoal.app.errors import InvalidArgument
from shoal.app.handlers.registry import bucket_owner, handler, owner, xml_response
from shoal.app.xml import NOT_XML_10, Node, Raw, escape, timestamp
from shoal.auth.numbers import parse_uint
from shoal.storage.backend import ListPage

MAX_KEYS = 1000
#: Keys made only of the characters AWS leaves as they are with encoding-type=url.
_URL_PLAIN = re.compile(r"[A-Za-z0-9\-_./*]*")


def url_encode(value: str) -> str:
    """encoding-type=url as S3 writes it (what botocore's unquote_plus undoes): space
    becomes '+', '~' is escaped too."""
    if _URL_PLAIN.fullmatch(value):
        return value
    encoded = quote_plus(value, safe="/*", encoding="utf-8", errors="surrogatepass")
    return encoded.replace("~", "%7E")


def encoder(ctx: RequestContext) -> Callable[[str], str]:
    kind = ctx.query.get("encoding-type")
    if kind is None:
        return lambda value: value
    if kind.lower() != "url":
        raise InvalidArgument(
            "Invalid Encoding Method specified in Request",
            ArgumentName="encoding-type",
            ArgumentValue=kind,
        )
    return url_encode


def int_param(ctx: RequestContext, name: str, default: int, *, cap: int) -> int:
    text = ctx.query.get(name)
    if text is None or text == "":
        return default
    value = parse_uint(text)
    if value is None:
        raise InvalidArgument(
            f"Provided {name} not an integer or within integer range",
            ArgumentName=name,
            ArgumentValue=text,
        )
    return min(value, cap)


def echoed_param(ctx: RequestContext, name: str, *, url_encoded: bool) -> str:
    """A text parameter the listing answer repeats, refused if XML cannot hold it (one
    such character makes the whole listing unparseable: botocore then reports the 200
    as a 500), unless encoding-type=url encodes it."""
    value = ctx.query.get(name, "")
    if not url_encoded and NOT_XML_10.search(value):
        raise InvalidArgument(
            f"The {name} parameter contains characters XML cannot represent;"
            " send encoding-type=url to use them.",
            ArgumentName=name,
        )
    return value


_TOKEN_PREFIX = "1:"  # a format version, so tokens can change shape later


def _token(last: str) -> str:
    raw = (_TOKEN_PREFIX + last).encode("utf-8", "surrogatepass")
    return base64.urlsafe_b64encode(raw).decode()


def _untoken(token: str) -> str:
    """The item a continuation token resumes after; opaque to clients."""
    try:
        text = base64.b64decode(token.encode("ascii"), altchars=b"-_", validate=True).decode()
    except (ValueError, UnicodeError, binascii.Error):
        text = ""
    if not text.startswith(_TOKEN_PREFIX):
        raise InvalidArgument(
            "The continuation token provided is incorrect",
            ArgumentName="continuation-token",
        )
    return text[len(_TOKEN_PREFIX) :]


def _contents(
    ctx: RequestContext, page: ListPage, encode: Callable[[str], str], bucket_owner: str | None
) -> list[Node]:
    """`bucket_owner`: None without fetch-owner; else the owner of objects the listing
    does not know the owner of."""
    nodes: list[Node] = []
    if bucket_owner is None:
        # One f-string per key (the Node tree below costs several times more per key).
        for obj in page.objects:
            rendered = (
                f"<Key>{escape(encode(obj.key))}</Key>"
                f"<LastModified>{timestamp(obj.last_modified)}</LastModified>"
                f"<ETag>{escape(chr(34) + obj.etag + chr(34))}</ETag><Size>{obj.size}</Size>"
                f"<StorageClass>{escape(obj.storage_class)}</StorageClass>"
            )
            nodes.append(("Contents", Raw(rendered)))
        nodes += [("CommonPrefixes", [("Prefix", encode(p))]) for p in page.common_prefixes]
        return nodes
    for obj in page.objects:
        fields: list[Node] = [
            ("Key", encode(obj.key)),
            ("LastModified", timestamp(obj.last_modified)),
            ("ETag", f'"{obj.etag}"'),
            ("Size", obj.size),
            ("StorageClass", obj.storage_class),
        ]
        if bucket_owner is not None:
            fields.append(("Owner", owner(ctx, obj.owner or bucket_owner)))
        nodes.append(("Contents", fields))
    nodes += [("CommonPrefixes", [("Prefix", encode(p))]) for p in page.common_prefixes]
    return nodes


@handler("ListObjects")
async def list_objects(ctx: RequestContext) -> Response:
    encode = encoder(ctx)
    max_keys = int_param(ctx, "max-keys", MAX_KEYS, cap=MAX_KEYS)
    prefix, delimiter, marker = (
        echoed_param(ctx, n, url_encoded="encoding-type" in ctx.query)
        for n in ("prefix", "delimiter", "marker")
    )
    page = await ctx.backend.list_objects(
        ctx.bucket, prefix=prefix, delimiter=delimiter, after=marker, max_keys=max_keys
    )
    # S3 sends NextMarker only with a delimiter; clients otherwise resume after the last key.
    next_marker = page.last if page.truncated and delimiter else None
    result: list[Node] = [
        ("Name", ctx.bucket),
        ("Prefix", encode(prefix)),
        ("Marker", encode(marker)),
        ("NextMarker", encode(next_marker) if next_marker else None),
        ("MaxKeys", max_keys),
        ("Delimiter", encode(delimiter) if delimiter else None),
        ("IsTruncated", page.truncated),
        ("EncodingType", ctx.query.get("encoding-type")),
    ]
    return xml_response(
        "ListBucketResult", result + _contents(ctx, page, encode, await bucket_owner(ctx))
    )


@handler("ListObjectsV2")
async def list_objects_v2(ctx: RequestContext) -> Response:
    encode = encoder(ctx)
    max_keys = int_param(ctx, "max-keys", MAX_KEYS, cap=MAX_KEYS)
    prefix, delimiter, start_after = (
        echoed_param(ctx, n, url_encoded="encoding-type" in ctx.query)
        for n in ("prefix", "delimiter", "start-after")
    )
    # An empty token (SDKs that always send the parameter) is no token, as in S3.
    token = ctx.query.get("continuation-token") or None
    after = _untoken(token) if token is not None else start_after
    page = await ctx.backend.list_objects(
        ctx.bucket, prefix=prefix, delimiter=delimiter, after=after, max_keys=max_keys
    )
    fetch_owner = ctx.query.get("fetch-owner", "").lower() == "true"
    listing_owner = await bucket_owner(ctx) if fetch_owner else None
    result: list[Node] = [
        ("Name", ctx.bucket),
        ("Prefix", encode(prefix)),
        ("MaxKeys", max_keys),
        ("KeyCount", len(page.objects) + len(page.common_prefixes)),
        ("Delimiter", encode(delimiter) if delimiter else None),
        ("IsTruncated", page.truncated),
        ("ContinuationToken", token),
        ("NextContinuationToken", _token(page.last) if page.truncated and page.last else None),
        ("StartAfter", encode(start_after) if start_after else None),
        ("EncodingType", ctx.query.get("encoding-type")),
    ]
    return xml_response("ListBucketResult", result + _contents(ctx, page, encode, listing_owner))
