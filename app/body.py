"""Request bodies: streamed in, aws-chunked framing decoded, declared digests verified.

Nothing here holds a body whole (except the small XML documents of bucket calls, read
with a cap). Digest checks are expressed as a `finalize` callback that the backend
calls once every byte is durable but before the object becomes visible, so a mismatch
leaves the previous object untouched.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import ClientDisconnect, Request

from shoal.app.errors import (
    BadDigest,
    EntityTooLarge,
    IncompleteBody,
    InvalidArgument,
    InvalidDigest,
    InvalidRequest,
    MalformedTrailerError,
    MissingContentLength,
    SignatureDoesNotMatch,
    XAmzContentSHA256Mismatch,
)
from shoal.auth.numbers import parse_hex, parse_uint
from shoal.auth.sigv4 import (
    STREAMING_PAYLOAD,
    STREAMING_PAYLOAD_TRAILER,
    AuthFailure,
    ChunkVerifier,
    Verified,
)
from shoal.storage import checksums
from shoal.storage.backend import Digester
from shoal.storage.checksums import Checksum

STREAMING_MODES = frozenset(
    {
        "STREAMING-UNSIGNED-PAYLOAD-TRAILER",
        "STREAMING-AWS4-HMAC-SHA256-PAYLOAD",
        "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER",
        "STREAMING-AWS4-ECDSA-P256-SHA256-PAYLOAD",
        "STREAMING-AWS4-ECDSA-P256-SHA256-PAYLOAD-TRAILER",
    }
)
SIGNED_STREAMING = frozenset({STREAMING_PAYLOAD, STREAMING_PAYLOAD_TRAILER})
_HEX_SHA256 = re.compile(r"[0-9a-fA-F]{64}", re.ASCII)
#: "<16 hex digits>;chunk-signature=<64 hex digits>" is 97 bytes: room to spare, no more.
_MAX_CHUNK_HEADER = 256
_MAX_TRAILER_LINE = 1024
_MAX_TRAILERS = 16


async def raw_stream(request: Request, expected: int | None) -> AsyncIterator[bytes]:
    """The bytes on the wire; a client that goes away early is an IncompleteBody."""
    received = 0
    try:
        async for chunk in request.stream():
            if chunk:
                received += len(chunk)
                yield chunk
    except ClientDisconnect as exc:
        raise IncompleteBody() from exc
    if expected is not None and received < expected:
        raise IncompleteBody()
    request.state.body_consumed = True


def unread_body(request: Request, headers: dict[str, str]) -> bool:
    """Whether the request announced a body that was never read.

    Such a connection cannot be reused: with Expect: 100-continue the client never sends
    the body, and without it the unread bytes would be parsed as the next request.
    """
    announced = headers.get("content-length", "0") != "0" or "transfer-encoding" in headers
    return announced and not getattr(request.state, "body_consumed", False)


class AwsChunkedDecoder:
    """Decodes `aws-chunked` framing (chunk sizes, chunk signatures, trailers).

    With a verifier (signed streaming uploads) every chunk's signature is checked as the
    chunk ends, and the trailer's; a bad one raises before the upload can commit. Every
    piece of framing is bounded (header and trailer lines, trailer count, the decoded total
    against x-amz-decoded-content-length) and every loop either consumes bytes or awaits
    more, so no body, however framed, can hold the event loop or grow memory unchecked.
    """

    def __init__(
        self,
        source: AsyncIterable[bytes],
        verified: Verified | None = None,
        decoded_length: int | None = None,
    ) -> None:
        self._source = source.__aiter__()
        self._buf = bytearray()
        signed = verified is not None and verified.payload_hash in SIGNED_STREAMING
        self._verifier = ChunkVerifier(verified) if signed and verified else None
        self._trailer_unsigned = signed and verified.payload_hash == STREAMING_PAYLOAD_TRAILER
        self._left = decoded_length  # decoded bytes the request still owes, when declared
        self.trailers: dict[str, str] = {}
        self._trailer_lines: list[tuple[str, str]] = []

    async def _fill(self) -> bool:
        chunk = await anext(self._source, None)
        if chunk is None:
            return False
        self._buf += chunk
        return True

    async def _line(self, limit: int, *, eof_ok: bool = False) -> bytes | None:
        """The next CRLF-terminated line, refused once it is longer than `limit` bytes."""
        while (end := self._buf.find(b"\r\n", 0, limit + 2)) < 0:
            if len(self._buf) >= limit + 2:
                raise IncompleteBody("A chunk header or trailer line is too long.")
            if not await self._fill():
                if eof_ok:
                    rest = bytes(self._buf)
                    self._buf.clear()
                    return rest or None
                raise IncompleteBody()
        line = bytes(self._buf[:end])
        del self._buf[: end + 2]
        return line

    async def _chunk_header(self) -> tuple[int, str | None]:
        """(size, chunk signature) of the next chunk; sizes are hex digits only."""
        header = await self._line(_MAX_CHUNK_HEADER)
        assert header is not None
        size_text, _, extension = header.partition(b";")
        size = parse_hex(size_text)
        if size is None:
            raise IncompleteBody("The chunk size is not valid.")
        if self._left is not None:
            if size > self._left:
                raise IncompleteBody("The chunks hold more than x-amz-decoded-content-length.")
            if size == 0 and self._left:
                raise IncompleteBody()
            self._left -= size
        signature = None
        if extension.startswith(b"chunk-signature="):
            signature = extension[16:].decode("latin-1").strip()
        return size, signature

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while True:
            size, signature = await self._chunk_header()
            digest = hashlib.sha256() if self._verifier is not None else None
            if size == 0:
                self._check_chunk(signature, digest)
                break
            remaining = size
            while remaining:
                if not self._buf and not await self._fill():
                    raise IncompleteBody()
                data = bytes(self._buf[:remaining])
                del self._buf[: len(data)]
                remaining -= len(data)
                if digest is not None:
                    digest.update(data)
                yield data
            await self._chunk_end()
            self._check_chunk(signature, digest)
        await self._read_trailers()
        await self._refuse_leftovers()

    async def _chunk_end(self) -> None:
        """The CRLF that closes a chunk's data, and nothing else."""
        while len(self._buf) < 2:
            if not await self._fill():
                raise IncompleteBody()
        if self._buf[:2] != b"\r\n":
            raise IncompleteBody("Chunk data was longer than its declared size.")
        del self._buf[:2]

    def _check_chunk(self, signature: str | None, digest: Any) -> None:
        if self._verifier is None:
            return
        if signature is None:
            raise SignatureDoesNotMatch("A chunk of a signed streaming upload has no signature.")
        try:
            self._verifier.verify_chunk_digest(signature, digest.hexdigest())
        except AuthFailure as exc:
            raise SignatureDoesNotMatch() from exc

    async def _read_trailers(self) -> None:
        while (line := await self._line(_MAX_TRAILER_LINE, eof_ok=True)) is not None:
            if not line.strip():
                break
            name, sep, value = line.decode("latin-1").partition(":")
            if not sep or len(self._trailer_lines) >= _MAX_TRAILERS:
                raise MalformedTrailerError()
            name, value = name.strip().lower(), value.strip()
            if name == "x-amz-trailer-signature" and self._verifier is not None:
                try:
                    self._verifier.verify_trailer(self._trailer_lines, value)
                except AuthFailure as exc:
                    raise SignatureDoesNotMatch() from exc
                self._trailer_unsigned = False
                continue
            self._trailer_lines.append((name, value))
            self.trailers[name] = value
        if self._trailer_unsigned:
            raise SignatureDoesNotMatch(
                "The trailer of a signed streaming upload has no signature."
            )

    async def _refuse_leftovers(self) -> None:
        """Bytes after the final chunk and its trailers belong to no chunk: refused, as S3
        refuses them (a second final chunk is "trailing data that was not well-formed")."""
        while not self._buf and await self._fill():
            pass
        if self._buf:
            raise MalformedTrailerError(
                "The request contained trailing data after the final chunk and its trailers."
            )


