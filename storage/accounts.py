"""Runtime accounts: the records, the store interface, and the standalone FileStore's store.

An account made through the admin API (app/adminusers.py) is one record: its name, admin
and disabled flags, creation time, access keys (id, secret, creation time) and attached
identity policies (name → IAM JSON text). One record per account, so changes to different
accounts never overwrite each other; a second, tiny "generation" record changes with
every write, so a node learns that something changed with one small read
(app/runtimeaccounts.py polls it) and only then reads the accounts again.

Where the records live: under the data directory (`.accounts/`) for the FileStore, and,
in erasure and cluster modes, as replicated records on every drive through the same
quorum as bucket records (storage/erasure/accounts.py). Records hold secrets: files are
written mode 0600 in a directory of mode 0700. Nothing here knows of HTTP.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from shoal.storage.backend import Backend
from shoal.storage.diskio import read_json, unlink_quiet, write_json
from shoal.storage.records import FORMAT, iso, parse_iso

#: IAM's rules for user names and policy names (letters, digits and `+=,.@_-`).
NAME_RE = re.compile(r"[A-Za-z0-9+=,.@_-]{1,64}")
POLICY_NAME_RE = re.compile(r"[A-Za-z0-9+=,.@_-]{1,128}")


@dataclass(frozen=True)
class KeyRecord:
    access_key: str
    secret_key: str
    created: datetime


@dataclass(frozen=True)
class AccountRecord:
    name: str
    created: datetime
    admin: bool = False
    disabled: bool = False
    keys: tuple[KeyRecord, ...] = ()
    #: Attached identity policies: (name, IAM JSON text), sorted by name.
    policies: tuple[tuple[str, str], ...] = ()


class AccountStore(Protocol):
    """Where runtime accounts are kept; every method may do I/O."""

    async def generation(self) -> str:
        """A token that changes whenever any account record changes ("" before any)."""
        ...

    async def load_all(self) -> tuple[AccountRecord, ...]:
        """Every runtime account, sorted by name."""
        ...

    async def get(self, name: str) -> AccountRecord | None: ...

    async def put(self, record: AccountRecord) -> None:
        """Write (create or replace) one account, durably, then bump the generation."""
        ...

    async def delete(self, name: str) -> None:
        """Remove one account (its keys with it), then bump the generation."""
        ...


def to_dict(record: AccountRecord) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "name": record.name,
        "created": iso(record.created),
        "admin": record.admin,
        "disabled": record.disabled,
        "keys": [
            {"access_key": k.access_key, "secret_key": k.secret_key, "created": iso(k.created)}
            for k in record.keys
        ],
        "policies": {name: text for name, text in record.policies},
    }


def from_dict(d: dict[str, Any]) -> AccountRecord:
    """An account record as stored; ValueError/KeyError/TypeError if damaged."""
    keys = tuple(
        KeyRecord(str(k["access_key"]), str(k["secret_key"]), parse_iso(str(k["created"])))
        for k in d.get("keys") or ()
    )
    policies = d.get("policies") or {}
    if not isinstance(policies, dict):
        raise TypeError("policies must be an object")
    return AccountRecord(
        name=str(d["name"]),
        created=parse_iso(str(d["created"])),
        admin=bool(d.get("admin")),
        disabled=bool(d.get("disabled")),
        keys=keys,
        policies=tuple(sorted((str(n), str(t)) for n, t in policies.items())),
    )


def valid_name(name: str) -> bool:
    return NAME_RE.fullmatch(name) is not None


class FileAccountStore:
    """`.accounts/users/{name}.json` and `.accounts/generation.json` under the data
    directory, each replaced atomically (temp file, fsync, rename, fsync of the folder)."""

    def __init__(self, root: str, tmp_dir: str) -> None:
        self.dir = os.path.join(root, ".accounts")
        self.users = os.path.join(self.dir, "users")
        self.tmp_dir = tmp_dir
        self._ready = False

    def _prepare(self) -> None:
        if not self._ready:
            os.makedirs(self.users, mode=0o700, exist_ok=True)
            os.chmod(self.dir, 0o700)
            os.chmod(self.users, 0o700)
            self._ready = True

    def _path(self, name: str) -> str:
        if not valid_name(name):
            raise ValueError(f"bad account name {name!r}")
        return os.path.join(self.users, name + ".json")

    async def generation(self) -> str:
        return await asyncio.to_thread(self._generation)

    def _generation(self) -> str:
        try:
            return str(read_json(os.path.join(self.dir, "generation.json"))["v"])
        except (FileNotFoundError, ValueError, KeyError, TypeError):
            return ""

    async def load_all(self) -> tuple[AccountRecord, ...]:
        return await asyncio.to_thread(self._load_all)

    def _load_all(self) -> tuple[AccountRecord, ...]:
        try:
            names = sorted(n[:-5] for n in os.listdir(self.users) if n.endswith(".json"))
        except FileNotFoundError:
            return ()
        out = []
        for name in names:
            record = self._get(name)
            if record is not None:
                out.append(record)
        return tuple(out)

    async def get(self, name: str) -> AccountRecord | None:
        return await asyncio.to_thread(self._get, name)

    def _get(self, name: str) -> AccountRecord | None:
        if not valid_name(name):
            return None
        try:
            return from_dict(read_json(self._path(name)))
        except FileNotFoundError:
            return None
        except (ValueError, KeyError, TypeError):
            return None  # damaged: an account that cannot be read signs nothing

    async def put(self, record: AccountRecord) -> None:
        await asyncio.to_thread(self._put, record)

    def _put(self, record: AccountRecord) -> None:
        self._prepare()
        write_json(self._path(record.name), to_dict(record), self.tmp_dir, 0o600)
        self._bump()

    async def delete(self, name: str) -> None:
        await asyncio.to_thread(self._delete, name)

    def _delete(self, name: str) -> None:
        self._prepare()
        with contextlib.suppress(ValueError):
            unlink_quiet(self._path(name))
        self._bump()

    def _bump(self) -> None:
        record = {"format": FORMAT, "v": secrets.token_hex(8)}
        write_json(os.path.join(self.dir, "generation.json"), record, self.tmp_dir)


def account_store(backend: Backend) -> AccountStore:
    """The store for `backend`'s mode: the data directory, or the drives' quorum."""
    from shoal.storage.filestore import FileStore

    if isinstance(backend, FileStore):  # (a standalone start imports no erasure code)
        root = os.path.abspath(backend.directory)
        return FileAccountStore(root, os.path.join(root, ".tmp"))
    from shoal.storage.erasure.store import ErasureStore

    if isinstance(backend, ErasureStore):
        from shoal.storage.erasure.accounts import ReplicatedAccountStore

        return ReplicatedAccountStore(backend.buckets)
    raise TypeError(f"no account store for {type(backend).__name__}")
