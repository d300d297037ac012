"""Bucket-level operations: list, create, delete, head, location, ACL, policy."""

from __future__ import annotations

import base64
import contextlib
from collections.abc import Sequence

from starlette.responses import Response

from shoal.app.body import read_small
from shoal.app.context import RequestContext
from shoal.app.dispatch import valid_bucket_name
from shoal.app.encryptionconfig import encryptions
from shoal.app.errors import (
    AccessDenied,
    BucketAlreadyExists,
    BucketAlreadyOwnedByYou,
    InvalidArgument,
    InvalidBucketAclWithObjectOwnership,
    MalformedPolicy,
)
from shoal.app.handlers.listing import echoed_param
from shoal.app.handlers.registry import handler, owner, xml_response
from shoal.app.permissions import acl_error
from shoal.app.xml import Node, child_text, parse, text_document, timestamp
from shoal.auth.acl import AclError, grants_outside, request_acl
from shoal.auth.bucketauth import (
    ACL_DOCUMENT,
    ENFORCED,
    OWNERSHIP_DOCUMENT,
    OWNERSHIP_RULES,
    SETTINGS_DOCUMENTS,
    acl_document,
)
from shoal.auth.numbers import parse_uint
from shoal.auth.policy import PolicyError, parse_policy
from shoal.auth.publicpolicy import is_public_policy
from shoal.storage.backend import BucketInfo
from shoal.storage.errors import BucketAlreadyOwnedByYou as StorageBucketExists
from shoal.storage.errors import NoSuchBucketDocument

MAX_CONFIG_BODY = 64 * 1024
MAX_POLICY_BODY = 64 * 1024  # the policy's own 20 KiB limit is checked by parse_policy


#: ListBuckets' query parameters (AWS, 2024); with any of them the answer is paged and
#: each bucket names its region.
LIST_BUCKETS_PARAMS = ("max-buckets", "continuation-token", "prefix", "bucket-region")
MAX_BUCKETS = 10000
#: Tags a continuation token so that no other text (a bare base64 name, a token of
#: another listing) decodes as one.
_TOKEN_TAG = b"shoal-buckets:"


def bucket_token(name: str) -> str:
    """The continuation token naming the last bucket of a page: opaque to clients."""
    return base64.urlsafe_b64encode(_TOKEN_TAG + name.encode()).decode()


def token_bucket(token: str) -> str:
    """The bucket a continuation token names; anything bucket_token did not make is
    400 InvalidArgument."""
    try:
        raw = base64.urlsafe_b64decode(token.encode("ascii"))
        name = raw.removeprefix(_TOKEN_TAG).decode("ascii")
    except (ValueError, UnicodeError) as exc:
        raise _bad_token(token) from exc
    if not raw.startswith(_TOKEN_TAG) or bucket_token(name) != token:
        raise _bad_token(token)
    if not valid_bucket_name(name):
        raise _bad_token(token)
    return name


def _bad_token(token: str) -> InvalidArgument:
    return InvalidArgument(
        "The continuation token provided is incorrect",
        ArgumentName="continuation-token",
        ArgumentValue=token,
    )


def max_buckets_param(query: dict[str, str]) -> int:
    """max-buckets: 1..10000 (AWS's range), 10000 when absent."""
    text = query.get("max-buckets")
    if text is None:
        return MAX_BUCKETS
    value = parse_uint(text)
    if value is None or not 1 <= value <= MAX_BUCKETS:
        raise InvalidArgument(
            "Argument max-buckets must be an integer between 1 and 10000",
            ArgumentName="max-buckets",
            ArgumentValue=text,
        )
    return value


def bucket_page(
    buckets: list[BucketInfo], *, prefix: str, after: str | None, limit: int
) -> tuple[list[BucketInfo], str | None]:
    """The buckets of one page, by name, and the token for the next (None: last page)."""
    chosen = sorted(
        (b for b in buckets if b.name.startswith(prefix) and (after is None or b.name > after)),
        key=lambda b: b.name,
    )
    page = chosen[:limit]
    return page, (bucket_token(page[-1].name) if len(chosen) > limit else None)


