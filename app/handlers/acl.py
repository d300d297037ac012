"""GetBucketAcl, PutBucketAcl, GetObjectAcl, PutObjectAcl (with versionId).

A bucket's grants are a bucket document (auth/bucketauth.py); an object version's are
its metadata's `acl`, replaced through update_object_meta under the key's lock. An ACL
comes from x-amz-acl, from x-amz-grant-* headers, or from an AccessControlPolicy body,
exactly one of them. Under BucketOwnerEnforced ACLs are read as the owner's
FULL_CONTROL and only such an ACL may be set (else AccessControlListNotSupported).
"""

from __future__ import annotations

import dataclasses

from starlette.responses import Response

from shoal.app.body import read_small
from shoal.app.context import RequestContext
from shoal.app.errors import (
    AccessControlListNotSupported,
    AccessDenied,
    MalformedACLError,
    MalformedXML,
    UnexpectedContent,
)
from shoal.app.handlers.registry import handler, xml_response
from shoal.app.headers import version_headers, version_param
from shoal.app.permissions import acl_error, bucket_auth, policy_nodes
from shoal.app.xml import parse
from shoal.auth.acl import AclError, default_acl, effective, is_public, policy_grants, request_acl
from shoal.auth.bucketauth import ACL_DOCUMENT, BucketAuth, acl_document
from shoal.storage.backend import Grant, ObjectMeta

MAX_ACL_BODY = 64 * 1024


@handler("GetBucketAcl")
async def get_bucket_acl(ctx: RequestContext) -> Response:
    auth = await bucket_auth(ctx)
    grants = auth.acl if auth.acls_enabled else default_acl(auth.owner)
    return xml_response("AccessControlPolicy", policy_nodes(ctx, auth.owner, grants))


@handler("PutBucketAcl")
async def put_bucket_acl(ctx: RequestContext) -> Response:
    auth = await bucket_auth(ctx)
    grants = await _requested(ctx, auth.owner, auth.owner, bucket=True)
    _check_settable(auth, grants, auth.owner)
    await ctx.backend.put_bucket_document(ctx.bucket, ACL_DOCUMENT, acl_document(grants))
    ctx.settings.forget(ctx.bucket)
    return Response()


def version_owner(meta: ObjectMeta, auth: BucketAuth, ctx: RequestContext) -> str:
    """Who owns a version: the bucket owner under BucketOwnerEnforced, else its writer
    (the bucket owner for versions recorded without one)."""
    if not auth.acls_enabled or not meta.owner:
        return auth.owner
    return ctx.accounts.owner_id(meta.owner)


@handler("GetObjectAcl")
async def get_object_acl(ctx: RequestContext) -> Response:
    auth = await bucket_auth(ctx)
    meta = await ctx.backend.head_object(ctx.bucket, ctx.key, version_param(ctx.query))
    owner = version_owner(meta, auth, ctx)
    grants = effective(meta.acl, owner) if auth.acls_enabled else default_acl(owner)
    headers = version_headers(meta.version_id, versioned="versionId" in ctx.query)
    return xml_response("AccessControlPolicy", policy_nodes(ctx, owner, grants), headers=headers)


@handler("PutObjectAcl")
async def put_object_acl(ctx: RequestContext) -> Response:
    auth = await bucket_auth(ctx)
    version_id = version_param(ctx.query)
    meta = await ctx.backend.head_object(ctx.bucket, ctx.key, version_id)
    owner = version_owner(meta, auth, ctx)
    grants = await _requested(ctx, owner, auth.owner, bucket=False)
    _check_settable(auth, grants, owner)
    if owner != auth.owner or grants != default_acl(owner):
        await ctx.settings.note_object_grants(ctx.bucket)

    def change(stored: ObjectMeta) -> ObjectMeta:
        return dataclasses.replace(stored, acl=grants)

    updated = await ctx.backend.update_object_meta(ctx.bucket, ctx.key, meta.version_id, change)
    headers = version_headers(updated.version_id, versioned="versionId" in ctx.query)
    return Response(headers=headers)


def _check_settable(auth: BucketAuth, grants: tuple[Grant, ...], owner: str) -> None:
    """BucketOwnerEnforced takes only the owner's FULL_CONTROL; BlockPublicAcls refuses
    a public ACL (AccessDenied, as S3)."""
    if not auth.acls_enabled and grants != default_acl(owner):
        raise AccessControlListNotSupported()
    if auth.block.block_public_acls and is_public(grants):
        raise AccessDenied()


async def _requested(
    ctx: RequestContext, owner: str, bucket_owner: str, *, bucket: bool
) -> tuple[Grant, ...]:
    """The grants a Put*Acl request sets: from its headers or from its body, not both."""
    try:
        from_headers = request_acl(ctx.headers, ctx.accounts, owner, bucket_owner, bucket=bucket)
    except AclError as exc:
        raise acl_error(exc) from exc
    body = b""
    if ctx.headers.get("content-length", "0") != "0" or "transfer-encoding" in ctx.headers:
        body = await read_small(ctx.request, MAX_ACL_BODY)
    if from_headers is not None:
        if body.strip():
            raise UnexpectedContent()
        return from_headers
    try:
        root = parse(body)
    except MalformedXML as exc:
        raise MalformedACLError() from exc
    try:
        return policy_grants(root, ctx.accounts)
    except AclError as exc:
        raise acl_error(exc) from exc
