"""Server-side encryption end to end with boto3 (at its defaults) and the aws CLI, on a
standalone server and an erasure node: SSE-S3, SSE-KMS and SSE-C round trips of every
size around a package boundary and of multipart objects, ranged reads at package
boundaries, SSE-C keys refused as S3 refuses them, copies that change encryption,
checksums over the plaintext, and no plaintext anywhere on disk."""

from __future__ import annotations

import base64
import hashlib
import os
import subprocess
import uuid
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from botocore.exceptions import BotoCoreError, ClientError

from shoal.app.server import SyncServer
from shoal.sse.packages import sealed_length
from tests.integration.conftest import (
    AwsCli,
    client_error,
    erasure_config,
    error_code,
    signed_client,
    spawn_server,
    ssl_context,
)
from tests.integration.test_cluster import make_nodes, running
from tests.integration.test_readme import example

KEY_1 = base64.b64encode(hashlib.sha256(b"test key one").digest()).decode()
KEY_2 = base64.b64encode(hashlib.sha256(b"test key two").digest()).decode()
KMS = {
    "keys": [{"id": "key-1", "secret": KEY_1}, {"id": "key-2", "secret": KEY_2}],
    "allow_sse_c_over_http": True,
}
CUSTOMER_KEY = hashlib.sha256(b"a customer's key").digest()
OTHER_KEY = hashlib.sha256(b"someone else's key").digest()
PACKAGE = 64 * 1024
MiB = 1024 * 1024


def sse_c(key: bytes = CUSTOMER_KEY, *, copy: bool = False) -> dict[str, Any]:
    """boto3's SSE-C arguments (it adds the key's MD5 itself)."""
    prefix = "CopySource" if copy else ""
    return {f"{prefix}SSECustomerAlgorithm": "AES256", f"{prefix}SSECustomerKey": key}


