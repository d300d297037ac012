"""Server access logging, pure parts and delivery into a real FileStore: the logging
status document, the record line, log object names, batching, the memory bound."""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shoal.app.dispatch import Operation
from shoal.app.errors import MalformedXML
from shoal.app.serverlog import ServerLog
from shoal.app.serverlog.keys import log_key
from shoal.app.serverlog.record import (
    build_record,
    format_line,
    operation_name,
    owner_id,
    requester_id,
)
from shoal.app.serverlog.status import (
    PARTITIONED,
    SIMPLE,
    LoggingStatus,
    TargetGrant,
    parse_status,
    render_status,
)
from shoal.auth import Principal
from shoal.auth.accounts import Accounts, AccountSpec, canonical_id
from shoal.sse.keyring import Keyring
from shoal.storage.filestore import FileStore

# --- the status document --------------------------------------------------------------------

_texts = st.text(
    st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="\ufffe\uffff"),
    max_size=40,
)
_statuses = st.builds(
    LoggingStatus,
    target_bucket=st.from_regex(r"[a-z0-9][a-z0-9-]{1,20}[a-z0-9]", fullmatch=True),
    target_prefix=_texts.map(str.strip),
    key_format=st.sampled_from([SIMPLE, PARTITIONED]),
    date_source=st.sampled_from(["EventTime", "DeliveryTime"]),
    grants=st.lists(
        st.builds(
            TargetGrant,
            grantee_type=st.sampled_from(["CanonicalUser", "AmazonCustomerByEmail", "Group"]),
            grantee=_texts.filter(lambda t: t.strip() == t and t != ""),
            permission=st.sampled_from(["FULL_CONTROL", "READ", "WRITE"]),
            display_name=st.none(),
        ),
        max_size=3,
    ).map(tuple),
)


@given(_statuses)
def test_status_round_trips(status: LoggingStatus) -> None:
    if status.key_format == SIMPLE:
        status = LoggingStatus(status.target_bucket, status.target_prefix, grants=status.grants)
    assert parse_status(render_status(status)) == status


def test_disabled_status_renders_empty() -> None:
    body = render_status(None)
    assert b'xmlns="http://doc.s3.amazonaws.com/2006-03-01"' in body
    assert parse_status(body) is None
    assert parse_status(b"<BucketLoggingStatus/>") is None


@pytest.mark.parametrize(
    "body",
    [
        b"<Other/>",
        b"<BucketLoggingStatus><LoggingEnabled/></BucketLoggingStatus>",
        b"<BucketLoggingStatus><LoggingEnabled><TargetBucket>b</TargetBucket>"
        b"</LoggingEnabled></BucketLoggingStatus>",
        b"<BucketLoggingStatus><LoggingEnabled><TargetBucket>b</TargetBucket><TargetPrefix/>"
        b"<TargetObjectKeyFormat><SimplePrefix/><PartitionedPrefix/></TargetObjectKeyFormat>"
        b"</LoggingEnabled></BucketLoggingStatus>",
        b"<BucketLoggingStatus><LoggingEnabled><TargetBucket>b</TargetBucket><TargetPrefix/>"
        b"<TargetGrants><Grant><Permission>ALL</Permission></Grant></TargetGrants>"
        b"</LoggingEnabled></BucketLoggingStatus>",
        b"not xml",
    ],
)
def test_malformed_status(body: bytes) -> None:
    with pytest.raises(MalformedXML):
        parse_status(body)


# --- records --------------------------------------------------------------------------------


@dataclass
class Answer:
    status: int = 200
    bytes_in: int = 0
    bytes_out: int = 0
    started: float = 0.0


def _scope(
    method: str = "GET",
    op: Operation | None = None,
    *,
    query: bytes = b"",
    headers: list[tuple[bytes, bytes]] | None = None,
    error: str | None = None,
) -> dict[str, Any]:
    op = op or Operation("GetObject", "src", "dir/a b", "s3:GetObject")
    state: dict[str, Any] = {"operation": op, "request_id": "ABCDEF0123456789"}
    if error:
        state["error_code"] = error
    return {
        "type": "http",
        "method": method,
        "path": "/src/dir/a b",
        "raw_path": b"/src/dir/a%20b",
        "query_string": query,
        "http_version": "1.1",
        "headers": headers or [(b"host", b"localhost:9000"), (b"user-agent", b'say "hi"\n')],
        "client": ("192.0.2.3", 5555),
        "state": state,
    }


