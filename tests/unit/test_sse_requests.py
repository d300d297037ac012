"""app/sse.py: the SSE request headers as S3 validates them, the records a write makes
and a read opens, the headers echoed, and the client's view of an encrypted version."""

from __future__ import annotations

import base64
import hashlib
from datetime import UTC, datetime

import pytest

from shoal.app import sse
from shoal.app.errors import (
    AccessDenied,
    InternalError,
    InvalidArgument,
    InvalidEncryptionAlgorithmError,
    InvalidRequest,
    KMSNotFoundException,
    S3Error,
)
from shoal.sse.keyring import Keyring
from shoal.sse.packages import sealed_length
from shoal.storage.backend import ObjectMeta, PartInfo

KEYRING = Keyring({"key-1": b"1" * 32, "key-2": b"2" * 32})
EMPTY = Keyring({})
OPEN = sse.Transport(secure=False, allow_http=True)
CUSTOMER = b"c" * 32


def trio(secret: bytes = CUSTOMER, *, prefix: str = sse.CUSTOMER, **changes: str) -> dict[str, str]:
    """The SSE-C headers for `secret`, with `changes` (a value "-" drops that header)."""
    headers = {
        prefix + "algorithm": "AES256",
        prefix + "key": base64.b64encode(secret).decode(),
        prefix + "key-md5": base64.b64encode(hashlib.md5(secret).digest()).decode(),
    }
    headers.update({prefix + k.replace("_", "-"): v for k, v in changes.items()})
    return {k: v for k, v in headers.items() if v != "-"}


def test_no_headers_no_choice() -> None:
    assert sse.requested({}, KEYRING, OPEN) is None
    assert sse.customer_key({}, OPEN) is None


def test_sse_s3_and_kms() -> None:
    assert sse.requested({sse.SSE: "AES256"}, KEYRING, OPEN) == sse.Choice("AES256", "key-1")
    kms = sse.requested({sse.SSE: "aws:kms"}, KEYRING, OPEN)
    assert kms == sse.Choice("aws:kms", "key-1")
    arn = "arn:aws:kms:us-east-1:111122223333:key/key-2"
    named = sse.requested(
        {sse.SSE: "aws:kms", sse.KMS_KEY_ID: arn, sse.BUCKET_KEY: "true"}, KEYRING, OPEN
    )
    assert named == sse.Choice("aws:kms", "key-2", bucket_key=True)


@pytest.mark.parametrize(
    ("headers", "error"),
    [
        ({sse.SSE: "aws:kms", sse.KMS_KEY_ID: "nope"}, KMSNotFoundException),
        ({sse.SSE: "rot13"}, InvalidArgument),
        ({sse.KMS_KEY_ID: "key-1"}, InvalidArgument),
        ({sse.SSE: "AES256", sse.KMS_KEY_ID: "key-1"}, InvalidArgument),
        ({sse.SSE: "aws:kms", sse.CONTEXT: "not base64!"}, InvalidArgument),
        ({sse.SSE: "aws:kms", sse.CONTEXT: base64.b64encode(b"[1]").decode()}, InvalidArgument),
        ({sse.SSE: "AES256", sse.BUCKET_KEY: "maybe"}, InvalidArgument),
        ({sse.SSE: "AES256", **trio()}, InvalidArgument),
    ],
)
def test_bad_write_headers(headers: dict[str, str], error: type[S3Error]) -> None:
    with pytest.raises(error):
        sse.requested(headers, KEYRING, OPEN)


def test_kms_context_kept_as_given() -> None:
    context = base64.b64encode(b'{"project": "x"}').decode()
    choice = sse.requested({sse.SSE: "aws:kms", sse.CONTEXT: context}, KEYRING, OPEN)
    assert choice is not None and choice.context == context


def test_no_keyring_is_a_clear_400() -> None:
    for method in ("AES256", "aws:kms"):
        with pytest.raises(InvalidRequest, match=r"kms\.keys"):
            sse.requested({sse.SSE: method}, EMPTY, OPEN)
    # SSE-C needs no keyring.
    assert sse.requested(trio(), EMPTY, OPEN) is not None


