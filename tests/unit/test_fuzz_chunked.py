"""aws-chunked decoding (app/body.py AwsChunkedDecoder), fuzzed: any body, however framed
or mutated, signed or not, with or without trailers, decodes to its bytes or raises an
S3Error — never another exception, never a hang, never an empty or unbounded yield."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import signal
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shoal.app.body import AwsChunkedDecoder
from shoal.app.errors import IncompleteBody, MalformedTrailerError, S3Error
from shoal.auth.sigv4 import (
    EMPTY_SHA256,
    STREAMING_PAYLOAD,
    STREAMING_PAYLOAD_TRAILER,
    Scope,
    Verified,
    sign,
    signing_key,
)

REGION = "us-east-1"
SECRET = "fuzz-secret"
AMZ_DATE = "20260101T000000Z"
SEED = "a" * 64
#: A watchdog, not a timing assertion: a decoder that spins without awaiting (the
#: negative chunk size bug) cannot be interrupted by asyncio, only by a signal.
WATCHDOG_SECONDS = 10


@dataclass
class ChunkSigner:
    """Client side of the aws-chunked signature chain (the verifier's own primitives)."""

    key: bytes
    amz_date: str
    scope: Scope
    previous: str

    @classmethod
    def for_request(cls, headers: dict[str, str], secret: str, region: str = REGION) -> ChunkSigner:
        """The chain seeded by a request signed with `auth.signer.signed_headers`."""
        amz_date = headers["x-amz-date"]
        scope = Scope(amz_date[:8], region)
        seed = headers["authorization"].rsplit("Signature=", 1)[1]
        return cls(signing_key(secret, scope.date, region), amz_date, scope, seed)

    def chunk(self, data: bytes) -> str:
        digest = hashlib.sha256(data).hexdigest()
        head = f"AWS4-HMAC-SHA256-PAYLOAD\n{self.amz_date}\n{self.scope}\n{self.previous}"
        self.previous = sign(self.key, f"{head}\n{EMPTY_SHA256}\n{digest}")
        return self.previous

    def trailer(self, trailers: Sequence[tuple[str, str]]) -> str:
        lines = "".join(f"{name}:{value}\n" for name, value in trailers)
        digest = hashlib.sha256(lines.encode()).hexdigest()
        head = f"AWS4-HMAC-SHA256-TRAILER\n{self.amz_date}\n{self.scope}\n{self.previous}"
        self.previous = sign(self.key, f"{head}\n{digest}")
        return self.previous


def frame(
    chunks: Sequence[bytes],
    trailers: Sequence[tuple[str, str]] = (),
    signer: ChunkSigner | None = None,
) -> bytes:
    """A well-formed aws-chunked body: chunks, the final empty one, trailers, CRLF."""
    body = b""
    for data in [*chunks, b""]:
        extension = f";chunk-signature={signer.chunk(data)}" if signer else ""
        body += f"{len(data):x}{extension}\r\n".encode() + data + (b"\r\n" if data else b"")
    for name, value in trailers:
        body += f"{name}:{value}\r\n".encode()
    if signer is not None and trailers:
        body += f"x-amz-trailer-signature:{signer.trailer(trailers)}\r\n".encode()
    return body + b"\r\n"


def verified(payload_hash: str) -> Verified:
    scope = Scope(AMZ_DATE[:8], REGION)
    return Verified(
        access_key="fuzz",
        signing_key=signing_key(SECRET, scope.date, REGION),
        scope=scope,
        amz_date=AMZ_DATE,
        request_time=datetime(2026, 1, 1, tzinfo=UTC),
        signature=SEED,
        payload_hash=payload_hash,
        signed_headers=(),
    )


def signer_for(proof: Verified) -> ChunkSigner:
    return ChunkSigner(proof.signing_key, proof.amz_date, proof.scope, proof.signature)


@contextlib.contextmanager
def watchdog(seconds: int = WATCHDOG_SECONDS) -> Iterator[None]:
    """Fail (instead of hanging the suite) when the code under test never returns."""

    def expire(signum: int, frame: object) -> None:
        raise AssertionError(f"no answer within {seconds} s: the decoder spins")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


async def _pieces(body: bytes, cuts: Sequence[int]) -> AsyncIterator[bytes]:
    """`body` as the network might deliver it: split at `cuts`."""
    start = 0
    for cut in sorted({c % (len(body) + 1) for c in cuts}):
        if cut > start:
            yield body[start:cut]
            start = cut
    if start < len(body):
        yield body[start:]


async def _decode(
    body: bytes, cuts: Sequence[int], proof: Verified | None, declared: int | None
) -> tuple[bytes, dict[str, str]]:
    decoder = AwsChunkedDecoder(_pieces(body, cuts), proof, declared)
    out = bytearray()
    async for data in decoder:
        # Each piece carries at least one body byte, so the work is bounded by the input.
        assert data, "the decoder yielded an empty piece"
        out += data
        assert len(out) <= len(body)
    return bytes(out), decoder.trailers


def decode(
    body: bytes,
    cuts: Sequence[int] = (),
    proof: Verified | None = None,
    declared: int | None = None,
) -> tuple[bytes, dict[str, str]]:
    with watchdog():
        return asyncio.run(_decode(body, cuts, proof, declared))


def outcome(*args: object, **kwargs: object) -> tuple[bytes, dict[str, str]] | S3Error:
    """The decoded body, or the S3Error it was refused with; anything else fails."""
    try:
        return decode(*args, **kwargs)  # type: ignore[arg-type]
    except S3Error as error:
        assert 400 <= error.status < 500, error
        return error


MODES = ["unsigned", STREAMING_PAYLOAD, STREAMING_PAYLOAD_TRAILER]
chunk_lists = st.lists(st.binary(min_size=1, max_size=300), max_size=5)
trailer_lists = st.lists(
    st.tuples(
        st.sampled_from(["x-amz-checksum-crc32", "x-amz-checksum-sha256", "x-custom"]),
        st.text("ABCDEFabcdef0123456789+/=", min_size=1, max_size=20),
    ),
    max_size=2,
    unique_by=lambda t: t[0],
)
cut_lists = st.lists(st.integers(min_value=0, max_value=4000), max_size=8)


def _body(mode: str, chunks: list[bytes], trailers: list[tuple[str, str]]) -> tuple:
    proof = None if mode == "unsigned" else verified(mode)
    if mode == STREAMING_PAYLOAD:
        trailers = []
    signer = signer_for(proof) if proof else None
    return frame(chunks, trailers, signer), proof, trailers


@given(st.sampled_from(MODES), chunk_lists, trailer_lists, cut_lists)
def test_well_formed_bodies_decode(mode, chunks, trailers, cuts) -> None:
    if mode == STREAMING_PAYLOAD_TRAILER and not trailers:
        trailers = [("x-amz-checksum-crc32", "AAAAAA==")]
    body, proof, trailers = _body(mode, chunks, trailers)
    data, got = decode(body, cuts, proof, sum(map(len, chunks)))
    assert data == b"".join(chunks)
    assert got == dict(trailers)


MUTATIONS = ["flip", "insert", "delete", "truncate", "append", "duplicate", "replace"]
JUNK = [b"-5", b"0x5", b"+5", b" 5", b"5_0", b"\xff", b";" + b"e" * 300, b"\r\n", b"\r"]
JUNK += ["\u0665".encode(), b"f" * 40, b"0\r\n\r\n", b"x-amz-trailer-signature:" + b"0" * 64]
junk = st.binary(max_size=40) | st.sampled_from(JUNK)


def _mutate(body: bytes, kind: str, where: int, span: int, extra: bytes) -> bytes:
    at = where % (len(body) + 1)
    if kind == "flip" and body:
        at %= len(body)
        return body[:at] + bytes([body[at] ^ (1 + span % 255)]) + body[at + 1 :]
    if kind == "insert":
        return body[:at] + extra + body[at:]
    if kind == "delete":
        return body[:at] + body[at + span :]
    if kind == "truncate":
        return body[:at]
    if kind == "append":
        return body + extra
    if kind == "duplicate":
        return body[:at] + body[at : at + span] * 2 + body[at + span :]
    return body[:at] + extra + body[at + len(extra) :]


@given(
    st.sampled_from(MODES),
    chunk_lists,
    trailer_lists,
    st.lists(
        st.tuples(
            st.sampled_from(MUTATIONS),
            st.integers(min_value=0, max_value=2000),
            st.integers(min_value=0, max_value=64),
            junk,
        ),
        min_size=1,
        max_size=4,
    ),
    cut_lists,
    st.one_of(st.none(), st.integers(min_value=0, max_value=3000), st.just(-1)),
)
def test_mutated_bodies_decode_or_are_refused(
    mode, chunks, trailers, mutations, cuts, declared
) -> None:
    body, proof, _ = _body(mode, chunks, trailers)
    for kind, where, span, extra in mutations:
        body = _mutate(body, kind, where, span, extra)
    if declared == -1:  # the honest length
        declared = sum(map(len, chunks))
    result = outcome(body, cuts, proof, declared)
    if not isinstance(result, S3Error) and declared is not None:
        assert len(result[0]) == declared


@given(st.binary(max_size=600), cut_lists, st.sampled_from(MODES))
def test_random_bytes_decode_or_are_refused(body, cuts, mode) -> None:
    outcome(body, cuts, None if mode == "unsigned" else verified(mode), None)


@pytest.mark.parametrize(
    "size", [b"-5", b"0x5", b"+5", b" 5", b"5 ", b"5_0", b"\xd9\xa5", b"1" * 17, b""]
)
def test_chunk_sizes_are_hex_digits_only(size: bytes) -> None:
    """The negative size once spun for ever without awaiting; none of these is a size."""
    body = size + b"\r\nhello\r\n0\r\n\r\n"
    with pytest.raises(IncompleteBody, match="chunk size"):
        decode(body)
    with pytest.raises(IncompleteBody, match="chunk size"):
        decode(body, proof=verified(STREAMING_PAYLOAD))


def test_negative_size_in_any_chunk_is_refused() -> None:
    with pytest.raises(IncompleteBody):
        decode(b"3\r\nabc\r\n-5\r\nabc\r\n0\r\n\r\n", cuts=[1, 7, 9])


@pytest.mark.parametrize("signed", [False, True])
def test_long_chunk_extension_is_refused(signed: bool) -> None:
    """A 5,000-byte extension was stored with the object; now the header line is capped."""
    proof = verified(STREAMING_PAYLOAD) if signed else None
    good = frame([b"hello"], signer=signer_for(proof) if proof else None)
    header, rest = good.split(b"\r\n", 1)
    body = header + b";x=" + b"e" * 5000 + b"\r\n" + rest
    with pytest.raises(IncompleteBody, match="too long"):
        decode(body, proof=proof, declared=5)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("tail", [b"EXTRA", b"5\r\nhello\r\n0\r\n\r\n", b"\r\n"])
def test_data_after_the_final_chunk_is_refused(mode: str, tail: bytes) -> None:
    """S3 answers a second final chunk (aws-sdk-net once sent one) with this error."""
    trailers = [("x-amz-checksum-crc32", "AAAAAA==")] if mode != STREAMING_PAYLOAD else []
    body, proof, _ = _body(mode, [b"hello"], trailers)
    assert decode(body, proof=proof, declared=5)[0] == b"hello"
    with pytest.raises(MalformedTrailerError, match="final chunk"):
        decode(body + tail, cuts=[len(body)], proof=proof, declared=5)


@pytest.mark.parametrize("declared", [0, 4, 6])
def test_decoded_length_must_match(declared: int) -> None:
    with pytest.raises(IncompleteBody):
        decode(frame([b"hel", b"lo"]), declared=declared)


def test_too_many_trailers_are_refused() -> None:
    trailers = [(f"x-t{i}", "v") for i in range(100)]
    with pytest.raises(S3Error):
        decode(frame([b"hello"], trailers), declared=5)


def test_signed_bodies_with_a_broken_chain_are_refused() -> None:
    proof = verified(STREAMING_PAYLOAD_TRAILER)
    trailers = [("x-amz-checksum-crc32", "AAAAAA==")]
    body = frame([b"hello"], trailers, signer_for(proof))
    assert decode(body, proof=proof, declared=5) == (b"hello", dict(trailers))
    for tampered in (body.replace(b"hello", b"jello"), body.replace(b"AAAAAA==", b"BAAAAA==")):
        assert outcome(tampered, proof=proof, declared=5).code == "SignatureDoesNotMatch"
    unsigned_trailer = frame([b"hello"], signer=signer_for(proof))[:-2] + b"x-t:v\r\n\r\n"
    assert outcome(unsigned_trailer, proof=proof, declared=5).code == "SignatureDoesNotMatch"
