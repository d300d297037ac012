"""Malformed requests get the S3 error AWS returns, and stored data stays as it was."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError

from tests.integration.conftest import error_code

BOMB = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>
<Delete><Object><Key>&lol3;</Key></Object></Delete>"""
EXTERNAL = b"""<?xml version="1.0"?>
<!DOCTYPE d [<!ENTITY x SYSTEM "file:///etc/passwd">]><Delete><Object><Key>&x;</Key></Object></Delete>"""


@pytest.fixture
def stored(s3, bucket):
    s3.put_object(Bucket=bucket, Key="precious", Body=b"keep me")
    yield bucket
    assert s3.get_object(Bucket=bucket, Key="precious")["Body"].read() == b"keep me"


@pytest.mark.parametrize("body", [b"<Delete><Object>", b"not xml at all", BOMB, EXTERNAL, b""])
def test_bad_delete_xml(http, stored, body):
    response = http.post(f"/{stored}?delete", content=body, headers={"Content-MD5": _md5(body)})
    assert response.status_code == 400
    assert "<Code>MalformedXML</Code>" in response.text


def test_delete_objects_requires_integrity_header(http, stored):
    body = b"<Delete><Object><Key>precious</Key></Object></Delete>"
    response = http.post(f"/{stored}?delete", content=body)
    assert response.status_code == 400 and "InvalidRequest" in response.text
    response = http.post(f"/{stored}?delete", content=body, headers={"Content-MD5": _md5(b"x")})
    assert response.status_code == 400 and "BadDigest" in response.text


def test_delete_objects_limit(http, stored):
    body = b"<Delete>" + b"<Object><Key>k</Key></Object>" * 1001 + b"</Delete>"
    response = http.post(f"/{stored}?delete", content=body, headers={"Content-MD5": _md5(body)})
    assert response.status_code == 400 and "MalformedXML" in response.text


def test_bad_complete_xml(s3, http, stored):
    upload = s3.create_multipart_upload(Bucket=stored, Key="mp")["UploadId"]
    for body in (
        b"<CompleteMultipartUpload>",
        BOMB,
        b"<CompleteMultipartUpload></CompleteMultipartUpload>",
        b"<CompleteMultipartUpload><Part><PartNumber>x</PartNumber></Part>"
        b"</CompleteMultipartUpload>",
    ):
        response = http.post(f"/{stored}/mp?uploadId={upload}", content=body)
        assert response.status_code == 400 and "MalformedXML" in response.text
    s3.abort_multipart_upload(Bucket=stored, Key="mp", UploadId=upload)


def test_truncated_body_leaves_old_object(raw, s3, stored):
    """A client that promises 1000 bytes and hangs up after 10 stores nothing."""
    raw(
        f"PUT /{stored}/precious HTTP/1.1\r\nHost: {{host}}\r\n".encode()
        + b"Content-Length: 1000\r\n\r\n0123456789",
        hang_up=True,
    )
    assert s3.get_object(Bucket=stored, Key="precious")["Body"].read() == b"keep me"
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=stored).get("Contents", [])]
    assert keys == ["precious"]


def test_missing_content_length(raw, stored):
    """A PUT with neither Content-Length nor a chunked body is 411; a chunked one of
    unknown length is stored (test_exact_answers), but one cut off leaves the old object."""
    reply = raw(
        f"PUT /{stored}/precious HTTP/1.1\r\nHost: {{host}}\r\n".encode()
        + b"Connection: close\r\n\r\n"
    )
    assert reply.startswith("HTTP/1.1 411") and "MissingContentLength" in reply
    raw(
        f"PUT /{stored}/precious HTTP/1.1\r\nHost: {{host}}\r\n".encode()
        + b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n",
        hang_up=True,
    )


def test_expect_continue(raw, stored):
    """Expect: 100-continue uploads are refused before the body is sent, or invited."""
    request = (
        "PUT /{bucket}/fresh HTTP/1.1\r\nHost: {{host}}\r\nContent-Length: 5\r\n"
        "Expect: 100-continue\r\nConnection: close\r\n\r\n"
    )
    reply = raw(request.format(bucket="no-such-bucket-x").encode())
    assert reply.startswith("HTTP/1.1 404") and "NoSuchBucket" in reply
    assert "100 Continue" not in reply
    reply = raw(request.format(bucket=stored).encode() + b"hello")
    assert reply.startswith("HTTP/1.1 100 Continue") and "HTTP/1.1 200 OK" in reply


