"""Multipart uploads through boto3: the transfer manager, every low-level call, the
errors AWS gives for bad part lists, UploadPartCopy, part-numbered reads and checksums."""

from __future__ import annotations

import base64
import hashlib
import io
import os
import struct
import zlib
from typing import Any

import botocore.exceptions
import google_crc32c
import httpx
import pytest
from boto3.s3.transfer import TransferConfig

from tests.integration.conftest import error_code

MiB = 1024 * 1024
PART = 5 * MiB


def md5_hex(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def multipart_etag(parts: list[bytes]) -> str:
    """S3's multipart ETag: MD5 of the concatenated binary part MD5s, then '-N'."""
    digests = b"".join(hashlib.md5(p).digest() for p in parts)
    return f'"{hashlib.md5(digests).hexdigest()}-{len(parts)}"'


def b64_crc32(data: bytes) -> str:
    return base64.b64encode(struct.pack(">I", zlib.crc32(data))).decode()


def b64_crc32c(data: bytes) -> str:
    return base64.b64encode(struct.pack(">I", google_crc32c.value(data))).decode()


def create(s3: Any, bucket: str, key: str, **kwargs: Any) -> str:
    return s3.create_multipart_upload(Bucket=bucket, Key=key, **kwargs)["UploadId"]


def put_parts(
    s3: Any, bucket: str, key: str, upload_id: str, parts: list[bytes], **kwargs: Any
) -> list[dict[str, Any]]:
    """Upload `parts` as parts 1..N; the list CompleteMultipartUpload wants."""
    done = []
    for number, data in enumerate(parts, 1):
        resp = s3.upload_part(
            Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=data, **kwargs
        )
        assert resp["ETag"] == f'"{md5_hex(data)}"'
        done.append({"PartNumber": number, "ETag": resp["ETag"]})
    return done


def complete(
    s3: Any, bucket: str, key: str, upload_id: str, parts: list[dict[str, Any]], **kwargs: Any
) -> dict[str, Any]:
    return s3.complete_multipart_upload(
        Bucket=bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts}, **kwargs
    )


def read(s3: Any, bucket: str, key: str, **kwargs: Any) -> bytes:
    return s3.get_object(Bucket=bucket, Key=key, **kwargs)["Body"].read()


def client_error(fn: Any, *args: Any, **kwargs: Any) -> botocore.exceptions.ClientError:
    with pytest.raises(botocore.exceptions.ClientError) as info:
        fn(*args, **kwargs)
    return info.value


def status(exc: botocore.exceptions.ClientError) -> int:
    return exc.response["ResponseMetadata"]["HTTPStatusCode"]


# --- the transfer manager ---------------------------------------------------------------


def test_transfer_manager_round_trip(any_s3: Any, bucket: str) -> None:
    """upload_fileobj / download_fileobj in 5 MiB parts: bytes and multipart ETag."""
    data = os.urandom(12 * MiB)
    config = TransferConfig(multipart_threshold=PART, multipart_chunksize=PART, max_concurrency=4)
    any_s3.upload_fileobj(io.BytesIO(data), bucket, "big/object.bin", Config=config)

    head = any_s3.head_object(Bucket=bucket, Key="big/object.bin")
    assert head["ContentLength"] == len(data)
    assert head["ETag"] == multipart_etag([data[:PART], data[PART : 2 * PART], data[2 * PART :]])

    out = io.BytesIO()
    any_s3.download_fileobj(bucket, "big/object.bin", out, Config=config)
    assert out.getvalue() == data
    assert read(any_s3, bucket, "big/object.bin") == data


# --- create / upload / complete ----------------------------------------------------------


def test_low_level_complete(s3: Any, bucket: str) -> None:
    """Parts of 5 MiB + a short last one assemble in order; the result names the object."""
    parts = [os.urandom(PART), os.urandom(PART), b"tail" * 1000]
    upload_id = create(s3, bucket, "dir/low level")
    done = put_parts(s3, bucket, "dir/low level", upload_id, parts)
    result = complete(s3, bucket, "dir/low level", upload_id, done)
    assert result["Bucket"] == bucket
    assert result["Key"] == "dir/low level"
    assert result["ETag"] == multipart_etag(parts)

    head = s3.head_object(Bucket=bucket, Key="dir/low level")
    assert head["ContentLength"] == sum(map(len, parts))
    assert head["ETag"] == multipart_etag(parts)
    assert read(s3, bucket, "dir/low level") == b"".join(parts)
    # The upload is gone once completed.
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


