"""The standalone store of runtime accounts (storage/accounts.py): records round-trip,
secret-bearing files are mode 0600 in a 0700 folder, the generation token moves with
every change, a damaged record signs nothing, and a damaged policy allows nothing."""

from __future__ import annotations

import asyncio
import os
import stat
from datetime import UTC, datetime
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from shoal.app.runtimeaccounts import DENY_ALL, identity_policy, snapshot
from shoal.auth.accounts import Accounts, AccountSpec
from shoal.storage.accounts import (
    AccountRecord,
    FileAccountStore,
    KeyRecord,
    from_dict,
    to_dict,
)

T0 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def store(tmp_path: Path) -> FileAccountStore:
    (tmp_path / ".tmp").mkdir(exist_ok=True)
    return FileAccountStore(str(tmp_path), str(tmp_path / ".tmp"))


def test_records_round_trip_with_mode_0600(tmp_path: Path) -> None:
    s = store(tmp_path)
    record = AccountRecord(
        "alice", T0, admin=True, keys=(KeyRecord("SKA", "secret", T0),), policies=(("p", "{}"),)
    )

    async def scenario() -> None:
        assert await s.generation() == ""
        await s.put(record)
        first = await s.generation()
        assert first and await s.get("alice") == record
        assert await s.load_all() == (record,)
        await s.delete("alice")
        assert await s.generation() not in ("", first)
        assert await s.get("alice") is None and await s.load_all() == ()

    asyncio.run(scenario())
    assert stat.S_IMODE(os.stat(tmp_path / ".accounts").st_mode) == 0o700
    assert stat.S_IMODE(os.stat(tmp_path / ".accounts" / "users").st_mode) == 0o700


def test_the_record_file_is_0600(tmp_path: Path) -> None:
    s = store(tmp_path)
    asyncio.run(s.put(AccountRecord("bob", T0, keys=(KeyRecord("SKB", "secret", T0),))))
    path = tmp_path / ".accounts" / "users" / "bob.json"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


def test_a_damaged_record_is_no_account(tmp_path: Path) -> None:
    s = store(tmp_path)
    asyncio.run(s.put(AccountRecord("carol", T0)))
    (tmp_path / ".accounts" / "users" / "carol.json").write_text('{"name": "carol"')
    assert asyncio.run(s.get("carol")) is None
    assert asyncio.run(s.get("../escape")) is None


names = st.from_regex(r"[A-Za-z0-9+=,.@_-]{1,64}", fullmatch=True)
text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=40)


@given(
    names,
    st.booleans(),
    st.booleans(),
    st.lists(st.tuples(names, text), max_size=3),
    st.dictionaries(names, text, max_size=3),
)
def test_to_dict_and_back_is_identity(
    name: str, admin: bool, disabled: bool, keys: list[tuple[str, str]], policies: dict[str, str]
) -> None:
    record = AccountRecord(
        name,
        T0,
        admin,
        disabled,
        tuple(KeyRecord(k, s, T0) for k, s in keys),
        tuple(sorted(policies.items())),
    )
    assert from_dict(to_dict(record)) == record


def test_an_unreadable_policy_allows_nothing() -> None:
    record = AccountRecord("dave", T0, policies=(("bad", "{not json"),))
    assert identity_policy(record) is DENY_ALL
    accounts = Accounts.build([AccountSpec("admin")])
    runtime = snapshot((record,), accounts)
    assert runtime.by_id[next(iter(runtime.by_id))].policy is DENY_ALL
