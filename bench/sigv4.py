"""AWS Signature Version 4 header signing for the benchmark's clients.

Written apart from shoal's own signer (`shoal.auth.signer`) on purpose: the benchmark
stands in for an outside client, so it signs the way the protocol says, and a unit test
checks it against botocore's signer. Requests for the load generator are signed once
per key before a loop starts (a signature stays valid for 15 minutes of clock skew,
far longer than any loop), so signing costs the measured loop nothing, as with a
client that presigns.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import quote, unquote

EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"


@dataclass(frozen=True)
class Credentials:
    """An access key pair and the region the server signs for."""

    access_key: str
    secret: str
    region: str = "us-east-1"


def _hmac(key: bytes, msg: str) -> bytes:
    return hmac.new(key, msg.encode(), hashlib.sha256).digest()


def canonical_query(query: str) -> str:
    """Query parameters sorted by name, each name and value percent-encoded once
    (`query` is as sent, so it is decoded first)."""
    if not query:
        return ""
    pairs = []
    for part in query.split("&"):
        name, _, value = part.partition("=")
        pairs.append((quote(unquote(name), safe="-_.~"), quote(unquote(value), safe="-_.~")))
    return "&".join(f"{n}={v}" for n, v in sorted(pairs))


def signed_headers(
    creds: Credentials,
    method: str,
    path: str,
    host: str,
    *,
    query: str = "",
    payload_hash: str = EMPTY_SHA256,
    now: datetime | None = None,
) -> dict[str, str]:
    """The headers (host, x-amz-date, x-amz-content-sha256, authorization) that sign
    `method path?query`; `path` and `query` are given as they go on the wire (already
    percent-encoded), and S3 signs the path as sent."""
    now = now or datetime.now(UTC)
    amz_date = now.strftime("%Y%m%dT%H%M%SZ")
    date = amz_date[:8]
    headers = {"host": host, "x-amz-content-sha256": payload_hash, "x-amz-date": amz_date}
    names = sorted(headers)
    canonical = "\n".join(
        [
            method,
            path,
            canonical_query(query),
            "".join(f"{n}:{headers[n]}\n" for n in names),
            ";".join(names),
            payload_hash,
        ]
    )
    scope = f"{date}/{creds.region}/s3/aws4_request"
    to_sign = "\n".join(
        ["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()]
    )
    key = _hmac(("AWS4" + creds.secret).encode(), date)
    for part in (creds.region, "s3", "aws4_request"):
        key = _hmac(key, part)
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    headers["authorization"] = (
        f"AWS4-HMAC-SHA256 Credential={creds.access_key}/{scope}, "
        f"SignedHeaders={';'.join(names)}, Signature={signature}"
    )
    return headers


def request_bytes(
    method: str,
    target: str,
    host: str,
    body: bytes = b"",
    creds: Credentials | None = None,
    *,
    payload_hash: str | None = None,
    content_length: int | None = None,
    extra: str = "",
) -> bytes:
    """A whole HTTP/1.1 request (head, then `body`), signed when `creds` are given;
    the payload is signed by its SHA-256 unless `payload_hash` says otherwise.
    `content_length` (default: len(body), sent for PUT/POST or a body) lets a caller
    stream the body itself."""
    path, _, query = target.partition("?")
    lines = [f"{method} {target} HTTP/1.1"]
    if creds is not None:
        if payload_hash is None:
            payload_hash = hashlib.sha256(body).hexdigest() if body else EMPTY_SHA256
        headers = signed_headers(creds, method, path, host, query=query, payload_hash=payload_hash)
        lines += [f"{k}: {v}" for k, v in headers.items()]
    else:
        lines.append(f"host: {host}")
    length = content_length if content_length is not None else len(body)
    if length or method in ("PUT", "POST"):
        lines.append(f"content-length: {length}")
    head = "\r\n".join(lines) + "\r\n" + extra + "\r\n"
    return head.encode() + body
