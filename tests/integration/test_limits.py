"""Limits: limits.max_object_size (EntityTooLarge), limits.max_metadata_size
(MetadataTooLarge) and limits.request_timeout (RequestTimeout) give S3's errors and
leave what is stored untouched, on the standalone store and on an erasure-coded node;
clients that send (or read) a byte at a time, or nothing, cannot pin the server."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from botocore.exceptions import ClientError

from shoal.app import SyncServer
from tests.integration.conftest import erasure_config, error_code, signed_client
from tests.integration.serving import Proc

MAX_OBJECT = 100_000
MAX_METADATA = 100
TIMEOUT_MS = 1500
BUCKET = "limits"
ORIGINAL = b"the original, which must survive" * 10


@pytest.fixture(params=["standalone", "erasure"])
def server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SyncServer]:
    settings: dict[str, Any] = {
        "storage": {"directory": str(tmp_path / "data")},
        "limits": {
            "max_object_size": MAX_OBJECT,
            "max_metadata_size": MAX_METADATA,
            "request_timeout": TIMEOUT_MS,
        },
    }
    if request.param == "erasure":
        settings |= erasure_config(tmp_path / "drives")
    with SyncServer(settings) as running:
        s3 = client(running)
        s3.create_bucket(Bucket=BUCKET)
        s3.put_object(Bucket=BUCKET, Key="kept", Body=ORIGINAL, Metadata={"v": "1"})
        yield running
    assert leftovers(tmp_path) == []


def client(server: SyncServer) -> Any:
    desc = server.get_storage_descriptor()
    return signed_client(desc.endpoint_url, desc.access_key, desc.access_secret)


def leftovers(root: Path) -> list[Path]:
    """Files of unfinished writes: the standalone store's .tmp/, each drive's tmp/, and
    *.tmp files anywhere."""
    found = [p for p in root.rglob("*.tmp") if p.is_file()]
    for tmp in [*root.rglob(".tmp"), *root.rglob(".smartstorage/tmp")]:
        found += [p for p in tmp.rglob("*") if p.is_file()]
    return found


def assert_untouched(server: SyncServer) -> None:
    got = client(server).get_object(Bucket=BUCKET, Key="kept")
    assert got["Body"].read() == ORIGINAL and got["Metadata"] == {"v": "1"}
    keys = [o["Key"] for o in client(server).list_objects_v2(Bucket=BUCKET)["Contents"]]
    assert keys == ["kept"]


def refused(call: Any, code: str) -> dict[str, Any]:
    with pytest.raises(ClientError) as info:
        call()
    assert error_code(info.value) == code, info.value.response
    return info.value.response


# ---------------------------------------------------------------- sizes


def test_entity_too_large(server: SyncServer) -> None:
    s3 = client(server)
    response = refused(
        lambda: s3.put_object(Bucket=BUCKET, Key="kept", Body=b"x" * (MAX_OBJECT + 1)),
        "EntityTooLarge",
    )
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 400
    upload = s3.create_multipart_upload(Bucket=BUCKET, Key="kept")["UploadId"]
    refused(
        lambda: s3.upload_part(
            Bucket=BUCKET, Key="kept", UploadId=upload, PartNumber=1, Body=b"x" * (MAX_OBJECT + 1)
        ),
        "EntityTooLarge",
    )
    s3.abort_multipart_upload(Bucket=BUCKET, Key="kept", UploadId=upload)
    # A declared length over the limit is refused before any byte is read ...
    url = f"{server.endpoint_url}/{BUCKET}/kept"
    declared = httpx.put(url, content=b"y" * (MAX_OBJECT + 10), timeout=30)
    assert declared.status_code == 400 and b"<Code>EntityTooLarge</Code>" in declared.content
    # ... and an aws-chunked body that sends more than it declared is cut off at the chunk
    # that passes x-amz-decoded-content-length, as it streams in (before the size limit).
    body = b"".join(b"%x\r\n%s\r\n" % (50_000, b"z" * 50_000) for _ in range(3)) + b"0\r\n\r\n"
    headers = {
        "x-amz-content-sha256": "STREAMING-UNSIGNED-PAYLOAD-TRAILER",
        "content-encoding": "aws-chunked",
        "x-amz-decoded-content-length": "1000",
    }
    lying = httpx.put(url, content=body, headers=headers, timeout=30)
    assert lying.status_code == 400 and b"<Code>IncompleteBody</Code>" in lying.content
    assert_untouched(server)
    s3.put_object(Bucket=BUCKET, Key="at-limit", Body=b"x" * MAX_OBJECT)
    assert s3.head_object(Bucket=BUCKET, Key="at-limit")["ContentLength"] == MAX_OBJECT
    s3.delete_object(Bucket=BUCKET, Key="at-limit")


def test_metadata_too_large(server: SyncServer) -> None:
    s3 = client(server)
    big = {"note": "m" * MAX_METADATA}  # 4 + 100 bytes counted
    refused(
        lambda: s3.put_object(Bucket=BUCKET, Key="kept", Body=b"new", Metadata=big),
        "MetadataTooLarge",
    )
    refused(
        lambda: s3.copy_object(
            Bucket=BUCKET,
            Key="kept",
            CopySource={"Bucket": BUCKET, "Key": "kept"},
            Metadata=big,
            MetadataDirective="REPLACE",
        ),
        "MetadataTooLarge",
    )
    refused(
        lambda: s3.create_multipart_upload(Bucket=BUCKET, Key="kept", Metadata=big),
        "MetadataTooLarge",
    )
    assert s3.list_multipart_uploads(Bucket=BUCKET).get("Uploads", []) == []
    assert_untouched(server)
    fits = {"note": "m" * (MAX_METADATA - 4)}
    s3.put_object(Bucket=BUCKET, Key="fits", Body=b"ok", Metadata=fits)
    assert s3.head_object(Bucket=BUCKET, Key="fits")["Metadata"] == fits
    s3.delete_object(Bucket=BUCKET, Key="fits")


# ---------------------------------------------------------------- time


def connect(server: SyncServer) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=30)
    return sock


def read_until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (or resets it)."""
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except ConnectionResetError:
        pass
    sock.close()
    return data


