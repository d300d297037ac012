"""Put/Get/DeleteBucketOwnershipControls: the bucket's Object Ownership rule, a bucket
document. Without one a bucket behaves as ObjectWriter with ACLs enabled, what
self-hosted S3 servers do and what tools sending x-amz-acl expect (AWS made
BucketOwnerEnforced the default for new buckets in April 2023)."""

from __future__ import annotations

from starlette.responses import Response

from shoal.app.body import read_small
from shoal.app.context import RequestContext
from shoal.app.errors import (
    InvalidBucketAclWithObjectOwnership,
    MalformedXML,
    OwnershipControlsNotFoundError,
)
from shoal.app.handlers.registry import handler, xml_response
from shoal.app.permissions import bucket_auth, delete_setting
from shoal.app.xml import parse
from shoal.auth.acl import grants_outside
from shoal.auth.bucketauth import ENFORCED, OWNERSHIP_DOCUMENT, OWNERSHIP_RULES

MAX_OWNERSHIP_BODY = 16 * 1024


def parse_ownership(body: bytes) -> str:
    """The ObjectOwnership of an OwnershipControls document with exactly one Rule."""
    root = parse(body)
    rules = root.findall("Rule")
    if root.tag != "OwnershipControls" or len(rules) != 1 or len(root) != 1:
        raise MalformedXML()
    value = (rules[0].findtext("ObjectOwnership") or "").strip()
    if value not in OWNERSHIP_RULES or len(rules[0]) != 1:
        raise MalformedXML()
    return value


@handler("PutBucketOwnershipControls")
async def put_ownership_controls(ctx: RequestContext) -> Response:
    auth = await bucket_auth(ctx)
    rule = parse_ownership(await read_small(ctx.request, MAX_OWNERSHIP_BODY))
    if rule == ENFORCED and grants_outside(auth.acl, auth.owner):
        raise InvalidBucketAclWithObjectOwnership()
    await ctx.backend.put_bucket_document(ctx.bucket, OWNERSHIP_DOCUMENT, rule)
    ctx.settings.forget(ctx.bucket)
    return Response()


@handler("GetBucketOwnershipControls")
async def get_ownership_controls(ctx: RequestContext) -> Response:
    auth = await bucket_auth(ctx)
    if not auth.ownership:
        raise OwnershipControlsNotFoundError(BucketName=ctx.bucket)
    rule = [("Rule", [("ObjectOwnership", auth.ownership)])]
    return xml_response("OwnershipControls", rule)


@handler("DeleteBucketOwnershipControls")
async def delete_ownership_controls(ctx: RequestContext) -> Response:
    return await delete_setting(ctx, OWNERSHIP_DOCUMENT)
