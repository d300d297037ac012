"""SigV4 parsing and canonicalisation (auth/sigv4.py, auth/seam.py), fuzzed.

Whatever the client sends as Authorization header, presigned query, Date / X-Amz-Date,
path, query or header bytes, or aws-chunked signatures, verification ends in a `Verified`
or an `AuthFailure` carrying an S3 code, never another exception. Requests signed by our
own signer (auth/signer.py) and by botocore for random paths, queries and headers verify,
so the canonicalisation is deterministic and agrees with the SDK.

Findings, each kept as a named example below:
- a `Date` header whose offset moves 9999-12-31 past year 9999 raised OverflowError;
- an undecodable access key (or credential part) was echoed as `&#xdcff;`, which no
  client can parse; error text is now XML-safe;
- `X-Amz-Expires`, the credential date and `X-Amz-Date` took Arabic-Indic digits (`\\d`,
  strptime); `X-Amz-Date` also took one-digit fields (`20260101T1234Z` style).
"""

from __future__ import annotations

import hmac
import string
from datetime import UTC, datetime, timedelta
from urllib.parse import quote, urlencode, urlsplit
from xml.etree import ElementTree
from xml.sax.saxutils import escape

import pytest
from botocore.auth import S3SigV4Auth, S3SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from hypothesis import example, given
from hypothesis import strategies as st

from shoal.auth import sigv4
from shoal.auth.seam import Authenticator
from shoal.auth.signer import signed_headers
from shoal.auth.sigv4 import (
    EMPTY_SHA256,
    STREAMING_PAYLOAD,
    UNSIGNED_PAYLOAD,
    AuthFailure,
    ChunkVerifier,
    Scope,
    Verified,
    canonical_headers,
    canonical_query,
    canonical_uri,
    parse_authorization,
    parse_query,
    sign,
    signing_key,
    verify_header_auth,
    verify_presigned,
    verify_request,
)

AK, SK, REGION = "FUZZKEY", "fuzz/secret+key", "us-east-1"
HOST = "127.0.0.1:9000"
NOW = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
LOOKUP = {AK: SK}.get
AMZ_NOW = NOW.strftime("%Y%m%dT%H%M%SZ")
ARABIC_DATE = "\u0662\u0660\u0662\u0666\u0660\u0663\u0660\u0661"  # 20260301

# Client text: ASCII, separators SigV4 cares about, non-ASCII digits, controls, surrogates.
TRICKY = "=,;/ \t\r\n%+&?*\x00\x7f\u00b2\u0663\uff17\u00a0\u2028\udcff\U0001f600"
text = st.text(alphabet=st.sampled_from(string.printable + TRICKY), max_size=60)
raw_bytes = st.binary(max_size=60)
header_name = st.sampled_from(
    ["host", "x-amz-date", "date", "authorization", "x-amz-content-sha256", "x-amz-meta-a",
     "Range", "content-md5", "X-Amz-Acl", "x-amz-security-token"]
) | text  # fmt: skip
header = st.tuples(header_name | raw_bytes, text | raw_bytes)
now = st.datetimes(
    min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=st.just(UTC)
)


def _outcome(call: object) -> Verified | AuthFailure:
    """Run a verification: a result or the module's own error, nothing else escapes."""
    try:
        return call()  # type: ignore[operator]
    except AuthFailure as failure:
        assert failure.code and 400 <= failure.status < 500
        _assert_sendable_as_xml(failure)
        return failure


def _assert_sendable_as_xml(failure: AuthFailure) -> None:
    """The error document echoes the message and fields: they must parse back as XML."""
    texts = [failure.message, *failure.fields.values()]
    document = "<Error>" + "".join(f"<F>{escape(t)}</F>" for t in texts) + "</Error>"
    parsed = ElementTree.fromstring(document.encode("utf-8"))
    assert [f.text or "" for f in parsed] == texts


def _credential(date: str = AMZ_NOW[:8], key: str = AK) -> str:
    return f"{key}/{date}/{REGION}/s3/aws4_request"


def _authorization(credential: str, signed: str, signature: str) -> str:
    components = f"Credential={credential}, SignedHeaders={signed}, Signature={signature}"
    return f"AWS4-HMAC-SHA256 {components}"


# Near-valid Authorization values: each component drawn from a valid one or from garbage.
authorization_value = (
    st.builds(
        _authorization,
        st.sampled_from([_credential(), _credential(ARABIC_DATE), "", "a/b/c/d/e"]) | text,
        st.sampled_from(["host;x-amz-date", ";", "host;;x", ""]) | text,
        st.sampled_from(["0" * 64, ""]) | text,
    )
    | text
)


