"""Hostile numbers, ranges, header values and query parameters: each gets the 4xx S3
answers (never a 500 or a dropped connection) and leaves stored data as it was."""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from botocore.exceptions import ClientError

from shoal.app.server import SyncServer
from tests.integration.conftest import error_code
from tests.integration.test_bad_input import _md5

BODY = b"0123456789"
#: Numbers no S3 client sends: past Python's int() digit limit, and Unicode digits
#: (superscript two, Arabic-Indic three, fullwidth one) that int() or isdigit() take.
BAD_NUMBERS = ["9" * 5000, "\u00b2", "\u0663", "\uff11"]


@pytest.fixture
def stored(s3: Any, bucket: str) -> Iterator[str]:
    s3.put_object(Bucket=bucket, Key="obj", Body=BODY)
    yield bucket
    assert s3.get_object(Bucket=bucket, Key="obj")["Body"].read() == BODY


@pytest.fixture
def upload(s3: Any, stored: str) -> Iterator[str]:
    """An open multipart upload of `mp` with one part."""
    upload_id = s3.create_multipart_upload(Bucket=stored, Key="mp")["UploadId"]
    s3.upload_part(Bucket=stored, Key="mp", UploadId=upload_id, PartNumber=1, Body=b"part")
    yield upload_id
    s3.abort_multipart_upload(Bucket=stored, Key="mp", UploadId=upload_id)


