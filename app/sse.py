"""Server-side encryption at the S3 surface: the request headers of SSE-C, SSE-S3 and
SSE-KMS, the Encryption record a write stores, opening a record's data key for a read,
the headers S3 echoes, and the client's view of an encrypted version.

The bytes themselves are sealed and opened in app/sealing.py; the format is shoal.sse's.
Nothing here keeps a customer key: an SSE-C record holds the data key wrapped by it and
a salted proof that a later key is the same one.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import hashlib
import json
import logging
from dataclasses import dataclass

from shoal.app.context import RequestContext
from shoal.app.encryptionconfig import DefaultEncryption, bucket_default_encryption
from shoal.app.errors import (
    AccessDenied,
    InternalError,
    InvalidArgument,
    InvalidEncryptionAlgorithmError,
    InvalidRequest,
    KMSNotFoundException,
)
from shoal.sse import keys
from shoal.sse.errors import KeyNotFound, TamperedError
from shoal.sse.keyring import Keyring
from shoal.sse.packages import plain_length
from shoal.storage.backend import Encryption, ObjectMeta, PartInfo

log = logging.getLogger("shoal.sse")

SSE = "x-amz-server-side-encryption"
KMS_KEY_ID = "x-amz-server-side-encryption-aws-kms-key-id"
CONTEXT = "x-amz-server-side-encryption-context"
BUCKET_KEY = "x-amz-server-side-encryption-bucket-key-enabled"
CUSTOMER = "x-amz-server-side-encryption-customer-"
COPY_CUSTOMER = "x-amz-copy-source-server-side-encryption-customer-"
AES256, KMS = "AES256", "aws:kms"
_C = "Requests specifying Server Side Encryption with Customer provided keys must"


@dataclass(frozen=True)
class CustomerKey:
    """An SSE-C key as a request gave it (checked against its MD5)."""

    key: bytes = dataclasses.field(repr=False)
    md5: str  # base64, as S3 echoes it


@dataclass(frozen=True)
class Choice:
    """The encryption a write asked for, by its headers or the bucket's default."""

    algorithm: str  # AES256 | aws:kms
    key_id: str = ""  # the keyring key (SSE-S3, SSE-KMS)
    context: str = ""
    bucket_key: bool = False
    customer: CustomerKey | None = None


@dataclass(frozen=True)
class Transport:
    """Whether SSE-C keys may travel on this request's connection."""

    secure: bool
    allow_http: bool

    def check(self) -> None:
        if not self.secure and not self.allow_http:
            raise InvalidRequest(f"{_C} be made over a secure connection.")


def customer_key(
    headers: dict[str, str], transport: Transport, *, copy_source: bool = False
) -> CustomerKey | None:
    """The SSE-C trio (or, for a copy's source, the x-amz-copy-source- trio), validated
    as S3 does; None when the request names no customer key."""
    prefix = COPY_CUSTOMER if copy_source else CUSTOMER
    algorithm = headers.get(prefix + "algorithm")
    text = headers.get(prefix + "key")
    md5 = headers.get(prefix + "key-md5")
    if algorithm is None and text is None and md5 is None:
        return None
    transport.check()
    # The order and words of AWS's recorded answers (ArgumentName as AWS names it).
    if algorithm is None:
        raise InvalidArgument(f"{_C} provide a valid encryption algorithm.", ArgumentName=SSE)
    if algorithm != AES256:
        raise InvalidEncryptionAlgorithmError(
            "The Encryption request you specified is not valid. Supported value: AES256.",
            ArgumentName=SSE,
            ArgumentValue=algorithm,
        )
    if text is None:
        raise InvalidArgument(f"{_C} provide an appropriate secret key.", ArgumentName=SSE)
    if md5 is None:
        raise InvalidArgument(
            f"{_C} provide the client calculated MD5 of the secret key.", ArgumentName=SSE
        )
    try:
        key = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        key = None
    if key is not None and base64.b64encode(hashlib.md5(key).digest()).decode() != md5.strip():
        raise InvalidArgument(
            "The calculated MD5 hash of the key did not match the hash that was provided.",
            ArgumentName=SSE,
        )
    if key is None or len(key) != 32:
        raise InvalidArgument(
            "The secret key was invalid for the specified algorithm.", ArgumentName=SSE
        )
    return CustomerKey(key, md5.strip())