#: The encryption modes, as PutObject / CreateMultipartUpload arguments.
MODES: dict[str, dict[str, Any]] = {
    "sse-s3": {"ServerSideEncryption": "AES256"},
    "sse-kms": {"ServerSideEncryption": "aws:kms"},
    "sse-kms-key-2": {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": "key-2"},
    "sse-c": sse_c(),
}


def read_args(mode: str) -> dict[str, Any]:
    """What a GET/HEAD of an object written in `mode` must carry."""
    return sse_c() if mode == "sse-c" else {}


@pytest.fixture(scope="module", params=["standalone", "erasure", "https"])
def server(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    tls_files: tuple[str, str],
) -> Iterator[SyncServer]:
    """A standalone server and an erasure node over HTTP (SSE-C allowed there for the
    tests), and a standalone one over HTTPS, where boto3 sends its checksums as aws-chunked
    trailers and SSE-C needs no exception."""
    config: dict[str, Any] = {"kms": KMS}
    if request.param == "erasure":
        config |= erasure_config(tmp_path_factory.mktemp("sse-erasure"))
    if request.param == "https":
        config = {
            "kms": {**KMS, "allow_sse_c_over_http": False},
            "server": {"tls": {"cert_file": tls_files[0], "key_file": tls_files[1]}},
        }
    with SyncServer(config) as started:
        yield started


@pytest.fixture(scope="module")
def verify(server: SyncServer, tls_files: tuple[str, str]) -> str | bool:
    return tls_files[0] if server.get_storage_descriptor().use_ssl else True


@pytest.fixture(scope="module")
def s3(server: SyncServer, verify: str | bool) -> Any:
    d = server.get_storage_descriptor()
    return signed_client(d.endpoint_url, d.access_key, d.access_secret, verify)


@pytest.fixture
def bucket(s3: Any) -> str:
    name = f"sse-{uuid.uuid4().hex[:16]}"
    s3.create_bucket(Bucket=name)
    return name


def stored_files(server: SyncServer) -> list[Path]:
    """Every file the server keeps: its data directory and every drive."""
    config = server.config
    assert config is not None
    roots = [Path(config.storage.directory)]
    if config.cluster.enabled:
        roots += [Path(p) for p in config.cluster.drives.paths]
    return [p for root in roots for p in root.rglob("*") if p.is_file()]


def holds(files: list[Path], pattern: bytes) -> bool:
    """Whether any of `files` holds `pattern` (a file the server removed meanwhile, a
    temporary one, holds nothing any more)."""
    return any(pattern in contents for contents in map(_read_if_there, files))


def _read_if_there(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return b""


def pattern_body(size: int, tag: bytes) -> bytes:
    unit = b"<<PLAINTEXT-" + tag + b">>"
    return (unit * (size // len(unit) + 1))[:size]


def headers_of(response: dict[str, Any]) -> dict[str, str]:
    return response["ResponseMetadata"]["HTTPHeaders"]


@pytest.mark.parametrize("size", [0, 1, PACKAGE - 1, PACKAGE, PACKAGE + 1, 3 * PACKAGE + 7])
@pytest.mark.parametrize("mode", list(MODES))
def test_round_trip(s3: Any, bucket: str, mode: str, size: int) -> None:
    body = os.urandom(size)
    put = s3.put_object(Bucket=bucket, Key="k", Body=body, **MODES[mode])
    got = s3.get_object(Bucket=bucket, Key="k", **read_args(mode))
    assert got["Body"].read() == body
    assert got["ContentLength"] == size
    head = s3.head_object(Bucket=bucket, Key="k", **read_args(mode))
    assert head["ContentLength"] == size and head["ETag"] == put["ETag"] == got["ETag"]
    listed = s3.list_objects_v2(Bucket=bucket)["Contents"]
    assert [(o["Size"], o["ETag"]) for o in listed] == [(size, put["ETag"])]
    if mode == "sse-c":
        assert put["SSECustomerAlgorithm"] == got["SSECustomerAlgorithm"] == "AES256"
        md5 = base64.b64encode(hashlib.md5(CUSTOMER_KEY).digest()).decode()
        assert put["SSECustomerKeyMD5"] == got["SSECustomerKeyMD5"] == md5
        assert "ServerSideEncryption" not in got
    else:
        algorithm = MODES[mode]["ServerSideEncryption"]
        assert put["ServerSideEncryption"] == got["ServerSideEncryption"] == algorithm
        assert head["ServerSideEncryption"] == algorithm
    if mode.startswith("sse-kms"):
        wanted = MODES[mode].get("SSEKMSKeyId", "key-1")
        assert put["SSEKMSKeyId"] == got["SSEKMSKeyId"] == wanted
    # S3: an SSE-S3 ETag is the plaintext's MD5; SSE-C and SSE-KMS ETags are not.
    md5 = f'"{hashlib.md5(body).hexdigest()}"'
    assert (put["ETag"] == md5) == (mode == "sse-s3")


RANGES = [
    (PACKAGE - 1, PACKAGE),
    (PACKAGE, 2 * PACKAGE - 1),
    (0, 0),
    (2 * PACKAGE - 3, 2 * PACKAGE + 5),
]


@pytest.mark.parametrize("mode", ["sse-s3", "sse-c"])
def test_ranges_at_package_boundaries(s3: Any, bucket: str, mode: str) -> None:
    body = os.urandom(3 * PACKAGE + 100)
    s3.put_object(Bucket=bucket, Key="k", Body=body, **MODES[mode])
    for first, last in [*RANGES, (len(body) - 1, len(body) - 1)]:
        got = s3.get_object(
            Bucket=bucket, Key="k", Range=f"bytes={first}-{last}", **read_args(mode)
        )
        assert got["Body"].read() == body[first : last + 1]
        assert got["ContentRange"] == f"bytes {first}-{last}/{len(body)}"
    for suffix in (1, 100, PACKAGE + 1):
        got = s3.get_object(Bucket=bucket, Key="k", Range=f"bytes=-{suffix}", **read_args(mode))
        assert got["Body"].read() == body[-suffix:]
    got = s3.get_object(Bucket=bucket, Key="k", Range=f"bytes={PACKAGE}-", **read_args(mode))
    assert got["Body"].read() == body[PACKAGE:]
    error = client_error(
        s3.get_object, Bucket=bucket, Key="k", Range=f"bytes={len(body)}-", **read_args(mode)
    )
    assert error_code(error) == "InvalidRange"


def test_a_part_under_5_mib_of_plaintext_is_too_small(s3: Any, bucket: str) -> None:
    """S3's minimum part size counts what the client sent, not the larger ciphertext."""
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key="mp", ServerSideEncryption="AES256")[
        "UploadId"
    ]
    parts = []
    for number, size in ((1, 5 * MiB - 1), (2, 10)):
        done = s3.upload_part(
            Bucket=bucket, Key="mp", UploadId=upload_id, PartNumber=number, Body=b"p" * size
        )
        parts.append({"PartNumber": number, "ETag": done["ETag"]})
    error = client_error(
        s3.complete_multipart_upload,
        Bucket=bucket,
        Key="mp",
        UploadId=upload_id,
        MultipartUpload={"Parts": parts},
    )
    assert error_code(error) == "EntityTooSmall"
    # The upload is still open: a first part of 5 MiB completes it.
    done = s3.upload_part(
        Bucket=bucket, Key="mp", UploadId=upload_id, PartNumber=1, Body=b"p" * (5 * MiB)
    )
    parts[0]["ETag"] = done["ETag"]
    s3.complete_multipart_upload(
        Bucket=bucket, Key="mp", UploadId=upload_id, MultipartUpload={"Parts": parts}
    )
    assert s3.head_object(Bucket=bucket, Key="mp")["ContentLength"] == 5 * MiB + 10


@pytest.mark.parametrize("mode", list(MODES))
def test_multipart(s3: Any, bucket: str, mode: str) -> None:
    pieces = [os.urandom(5 * MiB), os.urandom(PACKAGE + 3)]
    body = b"".join(pieces)
    created = s3.create_multipart_upload(Bucket=bucket, Key="mp", **MODES[mode])
    upload_id = created["UploadId"]
    if mode != "sse-c":
        assert created["ServerSideEncryption"] == MODES[mode]["ServerSideEncryption"]
    parts = []
    for number, piece in enumerate(pieces, 1):
        done = s3.upload_part(
            Bucket=bucket,
            Key="mp",
            UploadId=upload_id,
            PartNumber=number,
            Body=piece,
            **read_args(mode),
        )
        parts.append({"PartNumber": number, "ETag": done["ETag"]})
    listed = s3.list_parts(Bucket=bucket, Key="mp", UploadId=upload_id)["Parts"]
    assert [p["Size"] for p in listed] == [len(p) for p in pieces]
    done = s3.complete_multipart_upload(
        Bucket=bucket, Key="mp", UploadId=upload_id, MultipartUpload={"Parts": parts}
    )
    assert done["ETag"].endswith('-2"')
    got = s3.get_object(Bucket=bucket, Key="mp", **read_args(mode))
    assert got["Body"].read() == body and got["ContentLength"] == len(body)
    assert got["ETag"] == done["ETag"]
    # A range across the part boundary, and each part by number.
    first, last = 5 * MiB - 10, 5 * MiB + PACKAGE + 1
    got = s3.get_object(Bucket=bucket, Key="mp", Range=f"bytes={first}-{last}", **read_args(mode))
    assert got["Body"].read() == body[first : last + 1]
    for number, piece in enumerate(pieces, 1):
        got = s3.get_object(Bucket=bucket, Key="mp", PartNumber=number, **read_args(mode))
        assert got["Body"].read() == piece and got["PartsCount"] == 2
    # boto3 encodes an SSE-C key for GetObject, not for GetObjectAttributes.
    encoded = {}
    if mode == "sse-c":
        encoded = {
            "SSECustomerAlgorithm": "AES256",
            "SSECustomerKey": base64.b64encode(CUSTOMER_KEY).decode(),
            "SSECustomerKeyMD5": base64.b64encode(hashlib.md5(CUSTOMER_KEY).digest()).decode(),
        }
    attributes = s3.get_object_attributes(
        Bucket=bucket, Key="mp", ObjectAttributes=["ObjectSize", "ETag", "ObjectParts"], **encoded
    )
    assert attributes["ObjectSize"] == len(body)
    assert attributes["ObjectParts"]["TotalPartsCount"] == 2
    assert f'"{attributes["ETag"]}"' == done["ETag"]
    listed = s3.list_objects_v2(Bucket=bucket)["Contents"]
    assert [(o["Key"], o["Size"]) for o in listed] == [("mp", len(body))]


def test_sse_c_key_is_required_and_checked(s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="k", Body=b"secret", **sse_c())
    for call in (s3.get_object, s3.head_object):
        missing = client_error(call, Bucket=bucket, Key="k")
        assert missing.response["ResponseMetadata"]["HTTPStatusCode"] == 400
        wrong = client_error(call, Bucket=bucket, Key="k", **sse_c(OTHER_KEY))
        assert wrong.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    missing = client_error(s3.get_object, Bucket=bucket, Key="k")
    assert error_code(missing) == "InvalidRequest"
    assert error_code(client_error(s3.get_object, Bucket=bucket, Key="k", **sse_c(OTHER_KEY))) == (
        "AccessDenied"
    )
    # An object that is not SSE-C takes no customer key.
    s3.put_object(Bucket=bucket, Key="plain", Body=b"x")
    error = client_error(s3.get_object, Bucket=bucket, Key="plain", **sse_c())
    assert error_code(error) == "InvalidRequest"


def test_sse_c_parts_need_the_uploads_key(s3: Any, bucket: str) -> None:
    """An SSE-C upload's parts bring its key (400 without, 400 with another, as S3);
    other uploads' parts bring none."""
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key="mp", **sse_c())["UploadId"]
    for extra in ({}, sse_c(OTHER_KEY)):
        error = client_error(
            s3.upload_part,
            Bucket=bucket,
            Key="mp",
            UploadId=upload_id,
            PartNumber=1,
            Body=b"x",
            **extra,
        )
        assert error_code(error) == "InvalidRequest"
    plain = s3.create_multipart_upload(Bucket=bucket, Key="p", ServerSideEncryption="AES256")
    error = client_error(
        s3.upload_part,
        Bucket=bucket,
        Key="p",
        UploadId=plain["UploadId"],
        PartNumber=1,
        Body=b"x",
        **sse_c(),
    )
    assert error_code(error) == "InvalidRequest"
    # A checksummed SSE-C upload needs its key to complete (the checksum is the
    # plaintext's); the right key completes it.
    upload_id = s3.create_multipart_upload(
        Bucket=bucket, Key="ck", ChecksumAlgorithm="SHA256", **sse_c()
    )["UploadId"]
    part = s3.upload_part(
        Bucket=bucket,
        Key="ck",
        UploadId=upload_id,
        PartNumber=1,
        Body=b"abc",
        ChecksumAlgorithm="SHA256",
        **sse_c(),
    )
    parts = {
        "Parts": [{"PartNumber": 1, "ETag": part["ETag"], "ChecksumSHA256": part["ChecksumSHA256"]}]
    }
    error = client_error(
        s3.complete_multipart_upload,
        Bucket=bucket,
        Key="ck",
        UploadId=upload_id,
        MultipartUpload=parts,
    )
    assert error.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    done = s3.complete_multipart_upload(
        Bucket=bucket, Key="ck", UploadId=upload_id, MultipartUpload=parts, **sse_c()
    )
    assert "SSECustomerAlgorithm" not in done  # S3 echoes no SSE-C on a completion
    assert s3.get_object(Bucket=bucket, Key="ck", **sse_c())["Body"].read() == b"abc"


def test_reads_and_parts_take_no_sse_header(
    server: SyncServer, verify: str | bool, s3: Any, bucket: str
) -> None:
    s3.put_object(Bucket=bucket, Key="k", Body=b"x", ServerSideEncryption="AES256")
    endpoint = server.get_storage_descriptor().endpoint_url
    with httpx.Client(verify=ssl_context(verify)) as http:
        for method in ("GET", "HEAD"):
            response = http.request(
                method, f"{endpoint}/{bucket}/k", headers={"x-amz-server-side-encryption": "AES256"}
            )
            assert response.status_code == 400, method


def test_kms_context_is_echoed_on_the_write_only(s3: Any, bucket: str) -> None:
    context = base64.b64encode(b'{"project": "shoal"}').decode()
    put = s3.put_object(
        Bucket=bucket,
        Key="k",
        Body=b"x",
        ServerSideEncryption="aws:kms",
        SSEKMSEncryptionContext=context,
    )
    assert put["SSEKMSEncryptionContext"] == context
    got = s3.get_object(Bucket=bucket, Key="k")
    assert got["Body"].read() == b"x" and "SSEKMSEncryptionContext" not in got


def test_bad_sse_headers(server: SyncServer, verify: str | bool, s3: Any, bucket: str) -> None:
    error = client_error(
        s3.put_object,
        Bucket=bucket,
        Key="k",
        Body=b"x",
        ServerSideEncryption="aws:kms",
        SSEKMSKeyId="no-such-key",
    )
    assert error_code(error) == "KMS.NotFoundException"
    arn = "arn:aws:kms:us-east-1:123456789012:key/key-2"
    put = s3.put_object(
        Bucket=bucket, Key="k", Body=b"x", ServerSideEncryption="aws:kms", SSEKMSKeyId=arn
    )
    assert put["SSEKMSKeyId"] == "key-2"
    endpoint = server.get_storage_descriptor().endpoint_url
    key = base64.b64encode(CUSTOMER_KEY).decode()
    cases = {
        "bad md5": {
            "x-amz-server-side-encryption-customer-algorithm": "AES256",
            "x-amz-server-side-encryption-customer-key": key,
            "x-amz-server-side-encryption-customer-key-MD5": base64.b64encode(b"0" * 16).decode(),
        },
        "short key": {
            "x-amz-server-side-encryption-customer-algorithm": "AES256",
            "x-amz-server-side-encryption-customer-key": base64.b64encode(b"short").decode(),
            "x-amz-server-side-encryption-customer-key-MD5": base64.b64encode(
                hashlib.md5(b"short").digest()
            ).decode(),
        },
        "no algorithm": {"x-amz-server-side-encryption-customer-key": key},
        "unknown method": {"x-amz-server-side-encryption": "rot13"},
    }
    for name, headers in cases.items():
        response = httpx.put(
            f"{endpoint}/{bucket}/bad", content=b"x", headers=headers, verify=ssl_context(verify)
        )
        assert response.status_code == 400, name
    assert error_code(client_error(s3.head_object, Bucket=bucket, Key="bad")) == "404"


def test_no_plaintext_on_disk(server: SyncServer, s3: Any, bucket: str) -> None:
    """A recognisable pattern written in every mode, single and multipart, is in no
    file under the data directory or on any drive; the same written unencrypted is
    (so the search does find what is there)."""
    for mode, args in MODES.items():
        tag = mode.encode()
        s3.put_object(Bucket=bucket, Key=f"{mode}/one", Body=pattern_body(300_000, tag), **args)
        upload_id = s3.create_multipart_upload(Bucket=bucket, Key=f"{mode}/mp", **args)["UploadId"]
        done = s3.upload_part(
            Bucket=bucket,
            Key=f"{mode}/mp",
            UploadId=upload_id,
            PartNumber=1,
            Body=pattern_body(200_000, tag + b"-mp"),
            **read_args(mode),
        )
        s3.complete_multipart_upload(
            Bucket=bucket,
            Key=f"{mode}/mp",
            UploadId=upload_id,
            MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": done["ETag"]}]},
        )
    s3.put_object(Bucket=bucket, Key="clear", Body=pattern_body(300_000, b"clear"))
    files = stored_files(server)
    assert holds(files, b"<<PLAINTEXT-clear>>")
    for mode in MODES:
        assert not holds(files, b"<<PLAINTEXT-" + mode.encode()), mode


def test_copy_changes_encryption(s3: Any, bucket: str) -> None:
    body = os.urandom(PACKAGE * 2 + 9)
    s3.put_object(Bucket=bucket, Key="k", Body=body)
    # A copy onto itself that only changes the encryption is allowed (S3's rule).
    copied = s3.copy_object(
        Bucket=bucket,
        Key="k",
        CopySource={"Bucket": bucket, "Key": "k"},
        ServerSideEncryption="AES256",
    )
    assert copied["ServerSideEncryption"] == "AES256"
    assert s3.head_object(Bucket=bucket, Key="k")["ServerSideEncryption"] == "AES256"
    # SSE-S3 -> SSE-C -> SSE-KMS key-2 -> clear, each read back.
    s3.copy_object(Bucket=bucket, Key="c", CopySource={"Bucket": bucket, "Key": "k"}, **sse_c())
    assert s3.get_object(Bucket=bucket, Key="c", **sse_c())["Body"].read() == body
    s3.copy_object(
        Bucket=bucket,
        Key="kms",
        CopySource={"Bucket": bucket, "Key": "c"},
        ServerSideEncryption="aws:kms",
        SSEKMSKeyId="key-2",
        **sse_c(copy=True),
    )
    got = s3.get_object(Bucket=bucket, Key="kms")
    assert got["Body"].read() == body and got["SSEKMSKeyId"] == "key-2"
    error = client_error(
        s3.copy_object, Bucket=bucket, Key="x", CopySource={"Bucket": bucket, "Key": "c"}
    )
    assert error.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    s3.copy_object(Bucket=bucket, Key="clear", CopySource={"Bucket": bucket, "Key": "kms"})
    got = s3.get_object(Bucket=bucket, Key="clear")
    assert got["Body"].read() == body and "ServerSideEncryption" not in got


def test_upload_part_copy_between_encryptions(s3: Any, bucket: str) -> None:
    source = os.urandom(5 * MiB + 17)
    s3.put_object(Bucket=bucket, Key="src", Body=source, **sse_c(OTHER_KEY))
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key="mp", ServerSideEncryption="aws:kms")[
        "UploadId"
    ]
    first = s3.upload_part_copy(
        Bucket=bucket,
        Key="mp",
        UploadId=upload_id,
        PartNumber=1,
        CopySource={"Bucket": bucket, "Key": "src"},
        **sse_c(OTHER_KEY, copy=True),
    )
    second = s3.upload_part_copy(
        Bucket=bucket,
        Key="mp",
        UploadId=upload_id,
        PartNumber=2,
        CopySource={"Bucket": bucket, "Key": "src"},
        CopySourceRange=f"bytes={PACKAGE - 1}-{PACKAGE}",
        **sse_c(OTHER_KEY, copy=True),
    )
    parts = [
        {"PartNumber": 1, "ETag": first["CopyPartResult"]["ETag"]},
        {"PartNumber": 2, "ETag": second["CopyPartResult"]["ETag"]},
    ]
    s3.complete_multipart_upload(
        Bucket=bucket, Key="mp", UploadId=upload_id, MultipartUpload={"Parts": parts}
    )
    got = s3.get_object(Bucket=bucket, Key="mp")
    assert got["Body"].read() == source + source[PACKAGE - 1 : PACKAGE + 1]


def test_checksums_over_the_plaintext(s3: Any, bucket: str) -> None:
    body = os.urandom(PACKAGE + 5)
    crc = base64.b64encode(zlib.crc32(body).to_bytes(4, "big")).decode()
    for mode, args in MODES.items():
        put = s3.put_object(Bucket=bucket, Key=mode, Body=body, ChecksumAlgorithm="CRC32", **args)
        assert put["ChecksumCRC32"] == crc
        got = s3.get_object(Bucket=bucket, Key=mode, ChecksumMode="ENABLED", **read_args(mode))
        assert got["Body"].read() == body and got["ChecksumCRC32"] == crc
        error = client_error(
            s3.put_object, Bucket=bucket, Key=mode, Body=body, ChecksumCRC32="AAAAAA==", **args
        )
        assert error_code(error) == "BadDigest"
        md5 = base64.b64encode(hashlib.md5(body).digest()).decode()
        s3.put_object(Bucket=bucket, Key=mode, Body=body, ContentMD5=md5, **args)
        wrong = base64.b64encode(hashlib.md5(b"other").digest()).decode()
        error = client_error(
            s3.put_object, Bucket=bucket, Key=mode, Body=body, ContentMD5=wrong, **args
        )
        assert error_code(error) == "BadDigest"


def test_multipart_full_object_checksum(s3: Any, bucket: str) -> None:
    pieces = [os.urandom(5 * MiB), os.urandom(1000)]
    body = b"".join(pieces)
    crc = base64.b64encode(zlib.crc32(body).to_bytes(4, "big")).decode()
    upload_id = s3.create_multipart_upload(
        Bucket=bucket,
        Key="mp",
        ServerSideEncryption="AES256",
        ChecksumAlgorithm="CRC32",
        ChecksumType="FULL_OBJECT",
    )["UploadId"]
    parts = []
    for number, piece in enumerate(pieces, 1):
        done = s3.upload_part(
            Bucket=bucket,
            Key="mp",
            UploadId=upload_id,
            PartNumber=number,
            Body=piece,
            ChecksumAlgorithm="CRC32",
        )
        parts.append(
            {"PartNumber": number, "ETag": done["ETag"], "ChecksumCRC32": done["ChecksumCRC32"]}
        )
    done = s3.complete_multipart_upload(
        Bucket=bucket,
        Key="mp",
        UploadId=upload_id,
        MultipartUpload={"Parts": parts},
        ChecksumCRC32=crc,
        ChecksumType="FULL_OBJECT",
    )
    assert done["ChecksumCRC32"] == crc


def test_flipped_byte_is_never_served(server: SyncServer, s3: Any, bucket: str) -> None:
    """A byte changed in a stored object: its GET fails (an error, or a connection cut
    short), never answers other bytes. Standalone: one file holds the object; an erasure
    node rebuilds the ciphertext from parity and serves the object whole."""
    config = server.config
    assert config is not None
    if config.cluster.enabled:
        body = os.urandom(5 * PACKAGE + 11)
        s3.put_object(Bucket=bucket, Key="k", Body=body, ServerSideEncryption="AES256")
        drive = Path(config.cluster.drives.paths[0])
        shards = [p for p in drive.rglob("*.dat") if bucket in str(p)]
        assert shards
        for shard in shards:
            data = bytearray(shard.read_bytes())
            data[len(data) // 2] ^= 0xFF
            shard.write_bytes(bytes(data))
        assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == body
        return
    body = os.urandom(5 * PACKAGE + 11)
    before = set(stored_files(server))
    s3.put_object(Bucket=bucket, Key="k", Body=body, ServerSideEncryption="AES256")
    sealed = [
        f
        for f in set(stored_files(server)) - before
        if f.stat().st_size == sealed_length(len(body))
    ]
    assert len(sealed) == 1
    data = bytearray(sealed[0].read_bytes())
    data[2 * PACKAGE] ^= 0x01
    sealed[0].write_bytes(bytes(data))
    try:
        got = s3.get_object(Bucket=bucket, Key="k")["Body"].read()
    except (ClientError, BotoCoreError):
        pass
    else:
        pytest.fail(f"a tampered object was served ({len(got)} bytes)")
    ranged = s3.get_object(Bucket=bucket, Key="k", Range="bytes=0-100")
    assert ranged["Body"].read() == body[:101]  # packages before the flip still open


def test_bucket_default_applies_to_writes_without_headers(
    server: SyncServer, s3: Any, bucket: str
) -> None:
    s3.put_bucket_encryption(
        Bucket=bucket,
        ServerSideEncryptionConfiguration={
            "Rules": [
                {
                    "ApplyServerSideEncryptionByDefault": {
                        "SSEAlgorithm": "aws:kms",
                        "KMSMasterKeyID": "key-2",
                    },
                    "BucketKeyEnabled": True,
                }
            ]
        },
    )
    body = pattern_body(100_000, b"bucket-default")
    put = s3.put_object(Bucket=bucket, Key="k", Body=body)
    assert put["ServerSideEncryption"] == "aws:kms" and put["SSEKMSKeyId"] == "key-2"
    assert put["BucketKeyEnabled"] is True
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key="mp")["UploadId"]
    part = s3.upload_part(Bucket=bucket, Key="mp", UploadId=upload_id, PartNumber=1, Body=body)
    s3.complete_multipart_upload(
        Bucket=bucket,
        Key="mp",
        UploadId=upload_id,
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]},
    )
    for key in ("k", "mp"):
        got = s3.get_object(Bucket=bucket, Key=key)
        assert got["Body"].read() == body and got["SSEKMSKeyId"] == "key-2"
    # Headers win over the default; SSE-KMS that names no bucket key takes the bucket's,
    # and SSE-S3 objects report none (as S3).
    assert s3.put_object(Bucket=bucket, Key="c", Body=b"x", **sse_c())["SSECustomerKeyMD5"]
    kms = s3.put_object(Bucket=bucket, Key="kms", Body=b"x", ServerSideEncryption="aws:kms")
    assert kms["SSEKMSKeyId"] == "key-1" and kms["BucketKeyEnabled"] is True
    sse_s3 = s3.put_object(Bucket=bucket, Key="s3", Body=b"x", ServerSideEncryption="AES256")
    assert "BucketKeyEnabled" not in sse_s3
    assert not holds(stored_files(server), b"<<PLAINTEXT-bucket-default>>")


