"""Object lock: Put/GetObjectLockConfiguration, Put/GetObjectRetention,
Put/GetObjectLegalHold, and what writes and deletes ask of it.

The rules themselves are app/objectlock.py's pure functions; here they are fed the
request and handed to the backend as `change` or `guard` callbacks, so a check and the
change it allows happen under the same key lock.
"""

from __future__ import annotations

from starlette.responses import Response

from shoal.app import objectlock
from shoal.app.body import read_small, require_integrity_header
from shoal.app.context import RequestContext
from shoal.app.errors import (
    InvalidBucketState,
    InvalidRequest,
    NoSuchObjectLockConfiguration,
    ObjectLockConfigurationNotFoundError,
)
from shoal.app.handlers.registry import handler
from shoal.app.headers import version_param
from shoal.auth.actions import BYPASS_GOVERNANCE_ACTION
from shoal.storage.backend import BucketInfo, ObjectWrite
from shoal.storage.errors import NoSuchBucketDocument

MAX_LOCK_BODY = 64 * 1024


async def default_retention(
    ctx: RequestContext, info: BucketInfo
) -> objectlock.DefaultRetention | None:
    """The bucket's default retention (None without object lock or without a rule)."""
    if not info.object_lock:
        return None
    try:
        text = await ctx.backend.get_bucket_document(info.name, objectlock.DOCUMENT)
    except NoSuchBucketDocument:
        return None
    return objectlock.parse_configuration(text.encode()).default


async def apply_write_lock(ctx: RequestContext, info: BucketInfo, write: ObjectWrite) -> None:
    """Set a new version's retention and legal hold from the request's
    x-amz-object-lock-* headers or the bucket's default retention."""
    default = await default_retention(ctx, info)
    write.retention, write.legal_hold = objectlock.write_lock(
        ctx.headers, info.object_lock, default, objectlock.now()
    )


def require_write_integrity(ctx: RequestContext, info: BucketInfo) -> None:
    """S3's rule: every upload to a lock-enabled bucket carries Content-MD5 or a checksum."""
    if info.object_lock:
        try:
            require_integrity_header(ctx.headers)
        except InvalidRequest as exc:
            raise InvalidRequest(
                "Content-MD5 OR x-amz-checksum- HTTP header is required for Put Object requests"
                " with Object Lock parameters"
            ) from exc


async def may_bypass(ctx: RequestContext, key: str) -> bool:
    """x-amz-bypass-governance-retention: true, from a caller allowed
    s3:BypassGovernanceRetention (anyone while auth is off)."""
    if ctx.headers.get(objectlock.BYPASS_HEADER, "").strip().lower() != "true":
        return False
    if ctx.gate is None:
        return True
    return await ctx.gate.allows(ctx.principal, BYPASS_GOVERNANCE_ACTION, ctx.bucket, key)


async def _locked_bucket(ctx: RequestContext) -> BucketInfo:
    info = await ctx.backend.head_bucket(ctx.bucket)
    if not info.object_lock:
        raise InvalidRequest(objectlock.MISSING_CONFIGURATION)
    return info


@handler("PutObjectLockConfiguration")
async def put_object_lock_configuration(ctx: RequestContext) -> Response:
    require_integrity_header(ctx.headers)
    info = await ctx.backend.head_bucket(ctx.bucket)
    config = objectlock.parse_configuration(await read_small(ctx.request, MAX_LOCK_BODY))
    if not info.object_lock:
        # AWS turns object lock on for a bucket whose versioning is Enabled, never else.
        if info.versioning != "Enabled":
            raise InvalidBucketState(
                "Versioning must be 'Enabled' on the bucket to apply a Object Lock configuration"
            )
        await ctx.backend.update_bucket(ctx.bucket, object_lock=True)
    text = objectlock.render_configuration(config).decode()
    await ctx.backend.put_bucket_document(ctx.bucket, objectlock.DOCUMENT, text)
    return Response()


@handler("GetObjectLockConfiguration")
async def get_object_lock_configuration(ctx: RequestContext) -> Response:
    info = await ctx.backend.head_bucket(ctx.bucket)
    if not info.object_lock:
        raise ObjectLockConfigurationNotFoundError(BucketName=ctx.bucket)
    try:
        text = await ctx.backend.get_bucket_document(ctx.bucket, objectlock.DOCUMENT)
    except NoSuchBucketDocument:
        text = objectlock.render_configuration(objectlock.LockConfiguration()).decode()
    return Response(text, media_type="application/xml")


@handler("PutObjectRetention")
async def put_object_retention(ctx: RequestContext) -> Response:
    require_integrity_header(ctx.headers)
    version_id = version_param(ctx.query)
    await _locked_bucket(ctx)
    retention = objectlock.parse_retention(
        await read_small(ctx.request, MAX_LOCK_BODY), objectlock.now()
    )
    change = objectlock.retention_change(
        retention, bypass=await may_bypass(ctx, ctx.key), clock=objectlock.now
    )
    await ctx.backend.update_object_meta(ctx.bucket, ctx.key, version_id, change)
    return Response()


@handler("GetObjectRetention")
async def get_object_retention(ctx: RequestContext) -> Response:
    version_id = version_param(ctx.query)
    await _locked_bucket(ctx)
    meta = await ctx.backend.head_object(ctx.bucket, ctx.key, version_id)
    if meta.retention is None:
        raise NoSuchObjectLockConfiguration()
    return Response(objectlock.render_retention(meta.retention), media_type="application/xml")


@handler("PutObjectLegalHold")
async def put_object_legal_hold(ctx: RequestContext) -> Response:
    require_integrity_header(ctx.headers)
    version_id = version_param(ctx.query)
    await _locked_bucket(ctx)
    on = objectlock.parse_legal_hold(await read_small(ctx.request, MAX_LOCK_BODY))
    change = objectlock.legal_hold_change(on)
    await ctx.backend.update_object_meta(ctx.bucket, ctx.key, version_id, change)
    return Response()


@handler("GetObjectLegalHold")
async def get_object_legal_hold(ctx: RequestContext) -> Response:
    version_id = version_param(ctx.query)
    await _locked_bucket(ctx)
    meta = await ctx.backend.head_object(ctx.bucket, ctx.key, version_id)
    return Response(objectlock.render_legal_hold(meta.legal_hold), media_type="application/xml")
