"""Server access logging through boto3 at its defaults, standalone and on an erasure-coded
node: Put/GetBucketLogging and AWS's errors, and the log objects delivered into the target
bucket, read back and parsed line by line (S3's server access log format)."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import shlex
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from botocore.exceptions import ClientError

from shoal.app.server import SyncServer
from tests.integration.conftest import (
    auth_config,
    erasure_config,
    error_code,
    signed_client,
    wait_for,
)
from tests.integration.test_cluster import make_nodes, running

#: One record: 26 space-separated fields, three of them quoted, the time in brackets.
FIELDS = [
    "bucket_owner",
    "bucket",
    "time",
    "remote_ip",
    "requester",
    "request_id",
    "operation",
    "key",
    "request_uri",
    "status",
    "error_code",
    "bytes_sent",
    "object_size",
    "total_time",
    "turn_around",
    "referer",
    "user_agent",
    "version_id",
    "host_id",
    "signature_version",
    "cipher_suite",
    "auth_type",
    "host_header",
    "tls_version",
    "access_point_arn",
    "acl_required",
]
SIMPLE_NAME = re.compile(r"\d{4}-\d{2}-\d{2}-\d{2}-\d{2}-\d{2}-[0-9A-F]{16}")


def parse_line(line: str) -> dict[str, str]:
    """A log line back into its fields (the bracketed time is one field)."""
    stamp = re.search(r" \[([^\]]+)\] ", line)
    assert stamp is not None, line
    text = line[: stamp.start()] + ' "' + stamp.group(1) + '" ' + line[stamp.end() :]
    values = shlex.split(text, posix=True)
    assert len(values) == len(FIELDS), (len(values), line)
    return dict(zip(FIELDS, values, strict=True))


def _config(mode: str, directory: Path, **logging: Any) -> dict[str, Any]:
    config: dict[str, Any] = {"logging": {"flush_seconds": 1, **logging}}
    # A keyring, so that a target bucket may have default encryption.
    config["kms"] = {"keys": [{"id": "key-1", "secret": base64.b64encode(bytes(32)).decode()}]}
    # Kept across a restart (the shutdown test starts a second server on the same data).
    config["storage"] = {"directory": str(directory / "data"), "clean_slate": False}
    if mode == "erasure":
        config |= erasure_config(directory / "drives")
    return config


@pytest.fixture(scope="module", params=["standalone", "erasure"])
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="module")
def server(mode: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SyncServer]:
    with SyncServer(_config(mode, tmp_path_factory.mktemp("logging"))) as running:
        yield running


@pytest.fixture
def s3(server: SyncServer) -> Any:
    return signed_client(server.endpoint_url)


_names = iter(range(1_000_000))


@pytest.fixture
def buckets(s3: Any) -> tuple[str, str]:
    n = next(_names)
    source, target = f"src-{n}", f"logs-{n}"
    s3.create_bucket(Bucket=source)
    s3.create_bucket(Bucket=target)
    return source, target


def _log_objects(s3: Any, bucket: str, prefix: str = "") -> list[str]:
    listed = s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])
    return [o["Key"] for o in listed]


def _records(s3: Any, bucket: str, prefix: str) -> list[dict[str, str]]:
    records = []
    for key in _log_objects(s3, bucket, prefix):
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read().decode()
        assert body.endswith("\n")
        records += [parse_line(line) for line in body.splitlines()]
    return records


def _wait_for_records(s3: Any, bucket: str, prefix: str, request_ids: set[str]) -> list[Any]:
    found: list[dict[str, str]] = []

    def arrived() -> bool:
        found[:] = _records(s3, bucket, prefix)
        return request_ids <= {r["request_id"] for r in found}

    wait_for("the log records are delivered", arrived, timeout=30, interval=0.2)
    return found


def _request_id(response: dict[str, Any]) -> str:
    return str(response["ResponseMetadata"]["RequestId"])


def _enable(s3: Any, source: str, target: str, prefix: str, key_format: Any = None) -> None:
    enabled: dict[str, Any] = {"TargetBucket": target, "TargetPrefix": prefix}
    if key_format is not None:
        enabled["TargetObjectKeyFormat"] = key_format
    s3.put_bucket_logging(Bucket=source, BucketLoggingStatus={"LoggingEnabled": enabled})


# --- the status -------------------------------------------------------------------------------


def test_logging_status_round_trip(s3: Any, buckets: tuple[str, str]) -> None:
    source, target = buckets
    assert "LoggingEnabled" not in s3.get_bucket_logging(Bucket=source)
    _enable(s3, source, target, "access/")
    assert s3.get_bucket_logging(Bucket=source)["LoggingEnabled"] == {
        "TargetBucket": target,
        "TargetPrefix": "access/",
        "TargetObjectKeyFormat": {"SimplePrefix": {}},
    }
    partitioned = {"PartitionedPrefix": {"PartitionDateSource": "DeliveryTime"}}
    _enable(s3, source, target, "", partitioned)
    got = s3.get_bucket_logging(Bucket=source)["LoggingEnabled"]
    assert got["TargetObjectKeyFormat"] == partitioned and got["TargetPrefix"] == ""
    s3.put_bucket_logging(Bucket=source, BucketLoggingStatus={})
    assert "LoggingEnabled" not in s3.get_bucket_logging(Bucket=source)


def test_logging_status_errors(s3: Any, server: SyncServer, buckets: tuple[str, str]) -> None:
    source, target = buckets

    def code(**kwargs: Any) -> tuple[str, int]:
        with pytest.raises(ClientError) as info:
            s3.put_bucket_logging(**kwargs)
        status = info.value.response["ResponseMetadata"]["HTTPStatusCode"]
        return error_code(info.value), status

    missing = {"LoggingEnabled": {"TargetBucket": "no-such-target", "TargetPrefix": "x"}}
    assert code(Bucket=source, BucketLoggingStatus=missing) == (
        "InvalidTargetBucketForLogging",
        400,
    )
    enabled = {"LoggingEnabled": {"TargetBucket": target, "TargetPrefix": "x"}}
    assert code(Bucket="no-such-source", BucketLoggingStatus=enabled) == ("NoSuchBucket", 404)
    with pytest.raises(ClientError) as info:
        s3.get_bucket_logging(Bucket="no-such-source")
    assert error_code(info.value) == "NoSuchBucket"
    # Raw bodies no SDK sends: MalformedXML.
    url = f"{server.endpoint_url}/{source}?logging"
    for body in (
        b"<BucketLoggingStatus><LoggingEnabled><TargetPrefix>x</TargetPrefix>"
        b"</LoggingEnabled></BucketLoggingStatus>",
        b"<BucketLoggingStatus><LoggingEnabled><TargetBucket>"
        + target.encode()
        + b"</TargetBucket><TargetPrefix>x</TargetPrefix><TargetObjectKeyFormat>"
        b"<PartitionedPrefix><PartitionDateSource>Tuesday</PartitionDateSource>"
        b"</PartitionedPrefix></TargetObjectKeyFormat></LoggingEnabled></BucketLoggingStatus>",
        b"<NotLogging/>",
    ):
        answer = httpx.put(url, content=body, headers={"content-md5": _md5(body)})
        assert answer.status_code == 400 and "<Code>MalformedXML</Code>" in answer.text
    assert "LoggingEnabled" not in s3.get_bucket_logging(Bucket=source)


def _md5(body: bytes) -> str:
    return base64.b64encode(hashlib.md5(body).digest()).decode()


# --- the records --------------------------------------------------------------------------------


def test_records_in_s3_format(s3: Any, server: SyncServer, buckets: tuple[str, str]) -> None:
    source, target = buckets
    _enable(s3, source, target, "access/")
    put = s3.put_object(Bucket=source, Key="dir/a b.txt", Body=b"hello world")
    got = s3.get_object(Bucket=source, Key="dir/a b.txt")
    assert got["Body"].read() == b"hello world"
    with pytest.raises(ClientError) as info:
        s3.get_object(Bucket=source, Key="missing")
    missing_id = info.value.response["ResponseMetadata"]["RequestId"]
    listed = s3.list_objects_v2(Bucket=source)
    url = s3.generate_presigned_url("get_object", Params={"Bucket": source, "Key": "dir/a b.txt"})
    presigned = httpx.get(url, headers={"referer": "http://example.com/page"})
    assert presigned.status_code == 200
    ids = {_request_id(put), _request_id(got), missing_id, _request_id(listed)}
    ids.add(presigned.headers["x-amz-request-id"])
    records = {r["request_id"]: r for r in _wait_for_records(s3, target, "access/", ids)}

    for record in records.values():
        assert record["bucket"] == source
        assert record["remote_ip"] == "127.0.0.1"
        assert re.fullmatch(r"\d{2}/[A-Z][a-z]{2}/\d{4}:\d{2}:\d{2}:\d{2} \+0000", record["time"])
        assert record["host_header"] == server.endpoint_url.split("://", 1)[1]
        assert record["signature_version"] == "SigV4"
        assert int(record["total_time"]) >= 0
    put_record = records[_request_id(put)]
    assert put_record["operation"] == "REST.PUT.OBJECT"
    assert put_record["key"] == "dir/a%20b.txt"
    assert put_record["request_uri"] == f"PUT /{source}/dir/a%20b.txt HTTP/1.1"
    assert (put_record["status"], put_record["error_code"]) == ("200", "-")
    assert put_record["object_size"] == "11" and put_record["bytes_sent"] == "-"
    # Auth is off: every caller acts as the default owner, whose bucket this is.
    owner = server.app.state.accounts.default_owner.canonical_id
    assert put_record["requester"] == owner and put_record["bucket_owner"] == owner
    assert put_record["auth_type"] == "AuthHeader"
    assert "Boto3" in put_record["user_agent"] and put_record["referer"] == "-"
    get_record = records[_request_id(got)]
    assert get_record["operation"] == "REST.GET.OBJECT"
    assert get_record["bytes_sent"] == "11" and get_record["object_size"] == "11"
    error = records[missing_id]
    assert (error["status"], error["error_code"], error["key"]) == ("404", "NoSuchKey", "missing")
    assert int(error["bytes_sent"]) > 0  # the error document
    listing = records[_request_id(listed)]
    assert (listing["operation"], listing["key"]) == ("REST.GET.BUCKET", "-")
    assert listing["request_uri"].startswith(f"GET /{source}?list-type=2")
    signed_url = records[presigned.headers["x-amz-request-id"]]
    assert signed_url["auth_type"] == "QueryString"
    assert signed_url["referer"] == "http://example.com/page"
    assert signed_url["user_agent"].startswith("python-httpx/")

    # Log objects are named as S3 names them, are plain text, and delivering them made
    # no records of its own.
    for key in _log_objects(s3, target, "access/"):
        assert SIMPLE_NAME.fullmatch(key.removeprefix("access/")), key
        assert s3.head_object(Bucket=target, Key=key)["ContentType"] == "text/plain"
    assert not [r for r in records.values() if r["bucket"] == target]


def test_logs_take_the_target_buckets_default_encryption(s3: Any, buckets: tuple[str, str]) -> None:
    """A delivered log object is a write without encryption headers: the target
    bucket's default encryption applies to it as to any other."""
    source, target = buckets
    s3.put_bucket_encryption(
        Bucket=target,
        ServerSideEncryptionConfiguration={
            "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]
        },
    )
    _enable(s3, source, target, "sealed/")
    put = s3.put_object(Bucket=source, Key="k", Body=b"x")
    _wait_for_records(s3, target, "sealed/", {_request_id(put)})
    for key in _log_objects(s3, target, "sealed/"):
        assert s3.head_object(Bucket=target, Key=key)["ServerSideEncryption"] == "AES256"


