"""Bucket-level operations: list, create, delete, head, location, ACL, policy."""

from __future__ import annotations

import base64
from collections.abc import Sequence

from starlette.responses import Response

from shoal.app.body import read_small
from shoal.app.context import RequestContext
from shoal.app.dispatch import valid_bucket_name
from shoal.app.errors import InvalidArgument, MalformedPolicy
from shoal.app.handlers.listing import echoed_param
from shoal.app.handlers.registry import handler, owner, xml_response
from shoal.app.headers import version_headers, version_param
from shoal.app.xml import Node, child_text, parse, text_document, timestamp
from shoal.auth.numbers import parse_uint
from shoal.auth.policy import PolicyError, parse_policy
from shoal.storage.backend import BucketInfo

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


@handler("ListBuckets")
async def list_buckets(ctx: RequestContext) -> Response:
    buckets = await ctx.backend.list_buckets()
    paged = any(name in ctx.query for name in LIST_BUCKETS_PARAMS)
    if not paged:
        return _bucket_list(buckets, region=None)
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
    return _bucket_list(page, region=region, extra=extra)


def _bucket_list(
    buckets: list[BucketInfo], *, region: str | None, extra: Sequence[Node] = ()
) -> Response:
    """ListAllMyBucketsResult; `region`: name it in each bucket (a paged answer)."""
    return xml_response(
        "ListAllMyBucketsResult",
        [
            ("Owner", owner()),
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
    await ctx.backend.create_bucket(ctx.bucket, object_lock=lock == "true")
    return Response(headers={"location": f"/{ctx.bucket}"})


@handler("DeleteBucket")
async def delete_bucket(ctx: RequestContext) -> Response:
    await ctx.backend.delete_bucket(ctx.bucket)
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


#: As S3 writes it; s3cmd (cp, mv, setacl) reads the grantee's type from xsi:type.
_CANONICAL_USER = (
    'Grantee xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xsi:type="CanonicalUser"'
)


def _acl() -> list:
    grantee = (_CANONICAL_USER, owner())
    return [
        ("Owner", owner()),
        ("AccessControlList", [("Grant", [grantee, ("Permission", "FULL_CONTROL")])]),
    ]


@handler("GetBucketAcl")
async def get_bucket_acl(ctx: RequestContext) -> Response:
    await ctx.backend.head_bucket(ctx.bucket)
    return xml_response("AccessControlPolicy", _acl())


@handler("GetObjectAcl")
async def get_object_acl(ctx: RequestContext) -> Response:
    meta = await ctx.backend.head_object(ctx.bucket, ctx.key, version_param(ctx.query))
    return xml_response(
        "AccessControlPolicy", _acl(), headers=version_headers(meta.version_id, versioned=False)
    )


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
