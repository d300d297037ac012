"""Membership: a newer view is made durable off the event loop, before it is used, and
views adopted concurrently leave the newest one on disk."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import pytest

from shoal.cluster.membership import Membership, View, ViewStore, form_view
from shoal.cluster.transport import Reply, Request

pytestmark = pytest.mark.anyio


class NoTransport:
    """Membership only registers handlers here in these tests."""

    def __init__(self) -> None:
        self.handlers: dict[str, Any] = {}

    def handle(self, name: str, handler: Any) -> None:
        self.handlers[name] = handler


class RecordingStore(ViewStore):
    """Remembers on which thread each save ran, and makes saves slow (a busy disk)."""

    def __init__(self, directory: str) -> None:
        super().__init__(directory)
        self.threads: list[threading.Thread] = []
        self.gate = threading.Event()

    def save(self, view: View) -> None:
        self.threads.append(threading.current_thread())
        self.gate.wait(5)
        super().save(view)


def membership(tmp_path: Path, store: ViewStore) -> tuple[Membership, NoTransport]:
    transport = NoTransport()
    m = Membership(
        transport,  # type: ignore[arg-type]
        store,
        node_id="a",
        address="127.0.0.1:1",
        drive_count=6,
        seeds=[],
        k=4,
        m=2,
        heartbeat_interval=1,
        heartbeat_timeout=3,
    )
    return m, transport


def bumped(view: View, version: int) -> View:
    grown = View.from_dict(view.to_dict())
    grown.version = version
    return grown


async def test_views_are_saved_off_the_loop_and_the_newest_wins(tmp_path: Path) -> None:
    store = RecordingStore(str(tmp_path))
    m, transport = membership(tmp_path, store)
    base = form_view([("a", "127.0.0.1:1", 6)], 4, 2)
    receive = transport.handlers["cluster.view"]
    # While a slow save runs, the loop goes on (here: this test's own polling).
    first = asyncio.ensure_future(
        receive(Request(method="cluster.view", body=b"", peer="b", args=bumped(base, 5).to_dict()))
    )
    second = asyncio.ensure_future(
        receive(Request(method="cluster.view", body=b"", peer="b", args=bumped(base, 9).to_dict()))
    )
    third = asyncio.ensure_future(
        receive(Request(method="cluster.view", body=b"", peer="b", args=bumped(base, 7).to_dict()))
    )
    while not store.threads:
        await asyncio.sleep(0.01)
    # Saved on the loop, the save would have blocked it until the gate timed out.
    assert m.view is None  # and not used before it is on disk
    store.gate.set()
    replies = await asyncio.gather(first, second, third)
    assert all(isinstance(r, Reply) for r in replies)
    assert all(t is not threading.main_thread() for t in store.threads)
    assert m.view is not None and m.view.version == 9
    assert ViewStore(str(tmp_path)).load().version == 9  # type: ignore[union-attr]
    assert len(store.threads) == 2  # version 7 came after 9: not newer, not saved
