"""Multipart uploads: create, upload part, complete, abort, list parts, list uploads."""

from __future__ import annotations

import dataclasses

from starlette.responses import Response

from shoal.app import sse
from shoal.app.body import read_small, upload_body
from shoal.app.context import RequestContext
from shoal.app.errors import (
    BadDigest,
    EntityTooSmall,
    InvalidArgument,
    InvalidPart,
    InvalidRequest,
    MalformedXML,
    NoSuchUpload,
)
from shoal.app.handlers.listing import echoed_param, encoder, int_param
from shoal.app.handlers.object import conditional_write, write_result_headers
from shoal.app.handlers.objectlock import apply_write_lock, require_write_integrity
from shoal.app.handlers.registry import handler, owner, xml_response
from shoal.app.headers import object_write, query_part_number
from shoal.app.permissions import new_version_acl
from shoal.app.sealing import OpeningDigester, seal_write
from shoal.app.xml import Node, child_text, parse, timestamp
from shoal.auth.numbers import parse_uint
from shoal.sse import keys
from shoal.sse.packages import plain_length
from shoal.storage import checksums
from shoal.storage.backend import (
    MAX_PARTS,
    MIN_PART_SIZE,
    BucketInfo,
    CompletedPart,
    Digester,
    Encryption,
    ObjectMeta,
    ObjectWrite,
    PartInfo,
    UploadInfo,
)
from shoal.storage.checksums import Checksum
from shoal.storage.errors import NoSuchUpload as StorageNoSuchUpload
from shoal.storage.multipart import is_upload_id

MAX_PART_SIZE = 5 * 1024**3
MAX_COMPLETE_BODY = 4 * 1024 * 1024
CHECKSUM_TYPES = ("COMPOSITE", "FULL_OBJECT")


async def upload_for_part(ctx: RequestContext) -> UploadInfo:
    """The upload a part belongs to, looked up before any body byte is read."""
    return await ctx.backend.get_upload(ctx.bucket, ctx.key, upload_id_param(ctx))


def upload_id_param(ctx: RequestContext) -> str:
    """The uploadId query parameter; one no store could have issued is NoSuchUpload here,
    so text such as NUL or '../' never becomes part of a path on a drive."""
    upload_id = ctx.query.get("uploadId", "")
    if not is_upload_id(upload_id):
        raise NoSuchUpload()
    return upload_id


def part_result_headers(part: PartInfo) -> dict[str, str]:
    headers = {"etag": f'"{part.etag}"'}
    headers.update({f"x-amz-checksum-{a.lower()}": v for a, v in part.checksums.items()})
    return headers


@handler("CreateMultipartUpload")
async def create_multipart_upload(ctx: RequestContext) -> Response:
    write = object_write(ctx.headers, max_metadata_size=ctx.config.limits.max_metadata_size)
    write.owner, write.acl = await new_version_acl(ctx, ctx.headers)
    await apply_write_lock(ctx, await ctx.backend.head_bucket(ctx.bucket), write)
    algorithm = ctx.headers.get("x-amz-checksum-algorithm", "").upper() or None
    kind = ctx.headers.get("x-amz-checksum-type", "").upper() or None
    if algorithm is not None and algorithm not in checksums.ALGORITHMS:
        raise InvalidRequest(f"Checksum algorithm {algorithm} is not supported.")
    if kind is not None and kind not in CHECKSUM_TYPES:
        raise InvalidRequest(f"Checksum type {kind} is not supported.")
    if kind is not None and algorithm is None:
        raise InvalidRequest("The x-amz-checksum-type header requires x-amz-checksum-algorithm.")
    if algorithm is not None and kind is None:
        kind = "FULL_OBJECT" if algorithm == "CRC64NVME" else "COMPOSITE"
    if kind == "FULL_OBJECT" and algorithm not in checksums.FULL_OBJECT_CAPABLE:
        raise InvalidRequest(f"The FULL_OBJECT checksum type cannot be used with {algorithm}.")
    if kind == "COMPOSITE" and algorithm == "CRC64NVME":
        raise InvalidRequest("The COMPOSITE checksum type cannot be used with CRC64NVME.")
    choice = await sse.choose(ctx, ctx.headers, ctx.bucket)
    if choice is not None:
        # The upload keeps its data key, sealed; every part is sealed with it.
        write.encryption = sse.new_record(ctx.keyring, choice, ctx.bucket, ctx.key)[0]
    upload = await ctx.backend.create_multipart_upload(ctx.bucket, ctx.key, write, algorithm, kind)
    headers = sse.response_headers(write.encryption, context=True)
    if algorithm:
        headers |= {"x-amz-checksum-algorithm": algorithm, "x-amz-checksum-type": kind or ""}
    return xml_response(
        "InitiateMultipartUploadResult",
        [("Bucket", ctx.bucket), ("Key", ctx.key), ("UploadId", upload.upload_id)],
        headers=headers,
    )


