"""Raw request mutation fuzzer: valid S3 requests, mutated byte by byte, sent over raw
sockets to a real shoal process on 127.0.0.1 (auth on and off, standalone and erasure).

Each answer must be an HTTP status below 500, or a clean close (for framing the server
cannot parse); after every batch the server must still answer `GET /-/live` and a signed
S3 GET within seconds; at the end a canary bucket (objects written before fuzzing, with
known MD5s) must be unchanged. Findings (5xx, a non-HTTP answer, an unresponsive server)
are saved as request bytes + answer under the output folder, minimized where the answer
can be reproduced by dropping lines or bytes.

Run: `python -m tests.fuzz.raw` (bounded by FUZZ_SECONDS / FUZZ_REQUESTS per run; see
`Budget.from_env`); `make fuzz` runs it after the Hypothesis suites. The same code runs a
short seeded pass in the suite (tests/fuzz/test_raw_fuzz.py).
"""

from __future__ import annotations

import argparse
import base64
import collections
import concurrent.futures
import contextlib
import hashlib
import os
import random
import socket
import sys
import tempfile
import time
import zlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode, urlsplit
from xml.etree import ElementTree

from shoal.auth.signer import signed_headers
from shoal.auth.sigv4 import (
    ALGORITHM,
    EMPTY_SHA256,
    STREAMING_PAYLOAD,
    STREAMING_UNSIGNED_TRAILER,
    UNSIGNED_PAYLOAD,
    Scope,
    canonical_query,
    canonical_request,
    parse_query,
    sign,
    signing_key,
    string_to_sign,
)
from tests.integration.conftest import auth_config, erasure_config, signed_client
from tests.integration.serving import Proc

ACCESS_KEY, SECRET, REGION = "fuzzkey", "fuzz-secret-key", "us-east-1"
SCRATCH, CANARY = "fz-scratch", "fuzz-canary-bucket"
CRLF = b"\r\n"

# --------------------------------------------------------------------------- requests


@dataclass
class Request:
    """A request as bytes on the wire: the request line, header lines, the body."""

    line: bytes
    headers: list[tuple[bytes, bytes]]
    body: bytes = b""

    def wire(self) -> bytes:
        head = [self.line, *(n + b": " + v for n, v in self.headers)]
        return CRLF.join(head) + CRLF + CRLF + self.body

    def set_header(self, name: bytes, value: bytes) -> None:
        lower = name.lower()
        self.headers = [(n, v) for n, v in self.headers if n.lower() != lower]
        self.headers.append((name, value))


@dataclass
class Seed:
    """A valid S3 request; `sign` names the x-amz-* headers that must be signed."""

    name: str
    method: str
    path: str
    query: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    amz: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    payload: str = "sha256"  # sha256 | unsigned | chunked-unsigned | chunked-signed | presigned
    anonymous: bool = False
    tags: tuple[str, ...] = ()  # "xml", "chunked", "form": the mutators that apply


def _md5(data: bytes) -> str:
    return base64.b64encode(hashlib.md5(data).digest()).decode()


def _crc32(data: bytes) -> str:
    return base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode()