@dataclass
class Integrity:
    """What a request declared about its body, checked once the body has been stored."""

    content_md5: bytes | None = None
    sha256: str | None = None
    checksum_algorithm: str | None = None
    checksum_value: str | None = None  # from a header; trailer values arrive later
    trailer: str | None = None  # the x-amz-checksum-* header promised as a trailer
    decoded_length: int | None = None
    digesters: dict[str, Digester] = field(default_factory=dict)
    decoder: AwsChunkedDecoder | None = None

    def expected_checksum(self) -> str | None:
        if self.trailer and self.decoder is not None:
            value = self.decoder.trailers.get(self.trailer)
            if value is None:
                raise MalformedTrailerError(f"The trailer {self.trailer} was not sent.")
            if not checksums.well_formed(self.checksum_algorithm or "", value):
                raise InvalidRequest(f"Value for {self.trailer} trailing header is invalid.")
            return value
        return self.checksum_value

    def finalize(self, size: int, md5_hex: str) -> dict[str, str]:
        """Verify every declared digest; return the checksum to store with the object."""
        if self.decoded_length is not None and size != self.decoded_length:
            raise IncompleteBody()
        if self.content_md5 is not None and self.content_md5.hex() != md5_hex:
            raise BadDigest()
        if self.sha256 is not None:
            computed = self.digesters["SHA256-payload"]
            if computed.hexdigest().lower() != self.sha256.lower():  # type: ignore[attr-defined]
                raise XAmzContentSHA256Mismatch(
                    ClientComputedContentSHA256=self.sha256,
                    S3ComputedContentSHA256=computed.hexdigest(),  # type: ignore[attr-defined]
                )
        if self.checksum_algorithm is None:
            return {}
        checksum = self.digesters[self.checksum_algorithm]
        assert isinstance(checksum, Checksum)
        computed = checksum.b64()
        expected = self.expected_checksum()
        if expected is not None and expected != computed:
            raise BadDigest(
                f"The {self.checksum_algorithm} you specified did not match the calculated"
                " checksum."
            )
        return {self.checksum_algorithm: computed}