@given(value=authorization_value)
@example(value=_authorization(_credential(ARABIC_DATE), "host", "0" * 64))
def test_authorization_header_parses_or_is_malformed(value: str) -> None:
    result = _outcome(lambda: parse_authorization(value, REGION))
    if not isinstance(result, AuthFailure):
        access_key, scope, signed, _signature = result
        assert access_key and all(signed)
        assert scope.date.isascii() and scope.date.isdigit() and len(scope.date) == 8


def test_credential_date_is_ascii_digits_only() -> None:
    """Regression: `\\d{8}` took Arabic-Indic digits in the credential scope date."""
    value = _authorization(_credential(ARABIC_DATE), "host", "0" * 64)
    with pytest.raises(AuthFailure) as failure:
        parse_authorization(value, REGION)
    assert failure.value.code == "AuthorizationHeaderMalformed"


@given(
    method=st.sampled_from(["GET", "PUT", "POST", "DELETE", "HEAD"]) | text,
    path=raw_bytes | text,
    query=raw_bytes | text,
    headers=st.lists(header, max_size=8),
    authorization=authorization_value,
    moment=now,
)
@example(
    method="GET",
    path=b"/b/k",
    query=b"",
    headers=[("date", "Mon, 31 Dec 9999 23:59:59 -0100"), ("host", HOST)],
    authorization=_authorization(_credential("99991231"), "host", "0" * 64),
    moment=NOW,
).via("OverflowError from a Date header past year 9999")
def test_header_auth_never_raises_anything_else(
    method: str, path: bytes, query: bytes, headers: list, authorization: str, moment: datetime
) -> None:
    request = dict(method=method, raw_path=path, raw_query=query, lookup=LOOKUP, region=REGION)
    pairs = [("authorization", authorization), *headers]
    _outcome(lambda: verify_header_auth(**request, headers=pairs, now=moment))
    _outcome(lambda: verify_request(**request, headers=pairs, now=moment))
    seam = Authenticator({AK: SK}, REGION)
    raw = dict(method=method, raw_path=sigv4._raw(path), raw_query=sigv4._raw(query))
    _outcome(lambda: seam.authenticate(**raw, headers=pairs, now=moment))


@pytest.mark.parametrize(
    "date",
    [
        "Mon, 31 Dec 9999 23:59:59 -0100",  # OverflowError before the fix
        "Fri, 01 Jan 0001 00:00:00 +2359",
        "",
        "32 Foo 2026",
    ],
)
def test_date_header_out_of_range_is_access_denied(date: str) -> None:
    headers = [("date", date), ("host", HOST), ("x-amz-content-sha256", EMPTY_SHA256)]
    authorization = _authorization(_credential(), "host", "0" * 64)
    with pytest.raises(AuthFailure) as failure:
        verify_header_auth(
            method="GET",
            raw_path=b"/",
            raw_query=b"",
            headers=[("authorization", authorization), *headers],
            lookup=LOOKUP,
            region=REGION,
            now=NOW,
        )
    assert failure.value.code in ("AccessDenied", "AuthorizationHeaderMalformed")


@pytest.mark.parametrize(
    "amz_date", [ARABIC_DATE + "T120000Z", "20260301T1200Z", "20260301T12000Z", "20260301t120000z"]
)
def test_x_amz_date_is_the_exact_basic_format(amz_date: str) -> None:
    """Regression: strptime read Arabic-Indic digits and one-digit fields."""
    assert sigv4._parse_amz_date(amz_date) is None
    assert sigv4._parse_amz_date("20260301T120000Z") == NOW


@pytest.mark.parametrize("access_key", [b"\xff\xfe", "\u00e9".encode(), b"a]]>&<"])
def test_an_echoed_access_key_is_sendable_xml(access_key: bytes) -> None:
    """Regression: an undecodable access key came back as `&#xdcff;` (clients cannot parse
    that error document); what XML cannot hold is now U+FFFD."""
    credential = access_key + f"/{AMZ_NOW[:8]}/{REGION}/s3/aws4_request".encode()
    authorization = (
        b"AWS4-HMAC-SHA256 Credential=" + credential
        + b", SignedHeaders=host;x-amz-content-sha256;x-amz-date, Signature=" + b"0" * 64
    )  # fmt: skip
    headers = [
        (b"host", HOST.encode()),
        (b"x-amz-date", AMZ_NOW.encode()),
        (b"x-amz-content-sha256", UNSIGNED_PAYLOAD.encode()),
        (b"authorization", authorization),
    ]
    with pytest.raises(AuthFailure) as failure:
        verify_header_auth(
            method="GET",
            raw_path=b"/",
            raw_query=b"",
            headers=headers,
            lookup=LOOKUP,
            region=REGION,
            now=NOW,
        )
    assert failure.value.code == "InvalidAccessKeyId"
    _assert_sendable_as_xml(failure.value)