def requested(headers: dict[str, str], keyring: Keyring, transport: Transport) -> Choice | None:
    """The encryption a write's headers (or a POST form's fields) ask for; None if they
    name none (the bucket default may apply)."""
    customer = customer_key(headers, transport)
    method = headers.get(SSE)
    kms_only = [n for n in (KMS_KEY_ID, CONTEXT) if n in headers]
    if customer is not None:
        if method is not None or kms_only:
            raise InvalidArgument(
                "Server Side Encryption with Customer provided key is incompatible with the"
                " encryption method specified",
                ArgumentName=SSE,
                ArgumentValue=method or "",
            )
        return Choice(AES256, customer=customer)
    if method is None:
        if kms_only:
            raise InvalidArgument(
                "Server Side Encryption with AWS KMS managed key requires HTTP header"
                " x-amz-server-side-encryption : aws:kms",
                ArgumentName=kms_only[0],
            )
        return None
    if method not in (AES256, KMS):
        raise InvalidArgument(
            "The encryption method specified is not supported",
            ArgumentName=SSE,
            ArgumentValue=method,
        )
    bucket_key = _bool_header(headers, BUCKET_KEY)
    if method == AES256:
        if kms_only:
            raise InvalidArgument(
                "Server Side Encryption with AWS KMS managed key requires HTTP header"
                " x-amz-server-side-encryption : aws:kms",
                ArgumentName=kms_only[0],
            )
        # Bucket keys are an SSE-KMS matter: S3 reports none on SSE-S3 objects.
        return Choice(AES256, key_id=default_key(keyring))
    context = headers.get(CONTEXT, "")
    if context:
        _check_context(context)
    named = headers.get(KMS_KEY_ID, "").strip()
    key_id = resolve(keyring, named) if named else default_key(keyring)
    return Choice(KMS, key_id=key_id, context=context, bucket_key=bucket_key)


def default_choice(default: DefaultEncryption, keyring: Keyring) -> Choice:
    """A bucket's default encryption as the Choice of a write that named none."""
    if default.algorithm == KMS:
        named = default.kms_key_id
        key_id = resolve(keyring, named) if named else default_key(keyring)
        return Choice(KMS, key_id=key_id, bucket_key=default.bucket_key)
    return Choice(AES256, key_id=default_key(keyring))


def transport(ctx: RequestContext) -> Transport:
    secure = ctx.request.scope.get("scheme") == "https"
    return Transport(secure, ctx.config.kms.allow_sse_c_over_http)


async def choose(ctx: RequestContext, headers: dict[str, str], bucket: str) -> Choice | None:
    """The encryption of a new object or upload: its headers' (or form fields'), else
    the bucket's default, else none."""
    choice = requested(headers, ctx.keyring, transport(ctx))
    if choice is not None and (choice.algorithm != KMS or BUCKET_KEY in headers):
        return choice
    default = await bucket_default_encryption(ctx.backend, bucket)
    if choice is not None:
        # SSE-KMS that says nothing of bucket keys takes the bucket's setting (S3's rule).
        bucket_key = default is not None and default.bucket_key
        return dataclasses.replace(choice, bucket_key=bucket_key)
    return None if default is None else default_choice(default, ctx.keyring)


def names_encryption(headers: dict[str, str]) -> bool:
    """Whether a request's headers ask for an encryption (a copy onto itself may)."""
    return SSE in headers or any(n.startswith(CUSTOMER) for n in headers)


def read_key(
    ctx: RequestContext, meta: ObjectMeta, bucket: str, key: str, *, copy_source: bool = False
) -> bytes | None:
    """The data key to read a stored version with (None: not encrypted), after S3's
    checks of the request's SSE-C headers (a copy's source: the x-amz-copy-source- ones)."""
    if not copy_source:
        refuse_write_headers(ctx.headers)
    customer = customer_key(ctx.headers, transport(ctx), copy_source=copy_source)
    check_customer(meta.encryption, customer)
    if meta.encryption is None:
        return None
    return data_key(ctx.keyring, meta.encryption, bucket, key, customer)


def check_read(ctx: RequestContext, meta: ObjectMeta) -> ObjectMeta:
    """HEAD-like reads (no bytes): the SSE-C checks, then the client's view."""
    refuse_write_headers(ctx.headers)
    check_customer(meta.encryption, customer_key(ctx.headers, transport(ctx)))
    return shown(meta)


def _bool_header(headers: dict[str, str], name: str) -> bool:
    value = headers.get(name)
    if value is None:
        return False
    if value.strip().lower() not in ("true", "false"):
        raise InvalidArgument(f"Invalid value for {name}.", ArgumentName=name, ArgumentValue=value)
    return value.strip().lower() == "true"


def _check_context(context: str) -> None:
    """x-amz-server-side-encryption-context: base64 of a JSON object of strings."""
    try:
        document = json.loads(base64.b64decode(context, validate=True))
    except (binascii.Error, ValueError):
        document = None
    if not isinstance(document, dict) or not all(isinstance(v, str) for v in document.values()):
        raise InvalidArgument(
            "The header 'x-amz-server-side-encryption-context' shall be Base64-encoded"
            " UTF-8 string holding JSON which represents a string-string map",
            ArgumentName=CONTEXT,
        )


def default_key(keyring: Keyring) -> str:
    """The keyring's default key; a clear 400 when the server holds no keys at all."""
    if keyring.default_id is None:
        raise InvalidRequest(
            "Server-side encryption with SSE-S3 or SSE-KMS needs a key in this server's"
            " keyring (kms.keys), and none is configured."
        )
    return keyring.default_id


