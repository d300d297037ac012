"""The small immutable context every operation handler receives."""

from __future__ import annotations

from dataclasses import dataclass

from starlette.requests import Request

from shoal.app.authz import PolicyGate
from shoal.app.dispatch import Operation
from shoal.auth import Principal
from shoal.config import Config
from shoal.storage.backend import Backend

#: Owner reported in listings and ACLs: standalone shoal has one account.
OWNER_ID = "75aa57f09aa0c8caeab4f8c24e99d10f8e7faeebf76c078efc7c6caea54ba06a"
OWNER_NAME = "shoal"


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
    #: Bucket-policy checks beyond the operation's own (None while auth is off).
    gate: PolicyGate | None = None

    @property
    def bucket(self) -> str:
        assert self.op.bucket is not None
        return self.op.bucket

    @property
    def key(self) -> str:
        assert self.op.key is not None
        return self.op.key
