"""SigV2 verification against AWS's published example and botocore's own SigV2 signers.

Every request here is signed by botocore (`HmacV1Auth`, `HmacV1QueryAuth`, a boto3 client
with `signature_version="s3"`, `generate_presigned_post`) and verified by auth/sigv2.py
through the seam the ASGI layer calls; tampering with any signed element must fail.
"""

from __future__ import annotations

import base64
import email.utils
import io
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote, urlsplit
from xml.etree import ElementTree

import boto3
import pytest
from botocore.auth import HmacV1Auth, HmacV1QueryAuth
from botocore.awsrequest import AWSRequest, AWSResponse
from botocore.config import Config
from botocore.credentials import Credentials
from hypothesis import given
from hypothesis import strategies as st

from shoal.app.accesslog import claimed_access_key
from shoal.app.dispatch import split_target
from shoal.app.xml import escape_lossy
from shoal.auth import sigv2
from shoal.auth.postpolicy import verify_signature
from shoal.auth.seam import ANONYMOUS, Authenticator
from shoal.auth.sigv4 import AuthFailure
from tests.unit import test_fuzz_sigv4 as fuzz

AK, SK = "AKIDSIGV2", "sigv2/secret+key"
DOMAIN = "s3.localhost"
ENDPOINT = f"http://{DOMAIN}:9000"


def authenticator(secrets: dict[str, str] | None = None, **kwargs: Any) -> Authenticator:
    """The seam as the app builds it, with virtual hosts below DOMAIN."""
    return Authenticator(
        secrets if secrets is not None else {AK: SK},
        "us-east-1",
        host_bucket=lambda host: split_target(b"/", host, DOMAIN)[0],
        **kwargs,
    )


def wire(request: Any) -> dict[str, Any]:
    """A signed botocore request as the ASGI layer receives it: raw path and query
    bytes, header bytes (latin-1, as http.client sends them) and the Host header."""
    prepared = request.prepare() if isinstance(request, AWSRequest) else request
    parts = urlsplit(prepared.url)
    headers = [(k.lower().encode(), _latin1(v)) for k, v in prepared.headers.items()]
    if not any(name == b"host" for name, _ in headers):
        headers.append((b"host", parts.netloc.encode()))
    return dict(
        method=prepared.method,
        raw_path=parts.path.encode(),
        raw_query=parts.query.encode(),
        headers=headers,
    )


def _latin1(value: str | bytes) -> bytes:
    return value if isinstance(value, bytes) else value.encode("latin-1")


def check(request: dict[str, Any], *, now: datetime | None = None, **kwargs: Any) -> str | None:
    principal = authenticator(**kwargs).authenticate(**request, now=now or datetime.now(UTC))
    assert principal.verified is None  # SigV2 bodies carry no chunk signatures
    return principal.access_key


def code(request: dict[str, Any], **kwargs: Any) -> str:
    with pytest.raises(AuthFailure) as failure:
        check(request, **kwargs)
    return failure.value.code


def failure_of(request: dict[str, Any], **kwargs: Any) -> AuthFailure:
    with pytest.raises(AuthFailure) as failure:
        check(request, **kwargs)
    return failure.value


def header_signed(method: str, url: str, headers: dict[str, str] | None = None, **auth: Any):  # type: ignore[no-untyped-def]
    request = AWSRequest(method=method, url=url, headers=headers or {})
    if "auth_path" in auth:
        request.auth_path = auth["auth_path"]
    HmacV1Auth(Credentials(auth.get("key", AK), auth.get("secret", SK))).add_auth(request)
    return request


def query_signed(method: str, url: str, expires: int = 3600, **auth: Any):  # type: ignore[no-untyped-def]
    request = AWSRequest(method=method, url=url, headers=auth.get("headers", {}))
    if "auth_path" in auth:
        request.auth_path = auth["auth_path"]
    HmacV1QueryAuth(Credentials(AK, auth.get("secret", SK)), expires=expires).add_auth(request)
    return AWSRequest(method=method, url=request.url)  # a URL is all a presign hands out


def replace_header(request: dict[str, Any], name: bytes, value: bytes) -> dict[str, Any]:
    headers = [(n, value if n == name else v) for n, v in request["headers"]]
    return {**request, "headers": headers}


# --- AWS's published example ----------------------------------------------------------


