"""AWS Signature Version 2 for S3: header auth (`Authorization: AWS key:signature`) and
query-string auth (presigned URLs: `AWSAccessKeyId`, `Signature`, `Expires`).

What boto3's `generate_presigned_url` and `aws s3 presign` produce by default in
us-east-1. Pure logic, like sigv4.py: raw path, query and header bytes in, the verified
access key or an AuthFailure with the code AWS answers out. The signature is the base64
HMAC-SHA1 of S3's string to sign (RESTAuthentication):

    VERB \\n Content-MD5 \\n Content-Type \\n Date \\n CanonicalizedAmzHeaders CanonicalizedResource

Date is the Date header, empty when x-amz-date carries the time, and the `Expires` value
for query auth. The resource is `/bucket` for a virtual-hosted request, then the path as
sent, then the signed parameters (sub-resources and response-* overrides) decoded and
sorted. Nothing here logs, and no error carries a secret or a signature.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from urllib.parse import unquote_to_bytes

from shoal.auth.numbers import parse_uint
from shoal.auth.sigv4 import (
    MAX_PRESIGN_EXPIRES,
    MAX_SKEW,
    AuthFailure,
    CredentialLookup,
    Header,
    Text,
)

SCHEME = "AWS"
#: The query parameters that make a request query-string SigV2.
QUERY_PARAMS = ("AWSAccessKeyId", "Signature", "Expires")

#: Parameters botocore's SigV2 signers sign as part of the resource (HmacV1Auth's
#: QSAOfInterest): AWS's list of sub-resources and response-* overrides, and more.
BOTOCORE_SIGNED = frozenset(
    {
        "accelerate",
        "acl",
        "analytics",
        "cors",
        "defaultObjectAcl",
        "delete",
        "inventory",
        "lifecycle",
        "location",
        "logging",
        "metrics",
        "notification",
        "object-lock",
        "partNumber",
        "policy",
        "replication",
        "requestPayment",
        "response-cache-control",
        "response-content-disposition",
        "response-content-encoding",
        "response-content-language",
        "response-content-type",
        "response-expires",
        "restore",
        "select",
        "select-type",
        "storageClass",
        "tagging",
        "torrent",
        "uploadId",
        "uploads",
        "versionId",
        "versioning",
        "versions",
        "website",
    }
)
#: What the other SigV2 signers (MinIO's, minio-go) sign: botocore's list and three more.
SIGNED_PARAMETERS = BOTOCORE_SIGNED | {"encryption", "legal-hold", "retention"}
#: Sub-resources newer than SigV2 that signers do not sign, but that turn a request into
#: another operation (GET/PUT on a bucket with `?publicAccessBlock`, ...). A presigned URL
#: is handed to others, who must not be able to append one: for query auth these and
#: SIGNED_PARAMETERS are all signed when present. Header auth takes either signer's list
#: (so boto3's SigV2 client can call every operation; a header-signed request is only
#: good for 15 minutes, and SigV2 never signed its body anyway).
QUERY_AUTH_SIGNED = SIGNED_PARAMETERS | {
    "attributes",
    "intelligent-tiering",
    "metadataTable",
    "ownershipControls",
    "policyStatus",
    "publicAccessBlock",
    "renameObject",
}

#: What AWS's SigV4-only regions answer a SigV2 request (400 InvalidRequest).
REFUSED = (
    "The authorization mechanism you have provided is not supported. Please use AWS4-HMAC-SHA256."
)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MALFORMED = "AWS authorization header is invalid.  Expected AwsAccessKeyId:signature"
_NO_DATE = "AWS authentication requires a valid Date or x-amz-date header"
_QUERY_MISSING = (
    "Query-string authentication requires the Signature, Expires and AWSAccessKeyId parameters"
)


def _text(value: Text) -> str:
    return value.decode("utf-8", "surrogateescape") if isinstance(value, bytes) else value


def _raw(value: Text) -> bytes:
    return value if isinstance(value, bytes) else value.encode("utf-8", "surrogateescape")


def _header(headers: Sequence[Header], name: str) -> str | None:
    """A header's value (repeats comma-joined, each trimmed), None when absent."""
    found = [_text(v).strip() for n, v in headers if _text(n).lower() == name]
    return ",".join(found) if found else None


def query_pairs(raw_query: Text) -> list[tuple[str, str | None]]:
    """(name, value) per parameter, decoded as the app reads queries (`+` is a space,
    invalid UTF-8 a U+FFFD); the value is None for a bare `name` (signed without `=`)."""
    pairs: list[tuple[str, str | None]] = []
    for part in _raw(raw_query).split(b"&"):
        if not part:
            continue
        name, sep, value = part.partition(b"=")
        pairs.append((_decode(name), _decode(value) if sep else None))
    return pairs


def _decode(raw: bytes) -> str:
    return unquote_to_bytes(raw.replace(b"+", b" ")).decode("utf-8", "replace")


def is_header_auth(headers: Sequence[Header]) -> bool:
    """Whether the Authorization header names the SigV2 scheme (`AWS key:signature`)."""
    value = _header(headers, "authorization")
    return value is not None and value.split(" ", 1)[0] == SCHEME


