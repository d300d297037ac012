"""The server behaviour the clients in this matrix rely on, pinned on its own:

- ETag: single-part is the body's MD5 (rclone and `aws s3 sync`-style tools compare it
  with a local MD5), also after CopyObject; multipart is MD5 of the parts' MD5s, "-N".
- Checksums: CRC32 sent by default (a header, or an aws-chunked trailer where boto3
  streams: over HTTPS) is checked and echoed; any algorithm asked for is returned on
  GET with ChecksumMode; a wrong checksum or Content-MD5 is refused, storing nothing.
- encoding-type=url: keys, prefixes and delimiters come back percent-encoded with
  space as '+' and '/' kept, which botocore (aws CLI) and minio decode.
- Conditional PUT (If-None-Match: *, If-Match), which lock files rely on.
"""

from __future__ import annotations

import base64
import hashlib
import ssl
import zlib
from typing import Any
from urllib.parse import unquote_plus
from xml.etree import ElementTree

import httpx
import pytest
from botocore.exceptions import ClientError

from tests.compat.clients.boto3_client import Boto3Client
from tests.compat.scenario import MIB, Target, md5_etag, new_bucket_name

NS = {"s3": "http://s3.amazonaws.com/doc/2006-03-01/"}


@pytest.fixture(params=["when_supported", "when_required"])
def s3(request: pytest.FixtureRequest, target: Target) -> Any:
    mode = request.param
    return Boto3Client(
        target.as_dict(), request_checksum_calculation=mode, response_checksum_validation=mode
    ).s3


@pytest.fixture
def bucket(verifier: Any, cleanup_buckets: list[str]) -> str:
    name = new_bucket_name("pinned")
    cleanup_buckets.append(name)
    verifier.create_bucket(Bucket=name)
    return name


def test_single_part_etag_is_md5(s3: Any, bucket: str) -> None:
    body = b"the single-part ETag is the MD5 of the body\n" * 100
    assert s3.put_object(Bucket=bucket, Key="a", Body=body)["ETag"] == md5_etag(body)
    assert s3.head_object(Bucket=bucket, Key="a")["ETag"] == md5_etag(body)
    copied = s3.copy_object(Bucket=bucket, Key="b", CopySource={"Bucket": bucket, "Key": "a"})
    assert copied["CopyObjectResult"]["ETag"] == md5_etag(body)
    listed = s3.list_objects_v2(Bucket=bucket)["Contents"]
    assert [o["ETag"] for o in listed] == [md5_etag(body)] * 2


def test_multipart_etag_is_md5_of_part_md5s(s3: Any, bucket: str) -> None:
    parts = [b"x" * (5 * MIB), b"y" * MIB]
    upload = s3.create_multipart_upload(Bucket=bucket, Key="m")["UploadId"]
    done = []
    for number, piece in enumerate(parts, start=1):
        etag = s3.upload_part(
            Bucket=bucket, Key="m", UploadId=upload, PartNumber=number, Body=piece
        )["ETag"]
        assert etag == md5_etag(piece)
        done.append({"PartNumber": number, "ETag": etag})
    s3.complete_multipart_upload(
        Bucket=bucket, Key="m", UploadId=upload, MultipartUpload={"Parts": done}
    )
    joined = b"".join(hashlib.md5(p).digest() for p in parts)
    expected = f'"{hashlib.md5(joined).hexdigest()}-{len(parts)}"'
    assert s3.head_object(Bucket=bucket, Key="m")["ETag"] == expected


def test_default_crc32_is_checked_and_returned(s3: Any, bucket: str) -> None:
    body = b"crc32 by default since boto3 1.36\n" * 1000
    crc = base64.b64encode(zlib.crc32(body).to_bytes(4, "big")).decode()
    put = s3.put_object(Bucket=bucket, Key="c", Body=body, ChecksumAlgorithm="CRC32")
    assert put["ChecksumCRC32"] == crc
    got = s3.get_object(Bucket=bucket, Key="c", ChecksumMode="ENABLED")
    assert got["ChecksumCRC32"] == crc
    assert got["Body"].read() == body


@pytest.mark.parametrize("algorithm", ["CRC32C", "CRC64NVME", "SHA1", "SHA256"])
def test_other_algorithms_round_trip(s3: Any, bucket: str, algorithm: str) -> None:
    body = b"any algorithm a client picks\n" * 50
    put = s3.put_object(Bucket=bucket, Key="k", Body=body, ChecksumAlgorithm=algorithm)
    head = s3.head_object(Bucket=bucket, Key="k", ChecksumMode="ENABLED")
    assert head[f"Checksum{algorithm}"] == put[f"Checksum{algorithm}"]
    if algorithm == "SHA256":
        assert head["ChecksumSHA256"] == base64.b64encode(hashlib.sha256(body).digest()).decode()


