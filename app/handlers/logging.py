"""Server access logging: PutBucketLogging and GetBucketLogging.

The status is a bucket document ("logging", the rendered BucketLoggingStatus), so it
works in every mode; delivery is app/serverlog's. The target is checked when the status
is set, as S3 does: it must exist, and belong to the same owner as the source bucket or
let the caller write into it.
"""

from __future__ import annotations

from starlette.responses import Response

from shoal.app.body import read_small, require_integrity_header
from shoal.app.context import RequestContext
from shoal.app.dispatch import valid_bucket_name
from shoal.app.errors import InvalidTargetBucketForLogging
from shoal.app.handlers.registry import handler
from shoal.app.serverlog import ServerLog
from shoal.app.serverlog.status import (
    DOCUMENT,
    LoggingStatus,
    load_status,
    parse_status,
    render_status,
)
from shoal.storage.backend import BucketInfo
from shoal.storage.errors import NoSuchBucket, NoSuchBucketDocument

MAX_LOGGING_BODY = 64 * 1024


@handler("PutBucketLogging")
async def put_bucket_logging(ctx: RequestContext) -> Response:
    require_integrity_header(ctx.headers)
    source = await ctx.backend.head_bucket(ctx.bucket)
    status = parse_status(await read_small(ctx.request, MAX_LOGGING_BODY))
    if status is None:  # an empty BucketLoggingStatus turns logging off
        await ctx.backend.delete_bucket_document(ctx.bucket, DOCUMENT)
    else:
        await _check_target(ctx, source, status)
        await ctx.backend.put_bucket_document(ctx.bucket, DOCUMENT, render_status(status).decode())
    server_log: ServerLog = ctx.request.app.state.server_log
    server_log.forget(ctx.bucket)
    return Response()


async def _check_target(ctx: RequestContext, source: BucketInfo, status: LoggingStatus) -> None:
    """S3's InvalidTargetBucketForLogging: the target must exist and be the source
    owner's, or (accounts differing) writable by the caller under its bucket policy."""
    target = status.target_bucket
    missing = InvalidTargetBucketForLogging(
        "The target bucket for logging does not exist", TargetBucket=target
    )
    if not valid_bucket_name(target):
        raise missing
    try:
        info = await ctx.backend.head_bucket(target)
    except NoSuchBucket as exc:
        raise missing from exc
    if not source.owner or not info.owner or source.owner == info.owner:
        return
    key = status.target_prefix or "log"
    if ctx.gate is not None and await ctx.gate.allows(ctx.principal, "s3:PutObject", target, key):
        return
    raise InvalidTargetBucketForLogging(
        "The owner for the bucket to be logged and the target bucket must be the same.",
        TargetBucket=target,
    )


@handler("GetBucketLogging")
async def get_bucket_logging(ctx: RequestContext) -> Response:
    await ctx.backend.head_bucket(ctx.bucket)
    try:
        status = load_status(await ctx.backend.get_bucket_document(ctx.bucket, DOCUMENT))
    except NoSuchBucketDocument:
        status = None
    return Response(render_status(status), media_type="application/xml")