@handler("UploadPart")
async def upload_part(ctx: RequestContext) -> Response:
    number = query_part_number(ctx.query)
    upload = await upload_for_part(ctx)
    data_key = part_key(ctx, upload)
    if upload.write.retention is not None or upload.write.legal_hold:
        # An upload that will carry a lock has only integrity-checked parts (S3's rule).
        require_write_integrity(ctx, await ctx.backend.head_bucket(ctx.bucket))
    # limits.max_object_size is "the largest single PUT or part"; S3's own cap otherwise.
    max_size = min(MAX_PART_SIZE, ctx.config.limits.max_object_size)
    body, integrity = upload_body(
        ctx.request,
        ctx.headers,
        default_algorithm=upload.checksum_algorithm,
        max_size=max_size,
    )
    expected = upload.checksum_algorithm
    if expected and integrity.checksum_algorithm not in (None, expected):
        raise InvalidRequest(
            "Checksum Type mismatch occurred, expected checksum Type:"
            f" {expected.lower()}, actual checksum Type: {integrity.checksum_algorithm.lower()}"
        )
    write = object_write({}, max_metadata_size=0)
    write.digesters = list(integrity.digesters.values())
    write.finalize = integrity.finalize
    write.max_size = max_size
    enc = upload.write.encryption
    if enc is not None and data_key is not None:
        body = seal_write(write, body, enc, data_key, number)
    part = await ctx.backend.upload_part(ctx.bucket, ctx.key, upload.upload_id, number, body, write)
    return Response(headers=part_result_headers(part) | sse.response_headers(enc))


def part_key(ctx: RequestContext, upload: UploadInfo) -> bytes | None:
    """The data key an upload's parts are sealed with (None: not encrypted). A part
    names no encryption of its own; an SSE-C upload's parts bring its key."""
    sse.refuse_write_headers(ctx.headers)
    enc = upload.write.encryption
    customer = _upload_customer(ctx, upload, required=True)
    if enc is None:
        return None
    return sse.data_key(ctx.keyring, enc, ctx.bucket, ctx.key, customer)


def _upload_customer(
    ctx: RequestContext, upload: UploadInfo, *, required: bool
) -> sse.CustomerKey | None:
    """The SSE-C key a request about an upload carries: an SSE-C upload takes the key it
    was created with (`required` for parts), other uploads none. S3's answers are 400s."""
    enc = upload.write.encryption
    customer = sse.customer_key(ctx.headers, sse.transport(ctx))
    is_customer = enc is not None and enc.customer
    missing = customer is None and is_customer and required
    if missing or (customer is not None and not is_customer):
        raise InvalidRequest(
            "The multipart upload initiate requested encryption. Subsequent part requests"
            " must include the appropriate encryption parameters."
        )
    if (
        customer is not None
        and enc is not None
        and not keys.proof_matches(customer.key, enc.key_proof)
    ):
        raise InvalidRequest(
            "The provided encryption parameters did not match the ones used originally."
        )
    return customer