@pytest.mark.parametrize(
    ("changes", "error"),
    [
        ({"algorithm": "-"}, InvalidArgument),
        ({"algorithm": "AES128"}, InvalidEncryptionAlgorithmError),
        ({"key": "-"}, InvalidArgument),
        ({"key_md5": "-"}, InvalidArgument),
        ({"key": base64.b64encode(b"short").decode()}, InvalidArgument),
        ({"key": "%%%"}, InvalidArgument),
        ({"key_md5": base64.b64encode(b"0" * 16).decode()}, InvalidArgument),
    ],
)
def test_bad_customer_keys(changes: dict[str, str], error: type[S3Error]) -> None:
    with pytest.raises(error):
        sse.customer_key(trio(**changes), OPEN)
    with pytest.raises(error):
        sse.customer_key(trio(prefix=sse.COPY_CUSTOMER, **changes), OPEN, copy_source=True)


def test_customer_keys_need_a_secure_connection() -> None:
    closed = sse.Transport(secure=False, allow_http=False)
    with pytest.raises(InvalidRequest, match="secure"):
        sse.customer_key(trio(), closed)
    assert sse.customer_key(trio(), sse.Transport(secure=True, allow_http=False)) is not None
    # The copy source's trio is its own: the target's headers do not stand for it.
    assert sse.customer_key(trio(), OPEN, copy_source=True) is None


def test_records_open_only_with_their_key_and_place() -> None:
    for headers in ({sse.SSE: "AES256"}, {sse.SSE: "aws:kms", sse.KMS_KEY_ID: "key-2"}, trio()):
        choice = sse.requested(headers, KEYRING, OPEN)
        assert choice is not None
        record, data_key = sse.new_record(KEYRING, choice, "b", "k")
        assert CUSTOMER not in base64.b64decode(record.sealed_key)
        customer = choice.customer
        sse.check_customer(record, customer)
        assert sse.data_key(KEYRING, record, "b", "k", customer) == data_key
        with pytest.raises((InternalError, AccessDenied)):
            sse.data_key(KEYRING, record, "b", "other-key", customer)


def test_customer_key_checks_on_read() -> None:
    choice = sse.requested(trio(), KEYRING, OPEN)
    assert choice is not None
    record, _ = sse.new_record(KEYRING, choice, "b", "k")
    with pytest.raises(InvalidRequest):
        sse.check_customer(record, None)
    other = sse.customer_key(trio(b"o" * 32), OPEN)
    with pytest.raises(AccessDenied):
        sse.check_customer(record, other)
    plain, _ = sse.new_record(KEYRING, sse.Choice("AES256", "key-1"), "b", "k")
    with pytest.raises(InvalidRequest):
        sse.check_customer(plain, choice.customer)
    sse.check_customer(None, None)


def test_response_headers() -> None:
    kms, _ = sse.new_record(KEYRING, sse.Choice("aws:kms", "key-2", bucket_key=True), "b", "k")
    assert sse.response_headers(kms) == {
        sse.SSE: "aws:kms",
        sse.KMS_KEY_ID: "key-2",
        sse.BUCKET_KEY: "true",
    }
    choice = sse.requested(trio(), KEYRING, OPEN)
    assert choice is not None and choice.customer is not None
    customer, _ = sse.new_record(KEYRING, choice, "b", "k")
    assert sse.response_headers(customer) == {
        sse.CUSTOMER + "algorithm": "AES256",
        sse.CUSTOMER + "key-MD5": choice.customer.md5,
    }
    assert sse.response_headers(None) == {}


def test_shown_is_the_plaintexts_view() -> None:
    record, _ = sse.new_record(KEYRING, sse.Choice("AES256", "key-1"), "b", "k")
    now = datetime.now(UTC)
    plain = [5 * 1024 * 1024, 70_000]
    record = type(record)(**{**record.__dict__, "plain_size": sum(plain), "plain_etag": "e-2"})
    parts = [PartInfo(i + 1, sealed_length(n), "x", now) for i, n in enumerate(plain)]
    stored = ObjectMeta("k", sum(p.size for p in parts), "c-2", now, parts=parts, encryption=record)
    view = sse.shown(stored)
    assert (view.size, view.etag) == (sum(plain), "e-2")
    assert view.parts is not None and [p.size for p in view.parts] == plain
    assert stored.parts is not None and stored.parts[0].size == sealed_length(plain[0])
    unencrypted = ObjectMeta("k", 3, "abc", now)
    assert sse.shown(unencrypted) is unencrypted