def trickle(sock: socket.socket, data: bytes, interval: float) -> None:
    """Send `data` a byte at a time until done or the server hangs up."""
    try:
        for i in range(len(data)):
            sock.sendall(data[i : i + 1])
            time.sleep(interval)
    except OSError:
        pass


def is_request_timeout(answer: bytes) -> bool:
    return answer.startswith(b"HTTP/1.1 400 ") and b"<Code>RequestTimeout</Code>" in answer


def put_head(key: str, length: int) -> bytes:
    return f"PUT /{BUCKET}/{key} HTTP/1.1\r\nHost: x\r\nContent-Length: {length}\r\n\r\n".encode()


def test_a_body_that_stops_arriving_times_out(server: SyncServer) -> None:
    sock = connect(server)
    started = time.monotonic()
    sock.sendall(put_head("kept", 1000) + b"half of it")
    answer = read_until_closed(sock)
    assert is_request_timeout(answer), answer
    assert b"connection: close" in answer.lower()
    assert b"Your socket connection to the server was not read from or written to" in answer
    assert time.monotonic() - started < 20
    assert_untouched(server)


def test_a_body_that_trickles_in_times_out(server: SyncServer) -> None:
    """Never idle for long, but the whole request takes longer than request_timeout."""
    sock = connect(server)
    sock.sendall(put_head("trickled", 1000))
    trickle(sock, b"t" * 1000, 0.2)
    assert is_request_timeout(read_until_closed(sock))
    assert_untouched(server)


def test_a_head_that_trickles_in_times_out(server: SyncServer) -> None:
    sock = connect(server)
    trickle(sock, put_head("slow-head", 3) + b"abc", 0.25)
    assert is_request_timeout(read_until_closed(sock))
    assert_untouched(server)


def test_a_silent_connection_is_closed(server: SyncServer) -> None:
    sock = connect(server)
    assert read_until_closed(sock) == b""


def test_slow_clients_cannot_pin_the_server(server: SyncServer) -> None:
    """While many connections trickle or say nothing, others are served, and every one
    of the slow ones is let go."""
    slow = [connect(server) for _ in range(40)]
    for i, sock in enumerate(slow):
        sock.sendall(put_head(f"pinned-{i}", 10) + b"x" if i % 2 else b"G")
    s3 = client(server)
    for _ in range(10):
        assert s3.get_object(Bucket=BUCKET, Key="kept")["Body"].read() == ORIGINAL
    for i, sock in enumerate(slow):
        answer = read_until_closed(sock)
        assert is_request_timeout(answer), (i, answer)
    assert_untouched(server)


def test_a_client_that_stops_reading_is_let_go(tmp_path: Path) -> None:
    """A download the client stops reading would hold its connection, and the bytes
    queued for it, forever: after the idle limit the server drops it (as its log says;
    the client's kernel may go on receiving what was already in flight)."""
    size = 16 * 1024 * 1024  # more than the kernel buffers between the two ends
    proc = Proc(tmp_path, settings={"limits": {"request_timeout": TIMEOUT_MS}})
    stalled = []
    try:
        httpx.put(f"{proc.url}/{BUCKET}", timeout=30).raise_for_status()
        httpx.put(f"{proc.url}/{BUCKET}/big", content=b"b" * size, timeout=60).raise_for_status()
        for _ in range(5):
            sock = socket.create_connection(("127.0.0.1", proc.port), timeout=30)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.sendall(f"GET /{BUCKET}/big HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            stalled.append(sock)
        deadline = time.monotonic() + 60
        while proc.stderr().count("client stopped reading") < len(stalled):
            assert time.monotonic() < deadline, proc.stderr()
            time.sleep(0.1)
        got = httpx.get(f"{proc.url}/{BUCKET}/big", timeout=60)
        assert got.status_code == 200 and got.content == b"b" * size
    finally:
        for sock in stalled:
            sock.close()
        assert proc.stop() == 0
    gets = [line for line in proc.stderr().splitlines() if "operation=GetObject" in line]
    assert len(gets) == len(stalled) + 1