def seeds(upload_id: str) -> list[Seed]:
    """The valid requests the mutations start from: one or more per parser family."""
    delete_xml = (
        b'<?xml version="1.0" encoding="UTF-8"?><Delete><Quiet>true</Quiet>'
        b"<Object><Key>gone-1</Key></Object><Object><Key>gone-2</Key></Object></Delete>"
    )
    complete_xml = (
        b"<CompleteMultipartUpload><Part><PartNumber>1</PartNumber>"
        b'<ETag>"5d41402abc4b2a76b9719d911017c592"</ETag></Part></CompleteMultipartUpload>'
    )
    cors_xml = (
        b"<CORSConfiguration><CORSRule><AllowedOrigin>*</AllowedOrigin>"
        b"<AllowedMethod>GET</AllowedMethod><MaxAgeSeconds>30</MaxAgeSeconds>"
        b"<AllowedHeader>*</AllowedHeader></CORSRule></CORSConfiguration>"
    )
    policy = (
        b'{"Version":"2012-10-17","Statement":[{"Sid":"r","Effect":"Allow","Principal":"*",'
        b'"Action":["s3:GetObject"],"Resource":["arn:aws:s3:::' + SCRATCH.encode() + b'/pub/*"],'
        b'"Condition":{"StringLike":{"s3:prefix":["pub/*"]},"Bool":{"aws:SecureTransport":'
        b'"false"}}}]}'
    )
    form_boundary = "fuzzboundary"
    form = (
        f'--{form_boundary}\r\nContent-Disposition: form-data; name="key"\r\n\r\n'
        f"posted/${{filename}}\r\n--{form_boundary}\r\nContent-Disposition: form-data; "
        f'name="Content-Type"\r\n\r\ntext/plain\r\n--{form_boundary}\r\n'
        f'Content-Disposition: form-data; name="x-amz-meta-tag"\r\n\r\nv\r\n'
        f'--{form_boundary}\r\nContent-Disposition: form-data; name="file"; '
        f'filename="f.txt"\r\nContent-Type: text/plain\r\n\r\nposted body\r\n'
        f"--{form_boundary}--\r\n"
    ).encode()
    b, mp = f"/{SCRATCH}", f"/{SCRATCH}/mp"
    body = b"hello fuzz world"
    return [
        Seed("list-buckets", "GET", "/"),
        Seed("presigned-get", "GET", f"{b}/obj", "versionId=null", payload="presigned"),
        Seed("presigned-put", "PUT", f"{b}/presigned", body=body, payload="presigned"),
        Seed("get-object", "GET", f"{b}/obj", headers={"If-None-Match": '"x"'}),
        Seed(
            "get-range",
            "GET",
            f"{b}/obj",
            "response-content-type=text%2Fplain&response-cache-control=no",
            headers={"Range": "bytes=1-5"},
        ),
        Seed("head-object", "HEAD", f"{b}/a/b", headers={"Range": "bytes=0-0"}),
        Seed(
            "put-object",
            "PUT",
            f"{b}/put-key",
            headers={"Content-MD5": _md5(body), "Content-Type": "text/plain"},
            amz={"x-amz-meta-color": "blue", "x-amz-tagging": "a=b"},
            body=body,
        ),
        Seed(
            "put-chunked-unsigned",
            "PUT",
            f"{b}/chunked-key",
            amz={
                "x-amz-decoded-content-length": str(len(body)),
                "x-amz-trailer": "x-amz-checksum-crc32",
            },
            headers={"Content-Encoding": "aws-chunked"},
            body=body,
            payload="chunked-unsigned",
            tags=("chunked",),
        ),
        Seed(
            "put-chunked-signed",
            "PUT",
            f"{b}/signed-chunked",
            amz={"x-amz-decoded-content-length": str(len(body))},
            headers={"Content-Encoding": "aws-chunked"},
            body=body,
            payload="chunked-signed",
            tags=("chunked",),
        ),
        Seed(
            "delete-objects",
            "POST",
            b,
            "delete",
            headers={"Content-MD5": _md5(delete_xml)},
            body=delete_xml,
            payload="unsigned",
            tags=("xml",),
        ),
        Seed("list-v2", "GET", b, "list-type=2&prefix=a&delimiter=%2F&max-keys=5&fetch-owner=true"),
        Seed("list-v1", "GET", b, "marker=a&max-keys=3&encoding-type=url&prefix="),
        Seed("list-uploads", "GET", b, "uploads&max-uploads=2&key-marker=a"),
        Seed("list-parts", "GET", mp, f"uploadId={upload_id}&max-parts=2&part-number-marker=0"),
        Seed("create-upload", "POST", f"{b}/mp2", "uploads"),
        Seed(
            "upload-part",
            "PUT",
            mp,
            f"partNumber=1&uploadId={upload_id}",
            body=b"hello",
            payload="unsigned",
        ),
        Seed(
            "complete-upload",
            "POST",
            mp,
            f"uploadId={upload_id}",
            body=complete_xml,
            payload="unsigned",
            tags=("xml",),
        ),
        Seed(
            "upload-part-copy",
            "PUT",
            mp,
            f"partNumber=2&uploadId={upload_id}",
            amz={"x-amz-copy-source": f"{b}/obj", "x-amz-copy-source-range": "bytes=0-3"},
        ),
        Seed(
            "copy-object",
            "PUT",
            f"{b}/copied",
            amz={"x-amz-copy-source": f"{b}/obj", "x-amz-metadata-directive": "REPLACE"},
        ),
        Seed(
            "put-cors",
            "PUT",
            b,
            "cors",
            headers={"Content-MD5": _md5(cors_xml)},
            body=cors_xml,
            payload="unsigned",
            tags=("xml",),
        ),
        Seed("put-policy", "PUT", b, "policy", body=policy, payload="unsigned", tags=("xml",)),
        Seed(
            "post-object",
            "POST",
            b,
            headers={"Content-Type": f"multipart/form-data; boundary={form_boundary}"},
            body=form,
            anonymous=True,
            tags=("form",),
        ),
        Seed("delete-object", "DELETE", f"{b}/gone-3"),
        Seed("location", "GET", b, "location"),
        Seed(
            "options-cors",
            "OPTIONS",
            f"{b}/obj",
            headers={"Origin": "http://x", "Access-Control-Request-Method": "GET"},
            anonymous=True,
        ),
    ]


def _aws_chunks(data: bytes, signatures: Sequence[str] | None, trailer: bool) -> bytes:
    """aws-chunked framing of `data` in two chunks plus the final one (and the trailer)."""
    pieces = [data[:7], data[7:], b""]
    out = b""
    for index, piece in enumerate(pieces):
        ext = f";chunk-signature={signatures[index]}" if signatures else ""
        out += f"{len(piece):x}{ext}".encode() + CRLF + piece + (CRLF if piece else b"")
    if trailer:
        out += f"x-amz-checksum-crc32:{_crc32(data)}".encode() + CRLF
    return out + CRLF


def _chunk_signatures(seed_signature: str, amz_date: str, data: bytes) -> list[str]:
    scope = Scope(amz_date[:8], REGION)
    key = signing_key(SECRET, scope.date, REGION)
    previous, out = seed_signature, []
    for piece in (data[:7], data[7:], b""):
        digest = hashlib.sha256(piece).hexdigest()
        to_sign = (
            f"AWS4-HMAC-SHA256-PAYLOAD\n{amz_date}\n{scope}\n{previous}\n{EMPTY_SHA256}\n{digest}"
        )
        previous = sign(key, to_sign)
        out.append(previous)
    return out


def presigned_query(seed: Seed, host: str) -> str:
    """The seed's query with query-string SigV4 (a presigned URL, signing `host` only)."""
    amz_date = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    scope = Scope(amz_date[:8], REGION)
    auth = [
        ("X-Amz-Algorithm", ALGORITHM),
        ("X-Amz-Credential", f"{ACCESS_KEY}/{scope}"),
        ("X-Amz-Date", amz_date),
        ("X-Amz-Expires", "300"),
        ("X-Amz-SignedHeaders", "host"),
    ]
    query = "&".join(p for p in (seed.query, urlencode(auth, quote_via=quote)) if p)
    canonical = canonical_request(
        seed.method,
        seed.path,
        canonical_query(parse_query(query)),
        [("host", host)],
        ["host"],
        UNSIGNED_PAYLOAD,
    )
    key = signing_key(SECRET, scope.date, REGION)
    return f"{query}&X-Amz-Signature={sign(key, string_to_sign(amz_date, scope, canonical))}"


