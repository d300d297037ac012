"""Server-side copies: CopyObject and UploadPartCopy read a source object and stream it
into the ordinary write path, so copies get the same atomicity and checksums."""

from __future__ import annotations

from urllib.parse import unquote

from starlette.responses import Response

from shoal.app.context import RequestContext
from shoal.app.dispatch import valid_bucket_name
from shoal.app.errors import InvalidArgument, InvalidRequest
from shoal.app.handlers.multipart import part_result_headers, upload_for_part
from shoal.app.handlers.object import conditional_write, write_result_headers
from shoal.app.handlers.registry import handler, xml_response
from shoal.app.headers import check_conditions, object_write, parse_copy_range, query_part_number
from shoal.app.xml import timestamp
from shoal.storage import checksums
from shoal.storage.backend import ObjectReader, ObjectWrite
from shoal.storage.checksums import Checksum

MAX_COPY_SOURCE = 5 * 1024**3


def copy_source(ctx: RequestContext) -> tuple[str, str]:
    return parse_copy_source(ctx.headers["x-amz-copy-source"])


def parse_copy_source(raw: str) -> tuple[str, str]:
    """(bucket, key) of x-amz-copy-source: 'bucket/key' or '/bucket/key', URL-encoded."""
    path, _, query = raw.partition("?")
    if query and query != "versionId=null":
        raise InvalidArgument("Invalid version id specified", ArgumentName="versionId")
    try:
        decoded = unquote(path, errors="strict")
    except UnicodeDecodeError:
        decoded = ""  # not UTF-8: no key we could hold
    bucket, _, key = decoded.lstrip("/").partition("/")
    if not bucket or not key or not valid_bucket_name(bucket):
        raise InvalidArgument(
            "Invalid copy source object key",
            ArgumentName="x-amz-copy-source",
            ArgumentValue=raw,
        )
    return bucket, key


async def open_source(ctx: RequestContext) -> ObjectReader:
    bucket, key = copy_source(ctx)
    if ctx.gate is not None:
        await ctx.gate.check(ctx.principal, "s3:GetObject", bucket, key)
    reader = await ctx.backend.open_object(bucket, key)
    try:
        check_conditions(ctx.headers, reader.meta, prefix="x-amz-copy-source-if-")
        if reader.meta.size > MAX_COPY_SOURCE and ctx.op.name == "CopyObject":
            raise InvalidRequest(
                "The specified copy source is larger than the maximum allowable size for a"
                f" copy source: {MAX_COPY_SOURCE}"
            )
    except BaseException:
        await reader.close()
        raise
    return reader


def _checksummed(write: ObjectWrite, algorithm: str) -> ObjectWrite:
    checksum = Checksum(algorithm)
    write.digesters = [checksum]
    write.finalize = lambda size, md5: {algorithm: checksum.b64()}
    write.checksum_type = "FULL_OBJECT"
    return write


@handler("CopyObject")
async def copy_object(ctx: RequestContext) -> Response:
    reader = await open_source(ctx)
    try:
        source = reader.meta
        directive = ctx.headers.get("x-amz-metadata-directive", "COPY").upper()
        if directive not in ("COPY", "REPLACE"):
            raise InvalidArgument(
                "Unknown metadata directive.", ArgumentName="x-amz-metadata-directive"
            )
        if (
            copy_source(ctx) == (ctx.bucket, ctx.key)
            and directive == "COPY"
            and "x-amz-storage-class" not in ctx.headers
        ):
            raise InvalidRequest(
                "This copy request is illegal because it is trying to copy an object to itself"
                " without changing the object's metadata, storage class, website redirect"
                " location or encryption attributes."
            )
        limits = ctx.config.limits
        if directive == "REPLACE":
            write = object_write(ctx.headers, max_metadata_size=limits.max_metadata_size)
        else:
            write = ObjectWrite(
                content_type=source.content_type,
                headers=dict(source.headers),
                user_metadata=dict(source.user_metadata),
            )
            storage_class = object_write(ctx.headers, max_metadata_size=limits.max_metadata_size)
            write.headers.update(
                {k: v for k, v in storage_class.headers.items() if k == "x-amz-storage-class"}
            )
        conditional_write(ctx, write)
        algorithm = (
            ctx.headers.get("x-amz-checksum-algorithm", "").upper()
            or next(iter(source.checksums), None)
            or checksums.DEFAULT_ALGORITHM
        )
        if algorithm not in checksums.ALGORITHMS:
            raise InvalidRequest(f"Checksum algorithm {algorithm} is not supported.")
        meta = await ctx.backend.put_object(
            ctx.bucket, ctx.key, reader.stream(), _checksummed(write, algorithm)
        )
    finally:
        await reader.close()
    result = [("LastModified", timestamp(meta.last_modified)), ("ETag", f'"{meta.etag}"')]
    result += [(f"Checksum{a}", v) for a, v in meta.checksums.items()]
    headers = {k: v for k, v in write_result_headers(meta).items() if k != "etag"}
    return xml_response("CopyObjectResult", result, headers=headers)


@handler("UploadPartCopy")
async def upload_part_copy(ctx: RequestContext) -> Response:
    number = query_part_number(ctx.query)
    upload = await upload_for_part(ctx)
    reader = await open_source(ctx)
    try:
        size = reader.meta.size
        span = (0, size - 1)
        if "x-amz-copy-source-range" in ctx.headers:
            span = parse_copy_range(ctx.headers["x-amz-copy-source-range"], size)
        write = ObjectWrite(max_size=MAX_COPY_SOURCE)
        if upload.checksum_algorithm:
            _checksummed(write, upload.checksum_algorithm)
        body = reader.stream(*span) if size else reader.stream(0, -1)
        part = await ctx.backend.upload_part(
            ctx.bucket, ctx.key, upload.upload_id, number, body, write
        )
    finally:
        await reader.close()
    result = [("LastModified", timestamp(part.last_modified)), ("ETag", f'"{part.etag}"')]
    result += [(f"Checksum{a}", v) for a, v in part.checksums.items()]
    headers = {k: v for k, v in part_result_headers(part).items() if k != "etag"}
    return xml_response("CopyPartResult", result, headers=headers)
