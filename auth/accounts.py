"""Accounts: every configured credential is an account that owns what it creates.

An account's canonical user id (what S3 shows as Owner/ID and names in ACL grants) is
derived from its access key alone, so it is stable across restarts and identical on
every node of a cluster without being stored: the hex SHA-256 of `ID_LABEL` followed by
the access key id. Its display name is configured per credential (default: the access
key id). Buckets recorded without an owner (made before shoal had owners) belong to the
first configured credential.

An admin account may do anything (operators): those marked `admin`, and a lone
credential, so the single-credential setup behaves as before owners existed.

Runtime accounts (made through the admin API, kept by storage/accounts.py) join the
configured ones through `RuntimeAccounts`, a snapshot app/runtimeaccounts.py installs
whenever the store changes. A runtime account has a name and any number of keys, so its
canonical id derives from its name instead, under another label: the hex SHA-256 of
`RUNTIME_ID_LABEL` followed by the name (stable, the same on every node, and never equal
to a configured account's). Its identity policies, merged into one, ride on its Account.
Configured accounts win a clash of access keys. Pure data, no I/O.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from shoal.auth.policy import Policy

ID_LABEL = b"shoal canonical user id\x00"
RUNTIME_ID_LABEL = b"shoal runtime account id\x00"
#: The owner S3 records for objects written by anonymous callers.
ANONYMOUS_ID = "65a011a29cdf8ec533ec3d1ccaae921c"


def canonical_id(access_key: str) -> str:
    """The 64-hex-digit canonical user id of the account signing with `access_key`."""
    return hashlib.sha256(ID_LABEL + access_key.encode("utf-8")).hexdigest()


def runtime_canonical_id(name: str) -> str:
    """The canonical user id of the runtime account named `name`."""
    return hashlib.sha256(RUNTIME_ID_LABEL + name.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Account:
    access_key: str
    canonical_id: str
    display_name: str
    email: str | None = None
    admin: bool = False
    #: The identity policies attached to a runtime account, as one policy; None when it
    #: has none (the account is then the root of its own: unrestricted, like config ones).
    policy: Policy | None = None
    runtime: bool = False


@dataclass(frozen=True)
class RuntimeAccounts:
    """A snapshot of the runtime accounts: their active keys' secrets and accounts.

    Disabled accounts are in `by_id` (owners of what they made) but none of their keys
    are in `keys`: a disabled account or a revoked key signs nothing."""

    keys: Mapping[str, tuple[str, Account]] = field(default_factory=dict)
    by_id: Mapping[str, Account] = field(default_factory=dict)


NO_RUNTIME = RuntimeAccounts()


@dataclass(frozen=True)
class AccountSpec:
    """What the configuration says of one credential."""

    access_key: str
    display_name: str | None = None
    email: str | None = None
    admin: bool = False


@dataclass
class Accounts:
    """Every account, by access key, by canonical id and by e-mail address: the
    configured ones (fixed) and the runtime ones (the snapshot in `runtime`, replaced
    as a whole, so a lookup sees one consistent state)."""

    accounts: tuple[Account, ...]
    _by_key: Mapping[str, Account] = field(default_factory=dict, repr=False)
    _by_id: Mapping[str, Account] = field(default_factory=dict, repr=False)
    _by_email: Mapping[str, Account] = field(default_factory=dict, repr=False)
    runtime: RuntimeAccounts = NO_RUNTIME

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
        if access_key is None:
            return None
        account = self._by_key.get(access_key)
        if account is None:
            hit = self.runtime.keys.get(access_key)
            account = hit[1] if hit is not None else None
        return account

    def by_id(self, canonical: str) -> Account | None:
        return self._by_id.get(canonical) or self.runtime.by_id.get(canonical)

    def configured(self, access_key: str) -> bool:
        """Whether `access_key` is a configured credential's."""
        return access_key in self._by_key

    def configured_name(self, name: str) -> Account | None:
        """The configured account of that name (its display name, else its key)."""
        for account in self.accounts:
            if name in (account.display_name, account.access_key):
                return account
        return None

    def runtime_secret(self, access_key: str) -> str | None:
        """The secret of an active key of an enabled runtime account, else None."""
        if access_key in self._by_key:
            return None  # a configured key: its secret is the configuration's
        hit = self.runtime.keys.get(access_key)
        return hit[0] if hit is not None else None

    def install(self, runtime: RuntimeAccounts) -> None:
        """Replace the runtime accounts (one assignment: lookups see old or new)."""
        self.runtime = runtime

    def by_email(self, email: str) -> Account | None:
        return self._by_email.get(email.lower())

    def owner_id(self, stored: str) -> str:
        """The canonical id a stored owner field means ("" is the default owner)."""
        return stored or self.default_owner.canonical_id

    def display_name(self, canonical: str) -> str:
        """The display name of an account; "" for ids of no configured account."""
        account = self.by_id(canonical)
        return account.display_name if account is not None else ""
