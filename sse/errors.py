"""The two ways sealed data can fail to open; the app maps them to S3 errors."""

from __future__ import annotations


class TamperedError(Exception):
    """Sealed bytes, a wrapped key or a proof failed authentication: tampered with,
    truncated, reordered, corrupted, or opened with the wrong key. Never wrong bytes."""


class KeyNotFound(Exception):
    """The keyring holds no key with this id (or the ARN names none of them). Not a
    KeyError, so no `except KeyError` meant for a dict lookup swallows it."""

    def __init__(self, key_id: str) -> None:
        super().__init__(key_id)
        self.key_id = key_id

    def __str__(self) -> str:
        return f"no key {self.key_id!r} in the kms keyring"
