"""Versioning: Put/GetBucketVersioning and ListObjectVersions."""

from __future__ import annotations

from starlette.responses import Response

from shoal.app.body import read_small
from shoal.app.context import RequestContext
from shoal.app.errors import (
    InvalidArgument,
    InvalidBucketState,
    MalformedXML,
    NotImplementedFeature,
)
from shoal.app.handlers.listing import MAX_KEYS, echoed_param, encoder, int_param
from shoal.app.handlers.registry import bucket_owner, handler, owner, xml_response
from shoal.app.xml import Node, child_text, parse, timestamp
from shoal.storage.version_ids import valid_version_id

MAX_VERSIONING_BODY = 64 * 1024
STATES = ("Enabled", "Suspended")


def parse_versioning(body: bytes) -> str | None:
    """The Status of a VersioningConfiguration body (None: the document sets none).
    MFA Delete needs MFA devices shoal does not have: asking to enable it is refused."""
    root = parse(body)
    if root.tag != "VersioningConfiguration":
        raise MalformedXML()
    mfa = child_text(root, "MfaDelete")
    if mfa is not None and mfa.strip() not in ("Enabled", "Disabled"):
        raise MalformedXML()
    if mfa is not None and mfa.strip() == "Enabled":
        raise NotImplementedFeature("MFA Delete is not supported: shoal has no MFA devices.")
    status = child_text(root, "Status")
    if status is None:
        return None
    if status.strip() not in STATES:
        raise MalformedXML()
    return status.strip()


@handler("PutBucketVersioning")
async def put_bucket_versioning(ctx: RequestContext) -> Response:
    if "x-amz-mfa" in ctx.headers:
        raise NotImplementedFeature("MFA Delete is not supported: shoal has no MFA devices.")
    info = await ctx.backend.head_bucket(ctx.bucket)
    status = parse_versioning(await read_small(ctx.request, MAX_VERSIONING_BODY))
    if status is None or status == info.versioning:
        return Response()
    if info.object_lock and status != "Enabled":
        raise InvalidBucketState(
            "An Object Lock configuration is present on this bucket, so the versioning"
            " state cannot be changed."
        )
    await ctx.backend.update_bucket(ctx.bucket, versioning=status)
    return Response()


@handler("GetBucketVersioning")
async def get_bucket_versioning(ctx: RequestContext) -> Response:
    info = await ctx.backend.head_bucket(ctx.bucket)
    # A bucket never versioned has no state: an empty document, as S3 answers.
    return xml_response("VersioningConfiguration", [("Status", info.versioning or None)])


@handler("ListObjectVersions")
async def list_object_versions(ctx: RequestContext) -> Response:
    encode = encoder(ctx)
    max_keys = int_param(ctx, "max-keys", MAX_KEYS, cap=MAX_KEYS)
    prefix, delimiter, key_marker = (
        echoed_param(ctx, n, url_encoded="encoding-type" in ctx.query)
        for n in ("prefix", "delimiter", "key-marker")
    )
    version_id_marker = ctx.query.get("version-id-marker", "")
    if version_id_marker:
        if not key_marker:
            raise InvalidArgument(
                "A version-id marker cannot be specified without a key marker.",
                ArgumentName="version-id-marker",
                ArgumentValue=version_id_marker,
            )
        if not valid_version_id(version_id_marker):
            raise InvalidArgument(
                "Invalid version id specified",
                ArgumentName="version-id-marker",
                ArgumentValue=version_id_marker,
            )
    page = await ctx.backend.list_object_versions(
        ctx.bucket,
        prefix=prefix,
        delimiter=delimiter,
        key_marker=key_marker,
        version_id_marker=version_id_marker,
        max_keys=max_keys,
    )
    next_key = page.next_key_marker if page.truncated else None
    result: list[Node] = [
        ("Name", ctx.bucket),
        ("Prefix", encode(prefix)),
        ("KeyMarker", encode(key_marker)),
        ("VersionIdMarker", version_id_marker),
        ("NextKeyMarker", encode(next_key) if next_key else None),
        ("NextVersionIdMarker", page.next_version_id_marker if page.truncated else None),
        ("MaxKeys", max_keys),
        ("Delimiter", encode(delimiter) if delimiter else None),
        ("IsTruncated", page.truncated),
        ("EncodingType", ctx.query.get("encoding-type")),
    ]
    default_owner = await bucket_owner(ctx)
    for version in page.versions:
        fields: list[Node] = [
            ("Key", encode(version.key)),
            ("VersionId", version.version_id),
            ("IsLatest", version.is_latest),
            ("LastModified", timestamp(version.last_modified)),
        ]
        if version.delete_marker:
            owned = owner(ctx, version.owner or default_owner)
            result.append(("DeleteMarker", [*fields, ("Owner", owned)]))
            continue
        fields += [
            ("ETag", f'"{version.etag}"'),
            ("Size", version.size),
            ("StorageClass", version.storage_class),
            ("Owner", owner(ctx, version.owner or default_owner)),
        ]
        result.append(("Version", fields))
    result += [("CommonPrefixes", [("Prefix", encode(p))]) for p in page.common_prefixes]
    return xml_response("ListVersionsResult", result)