def test_aws_example_object_get() -> None:
    """RESTAuthentication "Object GET" (virtual-hosted, example key pair)."""
    example_key, example_secret = "AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
    date = "Tue, 27 Mar 2007 19:36:42 +0000"
    headers = [
        (b"host", b"awsexamplebucket1.s3.us-west-1.amazonaws.com"),
        (b"date", date.encode()),
        (b"authorization", f"AWS {example_key}:qgk2+6Sv9/oM7G3qLEjTH1a1l1g=".encode()),
    ]
    to_sign = sigv2.string_to_sign("GET", "", "", date, [], "/awsexamplebucket1/photos/puppy.jpg")
    assert to_sign == f"GET\n\n\n{date}\n/awsexamplebucket1/photos/puppy.jpg"
    access_key = sigv2.verify_header_auth(
        method="GET",
        raw_path=b"/photos/puppy.jpg",
        raw_query=b"",
        headers=headers,
        lookup={example_key: example_secret}.get,
        now=datetime(2007, 3, 27, 19, 40, tzinfo=UTC),
        bucket="awsexamplebucket1",
    )
    assert access_key == example_key


# --- boto3's SigV2 client, every request captured as sent ------------------------------


class _FakeBody(io.BytesIO):
    """The raw body of the fake answer (an XML root, urllib3's `stream`)."""

    def stream(self, *_: Any, **__: Any) -> Iterator[bytes]:
        yield self.read()


class Captured:
    """A boto3 client whose requests stop at `before-send`: signed, never sent."""

    def __init__(self, addressing: str = "path") -> None:
        self.requests: list[Any] = []
        self.client = boto3.client(
            "s3",
            endpoint_url=ENDPOINT,
            aws_access_key_id=AK,
            aws_secret_access_key=SK,
            region_name="us-east-1",
            config=Config(
                signature_version="s3",
                s3={"addressing_style": addressing},
                retries={"max_attempts": 1},
                request_checksum_calculation="when_required",
            ),
        )
        self.client.meta.events.register("before-send", self._capture)

    def _capture(self, request: Any, **_: Any) -> AWSResponse:
        self.requests.append(request)
        return AWSResponse(request.url, 200, {}, _FakeBody(b"<Answer/>"))

    def last(self, call: str, **params: Any) -> dict[str, Any]:
        getattr(self.client, call)(**params)
        return wire(self.requests[-1])


CALLS = [
    ("create_bucket", {"Bucket": "bkt"}),
    ("list_objects_v2", {"Bucket": "bkt", "Prefix": "a b/ü", "MaxKeys": 5}),
    ("list_objects", {"Bucket": "bkt", "Delimiter": "/"}),
    ("put_object", {"Bucket": "bkt", "Key": "ü/a b+c%.txt", "Body": b"x", "Metadata": {"m": "1"}}),
    ("put_object", {"Bucket": "bkt", "Key": "k", "Body": b"x", "ContentType": "text/plain"}),
    (
        "get_object",
        {"Bucket": "bkt", "Key": "k", "ResponseContentDisposition": "attachment; a=b+c"},
    ),
    ("head_object", {"Bucket": "bkt", "Key": "k", "VersionId": "v1"}),
    ("delete_object", {"Bucket": "bkt", "Key": "k"}),
    ("create_multipart_upload", {"Bucket": "bkt", "Key": "k"}),
    (
        "upload_part",
        {"Bucket": "bkt", "Key": "k", "UploadId": "u/1", "PartNumber": 2, "Body": b"x"},
    ),
    ("list_parts", {"Bucket": "bkt", "Key": "k", "UploadId": "u1"}),
    ("abort_multipart_upload", {"Bucket": "bkt", "Key": "k", "UploadId": "u1"}),
    ("delete_objects", {"Bucket": "bkt", "Delete": {"Objects": [{"Key": "k"}]}}),
    ("get_bucket_policy", {"Bucket": "bkt"}),
    ("get_bucket_location", {"Bucket": "bkt"}),
    ("list_buckets", {}),
    ("copy_object", {"Bucket": "bkt", "Key": "c", "CopySource": "bkt/ü k"}),
]


@pytest.mark.parametrize("addressing", ["path", "virtual"])
@pytest.mark.parametrize(
    ("call", "params"), CALLS, ids=[f"{c}-{i}" for i, (c, _) in enumerate(CALLS)]
)
def test_boto3_sigv2_client_requests_verify(
    addressing: str, call: str, params: dict[str, Any]
) -> None:
    request = Captured(addressing).last(call, **params)
    assert any(v.startswith(b"AWS ") for n, v in request["headers"] if n == b"authorization")
    assert check(request) == AK
    assert code(request, secrets={AK: "other"}) == "SignatureDoesNotMatch"
    other_method = {**request, "method": "POST" if request["method"] != "POST" else "PUT"}
    assert code(other_method) == "SignatureDoesNotMatch"


