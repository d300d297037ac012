"""Runtime accounts in this process: what the store holds, kept fresh, and its changes.

`AccountDirectory` reads every runtime account from the store (storage/accounts.py) and
installs them into the process's `Accounts` (auth/accounts.py) as one snapshot, which
authentication and authorization read on every request without I/O.

How a change made through one node reaches the others within a second: every node polls
the store's generation token (one small record; in a cluster one quorum read of it)
every POLL_SECONDS and reloads the accounts only when it changed. A key created, a key
revoked, an account disabled or deleted through any node is thus in force on every node
within POLL_SECONDS plus one quorum read, and at once on the node that made it (which
reloads right after its write). Polling was chosen over read-through on an unknown key
because revocation and disabling need the same bound and a cache of known keys cannot
learn of those without asking; one read per quarter second is cheap, and a node that
missed a broadcast could not catch up otherwise. While the store cannot be read (no
quorum) the last snapshot stays in force.

Changes to one account are read-modify-write of its record, one at a time in this
process; two admins changing the same account through two nodes at the same instant
may overwrite each other (the last write wins), never two different accounts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import string
from dataclasses import replace

from shoal.app.errors import (
    AccessDenied,
    InvalidArgument,
    MalformedPolicy,
    NoSuchAccessKey,
    NoSuchPolicy,
    NoSuchUser,
    UserAlreadyExists,
)
from shoal.auth.accounts import Account, Accounts, RuntimeAccounts, runtime_canonical_id
from shoal.auth.policy import (
    Policy,
    PolicyError,
    Statement,
    merge_policies,
    parse_identity_policy,
)
from shoal.storage.accounts import (
    POLICY_NAME_RE,
    AccountRecord,
    AccountStore,
    KeyRecord,
    valid_name,
)
from shoal.storage.records import now

log = logging.getLogger("shoal.accounts")

POLL_SECONDS = 0.25
#: At most this many keys per account (IAM allows 2; operators rotating need a few).
MAX_KEYS = 10
MAX_POLICIES = 20
_KEY_ALPHABET = string.ascii_uppercase + string.digits
_SECRET_ALPHABET = string.ascii_letters + string.digits + "+/"

#: What an account whose policies cannot be read is held to: nothing at all.
DENY_ALL = Policy((Statement("Deny", ("*",), False, ("*",), False, ("*",), False),))


def new_access_key() -> str:
    return "SK" + "".join(secrets.choice(_KEY_ALPHABET) for _ in range(18))


def new_secret_key() -> str:
    return "".join(secrets.choice(_SECRET_ALPHABET) for _ in range(40))


def snapshot(records: tuple[AccountRecord, ...], configured: Accounts) -> RuntimeAccounts:
    """The runtime accounts as auth/accounts.py looks them up (a configured access key
    is never shadowed by a runtime one)."""
    keys: dict[str, tuple[str, Account]] = {}
    by_id: dict[str, Account] = {}
    for record in records:
        canonical = runtime_canonical_id(record.name)
        policy = identity_policy(record)
        base = Account("", canonical, record.name, None, record.admin, policy, True)
        by_id[canonical] = base
        if record.disabled:
            continue
        for key in record.keys:
            if configured.configured(key.access_key):
                continue
            keys[key.access_key] = (key.secret_key, replace(base, access_key=key.access_key))
    return RuntimeAccounts(keys, by_id)


def identity_policy(record: AccountRecord) -> Policy | None:
    """The account's attached policies as one; deny-all if one cannot be parsed."""
    try:
        return merge_policies(parse_identity_policy(text) for _, text in record.policies)
    except PolicyError:
        return DENY_ALL


