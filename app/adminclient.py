"""A client of the accounts API (`/-/admin/`, app/adminusers.py): SigV4-signed JSON calls.

Used by `shoal admin ...` (app/admincli.py) and by tests, over the standard library's
http.client (an installed shoal has no HTTP client among its dependencies). Requests are
signed with auth/signer.py, the verifier's own pieces, over the exact body sent (its
SHA-256 is the signed payload hash), service `s3`, the server's region.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import re
import ssl
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

from shoal.auth.signer import signed_headers

_TAG = re.compile(r"<(Code|Message)>(.*?)</\1>", re.S)


class AdminError(Exception):
    """The server refused a call: its S3 error code, message and HTTP status."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}" if code else f"HTTP {status}")
        self.status, self.code, self.message = status, code, message


@dataclass(frozen=True)
class AdminClient:
    endpoint: str
    access_key: str
    secret_key: str
    region: str = "us-east-1"
    verify: str | bool = True
    timeout: float = 30.0

    def call(self, method: str, path: str, body: Any = None, *, raw: str | None = None) -> Any:
        """`method` on `/-/admin/{path}` with a JSON `body` (or `raw` text); the answer's
        JSON (None for 204), or AdminError."""
        data = b"" if body is None and raw is None else (raw or json.dumps(body)).encode()
        parts = urlsplit(self.endpoint)
        base = parts.path.rstrip("/")
        target = f"{base}/-/admin/{path}"
        headers = signed_headers(
            method,
            target,
            parts.netloc,
            self.access_key,
            self.secret_key,
            self.region,
            payload_hash=hashlib.sha256(data).hexdigest(),
        )
        if data:
            headers["content-type"] = "application/json"
        connection: http.client.HTTPConnection
        if parts.scheme == "https":
            context = _tls_context(self.verify)
            connection = http.client.HTTPSConnection(
                parts.netloc, timeout=self.timeout, context=context
            )
        else:
            connection = http.client.HTTPConnection(parts.netloc, timeout=self.timeout)
        try:
            connection.request(method, target, body=data, headers=headers)
            response = connection.getresponse()
            status, content = response.status, response.read()
        finally:
            connection.close()
        if status >= 300:
            found = dict(_TAG.findall(content.decode("utf-8", "replace")))
            raise AdminError(status, found.get("Code", ""), found.get("Message", ""))
        return json.loads(content) if content else None

    # -- the API, one method per endpoint ---------------------------------------------

    def whoami(self) -> Any:
        return self.call("GET", "whoami")

    def users(self) -> list[dict[str, Any]]:
        return list(self.call("GET", "users")["users"])

    def user(self, name: str) -> dict[str, Any]:
        return dict(self.call("GET", f"users/{_seg(name)}"))

    def add_user(self, name: str, admin: bool = False) -> dict[str, Any]:
        return dict(self.call("POST", "users", {"name": name, "admin": admin}))

    def remove_user(self, name: str) -> None:
        self.call("DELETE", f"users/{_seg(name)}")

    def set_enabled(self, name: str, enabled: bool) -> dict[str, Any]:
        action = "enable" if enabled else "disable"
        return dict(self.call("POST", f"users/{_seg(name)}/{action}"))

    def create_key(self, name: str) -> dict[str, Any]:
        return dict(self.call("POST", f"users/{_seg(name)}/keys"))

    def keys(self, name: str) -> list[dict[str, Any]]:
        return list(self.call("GET", f"users/{_seg(name)}/keys")["keys"])

    def revoke_key(self, access_key: str) -> None:
        self.call("DELETE", f"keys/{_seg(access_key)}")

    def attach_policy(self, name: str, policy: str, document: str) -> None:
        self.call("PUT", f"users/{_seg(name)}/policies/{_seg(policy)}", raw=document)

    def detach_policy(self, name: str, policy: str) -> None:
        self.call("DELETE", f"users/{_seg(name)}/policies/{_seg(policy)}")

    def policies(self, name: str) -> dict[str, Any]:
        return dict(self.call("GET", f"users/{_seg(name)}/policies")["policies"])


def _seg(text: str) -> str:
    return quote(text, safe="")


def _tls_context(verify: str | bool) -> ssl.SSLContext:
    """`verify`: True for the system's CAs, a CA bundle's path, or False (no checks)."""
    if verify is False:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    return ssl.create_default_context(cafile=verify if isinstance(verify, str) else None)