def render(seed: Seed, host: str, signed: bool) -> Request:
    """The seed as a valid request, signed now (SigV4 header auth) when `signed`."""
    body, headers = seed.body, dict(seed.headers)
    payload = {
        "sha256": hashlib.sha256(body).hexdigest(),
        "unsigned": UNSIGNED_PAYLOAD,
        "chunked-unsigned": STREAMING_UNSIGNED_TRAILER,
        "chunked-signed": STREAMING_PAYLOAD,
        "presigned": UNSIGNED_PAYLOAD,
    }[seed.payload]
    amz = dict(seed.amz)
    if signed and seed.payload == "presigned":
        seed = replace(seed, query=presigned_query(seed, host))
        amz = {"host": host, **amz}
    elif signed and not seed.anonymous:
        auth = signed_headers(
            seed.method,
            seed.path,
            host,
            ACCESS_KEY,
            SECRET,
            REGION,
            datetime.now(UTC),
            query=seed.query,
            payload_hash=payload,
            extra=amz,
        )
        amz = auth
    else:
        amz = {"host": host, **amz}
        if seed.payload.startswith("chunked"):
            amz["x-amz-content-sha256"] = payload
    if seed.payload == "chunked-unsigned":
        body = _aws_chunks(body, None, trailer=True)
    elif seed.payload == "chunked-signed":
        if "authorization" in amz:
            seed_signature = amz["authorization"].rsplit("Signature=", 1)[1]
            sigs = _chunk_signatures(seed_signature, amz["x-amz-date"], seed.body)
        else:
            sigs = ["0" * 64] * 3
        body = _aws_chunks(body, sigs, trailer=False)
    headers |= amz
    if body or seed.method in ("PUT", "POST"):
        headers["Content-Length"] = str(len(body))
    target = seed.path + (f"?{seed.query}" if seed.query else "")
    line = _wire(f"{seed.method} {target} HTTP/1.1")
    return Request(line, [(_wire(k), _wire(v)) for k, v in headers.items()], body)


def _wire(text: str) -> bytes:
    """Text back to the bytes it was decoded from (mutations decode with surrogateescape)."""
    return text.encode("utf-8", "surrogateescape")


def _text(data: bytes) -> str:
    return data.decode("utf-8", "surrogateescape")


# --------------------------------------------------------------------------- mutations

HOSTILE: tuple[bytes, ...] = (
    b"",
    b"\x00",
    b"a\x00b",
    b"-1",
    b"-5",
    b"0",
    b"9" * 5000,
    b"99999999999999999999",
    b"18446744073709551616",
    "²".encode(),
    "\u0663\u0660".encode(),
    "\uff17".encode(),
    b"\xff\xfe\xfd",
    b"\xc3\x28",
    "é".encode("latin-1"),
    "é".encode(),
    b"%00",
    b"%ff",
    b"%",
    b"0x10",
    b"1_0",
    b" 7",
    b"+7",
    b"1e3",
    b"NaN",
    b"A" * 9000,
    b"../../../etc/passwd",
    b"/" * 1100 + b"z",
    b"bytes=99999999999999999999-",
    b"bytes=5-1",
    b"bytes=-0",
    b"bytes=0-0," * 200,
    b"bytes=\xff-1",
    b"\t",
    b"*",
    b"&",
    b"=",
    b"?",
    b"\\",
    b"\x7f",
    b"\x1b[31m",
    b"<x/>",
    b"${jndi:x}",
    b"2",
    b"3",
    b"\r\nX-Injected: 1",
    b"%0d%0aX-Injected:%201",
    "€".encode(),
    "\ufb00".encode(),
    b"\xc0\xaf",
    b"bytes=16-",
    b"bytes=0-15",
    b"%01",
    b"%ef%bf%bf",
    b"%ed%b3%bf",
)
VALID_PREFIXES = (
    b"bytes=0-", b"aws-chunked", b"100-continue", b"chunked", b"close",
    b"STREAMING-UNSIGNED-PAYLOAD-TRAILER", b"UNSIGNED-PAYLOAD", b"multipart/form-data",
    b"/" + SCRATCH.encode() + b"/obj",
)  # fmt: skip
QUERY_NAMES = (
    b"max-keys", b"marker", b"delimiter", b"prefix", b"list-type", b"partNumber",
    b"uploadId", b"encoding-type", b"continuation-token", b"start-after", b"fetch-owner",
    b"response-content-type", b"response-content-disposition", b"response-expires",
    b"versionId", b"max-uploads", b"max-parts", b"part-number-marker", b"key-marker",
    b"upload-id-marker", b"uploads", b"delete", b"cors", b"policy", b"X-Amz-Algorithm",
    b"X-Amz-Expires", b"X-Amz-Date", b"X-Amz-Credential", b"X-Amz-Signature", b"location",
    b"versioning", b"acl", b"tagging", b"x-id",
)  # fmt: skip
HEADER_NAMES = (
    b"Range", b"Content-MD5", b"Content-Type", b"x-amz-decoded-content-length",
    b"x-amz-copy-source", b"x-amz-copy-source-range", b"If-Match", b"If-None-Match",
    b"If-Modified-Since", b"If-Unmodified-Since", b"x-amz-meta-fz", b"Content-Encoding",
    b"x-amz-content-sha256", b"Authorization", b"Expect", b"x-amz-date", b"Date", b"Host",
    b"x-amz-checksum-crc32", b"x-amz-checksum-sha256", b"x-amz-trailer", b"x-amz-acl",
    b"Content-Disposition", b"Cache-Control", b"Origin", b"Access-Control-Request-Method",
    b"x-amz-metadata-directive", b"x-amz-tagging", b"x-amz-sdk-checksum-algorithm",
    b"Transfer-Encoding", b"Connection", b"x-amz-security-token", b"x-amz-expected-bucket-owner",
)  # fmt: skip
XML_SNIPPETS = (
    b'<?xml version="1.0" encoding="x-no-such-encoding"?>',
    b'<?xml version="1.0" encoding="UTF-16"?>',
    b'<!DOCTYPE x [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;">]>',
    b'<!DOCTYPE x SYSTEM "file:///etc/passwd">',
    b"&a;",
    b"<![CDATA[\x00]]>",
    b"<Part>" * 2000,
    b"<PartNumber>" + b"9" * 5000 + b"</PartNumber>",
    b"<PartNumber>\xd9\xa3</PartNumber>",
    b"<MaxAgeSeconds>-1</MaxAgeSeconds>",
    b"<Key>\x00</Key>",
    b"<Key>" + b"k" * 5000 + b"</Key>",
    b"\xff\xfe",
    b"<Object><Key></Key></Object>" * 1100,
    b'{"Statement":' + b"[" * 3000,
    b'"Action":"s3:' + b"*" * 60 + b'!"',
)


