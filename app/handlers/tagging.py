"""Tagging: Put/Get/DeleteBucketTagging and Put/Get/DeleteObjectTagging.

A bucket's tag set is a bucket document ("tagging", the rendered Tagging XML), so it
works in every mode; an object version's tags live in its metadata (`ObjectMeta.tags`),
changed through `update_object_meta` under the key's lock.
"""

from __future__ import annotations

import dataclasses

from starlette.responses import Response

from shoal.app import tagging
from shoal.app.authz import PolicyGate
from shoal.app.body import read_small, require_integrity_header
from shoal.app.context import RequestContext
from shoal.app.dispatch import Operation
from shoal.app.errors import NoSuchTagSet
from shoal.app.handlers.registry import handler
from shoal.app.headers import version_headers, version_param
from shoal.storage.backend import Backend, ObjectMeta
from shoal.storage.errors import NoSuchBucketDocument, StorageError
from shoal.storage.version_ids import valid_version_id

DOCUMENT = "tagging"
MAX_TAGGING_BODY = 64 * 1024
#: Operations on an existing object whose policy may test its tags
#: (s3:ExistingObjectTag/<key>), as AWS lists them.
EXISTING_TAG_OPERATIONS = frozenset(
    {
        "GetObject",
        "HeadObject",
        "GetObjectAcl",
        "GetObjectAttributes",
        "GetObjectTagging",
        "PutObjectTagging",
        "DeleteObjectTagging",
        "GetObjectRetention",
        "PutObjectRetention",
        "GetObjectLegalHold",
        "PutObjectLegalHold",
    }
)
EXISTING_TAG_KEY = "s3:existingobjecttag/"


async def existing_tag_context(
    gate: PolicyGate, backend: Backend, op: Operation, query: dict[str, str]
) -> dict[str, object]:
    """s3:ExistingObjectTag/<key> for each tag of the version an operation acts on, read
    only when the bucket's policy tests such a key (so other requests cost no extra
    read). A version that cannot be read gives none: the handler then answers
    NoSuchKey or the like, after authorization, as for any request."""
    if op.bucket is None or op.key is None or op.name not in EXISTING_TAG_OPERATIONS:
        return {}
    policy = await gate.policy(op.bucket)
    if policy is None or not any(
        c.key.startswith(EXISTING_TAG_KEY) for s in policy.statements for c in s.conditions
    ):
        return {}
    version_id = query.get("versionId")
    if version_id is not None and not valid_version_id(version_id):
        return {}
    try:
        meta = await backend.head_object(op.bucket, op.key, version_id)
    except StorageError:
        return {}
    return {f"s3:ExistingObjectTag/{k}": v for k, v in meta.tags.items()}


@handler("PutBucketTagging")
async def put_bucket_tagging(ctx: RequestContext) -> Response:
    require_integrity_header(ctx.headers)
    await ctx.backend.head_bucket(ctx.bucket)
    body = await read_small(ctx.request, MAX_TAGGING_BODY)
    tags = tagging.parse_document(body, limit=tagging.MAX_BUCKET_TAGS)
    if not tags:
        # An empty tag set leaves the bucket untagged (GET answers NoSuchTagSet).
        await ctx.backend.delete_bucket_document(ctx.bucket, DOCUMENT)
        return Response()
    await ctx.backend.put_bucket_document(ctx.bucket, DOCUMENT, tagging.render(tags).decode())
    return Response()


@handler("GetBucketTagging")
async def get_bucket_tagging(ctx: RequestContext) -> Response:
    try:
        text = await ctx.backend.get_bucket_document(ctx.bucket, DOCUMENT)
    except NoSuchBucketDocument as exc:
        raise NoSuchTagSet(BucketName=ctx.bucket) from exc
    return Response(text, media_type="application/xml")


@handler("DeleteBucketTagging")
async def delete_bucket_tagging(ctx: RequestContext) -> Response:
    await ctx.backend.delete_bucket_document(ctx.bucket, DOCUMENT)
    return Response(status_code=204)


async def _versioned(ctx: RequestContext, meta: ObjectMeta, named: bool) -> dict[str, str]:
    versioned = named or bool((await ctx.backend.head_bucket(ctx.bucket)).versioning)
    return version_headers(meta.version_id, versioned=versioned)


async def _set_tags(ctx: RequestContext, tags: dict[str, str]) -> ObjectMeta:
    version_id = version_param(ctx.query)

    def change(meta: ObjectMeta) -> ObjectMeta:
        return dataclasses.replace(meta, tags=dict(tags))

    return await ctx.backend.update_object_meta(ctx.bucket, ctx.key, version_id, change)


@handler("PutObjectTagging")
async def put_object_tagging(ctx: RequestContext) -> Response:
    version_param(ctx.query)
    body = await read_small(ctx.request, MAX_TAGGING_BODY)
    meta = await _set_tags(ctx, tagging.parse_document(body, limit=tagging.MAX_OBJECT_TAGS))
    return Response(headers=await _versioned(ctx, meta, "versionId" in ctx.query))


@handler("GetObjectTagging")
async def get_object_tagging(ctx: RequestContext) -> Response:
    version_id = version_param(ctx.query)
    meta = await ctx.backend.head_object(ctx.bucket, ctx.key, version_id)
    headers = await _versioned(ctx, meta, version_id is not None)
    return Response(tagging.render(meta.tags), headers=headers, media_type="application/xml")


@handler("DeleteObjectTagging")
async def delete_object_tagging(ctx: RequestContext) -> Response:
    meta = await _set_tags(ctx, {})
    headers = await _versioned(ctx, meta, "versionId" in ctx.query)
    return Response(status_code=204, headers=headers)