def test_virtual_hosted_requests_sign_the_bucket() -> None:
    request = Captured("virtual").last("get_object", Bucket="bkt", Key="k")
    host = dict(request["headers"])[b"host"]
    assert host.startswith(b"bkt.")
    assert check(request) == AK
    other_bucket = replace_header(request, b"host", host.replace(b"bkt.", b"other."))
    assert code(other_bucket) == "SignatureDoesNotMatch"
    # Path style for the same Host-less reading: not the bucket the client signed.
    assert code(replace_header(request, b"host", DOMAIN.encode())) == "SignatureDoesNotMatch"


def test_bucket_request_signed_with_or_without_slash() -> None:
    """botocore signs a bucket-level path-style request as `/bkt/`; other signers sign
    the path as sent (`/bkt`): both describe the same request."""
    botocore_style = Captured().last("list_objects_v2", Bucket="bkt")
    assert botocore_style["raw_path"] == b"/bkt"
    assert check(botocore_style) == AK
    as_sent = wire(header_signed("GET", f"{ENDPOINT}/bkt?list-type=2"))
    assert check(as_sent) == AK


@pytest.mark.parametrize(
    ("path", "query", "signed"),
    [
        (b"/bkt", b"versioning=", "/bkt?versioning"),  # rclone, MinIO: bare, path as sent
        (b"/bkt", b"versioning=", "/bkt/?versioning"),
        (b"/bkt", b"versioning=", "/bkt?versioning="),  # the query as written
        (b"/bkt", b"versioning", "/bkt/?versioning"),  # botocore
        (b"/bkt/k", b"versionId=&x=1", "/bkt/k?versionId="),
        (b"/bkt/k", b"versionId=&x=1", "/bkt/k?versionId"),
    ],
)
def test_every_signer_spelling_of_one_resource(path: bytes, query: bytes, signed: str) -> None:
    date = email.utils.formatdate(usegmt=True)
    signature = sigv2.sign(SK, f"GET\n\n\n{date}\n{signed}")
    headers = [(b"date", date.encode()), (b"authorization", f"AWS {AK}:{signature}".encode())]
    request = {"method": "GET", "raw_path": path, "raw_query": query, "headers": headers}
    assert check(request) == AK
    for other in (b"/bkt2", b"/bkt/x", path + b"x"):  # other buckets and objects
        assert code({**request, "raw_path": other}) == "SignatureDoesNotMatch"
    assert code({**request, "raw_query": query + b"&acl"}) == "SignatureDoesNotMatch"


# --- properties over keys, paths, sub-resources, headers -------------------------------

_access_keys = st.text(
    st.characters(codec="ascii", categories=["Lu", "Ll", "Nd"]), min_size=1, max_size=20
)
_secrets = st.text(st.characters(exclude_categories=["Cs"]), min_size=1, max_size=40)
_object_keys = st.text(st.characters(exclude_categories=["Cs"]), min_size=1, max_size=40)
_values = st.text(st.characters(exclude_categories=["Cs", "Cc"]), max_size=20)
_header_values = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=20)
_meta_names = st.text(st.sampled_from("abcdefghij-0123"), min_size=1, max_size=8)
_signed_params = st.dictionaries(
    st.sampled_from(sorted(sigv2.SIGNED_PARAMETERS)), st.none() | _values, max_size=4
)
_unsigned_params = st.dictionaries(
    st.sampled_from(["prefix", "max-keys", "marker", "list-type", "x-id"]), _values, max_size=3
)
_botocore_params = st.dictionaries(
    st.sampled_from(sorted(sigv2.BOTOCORE_SIGNED)), st.none() | _values, max_size=4
)


def _url(bucket: str, key: str, params: dict[str, str | None], virtual: bool) -> tuple[str, str]:
    """(url, auth_path) as botocore builds them: key quoted with `/~` kept, query values
    percent-encoded, a bare sub-resource without `=`."""
    path = "/" + quote(key.encode("utf-8"), safe="/~")
    query = "&".join(
        quote(n, safe="-_.~") if v is None else f"{quote(n, safe='-_.~')}={quote(v, safe='-_.~')}"
        for n, v in params.items()
    )
    host = f"{bucket}.{DOMAIN}:9000" if virtual else f"{DOMAIN}:9000"
    url_path = path if virtual else f"/{bucket}{path}"
    return f"http://{host}{url_path}" + (f"?{query}" if query else ""), f"/{bucket}{path}"