def _splice(data: bytes, rng: random.Random, insert: bytes) -> bytes:
    at = rng.randrange(len(data) + 1)
    cut = rng.choice((0, 0, 1, rng.randrange(1, 16)))
    return data[:at] + insert + data[at + cut :]


def mutate_line(req: Request, rng: random.Random) -> None:
    method, _, rest = req.line.partition(b" ")
    target, _, version = rest.rpartition(b" ")
    choice = rng.randrange(5)
    if choice == 0:
        method = rng.choice([b"GET", b"PUT", b"POST", b"DELETE", b"HEAD", b"PATCH", b"TRACE",
                             b"CONNECT", b"get", b"G\x00T", b"X" * 300, b""])  # fmt: skip
    elif choice == 1:
        target = _splice(target, rng, rng.choice(HOSTILE))
    elif choice == 2:
        version = rng.choice([b"HTTP/1.0", b"HTTP/2.0", b"HTTP/1.1x", b"HTTP/9", b"", b"http/1.1"])
    elif choice == 3:
        target = rng.choice([b"*", b"http://x/y", b"//", b"/%2e%2e/%2e%2e", b"/" + b"a" * 20000])
    else:
        target = target.replace(b"/", rng.choice([b"//", b"/./", b"/../", b"%2F", b"\\"]), 1)
    req.line = b" ".join(p for p in (method, target, version) if p or rng.random() < 0.5)


def mutate_query(seed: Seed, rng: random.Random) -> Seed:
    """A hostile query parameter, added or replacing one (signed afterwards with auth on,
    so that the handlers' parsers see it rather than the signature check)."""
    name, value = rng.choice(QUERY_NAMES), rng.choice(HOSTILE)
    value = value if rng.random() < 0.5 else quote(value, safe="").encode()
    params = [p for p in _wire(seed.query).split(b"&") if p]
    if params and rng.random() < 0.5:
        params[rng.randrange(len(params))] = name + b"=" + value
    else:
        params.append(name + b"=" + value if rng.random() < 0.8 else name)
    return replace(seed, query=_text(b"&".join(params)))


def mutate_header(seed: Seed, rng: random.Random) -> Seed:
    """A hostile header value (x-amz-* ones signed, others not: as a client would send)."""
    name, value = rng.choice(HEADER_NAMES), rng.choice(HOSTILE)
    if rng.random() < 0.3:
        value = rng.choice(VALID_PREFIXES) + value
    key, text = _text(name), _text(value)
    if key.lower().startswith("x-amz-"):
        return replace(seed, amz={**seed.amz, key.lower(): text})
    headers = {k: v for k, v in seed.headers.items() if k.lower() != key.lower()}
    return replace(seed, headers={**headers, key: text})


def mutate_framing(req: Request, rng: random.Random) -> None:
    choice = rng.randrange(9)
    length = str(len(req.body)).encode()
    if choice == 0:
        req.headers = [(n, v) for n, v in req.headers if n.lower() != b"content-length"]
    elif choice == 1:
        req.set_header(b"Content-Length", rng.choice(HOSTILE))
    elif choice == 2:
        req.set_header(b"Content-Length", str(len(req.body) + rng.randint(1, 100)).encode())
    elif choice == 3:
        req.headers.append((b"Content-Length", length + b"0"))
    elif choice == 4:
        req.set_header(b"Transfer-Encoding", rng.choice([b"chunked", b"gzip, chunked", b"x"]))
        if rng.random() < 0.5:
            req.body = f"{len(req.body):x}".encode() + CRLF + req.body + CRLF + b"0" + CRLF * 2
    elif choice == 5:
        req.headers.insert(rng.randrange(len(req.headers) + 1), (b" folded", b"continuation"))
    elif choice == 6:
        req.headers.append((rng.choice([b"No Colon", b"X\x00Y", b"\xff", b""]), b"v"))
    elif choice == 7:
        req.body = req.body[: rng.randrange(len(req.body) + 1)]  # truncated, length kept
    else:
        req.body += rng.choice(HOSTILE)  # more than Content-Length: the next "request"


