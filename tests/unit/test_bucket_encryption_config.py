"""app/encryptionconfig.py: the ServerSideEncryptionConfiguration document parsed and
checked as S3 does (MalformedXML / InvalidArgument), rendered back, its JSON record and
the per-bucket cache; app/ssepolicy.py: the encryption condition keys."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from xml.etree.ElementTree import fromstring

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shoal.app.encryptionconfig import (
    DOCUMENT,
    DefaultEncryption,
    bucket_default_encryption,
    encryptions,
    parse_configuration,
    render,
)
from shoal.app.errors import InvalidArgument, MalformedXML, NotImplementedFeature, S3Error
from shoal.app.ssepolicy import record_condition_keys, request_condition_keys
from shoal.storage.backend import Encryption
from shoal.storage.filestore import FileStore

NS = "{http://s3.amazonaws.com/doc/2006-03-01/}"


def doc(default: str | None, *, extra: str = "", rules: int = 1) -> bytes:
    inner = (
        ""
        if default is None
        else (f"<ApplyServerSideEncryptionByDefault>{default}</ApplyServerSideEncryptionByDefault>")
    )
    rule = f"<Rule>{inner}{extra}</Rule>"
    body = (
        '<ServerSideEncryptionConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
        + rule * rules
        + "</ServerSideEncryptionConfiguration>"
    )
    return body.encode()


def test_sse_s3() -> None:
    config = parse_configuration(doc("<SSEAlgorithm>AES256</SSEAlgorithm>"))
    assert config == DefaultEncryption("AES256", None, False)


def test_sse_kms_with_key_and_bucket_key() -> None:
    body = doc(
        "<SSEAlgorithm>aws:kms</SSEAlgorithm><KMSMasterKeyID> key-2 </KMSMasterKeyID>",
        extra="<BucketKeyEnabled>true</BucketKeyEnabled>",
    )
    assert parse_configuration(body) == DefaultEncryption("aws:kms", "key-2", True)


def test_sse_kms_without_key_uses_the_default() -> None:
    config = parse_configuration(doc("<SSEAlgorithm>aws:kms</SSEAlgorithm>"))
    assert config == DefaultEncryption("aws:kms", None, False)


def test_blocked_types_none_is_accepted() -> None:
    body = doc(
        "<SSEAlgorithm>AES256</SSEAlgorithm>",
        extra="<BlockedEncryptionTypes><EncryptionType>NONE</EncryptionType>"
        "</BlockedEncryptionTypes>",
    )
    assert parse_configuration(body).algorithm == "AES256"


@pytest.mark.parametrize(
    "body",
    [
        doc("<SSEAlgorithm>AES256</SSEAlgorithm>", rules=0),
        doc("<SSEAlgorithm>AES256</SSEAlgorithm>", rules=2),
        doc(None),
        doc(None, extra="<BucketKeyEnabled>true</BucketKeyEnabled>"),
        doc(""),
        doc("<SSEAlgorithm>AES512</SSEAlgorithm>"),
        doc("<SSEAlgorithm>aes256</SSEAlgorithm>"),
        doc("<SSEAlgorithm></SSEAlgorithm>"),
        doc("<SSEAlgorithm>aws:kms</SSEAlgorithm><KMSMasterKeyID></KMSMasterKeyID>"),
        doc("<SSEAlgorithm>AES256</SSEAlgorithm><SSEAlgorithm>AES256</SSEAlgorithm>"),
        doc("<SSEAlgorithm>AES256</SSEAlgorithm><Other>x</Other>"),
        doc(
            "<SSEAlgorithm>AES256</SSEAlgorithm>", extra="<BucketKeyEnabled>yes</BucketKeyEnabled>"
        ),
        doc("<SSEAlgorithm>AES256</SSEAlgorithm>", extra="<Unknown/>"),
        doc(
            "<SSEAlgorithm>AES256</SSEAlgorithm>",
            extra="<BlockedEncryptionTypes><EncryptionType>X</EncryptionType>"
            "</BlockedEncryptionTypes>",
        ),
        b"<OwnershipControls/>",
        b"<ServerSideEncryptionConfiguration><Rule>",
        b"",
    ],
)
def test_malformed(body: bytes) -> None:
    with pytest.raises(MalformedXML):
        parse_configuration(body)


def test_kms_key_with_aes256_is_invalid_argument() -> None:
    body = doc("<SSEAlgorithm>AES256</SSEAlgorithm><KMSMasterKeyID>key-1</KMSMasterKeyID>")
    with pytest.raises(InvalidArgument) as caught:
        parse_configuration(body)
    assert caught.value.fields == {"ArgumentName": "ApplyServerSideEncryptionByDefault"}
    assert "KMSMasterKeyID is not applicable" in caught.value.text


@pytest.mark.parametrize(
    "body",
    [
        doc("<SSEAlgorithm>aws:kms:dsse</SSEAlgorithm>"),
        doc(
            "<SSEAlgorithm>AES256</SSEAlgorithm>",
            extra="<BlockedEncryptionTypes><EncryptionType>SSE-C</EncryptionType>"
            "</BlockedEncryptionTypes>",
        ),
    ],
)
def test_what_shoal_does_not_implement_is_501(body: bytes) -> None:
    with pytest.raises(NotImplementedFeature):
        parse_configuration(body)


configs = st.builds(
    DefaultEncryption,
    st.just("AES256"),
    st.none(),
    st.booleans(),
) | st.builds(
    DefaultEncryption,
    st.just("aws:kms"),
    st.none()
    | st.text(
        st.characters(codec="utf-8", exclude_categories=("Cs", "Cc", "Zs", "Zl", "Zp")),
        min_size=1,
        max_size=80,
    ),
    st.booleans(),
)


@given(configs)
def test_render_parses_back_and_json_round_trips(config: DefaultEncryption) -> None:
    rendered = render(config)
    assert parse_configuration(rendered) == config
    assert DefaultEncryption.from_json(config.to_json()) == config
    root = fromstring(rendered)
    assert root.findtext(f"{NS}Rule/{NS}BucketKeyEnabled") == str(config.bucket_key).lower()


@given(st.binary(max_size=300))
def test_any_body_is_a_config_or_an_s3_error(body: bytes) -> None:
    try:
        config = parse_configuration(body)
    except S3Error as exc:
        assert exc.status in (400, 501)
    else:
        assert parse_configuration(render(config)) == config


TAGS = [
    "ServerSideEncryptionConfiguration",
    "Rule",
    "ApplyServerSideEncryptionByDefault",
    "SSEAlgorithm",
    "KMSMasterKeyID",
    "BucketKeyEnabled",
    "BlockedEncryptionTypes",
    "EncryptionType",
]
TEXTS = ["AES256", "aws:kms", "aws:kms:dsse", "true", "false", "NONE", "SSE-C", "key-1", ""]
elements = st.recursive(
    st.tuples(st.sampled_from(TAGS), st.sampled_from(TEXTS)).map(
        lambda t: f"<{t[0]}>{t[1]}</{t[0]}>"
    ),
    lambda inner: st.tuples(st.sampled_from(TAGS), st.lists(inner, max_size=3)).map(
        lambda t: f"<{t[0]}>{''.join(t[1])}</{t[0]}>"
    ),
    max_leaves=12,
)


@given(elements)
def test_documents_of_the_right_words(body: str) -> None:
    """Near misses of the real document: a valid config that renders back, or an S3
    error, never anything else."""
    try:
        config = parse_configuration(body.encode())
    except S3Error as exc:
        assert exc.status in (400, 501)
    else:
        assert config.algorithm in ("AES256", "aws:kms")
        assert (config.kms_key_id is None) or config.algorithm == "aws:kms"
        assert parse_configuration(render(config)) == config


@pytest.mark.parametrize(
    "text",
    [
        '{"algorithm": "AES512", "kms_key_id": null, "bucket_key": false}',
        '{"algorithm": "AES256", "kms_key_id": "k", "bucket_key": false}',
        '{"algorithm": "aws:kms", "kms_key_id": null, "bucket_key": "yes"}',
        '{"algorithm": "aws:kms"}',
    ],
)
def test_a_foreign_record_is_refused(text: str) -> None:
    with pytest.raises((ValueError, KeyError)):
        DefaultEncryption.from_json(text)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[FileStore]:
    fs = FileStore(tmp_path / "data")
    await fs.open()
    await fs.create_bucket("bucket")
    yield fs
    await fs.close()


@pytest.mark.anyio
async def test_cached_read_and_forget(store: FileStore) -> None:
    assert await bucket_default_encryption(store, "bucket") is None
    assert await bucket_default_encryption(store, "missing") is None
    kms = DefaultEncryption("aws:kms", "key-1", True)
    await store.put_bucket_document("bucket", DOCUMENT, kms.to_json())
    # Cached for a second: this process's own change is seen once it forgets.
    assert await bucket_default_encryption(store, "bucket") is None
    encryptions(store).forget("bucket")
    assert await bucket_default_encryption(store, "bucket") == kms
    assert encryptions(store) is encryptions(store)


def test_request_condition_keys() -> None:
    headers = {
        "x-amz-server-side-encryption": "aws:kms",
        "x-amz-server-side-encryption-aws-kms-key-id": "key-1",
        "x-amz-server-side-encryption-customer-algorithm": "AES256",
        "x-amz-acl": "private",
    }
    assert request_condition_keys(headers) == {
        "s3:x-amz-server-side-encryption": "aws:kms",
        "s3:x-amz-server-side-encryption-aws-kms-key-id": "key-1",
        "s3:x-amz-server-side-encryption-customer-algorithm": "AES256",
    }
    assert request_condition_keys({"content-type": "text/plain"}) == {}


def test_record_condition_keys() -> None:
    assert record_condition_keys(None) == {}
    assert record_condition_keys(Encryption("AES256", key_id="key-1")) == {
        "s3:x-amz-server-side-encryption": "AES256"
    }
    assert record_condition_keys(Encryption("aws:kms", key_id="key-2")) == {
        "s3:x-amz-server-side-encryption": "aws:kms",
        "s3:x-amz-server-side-encryption-aws-kms-key-id": "key-2",
    }
    assert record_condition_keys(Encryption("AES256", customer=True)) == {
        "s3:x-amz-server-side-encryption-customer-algorithm": "AES256"
    }