@given(
    key=_access_keys,
    secret=_secrets,
    object_key=_object_keys,
    signed=_signed_params,
    unsigned=_unsigned_params,
    meta=st.dictionaries(_meta_names, _header_values, max_size=3),
    content_type=st.none() | _header_values,
    virtual=st.booleans(),
    method=st.sampled_from(["GET", "PUT", "HEAD", "DELETE", "POST"]),
)
def test_header_auth_round_trips_and_tampering_fails(
    key: str,
    secret: str,
    object_key: str,
    signed: dict[str, str | None],
    unsigned: dict[str, str],
    meta: dict[str, str],
    content_type: str | None,
    virtual: bool,
    method: str,
) -> None:
    url, auth_path = _url("bkt", object_key, {**signed, **unsigned}, virtual)
    headers = {f"x-amz-meta-{n}": v for n, v in meta.items()}
    if content_type is not None:
        headers["Content-Type"] = content_type
    request = wire(header_signed(method, url, headers, key=key, secret=secret, auth_path=auth_path))
    assert check(request, secrets={key: secret}) == key
    ok = {"secrets": {key: secret}}
    # Any signed element changed: the path, a signed parameter, a header, the date.
    assert (
        code({**request, "raw_path": request["raw_path"] + b"x"}, **ok) == "SignatureDoesNotMatch"
    )
    assert (
        code({**request, "raw_query": request["raw_query"] + b"&acl"}, **ok)
        == "SignatureDoesNotMatch"
    )
    if botocore_signed := {quote(n).encode() for n in signed if n in sigv2.BOTOCORE_SIGNED}:
        parts = request["raw_query"].split(b"&")
        dropped = b"&".join(p for p in parts if p.split(b"=")[0] not in botocore_signed)
        assert code({**request, "raw_query": dropped}, **ok) == "SignatureDoesNotMatch"
    extra = [*request["headers"], (b"x-amz-meta-added", b"1")]
    assert code({**request, "headers": extra}, **ok) == "SignatureDoesNotMatch"
    retyped = [(n, v) for n, v in request["headers"] if n != b"content-type"]
    retyped.append((b"content-type", b"text/html" if content_type != "text/html" else b"x/y"))
    assert code({**request, "headers": retyped}, **ok) == "SignatureDoesNotMatch"
    date = email.utils.formatdate(datetime.now(UTC).timestamp() + 60, usegmt=True)
    assert code(replace_header(request, b"date", date.encode()), **ok) == "SignatureDoesNotMatch"
    # Parameters no signer signs may change (that is SigV2), and still verify.
    assert check({**request, "raw_query": request["raw_query"] + b"&prefix=zz"}, **ok) == key


@given(
    object_key=_object_keys,
    signed=_botocore_params,
    expires=st.integers(min_value=300, max_value=604800),  # none expires mid-test
    virtual=st.booleans(),
    amz=st.dictionaries(_meta_names, _header_values, max_size=2),
)
def test_query_auth_round_trips_and_tampering_fails(
    object_key: str, signed: dict[str, str | None], expires: int, virtual: bool, amz: dict
) -> None:
    url, auth_path = _url("bkt", object_key, signed, virtual)
    headers = {f"x-amz-meta-{n}": v for n, v in amz.items()}
    request = wire(query_signed("GET", url, expires, auth_path=auth_path, headers=headers))
    assert request["headers"] == [(b"host", urlsplit(url).netloc.encode())]
    assert check(request) == AK
    query = request["raw_query"]
    later = query.replace(b"Expires=", b"Expires=1", 1)
    assert code({**request, "raw_query": later}) in ("SignatureDoesNotMatch", "AccessDenied")
    assert code({**request, "raw_path": request["raw_path"] + b"x"}) == "SignatureDoesNotMatch"
    for added in (b"&acl", b"&publicAccessBlock", b"&%61cl", b"&response-content-type=x"):
        assert code({**request, "raw_query": query + added}) == "SignatureDoesNotMatch"
    if amz:  # botocore moved the signed x-amz-* headers into the query
        changed = query.replace(b"x-amz-meta-", b"x-amz-meta-z", 1)
        assert code({**request, "raw_query": changed}) == "SignatureDoesNotMatch"
    assert code({**request, "method": "PUT"}) == "SignatureDoesNotMatch"
    assert code(request, secrets={"OTHER": SK}) == "InvalidAccessKeyId"


