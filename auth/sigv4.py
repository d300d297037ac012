"""AWS Signature Version 4 verification for S3: header auth, presigned URLs, aws-chunked.

Pure logic, no I/O: the ASGI layer hands in the request pieces as received (raw path and
query bytes, header pairs; bytes are read as UTF-8 with surrogateescape so the canonical
request hashes exactly the wire bytes) and gets a `Verified` result or an `AuthFailure`
with the S3 error code AWS would answer. Messages never carry secrets or signatures.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from functools import lru_cache
from typing import Any
from urllib.parse import quote, unquote_to_bytes

from shoal.auth.numbers import parse_int

ALGORITHM = "AWS4-HMAC-SHA256"
SERVICE = "s3"
TERMINATOR = "aws4_request"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
STREAMING_PAYLOAD = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"
STREAMING_PAYLOAD_TRAILER = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER"
STREAMING_UNSIGNED_TRAILER = "STREAMING-UNSIGNED-PAYLOAD-TRAILER"
SIGNED_STREAMING = (STREAMING_PAYLOAD, STREAMING_PAYLOAD_TRAILER)
PAYLOAD_MODES = (UNSIGNED_PAYLOAD, *SIGNED_STREAMING, STREAMING_UNSIGNED_TRAILER)
MAX_SKEW = timedelta(minutes=15)
MAX_PRESIGN_EXPIRES = 604800  # seconds: seven days, as AWS allows
_AMZ_DATE_FORMAT = "%Y%m%dT%H%M%SZ"
_HEX64 = re.compile(r"[0-9a-f]{64}")
# ASCII digits only: `\d` would take Arabic-Indic or fullwidth digits that strptime reads too.
_SCOPE_DATE = re.compile(r"[0-9]{8}")
_AMZ_DATE = re.compile(r"[0-9]{8}T[0-9]{6}Z")
# A path byte that must be escaped: outside unreserved and `/`, or a `%` not starting %XX.
_PATH_UNSAFE = re.compile(rb"[^A-Za-z0-9\-_.~/%]|%(?![0-9A-Fa-f]{2})")

Text = str | bytes
Header = tuple[Text, Text]
CredentialLookup = Callable[[str], str | None]


class AuthFailure(Exception):
    """A refused request: `code` is the S3 error code, `fields` extra XML elements."""

    STATUS = {
        "AuthorizationHeaderMalformed": 400,
        "AuthorizationQueryParametersError": 400,
        "InvalidArgument": 400,
        "InvalidRequest": 400,
        "XAmzContentSHA256Mismatch": 400,
    }

    def __init__(self, code: str, message: str, **fields: str) -> None:
        message = _xml_safe(message)
        super().__init__(message)
        self.code = code
        self.message = message
        self.fields = {name: _xml_safe(value) for name, value in fields.items()}

    @property
    def status(self) -> int:
        """HTTP status AWS uses for this code (403 unless listed as a client error)."""
        return self.STATUS.get(self.code, 403)


# What XML 1.0 cannot carry, even as a character reference: controls, lone surrogates
# (undecodable request bytes, read with surrogateescape), U+FFFE/U+FFFF. (As app.xml
# spells it: the negated class of the allowed ranges took 9 ms to compile at start-up.)
_NOT_XML = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def _xml_safe(text: str) -> str:
    """Client text echoed in an error (an access key, a credential part) made sendable:
    clients fail to parse an error document holding `&#xdcff;` or a raw control byte."""
    return _NOT_XML.sub("\ufffd", text)


@dataclass(frozen=True)
class Scope:
    """The credential scope `date/region/service/aws4_request`."""

    date: str
    region: str
    service: str = SERVICE

    def __str__(self) -> str:
        return f"{self.date}/{self.region}/{self.service}/{TERMINATOR}"


@dataclass(frozen=True)
class Verified:
    """What a verified request proved; enough to check the chunks of a streaming body."""

    access_key: str
    signing_key: bytes = field(repr=False)
    scope: Scope
    amz_date: str  # the request time as signed, ISO 8601 basic
    request_time: datetime
    signature: str  # the seed signature for aws-chunked bodies
    payload_hash: str  # hex SHA-256, UNSIGNED-PAYLOAD or a STREAMING-* mode, as sent
    signed_headers: tuple[str, ...]
    presigned: bool = False


def _text(value: Text) -> str:
    return value.decode("utf-8", "surrogateescape") if isinstance(value, bytes) else value


def _raw(value: Text) -> bytes:
    return value if isinstance(value, bytes) else value.encode("utf-8", "surrogateescape")


def _sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _hmac(key: bytes, msg: str) -> bytes:
    """HMAC-SHA256 holding the GIL. `hmac.digest` lets go of it around OpenSSL's call
    whatever the size, and the event loop then waits for a worker thread to hand it
    back: beside a thread erasure-coding 4 MiB chunks (pyeclib holds the GIL for each)
    a call took 8.3 ms at p90, against 1.8 µs this way. An `hmac.new` object lets go
    only from 2 KiB."""
    return hmac.new(key, msg.encode("utf-8", "surrogateescape"), hashlib.sha256).digest()


@lru_cache(maxsize=256)
def signing_key(secret: str, date: str, region: str, service: str = SERVICE) -> bytes:
    """Derive the SigV4 signing key; cached since it only changes daily per credential."""
    key = _hmac(("AWS4" + secret).encode("utf-8"), date)
    return _hmac(_hmac(_hmac(key, region), service), TERMINATOR)


def sign(key: bytes, string_to_sign: str) -> str:
    """Hex HMAC-SHA256 of a string to sign."""
    return _hmac(key, string_to_sign).hex()


def canonical_uri(raw_path: Text) -> str:
    """The path as sent (S3 signs it once-encoded and unnormalised, as botocore's
    S3SigV4Auth does): `%XX` escapes kept, other unsafe bytes (AWS's `$` example) escaped."""
    path = _PATH_UNSAFE.sub(lambda m: b"%%%02X" % m[0][0], _raw(raw_path) or b"/")
    return path.decode("ascii")


def _uri_encode(data: bytes) -> str:
    return quote(data, safe="-_.~")


def parse_query(raw_query: Text) -> list[tuple[bytes, bytes]]:
    """Split a raw query string into decoded (name, value) byte pairs, in order.

    `+` means a space, as the app's query parsing (Starlette, parse_qsl) reads it: the
    signature must bind what handlers see, or `%2B` signed could be replayed as `+`.
    """
    pairs = []
    for part in _raw(raw_query).replace(b"+", b" ").split(b"&"):
        if part:
            name, _, value = part.partition(b"=")
            pairs.append((unquote_to_bytes(name), unquote_to_bytes(value)))
    return pairs


def canonical_query(pairs: Iterable[tuple[bytes, bytes]], exclude: str = "") -> str:
    """Every parameter URI-encoded, sorted by encoded name then value; `name=` if empty."""
    encoded = sorted(
        (_uri_encode(name), _uri_encode(value)) for name, value in pairs if name != _raw(exclude)
    )
    return "&".join(f"{name}={value}" for name, value in encoded)


#: Header values (text, arrival order) by lower-case name: built once per request.
HeaderTable = dict[str, list[str]]


def header_table(headers: Sequence[Header] | HeaderTable) -> HeaderTable:
    """The request's headers as a table (one pass instead of one per header looked up)."""
    if isinstance(headers, dict):
        return headers
    table: HeaderTable = {}
    for name, value in headers:
        key = _text(name).lower()
        found = table.get(key)
        if found is None:
            table[key] = [_text(value)]
        else:
            found.append(_text(value))
    return table


def canonical_headers(headers: Sequence[Header] | HeaderTable, signed: Sequence[str]) -> str:
    """`name:value\\n` for each signed header: values trimmed, whitespace runs collapsed,
    repeated headers comma-joined in arrival order."""
    table = header_table(headers)
    lines = []
    for name in signed:
        values = table.get(name, ())
        lines.append(f"{name}:{','.join(' '.join(v.split()) for v in values)}\n")
    return "".join(lines)


def canonical_request(
    method: str,
    raw_path: Text,
    query: str,
    headers: Sequence[Header] | HeaderTable,
    signed: Sequence[str],
    payload_hash: str,
) -> str:
    """The SigV4 canonical request for S3."""
    lines = (method.upper(), canonical_uri(raw_path), query, canonical_headers(headers, signed))
    return "\n".join((*lines, ";".join(signed), payload_hash))


def string_to_sign(amz_date: str, scope: Scope, canonical: str) -> str:
    """The SigV4 string to sign for a request."""
    digest = _sha256_hex(canonical.encode("utf-8", "surrogateescape"))
    return f"{ALGORITHM}\n{amz_date}\n{scope}\n{digest}"


def _header(headers: Sequence[Header] | HeaderTable, name: str) -> str | None:
    found = header_table(headers).get(name)
    return ",".join(found) if found else None


def _query_error(message: str) -> AuthFailure:
    return AuthFailure("AuthorizationQueryParametersError", message)


def _malformed(presigned: bool, detail: str, **fields: str) -> AuthFailure:
    if presigned:
        message = f"Error parsing the X-Amz-Credential parameter; {detail}"
        return AuthFailure("AuthorizationQueryParametersError", message, **fields)
    message = f"The authorization header is malformed; {detail}"
    return AuthFailure("AuthorizationHeaderMalformed", message, **fields)


@lru_cache(maxsize=256)
def _parse_credential(credential: str, region: str, presigned: bool) -> tuple[str, Scope]:
    """Split `AK/date/region/service/aws4_request` and check it names this endpoint.
    Cached (a refusal is not): a client's requests of one day all name the same."""
    parts = credential.rsplit("/", 4)
    if len(parts) != 5 or not parts[0] or not _SCOPE_DATE.fullmatch(parts[1]):
        raise _malformed(
            presigned,
            'the Credential is mal-formed; expecting "<YOUR-AKID>/YYYYMMDD/REGION/SERVICE/'
            'aws4_request".',
        )
    access_key, date, cred_region, service, terminator = parts
    if cred_region != region:
        detail = f"the region '{cred_region}' is wrong; expecting '{region}'"
        raise _malformed(presigned, detail, Region=region)
    if service != SERVICE:
        raise _malformed(
            presigned, f'incorrect service "{service}". This endpoint belongs to "{SERVICE}".'
        )
    if terminator != TERMINATOR:
        raise _malformed(
            presigned,
            f'incorrect terminal "{terminator}". This endpoint uses "{TERMINATOR}".',
        )
    return access_key, Scope(date, region, service)


def parse_authorization(value: str, region: str) -> tuple[str, Scope, tuple[str, ...], str]:
    """Parse `AWS4-HMAC-SHA256 Credential=..., SignedHeaders=..., Signature=...` strictly."""
    algorithm, _, rest = value.strip().partition(" ")
    if algorithm != ALGORITHM:
        raise AuthFailure("InvalidArgument", "Unsupported Authorization Type")
    parts: dict[str, str] = {}
    for item in rest.split(","):
        key, sep, val = item.strip().partition("=")
        if not sep or key in parts:
            raise _malformed(False, f'the authorization component "{item.strip()}" is malformed.')
        parts[key] = val
    if set(parts) != {"Credential", "SignedHeaders", "Signature"}:
        raise _malformed(
            False,
            "the authorization header requires three components: "
            "Credential, SignedHeaders, and Signature.",
        )
    access_key, scope = _parse_credential(parts["Credential"], region, presigned=False)
    signed = tuple(parts["SignedHeaders"].split(";"))
    if not all(signed):
        raise _malformed(False, "the SignedHeaders component is malformed.")
    return access_key, scope, signed, parts["Signature"]


@lru_cache(maxsize=64)
def _parse_amz_date(value: str) -> datetime | None:
    """`YYYYMMDDTHHMMSSZ` exactly, ASCII digits only (strptime would also take one-digit
    fields and non-ASCII digits; it is also ~20 times slower). Cached: every request of
    the same second carries the same stamp."""
    if not _AMZ_DATE.fullmatch(value):
        return None
    try:
        return datetime(
            int(value[0:4]),
            int(value[4:6]),
            int(value[6:8]),
            int(value[9:11]),
            int(value[11:13]),
            int(value[13:15]),
            tzinfo=UTC,
        )
    except ValueError:
        return None


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _check_unsigned_headers(headers: Sequence[Header] | HeaderTable, signed: Sequence[str]) -> None:
    """Refuse unsigned `x-amz-*` headers (else anyone holding a signed request could add
    x-amz-copy-source or x-amz-acl) and an unsigned host, as AWS does (AccessDenied)."""
    missing = [n for n in header_table(headers) if n.startswith("x-amz-") and n not in signed]
    if "host" not in signed:
        missing.append("host")
    if missing:
        raise AuthFailure(
            "AccessDenied",
            "There were headers present in the request which were not signed",
            HeadersNotSigned=", ".join(sorted(missing)),
        )


def _check_signature(expected: str, given: str) -> None:
    if not hmac.compare_digest(expected.encode(), given.encode("utf-8", "replace")):
        raise AuthFailure(
            "SignatureDoesNotMatch",
            "The request signature we calculated does not match the signature you provided. "
            "Check your key and signing method.",
        )


def _request_time(headers: Sequence[Header] | HeaderTable) -> tuple[str, datetime]:
    """The signed request time: `x-amz-date`, else the `Date` header (as ISO 8601 basic)."""
    amz_date = _header(headers, "x-amz-date")
    if amz_date is not None:
        moment = _parse_amz_date(amz_date)
    else:
        try:
            moment = parsedate_to_datetime(_header(headers, "date") or "")
        except (TypeError, ValueError):
            moment = None
        if moment is not None:
            moment = moment.replace(tzinfo=moment.tzinfo or UTC)
            try:  # an offset can move year 9999 past the last date Python represents
                amz_date = moment.astimezone(UTC).strftime(_AMZ_DATE_FORMAT)
            except OverflowError:
                moment = None
    if moment is None or amz_date is None:
        message = "AWS authentication requires a valid Date or x-amz-date header"
        raise AuthFailure("AccessDenied", message)
    return amz_date, moment


def _check_scope_date(scope: Scope, amz_date: str, presigned: bool) -> None:
    if scope.date != amz_date[:8]:
        raise _malformed(
            presigned,
            f'Invalid credential date "{scope.date}". This date is not the same as '
            f'X-Amz-Date: "{amz_date[:8]}".',
        )


def _signing_key_if_valid(
    lookup: CredentialLookup, access_key: str, scope: Scope, to_sign: str, signature: str
) -> bytes:
    """Look the secret up, derive the key and compare signatures (constant time)."""
    secret = lookup(access_key)
    if secret is None:
        message = "The AWS Access Key Id you provided does not exist in our records."
        raise AuthFailure("InvalidAccessKeyId", message, AWSAccessKeyId=access_key)
    key = signing_key(secret, scope.date, scope.region, scope.service)
    _check_signature(sign(key, to_sign), signature)
    return key


def verify_header_auth(
    *,
    method: str,
    raw_path: Text,
    raw_query: Text,
    headers: Sequence[Header] | HeaderTable,
    lookup: CredentialLookup,
    region: str,
    now: datetime,
) -> Verified:
    """Verify a request signed with the Authorization header, before its body is read."""
    headers = header_table(headers)
    authorization = _header(headers, "authorization")
    if authorization is None:
        raise AuthFailure("AccessDenied", "Access Denied")
    access_key, scope, signed, signature = parse_authorization(authorization, region)
    amz_date, request_time = _request_time(headers)
    _check_scope_date(scope, amz_date, presigned=False)
    if abs(now - request_time) > MAX_SKEW:
        raise AuthFailure(
            "RequestTimeTooSkewed",
            "The difference between the request time and the current time is too large.",
            RequestTime=amz_date,
            ServerTime=_iso(now),
            MaxAllowedSkewMilliseconds=str(int(MAX_SKEW.total_seconds() * 1000)),
        )
    payload_hash = _header(headers, "x-amz-content-sha256")
    if payload_hash is None:
        message = "Missing required header for this request: x-amz-content-sha256"
        raise AuthFailure("InvalidRequest", message)
    if payload_hash not in PAYLOAD_MODES and not _HEX64.fullmatch(payload_hash):
        raise AuthFailure(
            "InvalidArgument",
            f"x-amz-content-sha256 must be {', '.join(PAYLOAD_MODES)} or a valid sha256 value.",
            ArgumentName="x-amz-content-sha256",
        )
    _check_unsigned_headers(headers, signed)
    query = canonical_query(parse_query(raw_query)) if raw_query else ""
    canonical = canonical_request(method, raw_path, query, headers, signed, payload_hash)
    to_sign = string_to_sign(amz_date, scope, canonical)
    key = _signing_key_if_valid(lookup, access_key, scope, to_sign, signature)
    return Verified(access_key, key, scope, amz_date, request_time, signature, payload_hash, signed)


_PRESIGN_PARAMS = ("Algorithm", "Credential", "Signature", "Date", "SignedHeaders", "Expires")


def verify_presigned(
    *,
    method: str,
    raw_path: Text,
    raw_query: Text,
    headers: Sequence[Header],
    lookup: CredentialLookup,
    region: str,
    now: datetime,
) -> Verified:
    """Verify a presigned URL (query-string auth) with its expiry enforced."""
    pairs = parse_query(raw_query)
    params: dict[str, str] = {}
    for name, value in pairs:
        if name.startswith(b"X-Amz-"):
            params.setdefault(_text(name), _text(value))
    if any(f"X-Amz-{name}" not in params for name in _PRESIGN_PARAMS):
        raise _query_error(
            "Query-string authentication version 4 requires the X-Amz-Algorithm, "
            "X-Amz-Credential, X-Amz-Signature, X-Amz-Date, X-Amz-SignedHeaders, "
            "and X-Amz-Expires parameters."
        )
    if params["X-Amz-Algorithm"] != ALGORITHM:
        raise _query_error(f'X-Amz-Algorithm only supports "{ALGORITHM}"')
    access_key, scope = _parse_credential(params["X-Amz-Credential"], region, presigned=True)
    amz_date = params["X-Amz-Date"]
    request_time = _parse_amz_date(amz_date)
    if request_time is None:
        raise _query_error("X-Amz-Date must be in the ISO8601 Long Format \"yyyyMMdd'T'HHmmss'Z'\"")
    _check_scope_date(scope, amz_date, presigned=True)
    expires = parse_int(params["X-Amz-Expires"])
    if expires is None:
        raise _query_error("X-Amz-Expires should be a number")
    if expires < 0:
        raise _query_error("X-Amz-Expires must be non-negative")
    if expires > MAX_PRESIGN_EXPIRES:
        raise _query_error("X-Amz-Expires must be less than a week (in seconds) that is 604800")
    # A URL dated in the future is refused beyond the clock skew tolerated for headers.
    if request_time - now > MAX_SKEW:
        raise AuthFailure("AccessDenied", "Request is not valid yet")
    if now > request_time + timedelta(seconds=expires):
        raise AuthFailure(
            "AccessDenied",
            "Request has expired",
            **{"X-Amz-Expires": str(expires)},
            Expires=_iso(request_time + timedelta(seconds=expires)),
            ServerTime=_iso(now),
        )
    signed = tuple(params["X-Amz-SignedHeaders"].split(";"))
    if not all(signed):
        raise _query_error("X-Amz-SignedHeaders is malformed")
    _check_unsigned_headers(headers, signed)
    # Presigned URLs do not sign the body unless the signer put a hash in the query.
    payload_hash = params.get("X-Amz-Content-Sha256", UNSIGNED_PAYLOAD)
    query = canonical_query(pairs, exclude="X-Amz-Signature")
    canonical = canonical_request(method, raw_path, query, headers, signed, payload_hash)
    to_sign = string_to_sign(amz_date, scope, canonical)
    signature = params["X-Amz-Signature"]
    key = _signing_key_if_valid(lookup, access_key, scope, to_sign, signature)
    return Verified(
        access_key, key, scope, amz_date, request_time, signature, payload_hash, signed, True
    )


def is_presigned(raw_query: Text) -> bool:
    """Whether a request carries query-string (presigned) SigV4 auth."""
    return any(name == b"X-Amz-Algorithm" for name, _ in parse_query(raw_query))


def verify_request(
    *,
    method: str,
    raw_path: Text,
    raw_query: Text,
    headers: Sequence[Header],
    lookup: CredentialLookup,
    region: str,
    now: datetime,
) -> Verified | None:
    """Verify whichever SigV4 form a request carries; None when it carries none (anonymous)."""
    presigned = is_presigned(raw_query)
    has_header = _header(headers, "authorization") is not None
    if presigned and has_header:
        raise AuthFailure(
            "InvalidArgument",
            "Only one auth mechanism allowed; only the X-Amz-Algorithm query parameter, "
            "Signature query string parameter or the Authorization header should be specified",
        )
    if not (presigned or has_header):
        return None
    verify = verify_presigned if presigned else verify_header_auth
    pieces: dict[str, Any] = dict(
        method=method, raw_path=raw_path, raw_query=raw_query, headers=headers
    )
    return verify(**pieces, lookup=lookup, region=region, now=now)


class ChunkVerifier:
    """Checks the chain of aws-chunked chunk signatures, then the trailer signature.

    Each chunk's signature covers the previous one, starting from the request's seed
    signature, so chunks cannot be dropped, reordered or altered.
    """

    def __init__(self, verified: Verified) -> None:
        if verified.payload_hash not in SIGNED_STREAMING:
            raise ValueError(f"{verified.payload_hash} bodies carry no chunk signatures")
        self._key = verified.signing_key
        self._prefix = f"{verified.amz_date}\n{verified.scope}\n"
        self.previous = verified.signature

    def verify_chunk(self, signature: str, data: bytes) -> None:
        """Verify one chunk (the final empty chunk included) and advance the chain."""
        self.verify_chunk_digest(signature, _sha256_hex(data))

    def verify_chunk_digest(self, signature: str, data_sha256: str) -> None:
        """As `verify_chunk`, for a chunk whose hex SHA-256 was computed while streaming."""
        to_sign = (
            f"{ALGORITHM}-PAYLOAD\n{self._prefix}{self.previous}\n{EMPTY_SHA256}\n{data_sha256}"
        )
        _check_signature(sign(self._key, to_sign), signature)
        self.previous = signature

    def verify_trailer(self, trailers: Sequence[Header], signature: str) -> None:
        """Verify `x-amz-trailer-signature` over the trailing headers (`name:value\\n` each)."""
        lines = "".join(
            f"{_text(name).strip().lower()}:{_text(value).strip()}\n" for name, value in trailers
        )
        digest = _sha256_hex(lines.encode("utf-8", "surrogateescape"))
        to_sign = f"{ALGORITHM}-TRAILER\n{self._prefix}{self.previous}\n{digest}"
        _check_signature(sign(self._key, to_sign), signature)
        self.previous = signature
