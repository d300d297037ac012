"""Per-bucket CORS: PutBucketCors, GetBucketCors, DeleteBucketCors."""

from __future__ import annotations

from starlette.responses import Response

from shoal.app import cors
from shoal.app.body import read_small, require_integrity_header
from shoal.app.context import RequestContext
from shoal.app.errors import NoSuchCORSConfiguration
from shoal.app.handlers.registry import handler
from shoal.storage.errors import NoSuchBucketDocument

MAX_CORS_BODY = 64 * 1024


def _forget(ctx: RequestContext) -> None:
    ctx.request.app.state.cors.forget(ctx.bucket)


@handler("PutBucketCors")
async def put_bucket_cors(ctx: RequestContext) -> Response:
    require_integrity_header(ctx.headers)
    await ctx.backend.head_bucket(ctx.bucket)
    rules = cors.parse_configuration(await read_small(ctx.request, MAX_CORS_BODY))
    await ctx.backend.put_bucket_document(
        ctx.bucket, "cors", cors.render_configuration(rules).decode()
    )
    _forget(ctx)
    return Response()


@handler("GetBucketCors")
async def get_bucket_cors(ctx: RequestContext) -> Response:
    try:
        text = await ctx.backend.get_bucket_document(ctx.bucket, "cors")
    except NoSuchBucketDocument as exc:
        raise NoSuchCORSConfiguration(BucketName=ctx.bucket) from exc
    return Response(text, media_type="application/xml")


@handler("DeleteBucketCors")
async def delete_bucket_cors(ctx: RequestContext) -> Response:
    await ctx.backend.delete_bucket_document(ctx.bucket, "cors")
    _forget(ctx)
    return Response(status_code=204)