# --- expiry, skew, malformed requests ---------------------------------------------------


def presigned(expires: int = 3600, **params: Any) -> dict[str, Any]:
    client = boto3.client(
        "s3",
        endpoint_url=ENDPOINT,
        aws_access_key_id=AK,
        aws_secret_access_key=SK,
        region_name="us-east-1",
        config=Config(signature_version="s3", s3={"addressing_style": "path"}),
    )
    url = client.generate_presigned_url(
        "get_object", Params={"Bucket": "bkt", "Key": "k", **params}, ExpiresIn=expires
    )
    return wire(AWSRequest("GET", url).prepare())


def test_boto3_default_presign_is_sigv2_and_verifies() -> None:
    client = boto3.client(
        "s3",
        endpoint_url=ENDPOINT,
        aws_access_key_id=AK,
        aws_secret_access_key=SK,
        region_name="us-east-1",
    )
    url = client.generate_presigned_url("get_object", Params={"Bucket": "bkt", "Key": "a b"})
    assert "AWSAccessKeyId=" in url and "X-Amz-Algorithm" not in url
    assert check(wire(AWSRequest("GET", url).prepare())) == AK


def test_expired_url_is_refused() -> None:
    request = presigned(60)
    assert check(request, now=datetime.now(UTC) + timedelta(seconds=50)) == AK
    failure = failure_of(request, now=datetime.now(UTC) + timedelta(seconds=62))
    assert (failure.code, failure.status, failure.message) == (
        "AccessDenied",
        403,
        "Request has expired",
    )
    assert set(failure.fields) == {"Expires", "ServerTime"}


def test_a_week_is_the_longest_lifetime() -> None:
    week = presigned(604800)
    assert check(week) == AK
    assert check(week, now=datetime.now(UTC) + timedelta(days=6, hours=23)) == AK
    failure = failure_of(presigned(604800 + 3600))
    assert (failure.code, failure.status) == ("AccessDenied", 403)
    assert "604800" in failure.message


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            lambda q: q.replace(b"Expires=", b"Expires=x"),
            "Invalid date (should be seconds since epoch)",
        ),
        (
            lambda q: q.replace(b"Expires=", b"Expires=-"),
            "Invalid date (should be seconds since epoch)",
        ),
        (
            lambda q: q.replace(b"AWSAccessKeyId=", b"Other="),
            "Query-string authentication requires",
        ),
        (lambda q: q.replace(b"Expires=", b"Later="), "Query-string authentication requires"),
        (
            lambda q: q.replace(b"Signature=", b"Signature=&x="),
            "Query-string authentication requires",
        ),
    ],
)
def test_malformed_query_auth(edit: Any, message: str) -> None:
    request = presigned()
    failure = failure_of({**request, "raw_query": edit(request["raw_query"])})
    assert (failure.code, failure.status) == ("AccessDenied", 403)
    assert failure.message.startswith(message)


def test_unescaped_plus_in_signature_is_read_as_plus() -> None:
    """Base64 holds `+`; a URL that left it unescaped still verifies (`+` reads as space)."""
    expires = int(datetime.now(UTC).timestamp()) + 600
    while "+" not in (signature := sigv2.sign(SK, f"GET\n\n\n{expires}\n/bkt/k")):
        expires += 1
    query = f"AWSAccessKeyId={AK}&Expires={expires}&Signature={signature}".encode()
    request = {"method": "GET", "raw_path": b"/bkt/k", "raw_query": query, "headers": []}
    assert check(request) == AK
    escaped = query.replace(b"+", b"%2B")
    assert check({**request, "raw_query": escaped}) == AK


def test_request_time_must_be_within_fifteen_minutes() -> None:
    request = wire(header_signed("GET", f"{ENDPOINT}/bkt/k"))
    now = datetime.now(UTC)
    assert check(request, now=now + timedelta(minutes=14)) == AK
    for moment in (now + timedelta(minutes=16), now - timedelta(minutes=16)):
        failure = failure_of(request, now=moment)
        assert (failure.code, failure.status) == ("RequestTimeTooSkewed", 403)
        assert failure.fields["MaxAllowedSkewMilliseconds"] == "900000"