def mutate_chunked(req: Request, rng: random.Random) -> None:
    """aws-chunked framing: hostile chunk sizes, extensions, CRLFs, trailers, tails."""
    lines = req.body.split(CRLF)
    size_lines = [i for i, line in enumerate(lines) if line[:1] in b"0123456789abcdef" and line]
    choice = rng.randrange(6)
    if choice == 0 and size_lines:
        i = rng.choice(size_lines)
        size, sep, ext = lines[i].partition(b";")
        size = rng.choice([b"-5", b"0x7", b"+7", b" 7", b"7_0", b"f" * 17, b"ffffffffffffffff",
                           b"", b"\xd9\xa3", b"9" * 5000, b"7 ", b"07"])  # fmt: skip
        lines[i] = size + sep + ext
    elif choice == 1 and size_lines:
        i = rng.choice(size_lines)
        lines[i] += b";" + rng.choice([b"x" * 5000, b"chunk-signature=", b"a=b;c", b"\x00"])
    elif choice == 2:
        lines.insert(rng.randrange(len(lines) + 1), rng.choice(HOSTILE))
    elif choice == 3:
        del lines[rng.randrange(len(lines))]
    elif choice == 4:
        lines.insert(-1, rng.choice([b"x-amz-checksum-crc32:AAAA", b"bad trailer", b":" * 9,
                                     b"x-amz-checksum-crc32:" + b"A" * 9000]))  # fmt: skip
    else:
        lines.append(rng.choice([b"0", b"junk after the end", b"5;chunk-signature=x"]))
    req.body = CRLF.join(lines)
    if rng.random() < 0.7:
        req.set_header(b"Content-Length", str(len(req.body)).encode())


def mutate_xml(req: Request, rng: random.Random) -> None:
    snippet = rng.choice(XML_SNIPPETS)
    if rng.random() < 0.3:
        req.body = snippet + req.body
    else:
        req.body = _splice(req.body, rng, snippet)
    if rng.random() < 0.8:
        req.set_header(b"Content-Length", str(len(req.body)).encode())
    if rng.random() < 0.5 and any(n == b"Content-MD5" for n, _ in req.headers):
        req.set_header(b"Content-MD5", _md5(req.body).encode())


def mutate_form(req: Request, rng: random.Random) -> None:
    """POST Object forms: fields as files, huge/many fields, bad boundaries and bounds."""
    choice = rng.randrange(6)
    if choice == 0:
        req.body = req.body.replace(b'name="key"', b'name="key"; filename="k"')
    elif choice == 1:
        field_ = b'--fuzzboundary\r\nContent-Disposition: form-data; name="f%d"\r\n\r\nv\r\n'
        req.body = b"".join(field_ % i for i in range(rng.choice([10, 300]))) + req.body
    elif choice == 2:
        kinds = [b"multipart/form-data", b"multipart/form-data; boundary=", b"text/plain"]
        req.set_header(b"Content-Type", rng.choice([*kinds, b"multipart/form-data; boundary=\xff"]))
    elif choice == 3:
        req.body = req.body.replace(b"posted body", b"x" * rng.choice([100_000, 1]))
    elif choice == 4:
        req.body = req.body.replace(
            b"text/plain\r\n--", b"\xff\x00" + b"v" * 100_000 + b"\r\n--", 1
        )
    else:
        req.body = _splice(req.body, rng, rng.choice((*HOSTILE, b"\r\n--fuzzboundary\r\n")))
    req.set_header(b"Content-Length", str(len(req.body)).encode())


def mutate_body(req: Request, rng: random.Random) -> None:
    req.body = _splice(req.body, rng, rng.choice(HOSTILE)) if req.body else rng.choice(HOSTILE)
    if rng.random() < 0.8:
        req.set_header(b"Content-Length", str(len(req.body)).encode())


def mutate_huge(req: Request, rng: random.Random) -> None:
    choice = rng.randrange(4)
    if choice == 0:
        req.set_header(rng.choice(HEADER_NAMES), b"v" * rng.choice([9000, 70_000, 1_100_000]))
    elif choice == 1:
        req.headers += [(b"x-fz-%d" % i, b"v") for i in range(rng.choice([120, 1000]))]
    elif choice == 2:
        sep = b"&" if b"?" in req.line else b"?"
        huge = sep + b"q=" + b"q" * rng.choice([9000, 70_000])
        req.line = req.line.replace(b" HTTP/", huge + b" HTTP/", 1)
    else:
        req.set_header(b"x-amz-meta-big", b"m" * 3000)


def mutate_bytes(wire: bytes, rng: random.Random) -> bytes:
    """Generic byte-level damage anywhere in the request."""
    for _ in range(rng.choice((1, 1, 2, 4))):
        choice = rng.randrange(5)
        at = rng.randrange(len(wire) + 1)
        if choice == 0 and wire:
            at = min(at, len(wire) - 1)
            wire = wire[:at] + bytes([wire[at] ^ (1 << rng.randrange(8))]) + wire[at + 1 :]
        elif choice == 1:
            wire = wire[:at] + rng.choice((*HOSTILE, b"\r\n", b"\n", b"\r", b":", b" ")) + wire[at:]
        elif choice == 2:
            wire = wire[:at] + wire[at + rng.randrange(1, 32) :]
        elif choice == 3:
            end = min(len(wire), at + rng.randrange(1, 64))
            wire = wire[:end] + wire[at:end] * rng.randrange(2, 20) + wire[end:]
        else:
            wire = wire[:at]
    return wire


Mutator = Callable[[Request, random.Random], None]
SEED_LEVEL: dict[str, Callable[[Seed, random.Random], Seed]] = {
    "query": mutate_query,
    "header": mutate_header,
}
STRUCTURED: dict[str, tuple[Mutator, str | None]] = {
    "request-line": (mutate_line, None),
    "framing": (mutate_framing, None),
    "aws-chunked": (mutate_chunked, "chunked"),
    "xml": (mutate_xml, "xml"),
    "form": (mutate_form, "form"),
    "body": (mutate_body, None),
    "huge": (mutate_huge, None),
}
CLASSES = (*SEED_LEVEL, *STRUCTURED, "bytes")