def test_partitioned_names(s3: Any, buckets: tuple[str, str]) -> None:
    source, target = buckets
    for source_of, date_source in (("EventTime", "p1/"), ("DeliveryTime", "p2/")):
        key_format = {"PartitionedPrefix": {"PartitionDateSource": source_of}}
        _enable(s3, source, target, date_source, key_format)
        put = s3.put_object(Bucket=source, Key=f"obj-{source_of}", Body=b"x")
        _wait_for_records(s3, target, date_source, {_request_id(put)})
        for key in _log_objects(s3, target, date_source):
            account, region, bucket, rest = key.removeprefix(date_source).split("/", 3)
            assert (region, bucket) == ("us-east-1", source), key
            assert account
            day, name = rest.rsplit("/", 1)
            assert re.fullmatch(r"\d{4}/\d{2}/\d{2}", day), key
            assert SIMPLE_NAME.fullmatch(name), key
            if source_of == "DeliveryTime":  # the folders are the delivery's day
                assert name.startswith(day.replace("/", "-")), key


def test_logging_off_stops_records(s3: Any, buckets: tuple[str, str]) -> None:
    """Requests made while logging is off are never delivered: a request made after it is
    turned on again arrives, the one made while it was off does not."""
    source, target = buckets
    _enable(s3, source, target, "off/")
    before = s3.put_object(Bucket=source, Key="before", Body=b"x")
    _wait_for_records(s3, target, "off/", {_request_id(before)})
    s3.put_bucket_logging(Bucket=source, BucketLoggingStatus={})
    while_off = s3.put_object(Bucket=source, Key="while-off", Body=b"x")
    _enable(s3, source, target, "off/")
    again = s3.put_object(Bucket=source, Key="again", Body=b"x")
    records = _wait_for_records(s3, target, "off/", {_request_id(again)})
    assert _request_id(while_off) not in {r["request_id"] for r in records}