@pytest.mark.parametrize(
    ("date", "expected"),
    [
        ("Bad Date", "AccessDenied"),
        ("", "AccessDenied"),
        ("Tue, 07 Jul 1950 21:53:04 GMT", "AccessDenied"),  # before the epoch: invalid
        ("Tue, 07 Jul 2010 21:53:04 GMT", "RequestTimeTooSkewed"),
        ("Tue, 07 Jul 9999 21:53:04 GMT", "RequestTimeTooSkewed"),
    ],
)
def test_x_amz_date_is_the_request_time(date: str, expected: str) -> None:
    """As ceph's s3-tests check with a SigV2 client adding x-amz-date."""
    request = wire(header_signed("PUT", f"{ENDPOINT}/bkt/k", {"x-amz-date": date}))
    assert code(request) == expected


def test_x_amz_date_empties_the_date_line() -> None:
    stamp = email.utils.formatdate(usegmt=True)
    headers = [(b"host", DOMAIN.encode()), (b"x-amz-date", stamp.encode()), (b"date", b"junk")]
    to_sign = f"GET\n\n\n\nx-amz-date:{stamp}\n/bkt/k"
    signature = sigv2.sign(SK, to_sign)
    request = dict(
        method="GET",
        raw_path=b"/bkt/k",
        raw_query=b"",
        headers=[*headers, (b"authorization", f"AWS {AK}:{signature}".encode())],
    )
    assert check(request) == AK


def test_no_date_at_all() -> None:
    request = wire(header_signed("GET", f"{ENDPOINT}/bkt/k"))
    undated = {**request, "headers": [(n, v) for n, v in request["headers"] if n != b"date"]}
    failure = failure_of(undated)
    assert (failure.code, failure.message) == (
        "AccessDenied",
        "AWS authentication requires a valid Date or x-amz-date header",
    )


@pytest.mark.parametrize(
    "value", ["AWS HAHAHA", "AWS", "AWS :sig", "AWS key:", "AWS  key:sig", "AWS key: sig"]
)
def test_malformed_authorization_header(value: str) -> None:
    """ceph's s3-tests: `AWS HAHAHA` is 400 InvalidArgument."""
    request = wire(header_signed("GET", f"{ENDPOINT}/bkt/k"))
    failure = failure_of(replace_header(request, b"authorization", value.encode()))
    assert (failure.code, failure.status) == ("InvalidArgument", 400)


def test_mismatch_reports_the_string_to_sign_not_the_signature() -> None:
    request = wire(header_signed("GET", f"{ENDPOINT}/bkt/k", secret="wrong"))
    failure = failure_of(request)
    assert failure.code == "SignatureDoesNotMatch"
    assert failure.fields["AWSAccessKeyId"] == AK
    assert failure.fields["StringToSign"].endswith("\n/bkt/k")
    to_sign = failure.fields["StringToSign"].encode()
    assert bytes.fromhex(failure.fields["StringToSignBytes"].replace(" ", "")) == to_sign
    signature = dict(request["headers"])[b"authorization"].decode().split(":")[1]
    assert all(signature not in value for value in (failure.message, *failure.fields.values()))
    assert SK not in repr(failure.fields)


def test_unknown_access_key() -> None:
    request = wire(header_signed("GET", f"{ENDPOINT}/bkt/k", key="NOBODY"))
    failure = failure_of(request)
    assert (failure.code, failure.fields["AWSAccessKeyId"]) == ("InvalidAccessKeyId", "NOBODY")


def test_signed_plus_cannot_be_replayed_as_a_space() -> None:
    url = f"{ENDPOINT}/bkt/k?response-content-type=a%2Bb%20c"
    request = wire(query_signed("GET", url))
    assert check(request) == AK
    replayed = request["raw_query"].replace(b"a%2Bb", b"a+b")
    assert code({**request, "raw_query": replayed}) == "SignatureDoesNotMatch"
    respelled = request["raw_query"].replace(b"%20c", b"+c")
    assert check({**request, "raw_query": respelled}) == AK  # the same value, as the app reads it


# --- the seam: one mechanism per request, the setting --------------------------------


def test_only_one_auth_mechanism() -> None:
    header = wire(header_signed("GET", f"{ENDPOINT}/bkt/k"))
    query = presigned()
    v4_query = b"X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=x"
    for request in (
        {**header, "raw_query": query["raw_query"]},
        {**query, "raw_query": query["raw_query"] + b"&" + v4_query},
        {**header, "raw_query": v4_query},
    ):
        failure = failure_of(request)
        assert (failure.code, failure.status) == ("InvalidArgument", 400)
        assert "Only one auth mechanism allowed" in failure.message