class AccountDirectory:
    """The runtime accounts of this process and the changes made through it."""

    def __init__(self, store: AccountStore, accounts: Accounts) -> None:
        self.store = store
        self.accounts = accounts
        self._generation: str | None = None
        self._records: dict[str, AccountRecord] = {}
        self._changing = asyncio.Lock()
        self._refreshing = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None

    # -- keeping fresh -----------------------------------------------------------------

    async def start(self) -> None:
        try:
            await self.refresh()
        except Exception as exc:  # no quorum yet (a cluster forming): polling retries
            log.warning("runtime accounts not readable at start: %s", type(exc).__name__)
        self._task = asyncio.get_running_loop().create_task(self._poll())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _poll(self) -> None:
        failing = False
        while True:
            await asyncio.sleep(POLL_SECONDS)
            try:
                await self.refresh()
                failing = False
            except Exception as exc:  # no quorum: keep the last snapshot
                if not failing:
                    log.warning("runtime accounts not readable: %s", type(exc).__name__)
                failing = True

    async def refresh(self, force: bool = False) -> None:
        """Reload the accounts if the store's generation moved (or `force`)."""
        async with self._refreshing:
            generation = await self.store.generation()
            if generation == self._generation and not force:
                return
            records = await self.store.load_all()
            self._records = {r.name: r for r in records}
            self._generation = generation
            self.accounts.install(snapshot(records, self.accounts))

    # -- reading -----------------------------------------------------------------------

    def records(self) -> list[AccountRecord]:
        return [self._records[n] for n in sorted(self._records)]

    def get(self, name: str) -> AccountRecord:
        record = self._records.get(name)
        if record is None:
            raise NoSuchUser()
        return record

    # -- changing ----------------------------------------------------------------------

    async def _fresh(self, name: str) -> AccountRecord:
        """The account as the store holds it now (not as last polled)."""
        if self.accounts.configured_name(name):
            raise AccessDenied("Accounts defined in the configuration are read-only.")
        record = await self.store.get(name) if valid_name(name) else None
        if record is None:
            raise NoSuchUser()
        return record

    async def _save(self, record: AccountRecord | None, name: str) -> None:
        if record is None:
            await self.store.delete(name)
        else:
            await self.store.put(record)
        await self.refresh(force=True)

    async def create_user(self, name: str, admin: bool) -> AccountRecord:
        if not valid_name(name):
            raise InvalidArgument(
                "A user name is 1 to 64 letters, digits or +=,.@_- characters.",
                ArgumentName="name",
            )
        async with self._changing:
            if self.accounts.configured_name(name) or await self.store.get(name) is not None:
                raise UserAlreadyExists()
            record = AccountRecord(name, now(whole_seconds=True), admin=admin)
            await self._save(record, name)
        return record

    async def delete_user(self, name: str) -> None:
        async with self._changing:
            await self._fresh(name)
            await self._save(None, name)

    async def set_disabled(self, name: str, disabled: bool) -> AccountRecord:
        async with self._changing:
            record = replace(await self._fresh(name), disabled=disabled)
            await self._save(record, name)
        return record

    async def create_key(self, name: str) -> KeyRecord:
        async with self._changing:
            record = await self._fresh(name)
            if len(record.keys) >= MAX_KEYS:
                raise InvalidArgument(f"A user has at most {MAX_KEYS} access keys.")
            key = KeyRecord(new_access_key(), new_secret_key(), now(whole_seconds=True))
            while self.accounts.by_key(key.access_key) is not None:
                key = replace(key, access_key=new_access_key())
            await self._save(replace(record, keys=(*record.keys, key)), name)
        return key

    async def revoke_key(self, access_key: str) -> None:
        async with self._changing:
            await self.refresh()
            owner = next((r for r in self.records() if _has_key(r, access_key)), None)
            if owner is None:
                if self.accounts.configured(access_key):
                    raise AccessDenied("Keys defined in the configuration are read-only.")
                raise NoSuchAccessKey()
            record = await self._fresh(owner.name)
            keys = tuple(k for k in record.keys if k.access_key != access_key)
            await self._save(replace(record, keys=keys), owner.name)

    async def attach_policy(self, name: str, policy_name: str, text: str) -> None:
        if POLICY_NAME_RE.fullmatch(policy_name) is None:
            raise InvalidArgument("A policy name is 1 to 128 letters, digits or +=,.@_-.")
        try:
            parse_identity_policy(text)
        except PolicyError as exc:
            raise MalformedPolicy(exc.reason) from exc
        async with self._changing:
            record = await self._fresh(name)
            policies = dict(record.policies)
            policies[policy_name] = text
            if len(policies) > MAX_POLICIES:
                raise InvalidArgument(f"A user has at most {MAX_POLICIES} policies.")
            await self._save(replace(record, policies=tuple(sorted(policies.items()))), name)

    async def detach_policy(self, name: str, policy_name: str) -> None:
        async with self._changing:
            record = await self._fresh(name)
            policies = dict(record.policies)
            if policies.pop(policy_name, None) is None:
                raise NoSuchPolicy()
            await self._save(replace(record, policies=tuple(sorted(policies.items()))), name)


def _has_key(record: AccountRecord, access_key: str) -> bool:
    return any(k.access_key == access_key for k in record.keys)