def test_conditional_requests_use_the_shown_etag(s3: Any, bucket: str) -> None:
    body = os.urandom(1000)
    etag = s3.put_object(Bucket=bucket, Key="k", Body=body, ServerSideEncryption="AES256")["ETag"]
    assert etag == f'"{hashlib.md5(body).hexdigest()}"'
    got = s3.get_object(Bucket=bucket, Key="k", IfMatch=etag)
    assert got["Body"].read() == body
    error = client_error(s3.get_object, Bucket=bucket, Key="k", IfNoneMatch=etag)
    assert error.response["ResponseMetadata"]["HTTPStatusCode"] == 304
    replaced = s3.put_object(
        Bucket=bucket, Key="k", Body=b"new", IfMatch=etag, ServerSideEncryption="AES256"
    )
    error = client_error(
        s3.put_object, Bucket=bucket, Key="k", Body=b"newer", IfMatch=etag, **sse_c()
    )
    assert error.response["ResponseMetadata"]["HTTPStatusCode"] == 412
    s3.delete_object(Bucket=bucket, Key="k", IfMatch=replaced["ETag"])
    assert error_code(client_error(s3.head_object, Bucket=bucket, Key="k")) == "404"


def test_post_object_form_fields(
    server: SyncServer, verify: str | bool, s3: Any, bucket: str
) -> None:
    """A browser form's x-amz-server-side-encryption* fields encrypt its file."""
    for fields in (
        {
            "x-amz-server-side-encryption": "aws:kms",
            "x-amz-server-side-encryption-aws-kms-key-id": "key-2",
        },
        {
            "x-amz-server-side-encryption-customer-algorithm": "AES256",
            "x-amz-server-side-encryption-customer-key": base64.b64encode(CUSTOMER_KEY).decode(),
            "x-amz-server-side-encryption-customer-key-md5": base64.b64encode(
                hashlib.md5(CUSTOMER_KEY).digest()
            ).decode(),
        },
    ):
        form = s3.generate_presigned_post(
            bucket, "form", Fields=fields, Conditions=[{k: v} for k, v in fields.items()]
        )
        body = pattern_body(70_000, b"post-form")
        response = httpx.post(
            form["url"],
            data=form["fields"],
            files={"file": ("a.bin", body, "application/octet-stream")},
            verify=ssl_context(verify),
        )
        assert response.status_code == 204, response.text
        customer = "x-amz-server-side-encryption-customer-key" in fields
        got = s3.get_object(Bucket=bucket, Key="form", **(sse_c() if customer else {}))
        assert got["Body"].read() == body
        assert ("SSECustomerKeyMD5" in got) == customer
        assert not holds(stored_files(server), b"<<PLAINTEXT-post-form>>")


