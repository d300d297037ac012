"""The raw fuzzer's own judgement (tests/fuzz/raw.py), on answers written by hand: what
counts as a finding, when a response is complete, and what minimizing keeps."""

from __future__ import annotations

import random

import pytest

from tests.fuzz.raw import (
    CLASSES,
    Answer,
    _complete,
    anonymous_write,
    is_finding,
    minimize,
    mutated,
    seeds,
)

XML = b"HTTP/1.1 {status}\r\ncontent-type: application/xml\r\ncontent-length: 9\r\n\r\n{body}"


def _answer(status: int, body: bytes, head: bool = False) -> Answer:
    raw = XML.replace(b"{status}", str(status).encode()).replace(b"{body}", body)
    return Answer(status, raw, "status", head)


@pytest.mark.parametrize(
    ("answer", "finding", "label"),
    [
        (_answer(404, b"<Error><Code>NoSuchKey</Code></Error>"), False, "404"),
        (_answer(500, b"<Error><Code>InternalError</Code></Error>"), True, "500"),
        (_answer(503, b"<Error><Code>ServiceUnavailable</Code></Error>"), True, "503"),
        (_answer(501, b"<Error><Code>NotImplemented</Code></Error>"), False, "501-NotImplemented"),
        (_answer(501, b"", head=True), False, "501-NotImplemented"),
        (_answer(501, b"<Error><Code>Other</Code></Error>"), True, "501"),
        (_answer(400, b"<Error><Key>&#x1;</Key></Error>"), True, "400-bad-xml"),
        (_answer(400, b"<Error><Key>&#xffff;</Key></Error>"), True, "400-bad-xml"),
        (_answer(200, b"<List><Key>&#x1;</Key></List>"), False, "200"),
        (_answer(404, b"", head=True), False, "404"),
        (Answer(None, b"SSH-2.0\r\n", "garbage"), True, "garbage"),
        (Answer(None, b"", "closed"), False, "closed"),
        (Answer(None, b"", "timeout"), False, "timeout"),
    ],
)
def test_findings_and_labels(answer: Answer, finding: bool, label: str) -> None:
    assert is_finding(answer) == finding
    assert answer.label == label


def test_complete_skips_interim_answers_and_waits_for_the_body() -> None:
    head = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\n"
    assert _complete(head + b"ab", head_only=False) == (200, False)
    assert _complete(head + b"abcd", head_only=False) == (200, True)
    assert _complete(head, head_only=True) == (200, True)
    assert _complete(b"HTTP/1.1 200 OK\r\ncontent-le", head_only=False) == (None, False)


@pytest.mark.parametrize(
    ("payload", "status", "bypass"),
    [
        (b"PUT /b/k HTTP/1.1\r\nhost: x\r\n\r\n", 200, True),
        (b"DELETE /b/k HTTP/1.1\r\nhost: x\r\n\r\n", 204, True),
        (b"PUT /b/k HTTP/1.1\r\nhost: x\r\n\r\n", 403, False),
        (b"GET /b/k HTTP/1.1\r\nhost: x\r\n\r\n", 200, False),
        (b"PUT /b/k HTTP/1.1\r\nhost: x\r\nAuthorization: AWS4-HMAC-SHA256 x\r\n\r\n", 200, False),
        (b"PUT /b/k?X-Amz-Signature=0 HTTP/1.1\r\nhost: x\r\n\r\n", 200, False),
    ],
)
def test_anonymous_writes_that_succeed_are_bypasses(
    payload: bytes, status: int, bypass: bool
) -> None:
    assert anonymous_write(payload, Answer(status, b"", "status")) == bypass


def test_minimize_drops_what_the_finding_does_not_need() -> None:
    payload = b"PUT /b/k HTTP/1.1\r\nA: 1\r\nBad: x\r\nContent-Length: 8\r\n\r\n12345678"
    small = minimize(payload, lambda p: b"Bad: x" in p)
    assert small == b"PUT /b/k HTTP/1.1\r\nBad: x\r\n\r\n1"


def test_mutations_are_reproducible_from_the_seed() -> None:
    def run(seed: int) -> list[tuple[str, bytes]]:
        rng = random.Random(seed)
        out = []
        for _ in range(200):
            one = rng.choice(seeds("upload-id"))
            kind, wire = mutated(one, "127.0.0.1:1", False, rng, CLASSES)
            out.append((kind, wire))
        return out

    first = run(7)
    assert first == run(7)
    assert {kind for kind, _ in first} == set(CLASSES)
