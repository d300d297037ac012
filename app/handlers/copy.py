"""Server-side copies: CopyObject and UploadPartCopy read a source object and stream it
into the ordinary write path, so copies get the same atomicity and checksums."""

from __future__ import annotations

from urllib.parse import unquote

from starlette.responses import Response

from shoal.app import sse, tagging
from shoal.app.context import RequestContext
from shoal.app.dispatch import valid_bucket_name
from shoal.app.errors import InvalidArgument, InvalidRequest
from shoal.app.handlers.multipart import part_key, part_result_headers, upload_for_part
from shoal.app.handlers.object import conditional_write, plain_reader, write_result_headers
from shoal.app.handlers.objectlock import apply_write_lock
from shoal.app.handlers.registry import handler, xml_response
from shoal.app.headers import (
    check_conditions,
    object_write,
    parse_copy_range,
    query_part_number,
    version_headers,
    version_param,
)
from shoal.app.permissions import new_version_acl
from shoal.app.sealing import seal_write
from shoal.app.xml import timestamp
from shoal.auth.actions import source_requirement
from shoal.storage import checksums
from shoal.storage.backend import ObjectReader, ObjectWrite
from shoal.storage.checksums import Checksum
from shoal.storage.errors import MethodNotAllowed

MAX_COPY_SOURCE = 5 * 1024**3


def copy_source(ctx: RequestContext) -> tuple[str, str, str | None]:
    return parse_copy_source(ctx.headers["x-amz-copy-source"])


def parse_copy_source(raw: str) -> tuple[str, str, str | None]:
    """(bucket, key, version id) of x-amz-copy-source: 'bucket/key' or '/bucket/key',
    URL-encoded, optionally followed by '?versionId=...'."""
    path, _, query = raw.partition("?")
    version_id = None
    if query:
        name, _, value = query.partition("=")
        if name != "versionId":
            raise InvalidArgument(
                "Invalid copy source: only versionId may follow the key",
                ArgumentName="x-amz-copy-source",
                ArgumentValue=raw,
            )
        version_id = version_param({"versionId": unquote(value)})
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
    return bucket, key, version_id


async def open_source(ctx: RequestContext) -> ObjectReader:
    bucket, key, version_id = copy_source(ctx)
    if ctx.gate is not None:
        needed = source_requirement(ctx.op.name, bucket, key, version=version_id is not None)
        assert needed is not None
        await ctx.gate.check(ctx.principal, needed[0], bucket, key)
    try:
        reader = await ctx.backend.open_object(bucket, key, version_id)
    except MethodNotAllowed as exc:
        raise InvalidRequest(
            "The source of a copy request may not specifically refer to a delete marker by"
            " version id."
        ) from exc
    try:
        # Read as its plaintext (with the source's own key: x-amz-copy-source-...-customer-*
        # for SSE-C); conditions and sizes are the client's view.
        reader = plain_reader(ctx, reader, bucket, key, copy_source=True)
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


def source_version_headers(ctx: RequestContext, reader: ObjectReader) -> dict[str, str]:
    """x-amz-copy-source-version-id: the version copied, when it has an id or was named."""
    named = copy_source(ctx)[2] is not None
    version = version_headers(reader.meta.version_id, versioned=named)
    if not version:
        return {}
    return {"x-amz-copy-source-version-id": version["x-amz-version-id"]}


def _checksummed(write: ObjectWrite, algorithm: str) -> ObjectWrite:
    checksum = Checksum(algorithm)
    write.digesters = [checksum]
    write.finalize = lambda size, md5: {algorithm: checksum.b64()}
    write.checksum_type = "FULL_OBJECT"
    return write


def _copied_tags(ctx: RequestContext, source_tags: dict[str, str]) -> dict[str, str]:
    """x-amz-tagging-directive: COPY (the default) keeps the source's tags, REPLACE takes
    x-amz-tagging's (none without it), whatever the metadata directive says."""
    directive = ctx.headers.get("x-amz-tagging-directive", "COPY").upper()
    if directive not in ("COPY", "REPLACE"):
        raise InvalidArgument("Unknown tagging directive.", ArgumentName="x-amz-tagging-directive")
    if directive == "REPLACE":
        return tagging.request_tags(ctx.headers)
    return dict(source_tags)


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
            copy_source(ctx) == (ctx.bucket, ctx.key, None)
            and directive == "COPY"
            and "x-amz-storage-class" not in ctx.headers
            and not sse.names_encryption(ctx.headers)
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
        write.tags = _copied_tags(ctx, source.tags)
        # As S3: a copy gets the ACL the request gives (else the default), never the source's.
        write.owner, write.acl = await new_version_acl(ctx, ctx.headers)
        await conditional_write(ctx, write)
        info = await ctx.backend.head_bucket(ctx.bucket)
        await apply_write_lock(ctx, info, write)
        algorithm = (
            ctx.headers.get("x-amz-checksum-algorithm", "").upper()
            or next(iter(source.checksums), None)
            or checksums.DEFAULT_ALGORITHM
        )
        if algorithm not in checksums.ALGORITHMS:
            raise InvalidRequest(f"Checksum algorithm {algorithm} is not supported.")
        # The target's encryption: the request's headers, else its bucket's default.
        choice = await sse.choose(ctx, ctx.headers, ctx.bucket)
        body = reader.stream()
        _checksummed(write, algorithm)
        if choice is not None:
            record, data_key = sse.new_record(ctx.keyring, choice, ctx.bucket, ctx.key)
            body = seal_write(write, body, record, data_key)
        meta = await ctx.backend.put_object(ctx.bucket, ctx.key, body, write)
        source_headers = source_version_headers(ctx, reader)
    finally:
        await reader.close()
    result = [("LastModified", timestamp(meta.last_modified)), ("ETag", f'"{meta.shown_etag}"')]
    result += [(f"Checksum{a}", v) for a, v in meta.checksums.items()]
    headers = {k: v for k, v in write_result_headers(meta, info).items() if k != "etag"}
    headers.update(source_headers)
    return xml_response("CopyObjectResult", result, headers=headers)


@handler("UploadPartCopy")
async def upload_part_copy(ctx: RequestContext) -> Response:
    number = query_part_number(ctx.query)
    upload = await upload_for_part(ctx)
    data_key = part_key(ctx, upload)  # the target upload's (its SSE-C key with every part)
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
        enc = upload.write.encryption
        if enc is not None and data_key is not None:
            body = seal_write(write, body, enc, data_key, number)
        part = await ctx.backend.upload_part(
            ctx.bucket, ctx.key, upload.upload_id, number, body, write
        )
        source_headers = source_version_headers(ctx, reader)
    finally:
        await reader.close()
    result = [("LastModified", timestamp(part.last_modified)), ("ETag", f'"{part.etag}"')]
    result += [(f"Checksum{a}", v) for a, v in part.checksums.items()]
    headers = {k: v for k, v in part_result_headers(part).items() if k != "etag"}
    headers.update(source_headers)
    headers.update(sse.response_headers(upload.write.encryption))
    return xml_response("CopyPartResult", result, headers=headers)
