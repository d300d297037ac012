"""Object operations: PutObject, GetObject, HeadObject, DeleteObject, DeleteObjects,
with or without a version id."""

from __future__ import annotations

from collections.abc import AsyncIterator

from starlette.responses import Response, StreamingResponse

from shoal.app import objectlock, sse
from shoal.app.body import read_small, require_integrity_header, upload_body
from shoal.app.context import RequestContext
from shoal.app.errors import (
    InvalidPart,
    InvalidRequest,
    KeyTooLongError,
    MalformedXML,
    NotImplementedFeature,
    S3Error,
    from_storage,
)
from shoal.app.handlers.lifecycle import expiration_headers
from shoal.app.handlers.objectlock import apply_write_lock, may_bypass, require_write_integrity
from shoal.app.handlers.registry import handler, xml_response
from shoal.app.headers import (
    check_conditions,
    checksum_headers,
    object_headers,
    object_write,
    parse_range,
    query_part_number,
    response_overrides,
    version_headers,
    version_param,
)
from shoal.app.permissions import new_version_acl
from shoal.app.sealing import PlainReader, seal_write
from shoal.app.xml import Node, child_text, parse
from shoal.auth.actions import action_for
from shoal.storage import checksums
from shoal.storage.backend import (
    MAX_KEY_BYTES,
    NULL_VERSION,
    BucketInfo,
    DeleteResult,
    Guard,
    ObjectMeta,
    ObjectReader,
    ObjectWrite,
)
from shoal.storage.errors import NoSuchBucket, NoSuchVersion, StorageError
from shoal.storage.errors import NoSuchKey as StorageNoSuchKey

#: Objects up to this size are answered in one body instead of a stream.
SMALL_BODY = 256 * 1024
MAX_DELETE_KEYS = 1000
MAX_DELETE_BODY = 2 * 1024 * 1024


async def conditional_write(ctx: RequestContext, write: ObjectWrite) -> None:
    """If-None-Match: * and If-Match on writes, checked by the backend at commit."""
    if_none_match = ctx.headers.get("if-none-match")
    if if_none_match is not None:
        if if_none_match.strip() != "*":
            raise NotImplementedFeature("If-None-Match on writes only supports '*'.")
        write.if_none_match = True
    if_match = ctx.headers.get("if-match")
    if if_match is not None:
        write.if_match = await _stored_etag(ctx, if_match.strip().strip('"'))


async def _stored_etag(ctx: RequestContext, etag: str) -> str:
    """The stored ETag the backend compares for an If-Match the client wrote with the
    ETag it sees: an encrypted current version's stored (ciphertext) ETag differs. The
    backend still checks atomically: a version written meanwhile has another one."""
    try:
        meta = await ctx.backend.head_object(ctx.bucket, ctx.key)
    except (StorageNoSuchKey, NoSuchBucket):
        return etag  # no current version: the backend answers as it does
    return meta.etag if meta.encryption is not None and meta.shown_etag == etag else etag


def write_result_headers(
    meta: ObjectMeta, info: BucketInfo, *, completion: bool = False
) -> dict[str, str]:
    """ETag, checksums, encryption and the new version's id (the null one too, once the
    bucket has been versioned). A completion echoes less encryption, as S3 does."""
    headers = {"etag": f'"{meta.shown_etag}"'}
    headers.update(checksum_headers(meta))
    encryption = sse.response_headers(
        meta.encryption, context=not completion, customer=not completion
    )
    headers.update(encryption)
    headers.update(version_headers(meta.version_id, versioned=bool(info.versioning)))
    return headers


@handler("PutObject")
async def put_object(ctx: RequestContext) -> Response:
    write = object_write(ctx.headers, max_metadata_size=ctx.config.limits.max_metadata_size)
    write.owner, write.acl = await new_version_acl(ctx, ctx.headers)
    await conditional_write(ctx, write)
    info = await ctx.backend.head_bucket(ctx.bucket)
    require_write_integrity(ctx, info)
    await apply_write_lock(ctx, info, write)
    choice = await sse.choose(ctx, ctx.headers, ctx.bucket)
    max_size = ctx.config.limits.max_object_size
    body, integrity = upload_body(
        ctx.request, ctx.headers, default_algorithm=checksums.DEFAULT_ALGORITHM, max_size=max_size
    )
    write.digesters = list(integrity.digesters.values())
    write.finalize = integrity.finalize
    write.max_size = max_size
    write.checksum_type = "FULL_OBJECT"
    if choice is not None:
        record, data_key = sse.new_record(ctx.keyring, choice, ctx.bucket, ctx.key)
        body = seal_write(write, body, record, data_key)
    meta = await ctx.backend.put_object(ctx.bucket, ctx.key, body, write)
    return Response(headers=write_result_headers(meta, info))