def test_single_small_part(s3_required: Any, bucket: str) -> None:
    """One part may be any size (it is the last part)."""
    upload_id = create(s3_required, bucket, "one")
    done = put_parts(s3_required, bucket, "one", upload_id, [b"just this"])
    assert complete(s3_required, bucket, "one", upload_id, done)["ETag"] == multipart_etag(
        [b"just this"]
    )
    assert read(s3_required, bucket, "one") == b"just this"


def test_reupload_part_replaces_it(any_s3: Any, bucket: str) -> None:
    """Uploading a part number again replaces the earlier bytes."""
    upload_id = create(any_s3, bucket, "again")
    first = put_parts(any_s3, bucket, "again", upload_id, [b"first version of part one"])
    second = put_parts(any_s3, bucket, "again", upload_id, [b"second"])
    assert first[0]["ETag"] != second[0]["ETag"]

    listed = any_s3.list_parts(Bucket=bucket, Key="again", UploadId=upload_id)["Parts"]
    assert [(p["PartNumber"], p["ETag"], p["Size"]) for p in listed] == [
        (1, second[0]["ETag"], len(b"second"))
    ]
    # The replaced part's ETag is no longer acceptable.
    exc = client_error(complete, any_s3, bucket, "again", upload_id, first)
    assert error_code(exc) == "InvalidPart"
    complete(any_s3, bucket, "again", upload_id, second)
    assert read(any_s3, bucket, "again") == b"second"


def test_metadata_from_create_applies_to_object(s3: Any, bucket: str) -> None:
    """Content-Type, stored headers and user metadata given at create are the object's."""
    upload_id = create(
        s3,
        bucket,
        "meta",
        ContentType="text/plain; charset=utf-8",
        CacheControl="max-age=60",
        ContentDisposition='attachment; filename="m.txt"',
        Metadata={"color": "blue", "shape": "round"},
    )
    complete(s3, bucket, "meta", upload_id, put_parts(s3, bucket, "meta", upload_id, [b"x"]))
    head = s3.head_object(Bucket=bucket, Key="meta")
    assert head["ContentType"] == "text/plain; charset=utf-8"
    assert head["CacheControl"] == "max-age=60"
    assert head["ContentDisposition"] == 'attachment; filename="m.txt"'
    assert head["Metadata"] == {"color": "blue", "shape": "round"}


def test_upload_in_progress_is_invisible(s3: Any, bucket: str) -> None:
    """Before completion the key does not exist for GET, HEAD or listings."""
    upload_id = create(s3, bucket, "pending")
    put_parts(s3, bucket, "pending", upload_id, [b"not yet"])
    assert error_code(client_error(s3.get_object, Bucket=bucket, Key="pending")) == "NoSuchKey"
    exc = client_error(s3.head_object, Bucket=bucket, Key="pending")
    assert status(exc) == 404
    assert "Contents" not in s3.list_objects_v2(Bucket=bucket)
    assert "Contents" not in s3.list_objects(Bucket=bucket)
    assert s3.list_objects_v2(Bucket=bucket, Prefix="pend")["KeyCount"] == 0


def test_conditional_complete_if_none_match(s3: Any, bucket: str) -> None:
    """If-None-Match: * on complete fails with 412 when the key exists; nothing changes."""
    s3.put_object(Bucket=bucket, Key="taken", Body=b"old contents")
    upload_id = create(s3, bucket, "taken")
    done = put_parts(s3, bucket, "taken", upload_id, [b"new contents"])
    exc = client_error(complete, s3, bucket, "taken", upload_id, done, IfNoneMatch="*")
    assert error_code(exc) == "PreconditionFailed"
    assert status(exc) == 412
    assert read(s3, bucket, "taken") == b"old contents"

    # On a fresh key the same condition holds.
    fresh = create(s3, bucket, "fresh")
    done = put_parts(s3, bucket, "fresh", fresh, [b"new"])
    complete(s3, bucket, "fresh", fresh, done, IfNoneMatch="*")
    assert read(s3, bucket, "fresh") == b"new"


# --- ListParts / ListMultipartUploads ----------------------------------------------------


