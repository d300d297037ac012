"""Data keys: generating, wrapping under a key-encryption key, and SSE-C key proofs.

Every object gets its own random data key; what is stored is that key wrapped (sealed)
under a key-encryption key: a keyring key for SSE-S3/SSE-KMS, the customer's own key
for SSE-C. The customer's key itself is never stored, only a salted HMAC proving a
later key is the same one (as S3 does).

Wrapped key layout: version byte 0x01 || 12-byte random nonce || AES-256-GCM(kek,
nonce, data_key, aad) (32 bytes of key + 16 of tag) = 61 bytes. The aad binds the
wrapped key to where it is used (the app passes "bucket/key"), so a record copied to
another object does not open.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
from typing import TYPE_CHECKING

from shoal.sse.errors import TamperedError

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

KEY_SIZE = 32
_WRAP_VERSION = 1
_NONCE = 12
WRAPPED_SIZE = 1 + _NONCE + KEY_SIZE + 16

_PROOF_SCHEME = "hmac-sha256"
_PROOF_SALT = 16
_MAC_SIZE = hashlib.sha256().digest_size


def new_data_key() -> bytes:
    """A fresh random 256-bit data key."""
    return os.urandom(KEY_SIZE)


def _check_kek(kek: bytes) -> AESGCM:
    # cryptography is imported at first use here and in sse.packages: ~12 ms of every
    # server's start, most of which never encrypt.
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    if len(kek) != KEY_SIZE:
        raise ValueError("a key-encryption key is 32 bytes")
    return AESGCM(kek)


def wrap(kek: bytes, data_key: bytes, aad: bytes) -> bytes:
    """`data_key` sealed under `kek`, bound to `aad` (random nonce inside the output)."""
    if len(data_key) != KEY_SIZE:
        raise ValueError("a data key is 32 bytes")
    nonce = os.urandom(_NONCE)
    return bytes([_WRAP_VERSION]) + nonce + _check_kek(kek).encrypt(nonce, data_key, aad)


def unwrap(kek: bytes, wrapped: bytes, aad: bytes) -> bytes:
    """The data key inside `wrapped`; TamperedError for a wrong kek or aad, or a
    damaged or malformed wrapped key."""
    from cryptography.exceptions import InvalidTag

    aead = _check_kek(kek)
    if len(wrapped) != WRAPPED_SIZE or wrapped[0] != _WRAP_VERSION:
        raise TamperedError("wrapped data key is malformed")
    nonce, sealed = wrapped[1 : 1 + _NONCE], wrapped[1 + _NONCE :]
    try:
        return aead.decrypt(nonce, sealed, aad)
    except InvalidTag:
        raise TamperedError("wrapped data key failed authentication") from None


def _mac(salt: bytes, customer_key: bytes) -> bytes:
    return hmac.new(salt, customer_key, hashlib.sha256).digest()


def key_proof(customer_key: bytes) -> str:
    """What is stored instead of an SSE-C key: "hmac-sha256:<salt>:<mac>" (base64),
    a fresh salt per object so equal keys give unrelated proofs."""
    salt = os.urandom(_PROOF_SALT)
    mac = _mac(salt, customer_key)
    return f"{_PROOF_SCHEME}:{base64.b64encode(salt).decode()}:{base64.b64encode(mac).decode()}"


def proof_matches(customer_key: bytes, proof: str) -> bool:
    """Whether `customer_key` is the key `proof` was made from (constant-time compare);
    TamperedError for a proof that is not one key_proof makes."""
    scheme, _, rest = proof.partition(":")
    salt_text, _, mac_text = rest.partition(":")
    try:
        salt = base64.b64decode(salt_text, validate=True)
        mac = base64.b64decode(mac_text, validate=True)
    except (binascii.Error, ValueError):
        raise TamperedError("SSE-C key proof is malformed") from None
    if scheme != _PROOF_SCHEME or len(salt) != _PROOF_SALT or len(mac) != _MAC_SIZE:
        raise TamperedError("SSE-C key proof is malformed")
    return hmac.compare_digest(_mac(salt, customer_key), mac)
