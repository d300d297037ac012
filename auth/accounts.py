"""Accounts: every configured credential is an account that owns what it creates.

An account's canonical user id (what S3 shows as Owner/ID and names in ACL grants) is
derived from its access key alone, so it is stable across restarts and identical on
every node of a cluster without being stored: the hex SHA-256 of `ID_LABEL` followed by
the access key id. Its display name is configured per credential (default: the access
key id). Buckets recorded without an owner (made before shoal had owners) belong to the
first configured credential.

An admin account may do anything (operators): those marked `admin`, and a lone
credential, so the single-credential setup behaves as before owners existed.
Pure data, no I/O.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

ID_LABEL = b"shoal canonical user id\x00"
#: The owner S3 records for objects written by anonymous callers.
ANONYMOUS_ID = "65a011a29cdf8ec533ec3d1ccaae921c"


def canonical_id(access_key: str) -> str:
    """The 64-hex-digit canonical user id of the account signing with `access_key`."""
    return hashlib.sha256(ID_LABEL + access_key.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Account:
    access_key: str
    canonical_id: str
    display_name: str
    email: str | None = None
    admin: bool = False


@dataclass(frozen=True)
class AccountSpec:
    """What the configuration says of one credential."""

    access_key: str
    display_name: str | None = None
    email: str | None = None
    admin: bool = False


@dataclass(frozen=True)
class Accounts:
    """Every account, by access key, by canonical id and by e-mail address."""

    accounts: tuple[Account, ...]
    _by_key: Mapping[str, Account] = field(default_factory=dict, repr=False)
    _by_id: Mapping[str, Account] = field(default_factory=dict, repr=False)
    _by_email: Mapping[str, Account] = field(default_factory=dict, repr=False)

    @classmethod
    def build(cls, specs: Iterable[AccountSpec]) -> Accounts:
        specs = list(specs)
        if not specs:
            raise ValueError("at least one account")
        lone = len(specs) == 1
        accounts = tuple(
            Account(
                s.access_key,
                canonical_id(s.access_key),
                s.display_name or s.access_key,
                s.email,
                s.admin or lone,
            )
            for s in specs
        )
        return cls(
            accounts,
            {a.access_key: a for a in accounts},
            {a.canonical_id: a for a in accounts},
            {a.email.lower(): a for a in accounts if a.email},
        )

    @property
    def default_owner(self) -> Account:
        """Whom a bucket recorded without an owner belongs to: the first credential."""
        return self.accounts[0]

    def by_key(self, access_key: str | None) -> Account | None:
        return None if access_key is None else self._by_key.get(access_key)

    def by_id(self, canonical: str) -> Account | None:
        return self._by_id.get(canonical)

    def by_email(self, email: str) -> Account | None:
        return self._by_email.get(email.lower())

    def owner_id(self, stored: str) -> str:
        """The canonical id a stored owner field means ("" is the default owner)."""
        return stored or self.default_owner.canonical_id

    def display_name(self, canonical: str) -> str:
        """The display name of an account; "" for ids of no configured account."""
        account = self._by_id.get(canonical)
        return account.display_name if account is not None else ""