def mutated(
    seed: Seed, host: str, signed: bool, rng: random.Random, classes: Sequence[str]
) -> tuple[str, bytes]:
    """One mutated request from `seed`: (mutation class, wire bytes)."""
    usable = [
        c for c in classes if c not in STRUCTURED or STRUCTURED[c][1] in (None, *seed.tags)
    ] or ["bytes"]
    kind = rng.choice(usable)
    if kind in SEED_LEVEL:
        return kind, render(SEED_LEVEL[kind](seed, rng), host, signed).wire()
    req = render(seed, host, signed)
    if kind == "bytes":
        return kind, mutate_bytes(req.wire(), rng)
    STRUCTURED[kind][0](req, rng)
    return kind, req.wire()


# --------------------------------------------------------------------------- exchange


@dataclass
class Answer:
    status: int | None  # None: no HTTP status line (closed, timed out or garbage)
    raw: bytes
    outcome: str  # "status", "closed", "timeout", "garbage", "reset"
    head: bool = False  # the answer to a HEAD request (no body, so no error code to read)

    @property
    def label(self) -> str:
        if self.status == 501 and _not_implemented(self):
            return "501-NotImplemented"
        if self.status is not None and not self.xml_parses:
            return f"{self.status}-bad-xml"
        return str(self.status) if self.status is not None else self.outcome

    @property
    def xml_parses(self) -> bool:
        """Whether an XML error document parses: one echoing request text as `&#x1;` or
        `&#xffff;` fails in every SDK's parser, which then reports no S3 error code. True
        when there is no error body to check. Results are not judged: a listing of keys
        holding such characters has them too, as S3's own does (clients send
        encoding-type=url for that)."""
        if self.head or self.status is None or self.status < 300:
            return True
        head, _, body = self.raw.partition(b"\r\n\r\n")
        lowered = head.lower()
        if b"content-type: application/xml" not in lowered or b"transfer-encoding" in lowered:
            return True
        try:
            ElementTree.fromstring(body)
        except ElementTree.ParseError:
            return False
        return True