def completed_parts(body: bytes) -> list[CompletedPart]:
    """The parts a CompleteMultipartUpload body names, as S3 validates them."""
    root = parse(body)
    if root.tag != "CompleteMultipartUpload":
        raise MalformedXML()
    parts = []
    for element in root.findall("Part"):
        number = parse_uint((child_text(element, "PartNumber") or "").strip())
        etag = child_text(element, "ETag")
        if number is None or etag is None:
            raise MalformedXML()
        sums = {
            a: text
            for a in checksums.ALGORITHMS
            if (text := child_text(element, f"Checksum{a}")) is not None
        }
        parts.append(CompletedPart(number, etag.strip().strip('"'), sums))
    if not parts:
        raise MalformedXML()
    return parts


async def _stored_parts(ctx: RequestContext, upload_id: str) -> dict[int, PartInfo]:
    stored: dict[int, PartInfo] = {}
    after = 0
    while True:
        page = await ctx.backend.list_parts(ctx.bucket, ctx.key, upload_id, after=after)
        stored.update((p.number, p) for p in page.parts)
        if not page.truncated or page.next_part_number_marker is None:
            return stored
        after = page.next_part_number_marker


@handler("CompleteMultipartUpload")
async def complete_multipart_upload(ctx: RequestContext) -> Response:
    upload_id = upload_id_param(ctx)
    try:
        upload = await ctx.backend.get_upload(ctx.bucket, ctx.key, upload_id)
    except StorageNoSuchUpload:
        return await _repeated_completion(ctx, upload_id)
    parts = completed_parts(await read_small(ctx.request, MAX_COMPLETE_BODY, object_checksums=True))
    write = object_write({}, max_metadata_size=0)
    await conditional_write(ctx, write)
    # The lock chosen at creation (the upload's own write carries it too).
    write.retention, write.legal_hold = upload.write.retention, upload.write.legal_hold
    bucket = await ctx.backend.head_bucket(ctx.bucket)
    algorithm = upload.checksum_algorithm
    enc = upload.write.encryption
    composite = bool(algorithm) and upload.checksum_type == "COMPOSITE"
    stored = await _stored_parts(ctx, upload_id) if composite or enc is not None else {}
    data_key = _completion_key(ctx, upload) if enc is not None else None
    if enc is not None:
        _require_plain_part_sizes(parts, stored)
    if algorithm and composite:
        values = []
        for part in parts:
            info = stored.get(part.number)
            sent = part.checksums.get(algorithm)
            have = info.checksums.get(algorithm) if info else None
            if info is None or have is None or (sent is not None and sent != have):
                raise InvalidPart(PartNumber=part.number)
            values.append(have)
        value = checksums.composite(algorithm, values)
        write.finalize = lambda size, md5: {algorithm: value}
        write.checksum_type = "COMPOSITE"
    else:
        # FULL_OBJECT: computed over the assembled bytes (CRC64NVME when none was chosen);
        # an encrypted object's over its plaintext, each part opened as it goes by.
        algorithm = algorithm or checksums.DEFAULT_ALGORITHM
        checksum = Checksum(algorithm)
        expected = ctx.headers.get(checksums.header_name(algorithm))
        digester: Digester = checksum
        if data_key is not None:
            sealed = [(p.number, stored[p.number].size) for p in parts if p.number in stored]
            digester = OpeningDigester(sealed, data_key, checksum)

        def finalize(size: int, md5: str) -> dict[str, str]:
            if expected is not None and expected != checksum.b64():
                raise BadDigest(
                    f"The {algorithm} you specified did not match the calculated checksum."
                )
            return {algorithm: checksum.b64()}

        write.digesters, write.finalize, write.checksum_type = [digester], finalize, "FULL_OBJECT"
        if enc is not None and digester is checksum:
            # SSE-C without its key: nothing can read the plaintext, so no checksum.
            write.digesters, write.finalize, write.checksum_type = [], None, None
    if enc is not None:
        _seal_completion(write, enc, [stored[p.number] for p in parts if p.number in stored])
    meta = await ctx.backend.complete_multipart_upload(ctx.bucket, ctx.key, upload_id, parts, write)
    return _completion_result(ctx, meta, bucket)