def test_an_empty_authorization_header_is_anonymous() -> None:
    for value in (b"", b"  "):
        request = dict(
            method="PUT", raw_path=b"/bkt", raw_query=b"", headers=[(b"authorization", value)]
        )
        assert authenticator().authenticate(**request, now=datetime.now(UTC)) is ANONYMOUS
    with_query = {**presigned(), "headers": [(b"authorization", b"")]}
    assert check(with_query) == AK


def test_principal_tells_policies_how_it_signed() -> None:
    """s3:signatureversion and s3:authType, as AWS sets them for bucket policies."""
    client = boto3.client(
        "s3",
        endpoint_url=ENDPOINT,
        aws_access_key_id=AK,
        aws_secret_access_key=SK,
        region_name="us-east-1",
        config=Config(signature_version="s3v4"),
    )
    v4_url = client.generate_presigned_url("get_object", Params={"Bucket": "bkt", "Key": "k"})
    cases = [
        (wire(header_signed("GET", f"{ENDPOINT}/bkt/k")), "AWS", "REST-HEADER"),
        (presigned(), "AWS", "REST-QUERY-STRING"),
        (wire(AWSRequest("GET", v4_url).prepare()), "AWS4-HMAC-SHA256", "REST-QUERY-STRING"),
    ]
    for request, version, auth_type in cases:
        principal = authenticator().authenticate(**request, now=datetime.now(UTC))
        expected = {"s3:signatureversion": version, "s3:authType": auth_type}
        assert principal.condition_keys() == expected
    assert ANONYMOUS.condition_keys() == {}


def test_sigv2_can_be_turned_off() -> None:
    for request in (wire(header_signed("GET", f"{ENDPOINT}/bkt/k")), presigned()):
        failure = failure_of(request, sigv2=False)
        assert (failure.code, failure.status) == ("InvalidRequest", 400)
        assert "AWS4-HMAC-SHA256" in failure.message
    unsigned = {"method": "GET", "raw_path": b"/bkt/k", "raw_query": b"", "headers": []}
    assert authenticator(sigv2=False).authenticate(**unsigned, now=datetime.now(UTC)) is ANONYMOUS


def test_access_log_names_the_sigv2_key() -> None:
    header = wire(header_signed("GET", f"{ENDPOINT}/bkt/k"))
    query = presigned()
    for request in (header, query):
        scope = {"headers": request["headers"], "query_string": request["raw_query"]}
        assert claimed_access_key(scope) == AK


# --- POST Object forms signed with SigV2 ------------------------------------------------


def post_fields(**config: Any) -> dict[str, str]:
    client = boto3.client(
        "s3",
        endpoint_url=ENDPOINT,
        aws_access_key_id=AK,
        aws_secret_access_key=SK,
        region_name="us-east-1",
        config=Config(**config),
    )
    post = client.generate_presigned_post("bkt", "k")
    return {name.lower(): value for name, value in post["fields"].items()}


def test_boto3_default_post_policy_is_sigv2_and_verifies() -> None:
    fields = post_fields()
    assert "signature" in fields and "x-amz-signature" not in fields
    assert verify_signature(fields, {AK: SK}.get, "us-east-1") == AK
    principal = authenticator().verify_post_signature(fields)
    assert principal.access_key == AK
    assert principal.condition_keys() == {"s3:signatureversion": "AWS", "s3:authType": "POST"}
    policy = base64.b64decode(fields["policy"]).replace(b'"k"', b'"j"')
    forged = {**fields, "policy": base64.b64encode(policy).decode()}
    for bad, expected in (
        (forged, "SignatureDoesNotMatch"),
        ({**fields, "signature": "é" + fields["signature"][1:]}, "SignatureDoesNotMatch"),
        ({**fields, "awsaccesskeyid": "NOBODY"}, "InvalidAccessKeyId"),
    ):
        with pytest.raises(AuthFailure) as failure:
            verify_signature(bad, {AK: SK}.get, "us-east-1")
        assert failure.value.code == expected
    with pytest.raises(AuthFailure) as failure:
        verify_signature(fields, {AK: "other"}.get, "us-east-1")
    assert failure.value.code == "SignatureDoesNotMatch"