def test_list_parts_paging(s3_required: Any, bucket: str) -> None:
    """ListParts in part-number order, paged with MaxParts and PartNumberMarker."""
    s3 = s3_required
    upload_id = create(s3, bucket, "parts")
    bodies = {n: f"part {n} ".encode() * n for n in (5, 1, 3, 2, 4)}  # out of order
    for number, body in bodies.items():
        s3.upload_part(Bucket=bucket, Key="parts", UploadId=upload_id, PartNumber=number, Body=body)

    whole = s3.list_parts(Bucket=bucket, Key="parts", UploadId=upload_id)
    assert whole["IsTruncated"] is False
    assert whole["UploadId"] == upload_id
    assert [(p["PartNumber"], p["Size"], p["ETag"]) for p in whole["Parts"]] == [
        (n, len(bodies[n]), f'"{md5_hex(bodies[n])}"') for n in range(1, 6)
    ]

    seen: list[int] = []
    marker = 0
    for _ in range(10):
        page = s3.list_parts(
            Bucket=bucket, Key="parts", UploadId=upload_id, MaxParts=2, PartNumberMarker=marker
        )
        assert page["MaxParts"] == 2
        numbers = [p["PartNumber"] for p in page.get("Parts", [])]
        assert len(numbers) <= 2
        assert all(n > marker for n in numbers)
        seen += numbers
        if not page["IsTruncated"]:
            break
        assert page["NextPartNumberMarker"] == numbers[-1]
        marker = page["NextPartNumberMarker"]
    assert seen == [1, 2, 3, 4, 5]

    after_four = s3.list_parts(Bucket=bucket, Key="parts", UploadId=upload_id, PartNumberMarker=4)
    assert [p["PartNumber"] for p in after_four["Parts"]] == [5]


def test_list_multipart_uploads(s3_required: Any, bucket: str) -> None:
    """Prefix, delimiter, key/upload-id markers, and several uploads of one key."""
    s3 = s3_required
    created: list[tuple[str, str]] = []
    for key in ["c", "a/1", "b/x/1", "c", "a/2", "d", "c"]:
        created.append((key, create(s3, bucket, key)))
    c_ids = [u for k, u in created if k == "c"]

    everything = s3.list_multipart_uploads(Bucket=bucket)
    listed = [(u["Key"], u["UploadId"]) for u in everything["Uploads"]]
    assert everything["IsTruncated"] is False
    assert sorted(listed) == sorted(created)
    assert [k for k, _ in listed] == sorted(k for k, _ in created)
    # Uploads of one key come in the order they were initiated.
    assert [u for k, u in listed if k == "c"] == c_ids

    by_prefix = s3.list_multipart_uploads(Bucket=bucket, Prefix="a/")
    assert [u["Key"] for u in by_prefix["Uploads"]] == ["a/1", "a/2"]
    assert by_prefix["Prefix"] == "a/"

    grouped = s3.list_multipart_uploads(Bucket=bucket, Delimiter="/")
    assert [u["Key"] for u in grouped["Uploads"]] == ["c", "c", "c", "d"]
    assert [p["Prefix"] for p in grouped["CommonPrefixes"]] == ["a/", "b/"]
    nested = s3.list_multipart_uploads(Bucket=bucket, Prefix="b/", Delimiter="/")
    assert "Uploads" not in nested
    assert [p["Prefix"] for p in nested["CommonPrefixes"]] == ["b/x/"]

    # A key marker alone resumes at the next key; with an upload-id marker, after that upload.
    after_c = s3.list_multipart_uploads(Bucket=bucket, KeyMarker="c")
    assert [u["Key"] for u in after_c["Uploads"]] == ["d"]
    after_first_c = s3.list_multipart_uploads(Bucket=bucket, KeyMarker="c", UploadIdMarker=c_ids[0])
    assert [(u["Key"], u["UploadId"]) for u in after_first_c["Uploads"]] == [
        ("c", c_ids[1]),
        ("c", c_ids[2]),
        ("d", created[5][1]),
    ]

    for max_uploads in (1, 2, 3):
        assert walk_uploads(s3, bucket, max_uploads) == listed
    assert walk_uploads(s3, bucket, 2, Delimiter="/") == [
        ("a/", ""),
        ("b/", ""),
        *[(k, u) for k, u in listed if k in ("c", "d")],
    ]