def is_query_auth(raw_query: Text) -> bool:
    """Whether the query carries SigV2 query-string auth (`Signature` or `AWSAccessKeyId`)."""
    return any(name in ("Signature", "AWSAccessKeyId") for name, _ in query_pairs(raw_query))


def canonical_resource(
    raw_path: Text,
    raw_query: Text,
    bucket: str | None,
    signed: frozenset[str],
    *,
    path_as_sent: bool = False,
    query_as_sent: bool = False,
) -> str:
    """`/bucket` when the Host named it, the path as sent, then `?` and the signed
    parameters sorted by name (`name=value`, values decoded, or `name` when the value is
    empty), `&`-joined.

    S3 reads a path-style request to a bucket alone (`/bucket`) as `/bucket/` (botocore
    signs that) and an empty sub-resource (`?versioning=`) as a bare name (MinIO and
    rclone sign that). The `*_as_sent` flags keep either as the request spells it, which
    other signers sign (botocore too, for an `=` it wrote; rclone for the bucket path)."""
    path = _text(raw_path) or "/"
    if bucket:
        path = f"/{bucket}{path}"
    elif not path_as_sent and path.count("/") == 1 and len(path) > 1:
        path += "/"
    params = [(n, v) for n, v in query_pairs(raw_query) if n in signed]
    params.sort(key=lambda pair: pair[0])  # stable: repeats keep their order, as botocore
    if params:
        bare = (lambda v: v is None) if query_as_sent else (lambda v: not v)
        path += "?" + "&".join(n if bare(v) else f"{n}={v}" for n, v in params)
    return path


def _resources(
    raw_path: Text, raw_query: Text, bucket: str | None, lists: Sequence[frozenset[str]]
) -> list[str]:
    """The spellings of one request's resource a signer may have signed: each list of
    signed parameters, S3's reading of the path and query or the request's own (all
    name the same bucket, object and sub-resources, so accepting any lets no request
    pass for another). The first is AWS's; most requests have just one."""
    spellings = (
        canonical_resource(
            raw_path, raw_query, bucket, signed, path_as_sent=path, query_as_sent=query
        )
        for signed in lists
        for path in (False, True)
        for query in (False, True)
    )
    return list(dict.fromkeys(spellings))


def canonical_amz_headers(headers: Sequence[Header]) -> str:
    """`name:value\\n` per x-amz-* header: lower-case names sorted, values trimmed and
    repeats comma-joined in arrival order."""
    values: dict[str, list[str]] = {}
    for name, value in headers:
        lower = _text(name).lower()
        if lower.startswith("x-amz-"):
            values.setdefault(lower, []).append(_text(value).strip())
    return "".join(f"{name}:{','.join(values[name])}\n" for name in sorted(values))


def string_to_sign(
    method: str,
    content_md5: str,
    content_type: str,
    date: str,
    amz_headers: Sequence[Header],
    resource: str,
) -> str:
    """S3's SigV2 string to sign."""
    head = f"{method.upper()}\n{content_md5}\n{content_type}\n{date}\n"
    return head + canonical_amz_headers(amz_headers) + resource


def sign(secret: str, to_sign: str) -> str:
    """Base64 HMAC-SHA1 of a string to sign (also a SigV2 POST policy's signature)."""
    key = secret.encode("utf-8")
    digest = hmac.new(key, to_sign.encode("utf-8", "surrogateescape"), hashlib.sha1).digest()
    return base64.b64encode(digest).decode("ascii")


def check_signature(
    lookup: CredentialLookup, access_key: str, strings_to_sign: Sequence[str], given: str
) -> None:
    """Look the secret up and compare the signature (constant time) with that of each
    spelling of the string to sign; a mismatch reports the first, as AWS builds it."""
    secret = lookup(access_key)
    if secret is None:
        message = "The AWS Access Key Id you provided does not exist in our records."
        raise AuthFailure("InvalidAccessKeyId", message, AWSAccessKeyId=access_key)
    provided = given.encode("utf-8", "replace")
    matches = [hmac.compare_digest(sign(secret, s).encode(), provided) for s in strings_to_sign]
    if not any(matches):
        raise AuthFailure(
            "SignatureDoesNotMatch",
            "The request signature we calculated does not match the signature you provided. "
            "Check your key and signing method.",
            AWSAccessKeyId=access_key,
            **_mismatch_fields(strings_to_sign[0]),
        )


def _mismatch_fields(to_sign: str) -> dict[str, str]:
    """What AWS returns to debug a mismatch: the string to sign, as text and as bytes
    (the provided signature is not echoed)."""
    data = to_sign.encode("utf-8", "surrogateescape")
    return {"StringToSign": to_sign, "StringToSignBytes": " ".join(f"{b:02x}" for b in data)}


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_date(value: str) -> datetime | None:
    """An HTTP date (RFC 1123, RFC 850, asctime) as an aware datetime; None if invalid or
    before 1970 (AWS refuses those as invalid, not as skewed)."""
    try:
        moment = parsedate_to_datetime(value)
        moment = moment.replace(tzinfo=moment.tzinfo or UTC)
        return moment if moment >= _EPOCH else None
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