# ------------------------------------------------------------------- presigned URLs


def _presign_query(params: dict[str, str], extra: list[tuple[str, str]]) -> bytes:
    """The query as a client would escape it (lone surrogates go out as their raw bytes)."""
    pairs = [*params.items(), *extra]
    return urlencode([(_b(n), _b(v)) for n, v in pairs]).encode()


def _b(value: str) -> bytes:
    return value.encode("utf-8", "surrogatepass")


presign_params = st.fixed_dictionaries(
    {},
    optional={
        "X-Amz-Algorithm": st.sampled_from(["AWS4-HMAC-SHA256"]) | text,
        "X-Amz-Credential": st.sampled_from([_credential()]) | text,
        "X-Amz-Date": st.sampled_from([AMZ_NOW, "99991231T235959Z", "00010101T000000Z"]) | text,
        "X-Amz-Expires": st.sampled_from(
            [
                "300",
                "604800",
                "604801",
                "-1",
                "\u0663\u0660\u0660",
                "²",
                "9" * 5000,
                "+5",
                " 5",
                "0x10",
                "1_0",
            ]
        )
        | text,
        "X-Amz-SignedHeaders": st.sampled_from(["host", ";", ""]) | text,
        "X-Amz-Signature": st.sampled_from(["0" * 64]) | text,
        "X-Amz-Content-Sha256": text,
    },
)


@given(
    params=presign_params,
    extra=st.lists(st.tuples(text, text), max_size=4),
    headers=st.lists(header, max_size=4),
    moment=now,
)
@example(
    params={
        "X-Amz-Algorithm": "AWS4-HMAC-SHA256",
        "X-Amz-Credential": _credential(),
        "X-Amz-Date": AMZ_NOW,
        "X-Amz-Expires": "9" * 5000,
        "X-Amz-SignedHeaders": "host",
        "X-Amz-Signature": "0" * 64,
    },
    extra=[],
    headers=[("host", HOST)],
    moment=NOW,
).via("5,000-digit X-Amz-Expires")
def test_presigned_never_raises_anything_else(
    params: dict[str, str], extra: list, headers: list, moment: datetime
) -> None:
    query = _presign_query(params, extra)
    request = dict(method="GET", raw_path=b"/b/k", raw_query=query, headers=headers)
    _outcome(lambda: verify_presigned(**request, lookup=LOOKUP, region=REGION, now=moment))
    _outcome(lambda: verify_request(**request, lookup=LOOKUP, region=REGION, now=moment))


@pytest.mark.parametrize(
    "expires", ["\u0663\u0660\u0660", "\uff13\uff10\uff10", "9" * 5000, "+300", "3_00"]
)
def test_presigned_expires_is_an_ascii_number(expires: str) -> None:
    """Regression: `\\d` + int() took Arabic-Indic digits; the rule now lives in numbers.py."""
    params = {
        "X-Amz-Algorithm": "AWS4-HMAC-SHA256",
        "X-Amz-Credential": _credential(),
        "X-Amz-Date": AMZ_NOW,
        "X-Amz-Expires": expires,
        "X-Amz-SignedHeaders": "host",
        "X-Amz-Signature": "0" * 64,
    }
    with pytest.raises(AuthFailure) as failure:
        verify_presigned(
            method="GET",
            raw_path=b"/b/k",
            raw_query=_presign_query(params, []),
            headers=[("host", HOST)],
            lookup=LOOKUP,
            region=REGION,
            now=NOW,
        )
    assert failure.value.code == "AuthorizationQueryParametersError"
    assert "X-Amz-Expires should be a number" in failure.value.message


# ------------------------------------------------------------------- canonicalisation

# Object keys and query values as SDKs send them: any Unicode text (no surrogates).
key_text = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=40)
meta_value = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=30)


# Header names as an HTTP parser lets them through: RFC 9110 token characters.
token = st.text(string.ascii_letters + string.digits + "!#$%&'*+-.^_`|~", min_size=1, max_size=12)


@given(path=raw_bytes, query=raw_bytes, headers=st.lists(st.tuples(token, raw_bytes)))
def test_canonical_pieces_are_total_and_ascii_where_aws_says(
    path: bytes, query: bytes, headers: list
) -> None:
    uri = canonical_uri(path)
    assert uri.isascii() and (uri.startswith("/") or not path.startswith(b"/"))
    pairs = parse_query(query)
    canonical = canonical_query(pairs)
    assert canonical.isascii()
    assert canonical_query(list(reversed(pairs))) == canonical  # order-independent
    names = sorted({sigv4._text(n).lower() for n, _ in headers})
    assert canonical_headers(headers, names).count("\n") == len(names)


