"""Runtime accounts in erasure and cluster modes: replicated records on every drive.

Each account is `system/accounts/{name}.json` and the change marker is
`system/accounts-generation.json`, written and read through the very quorum of bucket
records (ReplicatedRecords.read / write: a majority of the first pool's drives must take a
write, a reader takes the newest copy a read quorum holds), so an account is as durable
and as consistent as a bucket is, on every node. The drives write `system/` records mode
0600 (storage/erasure/drive.py: they hold secrets).
"""

from __future__ import annotations

import asyncio

from shoal.storage.accounts import AccountRecord, from_dict, to_dict, valid_name
from shoal.storage.erasure.buckets import ReplicatedRecords
from shoal.storage.erasure.quorum import fan_out

DIR = "system/accounts"
GENERATION = "system/accounts-generation.json"
#: Accounts read together when reloading them all (each is one quorum read).
READS_AT_ONCE = 16


class ReplicatedAccountStore:
    """The AccountStore of an ErasureStore (and so of a DistributedStore)."""

    def __init__(self, records: ReplicatedRecords) -> None:
        self.records = records

    @staticmethod
    def _path(name: str) -> str:
        if not valid_name(name):
            raise ValueError(f"bad account name {name!r}")
        return f"{DIR}/{name}.json"

    async def generation(self) -> str:
        record = await self.records.read(GENERATION, "accounts")
        return "" if record is None else str(record.get("v", ""))

    async def load_all(self) -> tuple[AccountRecord, ...]:
        names: set[str] = set()
        drives = self.records.doc_drives
        for listed in (await fan_out(drives, lambda d: d.list_dir(DIR))).values():
            names.update(n[:-5] for n in listed if n.endswith(".json"))
        limit = asyncio.Semaphore(READS_AT_ONCE)

        async def one(name: str) -> AccountRecord | None:
            async with limit:
                return await self.get(name)

        records = await asyncio.gather(*(one(n) for n in sorted(names)))
        return tuple(r for r in records if r is not None)

    async def get(self, name: str) -> AccountRecord | None:
        if not valid_name(name):
            return None
        record = await self.records.read(self._path(name), f"account {name}")
        if record is None:
            return None
        try:
            return from_dict(record)
        except (ValueError, KeyError, TypeError):
            return None  # damaged: an account that cannot be read signs nothing

    async def put(self, record: AccountRecord) -> None:
        await self.records.write(self._path(record.name), to_dict(record), "accounts")
        await self.records.write(GENERATION, {}, "accounts")

    async def delete(self, name: str) -> None:
        await self.records.write(self._path(name), None, "accounts")
        await self.records.write(GENERATION, {}, "accounts")