def parse_integrity(headers: dict[str, str], *, default_algorithm: str | None) -> Integrity:
    """Read the digest headers of an upload, refusing malformed or contradictory ones."""
    integrity = Integrity()
    md5 = headers.get("content-md5")
    if md5 is not None:
        try:
            integrity.content_md5 = base64.b64decode(md5, validate=True)
        except ValueError as exc:  # binascii.Error, and non-ASCII text (`\xff`)
            raise InvalidDigest() from exc
        if len(integrity.content_md5) != 16:
            raise InvalidDigest()
    sha = headers.get("x-amz-content-sha256")
    if sha is not None and sha != "UNSIGNED-PAYLOAD" and sha not in STREAMING_MODES:
        if not _HEX_SHA256.fullmatch(sha):
            raise InvalidArgument(
                "x-amz-content-sha256 must be UNSIGNED-PAYLOAD, STREAMING-UNSIGNED-PAYLOAD-TRAILER,"
                " STREAMING-AWS4-HMAC-SHA256-PAYLOAD, STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER,"
                " or a valid sha256 value.",
                ArgumentName="x-amz-content-sha256",
                ArgumentValue=sha,
            )
        integrity.sha256 = sha
        integrity.digesters["SHA256-payload"] = hashlib.sha256()
    found = [(a, headers[n]) for n in headers if (a := checksums.algorithm_of_header(n))]
    if len(found) > 1:
        raise InvalidRequest(
            "Expecting a single x-amz-checksum- header. Multiple checksum Types are not allowed."
        )
    trailer = headers.get("x-amz-trailer", "").strip().lower() or None
    if trailer is not None:
        algorithm = checksums.algorithm_of_header(trailer)
        if algorithm is None:
            raise InvalidRequest(
                f"The value specified in the x-amz-trailer header is not supported: {trailer}"
            )
        integrity.trailer, integrity.checksum_algorithm = trailer, algorithm
    elif found:
        algorithm, value = found[0]
        if not checksums.well_formed(algorithm, value):
            raise InvalidRequest(f"Value for {checksums.header_name(algorithm)} header is invalid.")
        integrity.checksum_algorithm, integrity.checksum_value = algorithm, value
    else:
        sdk = headers.get("x-amz-sdk-checksum-algorithm", "").upper() or default_algorithm
        if sdk and sdk not in checksums.ALGORITHMS:
            raise InvalidRequest(f"Checksum algorithm {sdk} is not supported.")
        integrity.checksum_algorithm = sdk
    if integrity.checksum_algorithm:
        integrity.digesters[integrity.checksum_algorithm] = Checksum(integrity.checksum_algorithm)
    return integrity