def _error(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert f"<Code>{code}</Code>" in response.text, response.text


def _complete_body(number: str) -> bytes:
    return (
        "<CompleteMultipartUpload><Part><PartNumber>"
        + number
        + '</PartNumber><ETag>"x"</ETag></Part></CompleteMultipartUpload>'
    ).encode()


def _cors_body(max_age: str) -> bytes:
    return (
        "<CORSConfiguration><CORSRule><AllowedOrigin>*</AllowedOrigin>"
        "<AllowedMethod>GET</AllowedMethod><MaxAgeSeconds>"
        + max_age
        + "</MaxAgeSeconds></CORSRule></CORSConfiguration>"
    ).encode()


#: (operation and parameter, request(http, bucket, upload id, number), status, code)
NUMBER_CASES: list[
    tuple[str, Callable[[httpx.Client, str, str, str], httpx.Response], int, str]
] = [
    (
        "GetObject partNumber",
        lambda h, b, u, n: h.get(f"/{b}/obj", params={"partNumber": n}),
        400,
        "InvalidArgument",
    ),
    (
        "UploadPart partNumber",
        lambda h, b, u, n: h.put(f"/{b}/mp", params={"partNumber": n, "uploadId": u}, content=b"x"),
        400,
        "InvalidArgument",
    ),
    (
        "UploadPartCopy partNumber",
        lambda h, b, u, n: h.put(
            f"/{b}/mp",
            params={"partNumber": n, "uploadId": u},
            headers={"x-amz-copy-source": f"{b}/obj"},
        ),
        400,
        "InvalidArgument",
    ),
    (
        "CompleteMultipartUpload PartNumber",
        lambda h, b, u, n: h.post(f"/{b}/mp", params={"uploadId": u}, content=_complete_body(n)),
        400,
        "MalformedXML",
    ),
    (
        "ListParts max-parts",
        lambda h, b, u, n: h.get(f"/{b}/mp", params={"uploadId": u, "max-parts": n}),
        400,
        "InvalidArgument",
    ),
    (
        "ListParts part-number-marker",
        lambda h, b, u, n: h.get(f"/{b}/mp", params={"uploadId": u, "part-number-marker": n}),
        400,
        "InvalidArgument",
    ),
    (
        "ListMultipartUploads max-uploads",
        lambda h, b, u, n: h.get(f"/{b}", params={"uploads": "", "max-uploads": n}),
        400,
        "InvalidArgument",
    ),
    (
        "ListObjects max-keys",
        lambda h, b, u, n: h.get(f"/{b}", params={"max-keys": n}),
        400,
        "InvalidArgument",
    ),
    (
        "ListObjectsV2 max-keys",
        lambda h, b, u, n: h.get(f"/{b}", params={"list-type": "2", "max-keys": n}),
        400,
        "InvalidArgument",
    ),
    (
        "PutBucketCors MaxAgeSeconds",
        lambda h, b, u, n: h.put(
            f"/{b}?cors", content=_cors_body(n), headers={"Content-MD5": _md5(_cors_body(n))}
        ),
        400,
        "MalformedXML",
    ),
    (
        "UploadPartCopy x-amz-copy-source-range",
        lambda h, b, u, n: h.put(
            f"/{b}/mp",
            params={"partNumber": "2", "uploadId": u},
            headers=[
                (b"x-amz-copy-source", f"{b}/obj".encode()),
                (b"x-amz-copy-source-range", f"bytes=0-{n}".encode()),
            ],
        ),
        400,
        "InvalidArgument",
    ),
]


@pytest.mark.parametrize("number", BAD_NUMBERS, ids=["5000-digits", "sup2", "arabic3", "full1"])
@pytest.mark.parametrize("case", NUMBER_CASES, ids=[c[0] for c in NUMBER_CASES])
def test_client_numbers(
    http: httpx.Client, stored: str, upload: str, case: tuple, number: str
) -> None:
    """Every number a client sends is ASCII digits of bounded length, or S3's 400."""
    _, send, status, code = case
    _error(send(http, stored, upload, number), status, code)


def test_head_part_number(http: httpx.Client, stored: str) -> None:
    for number in BAD_NUMBERS:
        assert http.head(f"/{stored}/obj", params={"partNumber": number}).status_code == 400


@pytest.mark.parametrize(
    "value",
    ["bytes=\u00b2-3", "bytes=\u0663-5", "bytes=\uff11-3", "bytes=0-\u00b2", "bytes=-\u0663"],
)
def test_unicode_range_digits_are_ignored(http: httpx.Client, stored: str, value: str) -> None:
    """A Range that is not ASCII digits is malformed, and S3 ignores malformed ranges."""
    response = http.get(f"/{stored}/obj", headers=[(b"Range", value.encode())])
    assert response.status_code == 200 and response.content == BODY


@pytest.mark.parametrize(
    ("value", "status", "content"),
    [
        ("bytes=0-" + "9" * 5000, 206, BODY),  # the last byte is past the end: clamped
        ("bytes=-" + "9" * 5000, 206, BODY),  # a suffix longer than the object: all of it
        ("bytes=" + "9" * 5000 + "-", 416, None),  # starts past the end
        ("bytes=" + "9" * 4000 + "-" + "9" * 4000, 416, None),  # under the 8 KB header cap
    ],
)
def test_long_range_numbers(
    http: httpx.Client, stored: str, value: str, status: int, content: bytes | None
) -> None:
    response = http.get(f"/{stored}/obj", headers={"Range": value})
    assert response.status_code == status, response.text
    if content is not None:
        assert response.content == content
        assert response.headers["content-range"] == f"bytes 0-9/{len(BODY)}"
    else:
        assert "<Code>InvalidRange</Code>" in response.text


@pytest.mark.parametrize("value", ["bytes=10-", "bytes=10-10", "bytes=11-", "bytes=-0"])
def test_range_past_the_end_is_416(http: httpx.Client, stored: str, value: str) -> None:
    """A range whose first byte is the object's size (or after) is unsatisfiable (RFC 9110)."""
    response = http.get(f"/{stored}/obj", headers={"Range": value})
    _error(response, 416, "InvalidRange")
    assert response.headers["content-range"] == f"bytes */{len(BODY)}"


def test_range_edges(http: httpx.Client, stored: str) -> None:
    last = http.get(f"/{stored}/obj", headers={"Range": "bytes=9-"})
    assert last.status_code == 206 and last.content == b"9"
    assert last.headers["content-range"] == "bytes 9-9/10"
    suffix = http.get(f"/{stored}/obj", headers={"Range": "bytes=-3"})
    assert suffix.status_code == 206 and suffix.content == b"789"
    # last < first is not a valid range: ignored.
    reversed_ = http.get(f"/{stored}/obj", headers={"Range": "bytes=5-2"})
    assert reversed_.status_code == 200 and reversed_.content == BODY


@pytest.mark.parametrize("value", ["bytes=0-", "bytes=0-0", "bytes=-1", "bytes=-0"])
def test_any_range_of_an_empty_object_is_416(
    http: httpx.Client, s3: Any, bucket: str, value: str
) -> None:
    s3.put_object(Bucket=bucket, Key="empty", Body=b"")
    _error(http.get(f"/{bucket}/empty", headers={"Range": value}), 416, "InvalidRange")
    whole = http.get(f"/{bucket}/empty")
    assert whole.status_code == 200 and whole.content == b""


@pytest.mark.parametrize("param", ["response-content-type", "response-cache-control"])
@pytest.mark.parametrize(
    "value", ["a\r\nx-injected: yes", "a\nb", "a\x00b", "a\x7fb", "a\x01b", "\u2603"]
)
def test_response_overrides_must_be_header_values(
    http: httpx.Client, stored: str, param: str, value: str
) -> None:
    """A response-* override that cannot be a header value is refused, not sent."""
    for method in ("GET", "HEAD"):
        response = http.request(method, f"/{stored}/obj", params={param: value})
        assert response.status_code == 400
        assert "x-injected" not in response.headers
    response = http.get(f"/{stored}/obj", params={param: value})
    _error(response, 400, "InvalidArgument")
    assert f"<ArgumentName>{param}</ArgumentName>" in response.text
    if not value.isascii():
        assert "cannot be represented using ISO-8859-1" in response.text  # S3's message


def test_latin1_response_override_is_sent(http: httpx.Client, stored: str) -> None:
    response = http.get(f"/{stored}/obj", params={"response-content-disposition": "caf\u00e9"})
    assert response.status_code == 200 and response.content == BODY
    assert (b"content-disposition", b"caf\xe9") in response.headers.raw


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("x-amz-meta-note", "a\r\nx-injected: yes"),
        ("x-amz-meta-note", "\u2603"),
        ("x-amz-meta-bad name", "v"),
        ("Content-Type", "text/plain\r\nx-injected: yes"),
        ("Cache-Control", "a\x00b"),
    ],
)
def test_post_object_refuses_unsendable_headers(
    http: httpx.Client, s3: Any, stored: str, field: str, value: str
) -> None:
    """Form fields become stored headers: one that could not be sent back is refused,
    and nothing is stored (every later GET of the object would fail)."""
    response = http.post(
        f"/{stored}",
        data={"key": "posted", field: value},
        files={"file": ("f.txt", b"content")},
    )
    _error(response, 400, "InvalidArgument")
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=stored).get("Contents", [])]
    assert keys == ["obj"]