@given(
    key=key_text,
    params=st.lists(st.tuples(key_text, st.text(max_size=20)), max_size=4),
    meta=st.dictionaries(
        st.text(string.ascii_lowercase + string.digits + "-", min_size=1, max_size=10),
        meta_value,
        max_size=3,
    ),
    method=st.sampled_from(["GET", "PUT", "DELETE", "HEAD", "POST"]),
)
def test_our_signer_and_verifier_agree(key: str, params: list, meta: dict, method: str) -> None:
    path = "/bucket/" + quote(key.encode("utf-8"), safe="/~")
    query = urlencode([(n.encode(), v.encode()) for n, v in params])
    extra = {f"x-amz-meta-{name}": value for name, value in meta.items()}
    headers = signed_headers(method, path, HOST, AK, SK, REGION, NOW, query=query, extra=extra)
    verified = verify_header_auth(
        method=method,
        raw_path=path.encode(),
        raw_query=query.encode(),
        headers=list(headers.items()),
        lookup=LOOKUP,
        region=REGION,
        now=NOW,
    )
    assert verified.access_key == AK


@given(
    key=key_text,
    params=st.lists(st.tuples(key_text, st.text(max_size=20)), max_size=4),
    presigned=st.booleans(),
)
def test_botocore_signed_random_requests_verify(key: str, params: list, presigned: bool) -> None:
    url = f"http://{HOST}/bucket/{quote(key.encode('utf-8'), safe='/~')}"
    if params:
        # As botocore's serializer escapes them (`%20`, never `+`, which means a space here).
        url += "?" + urlencode([(n.encode(), v.encode()) for n, v in params], quote_via=quote)
    request = AWSRequest(method="GET", url=url)
    credentials = Credentials(AK, SK)
    if presigned:
        S3SigV4QueryAuth(credentials, "s3", REGION, expires=300).add_auth(request)
    else:
        S3SigV4Auth(credentials, "s3", REGION).add_auth(request)
    prepared = request.prepare()
    parts = urlsplit(prepared.url)
    headers = [("host", parts.netloc), *prepared.headers.items()]
    verified = verify_request(
        method="GET",
        raw_path=parts.path.encode(),
        raw_query=parts.query.encode(),
        headers=headers,
        lookup=LOOKUP,
        region=REGION,
        now=datetime.now(UTC) + timedelta(seconds=1),
    )
    assert verified is not None and verified.presigned == presigned


# ------------------------------------------------------------------- aws-chunked signatures


def _verified() -> Verified:
    key = signing_key(SK, AMZ_NOW[:8], REGION)
    return Verified(
        AK, key, Scope(AMZ_NOW[:8], REGION), AMZ_NOW, NOW, "a" * 64, STREAMING_PAYLOAD, ("host",)
    )


@given(
    chunks=st.lists(st.tuples(text | st.just(""), raw_bytes), max_size=4),
    trailers=st.lists(st.tuples(text | raw_bytes, text | raw_bytes), max_size=3),
    trailer_signature=text,
)
def test_chunk_signatures_refuse_garbage_with_auth_failure(
    chunks: list, trailers: list, trailer_signature: str
) -> None:
    verifier = ChunkVerifier(_verified())
    for signature, data in chunks:
        with pytest.raises(AuthFailure):
            verifier.verify_chunk(signature, data)
    with pytest.raises(AuthFailure):
        verifier.verify_trailer(trailers, trailer_signature)


@given(chunks=st.lists(raw_bytes, max_size=5))
def test_a_correct_chain_of_chunk_signatures_verifies(chunks: list) -> None:
    verified = _verified()
    verifier, previous = ChunkVerifier(verified), verified.signature
    for data in [*chunks, b""]:
        to_sign = "\n".join(
            [
                "AWS4-HMAC-SHA256-PAYLOAD",
                verified.amz_date,
                str(verified.scope),
                previous,
                EMPTY_SHA256,
                sigv4._sha256_hex(data),
            ]
        )
        previous = sign(verified.signing_key, to_sign)
        verifier.verify_chunk(previous, data)
    assert verifier.previous == previous


@given(st.binary(max_size=200), st.text(max_size=3000))
def test_hmac_is_hmac_sha256(key: bytes, message: str) -> None:
    """The GIL-keeping HMAC (sigv4._hmac) is plain HMAC-SHA256, for keys longer and
    shorter than a block and messages either side of hashlib's 2 KiB threshold."""
    raw = message.encode("utf-8", "surrogateescape")
    assert sigv4._hmac(key, message) == hmac.digest(key, raw, "sha256")