def parse_authorization(value: str) -> tuple[str, str]:
    """`AWS <access key>:<signature>` exactly, else InvalidArgument as AWS answers."""
    scheme, _, rest = value.partition(" ")
    if scheme != SCHEME:
        raise AuthFailure("InvalidArgument", "Unsupported Authorization Type")
    if rest.startswith(" ") or " " in rest.strip():
        raise AuthFailure(
            "InvalidArgument",
            "Authorization header is invalid -- one and only one ' ' (space) required",
            ArgumentName="Authorization",
        )
    access_key, sep, signature = rest.partition(":")
    if not (access_key and sep and signature):
        raise AuthFailure("InvalidArgument", _MALFORMED, ArgumentName="Authorization")
    return access_key, signature


def verify_header_auth(
    *,
    method: str,
    raw_path: Text,
    raw_query: Text,
    headers: Sequence[Header],
    lookup: CredentialLookup,
    now: datetime,
    bucket: str | None = None,
) -> str:
    """The access key of a request signed in its Authorization header; `bucket` is the
    bucket its Host names (virtual-hosted style), if any."""
    access_key, signature = parse_authorization(_header(headers, "authorization") or "")
    amz_date = _header(headers, "x-amz-date")
    stamp = amz_date if amz_date is not None else _header(headers, "date")
    request_time = _parse_date(stamp or "")
    if request_time is None:
        raise AuthFailure("AccessDenied", _NO_DATE)
    if abs(now - request_time) > MAX_SKEW:
        raise AuthFailure(
            "RequestTimeTooSkewed",
            "The difference between the request time and the current time is too large.",
            RequestTime=stamp or "",
            ServerTime=_iso(now),
            MaxAllowedSkewMilliseconds=str(int(MAX_SKEW.total_seconds() * 1000)),
        )
    strings = [
        string_to_sign(
            method,
            _header(headers, "content-md5") or "",
            _header(headers, "content-type") or "",
            "" if amz_date is not None else stamp or "",
            headers,
            resource,
        )
        for resource in _resources(
            raw_path, raw_query, bucket, (SIGNED_PARAMETERS, BOTOCORE_SIGNED)
        )
    ]
    check_signature(lookup, access_key, strings, signature)
    return access_key


def verify_query_auth(
    *,
    method: str,
    raw_path: Text,
    raw_query: Text,
    headers: Sequence[Header],
    lookup: CredentialLookup,
    now: datetime,
    bucket: str | None = None,
) -> str:
    """The access key of a presigned URL, which must not have expired nor live more than
    seven days from now (plus the clock skew tolerated for headers)."""
    params: dict[str, str] = {}
    query_headers: list[Header] = []
    for name, value in query_pairs(raw_query):
        if name in QUERY_PARAMS:
            params.setdefault(name, value or "")
        elif name.lower().startswith("x-amz-") or name.lower() in ("content-type", "content-md5"):
            # botocore moves the signed x-amz-*, Content-Type and Content-MD5 into the query.
            query_headers.append((name.lower(), value or ""))
    if any(not params.get(name) for name in QUERY_PARAMS):
        raise AuthFailure("AccessDenied", _QUERY_MISSING)
    expires = parse_uint(params["Expires"])
    if expires is None:
        message = f"Invalid date (should be seconds since epoch): {params['Expires']}"
        raise AuthFailure("AccessDenied", message)
    if expires < now.timestamp():
        raise AuthFailure(
            "AccessDenied",
            "Request has expired",
            Expires=_iso(_EPOCH + timedelta(seconds=expires)),
            ServerTime=_iso(now),
        )
    longest = MAX_PRESIGN_EXPIRES + MAX_SKEW.total_seconds()
    if expires - now.timestamp() > longest:
        raise AuthFailure(
            "AccessDenied",
            f"Expires must be less than a week ({MAX_PRESIGN_EXPIRES} seconds) from now",
        )
    from_query = dict(query_headers)
    sent = [(n, v) for n, v in headers if _text(n).lower().startswith("x-amz-")]
    strings = [
        string_to_sign(
            method,
            _first(_header(headers, "content-md5"), from_query.get("content-md5")),
            _first(_header(headers, "content-type"), from_query.get("content-type")),
            params["Expires"],
            [*sent, *((n, v) for n, v in query_headers if n.startswith("x-amz-"))],
            resource,
        )
        for resource in _resources(raw_path, raw_query, bucket, (QUERY_AUTH_SIGNED,))
    ]
    # Base64 holds no space: a `+` left unescaped in the URL was read as one.
    signature = params["Signature"].replace(" ", "+")
    check_signature(lookup, params["AWSAccessKeyId"], strings, signature)
    return params["AWSAccessKeyId"]


def _first(header: str | None, query: str | None) -> str:
    """A header's value, else the query parameter standing for it, else empty."""
    return header if header is not None else query or ""
