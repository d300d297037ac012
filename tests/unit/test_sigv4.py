"""SigV4 verification: AWS's published S3 examples, then round trips with botocore itself.

The published signatures come from the S3 API reference ("Signature Calculations for the
Authorization Header" single-chunk and multiple-chunk examples, and "Authenticating
Requests: Using Query Parameters"). The trailer signature vector is the one AWS's own CRT
signer tests use for the same streaming request (trailers first/second/third).
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

import boto3
import pytest
from botocore.auth import S3SigV4Auth, S3SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials

from shoal.auth import sigv4
from shoal.auth.sigv4 import AuthFailure, ChunkVerifier, verify_header_auth, verify_presigned

AK = "AKIAIOSFODNN7EXAMPLE"
SK = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
REGION = "us-east-1"
EXAMPLE_TIME = datetime(2013, 5, 24, tzinfo=UTC)
HOST = ("Host", "examplebucket.s3.amazonaws.com")
KEYS = {AK: SK}.get


def _authorization(signed: str, signature: str) -> tuple[str, str]:
    credential = f"{AK}/20130524/{REGION}/s3/aws4_request"
    value = f"AWS4-HMAC-SHA256 Credential={credential},SignedHeaders={signed},Signature={signature}"
    return ("Authorization", value)


def _verify_example(method: str, path: bytes, query: bytes, headers: list) -> sigv4.Verified:
    return verify_header_auth(
        method=method,
        raw_path=path,
        raw_query=query,
        headers=headers,
        lookup=KEYS,
        region=REGION,
        now=EXAMPLE_TIME,
    )


# --- AWS's published examples -------------------------------------------------------


def test_aws_example_get_object_with_range() -> None:
    headers = [
        HOST,
        ("Range", "bytes=0-9"),
        ("x-amz-content-sha256", sigv4.EMPTY_SHA256),
        ("x-amz-date", "20130524T000000Z"),
    ]
    signature = "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
    signed = "host;range;x-amz-content-sha256;x-amz-date"
    authorization = _authorization(signed, signature)
    verified = _verify_example("GET", b"/test.txt", b"", [*headers, authorization])
    assert verified.access_key == AK
    assert str(verified.scope) == "20130524/us-east-1/s3/aws4_request"
    assert verified.signature == signature
    canonical = sigv4.canonical_request(
        "GET", b"/test.txt", "", headers, signed.split(";"), sigv4.EMPTY_SHA256
    )
    digest = hashlib.sha256(canonical.encode()).hexdigest()
    assert digest == "7344ae5b7ee6c3e7e6b0fe0640412a37625d1fbfff95c48bbb2dc43964946972"


def test_aws_example_put_object_encodes_the_dollar_sent_raw() -> None:
    payload = hashlib.sha256(b"Welcome to Amazon S3.").hexdigest()
    headers = [
        HOST,
        ("Date", "Fri, 24 May 2013 00:00:00 GMT"),
        ("x-amz-date", "20130524T000000Z"),
        ("x-amz-storage-class", "REDUCED_REDUNDANCY"),
        ("x-amz-content-sha256", payload),
    ]
    signed = "date;host;x-amz-content-sha256;x-amz-date;x-amz-storage-class"
    signature = "98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd"
    for path in (b"/test$file.text", b"/test%24file.text"):
        _verify_example("PUT", path, b"", [*headers, _authorization(signed, signature)])
    assert sigv4.canonical_uri(b"/test$file.text") == "/test%24file.text"


LIST_SIGNATURE = "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7"


@pytest.mark.parametrize(
    ("query", "signature"),
    [
        (b"lifecycle", "fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543"),
        (b"max-keys=2&prefix=J", LIST_SIGNATURE),
        (b"prefix=J&max-keys=2", LIST_SIGNATURE),  # order as sent does not matter
    ],
)
def test_aws_example_bucket_queries(query: bytes, signature: str) -> None:
    headers = [
        HOST,
        ("x-amz-date", "20130524T000000Z"),
        ("x-amz-content-sha256", sigv4.EMPTY_SHA256),
        _authorization("host;x-amz-content-sha256;x-amz-date", signature),
    ]
    _verify_example("GET", b"/", query, headers)


def test_aws_example_presigned_url() -> None:
    query = (
        b"X-Amz-Algorithm=AWS4-HMAC-SHA256"
        b"&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request"
        b"&X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&X-Amz-SignedHeaders=host"
        b"&X-Amz-Signature=aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404"
    )
    common = dict(method="GET", raw_path=b"/test.txt", headers=[HOST], lookup=KEYS, region=REGION)
    verified = verify_presigned(raw_query=query, now=EXAMPLE_TIME, **common)
    assert verified.presigned and verified.payload_hash == sigv4.UNSIGNED_PAYLOAD
    with pytest.raises(AuthFailure) as failure:
        verify_presigned(raw_query=query, now=EXAMPLE_TIME + timedelta(days=1, seconds=1), **common)
    assert (failure.value.code, failure.value.message) == ("AccessDenied", "Request has expired")
    assert failure.value.fields["X-Amz-Expires"] == "86400"
    with pytest.raises(AuthFailure) as failure:
        verify_presigned(raw_query=query, now=EXAMPLE_TIME - timedelta(minutes=16), **common)
    assert failure.value.code == "AccessDenied"


SEED = "4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9"
CHUNKS = [
    (65536, "ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648"),
    (1024, "0055627c9e194cb4542bae2aa5492e3c1575bbb81b612b7d234b86a503ef5497"),
    (0, "b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ceb9323e279d449df9"),
]
TRAILERS = [("first", "1st"), ("second", "2nd"), ("third", "3rd")]
TRAILER_SIGNATURE = "df5735bd9f3295cd9386572292562fefc93ba94e80a0a1ddcbd652c4e0a75e6c"


def _streaming_seed() -> sigv4.Verified:
    headers = [
        ("Host", "s3.amazonaws.com"),
        ("x-amz-date", "20130524T000000Z"),
        ("x-amz-storage-class", "REDUCED_REDUNDANCY"),
        ("x-amz-content-sha256", sigv4.STREAMING_PAYLOAD),
        ("Content-Encoding", "aws-chunked"),
        ("x-amz-decoded-content-length", "66560"),
        ("Content-Length", "66824"),
    ]
    signed = (
        "content-encoding;content-length;host;x-amz-content-sha256;x-amz-date;"
        "x-amz-decoded-content-length;x-amz-storage-class"
    )
    headers.append(_authorization(signed, SEED))
    return _verify_example("PUT", b"/examplebucket/chunkObject.txt", b"", headers)


def test_aws_example_streaming_chunks_and_trailer() -> None:
    verified = _streaming_seed()
    assert verified.signature == SEED and verified.payload_hash == sigv4.STREAMING_PAYLOAD
    chain = ChunkVerifier(verified)
    for size, signature in CHUNKS:
        chain.verify_chunk(signature, b"a" * size)
    chain.verify_trailer(TRAILERS, TRAILER_SIGNATURE)
    # The streamed form: hash computed while the chunk arrived.
    chain = ChunkVerifier(verified)
    chain.verify_chunk_digest(CHUNKS[0][1], hashlib.sha256(b"a" * 65536).hexdigest())


@pytest.mark.parametrize("tamper", ["byte", "reorder", "skip", "trailer", "trailer-sig"])
def test_streaming_tampering_is_refused(tamper: str) -> None:
    chain = ChunkVerifier(_streaming_seed())
    chunks = [(b"a" * size, signature) for size, signature in CHUNKS]
    if tamper == "byte":
        chunks[1] = (b"a" * 1023 + b"b", chunks[1][1])
    elif tamper == "reorder":
        chunks[0], chunks[1] = chunks[1], chunks[0]
    elif tamper == "skip":
        del chunks[1]
    with pytest.raises(AuthFailure) as failure:
        for data, signature in chunks:
            chain.verify_chunk(signature, data)
        trailers = [*TRAILERS[:2], ("third", "4th")] if tamper == "trailer" else TRAILERS
        signature = "0" * 64 if tamper == "trailer-sig" else TRAILER_SIGNATURE
        chain.verify_trailer(trailers, signature)
    assert failure.value.code == "SignatureDoesNotMatch"


# --- parsing and canonical pieces ----------------------------------------------------


def test_canonical_query_encodes_sorts_and_keeps_empty_values() -> None:
    pairs = sigv4.parse_query(b"b=2&a=z&a=%41&empty=&flag&sp=a%20b&plus=a+b&slash=a/b")
    assert sigv4.canonical_query(pairs) == (
        "a=A&a=z&b=2&empty=&flag=&plus=a%20b&slash=a%2Fb&sp=a%20b"
    )
    # `+` reads as a space (as the app reads it), `%2B` as a plus: they must not collide.
    assert sigv4.canonical_query(sigv4.parse_query(b"p=a%2Bb")) == "p=a%2Bb"


def test_canonical_uri_keeps_the_path_as_sent() -> None:
    assert sigv4.canonical_uri(b"") == "/"
    assert sigv4.canonical_uri(b"/b/a//../%2F%2f/%zz") == "/b/a//../%2F%2f/%25zz"
    assert sigv4.canonical_uri("/ü".encode()) == "/%C3%BC"


def test_canonical_headers_fold_whitespace_and_join_repeats() -> None:
    headers = [("X-Amz-Meta-A", "  one   two \t three "), ("x-amz-meta-a", "b"), ("Host", "h")]
    text = sigv4.canonical_headers(headers, ["host", "x-amz-meta-a"])
    assert text == "host:h\nx-amz-meta-a:one two three,b\n"


def _auth_value(credential: str, signed: str = "host") -> str:
    return f"AWS4-HMAC-SHA256 Credential={credential},SignedHeaders={signed},Signature=x"


@pytest.mark.parametrize(
    ("value", "snippet"),
    [
        ("AWS AK:sig", "Unsupported"),
        (f"AWS4-HMAC-SHA256 Credential={AK}/20130524/us-east-1/s3/aws4_request", "three compo"),
        (
            f"AWS4-HMAC-SHA256 Credential={AK}/20130524/us-east-1/s3/aws4_request,Signature=x",
            "three",
        ),
        (_auth_value(f"{AK}/20130524/eu-west-1/s3/aws4_request"), "expecting 'us-east-1'"),
        (_auth_value(f"{AK}/20130524/us-east-1/s4/aws4_request"), 'incorrect service "s4"'),
        (_auth_value(f"{AK}/20130524/us-east-1/s3/aws4"), 'incorrect terminal "aws4"'),
        (_auth_value("20130524/us-east-1/s3/aws4_request"), "mal-formed"),
        (_auth_value(f"{AK}/2013/us-east-1/s3/aws4_request"), "mal-formed"),
        (_auth_value(f"{AK}/20130524/us-east-1/s3/aws4_request", signed=""), "SignedHeaders"),
    ],
)
def test_authorization_header_parsing_is_strict(value: str, snippet: str) -> None:
    with pytest.raises(AuthFailure) as failure:
        sigv4.parse_authorization(value, REGION)
    code = "InvalidArgument" if value.startswith("AWS ") else "AuthorizationHeaderMalformed"
    assert failure.value.code == code and snippet in failure.value.message
    if "region" in failure.value.message:
        assert failure.value.fields["Region"] == REGION


# --- round trips with botocore -------------------------------------------------------

ENDPOINT = "127.0.0.1:9000"
BK, BS = "shoalkey", "shoal/secret+key"
BOTO_KEYS = {BK: BS}.get


class _Captured(Exception):
    def __init__(self, request: object) -> None:
        self.request = request


def _capture(request: object, **_: object) -> None:
    raise _Captured(request)


@pytest.fixture(scope="module")
def client():  # type: ignore[no-untyped-def]
    config = Config(
        s3={"addressing_style": "path"}, retries={"max_attempts": 0}, signature_version="s3v4"
    )
    s3 = boto3.client(
        "s3",
        endpoint_url=f"http://{ENDPOINT}",
        aws_access_key_id=BK,
        aws_secret_access_key=BS,
        region_name=REGION,
        config=config,
    )
    s3.meta.events.register("before-send.s3", _capture)
    return s3


def _sent(call) -> dict:  # type: ignore[no-untyped-def]
    """The request botocore would put on the wire, as the ASGI layer would see it."""
    with pytest.raises(_Captured) as captured:
        call()
    request = captured.value.request
    headers = [(k, v.decode() if isinstance(v, bytes) else v) for k, v in request.headers.items()]
    return _from_url(request.method, request.url, headers)


def _from_url(method: str, url: str, headers: list | None = None) -> dict:
    """Request pieces as the ASGI layer hands them over; `host` as the wire carries it."""
    parts = urlsplit(url)
    headers = list(headers or [])
    if not any(k.lower() == "host" for k, _ in headers):
        headers.append(("host", parts.netloc))
    return dict(
        method=method,
        raw_path=parts.path.encode(),
        raw_query=parts.query.encode(),
        headers=headers,
    )


def _check(request: dict, *, now: datetime | None = None, lookup=BOTO_KEYS) -> sigv4.Verified:  # type: ignore[no-untyped-def]
    verified = sigv4.verify_request(
        **request, lookup=lookup, region=REGION, now=now or datetime.now(UTC)
    )
    assert verified is not None
    return verified


def _code(request: dict, **kwargs: object) -> str:
    with pytest.raises(AuthFailure) as failure:
        _check(request, **kwargs)  # type: ignore[arg-type]
    return failure.value.code


ODD_KEYS = [
    "plain.txt",
    "with space/and+plus",
    "ünïcødé/ключ/鍵",
    "literal%2Fescape",
    "double//slash",
    "../dot/./segments/..",
    "reserved !$&'()*,;=:@[]",
    "~tilde_-.",
    "question?hash#",
]


@pytest.mark.parametrize("key", ODD_KEYS)
def test_botocore_put_object_round_trip(client, key: str) -> None:  # type: ignore[no-untyped-def]
    put = lambda: client.put_object(Bucket="bkt", Key=key, Body=b"hi", Metadata={"m": "v"})  # noqa: E731
    request = _sent(put)
    verified = _check(request)
    assert verified.access_key == BK
    assert verified.payload_hash == hashlib.sha256(b"hi").hexdigest()


def test_botocore_get_list_and_multipart_round_trips(client) -> None:  # type: ignore[no-untyped-def]
    calls = [
        lambda: client.get_object(Bucket="bkt", Key="a b", Range="bytes=0-1", IfMatch='"x"'),
        lambda: client.list_objects_v2(Bucket="bkt", Prefix="p q+ü/", Delimiter="/", StartAfter=""),
        lambda: client.list_objects(Bucket="bkt", Marker="", MaxKeys=5),
        lambda: client.upload_part(Bucket="bkt", Key="k", UploadId="i/+=", PartNumber=2, Body=b""),
        lambda: client.delete_objects(Bucket="bkt", Delete={"Objects": [{"Key": "a"}]}),
        lambda: client.get_bucket_location(Bucket="bkt"),
    ]
    for call in calls:
        _check(_sent(call))


def test_raw_botocore_signer_with_unsorted_repeated_and_empty_params() -> None:
    request = AWSRequest(
        method="GET",
        url=f"http://{ENDPOINT}/bkt/o?z=1&a=2&a=1&empty=&flag&enc=%2F%20",
        headers={"X-Amz-Meta-Two": "a   b", "Range": "bytes=1-2"},
    )
    S3SigV4Auth(Credentials(BK, BS), "s3", REGION).add_auth(request)
    prepared = request.prepare()
    url = urlsplit(prepared.url)
    headers = [("host", url.netloc), *((k, v) for k, v in prepared.headers.items())]
    headers.append(("x-amz-meta-two", "c"))  # a repeated header is not signed as sent...
    base = dict(method="GET", raw_path=url.path.encode(), raw_query=url.query.encode())
    assert _code({**base, "headers": headers}) == "SignatureDoesNotMatch"
    _check({**base, "headers": headers[:-1]})  # ...but the request as signed verifies


def test_raw_botocore_query_signer() -> None:
    request = AWSRequest(method="PUT", url=f"http://{ENDPOINT}/bkt/a%20b?partNumber=1&uploadId=x")
    S3SigV4QueryAuth(Credentials(BK, BS), "s3", REGION, expires=300).add_auth(request)
    request_parts = _from_url("PUT", request.prepare().url)
    verified = _check(request_parts)
    assert verified.presigned
    assert _code(request_parts, now=datetime.now(UTC) + timedelta(seconds=301)) == "AccessDenied"


@pytest.fixture
def put_request(client):  # type: ignore[no-untyped-def]
    return _sent(
        lambda: client.put_object(Bucket="bkt", Key="k", Body=b"body", Metadata={"color": "red"})
    )


def _replace_header(request: dict, name: str, value: str) -> dict:
    headers = [(k, value if k.lower() == name else v) for k, v in request["headers"]]
    return {**request, "headers": headers}


@pytest.mark.parametrize(
    ("tamper", "code"),
    [
        ("secret", "SignatureDoesNotMatch"),
        ("access-key", "InvalidAccessKeyId"),
        ("signature", "SignatureDoesNotMatch"),
        ("signed-header", "SignatureDoesNotMatch"),
        ("payload-hash", "SignatureDoesNotMatch"),
        ("unsigned-amz-header", "AccessDenied"),
        ("query", "SignatureDoesNotMatch"),
        ("path", "SignatureDoesNotMatch"),
        ("method", "SignatureDoesNotMatch"),
        ("skew", "RequestTimeTooSkewed"),
        ("no-content-sha256", "InvalidRequest"),
        ("bad-content-sha256", "InvalidArgument"),
        ("no-date", "AccessDenied"),
    ],
)
def test_header_auth_tampering(put_request: dict, tamper: str, code: str) -> None:
    _check(put_request)
    request, kwargs = put_request, {}
    authorization = next(v for k, v in request["headers"] if k.lower() == "authorization")
    if tamper == "secret":
        kwargs["lookup"] = {BK: BS + "x"}.get
    elif tamper == "access-key":
        kwargs["lookup"] = {}.get
    elif tamper == "signature":
        flipped = authorization[:-1] + ("0" if authorization[-1] != "0" else "1")
        request = _replace_header(request, "authorization", flipped)
    elif tamper == "signed-header":
        request = _replace_header(request, "x-amz-meta-color", "blue")
    elif tamper == "payload-hash":
        request = _replace_header(request, "x-amz-content-sha256", sigv4.UNSIGNED_PAYLOAD)
    elif tamper == "unsigned-amz-header":
        request = {**request, "headers": [*request["headers"], ("x-amz-acl", "public-read")]}
    elif tamper == "query":
        request = {**request, "raw_query": b"acl"}
    elif tamper == "path":
        request = {**request, "raw_path": request["raw_path"] + b"2"}
    elif tamper == "method":
        request = {**request, "method": "POST"}
    elif tamper == "skew":
        kwargs["now"] = datetime.now(UTC) + timedelta(minutes=16)
    elif tamper in ("no-content-sha256", "no-date"):
        drop = "x-amz-content-sha256" if tamper == "no-content-sha256" else "x-amz-date"
        kept = [(k, v) for k, v in request["headers"] if k.lower() != drop]
        request = {**request, "headers": kept}
    elif tamper == "bad-content-sha256":
        request = _replace_header(request, "x-amz-content-sha256", "abc")
    with pytest.raises(AuthFailure) as failure:
        _check(request, **kwargs)
    assert failure.value.code == code
    assert BS not in str(failure.value) and authorization[-64:] not in str(failure.value)
    if tamper == "skew":
        assert failure.value.status == 403
        fields = {"RequestTime", "ServerTime", "MaxAllowedSkewMilliseconds"}
        assert set(failure.value.fields) == fields
        assert failure.value.fields["MaxAllowedSkewMilliseconds"] == "900000"
    if tamper == "unsigned-amz-header":
        assert failure.value.fields["HeadersNotSigned"] == "x-amz-acl"


def test_credential_scope_date_must_match_request_date(put_request: dict) -> None:
    authorization = next(v for k, v in put_request["headers"] if k.lower() == "authorization")
    today = authorization.split("/")[1]
    other = (datetime.strptime(today, "%Y%m%d") - timedelta(days=1)).strftime("%Y%m%d")
    request = _replace_header(put_request, "authorization", authorization.replace(today, other, 1))
    assert _code(request) == "AuthorizationHeaderMalformed"


@pytest.fixture
def presigned(client) -> dict:  # type: ignore[no-untyped-def]
    params = {"Bucket": "bkt", "Key": "ü p+q//x"}
    return _from_url(
        "GET", client.generate_presigned_url("get_object", Params=params, ExpiresIn=600)
    )


@pytest.mark.parametrize(
    ("tamper", "code"),
    [
        ("expired", "AccessDenied"),
        ("too-long", "AuthorizationQueryParametersError"),
        ("negative", "AuthorizationQueryParametersError"),
        ("signature", "SignatureDoesNotMatch"),
        ("extra-param", "SignatureDoesNotMatch"),
        ("path", "SignatureDoesNotMatch"),
        ("unsigned-amz-header", "AccessDenied"),
        ("missing-param", "AuthorizationQueryParametersError"),
        ("algorithm", "AuthorizationQueryParametersError"),
        ("region", "AuthorizationQueryParametersError"),
        ("secret", "SignatureDoesNotMatch"),
        ("access-key", "InvalidAccessKeyId"),
    ],
)
def test_presigned_tampering(presigned: dict, tamper: str, code: str) -> None:
    assert _check(presigned).presigned
    request, kwargs, query = presigned, {}, presigned["raw_query"]
    if tamper == "expired":
        kwargs["now"] = datetime.now(UTC) + timedelta(seconds=601)
    elif tamper == "too-long":
        query = query.replace(b"X-Amz-Expires=600", b"X-Amz-Expires=604801")
    elif tamper == "negative":
        query = query.replace(b"X-Amz-Expires=600", b"X-Amz-Expires=-1")
    elif tamper == "signature":
        query = query[:-1] + (b"0" if query[-1:] != b"0" else b"1")
    elif tamper == "extra-param":
        query += b"&response-content-type=text%2Fhtml"
    elif tamper == "path":
        request = {**request, "raw_path": request["raw_path"] + b"x"}
    elif tamper == "unsigned-amz-header":
        request = {**request, "headers": [*request["headers"], ("x-amz-meta-a", "b")]}
    elif tamper == "missing-param":
        query = b"&".join(p for p in query.split(b"&") if not p.startswith(b"X-Amz-Expires"))
    elif tamper == "algorithm":
        query = query.replace(b"AWS4-HMAC-SHA256", b"AWS4-HMAC-SHA512")
    elif tamper == "region":
        query = query.replace(b"us-east-1", b"us-west-2")
    elif tamper == "secret":
        kwargs["lookup"] = {BK: "wrong"}.get
    elif tamper == "access-key":
        kwargs["lookup"] = {}.get
    with pytest.raises(AuthFailure) as failure:
        _check({**request, "raw_query": query}, **kwargs)
    assert failure.value.code == code
    if tamper == "expired":
        assert failure.value.message == "Request has expired"
    if tamper == "too-long":
        assert "604800" in failure.value.message
    if tamper == "region":
        assert "expecting 'us-east-1'" in failure.value.message


def test_presigned_expiry_of_seven_days_is_allowed(client) -> None:  # type: ignore[no-untyped-def]
    params = {"Bucket": "bkt", "Key": "k"}
    url = client.generate_presigned_url("put_object", Params=params, ExpiresIn=604800)
    request = _from_url("PUT", url)
    _check(request, now=datetime.now(UTC) + timedelta(days=6, hours=23))


def test_signing_key_is_cached() -> None:
    sigv4.signing_key.cache_clear()
    first = sigv4.signing_key(SK, "20130524", REGION)
    assert sigv4.signing_key(SK, "20130524", REGION) is first
    assert sigv4.signing_key.cache_info().hits == 1


def test_botocore_aws_chunked_upload_over_https_verifies() -> None:
    """boto3 >= 1.36 sends PutObject over https as aws-chunked with a trailing checksum."""
    s3 = boto3.client(
        "s3",
        endpoint_url=f"https://{ENDPOINT}",
        aws_access_key_id=BK,
        aws_secret_access_key=BS,
        region_name=REGION,
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 0}),
    )
    s3.meta.events.register("before-send.s3", _capture)
    verified = _check(_sent(lambda: s3.put_object(Bucket="bkt", Key="k", Body=b"x" * 100)))
    assert verified.payload_hash == sigv4.STREAMING_UNSIGNED_TRAILER
    assert {"x-amz-trailer", "x-amz-decoded-content-length"} <= set(verified.signed_headers)
    with pytest.raises(ValueError):
        ChunkVerifier(verified)  # unsigned chunks carry no signatures to check


def _self_signed(headers: list, signed: list[str], when: datetime) -> dict:
    """A request signed here (for header shapes botocore never produces)."""
    scope = sigv4.Scope(when.strftime("%Y%m%d"), REGION)
    canonical = sigv4.canonical_request("GET", b"/bkt/k", "", headers, signed, sigv4.EMPTY_SHA256)
    to_sign = sigv4.string_to_sign(when.strftime("%Y%m%dT%H%M%SZ"), scope, canonical)
    signature = sigv4.sign(sigv4.signing_key(BS, scope.date, REGION), to_sign)
    value = f"AWS4-HMAC-SHA256 Credential={BK}/{scope},SignedHeaders={';'.join(signed)},"
    authorization = ("Authorization", value + f"Signature={signature}")
    return dict(method="GET", raw_path=b"/bkt/k", raw_query=b"", headers=[*headers, authorization])


def test_date_header_stands_in_for_x_amz_date() -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    headers = [
        ("Host", "h"),
        ("Date", now.strftime("%a, %d %b %Y %H:%M:%S GMT")),
        ("x-amz-content-sha256", sigv4.EMPTY_SHA256),
    ]
    request = _self_signed(headers, ["date", "host", "x-amz-content-sha256"], now)
    assert _check(request).request_time == now
    late = now + timedelta(minutes=15, seconds=1)
    assert _code(request, now=late) == "RequestTimeTooSkewed"


def _dated(now: datetime) -> list[tuple[str, str]]:
    """Host, x-amz-date and an empty payload's hash: the headers every request carries."""
    return [
        ("Host", "h"),
        ("x-amz-date", now.strftime("%Y%m%dT%H%M%SZ")),
        ("x-amz-content-sha256", sigv4.EMPTY_SHA256),
    ]