def _fields(line: str) -> list[str]:
    line = re.sub(r" \[([^\]]+)\] ", r' "\1" ', line, count=1)
    return shlex.split(line)


def test_line_has_s3s_26_fields() -> None:
    record = build_record(
        _scope(query=b"versionId=v1", error="NoSuchKey"),
        status=404,
        bytes_in=0,
        bytes_out=300,
        elapsed=0.0123,
        bucket_owner="owner-id",
        requester="-",
    )
    assert record is not None
    line = format_line(record)
    assert "\n" not in line
    fields = _fields(line)
    assert len(fields) == 26
    assert fields[:2] == ["owner-id", "src"]
    assert fields[3:8] == ["192.0.2.3", "-", "ABCDEF0123456789", "REST.GET.OBJECT", "dir/a%20b"]
    assert fields[8] == "GET /src/dir/a%20b?versionId=v1 HTTP/1.1"
    assert fields[9:13] == ["404", "NoSuchKey", "300", "-"]
    assert fields[13] == "12"
    assert fields[16] == r"say \x22hi\x22\x0a"  # quotes and line breaks cannot break it
    assert fields[17] == "v1"
    assert fields[19:23] == ["-", "-", "-", "localhost:9000"]


def test_signing_is_named() -> None:
    header = [(b"host", b"h"), (b"authorization", b"AWS4-HMAC-SHA256 Credential=AKID/x/y")]
    record = build_record(
        _scope(headers=header),
        status=200,
        bytes_in=0,
        bytes_out=0,
        elapsed=0,
        bucket_owner="o",
        requester="r",
    )
    assert record is not None and (record.signature_version, record.auth_type) == (
        "SigV4",
        "AuthHeader",
    )
    assert record.requester == "r"
    query = b"X-Amz-Credential=AKQ%2Fx&X-Amz-Signature=ab"
    record = build_record(
        _scope(query=query, headers=[(b"host", b"h")]),
        status=200,
        bytes_in=0,
        bytes_out=0,
        elapsed=0,
        bucket_owner="o",
        requester="r",
    )
    assert record is not None and (record.signature_version, record.auth_type) == (
        "SigV4",
        "QueryString",
    )


def test_requests_without_a_bucket_make_no_record() -> None:
    scope = _scope(op=Operation("ListBuckets", None, None, "s3:ListAllMyBuckets"))
    assert (
        build_record(
            scope, status=200, bytes_in=0, bytes_out=0, elapsed=0, bucket_owner="o", requester="-"
        )
        is None
    )


def test_operation_names() -> None:
    assert operation_name("PUT", "PutObject") == "REST.PUT.OBJECT"
    assert operation_name("HEAD", "HeadObject") == "REST.HEAD.OBJECT"
    assert operation_name("GET", "ListObjectsV2") == "REST.GET.BUCKET"
    assert operation_name("GET", "GetBucketLogging") == "REST.GET.LOGGING_STATUS"
    assert operation_name("PUT", "CopyObject") == "REST.COPY.OBJECT"
    assert operation_name("POST", "DeleteObjects") == "REST.POST.MULTI_OBJECT_DELETE"


# --- names ----------------------------------------------------------------------------------


def test_simple_and_partitioned_names() -> None:
    delivered = 1_700_000_000.0  # 2023-11-14 22:13:20 UTC
    event = delivered - 86400
    simple = LoggingStatus("t", "logs/")
    name = log_key(
        simple, delivered=delivered, event=event, account="a", region="r", bucket="b", unique="U"
    )
    assert name == "logs/2023-11-14-22-13-20-U"
    by_event = LoggingStatus("t", "p/", PARTITIONED, "EventTime")
    name = log_key(
        by_event, delivered=delivered, event=event, account="a", region="r", bucket="b", unique="U"
    )
    assert name == "p/a/r/b/2023/11/13/2023-11-14-22-13-20-U"
    by_delivery = LoggingStatus("t", "", PARTITIONED, "DeliveryTime")
    name = log_key(
        by_delivery, delivered=delivered, event=event, account="a", region="r", bucket="b"
    )
    assert re.fullmatch(r"a/r/b/2023/11/14/2023-11-14-22-13-20-[0-9A-F]{16}", name)


