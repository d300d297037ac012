"""Bucket-level operations: list, create, delete, head, location, ACL, policy."""

from __future__ import annotations

from starlette.responses import Response

from shoal.app.body import read_small
from shoal.app.context import RequestContext
from shoal.app.errors import InvalidArgument, MalformedPolicy
from shoal.app.handlers.registry import handler, owner, xml_response
from shoal.app.headers import version_headers, version_param
from shoal.app.xml import child_text, parse, text_document, timestamp
from shoal.auth.policy import PolicyError, parse_policy

MAX_CONFIG_BODY = 64 * 1024
MAX_POLICY_BODY = 64 * 1024  # the policy's own 20 KiB limit is checked by parse_policy


@handler("ListBuckets")
async def list_buckets(ctx: RequestContext) -> Response:
    buckets = await ctx.backend.list_buckets()
    return xml_response(
        "ListAllMyBucketsResult",
        [
            ("Owner", owner()),
            (
                "Buckets",
                [
                    ("Bucket", [("Name", b.name), ("CreationDate", timestamp(b.created))])
                    for b in buckets
                ],
            ),
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