def test_cors_rule_values_must_be_header_values(http: httpx.Client, bucket: str) -> None:
    """ExposeHeader (and every rule value) is echoed in response headers."""
    body = (
        b"<CORSConfiguration><CORSRule><AllowedOrigin>*</AllowedOrigin>"
        b"<AllowedMethod>GET</AllowedMethod><ExposeHeader>a&#13;&#10;x-injected: 1</ExposeHeader>"
        b"</CORSRule></CORSConfiguration>"
    )
    response = http.put(f"/{bucket}?cors", content=body, headers={"Content-MD5": _md5(body)})
    _error(response, 400, "MalformedXML")
    assert http.get(f"/{bucket}?cors").status_code == 404


def test_cors_max_age_round_trips(http: httpx.Client, bucket: str) -> None:
    body = _cors_body("0600")
    response = http.put(f"/{bucket}?cors", content=body, headers={"Content-MD5": _md5(body)})
    assert response.status_code == 200, response.text
    assert "<MaxAgeSeconds>600</MaxAgeSeconds>" in http.get(f"/{bucket}?cors").text
    too_big = _cors_body(str(2**31))
    response = http.put(f"/{bucket}?cors", content=too_big, headers={"Content-MD5": _md5(too_big)})
    _error(response, 400, "MalformedXML")