def visible_buckets(ctx: RequestContext, buckets: list[BucketInfo]) -> list[BucketInfo]:
    """The caller's own buckets (every bucket for an admin, or with auth off)."""
    account = ctx.requester
    if ctx.gate is None or (account is not None and account.admin):
        return buckets
    me = account.canonical_id if account is not None else None
    return [b for b in buckets if ctx.accounts.owner_id(b.owner) == me]


@handler("ListBuckets")
async def list_buckets(ctx: RequestContext) -> Response:
    buckets = visible_buckets(ctx, await ctx.backend.list_buckets())
    paged = any(name in ctx.query for name in LIST_BUCKETS_PARAMS)
    if not paged:
        return _bucket_list(ctx, buckets, region=None)
    limit = max_buckets_param(ctx.query)
    token = ctx.query.get("continuation-token") or None
    after = token_bucket(token) if token is not None else None
    prefix = ctx.query.get("prefix", "")
    region = ctx.config.server.region
    if ctx.query.get("bucket-region", region) != region:
        buckets = []  # shoal's buckets are all in its one region
    page, next_token = bucket_page(buckets, prefix=prefix, after=after, limit=limit)
    extra: list[Node] = [("ContinuationToken", next_token)]
    if "prefix" in ctx.query:
        extra.append(("Prefix", echoed_param(ctx, "prefix", url_encoded=False)))
    return _bucket_list(ctx, page, region=region, extra=extra)


def _bucket_list(
    ctx: RequestContext,
    buckets: list[BucketInfo],
    *,
    region: str | None,
    extra: Sequence[Node] = (),
) -> Response:
    """ListAllMyBucketsResult; `region`: name it in each bucket (a paged answer)."""
    return xml_response(
        "ListAllMyBucketsResult",
        [
            ("Owner", owner(ctx)),
            (
                "Buckets",
                [
                    (
                        "Bucket",
                        [
                            ("Name", b.name),
                            ("CreationDate", timestamp(b.created)),
                            ("BucketRegion", region),
                        ],
                    )
                    for b in buckets
                ],
            ),
            *extra,
        ],
    )


@handler("CreateBucket")
async def create_bucket(ctx: RequestContext) -> Response:
    if ctx.headers.get("content-length", "0") != "0" or "transfer-encoding" in ctx.headers:
        body = await read_small(ctx.request, MAX_CONFIG_BODY)
        if body.strip():
            # CreateBucketConfiguration: the location is accepted and reported as ours.
            child_text(parse(body), "LocationConstraint")
    lock = ctx.headers.get("x-amz-bucket-object-lock-enabled", "").strip().lower()
    if lock not in ("", "true", "false"):
        raise InvalidArgument(
            "Object Lock enabled must be true or false",
            ArgumentName="x-amz-bucket-object-lock-enabled",
            ArgumentValue=lock,
        )
    creator = ctx.requester
    me = creator.canonical_id if creator is not None else ""
    rule = ctx.headers.get("x-amz-object-ownership")
    if rule is not None and rule not in OWNERSHIP_RULES:
        raise InvalidArgument(
            "Invalid x-amz-object-ownership header",
            ArgumentName="x-amz-object-ownership",
            ArgumentValue=rule,
        )
    try:
        grants = request_acl(ctx.headers, ctx.accounts, me, me, bucket=True)
    except AclError as exc:
        raise acl_error(exc) from exc
    if rule == ENFORCED and grants is not None and grants_outside(grants, me):
        raise InvalidBucketAclWithObjectOwnership()
    try:
        # With auth off the owner stays "": the first credential, whatever it becomes.
        owner_field = me if ctx.gate is not None else ""
        await ctx.backend.create_bucket(ctx.bucket, object_lock=lock == "true", owner=owner_field)
    except StorageBucketExists:
        info = await ctx.backend.head_bucket(ctx.bucket)
        if ctx.accounts.owner_id(info.owner) != me:
            raise BucketAlreadyExists(BucketName=ctx.bucket) from None
        if ctx.config.server.region != "us-east-1":
            raise BucketAlreadyOwnedByYou(BucketName=ctx.bucket) from None
        # us-east-1 answers the owner 200 and changes nothing, as S3 does.
        return Response(headers={"location": f"/{ctx.bucket}"})
    # A bucket of this name deleted in a crash may have left its settings behind: they
    # are not this bucket's (and must not grant anything on it).
    for name in SETTINGS_DOCUMENTS:
        with contextlib.suppress(NoSuchBucketDocument):
            await ctx.backend.delete_bucket_document(ctx.bucket, name)
    ctx.settings.forget(ctx.bucket)
    encryptions(ctx.backend).forget(ctx.bucket)
    # Settings given at creation; a crash before they land leaves the safe defaults
    # (private, ObjectWriter).
    if grants is not None:
        await ctx.backend.put_bucket_document(ctx.bucket, ACL_DOCUMENT, acl_document(grants))
    if rule is not None:
        await ctx.backend.put_bucket_document(ctx.bucket, OWNERSHIP_DOCUMENT, rule)
    return Response(headers={"location": f"/{ctx.bucket}"})


