"""Put/Get/DeletePublicAccessBlock (the bucket's, a bucket document) and
GetBucketPolicyStatus (whether the bucket policy is public, auth/publicpolicy.py).
What each switch does is enforced in app/authz.py, app/permissions.py and the ACL
and policy handlers."""

from __future__ import annotations

import dataclasses

from starlette.responses import Response

from shoal.app.body import read_small
from shoal.app.context import RequestContext
from shoal.app.errors import MalformedXML, NoSuchBucketPolicy, NoSuchPublicAccessBlockConfiguration
from shoal.app.handlers.registry import handler, xml_response
from shoal.app.permissions import bucket_auth, delete_setting
from shoal.app.xml import parse
from shoal.auth.bucketauth import (
    PUBLIC_ACCESS_DOCUMENT,
    PUBLIC_ACCESS_FIELDS,
    PublicAccessBlock,
    public_access_document,
)

MAX_BLOCK_BODY = 16 * 1024


def parse_public_access_block(body: bytes) -> PublicAccessBlock:
    """A PublicAccessBlockConfiguration: each of the four elements optional (false),
    true or false, nothing else."""
    root = parse(body)
    if root.tag != "PublicAccessBlockConfiguration":
        raise MalformedXML()
    names = dict(PUBLIC_ACCESS_FIELDS)
    values: dict[str, bool] = {}
    for element in root:
        text = (element.text or "").strip().lower()
        if element.tag not in names or names[element.tag] in values:
            raise MalformedXML()
        if text not in ("true", "false"):
            raise MalformedXML()
        values[names[element.tag]] = text == "true"
    return PublicAccessBlock(**values)


@handler("PutPublicAccessBlock")
async def put_public_access_block(ctx: RequestContext) -> Response:
    await bucket_auth(ctx)
    block = parse_public_access_block(await read_small(ctx.request, MAX_BLOCK_BODY))
    text = public_access_document(block)
    await ctx.backend.put_bucket_document(ctx.bucket, PUBLIC_ACCESS_DOCUMENT, text)
    ctx.settings.forget(ctx.bucket)
    return Response()


@handler("GetPublicAccessBlock")
async def get_public_access_block(ctx: RequestContext) -> Response:
    auth = await bucket_auth(ctx)
    block = auth.public_access
    if block is None:
        raise NoSuchPublicAccessBlockConfiguration(BucketName=ctx.bucket)
    flags = dataclasses.asdict(block)
    nodes = [(tag, flags[name]) for tag, name in PUBLIC_ACCESS_FIELDS]
    return xml_response("PublicAccessBlockConfiguration", nodes)


@handler("DeletePublicAccessBlock")
async def delete_public_access_block(ctx: RequestContext) -> Response:
    return await delete_setting(ctx, PUBLIC_ACCESS_DOCUMENT)


@handler("GetBucketPolicyStatus")
async def get_bucket_policy_status(ctx: RequestContext) -> Response:
    auth = await bucket_auth(ctx)
    if auth.policy is None:
        raise NoSuchBucketPolicy(BucketName=ctx.bucket)
    return xml_response("PolicyStatus", [("IsPublic", auth.policy_public)])