def _part_range(ctx: RequestContext, meta: ObjectMeta) -> tuple[int, int] | None:
    """The byte range ?partNumber=N asks for (None: the whole, empty object)."""
    number = query_part_number(ctx.query)
    if "range" in ctx.headers:
        raise InvalidRequest("Cannot specify both Range header and partNumber query parameter")
    parts = meta.parts or []
    if not parts:
        if number != 1:
            raise InvalidPart()
        return (0, meta.size - 1) if meta.size else None
    if number > len(parts):
        raise InvalidPart()
    start = sum(p.size for p in parts[: number - 1])
    return start, start + parts[number - 1].size - 1


async def _versioned(ctx: RequestContext, meta: ObjectMeta, version_id: str | None) -> bool:
    """Whether GET/HEAD name the version they answer with even when it is the null one:
    the request named it, or the bucket is or was versioned."""
    if version_id is not None or meta.version_id != NULL_VERSION:
        return True
    return bool((await ctx.backend.head_bucket(ctx.bucket)).versioning)


#: Lock headers and the permission a caller needs to see them (S3 leaves them out
#: otherwise).
_LOCK_VISIBILITY = (
    ("s3:GetObjectRetention", ("x-amz-object-lock-mode", "x-amz-object-lock-retain-until-date")),
    ("s3:GetObjectLegalHold", ("x-amz-object-lock-legal-hold",)),
)


async def _hidden(ctx: RequestContext, meta: ObjectMeta) -> list[str]:
    """The lock headers this caller may not see (none while auth is off)."""
    if ctx.gate is None or (meta.retention is None and not meta.legal_hold):
        return []
    hidden: list[str] = []
    for action, names in _LOCK_VISIBILITY:
        if not await ctx.gate.allows(ctx.principal, action, ctx.bucket, ctx.key):
            hidden += names
    return hidden


def _read_headers(
    ctx: RequestContext, meta: ObjectMeta, versioned: bool, hidden: list[str]
) -> tuple[int, dict[str, str], tuple[int, int] | None]:
    """Status, headers and byte range for GET/HEAD, after the conditional checks."""
    headers = object_headers(meta, versioned=versioned)
    headers.update(sse.response_headers(meta.encryption))
    for name in hidden:
        headers.pop(name, None)
    if not check_conditions(ctx.headers, meta):
        kept = ("etag", "last-modified", "x-amz-version-id")
        return 304, {k: headers[k] for k in kept if k in headers}, None
    if "partNumber" in ctx.query:
        span = _part_range(ctx, meta)
        if meta.parts:
            headers["x-amz-mp-parts-count"] = str(len(meta.parts))
    else:
        span = parse_range(ctx.headers.get("range"), meta.size)
    status = 200
    if span is not None and (span != (0, meta.size - 1) or "range" in ctx.headers):
        status = 206
        headers["content-range"] = f"bytes {span[0]}-{span[1]}/{meta.size}"
    elif ctx.headers.get("x-amz-checksum-mode", "").upper() == "ENABLED":
        # A whole-object checksum only describes a whole-object answer.
        headers.update(checksum_headers(meta))
    overrides = response_overrides(ctx.query)
    if overrides and ctx.gate is not None and ctx.principal.anonymous:
        # S3's rule: a public object's answer cannot be re-labelled by whoever links to it.
        raise InvalidRequest(
            "Request specific response headers cannot be used for anonymous GET requests."
        )
    headers.update(overrides)
    length = meta.size if span is None else span[1] - span[0] + 1
    headers["content-length"] = str(length)
    return status, headers, span


@handler("HeadObject")
async def head_object(ctx: RequestContext) -> Response:
    version_id = version_param(ctx.query)
    meta = sse.check_read(ctx, await ctx.backend.head_object(ctx.bucket, ctx.key, version_id))
    versioned = await _versioned(ctx, meta, version_id)
    status, headers, _ = _read_headers(ctx, meta, versioned, await _hidden(ctx, meta))
    headers.update(await expiration_headers(ctx, meta, version_id))
    return Response(status_code=status, headers=headers)


@handler("GetObject")
async def get_object(ctx: RequestContext) -> Response:
    version_id = version_param(ctx.query)
    reader = await ctx.backend.open_object(ctx.bucket, ctx.key, version_id)
    try:
        reader = plain_reader(ctx, reader, ctx.bucket, ctx.key)
        versioned = await _versioned(ctx, reader.meta, version_id)
        hidden = await _hidden(ctx, reader.meta)
        status, headers, span = _read_headers(ctx, reader.meta, versioned, hidden)
        headers.update(await expiration_headers(ctx, reader.meta, version_id))
        if status == 304 or reader.meta.size == 0:
            await reader.close()
            return Response(status_code=status, headers=headers)
        start, end = span if span is not None else (0, reader.meta.size - 1)
        if end - start + 1 <= SMALL_BODY:
            body = b"".join([chunk async for chunk in reader.stream(start, end)])
            await reader.close()
            return Response(body, status, headers)
        # The first piece is read before the status line goes out, so an object that
        # cannot be read (too few drives in cluster mode) gets a proper S3 error.
        stream = reader.stream(start, end)
        first = await anext(stream, b"")
    except BaseException:
        await reader.close()
        raise
    return StreamingResponse(_stream_then_close(reader, first, stream), status, headers)