def walk_uploads(s3: Any, bucket: str, max_uploads: int, **kwargs: Any) -> list[tuple[str, str]]:
    """All uploads (and common prefixes, as (prefix, "")) page by page, in page order."""
    items: list[tuple[str, str]] = []
    markers: dict[str, str] = {}
    for _ in range(50):
        page = s3.list_multipart_uploads(Bucket=bucket, MaxUploads=max_uploads, **markers, **kwargs)
        got = [(u["Key"], u["UploadId"]) for u in page.get("Uploads", [])]
        got += [(p["Prefix"], "") for p in page.get("CommonPrefixes", [])]
        assert 0 < len(got) <= max_uploads or not page["IsTruncated"]
        items += sorted(got, key=lambda item: item[0])  # stable: keeps upload order
        if not page["IsTruncated"]:
            break
        markers = {"KeyMarker": page["NextKeyMarker"]}
        if page.get("NextUploadIdMarker"):
            markers["UploadIdMarker"] = page["NextUploadIdMarker"]
    assert len(items) == len(set(items)), "an upload was listed twice"
    return items


# --- errors ------------------------------------------------------------------------------


def test_abort_then_no_such_upload(s3: Any, bucket: str) -> None:
    """After AbortMultipartUpload every call naming the upload answers NoSuchUpload."""
    upload_id = create(s3, bucket, "aborted")
    done = put_parts(s3, bucket, "aborted", upload_id, [b"soon gone"])
    s3.abort_multipart_upload(Bucket=bucket, Key="aborted", UploadId=upload_id)

    calls = [
        lambda: s3.upload_part(
            Bucket=bucket, Key="aborted", UploadId=upload_id, PartNumber=2, Body=b"x"
        ),
        lambda: complete(s3, bucket, "aborted", upload_id, done),
        lambda: s3.list_parts(Bucket=bucket, Key="aborted", UploadId=upload_id),
        lambda: s3.abort_multipart_upload(Bucket=bucket, Key="aborted", UploadId=upload_id),
    ]
    for call in calls:
        exc = client_error(call)
        assert (error_code(exc), status(exc)) == ("NoSuchUpload", 404)
    assert "Uploads" not in s3.list_multipart_uploads(Bucket=bucket)
    assert error_code(client_error(s3.get_object, Bucket=bucket, Key="aborted")) == "NoSuchKey"


def test_unknown_upload_id(s3: Any, bucket: str) -> None:
    """An upload id that never existed, or one for another key, is NoSuchUpload."""
    upload_id = create(s3, bucket, "mine")
    for key, uid in [("mine", "no-such-upload-id"), ("other", upload_id)]:
        exc = client_error(s3.list_parts, Bucket=bucket, Key=key, UploadId=uid)
        assert error_code(exc) == "NoSuchUpload"
        exc = client_error(
            s3.upload_part, Bucket=bucket, Key=key, UploadId=uid, PartNumber=1, Body=b"x"
        )
        assert error_code(exc) == "NoSuchUpload"


def test_complete_twice(s3: Any, bucket: str) -> None:
    """A second complete of the same upload with the same parts answers the first's result
    (S3 is idempotent here), with other parts NoSuchUpload; the object is left alone."""
    upload_id = create(s3, bucket, "twice")
    done = put_parts(s3, bucket, "twice", upload_id, [b"once"])
    first = complete(s3, bucket, "twice", upload_id, done)
    assert complete(s3, bucket, "twice", upload_id, done)["ETag"] == first["ETag"]
    other = [{**done[0], "ETag": '"00000000000000000000000000000000"'}]
    exc = client_error(complete, s3, bucket, "twice", upload_id, other)
    assert (error_code(exc), status(exc)) == ("NoSuchUpload", 404)
    assert read(s3, bucket, "twice") == b"once"


def test_entity_too_small(s3: Any, bucket: str) -> None:
    """Every part but the last must be at least 5 MiB; the upload survives the refusal."""
    upload_id = create(s3, bucket, "small")
    done = put_parts(s3, bucket, "small", upload_id, [b"a" * 1024, b"b" * 1024])
    exc = client_error(complete, s3, bucket, "small", upload_id, done)
    assert (error_code(exc), status(exc)) == ("EntityTooSmall", 400)
    assert error_code(client_error(s3.head_object, Bucket=bucket, Key="small")) == "404"
    # Still there: the client may fix its part list and retry.
    parts = s3.list_parts(Bucket=bucket, Key="small", UploadId=upload_id)["Parts"]
    assert [p["PartNumber"] for p in parts] == [1, 2]