def test_host_must_be_signed() -> None:
    now = datetime.now(UTC)
    headers = _dated(now)
    request = _self_signed(headers, ["x-amz-content-sha256", "x-amz-date"], now)
    with pytest.raises(AuthFailure) as failure:
        _check(request)
    assert failure.value.code == "AccessDenied"
    assert failure.value.fields["HeadersNotSigned"] == "host"


def test_every_unsigned_header_is_named_in_order() -> None:
    now = datetime.now(UTC)
    headers = [
        *_dated(now),
        ("X-Amz-Tagging", "a=b"),
        ("x-amz-acl", "public-read"),
        ("content-type", "text/plain"),  # not x-amz-*: may go unsigned
    ]
    request = _self_signed(headers, ["x-amz-content-sha256", "x-amz-date"], now)
    with pytest.raises(AuthFailure) as failure:
        _check(request)
    assert failure.value.fields["HeadersNotSigned"] == "host, x-amz-acl, x-amz-tagging"


def test_a_refused_credential_is_refused_again() -> None:
    """The credential's parse is cached; its refusals are not, and each names the fault."""
    for _ in range(2):
        with pytest.raises(AuthFailure) as failure:
            sigv4._parse_credential("AK/20260101/eu-west-1/s3/aws4_request", "us-east-1", False)
        assert failure.value.fields == {"Region": "us-east-1"}
    good = sigv4._parse_credential("AK/20260101/us-east-1/s3/aws4_request", "us-east-1", False)
    assert good == ("AK", sigv4.Scope("20260101", "us-east-1"))