def test_wrong_checksum_or_md5_is_refused(s3: Any, verifier: Any, bucket: str) -> None:
    wrong_crc = base64.b64encode(b"\0\0\0\0").decode()
    with pytest.raises(ClientError) as crc_error:
        s3.put_object(Bucket=bucket, Key="bad", Body=b"data", ChecksumCRC32=wrong_crc)
    assert crc_error.value.response["Error"]["Code"] in ("BadDigest", "InvalidRequest")
    wrong_md5 = base64.b64encode(hashlib.md5(b"other").digest()).decode()
    with pytest.raises(ClientError) as md5_error:
        s3.put_object(Bucket=bucket, Key="bad", Body=b"data", ContentMD5=wrong_md5)
    assert md5_error.value.response["Error"]["Code"] == "BadDigest"
    assert verifier.list_objects_v2(Bucket=bucket)["KeyCount"] == 0


AWKWARD = ["a b+c/é.txt", "a b+c/100%.txt", "plain/x", "tab\there"]


def test_encoding_type_url_raw(target: Target, verifier: Any, bucket: str) -> None:
    for key in AWKWARD:
        verifier.put_object(Bucket=bucket, Key=key, Body=b".")
    url = verifier.generate_presigned_url(
        "list_objects_v2",
        Params={"Bucket": bucket, "Delimiter": "/", "EncodingType": "url", "Prefix": "a b+c/"},
    )
    answer = httpx.get(url, verify=ssl.create_default_context(cafile=target.ca_file))
    assert answer.status_code == 200, answer.text
    root = ElementTree.fromstring(answer.content)
    keys = [k.text for k in root.findall("s3:Contents/s3:Key", NS)]
    assert keys == ["a+b%2Bc/100%25.txt", "a+b%2Bc/%C3%A9.txt"]
    assert root.findtext("s3:Prefix", namespaces=NS) == "a+b%2Bc/"
    assert [unquote_plus(k or "") for k in keys] == sorted(AWKWARD[:2])
    url = verifier.generate_presigned_url(
        "list_objects_v2", Params={"Bucket": bucket, "Delimiter": "/", "EncodingType": "url"}
    )
    root = ElementTree.fromstring(
        httpx.get(url, verify=ssl.create_default_context(cafile=target.ca_file)).content
    )
    assert [p.text for p in root.findall("s3:CommonPrefixes/s3:Prefix", NS)] == [
        "a+b%2Bc/",
        "plain/",
    ]
    assert [k.text for k in root.findall("s3:Contents/s3:Key", NS)] == ["tab%09here"]


def test_encoding_type_url_through_sdk(s3: Any, verifier: Any, bucket: str) -> None:
    """botocore asks for encoding-type=url by itself and decodes: keys come back exact."""
    for key in AWKWARD:
        verifier.put_object(Bucket=bucket, Key=key, Body=b".")
    v2 = s3.list_objects_v2(Bucket=bucket)
    assert [o["Key"] for o in v2["Contents"]] == sorted(AWKWARD)
    v1 = s3.list_objects(Bucket=bucket, Prefix="a b+c/", Delimiter="/")
    assert [o["Key"] for o in v1["Contents"]] == sorted(AWKWARD[:2])


def test_conditional_put(s3: Any, bucket: str) -> None:
    """Lock files (Terraform's S3 backend) are created with If-None-Match: * and replaced
    with If-Match: ETAG; the loser of a race gets 412."""
    first = s3.put_object(Bucket=bucket, Key="lock", Body=b"one", IfNoneMatch="*")
    with pytest.raises(ClientError) as taken:
        s3.put_object(Bucket=bucket, Key="lock", Body=b"two", IfNoneMatch="*")
    assert taken.value.response["Error"]["Code"] == "PreconditionFailed"
    s3.put_object(Bucket=bucket, Key="lock", Body=b"three", IfMatch=first["ETag"])
    with pytest.raises(ClientError) as stale:
        s3.put_object(Bucket=bucket, Key="lock", Body=b"four", IfMatch=first["ETag"])
    assert stale.value.response["Error"]["Code"] == "PreconditionFailed"
    assert s3.get_object(Bucket=bucket, Key="lock")["Body"].read() == b"three"