def test_versions_keep_their_own_keys(s3: Any, bucket: str) -> None:
    """Each version of a key has its own encryption (and SSE-C key), as on S3."""
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    first = s3.put_object(Bucket=bucket, Key="k", Body=b"one", **sse_c())["VersionId"]
    second = s3.put_object(Bucket=bucket, Key="k", Body=b"two", **sse_c(OTHER_KEY))["VersionId"]
    third = s3.put_object(Bucket=bucket, Key="k", Body=b"three", ServerSideEncryption="AES256")
    got = s3.get_object(Bucket=bucket, Key="k", VersionId=first, **sse_c())
    assert got["Body"].read() == b"one"
    got = s3.get_object(Bucket=bucket, Key="k", VersionId=second, **sse_c(OTHER_KEY))
    assert got["Body"].read() == b"two"
    error = client_error(s3.get_object, Bucket=bucket, Key="k", VersionId=second, **sse_c())
    assert error_code(error) == "AccessDenied"
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"three"
    versions = s3.list_object_versions(Bucket=bucket)["Versions"]
    assert sorted(v["Size"] for v in versions) == [3, 3, 5]
    assert third["VersionId"] == versions[0]["VersionId"]


def test_aws_cli(server: SyncServer, verify: str | bool, tmp_path: Path, bucket: str) -> None:
    cli = AwsCli.of(tmp_path, server.get_storage_descriptor(), verify)

    def cp(*args: str) -> None:
        cli.run("s3", "cp", *args, "--no-progress")

    key_file = tmp_path / "customer.key"
    key_file.write_bytes(CUSTOMER_KEY)
    small, large = tmp_path / "small", tmp_path / "large"
    small.write_bytes(os.urandom(PACKAGE + 1))
    large.write_bytes(os.urandom(9 * MiB))  # past the CLI's 8 MiB multipart threshold
    flags = {
        "sse-s3": ["--sse", "AES256"],
        "sse-kms": ["--sse", "aws:kms", "--sse-kms-key-id", "key-1"],
        "sse-c": ["--sse-c", "AES256", "--sse-c-key", f"fileb://{key_file}"],
    }
    for mode, flag in flags.items():
        for source in (small, large):
            url = f"s3://{bucket}/{mode}/{source.name}"
            cp(str(source), url, *flag)
            back = tmp_path / f"back-{mode}-{source.name}"
            cp(url, str(back), *(flag if mode == "sse-c" else []))
            assert back.read_bytes() == source.read_bytes(), (mode, source.name)


