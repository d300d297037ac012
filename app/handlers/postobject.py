"""POST Object: browser form uploads to a bucket, authorized by a signed POST policy.

The form is parsed as a stream (app/form.py): the fields before the file are read, the
policy, signature and authorization are decided, and only then do the file's bytes flow
from the socket into the ordinary write path, with nothing spooled on the way. The
policy's content-length-range is enforced as the bytes arrive (its maximum through the
backend's max_size) and its minimum before the object becomes visible.
"""

from __future__ import annotations

from datetime import UTC, datetime
from urllib.parse import quote, urlencode

from starlette.responses import RedirectResponse, Response

from shoal.app import sse, tagging
from shoal.app.body import raw_stream
from shoal.app.context import RequestContext
from shoal.app.errors import EntityTooSmall, InvalidArgument
from shoal.app.form import PostForm
from shoal.app.handlers.objectlock import apply_write_lock
from shoal.app.handlers.registry import handler, xml_response
from shoal.app.headers import object_write, version_headers
from shoal.app.permissions import new_version_acl
from shoal.app.sealing import seal_write
from shoal.app.ssepolicy import request_condition_keys
from shoal.auth import ANONYMOUS, Principal
from shoal.auth.numbers import parse_uint
from shoal.auth.postpolicy import check_policy, decode_policy
from shoal.storage import checksums
from shoal.storage.backend import ObjectWrite
from shoal.storage.checksums import Checksum

#: Form fields stored as the object's headers (besides x-amz-meta-*).
STORED_FIELDS = (
    "content-type",
    "cache-control",
    "content-disposition",
    "content-encoding",
    "expires",
)


@handler("PostObject")
async def post_object(ctx: RequestContext) -> Response:
    info = await ctx.backend.head_bucket(ctx.bucket)
    expected = parse_uint(ctx.headers.get("content-length"))
    form = PostForm(ctx.headers.get("content-type", ""), raw_stream(ctx.request, expected))
    fields = await form.read_fields()
    if "key" not in fields:
        raise InvalidArgument(
            "Bucket POST must contain a field named 'key'.  If it is specified, please check"
            " the order of the fields.",
            ArgumentName="key",
        )
    key = fields["key"].replace("${filename}", form.filename)
    length_range, principal = await _authorize(ctx, fields, key)
    write = _object_write(ctx, fields, length_range)
    write.owner, write.acl = await new_version_acl(
        ctx, fields, canned_name="acl", principal=principal
    )
    # A form carries no lock fields: a lock-enabled bucket's default retention applies.
    await apply_write_lock(ctx, info, write)
    # The form's x-amz-server-side-encryption* fields, else the bucket's default.
    choice = await sse.choose(ctx, fields, ctx.bucket)
    body = form.file()
    if choice is not None:
        record, data_key = sse.new_record(ctx.keyring, choice, ctx.bucket, key)
        body = seal_write(write, body, record, data_key)
    meta = await ctx.backend.put_object(ctx.bucket, key, body, write)
    headers = version_headers(meta.version_id, versioned=bool(info.versioning))
    headers.update(sse.response_headers(meta.encryption, context=True))
    return _answer(ctx, fields, key, f'"{meta.shown_etag}"', headers)


async def _authorize(
    ctx: RequestContext, fields: dict[str, str], key: str
) -> tuple[tuple[int, int] | None, Principal]:
    """Signature, policy and bucket policy, decided before any byte of the file is read.
    Returns the policy's content-length-range, if it has one, and who signed."""
    principal: Principal = ANONYMOUS
    length_range = None
    if "policy" in fields:
        if "x-amz-signature" in fields or ctx.gate is not None:
            authenticator = ctx.request.app.state.authenticator
            principal = authenticator.verify_post_signature(fields)
        policy = decode_policy(fields["policy"])
        check_policy(policy, fields, ctx.bucket, datetime.now(UTC))
        length_range = policy.length_range
    if ctx.gate is not None:
        context = request_condition_keys(fields)  # the form's x-amz-server-side-encryption*
        await ctx.gate.check(principal, "s3:PutObject", ctx.bucket, key, context)
    return length_range, principal


def _object_write(
    ctx: RequestContext, fields: dict[str, str], length_range: tuple[int, int] | None
) -> ObjectWrite:
    headers = {k: v for k, v in fields.items() if k.startswith("x-amz-meta-")}
    headers |= {name: fields[name] for name in STORED_FIELDS if name in fields}
    write = object_write(headers, max_metadata_size=ctx.config.limits.max_metadata_size)
    if "tagging" in fields:
        # The form's tagging field is a Tagging XML document, as S3's POST takes it.
        write.tags = tagging.parse_document(
            fields["tagging"].encode(), limit=tagging.MAX_OBJECT_TAGS
        )
    limit = ctx.config.limits.max_object_size
    low, high = length_range or (0, limit)
    checksum = Checksum(checksums.DEFAULT_ALGORITHM)

    def finalize(size: int, md5: str) -> dict[str, str]:
        if size < low:
            raise EntityTooSmall(
                "Your proposed upload is smaller than the minimum allowed size",
                ProposedSize=size,
                MinSizeAllowed=low,
            )
        return {checksum.algorithm: checksum.b64()}

    write.digesters = [checksum]
    write.finalize = finalize
    write.checksum_type = "FULL_OBJECT"
    write.max_size = min(high, limit)  # EntityTooLarge as soon as more arrives
    return write


def _answer(
    ctx: RequestContext, fields: dict[str, str], key: str, etag: str, version: dict[str, str]
) -> Response:
    redirect = fields.get("success_action_redirect") or fields.get("redirect")
    if redirect:
        query = urlencode({"bucket": ctx.bucket, "key": key, "etag": etag})
        separator = "&" if "?" in redirect else "?"
        return RedirectResponse(f"{redirect}{separator}{query}", status_code=303, headers=version)
    status = fields.get("success_action_status", "204")
    if status == "201":
        # Quoted: a key may hold what a header cannot (CR, LF, non-latin-1 characters).
        location = f"{ctx.request.base_url}{ctx.bucket}/{quote(key, safe='/')}"
        return xml_response(
            "PostResponse",
            [("Location", location), ("Bucket", ctx.bucket), ("Key", key), ("ETag", etag)],
            status=201,
            headers={"etag": etag, "location": location, **version},
        )
    status_code = 200 if status == "200" else 204
    return Response(status_code=status_code, headers={"etag": etag, **version})