def test_invalid_part(s3: Any, bucket: str) -> None:
    """A wrong ETag or a part number never uploaded is InvalidPart."""
    upload_id = create(s3, bucket, "invalid")
    done = put_parts(s3, bucket, "invalid", upload_id, [b"the only part"])
    wrong_etag = [{"PartNumber": 1, "ETag": f'"{md5_hex(b"something else")}"'}]
    missing = [{"PartNumber": 2, "ETag": done[0]["ETag"]}]
    for parts in (wrong_etag, missing):
        exc = client_error(complete, s3, bucket, "invalid", upload_id, parts)
        assert (error_code(exc), status(exc)) == ("InvalidPart", 400)
    assert error_code(client_error(s3.head_object, Bucket=bucket, Key="invalid")) == "404"
    complete(s3, bucket, "invalid", upload_id, done)  # the right list still works
    assert read(s3, bucket, "invalid") == b"the only part"


def test_invalid_part_order(s3: Any, bucket: str) -> None:
    """Parts listed in descending order are InvalidPartOrder."""
    upload_id = create(s3, bucket, "order")
    done = put_parts(s3, bucket, "order", upload_id, [os.urandom(PART), b"end"])
    for parts in (done[::-1], [done[0], done[0], done[1]]):  # descending; a repeated part
        exc = client_error(complete, s3, bucket, "order", upload_id, parts)
        assert (error_code(exc), status(exc)) == ("InvalidPartOrder", 400)
    complete(s3, bucket, "order", upload_id, done)


def test_complete_with_subset_of_parts(s3_required: Any, bucket: str) -> None:
    """Parts left out of the complete list are dropped; the ETag counts only those used."""
    parts = [os.urandom(PART), b"left out", b"last"]
    upload_id = create(s3_required, bucket, "subset")
    done = put_parts(s3_required, bucket, "subset", upload_id, parts)
    result = complete(s3_required, bucket, "subset", upload_id, [done[0], done[2]])
    assert result["ETag"] == multipart_etag([parts[0], parts[2]])
    assert read(s3_required, bucket, "subset") == parts[0] + parts[2]
    head = s3_required.head_object(Bucket=bucket, Key="subset", PartNumber=2)
    assert (head["ContentLength"], head["PartsCount"]) == (len(b"last"), 2)


@pytest.mark.parametrize("number", ["0", "10001", "-1", "abc"])
def test_part_number_out_of_range(http: httpx.Client, s3: Any, bucket: str, number: str) -> None:
    """UploadPart with a part number outside 1..10000 is InvalidArgument."""
    upload_id = create(s3, bucket, "numbers")
    resp = http.put(
        f"/{bucket}/numbers",
        params={"partNumber": number, "uploadId": upload_id},
        content=b"data",
    )
    assert resp.status_code == 400
    assert "<Code>InvalidArgument</Code>" in resp.text
    assert "Parts" not in s3.list_parts(Bucket=bucket, Key="numbers", UploadId=upload_id)


def test_part_number_limits_accepted(s3_required: Any, bucket: str) -> None:
    """Part numbers 1 and 10000 are both fine, and gaps between parts are allowed."""
    s3 = s3_required
    upload_id = create(s3, bucket, "gaps")
    body = os.urandom(PART)
    first = s3.upload_part(Bucket=bucket, Key="gaps", UploadId=upload_id, PartNumber=1, Body=body)
    last = s3.upload_part(
        Bucket=bucket, Key="gaps", UploadId=upload_id, PartNumber=10000, Body=b"end"
    )
    parts = [{"PartNumber": 1, "ETag": first["ETag"]}, {"PartNumber": 10000, "ETag": last["ETag"]}]
    assert complete(s3, bucket, "gaps", upload_id, parts)["ETag"] == multipart_etag([body, b"end"])
    assert read(s3, bucket, "gaps") == body + b"end"
    assert s3.head_object(Bucket=bucket, Key="gaps", PartNumber=2)["PartsCount"] == 2


# --- UploadPartCopy ----------------------------------------------------------------------