@pytest.mark.parametrize("value", ["3", "1", "", "x", "02", "\u0662"])
def test_unknown_list_type(http: httpx.Client, stored: str, value: str) -> None:
    _error(http.get(f"/{stored}", params={"list-type": value}), 400, "InvalidArgument")


@pytest.mark.parametrize(
    "params",
    [
        {"marker": "a\x00b"},
        {"delimiter": "\x00"},
        {"prefix": "\x00"},
        {"list-type": "2", "start-after": "\x00"},
        {"marker": "../../etc", "delimiter": "/"},
        {"prefix": "x" * 1000 + "/", "delimiter": "/"},
        {"uploads": "", "key-marker": "\x00", "prefix": "\x01", "delimiter": "\x00"},
    ],
)
def test_listing_parameters_with_nul(http: httpx.Client, stored: str, params: dict) -> None:
    """NUL and path-like markers are plain text to a listing: an answer, never a 500."""
    response = http.get(f"/{stored}", params={**params, "encoding-type": "url"})
    assert response.status_code == 200, response.text


@pytest.mark.parametrize(
    "params",
    [
        {"marker": "a\x00b"},
        {"delimiter": "\x1f"},
        {"prefix": "\x00"},
        {"list-type": "2", "start-after": "\x0b"},
        {"uploads": "", "key-marker": "\x00"},
        {"uploads": "", "upload-id-marker": "\x00", "encoding-type": "url"},
        {"uploads": "", "prefix": "\ufffe"},
    ],
)
def test_listing_parameters_xml_cannot_carry(http: httpx.Client, stored: str, params: dict) -> None:
    """Echoed back raw, these would make the answer unparseable XML 1.0 (botocore then
    turns the 200 into a 500): refused unless encoding-type=url encodes them."""
    name = next(n for n in params if n not in ("list-type", "uploads", "encoding-type"))
    response = http.get(f"/{stored}", params=params)
    _error(response, 400, "InvalidArgument")
    assert f"<ArgumentName>{name}</ArgumentName>" in response.text


def test_boto3_listing_with_control_characters(s3: Any, stored: str, upload: str) -> None:
    """boto3 asks ListObjects(V2) for encoding-type=url, not ListMultipartUploads."""
    assert s3.list_objects(Bucket=stored, Marker="a\x00")["IsTruncated"] is False
    assert s3.list_objects_v2(Bucket=stored, StartAfter="\x01")["KeyCount"] == 1
    with pytest.raises(ClientError) as info:
        s3.list_multipart_uploads(Bucket=stored, KeyMarker="\x00")
    assert error_code(info.value) == "InvalidArgument"
    listed = s3.list_multipart_uploads(Bucket=stored, KeyMarker="\x00", EncodingType="url")
    assert listed["ResponseMetadata"]["HTTPStatusCode"] == 200


@pytest.mark.parametrize(
    "token",
    [
        "%%%",
        "x" * 5000,
        base64.urlsafe_b64encode(b"2:obj").decode(),  # another format version
        base64.urlsafe_b64encode(b"1:\xff\xfe").decode(),  # not UTF-8
        base64.b64encode(b"\xfb\xff1:a").decode(),  # standard alphabet
    ],
)
def test_bad_continuation_tokens(http: httpx.Client, stored: str, token: str) -> None:
    response = http.get(f"/{stored}", params={"list-type": "2", "continuation-token": token})
    _error(response, 400, "InvalidArgument")


