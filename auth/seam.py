"""Who is calling: the single point where a request's SigV4 signature is checked.

The ASGI layer calls `Authenticator.authenticate` once per request with the parsed
operation, before any body byte is read (so an `Expect: 100-continue` upload is refused
without being sent). Authorization against bucket policies follows in app/authz.py,
which may do I/O; nothing here does.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from shoal.auth.sigv4 import Header, Verified, verify_request


@dataclass(frozen=True)
class Principal:
    """Who made a request; `access_key` is None for anonymous callers."""

    access_key: str | None = None
    #: The proof of a signed request (signing key, seed signature) for streaming bodies.
    verified: Verified | None = None

    @property
    def anonymous(self) -> bool:
        return self.access_key is None


ANONYMOUS = Principal()


class Authenticator:
    """Verifies header and presigned-URL SigV4 against the configured credentials."""

    def __init__(self, credentials: Mapping[str, str], region: str) -> None:
        self._secrets = dict(credentials)
        self._region = region

    def secret_for(self, access_key: str) -> str | None:
        return self._secrets.get(access_key)

    def authenticate(
        self,
        *,
        method: str,
        raw_path: bytes,
        raw_query: bytes,
        headers: Sequence[Header],
        now: datetime,
    ) -> Principal:
        """The caller, or AuthFailure; a request with no signature at all is anonymous.

        `headers` are the raw (name, value) pairs as received, so the signature covers
        exactly the bytes the client signed."""
        verified = verify_request(
            method=method,
            raw_path=raw_path,
            raw_query=raw_query,
            headers=headers,
            lookup=self._secrets.get,
            region=self._region,
            now=now,
        )
        return ANONYMOUS if verified is None else Principal(verified.access_key, verified)
