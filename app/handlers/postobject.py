"""POST Object: browser form uploads to a bucket, authorized by a signed POST policy.

Starlette parses the multipart form (the file part spooled to a temporary file past
1 MiB, so memory stays bounded); the file then streams into the ordinary write path.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from urllib.parse import urlencode

from starlette.datastructures import UploadFile
from starlette.responses import RedirectResponse, Response

from app.context import RequestContext
from app.errors import InvalidArgument
from app.handlers.registry import handler, xml_response
from app.headers import object_write
from auth import ANONYMOUS, Principal
from auth.postpolicy import check_policy, decode_policy, verify_signature
from storage import checksums
from storage.checksums import Checksum

CHUNK = 1 << 20


async def _chunks(upload: UploadFile) -> AsyncIterator[bytes]:
    while chunk := await upload.read(CHUNK):
        yield chunk


@handler("PostObject")
async def post_object(ctx: RequestContext) -> Response:
    await ctx.backend.head_bucket(ctx.bucket)
    form = await ctx.request.form(max_files=1, max_fields=200, max_part_size=64 * 1024)
    try:
        fields = {k.lower(): v for k, v in form.multi_items() if isinstance(v, str)}
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise InvalidArgument(
                "POST requires exactly one file upload per request.", ArgumentName="file"
            )
        if "key" not in fields:
            raise InvalidArgument(
                "Bucket POST must contain a field named 'key'.", ArgumentName="key"
            )
        key = fields["key"].replace("${filename}", upload.filename or "")
        size = upload.size or 0
        principal: Principal = ANONYMOUS
        if "policy" in fields:
            policy = decode_policy(fields["policy"])
            if "x-amz-signature" in fields or ctx.gate is not None:
                authenticator = ctx.request.app.state.authenticator
                access_key = verify_signature(
                    fields, authenticator.secret_for, ctx.config.server.region
                )
                principal = Principal(access_key)
            check_policy(policy, fields, ctx.bucket, size, datetime.now(UTC))
        if ctx.gate is not None:
            await ctx.gate.check(principal, "s3:PutObject", ctx.bucket, key)
        headers = {k: v for k, v in fields.items() if k.startswith("x-amz-meta-")}
        for name in (
            "content-type",
            "cache-control",
            "content-disposition",
            "content-encoding",
            "expires",
        ):
            if name in fields:
                headers[name] = fields[name]
        write = object_write(headers, max_metadata_size=ctx.config.limits.max_metadata_size)
        checksum = Checksum(checksums.DEFAULT_ALGORITHM)
        write.digesters = [checksum]
        write.finalize = lambda size, md5: {checksum.algorithm: checksum.b64()}
        write.checksum_type = "FULL_OBJECT"
        write.max_size = ctx.config.limits.max_object_size
        meta = await ctx.backend.put_object(ctx.bucket, key, _chunks(upload), write)
    finally:
        await form.close()
    etag = f'"{meta.etag}"'
    redirect = fields.get("success_action_redirect") or fields.get("redirect")
    if redirect:
        query = urlencode({"bucket": ctx.bucket, "key": key, "etag": etag})
        separator = "&" if "?" in redirect else "?"
        return RedirectResponse(f"{redirect}{separator}{query}", status_code=303)
    status = fields.get("success_action_status", "204")
    if status == "201":
        location = f"{ctx.request.base_url}{ctx.bucket}/{key}"
        return xml_response(
            "PostResponse",
            [("Location", location), ("Bucket", ctx.bucket), ("Key", key), ("ETag", etag)],
            status=201,
            headers={"etag": etag, "location": location},
        )
    return Response(status_code=200 if status == "200" else 204, headers={"etag": etag})
