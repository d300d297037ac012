"""S3's exact answers (issue 15), each against the running server in every mode
(standalone and erasure-coded node, HTTP and HTTPS): digests, partNumber reads,
repeated completions, parts uploaded twice at once, chunked PUTs of unknown length,
non-ASCII metadata, empty continuation tokens, wildcard policy resources and
UploadPartCopy ranges."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from botocore.exceptions import ClientError

from shoal.app.server import SyncServer
from tests.integration.conftest import auth_config, error_code, signed_client

PART = 5 * 1024 * 1024


def _code(call: Any, **kwargs: Any) -> tuple[str, int]:
    with pytest.raises(ClientError) as info:
        call(**kwargs)
    return error_code(info.value), info.value.response["ResponseMetadata"]["HTTPStatusCode"]


def _error(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert f"<Code>{code}</Code>" in response.text


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


# --- digests -----------------------------------------------------------------------------


def test_wrong_checksum_is_bad_digest(http: httpx.Client, s3: Any, bucket: str) -> None:
    body = b"checksummed body"
    for name, wrong in (
        ("x-amz-checksum-crc32", _b64(b"\0\0\0\0")),
        ("x-amz-checksum-crc32c", _b64(b"\1\2\3\4")),
        ("x-amz-checksum-sha1", _b64(hashlib.sha1(b"other").digest())),
        ("x-amz-checksum-sha256", _b64(hashlib.sha256(b"other").digest())),
    ):
        _error(http.put(f"/{bucket}/c", content=body, headers={name: wrong}), 400, "BadDigest")
    assert _code(s3.head_object, Bucket=bucket, Key="c") == ("404", 404)  # nothing stored
    right = _b64(hashlib.sha256(body).digest())
    response = http.put(f"/{bucket}/c", content=body, headers={"x-amz-checksum-sha256": right})
    assert response.status_code == 200


@pytest.mark.parametrize(
    "md5",
    ["abc", _b64(b"x" * 15), _b64(b"x" * 17), "not base64 at all!", ""],
    ids=["short", "15-bytes", "17-bytes", "not-base64", "empty"],
)
def test_malformed_content_md5_is_invalid_digest(http: httpx.Client, bucket: str, md5: str) -> None:
    response = http.put(f"/{bucket}/m", content=b"data", headers={"content-md5": md5})
    _error(response, 400, "InvalidDigest")


def test_mismatching_content_md5_is_bad_digest(http: httpx.Client, s3: Any, bucket: str) -> None:
    wrong = _b64(hashlib.md5(b"other").digest())
    response = http.put(f"/{bucket}/m", content=b"data", headers={"content-md5": wrong})
    _error(response, 400, "BadDigest")
    assert _code(s3.put_object, Bucket=bucket, Key="m", Body=b"data", ContentMD5=wrong) == (
        "BadDigest",
        400,
    )
    assert _code(s3.head_object, Bucket=bucket, Key="m") == ("404", 404)


# --- partNumber on GET and HEAD ------------------------------------------------------------


def test_part_number_of_a_plain_object(s3: Any, bucket: str) -> None:
    """partNumber=1 of an object not made by multipart is the whole object; any other
    part number is 400 InvalidPart, as AWS answers."""
    put = s3.put_object(Bucket=bucket, Key="plain", Body=b"hello")
    got = s3.get_object(Bucket=bucket, Key="plain", PartNumber=1)
    assert got["Body"].read() == b"hello" and got["ETag"] == put["ETag"]
    assert s3.head_object(Bucket=bucket, Key="plain", PartNumber=1)["ContentLength"] == 5
    assert _code(s3.get_object, Bucket=bucket, Key="plain", PartNumber=2) == ("InvalidPart", 400)
    assert _code(s3.head_object, Bucket=bucket, Key="plain", PartNumber=2) == ("400", 400)


def test_part_number_past_the_parts(s3: Any, bucket: str) -> None:
    upload = s3.create_multipart_upload(Bucket=bucket, Key="mp")["UploadId"]
    parts = []
    for number, body in ((1, b"a" * PART), (2, b"tail")):
        etag = s3.upload_part(
            Bucket=bucket, Key="mp", UploadId=upload, PartNumber=number, Body=body
        )["ETag"]
        parts.append({"PartNumber": number, "ETag": etag})
    s3.complete_multipart_upload(
        Bucket=bucket, Key="mp", UploadId=upload, MultipartUpload={"Parts": parts}
    )
    assert s3.get_object(Bucket=bucket, Key="mp", PartNumber=2)["Body"].read() == b"tail"
    assert _code(s3.get_object, Bucket=bucket, Key="mp", PartNumber=3) == ("InvalidPart", 400)
    assert _code(s3.head_object, Bucket=bucket, Key="mp", PartNumber=3) == ("400", 400)


# --- CompleteMultipartUpload repeated, parts uploaded twice ---------------------------------


def _upload_two_parts(s3: Any, bucket: str, key: str, **create: Any) -> tuple[str, list[Any]]:
    upload = s3.create_multipart_upload(Bucket=bucket, Key=key, **create)["UploadId"]
    parts = []
    for number, body in ((1, os.urandom(PART)), (2, b"last part")):
        etag = s3.upload_part(
            Bucket=bucket, Key=key, UploadId=upload, PartNumber=number, Body=body
        )["ETag"]
        parts.append({"PartNumber": number, "ETag": etag})
    return upload, parts


@pytest.mark.parametrize("algorithm", [None, "CRC32"])
def test_complete_repeated_answers_the_same(s3: Any, bucket: str, algorithm: str | None) -> None:
    create = {"ChecksumAlgorithm": algorithm} if algorithm else {}
    upload, parts = _upload_two_parts(s3, bucket, "again", **create)
    if algorithm:  # boto3 sends each part's checksum; the completion names them
        listed = s3.list_parts(Bucket=bucket, Key="again", UploadId=upload)["Parts"]
        parts = [
            {"PartNumber": p["PartNumber"], "ETag": p["ETag"], "ChecksumCRC32": p["ChecksumCRC32"]}
            for p in listed
        ]
    first = s3.complete_multipart_upload(
        Bucket=bucket, Key="again", UploadId=upload, MultipartUpload={"Parts": parts}
    )
    again = s3.complete_multipart_upload(
        Bucket=bucket, Key="again", UploadId=upload, MultipartUpload={"Parts": parts}
    )
    assert again["ResponseMetadata"]["HTTPStatusCode"] == 200
    for field in ("ETag", "Bucket", "Key", "Location", "ChecksumCRC32", "ChecksumType"):
        assert again.get(field) == first.get(field), field
    assert first["ETag"].endswith('-2"')
    # Other parts than those it was completed with: the upload is gone.
    other = {"Parts": parts[:1]}
    assert _code(
        s3.complete_multipart_upload,
        Bucket=bucket,
        Key="again",
        UploadId=upload,
        MultipartUpload=other,
    ) == ("NoSuchUpload", 404)
    # Another key under the same id is not that upload either.
    assert _code(
        s3.complete_multipart_upload,
        Bucket=bucket,
        Key="another",
        UploadId=upload,
        MultipartUpload={"Parts": parts},
    ) == ("NoSuchUpload", 404)


def test_complete_after_abort_is_no_such_upload(s3: Any, bucket: str) -> None:
    upload, parts = _upload_two_parts(s3, bucket, "aborted")
    s3.abort_multipart_upload(Bucket=bucket, Key="aborted", UploadId=upload)
    assert _code(
        s3.complete_multipart_upload,
        Bucket=bucket,
        Key="aborted",
        UploadId=upload,
        MultipartUpload={"Parts": parts},
    ) == ("NoSuchUpload", 404)


def test_part_uploaded_twice_at_once_the_last_to_finish_wins(
    http: httpx.Client, s3: Any, bucket: str
) -> None:
    """Upload A of part 1 begins first and finishes last; B begins and ends in between.
    A is the part: listed with its ETag, completing with it works, and with B's is
    InvalidPart."""
    upload = s3.create_multipart_upload(Bucket=bucket, Key="raced")["UploadId"]
    first, second = os.urandom(PART), os.urandom(PART)
    url = f"/{bucket}/raced?partNumber=1&uploadId={upload}"
    started, release = threading.Event(), threading.Event()
    answers: dict[str, httpx.Response] = {}

    def slow_body() -> Iterator[bytes]:
        yield first[:1024]
        started.set()
        assert release.wait(30)
        yield first[1024:]

    def upload_first() -> None:
        headers = {"content-length": str(len(first))}
        answers["first"] = http.put(url, content=slow_body(), headers=headers)

    thread = threading.Thread(target=upload_first)
    thread.start()
    try:
        assert started.wait(30)
        second_etag = s3.upload_part(
            Bucket=bucket, Key="raced", UploadId=upload, PartNumber=1, Body=second
        )["ETag"]
    finally:
        release.set()
        thread.join(60)
    assert answers["first"].status_code == 200, answers["first"].text
    first_etag = answers["first"].headers["etag"]
    assert first_etag == f'"{hashlib.md5(first).hexdigest()}"' != second_etag
    listed = s3.list_parts(Bucket=bucket, Key="raced", UploadId=upload)["Parts"]
    assert [(p["PartNumber"], p["ETag"]) for p in listed] == [(1, first_etag)]
    stale = {"Parts": [{"PartNumber": 1, "ETag": second_etag}]}
    assert _code(
        s3.complete_multipart_upload,
        Bucket=bucket,
        Key="raced",
        UploadId=upload,
        MultipartUpload=stale,
    ) == ("InvalidPart", 400)
    s3.complete_multipart_upload(
        Bucket=bucket,
        Key="raced",
        UploadId=upload,
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": first_etag}]},
    )
    assert s3.get_object(Bucket=bucket, Key="raced")["Body"].read() == first


# --- PUT of unknown length ------------------------------------------------------------------


def test_chunked_put_without_length(http: httpx.Client, s3: Any, bucket: str) -> None:
    """Transfer-Encoding: chunked, no Content-Length (a stream of unknown length): stored
    whole, with its MD5 as the ETag; UploadPart too."""
    pieces = [os.urandom(100_000) for _ in range(7)]
    body = b"".join(pieces)
    response = http.put(f"/{bucket}/streamed", content=iter(pieces))
    assert response.request.headers.get("transfer-encoding") == "chunked"
    assert "content-length" not in response.request.headers
    assert response.status_code == 200, response.text
    assert response.headers["etag"] == f'"{hashlib.md5(body).hexdigest()}"'
    got = s3.get_object(Bucket=bucket, Key="streamed")
    assert got["Body"].read() == body and got["ContentLength"] == len(body)
    upload = s3.create_multipart_upload(Bucket=bucket, Key="parts")["UploadId"]
    part = http.put(f"/{bucket}/parts?partNumber=1&uploadId={upload}", content=iter(pieces))
    assert part.status_code == 200, part.text
    assert part.headers["etag"] == f'"{hashlib.md5(body).hexdigest()}"'


def test_curl_upload_from_stdin(endpoint: str, verify: str | bool, s3: Any, bucket: str) -> None:
    """`curl -T -` sends what it reads from a pipe chunked, with no length."""
    body = os.urandom(300_000)
    argv = ["curl", "-sS", "-f", "-T", "-", f"{endpoint}/{bucket}/from-curl", "-D", "-"]
    if isinstance(verify, str):
        argv += ["--cacert", verify]
    done = subprocess.run(argv, input=body, capture_output=True, timeout=60, check=True)
    head = done.stdout.decode("latin-1").lower()
    assert f'etag: "{hashlib.md5(body).hexdigest()}"' in head
    assert s3.get_object(Bucket=bucket, Key="from-curl")["Body"].read() == body


# --- non-ASCII metadata ----------------------------------------------------------------------


def test_non_ascii_metadata_comes_back_rfc2047_encoded(
    http: httpx.Client, s3: Any, bucket: str
) -> None:
    """S3 decodes RFC 2047 words and raw UTF-8 before storing, and sends non-ASCII
    values back as RFC 2047 encoded-words; ASCII values are sent as they are."""
    word = "=?UTF-8?B?" + _b64("café ☃".encode()) + "?="
    s3.put_object(Bucket=bucket, Key="encoded", Body=b"x", Metadata={"a": word, "b": "plain"})
    raw = http.put(f"/{bucket}/raw", content=b"x", headers={"x-amz-meta-a": "café ☃".encode()})
    assert raw.status_code == 200, raw.text
    quoted = http.put(
        f"/{bucket}/quoted",
        content=b"x",
        headers={"x-amz-meta-a": "=?utf-8?q?caf=C3=A9_=E2=98=83?="},
    )
    assert quoted.status_code == 200, quoted.text
    for key in ("encoded", "raw", "quoted"):
        meta = s3.head_object(Bucket=bucket, Key=key)["Metadata"]
        assert meta["a"] == word, key
        assert s3.get_object(Bucket=bucket, Key=key)["Metadata"]["a"] == word
    assert s3.head_object(Bucket=bucket, Key="encoded")["Metadata"]["b"] == "plain"
    # A copy keeps the stored (decoded) value.
    s3.copy_object(Bucket=bucket, Key="copied", CopySource={"Bucket": bucket, "Key": "raw"})
    assert s3.head_object(Bucket=bucket, Key="copied")["Metadata"]["a"] == word


# --- listing ---------------------------------------------------------------------------------


def test_empty_continuation_token_is_no_token(http: httpx.Client, s3: Any, bucket: str) -> None:
    for key in ("a", "b", "c"):
        s3.put_object(Bucket=bucket, Key=key, Body=b"")
    response = http.get(f"/{bucket}", params={"list-type": "2", "continuation-token": ""})
    assert response.status_code == 200, response.text
    assert response.text.count("<Key>") == 3
    assert "<ContinuationToken>" not in response.text
    listed = s3.list_objects_v2(Bucket=bucket, ContinuationToken="", MaxKeys=2)
    assert [o["Key"] for o in listed["Contents"]] == ["a", "b"]
    rest = s3.list_objects_v2(
        Bucket=bucket, ContinuationToken=listed["NextContinuationToken"], MaxKeys=2
    )
    assert [o["Key"] for o in rest["Contents"]] == ["c"]


# --- bucket policies -------------------------------------------------------------------------


def _policy(resource: str | list[str]) -> str:
    statement = {
        "Effect": "Allow",
        "Principal": "*",
        "Action": "s3:GetObject",
        "Resource": resource,
    }
    return json.dumps({"Version": "2012-10-17", "Statement": [statement]})


@pytest.mark.parametrize(
    "resource",
    ["arn:aws:s3:::*", "arn:aws:s3:::*/*", ["arn:aws:s3:::*", "arn:aws:s3:::*/public/*"]],
)
def test_wildcard_resources_are_accepted(s3: Any, bucket: str, resource: Any) -> None:
    s3.put_bucket_policy(Bucket=bucket, Policy=_policy(resource))
    assert json.loads(s3.get_bucket_policy(Bucket=bucket)["Policy"]) == json.loads(
        _policy(resource)
    )


def test_prefix_wildcard_covering_the_bucket_is_accepted(s3: Any, bucket: str) -> None:
    s3.put_bucket_policy(Bucket=bucket, Policy=_policy(f"arn:aws:s3:::{bucket[:3]}*"))
    s3.put_bucket_policy(Bucket=bucket, Policy=_policy(f"arn:aws:s3:::?{bucket[1:]}/*"))


@pytest.mark.parametrize(
    "resource",
    ["arn:aws:s3:::other-bucket/*", "arn:aws:s3:::{bucket}x/*", "arn:aws:s3:::x*", "*"],
)
def test_resources_that_cannot_match_the_bucket(s3: Any, bucket: str, resource: str) -> None:
    policy = _policy(resource.format(bucket=bucket))
    with pytest.raises(ClientError) as info:
        s3.put_bucket_policy(Bucket=bucket, Policy=policy)
    assert error_code(info.value) == "MalformedPolicy"
    assert info.value.response["Error"]["Message"] == "Policy has invalid resource"


@pytest.fixture(scope="module")
def auth_server() -> Iterator[SyncServer]:
    with SyncServer(auth_config(("AKIDEXACT", "exact-secret"))) as running:
        yield running


def test_wildcard_resource_grants_what_it_says(auth_server: SyncServer) -> None:
    """`arn:aws:s3:::*/*` in a bucket's policy grants on that bucket's objects."""
    owner = signed_client(auth_server.endpoint_url, "AKIDEXACT", "exact-secret")
    owner.create_bucket(Bucket="wild")
    owner.put_object(Bucket="wild", Key="k", Body=b"open")
    url = f"{auth_server.endpoint_url}/wild/k"
    assert httpx.get(url).status_code == 403
    owner.put_bucket_policy(Bucket="wild", Policy=_policy("arn:aws:s3:::*/*"))
    response = httpx.get(url)
    assert response.status_code == 200 and response.content == b"open"


# --- UploadPartCopy ranges -----------------------------------------------------------------


@pytest.mark.parametrize("span", ["bytes=0-5", "bytes=10-20", "bytes=3-2"])
def test_upload_part_copy_range_outside_the_source(s3: Any, bucket: str, span: str) -> None:
    s3.put_object(Bucket=bucket, Key="five", Body=b"12345")
    upload = s3.create_multipart_upload(Bucket=bucket, Key="dest")["UploadId"]
    assert _code(
        s3.upload_part_copy,
        Bucket=bucket,
        Key="dest",
        UploadId=upload,
        PartNumber=1,
        CopySource={"Bucket": bucket, "Key": "five"},
        CopySourceRange=span,
    ) == ("InvalidRange", 416)
    copied = s3.upload_part_copy(
        Bucket=bucket,
        Key="dest",
        UploadId=upload,
        PartNumber=1,
        CopySource={"Bucket": bucket, "Key": "five"},
        CopySourceRange="bytes=1-4",
    )
    assert copied["CopyPartResult"]["ETag"] == f'"{hashlib.md5(b"2345").hexdigest()}"'
    assert _code(
        s3.upload_part_copy,
        Bucket=bucket,
        Key="dest",
        UploadId=upload,
        PartNumber=1,
        CopySource={"Bucket": bucket, "Key": "five"},
        CopySourceRange="1-4",
    ) == ("InvalidArgument", 400)