def _require_plain_part_sizes(parts: list[CompletedPart], stored: dict[int, PartInfo]) -> None:
    """S3's minimum size of every part but the last, judged on an encrypted upload's
    plaintext (the store sees the larger ciphertext). Only for a list the store would
    otherwise take, so its InvalidPartOrder and InvalidPart keep their precedence."""
    numbers = [p.number for p in parts]
    if numbers != sorted(set(numbers)):
        return
    if any(p.number not in stored or stored[p.number].etag != p.etag for p in parts):
        return
    for p in parts[:-1]:
        if plain_length(stored[p.number].size) < MIN_PART_SIZE:
            raise EntityTooSmall(part_number=str(p.number))


def _completion_key(ctx: RequestContext, upload: UploadInfo) -> bytes | None:
    """The data key to open an encrypted upload's parts at completion; for SSE-C only
    when the request carries the key (S3 asks for it only where a checksum needs it)."""
    enc = upload.write.encryption
    assert enc is not None
    customer = _upload_customer(ctx, upload, required=False)
    if enc.customer and customer is None:
        if upload.checksum_algorithm:
            # S3 needs the key at completion only where a checksum needs the plaintext.
            raise InvalidArgument(
                "The multipart upload was created with a checksum algorithm: completing it"
                " requires its customer-provided encryption key."
            )
        return None
    return sse.data_key(ctx.keyring, enc, ctx.bucket, ctx.key, customer)


def _seal_completion(write: ObjectWrite, enc: Encryption, parts: list[PartInfo]) -> None:
    """The completed object's record: the upload's sealed key, the sum of its parts'
    plaintext sizes, and the multipart ETag (known when the store calls finalize)."""
    plain_size = sum(plain_length(p.size) for p in parts)
    inner = write.finalize
    write.encryption = dataclasses.replace(enc, plain_size=plain_size)

    def finalize(size: int, etag: str) -> dict[str, str]:
        write.encryption = dataclasses.replace(enc, plain_size=plain_size, plain_etag=etag)
        return inner(plain_size, etag) if inner is not None else {}

    write.finalize = finalize


async def _repeated_completion(ctx: RequestContext, upload_id: str) -> Response:
    """A Complete of an upload no longer open: the store answers with the result of its
    earlier completion with the same parts (S3 is idempotent here), or NoSuchUpload."""
    parts = completed_parts(await read_small(ctx.request, MAX_COMPLETE_BODY, object_checksums=True))
    bucket = await ctx.backend.head_bucket(ctx.bucket)
    meta = await ctx.backend.complete_multipart_upload(
        ctx.bucket, ctx.key, upload_id, parts, ObjectWrite()
    )
    return _completion_result(ctx, meta, bucket)


def _completion_result(ctx: RequestContext, meta: ObjectMeta, bucket: BucketInfo) -> Response:
    result: list[Node] = [
        ("Location", f"/{ctx.bucket}/{ctx.key}"),
        ("Bucket", ctx.bucket),
        ("Key", ctx.key),
        ("ETag", f'"{meta.shown_etag}"'),
    ]
    result += [(f"Checksum{a}", v) for a, v in meta.checksums.items()]
    if meta.checksums and meta.checksum_type:
        result.append(("ChecksumType", meta.checksum_type))
    headers = write_result_headers(meta, bucket, completion=True)
    headers.pop("etag")
    return xml_response("CompleteMultipartUploadResult", result, headers=headers)