def test_upload_part_copy(s3: Any, bucket: str) -> None:
    """Whole-object and ranged part copies; a range past the end of the source is refused."""
    source = os.urandom(PART + 10)
    s3.put_object(Bucket=bucket, Key="src/ob ject+1", Body=source)
    upload_id = create(s3, bucket, "copied")
    copy_source = {"Bucket": bucket, "Key": "src/ob ject+1"}

    whole = s3.upload_part_copy(
        Bucket=bucket, Key="copied", UploadId=upload_id, PartNumber=1, CopySource=copy_source
    )
    assert whole["CopyPartResult"]["ETag"] == f'"{md5_hex(source)}"'
    ranged = s3.upload_part_copy(
        Bucket=bucket,
        Key="copied",
        UploadId=upload_id,
        PartNumber=2,
        CopySource=copy_source,
        CopySourceRange="bytes=100-1123",
    )
    assert ranged["CopyPartResult"]["ETag"] == f'"{md5_hex(source[100:1124])}"'
    listed = s3.list_parts(Bucket=bucket, Key="copied", UploadId=upload_id)["Parts"]
    assert [(p["PartNumber"], p["Size"]) for p in listed] == [(1, len(source)), (2, 1024)]

    for bad_range in (f"bytes=0-{len(source)}", f"bytes={len(source) + 5}-{len(source) + 10}"):
        exc = client_error(
            s3.upload_part_copy,
            Bucket=bucket,
            Key="copied",
            UploadId=upload_id,
            PartNumber=3,
            CopySource=copy_source,
            CopySourceRange=bad_range,
        )
        # AWS answers InvalidArgument ("Range specified is not valid for source object of
        # size: N"); ceph's s3-tests also accept InvalidRange (416).
        assert (error_code(exc), status(exc)) in (("InvalidRange", 416), ("InvalidArgument", 400))
    exc = client_error(
        s3.upload_part_copy,
        Bucket=bucket,
        Key="copied",
        UploadId=upload_id,
        PartNumber=3,
        CopySource={"Bucket": bucket, "Key": "no such source"},
    )
    assert error_code(exc) == "NoSuchKey"

    done = [
        {"PartNumber": 1, "ETag": whole["CopyPartResult"]["ETag"]},
        {"PartNumber": 2, "ETag": ranged["CopyPartResult"]["ETag"]},
    ]
    complete(s3, bucket, "copied", upload_id, done)
    assert read(s3, bucket, "copied") == source + source[100:1124]


# --- reading by part number --------------------------------------------------------------


def test_get_and_head_by_part_number(s3: Any, bucket: str) -> None:
    """?partNumber=N reads that part's bytes and reports x-amz-mp-parts-count."""
    parts = [os.urandom(PART), os.urandom(PART), b"three" * 100]
    upload_id = create(s3, bucket, "numbered")
    complete(s3, bucket, "numbered", upload_id, put_parts(s3, bucket, "numbered", upload_id, parts))

    offset = 0
    for number, data in enumerate(parts, 1):
        got = s3.get_object(Bucket=bucket, Key="numbered", PartNumber=number)
        assert got["Body"].read() == data
        assert got["PartsCount"] == 3
        assert got["ContentLength"] == len(data)
        total = sum(map(len, parts))
        assert got["ContentRange"] == f"bytes {offset}-{offset + len(data) - 1}/{total}"
        head = s3.head_object(Bucket=bucket, Key="numbered", PartNumber=number)
        assert (head["ContentLength"], head["PartsCount"]) == (len(data), 3)
        assert head["ETag"] == multipart_etag(parts)
        offset += len(data)

    exc = client_error(s3.get_object, Bucket=bucket, Key="numbered", PartNumber=4)
    assert (error_code(exc), status(exc)) == ("InvalidPart", 400)  # as AWS answers


# --- checksums ---------------------------------------------------------------------------