def plain_reader(
    ctx: RequestContext,
    reader: ObjectReader,
    bucket: str,
    key: str,
    *,
    copy_source: bool = False,
) -> ObjectReader:
    """An open version as the client reads it: decrypted when it is encrypted (after
    S3's checks of the request's SSE-C headers). The caller closes it either way."""
    data_key = sse.read_key(ctx, reader.meta, bucket, key, copy_source=copy_source)
    return reader if data_key is None else PlainReader(reader, data_key)


async def _stream_then_close(
    reader: ObjectReader, first: bytes, rest: AsyncIterator[bytes]
) -> AsyncIterator[bytes]:
    try:
        yield first
        async for chunk in rest:
            yield chunk
    finally:
        await rest.aclose()  # type: ignore[attr-defined]
        await reader.close()


@handler("DeleteObject")
async def delete_object(ctx: RequestContext) -> Response:
    version_id = version_param(ctx.query)
    if_match = ctx.headers.get("if-match")
    guard = objectlock.delete_guard(
        if_match=if_match,
        version_id=version_id,
        bypass=version_id is not None and await may_bypass(ctx, ctx.key),
        clock=objectlock.now,
    )
    result = await _delete(ctx, ctx.key, version_id, guard)
    return Response(status_code=204, headers=delete_headers(result))


async def _delete(
    ctx: RequestContext, key: str, version_id: str | None, guard: Guard | None
) -> DeleteResult:
    """Delete one key or version; a version that does not exist is already deleted
    (S3's DELETE is idempotent for versions too)."""
    # A marker is owned as a new version would be (the bucket owner unless ACLs are on).
    owner = "" if version_id is not None else (await new_version_acl(ctx, {}))[0]
    try:
        return await ctx.backend.delete_object(
            ctx.bucket, key, version_id=version_id, guard=guard, owner=owner
        )
    except NoSuchVersion:
        return DeleteResult(version_id=version_id)


def delete_headers(result: DeleteResult) -> dict[str, str]:
    headers = {}
    if result.version_id is not None:
        headers["x-amz-version-id"] = result.version_id
    if result.delete_marker:
        headers["x-amz-delete-marker"] = "true"
    return headers


def parse_delete(body: bytes) -> tuple[bool, list[tuple[str, str | None]]]:
    """The Delete document: (quiet, [(key, version id)]), or MalformedXML."""
    root = parse(body)
    if root.tag != "Delete":
        raise MalformedXML()
    quiet = (child_text(root, "Quiet") or "").strip().lower() == "true"
    objects = root.findall("Object")
    if not objects or len(objects) > MAX_DELETE_KEYS:
        raise MalformedXML()
    keys: list[tuple[str, str | None]] = []
    for element in objects:
        key = child_text(element, "Key")
        if key is None:
            raise MalformedXML()
        keys.append((key, child_text(element, "VersionId")))
    return quiet, keys


@handler("DeleteObjects")
async def delete_objects(ctx: RequestContext) -> Response:
    # The caller passed gate.check_operation (whether it may delete anything here)
    # before this reads a byte; each key is checked again in _delete_one.
    require_integrity_header(ctx.headers)
    await ctx.backend.head_bucket(ctx.bucket)
    quiet, keys = parse_delete(await read_small(ctx.request, MAX_DELETE_BODY))
    results: list[Node] = []
    for key, version in keys:
        outcome = await _delete_one(ctx, key, version)
        if isinstance(outcome, S3Error):
            error = [("Key", key), ("VersionId", version)]
            error += [("Code", outcome.code), ("Message", outcome.text)]
            results.append(("Error", error))
        elif not quiet:
            deleted: list[Node] = [("Key", key), ("VersionId", version)]
            if outcome.delete_marker:
                deleted.append(("DeleteMarker", True))
                deleted.append(("DeleteMarkerVersionId", outcome.version_id))
            results.append(("Deleted", deleted))
    return xml_response("DeleteResult", results)


async def _delete_one(ctx: RequestContext, key: str, version: str | None) -> S3Error | DeleteResult:
    if len(key.encode("utf-8", "surrogatepass")) > MAX_KEY_BYTES:
        return KeyTooLongError()
    try:
        if version is not None:
            version_param({"versionId": version})
        if ctx.gate is not None:
            action = action_for("DeleteObject", version=version is not None)
            await ctx.gate.check(ctx.principal, action, ctx.bucket, key)
        guard = objectlock.delete_guard(
            if_match=None,
            version_id=version,
            bypass=version is not None and await may_bypass(ctx, key),
            clock=objectlock.now,
        )
        return await _delete(ctx, key, version, guard)
    except StorageError as exc:
        return from_storage(exc)
    except S3Error as exc:
        return exc