@pytest.mark.parametrize(
    ("missing", "label"), [("awsaccesskeyid", "AWSAccessKeyId"), ("signature", "Signature")]
)
def test_post_form_missing_sigv2_field(missing: str, label: str) -> None:
    fields = {k: v for k, v in post_fields().items() if k != missing}
    with pytest.raises(AuthFailure) as failure:
        verify_signature(fields, {AK: SK}.get, "us-east-1")
    assert (failure.value.code, failure.value.fields["ArgumentName"]) == ("InvalidArgument", label)


def test_post_form_sigv2_off() -> None:
    strict = authenticator(sigv2=False)
    with pytest.raises(AuthFailure) as failure:
        strict.verify_post_signature(post_fields())
    assert (failure.value.code, failure.value.status) == ("InvalidRequest", 400)
    v4 = post_fields(signature_version="s3v4")
    assert "x-amz-signature" in v4
    principal = strict.verify_post_signature(v4)
    assert (principal.access_key, principal.signature_version) == (AK, "AWS4-HMAC-SHA256")
    with pytest.raises(AuthFailure) as failure:  # a form with no signature at all
        strict.verify_post_signature({"policy": v4["policy"]})
    assert failure.value.code == "InvalidArgument"


# --- anything a client sends: a result or an S3 error, never another exception ----------

_authorization_values = (
    st.builds(
        lambda key, signature: f"AWS {key}:{signature}",
        st.sampled_from([AK, "", "NOBODY"]) | fuzz.text,
        st.sampled_from(["c2ln", ""]) | fuzz.text,
    )
    | fuzz.text
)
_v2_queries = st.builds(
    lambda expires, rest: f"AWSAccessKeyId={AK}&Signature=c2ln&Expires={expires}&{rest}",
    st.integers(-(10**20), 10**20).map(str) | fuzz.text,
    fuzz.text,
)
_dates = (
    st.sampled_from(["Mon, 31 Dec 9999 23:59:59 -0100", "Thu, 01 Jan 0001 00:00:00 +0100", ""])
    | fuzz.text
)


@given(
    method=st.sampled_from(["GET", "PUT", "POST"]) | fuzz.text,
    path=fuzz.raw_bytes | fuzz.text,
    query=_v2_queries | fuzz.raw_bytes | fuzz.text,
    headers=st.lists(fuzz.header, max_size=6),
    authorization=_authorization_values,
    date=_dates,
    amz_date=st.none() | _dates,
    moment=fuzz.now,
    host=st.sampled_from([f"bkt.{DOMAIN}", DOMAIN, ""]) | fuzz.text,
)
def test_sigv2_never_raises_anything_else(
    method: str,
    path: bytes | str,
    query: bytes | str,
    headers: list,
    authorization: str,
    date: str,
    amz_date: str | None,
    moment: datetime,
    host: str,
) -> None:
    pairs = [("date", date), ("host", host), *headers]
    if amz_date is not None:
        pairs.append(("x-amz-date", amz_date))
    raw = dict(method=method, raw_path=_raw(path), raw_query=_raw(query))
    seam = authenticator()
    _outcome(lambda: seam.authenticate(**raw, headers=pairs, now=moment))
    with_header = [("authorization", authorization), *pairs]
    _outcome(lambda: seam.authenticate(**raw, headers=with_header, now=moment))
    lookup = {AK: SK}.get
    _outcome(
        lambda: sigv2.verify_header_auth(**raw, headers=with_header, lookup=lookup, now=moment)
    )
    _outcome(lambda: sigv2.verify_query_auth(**raw, headers=with_header, lookup=lookup, now=moment))


def _outcome(call: Any) -> Any:
    """A result, or an AuthFailure with a 4xx status whose message and fields render as
    XML the way the app renders error documents; nothing else may escape."""
    try:
        return call()
    except AuthFailure as failure:
        assert failure.code and 400 <= failure.status < 500
        texts = [failure.message, *failure.fields.values()]
        document = "<E>" + "".join(f"<F>{escape_lossy(t)}</F>" for t in texts) + "</E>"
        ElementTree.fromstring(document.encode("utf-8"))
        return failure


def _raw(value: bytes | str) -> bytes:
    return value if isinstance(value, bytes) else value.encode("utf-8", "surrogatepass")


@given(
    fields=st.dictionaries(st.sampled_from(["awsaccesskeyid", "signature", "policy"]), fuzz.text)
)
def test_sigv2_post_fields_verify_or_fail(fields: dict[str, str]) -> None:
    _outcome(lambda: verify_signature(fields, {AK: SK}.get, "us-east-1"))
