"""LingeringTransport's cork (app/protocol.py): small writes made in one turn of the event
loop reach the socket's transport as one write, in order, and nothing is held past the
turn, a close, or CORK_MAX."""

from __future__ import annotations

import asyncio
from typing import Any

from shoal.app.protocol import CORK_MAX, LingeringTransport


class Recording(asyncio.Transport):
    """The socket's side: what reached it, in order."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[str, Any]] = []
        self.closing = False

    def write(self, data: Any) -> None:
        self.calls.append(("write", bytes(data)))

    def writelines(self, list_of_data: Any) -> None:
        self.calls.append(("writelines", b"".join(list_of_data)))

    def close(self) -> None:
        self.calls.append(("close", None))
        self.closing = True

    def abort(self) -> None:
        self.calls.append(("abort", None))
        self.closing = True

    def is_closing(self) -> bool:
        return self.closing

    def get_write_buffer_size(self) -> int:
        return 0


class Connection:
    """The protocol's side LingeringTransport asks: no request in progress."""

    lingering = False

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop

    def mid_request(self) -> bool:
        return False


def run(scenario: Any) -> list[tuple[str, Any]]:
    async def main() -> list[tuple[str, Any]]:
        inner = Recording()
        await scenario(LingeringTransport(inner, Connection(asyncio.get_running_loop())), inner)
        return inner.calls

    return asyncio.run(main())


def test_a_head_and_a_small_body_leave_together_at_the_end_of_the_turn() -> None:
    async def scenario(t: LingeringTransport, inner: Recording) -> None:
        t.write(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n")
        t.write(b"hello")
        assert inner.calls == [] and t.get_write_buffer_size() == 43
        await asyncio.sleep(0)

    assert run(scenario) == [("write", b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello")]


def test_a_large_or_mutable_write_goes_at_once_after_what_waits() -> None:
    big = b"x" * (CORK_MAX + 1)

    async def scenario(t: LingeringTransport, inner: Recording) -> None:
        t.write(b"head")
        t.write(big)
        t.write(b"a")
        buffer = bytearray(b"b")
        t.write(buffer)
        buffer[0] = ord("c")  # a caller may reuse its buffer once write() returns
        assert inner.calls == [("write", b"head"), ("write", big), ("write", b"a"), ("write", b"b")]

    run(scenario)


def test_small_writes_past_cork_max_in_all_go_at_once() -> None:
    piece = b"y" * (CORK_MAX // 2)

    async def scenario(t: LingeringTransport, inner: Recording) -> None:
        t.write(piece)
        t.write(piece)
        assert inner.calls == []
        t.write(b"z")
        assert inner.calls == [("write", piece + piece + b"z")]
        assert t.get_write_buffer_size() == 0

    run(scenario)


def test_close_sends_what_waits_first_and_abort_drops_it() -> None:
    async def closing(t: LingeringTransport, inner: Recording) -> None:
        t.write(b"answer")
        t.close()
        await asyncio.sleep(0)

    async def aborting(t: LingeringTransport, inner: Recording) -> None:
        t.write(b"answer")
        t.abort()
        await asyncio.sleep(0)

    assert run(closing) == [("write", b"answer"), ("close", None)]
    assert run(aborting) == [("abort", None)]