# --- batching and shutdown ---------------------------------------------------------------------


def test_batches_by_record_count_and_flushes_at_shutdown(mode: str, tmp_path: Path) -> None:
    """With a long interval, a batch goes out once it holds flush_records records, and
    what is left is delivered when the server stops."""
    config = _config(mode, tmp_path, flush_seconds=3600, flush_records=3)
    with SyncServer(config) as running:
        s3 = signed_client(running.endpoint_url)
        s3.create_bucket(Bucket="source")
        s3.create_bucket(Bucket="target")
        _enable(s3, "source", "target", "batch/")
        # PutBucketLogging's own record and five PUTs: two batches of three.
        ids = {
            _request_id(s3.put_object(Bucket="source", Key=f"k{i}", Body=b"x")) for i in range(5)
        }
        records = _wait_for_records(s3, "target", "batch/", ids)
        assert len(records) == 6
        for key in _log_objects(s3, "target", "batch/"):
            lines = s3.get_object(Bucket="target", Key=key)["Body"].read().splitlines()
            assert len(lines) == 3
        last = _request_id(s3.put_object(Bucket="source", Key="last", Body=b"x"))
    with SyncServer(config) as again:
        s3 = signed_client(again.endpoint_url)
        records = _records(s3, "target", "batch/")
        assert last in {r["request_id"] for r in records}


