"""Who is calling: the single point where a request's signature is checked.

The ASGI layer calls `Authenticator.authenticate` once per request, before any body byte
is read (so an `Expect: 100-continue` upload is refused without being sent). It accepts
SigV4 (auth/sigv4.py) and, unless turned off, SigV2 (auth/sigv2.py), each as a header or
a presigned URL, and exactly one of those per request. Authorization against bucket
policies follows in app/authz.py, which may do I/O; nothing here does.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from shoal.auth import sigv2, sigv4
from shoal.auth.postpolicy import is_sigv2, verify_signature
from shoal.auth.sigv4 import AuthFailure, Header, Verified

#: The bucket a Host header names (virtual-hosted style), None for path style.
HostBucket = Callable[[str], str | None]

ONLY_ONE = (
    "Only one auth mechanism allowed; only the X-Amz-Algorithm query parameter, "
    "Signature query string parameter or the Authorization header should be specified"
)


@dataclass(frozen=True)
class Principal:
    """Who made a request; `access_key` is None for anonymous callers."""

    access_key: str | None = None
    #: The proof of a SigV4 request (signing key, seed signature) for streaming bodies;
    #: None for SigV2, whose bodies carry no chunk signatures.
    verified: Verified | None = None
    #: How the request was signed, as bucket policies test it (`s3:signatureversion`:
    #: "AWS" for SigV2, "AWS4-HMAC-SHA256"; `s3:authType`: "REST-HEADER",
    #: "REST-QUERY-STRING" or "POST"); None for anonymous callers.
    signature_version: str | None = None
    auth_type: str | None = None

    @property
    def anonymous(self) -> bool:
        return self.access_key is None

    def condition_keys(self) -> dict[str, object]:
        """The policy condition keys this principal's signature sets."""
        keys: dict[str, object] = {}
        if self.signature_version is not None:
            keys["s3:signatureversion"] = self.signature_version
        if self.auth_type is not None:
            keys["s3:authType"] = self.auth_type
        return keys


ANONYMOUS = Principal()


class RuntimeSecrets(Protocol):
    """The secrets of keys made at run time (auth/accounts.py Accounts): None for an
    unknown or revoked key, or a key of a disabled account."""

    def runtime_secret(self, access_key: str) -> str | None: ...


class _NoRuntime:
    def runtime_secret(self, access_key: str) -> str | None:
        return None


def _path_style(host: str) -> str | None:
    return None


class Authenticator:
    """Verifies SigV4 and SigV2 (header and presigned) against the configured credentials
    and, after them, the runtime accounts' active keys (`runtime`, read on every request:
    a key revoked or an account disabled is refused from the next request on).

    `host_bucket` tells which bucket a Host header names: SigV2 signs it as part of the
    resource. `sigv2=False` refuses SigV2 as AWS's SigV4-only regions do (400
    InvalidRequest)."""

    def __init__(
        self,
        credentials: Mapping[str, str],
        region: str,
        *,
        sigv2: bool = True,
        host_bucket: HostBucket = _path_style,
        runtime: RuntimeSecrets | None = None,
    ) -> None:
        self._secrets = dict(credentials)
        self._runtime = runtime if runtime is not None else _NoRuntime()
        self._region = region
        self.sigv2 = sigv2
        self._host_bucket = host_bucket

    def secret_for(self, access_key: str) -> str | None:
        secret = self._secrets.get(access_key)
        return secret if secret is not None else self._runtime.runtime_secret(access_key)

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
        # An empty Authorization header signs nothing: the caller is anonymous (S3
        # answers such a CreateBucket 403 AccessDenied, not a malformed-header 400).
        table = sigv4.header_table(headers)  # one pass over the headers for every check
        authorization = table.get("authorization", ())
        header = any(_filled(v) for v in authorization)
        v4_query = bool(raw_query) and sigv4.is_presigned(raw_query)
        v2_query = bool(raw_query) and sigv2.is_query_auth(raw_query)
        if sum((header, v4_query, v2_query)) > 1:
            raise AuthFailure("InvalidArgument", ONLY_ONE)
        pieces: dict[str, Any] = dict(
            method=method, raw_path=raw_path, raw_query=raw_query, headers=headers
        )
        if v2_query or (header and ",".join(authorization).split(" ", 1)[0] == sigv2.SCHEME):
            if not self.sigv2:
                raise AuthFailure("InvalidRequest", sigv2.REFUSED)
            verify = sigv2.verify_query_auth if v2_query else sigv2.verify_header_auth
            bucket = self._host_bucket(_host(headers))
            access_key = verify(**pieces, lookup=self.secret_for, now=now, bucket=bucket)
            return Principal(access_key, None, sigv2.SCHEME, _auth_type(v2_query))
        if not (header or v4_query):
            return ANONYMOUS
        if not v4_query:
            pieces["headers"] = table
        verify4 = sigv4.verify_presigned if v4_query else sigv4.verify_header_auth
        verified = verify4(**pieces, lookup=self.secret_for, region=self._region, now=now)
        return Principal(verified.access_key, verified, sigv4.ALGORITHM, _auth_type(v4_query))

    def verify_post_signature(self, fields: Mapping[str, str]) -> Principal:
        """Who signed a POST Object form's policy (SigV4, or SigV2 unless turned off)."""
        access_key = verify_signature(fields, self.secret_for, self._region, allow_sigv2=self.sigv2)
        version = sigv2.SCHEME if is_sigv2(fields) else sigv4.ALGORITHM
        return Principal(access_key, None, version, "POST")


def _auth_type(query: bool) -> str:
    return "REST-QUERY-STRING" if query else "REST-HEADER"


def _is(name: str | bytes, wanted: bytes) -> bool:
    raw = name if isinstance(name, bytes) else name.encode("latin-1", "replace")
    return raw.lower() == wanted


def _filled(value: str | bytes) -> bool:
    return bool(value.strip())


def _host(headers: Sequence[Header]) -> str:
    for name, value in headers:
        if _is(name, b"host"):
            return value.decode("latin-1") if isinstance(value, bytes) else value
    return ""
