"""Request heads and HTTP framing (app/protocol.py): heads past S3's limits get
RequestHeaderSectionTooLarge, requests that are not HTTP/1.1 get InvalidRequest, both as
S3 XML error documents with a request id, and the connection is closed; a client
streaming an endless header cannot grow the server, and others are answered meanwhile."""

from __future__ import annotations

import contextlib
import re
import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from shoal.app.protocol import MAX_HEAD, MAX_HEADER, MAX_HEADERS, MAX_PIPELINE, MAX_URL
from tests.integration.conftest import error_code, spawn_server

Raw = Callable[..., str]


def assert_s3_error(reply: str, code: str) -> None:
    """A complete 400 answer with S3's XML error document, closing the connection."""
    head, _, body = reply.partition("\r\n\r\n")
    assert head.startswith("HTTP/1.1 400 "), reply[:300]
    headers = head.lower()
    assert "content-type: application/xml" in headers
    assert "connection: close" in headers
    request_id = re.search(r"x-amz-request-id: (\S+)", head, re.I)
    assert request_id, head
    assert f"<Code>{code}</Code>" in body, body
    assert f"<RequestId>{request_id[1]}</RequestId>" in body, body
    length = int(re.search(r"content-length: (\d+)", headers)[1])  # type: ignore[index]
    assert len(body.encode("latin-1")) == length


def get(extra: bytes, target: bytes = b"/") -> bytes:
    return b"GET " + target + b" HTTP/1.1\r\nHost: {host}\r\n" + extra + b"\r\n"