def test_buffer_is_bounded(mode: str, tmp_path: Path) -> None:
    config = _config(mode, tmp_path, flush_seconds=3600, flush_records=1000)
    config["logging"]["max_buffered_records"] = 2
    with SyncServer(config) as running:
        s3 = signed_client(running.endpoint_url)
        s3.create_bucket(Bucket="source")
        s3.create_bucket(Bucket="target")
        _enable(s3, "source", "target", "bounded/")
        for i in range(6):
            s3.put_object(Bucket="source", Key=f"k{i}", Body=b"x")
        server_log = running.app.state.server_log
        assert server_log.buffered <= 2
        assert server_log.dropped >= 3
    with SyncServer(config) as again:
        records = _records(signed_client(again.endpoint_url), "target", "bounded/")
        assert 1 <= len(records) <= 2


# --- requesters with auth on ------------------------------------------------------------------

OWNER, OTHER = ("AKLOGOWNER", "owner-secret"), ("AKLOGOTHER", "other-secret")


def test_requesters_are_canonical_ids(mode: str, tmp_path: Path) -> None:
    """With auth on, a record names the signing account's canonical id, `-` for an
    anonymous caller; the bucket owner is the owner's canonical id, as is the account
    folder of partitioned names."""
    config = _config(mode, tmp_path) | auth_config(OWNER, OTHER)
    with SyncServer(config) as running:
        owner = signed_client(running.endpoint_url, *OWNER)
        other = signed_client(running.endpoint_url, *OTHER)
        owner.create_bucket(Bucket="source")
        owner.create_bucket(Bucket="target")
        owner.put_object(Bucket="source", Key="open", Body=b"x")
        grant = {
            "Effect": "Allow",
            "Principal": "*",
            "Action": "s3:GetObject",
            "Resource": "arn:aws:s3:::source/*",
        }
        policy = json.dumps({"Version": "2012-10-17", "Statement": [grant]})
        owner.put_bucket_policy(Bucket="source", Policy=policy)
        partitioned = {"PartitionedPrefix": {"PartitionDateSource": "EventTime"}}
        _enable(owner, "source", "target", "p/", partitioned)
        by_other = _request_id(other.get_object(Bucket="source", Key="open"))
        anonymous = httpx.get(f"{running.endpoint_url}/source/open")
        assert anonymous.status_code == 200
        by_anonymous = anonymous.headers["x-amz-request-id"]
        records = _wait_for_records(owner, "target", "p/", {by_other, by_anonymous})
        accounts = running.app.state.accounts
        owner_id = accounts.by_key(OWNER[0]).canonical_id
        other_id = accounts.by_key(OTHER[0]).canonical_id
        by_id = {r["request_id"]: r for r in records}
        assert by_id[by_other]["requester"] == other_id
        assert by_id[by_anonymous]["requester"] == "-"
        assert by_id[by_anonymous]["signature_version"] == "-"
        assert {r["bucket_owner"] for r in records} == {owner_id}
        for key in _log_objects(owner, "target", "p/"):
            assert key.startswith(f"p/{owner_id}/us-east-1/source/"), key


# --- a cluster ---------------------------------------------------------------------------------


@pytest.mark.slow
def test_in_a_cluster(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Logging set through one node of a three-node cluster applies on the others: each
    node delivers the records of the requests it served, readable through any node."""
    monkeypatch.setenv("SHOAL_LOGGING__FLUSH_SECONDS", "1")  # the nodes inherit it
    with running(make_nodes(tmp_path, 3, 2)) as (a, b, c):
        a.s3().create_bucket(Bucket="source")
        a.s3().create_bucket(Bucket="target")
        _enable(a.s3(), "source", "target", "cluster/")
        ids = set()
        for node in (a, b, c):
            put = node.s3().put_object(Bucket="source", Key=node.name, Body=b"x")
            ids.add(_request_id(put))
        records = _wait_for_records(c.s3(), "target", "cluster/", ids)
        assert {r["key"] for r in records if r["request_id"] in ids} == {"node0", "node1", "node2"}
        assert len(_log_objects(b.s3(), "target", "cluster/")) >= 3  # one per node at least