def test_without_a_keyring(tmp_path: Path) -> None:
    """A server with no kms keys refuses SSE-S3/KMS with a clear 400, and SSE-C over
    plain HTTP unless allowed."""
    with SyncServer({"storage": {"directory": str(tmp_path)}}) as started:
        d = started.get_storage_descriptor()
        s3 = signed_client(d.endpoint_url, d.access_key, d.access_secret)
        s3.create_bucket(Bucket="bkt")
        for args in (MODES["sse-s3"], MODES["sse-kms"]):
            error = client_error(s3.put_object, Bucket="bkt", Key="k", Body=b"x", **args)
            assert error.response["ResponseMetadata"]["HTTPStatusCode"] == 400
            assert "kms.keys" in error.response["Error"]["Message"]
        error = client_error(s3.put_object, Bucket="bkt", Key="k", Body=b"x", **sse_c())
        assert error_code(error) == "InvalidRequest"
        assert "secure" in error.response["Error"]["Message"]


@pytest.mark.slow
def test_in_a_cluster(tmp_path: Path) -> None:
    """Three nodes with the same keyring: objects sealed through one node are read
    through the others, and no drive of any node holds their plaintext."""
    nodes = make_nodes(tmp_path, 3, 2)
    for i in range(3):
        config = tmp_path / f"node{i}" / "shoal.toml"
        keys = ", ".join(f'{{ id = "{k["id"]}", secret = "{k["secret"]}" }}' for k in KMS["keys"])
        config.write_text(
            config.read_text() + f"\n[kms]\nkeys = [{keys}]\nallow_sse_c_over_http = true\n"
        )
    with running(nodes) as (a, b, c):
        a.s3().create_bucket(Bucket="enc")
        bodies = {mode: pattern_body(400_000, mode.encode()) for mode in MODES}
        for mode, body in bodies.items():
            a.s3().put_object(Bucket="enc", Key=mode, Body=body, **MODES[mode])
        for node in (b, c):
            for mode, body in bodies.items():
                got = node.s3().get_object(Bucket="enc", Key=mode, **read_args(mode))
                assert got["Body"].read() == body
        files = [p for p in tmp_path.rglob("*") if p.is_file()]
        for mode in MODES:
            assert not holds(files, b"<<PLAINTEXT-" + mode.encode()), mode


def test_readme_example(tmp_path: Path) -> None:
    """The README's key command and [kms] TOML, as written (paths pointed at a temporary
    folder), give a server that seals SSE-S3 objects with that key."""
    command = example("sh", "### Server-side encryption").splitlines()[0]
    key_file = tmp_path / "kms-key-1"
    generate = command.split(" > ")[0]
    done = subprocess.run(generate, shell=True, capture_output=True, text=True, check=True)
    key_file.write_text(done.stdout)
    assert len(base64.b64decode(done.stdout.strip())) == 32
    toml = example("toml", "### Server-side encryption")
    config = tmp_path / "shoal.toml"
    config.write_text(toml.replace("/etc/shoal/kms-key-1", str(key_file)))
    proc, url = spawn_server(tmp_path / "data", "--config", str(config), "--log-level", "error")
    try:
        client = signed_client(url)
        client.create_bucket(Bucket="readme")
        put = client.put_object(
            Bucket="readme", Key="k", Body=b"sealed", ServerSideEncryption="AES256"
        )
        assert put["ServerSideEncryption"] == "AES256"
        assert client.get_object(Bucket="readme", Key="k")["Body"].read() == b"sealed"
    finally:
        proc.terminate()
        proc.wait(timeout=30)