@handler("AbortMultipartUpload")
async def abort_multipart_upload(ctx: RequestContext) -> Response:
    await ctx.backend.abort_multipart_upload(ctx.bucket, ctx.key, upload_id_param(ctx))
    return Response(status_code=204)


@handler("ListParts")
async def list_parts(ctx: RequestContext) -> Response:
    max_parts = int_param(ctx, "max-parts", 1000, cap=1000)
    after = int_param(ctx, "part-number-marker", 0, cap=MAX_PARTS)
    upload_id = upload_id_param(ctx)
    page = await ctx.backend.list_parts(
        ctx.bucket, ctx.key, upload_id, after=after, max_parts=max_parts
    )
    upload = page.upload
    result: list[Node] = [
        ("Bucket", ctx.bucket),
        ("Key", ctx.key),
        ("UploadId", upload_id),
        ("Initiator", owner(ctx, upload.write.owner or None)),
        ("Owner", owner(ctx, upload.write.owner or None)),
        ("StorageClass", upload.write.headers.get("x-amz-storage-class", "STANDARD")),
        ("PartNumberMarker", after),
        ("NextPartNumberMarker", page.next_part_number_marker),
        ("MaxParts", max_parts),
        ("IsTruncated", page.truncated),
        ("ChecksumAlgorithm", upload.checksum_algorithm),
        ("ChecksumType", upload.checksum_type),
    ]
    for part in (sse.shown_part(p, upload.write.encryption) for p in page.parts):
        fields: list[Node] = [
            ("PartNumber", part.number),
            ("LastModified", timestamp(part.last_modified)),
            ("ETag", f'"{part.etag}"'),
            ("Size", part.size),
        ]
        fields += [(f"Checksum{a}", v) for a, v in part.checksums.items()]
        result.append(("Part", fields))
    return xml_response("ListPartsResult", result)


@handler("ListMultipartUploads")
async def list_multipart_uploads(ctx: RequestContext) -> Response:
    encode = encoder(ctx)
    max_uploads = int_param(ctx, "max-uploads", 1000, cap=1000)
    prefix, delimiter, key_marker = (
        echoed_param(ctx, n, url_encoded="encoding-type" in ctx.query)
        for n in ("prefix", "delimiter", "key-marker")
    )
    upload_id_marker = echoed_param(ctx, "upload-id-marker", url_encoded=False)  # never encoded
    page = await ctx.backend.list_multipart_uploads(
        ctx.bucket,
        prefix=prefix,
        delimiter=delimiter,
        key_marker=key_marker,
        upload_id_marker=upload_id_marker,
        max_uploads=max_uploads,
    )
    result: list[Node] = [
        ("Bucket", ctx.bucket),
        ("KeyMarker", encode(key_marker)),
        ("UploadIdMarker", upload_id_marker),
        ("NextKeyMarker", encode(page.next_key_marker) if page.next_key_marker else None),
        ("NextUploadIdMarker", page.next_upload_id_marker),
        ("Delimiter", encode(delimiter) if delimiter else None),
        ("Prefix", encode(prefix)),
        ("MaxUploads", max_uploads),
        ("IsTruncated", page.truncated),
        ("EncodingType", ctx.query.get("encoding-type")),
    ]
    for upload in page.uploads:
        result.append(
            (
                "Upload",
                [
                    ("Key", encode(upload.key)),
                    ("UploadId", upload.upload_id),
                    ("Initiator", owner(ctx, upload.write.owner or None)),
                    ("Owner", owner(ctx, upload.write.owner or None)),
                    ("StorageClass", upload.write.headers.get("x-amz-storage-class", "STANDARD")),
                    ("Initiated", timestamp(upload.initiated)),
                    ("ChecksumAlgorithm", upload.checksum_algorithm),
                    ("ChecksumType", upload.checksum_type),
                ],
            )
        )
    result += [("CommonPrefixes", [("Prefix", encode(p))]) for p in page.common_prefixes]
    return xml_response("ListMultipartUploadsResult", result)
