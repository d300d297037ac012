"""ACLs at the HTTP boundary: AWS's errors for refused ACLs, the owner and grants of a
new object version (x-amz-acl / x-amz-grant-* on PutObject, CopyObject,
CreateMultipartUpload, and a POST form's acl / x-amz-grant-* fields), and the
AccessControlPolicy document GetBucketAcl and GetObjectAcl answer.

Object Ownership decides who owns a new version: the writer (ObjectWriter, and no
setting), the bucket owner when the writer gives bucket-owner-full-control
(BucketOwnerPreferred), the bucket owner always (BucketOwnerEnforced, where any ACL but
bucket-owner-full-control is AccessControlListNotSupported).
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping

from starlette.responses import Response

from shoal.app.context import RequestContext
from shoal.app.errors import (
    AccessControlListNotSupported,
    AccessDenied,
    InvalidArgument,
    NoSuchBucket,
    S3Error,
)
from shoal.app.handlers.registry import owner
from shoal.app.xml import Node
from shoal.auth import Principal
from shoal.auth.accounts import ANONYMOUS_ID
from shoal.auth.acl import GRANT_HEADERS, AclError, is_public, request_acl
from shoal.auth.bucketauth import PREFERRED, BucketAuth
from shoal.storage.backend import Grant
from shoal.storage.errors import NoSuchBucketDocument

BUCKET_OWNER_FULL_CONTROL = "bucket-owner-full-control"
XSI = 'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"'


def acl_error(exc: AclError) -> S3Error:
    """The S3 error an AclError names."""
    return S3Error.registry.get(exc.code, InvalidArgument)(exc.message or None, **exc.fields)


async def bucket_auth(ctx: RequestContext) -> BucketAuth:
    auth = await ctx.settings.get(ctx.bucket)
    if auth is None:
        raise NoSuchBucket(BucketName=ctx.bucket)
    return auth


async def delete_setting(ctx: RequestContext, document: str) -> Response:
    """Delete* of a bucket setting kept as a document (ownership controls, public access
    block): 204, also when none was set (as S3); this node stops caching it at once."""
    await bucket_auth(ctx)
    with contextlib.suppress(NoSuchBucketDocument):  # nothing set: done already
        await ctx.backend.delete_bucket_document(ctx.bucket, document)
    ctx.settings.forget(ctx.bucket)
    return Response(status_code=204)


def writer_id(ctx: RequestContext, principal: Principal | None = None) -> str:
    """The canonical id of whoever writes (ANONYMOUS_ID for anonymous callers)."""
    if principal is not None and ctx.gate is not None:
        account = ctx.accounts.by_key(principal.access_key)
    else:
        account = ctx.requester
    return account.canonical_id if account is not None else ANONYMOUS_ID


def refuse_acl_when_disabled(fields: Mapping[str, str], canned_name: str) -> None:
    """Under BucketOwnerEnforced a write may carry bucket-owner-full-control or no ACL."""
    canned = fields.get(canned_name)
    grants = any(name in fields for name in GRANT_HEADERS)
    if grants or (canned is not None and canned.strip() != BUCKET_OWNER_FULL_CONTROL):
        raise AccessControlListNotSupported()


async def new_version_acl(
    ctx: RequestContext,
    fields: Mapping[str, str],
    *,
    canned_name: str = "x-amz-acl",
    principal: Principal | None = None,
) -> tuple[str, tuple[Grant, ...] | None]:
    """(owner, grants) of a version about to be written: grants None is the default."""
    auth = await bucket_auth(ctx)
    if not auth.acls_enabled:
        refuse_acl_when_disabled(fields, canned_name)
        return auth.owner, None
    writer = writer_id(ctx, principal)
    canned = (fields.get(canned_name) or "").strip()
    version_owner = writer
    if auth.ownership == PREFERRED and canned == BUCKET_OWNER_FULL_CONTROL:
        version_owner = auth.owner
    try:
        grants = request_acl(
            fields, ctx.accounts, version_owner, auth.owner, bucket=False, canned_name=canned_name
        )
    except AclError as exc:
        raise acl_error(exc) from exc
    if grants is not None and auth.block.block_public_acls and is_public(grants):
        raise AccessDenied()
    if version_owner != auth.owner or grants is not None:
        await ctx.settings.note_object_grants(ctx.bucket)
    return version_owner, grants


def policy_nodes(ctx: RequestContext, owner_id: str, grants: tuple[Grant, ...]) -> list[Node]:
    """The children of an AccessControlPolicy document."""
    return [
        ("Owner", owner(ctx, owner_id)),
        ("AccessControlList", [("Grant", _grant(ctx, g)) for g in grants]),
    ]


def _grant(ctx: RequestContext, grant: Grant) -> list[Node]:
    # As S3 writes it; s3cmd (cp, mv, setacl) reads the grantee's type from xsi:type.
    if grant.group:
        who: Node = (f'Grantee {XSI} xsi:type="Group"', [("URI", grant.grantee)])
    else:
        name = ctx.accounts.display_name(grant.grantee) or None
        who = (
            f'Grantee {XSI} xsi:type="CanonicalUser"',
            [("ID", grant.grantee), ("DisplayName", name)],
        )
    return [who, ("Permission", grant.permission)]
