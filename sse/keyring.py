"""The local keyring: the key-encryption keys of SSE-S3 and SSE-KMS, from `[kms]`.

Each object's data key is sealed (shoal.sse.keys.wrap) under one of these keys and
stored with the object's record along with the key's id, so a key must be kept for as
long as anything sealed under it exists: rotating means adding a key and making it the
default, never replacing one.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping

from shoal.config.loader import kms_key_bytes
from shoal.config.model import KmsConfig
from shoal.sse.errors import KeyNotFound
from shoal.sse.keys import KEY_SIZE, unwrap, wrap

#: Prefix of a key ARN's resource part ("arn:aws:kms:<region>:<account>:key/<id>").
_ARN_KEY = "key/"
_ALIAS = "alias/"
_FINGERPRINT_LABEL = b"shoal kms keyring fingerprint v1"


class Keyring:
    """Key-encryption keys by id. `default_id` is None when no key is configured
    (SSE-S3/SSE-KMS requests are then refused by the app)."""

    def __init__(self, keys: Mapping[str, bytes], default_id: str | None = None) -> None:
        for key_id, secret in keys.items():
            if len(secret) != KEY_SIZE:
                raise ValueError(f"kms key {key_id!r} is not {KEY_SIZE} bytes")
        self._keys = dict(keys)
        if default_id is None:
            default_id = next(iter(self._keys), None)
        elif default_id not in self._keys:
            raise KeyNotFound(default_id)
        self.default_id = default_id

    @classmethod
    def from_config(cls, kms: KmsConfig) -> Keyring:
        """The keyring `[kms]` describes (secret files are read here); ConfigError
        naming the key and field, never a secret, for a key that cannot be had."""
        keys = {key.id: kms_key_bytes(key, f"kms.keys[{i}]") for i, key in enumerate(kms.keys)}
        return cls(keys, kms.default_key_id)

    @property
    def ids(self) -> list[str]:
        return list(self._keys)

    def has(self, key_id: str) -> bool:
        return key_id in self._keys

    def _kek(self, key_id: str) -> bytes:
        try:
            return self._keys[key_id]
        except KeyError:
            raise KeyNotFound(key_id) from None

    def seal(self, key_id: str, data_key: bytes, aad: bytes) -> bytes:
        """`data_key` wrapped under key `key_id`, bound to `aad` (KeyNotFound)."""
        return wrap(self._kek(key_id), data_key, aad)

    def unseal(self, key_id: str, wrapped: bytes, aad: bytes) -> bytes:
        """The data key seal() wrapped; KeyNotFound for an unknown id, TamperedError
        for a wrong key, aad or damaged record."""
        return unwrap(self._kek(key_id), wrapped, aad)

    def resolve(self, key_id_or_arn: str) -> str:
        """The id a request names: "key-1", "alias/key-1", or an ARN
        "arn:aws:kms:<region>:<account>:key/key-1" (or ...:alias/key-1). KeyNotFound
        when that names no key here."""
        name = key_id_or_arn
        if name.startswith("arn:"):
            parts = name.split(":", 5)
            if len(parts) != 6 or parts[2] != "kms":
                raise KeyNotFound(key_id_or_arn)
            name = parts[5]
            if name.startswith(_ARN_KEY):
                name = name[len(_ARN_KEY) :]
            elif not name.startswith(_ALIAS):
                raise KeyNotFound(key_id_or_arn)
        if name.startswith(_ALIAS):
            name = name[len(_ALIAS) :]
        if name not in self._keys:
            raise KeyNotFound(key_id_or_arn)
        return name

    def fingerprint(self) -> str:
        """A digest of every (id, key): equal on two nodes iff they hold the same keys
        under the same ids (order and default aside). One-way: each key enters only
        through an HMAC keyed by the key itself, so the digest reveals nothing of it."""
        h = hashlib.sha256(_FINGERPRINT_LABEL)
        for key_id in sorted(self._keys):
            name = key_id.encode()
            h.update(len(name).to_bytes(4, "big") + name)
            h.update(hmac.new(self._keys[key_id], _FINGERPRINT_LABEL, hashlib.sha256).digest())
        return h.hexdigest()

    def __repr__(self) -> str:  # never the keys
        return f"Keyring(ids={self.ids!r}, default_id={self.default_id!r})"