def _int_header(headers: dict[str, str], name: str) -> int | None:
    """A length header: ASCII digits only (auth/numbers.py), else InvalidArgument."""
    value = headers.get(name)
    if value is None:
        return None
    number = parse_uint(value)
    if number is None:
        raise InvalidArgument(f"Invalid {name} header.", ArgumentName=name, ArgumentValue=value)
    return number


def upload_body(
    request: Request,
    headers: dict[str, str],
    *,
    default_algorithm: str | None,
    max_size: int,
) -> tuple[AsyncIterator[bytes], Integrity]:
    """The decoded body stream of an upload and the integrity checks it must pass."""
    integrity = parse_integrity(headers, default_algorithm=default_algorithm)
    length = _int_header(headers, "content-length")
    sha = headers.get("x-amz-content-sha256", "")
    chunked = sha in STREAMING_MODES or "aws-chunked" in headers.get("content-encoding", "")
    if chunked:
        integrity.decoded_length = _int_header(headers, "x-amz-decoded-content-length")
        if integrity.decoded_length is None:
            raise MissingContentLength()
    elif length is None and "chunked" not in headers.get("transfer-encoding", "").lower():
        # HTTP chunked framing (curl -T -, streams of unknown length) needs no length:
        # the body streams to its end, max_size enforced by the store as it arrives.
        raise MissingContentLength()
    elif integrity.trailer is not None:
        raise InvalidRequest("x-amz-trailer requires an aws-chunked body.")
    declared = integrity.decoded_length if chunked else length
    if declared is not None and declared > max_size:
        raise EntityTooLarge(ProposedSize=declared, MaxSizeAllowed=max_size)
    stream: AsyncIterator[bytes] = raw_stream(request, length)
    if chunked:
        # A signed streaming upload: the seam left the request's proof on request.state.
        verified = getattr(request.state, "verified", None)
        integrity.decoder = AwsChunkedDecoder(stream, verified, integrity.decoded_length)
        stream = integrity.decoder.__aiter__()
    return stream, integrity


async def read_small(
    request: Request,
    limit: int,
    *,
    object_checksums: bool = False,
) -> bytes:
    """A bounded body (XML or policy documents), verified against Content-MD5/checksums.

    With `object_checksums` the request's x-amz-checksum-* headers describe the object
    being made (CompleteMultipartUpload), not this body, so they are left alone here.
    """
    headers = {k.lower(): v for k, v in request.headers.items()}
    if object_checksums:
        headers = {k: v for k, v in headers.items() if not checksums.algorithm_of_header(k)}
        headers.pop("x-amz-sdk-checksum-algorithm", None)
    stream, integrity = upload_body(request, headers, default_algorithm=None, max_size=limit)
    body = bytearray()
    async for chunk in stream:
        body += chunk
        if len(body) > limit:
            raise EntityTooLarge(MaxSizeAllowed=limit)
    for digester in integrity.digesters.values():
        digester.update(bytes(body))
    integrity.finalize(len(body), hashlib.md5(body).hexdigest())
    return bytes(body)


def require_integrity_header(headers: dict[str, str]) -> None:
    """Calls S3 insists carry Content-MD5 or an x-amz-checksum-* (DeleteObjects,
    PutBucketCors, ...); boto3 >= 1.36 sends a checksum instead of the MD5."""
    has_checksum = (
        any(checksums.algorithm_of_header(n) for n in headers) or "x-amz-trailer" in headers
    )
    if "content-md5" not in headers and not has_checksum:
        raise InvalidRequest("Missing required header for this request: Content-MD5")