def resolve(keyring: Keyring, named: str) -> str:
    """A key id or ARN the keyring holds, or 400 KMS.NotFoundException."""
    try:
        return keyring.resolve(named)
    except KeyNotFound as exc:
        raise KMSNotFoundException(f"Invalid keyId {named}") from exc


def aad(bucket: str, key: str) -> bytes:
    """What a data key is wrapped with, so a record moved to another key does not open."""
    return f"{bucket}/{key}".encode("utf-8", "surrogatepass")


def new_record(keyring: Keyring, choice: Choice, bucket: str, key: str) -> tuple[Encryption, bytes]:
    """A fresh data key and the record storing it sealed (plain size and ETag are
    filled in as the body ends)."""
    data_key = keys.new_data_key()
    where = aad(bucket, key)
    if choice.customer is not None:
        sealed = keys.wrap(choice.customer.key, data_key, where)
        record = Encryption(
            algorithm=AES256,
            customer=True,
            sealed_key=base64.b64encode(sealed).decode(),
            key_md5=choice.customer.md5,
            key_proof=keys.key_proof(choice.customer.key),
        )
        return record, data_key
    sealed = keyring.seal(choice.key_id, data_key, where)
    record = Encryption(
        algorithm=choice.algorithm,
        key_id=choice.key_id,
        sealed_key=base64.b64encode(sealed).decode(),
        context=choice.context,
        bucket_key=choice.bucket_key,
    )
    return record, data_key


def check_customer(enc: Encryption | None, customer: CustomerKey | None) -> None:
    """S3's rules for the SSE-C headers of a read: an SSE-C version needs its key (400
    without, 403 with another); other versions take none."""
    if enc is not None and enc.customer:
        if customer is None:
            raise InvalidRequest(
                "The object was stored using a form of Server Side Encryption. The correct"
                " parameters must be provided to retrieve the object."
            )
        if not keys.proof_matches(customer.key, enc.key_proof):
            raise AccessDenied(f"{_C} provide the correct secret key.")
    elif customer is not None:
        raise InvalidRequest("The encryption parameters are not applicable to this object.")


def data_key(
    keyring: Keyring, enc: Encryption, bucket: str, key: str, customer: CustomerKey | None
) -> bytes:
    """The data key of a record (SSE-C: `customer` already checked by check_customer)."""
    sealed = base64.b64decode(enc.sealed_key)
    where = aad(bucket, key)
    try:
        if enc.customer:
            assert customer is not None
            return keys.unwrap(customer.key, sealed, where)
        return keyring.unseal(enc.key_id, sealed, where)
    except KeyNotFound as exc:
        log.error("object %s/%s is sealed by key %r, not in kms.keys", bucket, key, enc.key_id)
        raise KMSNotFoundException(f"Invalid keyId {enc.key_id}") from exc
    except TamperedError as exc:
        if enc.customer:
            raise AccessDenied() from exc
        log.error("the data key of %s/%s does not open: %s", bucket, key, exc)
        raise InternalError() from exc


def response_headers(
    enc: Encryption | None, *, context: bool = False, customer: bool = True
) -> dict[str, str]:
    """The encryption headers S3 echoes about an encrypted version or upload: the
    context only where the request could give it (writes that choose encryption), the
    SSE-C pair everywhere but CompleteMultipartUpload (`customer=False`)."""
    if enc is None:
        return {}
    if enc.customer:
        if not customer:
            return {}
        return {CUSTOMER + "algorithm": enc.algorithm, CUSTOMER + "key-MD5": enc.key_md5}
    headers = {SSE: enc.algorithm}
    if enc.algorithm == KMS:
        headers[KMS_KEY_ID] = enc.key_id
        if enc.context and context:
            headers[CONTEXT] = enc.context
    if enc.bucket_key:
        headers[BUCKET_KEY] = "true"
    return headers


def refuse_write_headers(headers: dict[str, str]) -> None:
    """Reads and parts take no x-amz-server-side-encryption (only an object's writer
    chooses its encryption): 400, as S3 answers."""
    value = headers.get(SSE)
    if value is not None:
        raise InvalidArgument(
            "x-amz-server-side-encryption header is not supported for this operation.",
            ArgumentName=SSE,
            ArgumentValue=value,
        )


def shown(meta: ObjectMeta) -> ObjectMeta:
    """A stored version as clients see it: for an encrypted one, the plaintext's size
    and ETag, and its parts' plaintext sizes. Every read answer is built from this."""
    if meta.encryption is None:
        return meta
    parts = None
    if meta.parts is not None:
        parts = [shown_part(p, meta.encryption) for p in meta.parts]
    return dataclasses.replace(meta, size=meta.shown_size, etag=meta.shown_etag, parts=parts)


def shown_part(part: PartInfo, enc: Encryption | None) -> PartInfo:
    """A part (of an upload or a completed object) with its plaintext size."""
    if enc is None:
        return part
    return dataclasses.replace(part, size=plain_length(part.size))


def identity(part_number: int) -> bytes:
    """The identity a sealed stream is bound to: its part number (0 for a single PUT)."""
    return part_number.to_bytes(4, "big")