@handler("DeleteBucket")
async def delete_bucket(ctx: RequestContext) -> Response:
    await ctx.backend.delete_bucket(ctx.bucket)
    encryptions(ctx.backend).forget(ctx.bucket)
    if ctx.gate is not None:
        ctx.gate.forget(ctx.bucket)
    return Response(status_code=204)


@handler("HeadBucket")
async def head_bucket(ctx: RequestContext) -> Response:
    await ctx.backend.head_bucket(ctx.bucket)
    return Response(headers={"x-amz-bucket-region": ctx.config.server.region})


@handler("GetBucketLocation")
async def get_bucket_location(ctx: RequestContext) -> Response:
    await ctx.backend.head_bucket(ctx.bucket)
    region = ctx.config.server.region
    # us-east-1 is reported as an empty LocationConstraint, as S3 does.
    body = text_document("LocationConstraint", "" if region == "us-east-1" else region)
    return Response(body, media_type="application/xml")


@handler("GetBucketPolicy")
async def get_bucket_policy(ctx: RequestContext) -> Response:
    policy = await ctx.backend.get_bucket_policy(ctx.bucket)
    return Response(policy, media_type="application/json")


@handler("PutBucketPolicy")
async def put_bucket_policy(ctx: RequestContext) -> Response:
    # Authorized (s3:PutBucketPolicy) before this; the body is read with a cap.
    await ctx.backend.head_bucket(ctx.bucket)
    body = await read_small(ctx.request, MAX_POLICY_BODY)
    try:
        text = body.decode("utf-8")
        parse_policy(text, ctx.bucket)  # stored as given once it validates
    except (UnicodeDecodeError, RecursionError) as exc:  # RecursionError: JSON nested deep
        raise MalformedPolicy() from exc
    except PolicyError as exc:
        raise MalformedPolicy(exc.reason) from exc
    auth = await ctx.settings.get(ctx.bucket)
    blocked = auth is not None and auth.block.block_public_policy
    if blocked and is_public_policy(parse_policy(text, ctx.bucket)):
        raise AccessDenied()
    await ctx.backend.put_bucket_policy(ctx.bucket, text)
    if ctx.gate is not None:
        ctx.gate.forget(ctx.bucket)
    return Response(status_code=204)


@handler("DeleteBucketPolicy")
async def delete_bucket_policy(ctx: RequestContext) -> Response:
    await ctx.backend.head_bucket(ctx.bucket)
    await ctx.backend.delete_bucket_policy(ctx.bucket)
    if ctx.gate is not None:
        ctx.gate.forget(ctx.bucket)
    return Response(status_code=204)