def test_bad_chunk_framing(http, stored):
    headers = {
        "x-amz-content-sha256": "STREAMING-UNSIGNED-PAYLOAD-TRAILER",
        "content-encoding": "aws-chunked",
        "x-amz-decoded-content-length": "5",
    }
    for body in (b"zz\r\nhello\r\n0\r\n\r\n", b"5\r\nhelloEXTRA\r\n0\r\n\r\n", b"5\r\nhel"):
        response = http.put(f"/{stored}/precious", content=body, headers=headers)
        assert response.status_code == 400, body


def test_unknown_trailer_and_checksum_headers(http, stored):
    response = http.put(
        f"/{stored}/precious", content=b"x", headers={"x-amz-checksum-crc32": "not base64"}
    )
    assert response.status_code == 400 and "InvalidRequest" in response.text
    response = http.put(
        f"/{stored}/precious",
        content=b"x",
        headers={"x-amz-checksum-crc32": "AAAAAA==", "x-amz-checksum-sha1": "x"},
    )
    assert response.status_code == 400


@pytest.mark.parametrize(
    "query",
    ["max-keys=-1", "max-keys=abc", "encoding-type=base64", "list-type=2&continuation-token=%%%"],
)
def test_bad_list_parameters(http, stored, query):
    response = http.get(f"/{stored}?{query}")
    assert response.status_code == 400 and "InvalidArgument" in response.text


def test_unknown_upload_and_part_numbers(s3, stored):
    with pytest.raises(ClientError) as info:
        s3.upload_part(Bucket=stored, Key="k", UploadId="nope", PartNumber=1, Body=b"x")
    assert error_code(info.value) == "NoSuchUpload"
    upload = s3.create_multipart_upload(Bucket=stored, Key="k")["UploadId"]
    with pytest.raises(ClientError) as info:
        s3.complete_multipart_upload(
            Bucket=stored,
            Key="k",
            UploadId=upload,
            MultipartUpload={"Parts": [{"PartNumber": 7, "ETag": '"abc"'}]},
        )
    assert error_code(info.value) == "InvalidPart"
    s3.abort_multipart_upload(Bucket=stored, Key="k", UploadId=upload)


def test_method_not_allowed(http, stored):
    # A bucket POST that is not a form upload: S3's 412, naming the enclosure type.
    response = http.post(f"/{stored}", content=b"x=1")
    assert response.status_code == 412 and "<Code>PreconditionFailed</Code>" in response.text
    assert "multipart/form-data" in response.text
    assert http.request("PATCH", f"/{stored}/precious").status_code == 405


def _md5(body: bytes) -> str:
    import base64
    import hashlib

    return base64.b64encode(hashlib.md5(body).digest()).decode()


@pytest.mark.parametrize(
    ("target", "code"),
    [
        ("/{bucket}/obj%00", "NoSuchKey"),
        ("/{bucket}/obj%01%ef%bf%bf", "NoSuchKey"),
        ("/%01{bucket}/obj", "InvalidBucketName"),
        ("/{bucket}/precious?response-expires=a%00b", "InvalidArgument"),
    ],
)
def test_error_documents_echoing_unsendable_characters_parse(http, stored, target, code):
    """A value XML 1.0 cannot carry (NUL, other controls, U+FFFF) is echoed as U+FFFD:
    a character reference such as &#x0; makes every XML parser, botocore's too, refuse the
    error document, and the client loses the S3 error code."""
    from xml.etree.ElementTree import fromstring

    response = http.get(target.format(bucket=stored))
    assert 400 <= response.status_code < 500
    root = fromstring(response.content)  # raises on &#x0; and the like
    assert root.findtext("Code") == code


def test_http11_request_without_host_is_refused(raw, stored):
    """RFC 9112: an HTTP/1.1 request without Host is a 400 (HTTP/1.0 needs none)."""
    target = f"GET /{stored}/precious HTTP/".encode()
    refused = raw(target + b"1.1\r\nConnection: close\r\n\r\n")
    assert refused.startswith("HTTP/1.1 400 ") and "<Code>InvalidRequest</Code>" in refused
    assert raw(target + b"1.0\r\n\r\n").startswith("HTTP/1.1 200 ")