def test_presigned_url_dated_in_the_future_is_not_valid_yet(presigned: dict) -> None:
    assert _code(presigned, now=datetime.now(UTC) - timedelta(minutes=16)) == "AccessDenied"
    _check(presigned, now=datetime.now(UTC) - timedelta(minutes=14))  # tolerated clock skew


def test_failure_statuses() -> None:
    assert AuthFailure("SignatureDoesNotMatch", "m").status == 403
    assert AuthFailure("AuthorizationHeaderMalformed", "m").status == 400
    assert AuthFailure("InvalidRequest", "m").status == 400


def test_a_signed_plus_cannot_be_replayed_as_a_space() -> None:
    request = AWSRequest(method="GET", url=f"http://{ENDPOINT}/bkt?prefix=a%2Bb%20c")
    S3SigV4QueryAuth(Credentials(BK, BS), "s3", REGION, expires=300).add_auth(request)
    signed = _from_url("GET", request.prepare().url)
    _check(signed)
    replayed = {**signed, "raw_query": signed["raw_query"].replace(b"a%2Bb", b"a+b")}
    assert _code(replayed) == "SignatureDoesNotMatch"
    respelled = {**signed, "raw_query": signed["raw_query"].replace(b"%20c", b"+c")}
    _check(respelled)  # the same value, spelled as the app's query parser reads it