def test_composite_crc32_checksum(s3: Any, bucket: str) -> None:
    """CRC32 with the default COMPOSITE type: the checksum of the part checksums, '-N'."""
    parts = [os.urandom(PART), b"last part"]
    created = s3.create_multipart_upload(Bucket=bucket, Key="crc", ChecksumAlgorithm="CRC32")
    assert created["ChecksumAlgorithm"] == "CRC32"
    assert created.get("ChecksumType", "COMPOSITE") == "COMPOSITE"
    upload_id = created["UploadId"]
    done = []
    for number, data in enumerate(parts, 1):
        resp = s3.upload_part(
            Bucket=bucket,
            Key="crc",
            UploadId=upload_id,
            PartNumber=number,
            Body=data,
            ChecksumAlgorithm="CRC32",
        )
        assert resp["ChecksumCRC32"] == b64_crc32(data)
        done.append({"PartNumber": number, "ETag": resp["ETag"], "ChecksumCRC32": b64_crc32(data)})

    listed = s3.list_parts(Bucket=bucket, Key="crc", UploadId=upload_id)
    assert [p["ChecksumCRC32"] for p in listed["Parts"]] == [b64_crc32(p) for p in parts]

    result = complete(s3, bucket, "crc", upload_id, done)
    binary = b"".join(struct.pack(">I", zlib.crc32(p)) for p in parts)
    expected = f"{b64_crc32(binary)}-2"
    assert result["ChecksumCRC32"] == expected
    assert result["ChecksumCRC32"].endswith("-2")

    got = s3.get_object(Bucket=bucket, Key="crc", ChecksumMode="ENABLED")
    assert got["Body"].read() == b"".join(parts)
    assert got["ChecksumCRC32"] == expected
    assert got["ChecksumType"] == "COMPOSITE"
    head = s3.head_object(Bucket=bucket, Key="crc", ChecksumMode="ENABLED")
    assert head["ChecksumCRC32"] == expected


def full_object_upload(s3: Any, bucket: str, key: str, parts: list[bytes]) -> tuple[str, list]:
    """A CRC32C FULL_OBJECT upload with `parts` uploaded; (upload id, part list)."""
    created = s3.create_multipart_upload(
        Bucket=bucket, Key=key, ChecksumAlgorithm="CRC32C", ChecksumType="FULL_OBJECT"
    )
    assert (created["ChecksumAlgorithm"], created["ChecksumType"]) == ("CRC32C", "FULL_OBJECT")
    done = []
    for number, data in enumerate(parts, 1):
        resp = s3.upload_part(
            Bucket=bucket,
            Key=key,
            UploadId=created["UploadId"],
            PartNumber=number,
            Body=data,
            ChecksumAlgorithm="CRC32C",
        )
        assert resp["ChecksumCRC32C"] == b64_crc32c(data)
        done.append(
            {"PartNumber": number, "ETag": resp["ETag"], "ChecksumCRC32C": b64_crc32c(data)}
        )
    return created["UploadId"], done


def test_full_object_crc32c_checksum(s3: Any, bucket: str) -> None:
    """CRC32C FULL_OBJECT: the stored checksum is the whole object's CRC32C."""
    parts = [os.urandom(PART), os.urandom(1000)]
    whole = b"".join(parts)
    upload_id, done = full_object_upload(s3, bucket, "crcc", parts)
    result = complete(s3, bucket, "crcc", upload_id, done)
    assert result["ChecksumCRC32C"] == b64_crc32c(whole)
    assert result["ChecksumType"] == "FULL_OBJECT"
    assert result["ETag"] == multipart_etag(parts)

    got = s3.get_object(Bucket=bucket, Key="crcc", ChecksumMode="ENABLED")
    assert got["Body"].read() == whole
    assert got["ChecksumCRC32C"] == b64_crc32c(whole)
    assert got["ChecksumType"] == "FULL_OBJECT"
    head = s3.head_object(Bucket=bucket, Key="crcc", ChecksumMode="ENABLED")
    assert head["ChecksumCRC32C"] == b64_crc32c(whole)


def test_full_object_checksum_given_at_complete(s3: Any, bucket: str) -> None:
    """x-amz-checksum-crc32c on CompleteMultipartUpload is the whole object's checksum:
    the right value completes, a wrong one is BadDigest and the upload stays completable."""
    parts = [os.urandom(PART), os.urandom(1000)]
    whole = b"".join(parts)
    upload_id, done = full_object_upload(s3, bucket, "given", parts)

    exc = client_error(
        complete,
        s3,
        bucket,
        "given",
        upload_id,
        done,
        ChecksumCRC32C=b64_crc32c(b"not the object"),
        ChecksumType="FULL_OBJECT",
    )
    assert (error_code(exc), status(exc)) == ("BadDigest", 400)
    assert error_code(client_error(s3.head_object, Bucket=bucket, Key="given")) == "404"

    result = complete(
        s3,
        bucket,
        "given",
        upload_id,
        done,
        ChecksumCRC32C=b64_crc32c(whole),
        ChecksumType="FULL_OBJECT",
    )
    assert result["ChecksumCRC32C"] == b64_crc32c(whole)
    assert read(s3, bucket, "given") == whole