@pytest.mark.parametrize(
    "request_bytes",
    [
        pytest.param(get(b"X-Big: " + b"a" * MAX_HEADER + b"\r\n"), id="one-header-line"),
        pytest.param(get(b"".join(b"X-%d: v\r\n" % i for i in range(MAX_HEADERS + 1))), id="count"),
        pytest.param(get(b"", b"/" + b"a" * MAX_URL), id="request-target"),
        pytest.param(
            get(b"".join(b"X-%d: %s\r\n" % (i, b"v" * 8000) for i in range(MAX_HEAD // 8000 + 1))),
            id="whole-head",
        ),
    ],
)
def test_heads_past_the_limits_are_refused(raw: Raw, request_bytes: bytes) -> None:
    assert_s3_error(raw(request_bytes), "RequestHeaderSectionTooLarge")


def test_heads_within_the_limits_are_served(raw: Raw) -> None:
    near = b"X-Big: " + b"a" * (MAX_HEADER - 100) + b"\r\n"
    reply = raw(get(near + b"Connection: close\r\n", b"/-/live"))
    assert reply.startswith("HTTP/1.1 200 "), reply[:300]


def test_pipelined_requests_are_answered_in_order(raw: Raw) -> None:
    live = b"GET /-/live HTTP/1.1\r\nHost: {host}\r\n\r\n"
    last = b"GET /-/version HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    reply = raw(live * (MAX_PIPELINE - 1) + last)
    assert reply.count("HTTP/1.1 200 ") == MAX_PIPELINE
    assert reply.rindex('"status"') < reply.index('"version"')


MALFORMED = {
    "request-line": b"GARBAGE\r\n\r\n",
    "header-without-colon": b"GET / HTTP/1.1\r\nHost: {host}\r\nNoColonHere\r\n\r\n",
    "space-before-colon": b"GET / HTTP/1.1\r\nHost : {host}\r\n\r\n",
    "control-char-in-value": b"GET / HTTP/1.1\r\nHost: {host}\r\nX-A: a\x01b\r\n\r\n",
    "content-length-not-a-number": b"PUT /{bucket}/k HTTP/1.1\r\nHost: {host}\r\n"
    b"Content-Length: abc\r\n\r\n",
    "content-length-negative": b"PUT /{bucket}/k HTTP/1.1\r\nHost: {host}\r\n"
    b"Content-Length: -5\r\n\r\nhello",
    "content-length-twice": b"PUT /{bucket}/k HTTP/1.1\r\nHost: {host}\r\n"
    b"Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
    "content-length-and-chunked": b"PUT /{bucket}/k HTTP/1.1\r\nHost: {host}\r\n"
    b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    "chunk-size-not-hex": b"PUT /{bucket}/k HTTP/1.1\r\nHost: {host}\r\n"
    b"Transfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
    "chunk-without-crlf": b"PUT /{bucket}/k HTTP/1.1\r\nHost: {host}\r\n"
    b"Transfer-Encoding: chunked\r\n\r\n5\r\nhelloXX0\r\n\r\n",
    "unknown-transfer-encoding": b"PUT /{bucket}/k HTTP/1.1\r\nHost: {host}\r\n"
    b"Transfer-Encoding: gzip, chunked, foo\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
}


@pytest.mark.parametrize("name", MALFORMED)
def test_malformed_framing_gets_an_s3_error(raw: Raw, s3: object, bucket: str, name: str) -> None:
    reply = raw(MALFORMED[name].replace(b"{bucket}", bucket.encode()))
    assert_s3_error(reply, "InvalidRequest")
    # Nothing was stored from a request that could not be parsed.
    with pytest.raises(Exception) as info:
        s3.head_object(Bucket=bucket, Key="k")  # type: ignore[attr-defined]
    assert error_code(info.value) in ("404", "NoSuchKey")


# -- an endless header against a server of its own --------------------------------------


def rss(pid: int) -> int:
    """Resident set size in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


@pytest.fixture
def own_server(tmp_path: Path) -> Iterator[tuple[int, str]]:
    proc, url = spawn_server(tmp_path / "data")
    try:
        yield proc.pid, url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_an_answer_given_before_the_body_is_not_lost_to_a_reset(
    own_server: tuple[int, str],
) -> None:
    """A PUT refused before its body is read: the answer arrives whole, then the server's
    end of the connection (FIN), and what the client still sends is read and dropped, not
    met with a reset (closing with unread bytes would reset, destroying the answer in the
    client's buffer when the reset comes first, as it did now and then)."""
    port = int(own_server[1].rsplit(":", 1)[1])
    head = b"PUT /nobucket/k HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: %d\r\n\r\n"
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(head % (6 << 30) + b"x" * (256 << 10))
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
        assert reply.startswith(b"HTTP/1.1 4"), reply[:200]
        assert reply.endswith(b"</Error>"), reply[-200:]
        sock.sendall(b"x" * (1 << 20))  # still read (and dropped) by the server
        assert sock.recv(1) == b""  # a reset would raise ConnectionResetError here


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs /proc")
def test_endless_header_line_cannot_grow_the_server(own_server: tuple[int, str]) -> None:
    pid, url = own_server
    host, port = url.rsplit("/", 1)[1].rsplit(":", 1)
    assert httpx.get(f"{url}/-/live").status_code == 200
    before = rss(pid)
    sent, reply = 0, b""
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nX-Endless: ")
        block = b"a" * 65536
        try:
            while sent < 64 * 1024 * 1024:  # what grew the server by ~66 MB
                sock.sendall(block)
                sent += len(block)
        except OSError:
            pass  # the server closed the connection: what it answered is still readable
        try:
            while chunk := sock.recv(65536):
                reply += chunk
        except OSError:
            pass
    # Meanwhile and after, other clients are served.
    assert httpx.get(f"{url}/-/live").status_code == 200
    grown = rss(pid) - before
    assert grown < 16 * 1024 * 1024, f"the server grew by {grown} bytes"
    assert sent < 64 * 1024 * 1024, "the server kept reading an endless header"
    if reply:  # (a reset can beat the answer to the client: then only the close is seen)
        assert_s3_error(reply.decode("latin-1"), "RequestHeaderSectionTooLarge")


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs /proc")
def test_a_flood_of_pipelined_requests_cannot_grow_the_server(
    own_server: tuple[int, str],
) -> None:
    """Thousands of tiny requests in a few reads, never reading an answer: each would
    wait as a parsed request (41 MB for five such clients before the limit)."""
    pid, url = own_server
    host, port = url.rsplit("/", 1)[1].rsplit(":", 1)
    assert httpx.get(f"{url}/-/live").status_code == 200
    before = rss(pid)
    flood = b"GET /-/live HTTP/1.1\r\nHost: x\r\n\r\n" * 7500
    clients = [socket.create_connection((host, int(port)), timeout=30) for _ in range(5)]
    try:
        for sock in clients:
            with contextlib.suppress(OSError):
                sock.sendall(flood)
        # Each flood is cut off: the connection ends without all its answers.
        for sock in clients:
            received = b""
            with contextlib.suppress(OSError):
                while chunk := sock.recv(65536):
                    received += chunk
            assert received.count(b"HTTP/1.1 200 ") <= MAX_PIPELINE + 1
        assert httpx.get(f"{url}/-/live").status_code == 200
        grown = rss(pid) - before
        assert grown < 8 * 1024 * 1024, f"the server grew by {grown} bytes"
    finally:
        for sock in clients:
            sock.close()