@pytest.mark.parametrize("upload_id", ["\x00", "a\x00" * 10, "../" * 8 + "x", "x" * 3000, "é" * 20])
def test_upload_ids_no_store_issued(
    http: httpx.Client, s3: Any, stored: str, upload: str, upload_id: str
) -> None:
    """Every multipart operation answers NoSuchUpload (404) for an id that is not one a
    store issues; in erasure mode NUL used to reach the drives (503, drive errors)."""
    body = _complete_body("1")
    for method, params, content in [
        ("GET", {}, None),
        ("PUT", {"partNumber": "1"}, b"x"),
        ("POST", {}, body),
        ("DELETE", {}, None),
    ]:
        response = http.request(
            method, f"/{stored}/mp", params={"uploadId": upload_id, **params}, content=content
        )
        _error(response, 404, "NoSuchUpload")
    parts = s3.list_parts(Bucket=stored, Key="mp", UploadId=upload)["Parts"]
    assert [p["PartNumber"] for p in parts] == [1]


@pytest.mark.parametrize(
    "source",
    ["{b}/obj%ff", "{b}/obj?versionId=nullx", "{b}/obj?versionId=abc", "{b}", "/{b}/", "Bad_B/obj"],
)
def test_bad_copy_sources(http: httpx.Client, s3: Any, stored: str, source: str) -> None:
    """A copy source that names no key we could hold is InvalidArgument, never a copy of
    another key (invalid UTF-8 used to become U+FFFD)."""
    response = http.put(f"/{stored}/copy", headers={"x-amz-copy-source": source.format(b=stored)})
    _error(response, 400, "InvalidArgument")
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=stored).get("Contents", [])]
    assert keys == ["obj"]


def test_cors_rule_with_two_wildcards(http: httpx.Client, bucket: str) -> None:
    """S3 allows one `*` per AllowedOrigin/AllowedHeader (InvalidRequest otherwise)."""
    for element in ("AllowedOrigin", "AllowedHeader"):
        rule = f"<{element}>*a*a*a*a*a*a*b</{element}>"
        if element != "AllowedOrigin":
            rule += "<AllowedOrigin>*</AllowedOrigin>"
        body = (
            f"<CORSConfiguration><CORSRule>{rule}<AllowedMethod>GET</AllowedMethod>"
            "</CORSRule></CORSConfiguration>"
        ).encode()
        response = http.put(f"/{bucket}?cors", content=body, headers={"Content-MD5": _md5(body)})
        _error(response, 400, "InvalidRequest")
        assert "can not have more than one wildcard" in response.text


def test_many_wildcards_against_a_long_origin() -> None:
    """Wildcards are matched in linear time: a configured pattern with several `*` and an
    8 KB Origin used to backtrack for hours on the event loop (the client timed out)."""
    config = {
        "cors": {
            "enabled": True,
            "allowed_origins": ["*a*a*a*a*a*a*a*a*b"],
            "allowed_methods": ["GET"],
            "allowed_headers": ["*x*x*x*x*x*x*x*y"],
        }
    }
    with SyncServer(config) as server, httpx.Client(base_url=server.endpoint_url) as client:
        origin = "http://" + "a" * 8000
        response = client.options(
            "/any-bucket/k",
            headers={"Origin": origin, "Access-Control-Request-Method": "GET"},
            timeout=30,
        )
        assert response.status_code == 403
        response = client.options(
            "/any-bucket/k",
            headers={
                "Origin": "http://aaaaaaaab",
                "Access-Control-Request-Method": "GET",
                "Access-Control-Request-Headers": "x" * 8000,
            },
            timeout=30,
        )
        assert response.status_code == 403
        allowed = client.options(
            "/any-bucket/k",
            headers={"Origin": "http://aaaaaaaab", "Access-Control-Request-Method": "GET"},
        )
        assert allowed.status_code == 200
        assert allowed.headers["access-control-allow-origin"] == "http://aaaaaaaab"