# --- delivery into a real store ---------------------------------------------------------------


def _put_scope(key: str) -> dict[str, Any]:
    return _scope("PUT", Operation("PutObject", "src", key, "s3:PutObject"))


@pytest.fixture
async def logged(store: FileStore) -> FileStore:
    await store.create_bucket("src")
    await store.create_bucket("dst")
    status = render_status(LoggingStatus("dst", "log/")).decode()
    await store.put_bucket_document("src", "logging", status)
    return store


ACCOUNTS = Accounts.build([AccountSpec("AKOWNER"), AccountSpec("AKOTHER")])


def _server_log(store: FileStore, *, flush_records: int, max_buffered: int) -> ServerLog:
    return ServerLog(
        store,
        "us-east-1",
        flush_seconds=3600,
        flush_records=flush_records,
        max_buffered=max_buffered,
        accounts=ACCOUNTS,
        auth_enabled=True,
        keyring=Keyring({}),
    )


def test_requester_and_owner_are_canonical_ids() -> None:
    scope = _scope()
    assert requester_id(scope, ACCOUNTS, True) == "-"  # anonymous
    scope["state"]["principal"] = Principal(access_key="AKOTHER")
    assert requester_id(scope, ACCOUNTS, True) == canonical_id("AKOTHER")
    assert requester_id(scope, ACCOUNTS, False) == canonical_id("AKOWNER")  # auth off
    assert owner_id("", ACCOUNTS) == canonical_id("AKOWNER")
    assert owner_id(canonical_id("AKOTHER"), ACCOUNTS) == canonical_id("AKOTHER")


async def _objects(store: FileStore, bucket: str) -> list[str]:
    return [o.key for o in (await store.list_objects(bucket)).objects]


@pytest.mark.anyio
async def test_batches_and_the_memory_bound(logged: FileStore) -> None:
    log = _server_log(logged, flush_records=2, max_buffered=3)
    for i in range(5):
        log.observe(_put_scope(f"k{i}"), Answer(bytes_in=1))
    assert (log.buffered, log.dropped) == (3, 2)  # bounded before the status is known
    await log.flush(everything=False)  # resolves them: a full batch (two or more) goes out
    assert len(await _objects(logged, "dst")) == 1 and log.buffered == 0
    log.observe(_put_scope("k5"), Answer(bytes_in=1))  # the status is known now
    await log.flush(everything=False)
    assert len(await _objects(logged, "dst")) == 1 and log.buffered == 1  # not full yet
    await log.flush(everything=True)
    keys = await _objects(logged, "dst")
    assert len(keys) == 2 and all(re.fullmatch(r"log/[0-9-]{19}-[0-9A-F]{16}", k) for k in keys)
    lines = []
    for key in keys:
        reader = await logged.open_object("dst", key)
        body = b"".join([chunk async for chunk in reader.stream()])
        await reader.close()
        lines += body.decode().splitlines()
    assert sorted(_fields(line)[7] for line in lines) == ["k0", "k1", "k2", "k5"]
    assert log.buffered == 0 and log.delivered == 2
    # Delivering wrote objects straight into the store: no request, so no new record.
    await log.flush(everything=True)
    assert len(await _objects(logged, "dst")) == 2


@pytest.mark.anyio
async def test_buckets_not_logging_cost_nothing_once_known(logged: FileStore) -> None:
    log = _server_log(logged, flush_records=10, max_buffered=10)
    scope = _scope(op=Operation("GetObject", "dst", "x", "s3:GetObject"))
    log.observe(scope, Answer())
    await log.flush(everything=True)  # "dst" does not log: its record is let go
    assert log.buffered == 0 and await _objects(logged, "dst") == []
    log.observe(scope, Answer())  # now known: not even buffered
    assert log.buffered == 0 and not log.pending


@pytest.mark.anyio
async def test_a_deleted_target_drops_and_counts(logged: FileStore) -> None:
    log = _server_log(logged, flush_records=10, max_buffered=10)
    await logged.delete_bucket("dst")
    log.observe(_put_scope("k"), Answer())
    await log.flush(everything=True)
    assert (log.buffered, log.dropped, log.delivered) == (0, 1, 0)
