"""POST Object against hostile and unusual forms, auth on and off, standalone and erasure:
every one gets S3's 4xx (never a 500), nothing is stored, the server keeps answering; the
policy and authorization are decided before the file's bytes are read."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shoal.app.server import SyncServer
from shoal.auth.sigv4 import ALGORITHM, sign, signing_key
from tests.integration.conftest import auth_config, erasure_config, signed_client
from tests.unit.test_fuzz_form import cuts_st, edits_st, encode, mutate, split

KEY, SECRET, REGION = "AKIDHOSTILEFORM", "hostile-form-secret", "us-east-1"
BUCKET = "forms"
BOUNDARY = "hostileBoundary0123456789"
MULTIPART = f"multipart/form-data; boundary={BOUNDARY}"


@pytest.fixture(
    scope="module",
    params=["auth-off", "auth-on", "auth-off-erasure", "auth-on-erasure"],
)
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[SyncServer, bool]]:
    config = auth_config((KEY, SECRET))
    config["auth"]["enabled"] = request.param.startswith("auth-on")
    if request.param.endswith("erasure"):
        config |= erasure_config(tmp_path_factory.mktemp("drives"))
    with SyncServer(config) as running:
        s3 = signed_client(running.endpoint_url, KEY, SECRET)
        s3.create_bucket(Bucket=BUCKET)
        s3.put_object(Bucket=BUCKET, Key="precious", Body=b"keep me")
        yield running, config["auth"]["enabled"]


# The harness's `http` and `raw` fixtures talk to `endpoint`: here, this module's servers.
@pytest.fixture
def endpoint(server: tuple[SyncServer, bool]) -> str:
    return server[0].endpoint_url


@pytest.fixture
def verify() -> bool:
    return True


@pytest.fixture
def auth_on(server: tuple[SyncServer, bool]) -> bool:
    return server[1]


@pytest.fixture
def s3(endpoint: str) -> Iterator[Any]:
    client = signed_client(endpoint, KEY, SECRET)
    yield client
    # Whatever a test sent, the server answers and the canary is as it was.
    assert client.get_object(Bucket=BUCKET, Key="precious")["Body"].read() == b"keep me"


def stored(s3: Any, prefix: str) -> list[str]:
    return [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix=prefix).get("Contents", [])]


def b64(document: Any) -> str:
    return base64.b64encode(json.dumps(document).encode()).decode()


def signed_fields(key: str, policy: Any = None, **fields: str) -> dict[str, str]:
    """A SigV4 POST form for `key`: `policy` is a document (default: allows `key` and
    `fields`, any size) or an already encoded string, signed as given."""
    now = datetime.now(UTC)
    signed = {
        "x-amz-algorithm": ALGORITHM,
        "x-amz-credential": f"{KEY}/{now:%Y%m%d}/{REGION}/s3/aws4_request",
        "x-amz-date": f"{now:%Y%m%dT%H%M%SZ}",
    }
    if policy is None:
        policy = document([["content-length-range", 0, 1 << 20]], key=key, **fields)
    encoded = policy if isinstance(policy, str) else b64(policy)
    date_key = signing_key(SECRET, f"{now:%Y%m%d}", REGION)
    return {
        "key": key,
        **fields,
        **signed,
        "policy": encoded,
        "x-amz-signature": sign(date_key, encoded),
    }


def document(conditions: list[Any], key: str, **fields: str) -> dict[str, Any]:
    """A policy allowing exactly these form fields, plus `conditions`."""
    now = datetime.now(UTC)
    allowed = [{"bucket": BUCKET}, {"key": key}, {"x-amz-algorithm": ALGORITHM}]
    allowed += [["starts-with", "$x-amz-credential", KEY], ["starts-with", "$x-amz-date", ""]]
    allowed += [["starts-with", f"${name}", ""] for name in fields]
    expiration = (now + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    return {"expiration": expiration, "conditions": allowed + conditions}


def post(http: httpx.Client, fields: dict[str, str], content: bytes = b"hello") -> httpx.Response:
    return http.post(f"/{BUCKET}", data=fields, files={"file": ("a.txt", content, "text/plain")})


def refused(response: httpx.Response, code: str, status: int = 400) -> None:
    assert response.status_code == status, response.text
    assert f"<Code>{code}</Code>" in response.text


def test_fields_sent_as_file_parts_are_fields(http: httpx.Client, s3: Any) -> None:
    # python-requests' files= gives every field a filename; S3 reads them as fields.
    fields = signed_fields("asfiles/a.txt", **{"x-amz-meta-color": "blue"})
    parts = [(name, (f"{name}.txt", value.encode())) for name, value in fields.items()]
    response = http.post(f"/{BUCKET}", files=[*parts, ("file", ("a.txt", b"content"))])
    assert response.status_code == 204, response.text
    got = s3.get_object(Bucket=BUCKET, Key="asfiles/a.txt")
    assert got["Body"].read() == b"content" and got["Metadata"] == {"color": "blue"}


@pytest.mark.parametrize(
    "conditions",
    [
        [["content-length-range", None, 10]],
        [["content-length-range", 0, None]],
        [["content-length-range", "abc", 10]],
        [["content-length-range", 0, 512.0]],
        [["content-length-range", 0, "9" * 5000]],
        [["content-length-range", 1]],
        [["eq", "$key"]],
        [{"key": "a", "x-amz-meta-a": "b"}],
    ],
)
def test_malformed_policy_conditions(http: httpx.Client, s3: Any, conditions: list[Any]) -> None:
    response = post(http, signed_fields("badpolicy/a", document(conditions, "badpolicy/a")))
    refused(response, "InvalidPolicyDocument")
    assert stored(s3, "badpolicy/") == []


@pytest.mark.parametrize(
    "policy",
    [
        {"conditions": []},  # no expiration: 400, not 403
        {"expiration": "not a date", "conditions": []},
        {"expiration": "9999-12-31T23:59:59-23:59", "conditions": []},
        [],
        base64.b64encode(b"[" * 10_000).decode(),
        base64.b64encode(b"not json").decode(),
        "not base64!",
    ],
)
def test_malformed_policy_documents(http: httpx.Client, s3: Any, policy: Any) -> None:
    refused(post(http, signed_fields("badpolicy/b", policy)), "InvalidPolicyDocument")
    assert stored(s3, "badpolicy/") == []


def test_two_file_parts_store_the_first(http: httpx.Client, s3: Any) -> None:
    # Everything after the file is ignored, as S3 does: a second file part too.
    fields = signed_fields("two/a.txt")
    body = encode(
        [
            *((n, None, v.encode()) for n, v in fields.items()),
            ("file", "1", b"first"),
            ("file", "2", b"second"),
            ("x-amz-meta-late", None, b"ignored"),
        ],
        BOUNDARY,
    )
    response = http.post(f"/{BUCKET}", content=body, headers={"content-type": MULTIPART})
    assert response.status_code == 204, response.text
    got = s3.get_object(Bucket=BUCKET, Key="two/a.txt")
    assert got["Body"].read() == b"first" and got["Metadata"] == {}


@pytest.mark.parametrize(
    ("extra", "code"),
    [
        ({"big": "v" * 100_000}, "MaxPostPreDataLengthExceeded"),
        ({f"f{i}": "v" * 100 for i in range(250)}, "MaxPostPreDataLengthExceeded"),
    ],
)
def test_oversized_forms(http: httpx.Client, s3: Any, extra: dict[str, str], code: str) -> None:
    refused(post(http, {**signed_fields("big/a"), **extra}), code)
    assert stored(s3, "big/") == []


def test_many_small_fields_get_an_s3_answer(http: httpx.Client, s3: Any) -> None:
    extra = {f"f{i}": "v" for i in range(250)}
    response = post(http, {**signed_fields("many/a"), **extra})
    assert 400 <= response.status_code < 500 and "<Code>" in response.text
    assert stored(s3, "many/") == []


@pytest.mark.parametrize(
    ("content_type", "status", "code"),
    [
        ("multipart/form-data", 400, "MalformedPOSTRequest"),  # no boundary
        (f"multipart/form-data; boundary={'b' * 200}", 400, "MalformedPOSTRequest"),
        ("multipart/form-data; boundary=elsewhere", 400, "MalformedPOSTRequest"),
    ],
)
def test_bad_multipart_framing(
    http: httpx.Client, s3: Any, content_type: str, status: int, code: str
) -> None:
    fields = signed_fields("framing/a")
    body = encode(
        [*((n, None, v.encode()) for n, v in fields.items()), ("file", "a", b"x")], BOUNDARY
    )
    response = http.post(f"/{BUCKET}", content=body, headers={"content-type": content_type})
    refused(response, code, status)
    assert stored(s3, "framing/") == []


def test_not_multipart_is_an_s3_error(http: httpx.Client, s3: Any) -> None:
    response = http.post(f"/{BUCKET}", content=b"key=a", headers={"content-type": "text/plain"})
    assert 400 <= response.status_code < 500 and "<Code>" in response.text


@pytest.mark.parametrize("value", ["a\r\nSet-Cookie: x=y", "line\nbreak", "\u20ac uro", "日本"])
@pytest.mark.parametrize("field", ["x-amz-meta-note", "content-type", "cache-control"])
def test_header_unsafe_field_values_are_refused(
    http: httpx.Client, s3: Any, field: str, value: str
) -> None:
    refused(post(http, signed_fields("unsafe/a", **{field: value})), "InvalidArgument")
    assert stored(s3, "unsafe/") == []


def test_size_bounds_of_the_policy(http: httpx.Client, s3: Any) -> None:
    policy = document([["content-length-range", 10, "100"]], "sized/a")
    refused(post(http, signed_fields("sized/a", policy), b"short"), "EntityTooSmall")
    refused(post(http, signed_fields("sized/a", policy), b"x" * 101), "EntityTooLarge")
    assert stored(s3, "sized/") == []
    assert post(http, signed_fields("sized/a", policy), b"x" * 100).status_code == 204
    assert stored(s3, "sized/") == ["sized/a"]


def _unsent_file(fields: dict[str, str], total: int) -> bytes:
    """A request announcing a `total`-byte file of which only the first 64 KiB is sent."""
    head = encode([(n, None, v.encode()) for n, v in fields.items()], BOUNDARY)
    head = head.removesuffix(f"--{BOUNDARY}--\r\n".encode())
    disposition = 'Content-Disposition: form-data; name="file"; filename="f"'
    head += f"--{BOUNDARY}\r\n{disposition}\r\n\r\n".encode()
    tail = f"\r\n--{BOUNDARY}--\r\n".encode()
    length = len(head) + total + len(tail)
    request = (
        f"POST /{BUCKET} HTTP/1.1\r\nHost: {{host}}\r\nContent-Type: {MULTIPART}\r\n"
        f"Content-Length: {length}\r\n\r\n"
    ).encode()
    return request + head + b"x" * 65536


def test_refused_before_the_file_is_read(
    raw: Callable[[bytes], str], s3: Any, auth_on: bool
) -> None:
    # Only 64 KiB of a 64 MiB file is ever sent: the answer must come without the rest
    # (the harness's socket gives up after 10 s if the server waits for it).
    total = 64 << 20
    policy = document([["content-length-range", 0, 1000]], "unsent/a")
    answer = raw(_unsent_file(signed_fields("unsent/a", policy), total))
    assert answer.startswith("HTTP/1.1 400") and "<Code>EntityTooLarge</Code>" in answer
    if auth_on:  # anonymous, no policy: refused before one byte of the file
        answer = raw(_unsent_file({"key": "unsent/b"}, total))
        assert answer.startswith("HTTP/1.1 403") and "<Code>AccessDenied</Code>" in answer
    bad = raw(_unsent_file(signed_fields("unsent/c", {"conditions": []}), total))
    assert bad.startswith("HTTP/1.1 400") and "<Code>InvalidPolicyDocument</Code>" in bad
    assert stored(s3, "unsent/") == []


def test_anonymous_form_without_policy(http: httpx.Client, s3: Any, auth_on: bool) -> None:
    response = post(http, {"key": "anon/a.txt"})
    if auth_on:
        refused(response, "AccessDenied", 403)
        assert stored(s3, "anon/") == []
    else:
        assert response.status_code == 204
        assert s3.get_object(Bucket=BUCKET, Key="anon/a.txt")["Body"].read() == b"hello"


def test_missing_key_and_missing_file(http: httpx.Client, s3: Any) -> None:
    fields = signed_fields("nofile/a")
    body = encode([(n, None, v.encode()) for n, v in fields.items()], BOUNDARY)
    response = http.post(f"/{BUCKET}", content=body, headers={"content-type": MULTIPART})
    refused(response, "IncorrectNumberOfFilesInPostRequest")
    fields.pop("key")
    refused(post(http, fields), "InvalidArgument")
    assert stored(s3, "nofile/") == []


def test_form_field_names_in_the_201_location(http: httpx.Client, s3: Any) -> None:
    key = "odd/\u65e5\u672c \r\n.txt"  # a key no header could carry as it is
    fields = signed_fields(key, success_action_status="201")
    response = post(http, fields)
    assert response.status_code == 201, response.text
    assert response.headers["location"].endswith("/odd/%E6%97%A5%E6%9C%AC%20%0D%0A.txt")
    assert s3.get_object(Bucket=BUCKET, Key=key)["Body"].read() == b"hello"


@settings(
    max_examples=max(10, settings.default.max_examples // 8),
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(edits=edits_st, content=st.binary(max_size=4096), cuts=cuts_st)
def test_mutated_forms_at_the_server(
    http: httpx.Client,
    s3: Any,
    edits: list[tuple[int, int, bytes]],
    content: bytes,
    cuts: list[int],
) -> None:
    # A signed form, mutated, sent in pieces (chunked): an S3 answer, never a 5xx, and
    # the canary untouched.
    fields = signed_fields("mutated/a", **{"x-amz-meta-a": "1"})
    parts = [(n, None, v.encode()) for n, v in fields.items()]
    body = mutate(encode([*parts, ("file", "f", content)], BOUNDARY), edits)
    response = http.post(
        f"/{BUCKET}", content=iter(split(body, cuts)), headers={"content-type": MULTIPART}
    )
    assert response.status_code < 500, response.text
    assert response.status_code < 300 or "<Code>" in response.text
    assert s3.get_object(Bucket=BUCKET, Key="precious")["Body"].read() == b"keep me"