def test_verify_request_dispatch(put_request: dict, presigned: dict) -> None:
    unsigned = [(k, v) for k, v in put_request["headers"] if k.lower() != "authorization"]
    kwargs = dict(lookup=BOTO_KEYS, region=REGION, now=datetime.now(UTC))
    assert sigv4.verify_request(**{**put_request, "headers": unsigned}, **kwargs) is None
    with pytest.raises(AuthFailure) as failure:
        verify_header_auth(**{**put_request, "headers": unsigned}, **kwargs)
    assert failure.value.code == "AccessDenied"
    both = {**put_request, "raw_query": presigned["raw_query"]}
    with pytest.raises(AuthFailure) as failure:
        sigv4.verify_request(**both, **kwargs)
    assert failure.value.code == "InvalidArgument"
    assert "Only one auth mechanism" in failure.value.message


def test_raw_header_bytes_are_hashed_as_sent() -> None:
    """ASGI gives header bytes; non-ASCII values must be hashed as the client's bytes."""
    now = datetime.now(UTC)
    headers = [
        (b"host", b"h"),
        (b"x-amz-date", now.strftime("%Y%m%dT%H%M%SZ").encode()),
        (b"x-amz-content-sha256", sigv4.EMPTY_SHA256.encode()),
        (b"x-amz-meta-name", "zoë ✓".encode()),
    ]
    signed = ["host", "x-amz-content-sha256", "x-amz-date", "x-amz-meta-name"]
    request = _self_signed(headers, signed, now)
    assert _check(request).access_key == BK
    as_str = [(k.decode(), v.decode()) for k, v in request["headers"][:-1]]
    _check({**request, "headers": [*as_str, request["headers"][-1]]})  # UTF-8 str: same bytes
    latin1 = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in request["headers"][:-1]]
    assert _code({**request, "headers": [*latin1, request["headers"][-1]]}) == (
        "SignatureDoesNotMatch"
    )