def _complete(data: bytes, head_only: bool) -> tuple[int | None, bool]:
    """The final status in `data` and whether its whole response has arrived."""
    while True:
        end = data.find(b"\r\n\r\n")
        if end < 0:
            return None, False
        head = data[:end].split(b"\r\n")
        parts = head[0].split(b" ", 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/") or not parts[1].isdigit():
            return None, True
        status = int(parts[1])
        if 100 <= status < 200:
            data = data[end + 4 :]
            continue
        if head_only or status in (204, 304):
            return status, True
        length = None
        for line in head[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length" and value.strip().isdigit():
                length = int(value.strip())
            if name.strip().lower() == b"transfer-encoding":
                return status, data.endswith(b"0\r\n\r\n")
        return status, length is None or len(data) - end - 4 >= length


def exchange(host: str, port: int, payload: bytes, timeout: float) -> Answer:
    """Send `payload` on a fresh connection; read the answer until it is complete, the
    server closes, or `timeout` passes without a byte."""
    head_only = payload.startswith(b"HEAD ")
    received = b""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            with contextlib.suppress(OSError):  # it may answer and close before reading all
                sock.sendall(payload)
            while True:
                try:
                    chunk = sock.recv(65536)
                except TimeoutError:
                    return _answer(received, head_only, "timeout")
                except OSError:
                    return _answer(received, head_only, "reset")
                if not chunk:
                    return _answer(received, head_only, "closed")
                received += chunk
                status, done = _complete(received, head_only)
                if done:
                    outcome = "status" if status else "garbage"
                    return Answer(status, received, outcome, head_only)
    except OSError:
        return Answer(None, received, "reset")


def _answer(received: bytes, head_only: bool, outcome: str) -> Answer:
    status, _ = _complete(received, head_only)
    if status is not None:
        return Answer(status, received, "status", head_only)
    if received and not received.startswith(b"HTTP/"):
        return Answer(None, received, "garbage")
    return Answer(None, received, outcome)


def _not_implemented(answer: Answer) -> bool:
    """S3's NotImplemented error (the code is in the body; a HEAD answer has none)."""
    return answer.head or b"<Code>NotImplemented</Code>" in answer.raw


def is_finding(answer: Answer) -> bool:
    """A 5xx, an XML body that does not parse, or bytes that are not HTTP at all. S3's
    own 501 NotImplemented (a feature shoal does not have, e.g. ?tagging) is counted apart
    in the histogram, not a finding."""
    if answer.status == 501 and _not_implemented(answer):
        return False
    if answer.status is not None and not answer.xml_parses:
        return True
    return (answer.status is not None and answer.status >= 500) or answer.outcome == "garbage"


WRITES = (b"PUT ", b"POST ", b"DELETE ")


def anonymous_write(payload: bytes, answer: Answer) -> bool:
    """With auth on: a write that carries no signature at all succeeded (an auth bypass;
    the scratch bucket's policy only lets anyone read `pub/*`, and POST Object needs a
    signed policy)."""
    if not payload.startswith(WRITES) or answer.status is None or answer.status >= 300:
        return False
    head = payload.partition(b"\r\n\r\n")[0].lower()
    return b"\nauthorization:" not in head and b"x-amz-signature" not in head


# --------------------------------------------------------------------------- a server


@dataclass
class Budget:
    seconds: float = 60.0
    requests: int = 2000
    batch: int = 50
    workers: int = 8
    timeout: float = 1.5
    seed: int = 11
    #: How long the health probes may take after a batch ("within seconds", with room
    #: for a loaded CI machine).
    probe_timeout: float = 10.0

    @classmethod
    def from_env(cls, **defaults: Any) -> Budget:
        """FUZZ_SECONDS, FUZZ_REQUESTS, FUZZ_BATCH, FUZZ_WORKERS, FUZZ_TIMEOUT, FUZZ_SEED."""
        values = {**cls().__dict__, **defaults}
        for name, value in list(values.items()):
            env = os.environ.get(f"FUZZ_{name.upper()}")
            if env:
                values[name] = float(env) if isinstance(value, float) else int(env)
        return cls(**values)


@dataclass
class Report:
    mode: str
    sent: int = 0
    statuses: collections.Counter[str] = field(default_factory=collections.Counter)
    by_class: dict[str, collections.Counter[str]] = field(default_factory=dict)
    findings: list[dict[str, Any]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # unresponsive server, canary changed

    @property
    def ok(self) -> bool:
        return not self.findings and not self.problems

    def summary(self) -> str:
        lines = [f"== {self.mode}: {self.sent} requests"]
        lines.append(
            "   statuses: " + ", ".join(f"{k}={v}" for k, v in sorted(self.statuses.items()))
        )
        for kind, counts in sorted(self.by_class.items()):
            lines.append(
                f"   {kind:13} " + ", ".join(f"{k}={v}" for k, v in sorted(counts.items()))
            )
        for finding in self.findings:
            lines.append(f"   FINDING {finding['label']} [{finding['class']}/{finding['seed']}] "
                         f"{finding['first_line']!r} -> {finding['file']}")  # fmt: skip
        lines += [f"   PROBLEM {p}" for p in self.problems]
        return "\n".join(lines)


class Fuzzer:
    """One server (a mode), its canary, and the loop that fuzzes it."""

    def __init__(self, workdir: Path, *, erasure: bool, auth: bool, out: Path) -> None:
        self.mode = f"{'erasure' if erasure else 'standalone'}/auth-{'on' if auth else 'off'}"
        self.auth, self.out = auth, out
        workdir.mkdir(parents=True, exist_ok=True)
        settings: dict[str, Any] = {"logging": {"level": "error"}}
        if auth:
            settings |= auth_config((ACCESS_KEY, SECRET))
        if erasure:
            settings |= erasure_config(workdir / "drives")
        self.proc = Proc(workdir, settings=settings, name="fuzz")
        self.url = urlsplit(self.proc.url)
        self.host = self.url.netloc
        self.s3 = signed_client(
            self.proc.url,
            ACCESS_KEY,
            SECRET,
            connect_timeout=10,
            read_timeout=10,
        )
        self.canary: dict[str, str] = {}
        self.upload_id = ""

    def prepare(self, rng: random.Random) -> None:
        """The canary (known MD5s) and the scratch bucket the mutations aim at."""
        for bucket in (CANARY, SCRATCH):
            self.s3.create_bucket(Bucket=bucket)
        for index in range(6):
            key = f"canary/{index}/" + "k" * index
            data = rng.randbytes(rng.choice([0, 1, 100, 70_000]))
            self.s3.put_object(Bucket=CANARY, Key=key, Body=data)
            self.canary[key] = hashlib.md5(data).hexdigest()
        self.refresh()

    def refresh(self) -> None:
        """Put back what mutated requests may legitimately have changed in the scratch bucket."""
        try:
            self.s3.head_bucket(Bucket=SCRATCH)
        except Exception:
            self.s3.create_bucket(Bucket=SCRATCH)
        for key in ("obj", "a/b", "pub/x"):
            self.s3.put_object(Bucket=SCRATCH, Key=key, Body=b"scratch object " + key.encode())
        self.upload_id = self.s3.create_multipart_upload(Bucket=SCRATCH, Key="mp")["UploadId"]

    def healthy(self, timeout: float) -> str | None:
        """None when the server answers the probes within seconds, else what failed."""
        if self.proc.proc.poll() is not None:
            return f"server exited with {self.proc.proc.returncode}"
        live = exchange(
            self.url.hostname or "", self.proc.port,
            f"GET /-/live HTTP/1.1\r\nHost: {self.host}\r\nConnection: close\r\n\r\n".encode(),
            timeout=timeout,
        )  # fmt: skip
        if live.status != 200:
            return f"GET /-/live answered {live.label}"
        key = next(iter(self.canary))
        try:
            data = self.s3.get_object(Bucket=CANARY, Key=key)["Body"].read()
        except Exception as exc:
            return f"signed GET failed: {exc!r}"
        return None if hashlib.md5(data).hexdigest() == self.canary[key] else "canary GET differs"

    def canary_changes(self) -> list[str]:
        listed = {o["Key"] for o in self.s3.list_objects_v2(Bucket=CANARY).get("Contents", [])}
        changes = [f"canary keys changed: {sorted(listed ^ set(self.canary))}"] if listed != set(
            self.canary
        ) else []  # fmt: skip
        for key, md5 in self.canary.items():
            try:
                data = self.s3.get_object(Bucket=CANARY, Key=key)["Body"].read()
            except Exception as exc:
                changes.append(f"canary {key}: {exc!r}")
                continue
            if hashlib.md5(data).hexdigest() != md5:
                changes.append(f"canary {key}: content changed")
        return changes

    def run(self, budget: Budget, classes: Sequence[str]) -> Report:
        rng = random.Random(f"{budget.seed}/{self.mode}")
        report = Report(self.mode)
        self.prepare(rng)
        deadline = time.monotonic() + budget.seconds
        seen: set[tuple[str, str, str]] = set()
        with concurrent.futures.ThreadPoolExecutor(budget.workers) as pool:
            while report.sent < budget.requests and time.monotonic() < deadline:
                count = min(budget.batch, budget.requests - report.sent)
                batch = [self._one(rng, classes) for _ in range(count)]
                answers = pool.map(
                    lambda item: exchange(
                        self.url.hostname or "", self.proc.port, item[2], budget.timeout
                    ),
                    batch,
                )
                for (kind, seed_name, payload), answer in zip(batch, answers, strict=True):
                    self._record(report, kind, seed_name, payload, answer, seen, budget)
                report.sent += count
                problem = self.healthy(budget.probe_timeout)
                if problem:
                    path = self._save("unresponsive", b"\n\n=====\n\n".join(p for *_, p in batch))
                    report.problems.append(f"after request {report.sent}: {problem} ({path})")
                    break
                self.refresh()
        if not report.problems:
            report.problems += self.canary_changes()
        return report

    def _one(self, rng: random.Random, classes: Sequence[str]) -> tuple[str, str, bytes]:
        seed = rng.choice(seeds(self.upload_id))
        kind, payload = mutated(seed, self.host, self.auth, rng, classes)
        return kind, seed.name, payload

    def _record(
        self,
        report: Report,
        kind: str,
        seed_name: str,
        payload: bytes,
        answer: Answer,
        seen: set[tuple[str, str, str]],
        budget: Budget,
    ) -> None:
        bypass = self.auth and anonymous_write(payload, answer)
        label = f"{answer.status}-anonymous-write" if bypass else answer.label
        report.statuses[label] += 1
        report.by_class.setdefault(kind, collections.Counter())[label] += 1
        if not (bypass or is_finding(answer)):
            return
        key = (kind, seed_name, label)
        if key in seen:
            return
        seen.add(key)

        def still_fails(candidate: bytes) -> bool:
            again = exchange(self.url.hostname or "", self.proc.port, candidate, budget.timeout)
            return anonymous_write(candidate, again) if bypass else is_finding(again)

        small = minimize(payload, still_fails)
        path = self._save(f"{kind}-{seed_name}-{label}", small, answer.raw)
        report.findings.append(
            {
                "label": label,
                "class": kind,
                "seed": seed_name,
                "first_line": small.split(b"\r\n", 1)[0][:120],
                "file": str(path),
                "request": small,
                "response": answer.raw[:2000],
            }
        )

    def _save(self, name: str, request: bytes, response: bytes = b"") -> Path:
        folder = self.out / self.mode.replace("/", "-")
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{name}.request"
        path.write_bytes(request)
        if response:
            (folder / f"{name}.response").write_bytes(response[:65536])
        return path

    def close(self) -> None:
        self.proc.kill()


def minimize(payload: bytes, still_fails: Callable[[bytes], bool], tries: int = 60) -> bytes:
    """Drop header lines, then shorten the body, while the answer is still a finding."""
    head, sep, body = payload.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    index = 1
    while index < len(lines) and tries > 0:
        candidate = lines[:index] + lines[index + 1 :]
        tries -= 1
        if still_fails(b"\r\n".join(candidate) + sep + body):
            lines = candidate
        else:
            index += 1
    while len(body) > 1 and tries > 0:
        tries -= 1
        shorter = body[: len(body) // 2]
        fixed = [
            b"Content-Length: %d" % len(shorter) if line.lower().startswith(b"content-length:")
            else line for line in lines
        ]  # fmt: skip
        if not still_fails(b"\r\n".join(fixed) + sep + shorter):
            break
        lines, body = fixed, shorter
    return b"\r\n".join(lines) + sep + body


@contextmanager
def fuzzer(workdir: Path, *, erasure: bool, auth: bool, out: Path) -> Iterator[Fuzzer]:
    one = Fuzzer(workdir, erasure=erasure, auth=auth, out=out)
    try:
        yield one
    finally:
        one.close()


MODES = {
    "standalone/auth-off": (False, False),
    "standalone/auth-on": (False, True),
    "erasure/auth-off": (True, False),
    "erasure/auth-on": (True, True),
}


def run_modes(
    modes: Sequence[str], budget: Budget, classes: Sequence[str], out: Path
) -> list[Report]:
    """Fuzz each mode with its share of the time budget; one fresh server per mode."""
    reports = []
    share = Budget(**{**budget.__dict__, "seconds": budget.seconds / len(modes)})
    for mode in modes:
        erasure, auth = MODES[mode]
        with (
            tempfile.TemporaryDirectory(prefix="shoal-fuzz-") as tmp,
            fuzzer(Path(tmp), erasure=erasure, auth=auth, out=out) as one,
        ):
            reports.append(one.run(share, classes))
        print(reports[-1].summary(), flush=True)
    return reports


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--modes", default=os.environ.get("FUZZ_MODES", ",".join(MODES)))
    parser.add_argument("--classes", default=os.environ.get("FUZZ_CLASSES", ",".join(CLASSES)))
    default_out = Path(tempfile.gettempdir()) / "shoal-fuzz-findings"
    parser.add_argument("--out", default=os.environ.get("FUZZ_OUT", str(default_out)))
    args = parser.parse_args(argv)
    budget = Budget.from_env(seconds=180.0, requests=100_000, seed=int(time.time()))
    modes = [m for m in args.modes.split(",") if m]
    classes = [c for c in args.classes.split(",") if c]
    print(f"raw fuzz: {modes}, {budget}, findings under {args.out}/", flush=True)
    reports = run_modes(modes, budget, classes, Path(args.out))
    total = sum(r.sent for r in reports)
    bad = sum(len(r.findings) + len(r.problems) for r in reports)
    print(f"raw fuzz: {total} requests, {bad} findings/problems (seed {budget.seed})")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
