"""Put/Get/DeleteBucketEncryption: the bucket's default encryption, a bucket document
(app/encryptionconfig.py has the record, its XML and the cached read writes make).

As S3: the bucket must exist before the body is looked at; GET without a configuration
is 404 ServerSideEncryptionConfigurationNotFoundError; DELETE is 204 also when none was
set. A KMSMasterKeyID is not checked against the keyring (S3 does not validate it either:
the writes that use an unknown one fail with KMS.NotFoundException), but a server with no
keys at all refuses a default it could never apply."""

from __future__ import annotations

import contextlib

from starlette.responses import Response

from shoal.app import sse
from shoal.app.body import read_small, require_integrity_header
from shoal.app.context import RequestContext
from shoal.app.encryptionconfig import (
    DOCUMENT,
    DefaultEncryption,
    encryptions,
    parse_configuration,
    render,
)
from shoal.app.errors import ServerSideEncryptionConfigurationNotFoundError
from shoal.app.handlers.registry import handler
from shoal.storage.errors import NoSuchBucketDocument

MAX_ENCRYPTION_BODY = 16 * 1024


@handler("PutBucketEncryption")
async def put_bucket_encryption(ctx: RequestContext) -> Response:
    await ctx.backend.head_bucket(ctx.bucket)
    require_integrity_header(ctx.headers)
    config = parse_configuration(await read_small(ctx.request, MAX_ENCRYPTION_BODY))
    # Without a key every write to the bucket would fail: refused here, clearly (400).
    sse.default_key(ctx.keyring)
    await ctx.backend.put_bucket_document(ctx.bucket, DOCUMENT, config.to_json())
    encryptions(ctx.backend).forget(ctx.bucket)
    return Response()


@handler("GetBucketEncryption")
async def get_bucket_encryption(ctx: RequestContext) -> Response:
    try:
        text = await ctx.backend.get_bucket_document(ctx.bucket, DOCUMENT)
    except NoSuchBucketDocument as exc:
        raise ServerSideEncryptionConfigurationNotFoundError(BucketName=ctx.bucket) from exc
    return Response(render(DefaultEncryption.from_json(text)), media_type="application/xml")


@handler("DeleteBucketEncryption")
async def delete_bucket_encryption(ctx: RequestContext) -> Response:
    await ctx.backend.head_bucket(ctx.bucket)
    with contextlib.suppress(NoSuchBucketDocument):  # nothing set: done already
        await ctx.backend.delete_bucket_document(ctx.bucket, DOCUMENT)
    encryptions(ctx.backend).forget(ctx.bucket)
    return Response(status_code=204)
