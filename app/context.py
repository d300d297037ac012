"""The small immutable context every operation handler receives."""

from __future__ import annotations

from dataclasses import dataclass

from starlette.requests import Request

from shoal.app.authz import BucketSettings, PolicyGate
from shoal.app.dispatch import Operation
from shoal.auth import Principal
from shoal.auth.accounts import Account, Accounts
from shoal.config import Config
from shoal.sse.keyring import Keyring
from shoal.storage.backend import Backend


@dataclass(frozen=True)
class RequestContext:
    op: Operation
    request: Request
    headers: dict[str, str]  # lower-case names
    query: dict[str, str]
    request_id: str
    config: Config
    backend: Backend
    principal: Principal
    #: Every configured account (owners, grantees), with auth on or off.
    accounts: Accounts
    #: Each bucket's owner, ACL, ownership rule and public access block (cached).
    settings: BucketSettings
    #: The kms keyring sealing SSE-S3 and SSE-KMS data keys (empty when none is set).
    keyring: Keyring
    #: Bucket-policy checks beyond the operation's own (None while auth is off).
    gate: PolicyGate | None = None

    @property
    def requester(self) -> Account | None:
        """The calling account: None for anonymous callers; with auth off, everyone
        acts as the default owner (the first credential)."""
        if self.gate is None:
            return self.accounts.default_owner
        return self.accounts.by_key(self.principal.access_key)

    @property
    def bucket(self) -> str:
        assert self.op.bucket is not None
        return self.op.bucket

    @property
    def key(self) -> str:
        assert self.op.key is not None
        return self.op.key
