"""What a call between nodes is made of: the request a handler gets and the reply it
returns, the errors `Transport.call` raises (cluster.transport's docstring says when), and
`answer`, which turns a handler's outcome into a response or error frame on either path a
call takes (a QUIC stream, or the bulk lane: cluster.bulk).

Apart from cluster.transport so that the parts split from it (cluster.handshake,
cluster.bulk) use these without importing it; cluster.transport re-exports them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from shoal.cluster import frames
from shoal.cluster.frames import Kind

log = logging.getLogger("shoal.cluster.transport")  # as before the split: same records


class RpcError(Exception):
    """The remote handler failed: `code` is its error code, `message` its explanation."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class PeerUnavailable(ConnectionError):
    """No answer: cannot connect, connection lost, timed out, or authentication refused."""


class AuthenticationFailed(PeerUnavailable):
    """One side could not prove it knows the cluster secret."""


@dataclass
class Request:
    method: str
    args: dict[str, Any]
    body: bytes
    peer: str  # the caller's node id, proven by the connection's authentication


@dataclass
class Reply:
    result: dict[str, Any]
    body: bytes = b""


Handler = Callable[[Request], Awaitable[Reply]]
#: Told of every call made: (method, seconds, body bytes sent, body bytes received).
CallObserver = Callable[[str, float, int, int], None]


async def answer(handler: Handler, request: Request) -> tuple[bytes, bytes | bytearray]:
    """The response frame's head and body for `request`, or an error frame's head."""
    try:
        reply = await handler(request)
        if not isinstance(reply, Reply):
            raise TypeError(f"handler returned {type(reply).__name__}, not Reply")
        body = reply.body
        return frames.encode_head(
            Kind.RESPONSE, {"result": reply.result}, frames.body_size(body)
        ), body
    except Exception as exc:
        code = getattr(exc, "code", None)
        if isinstance(code, str) and code:
            message = getattr(exc, "message", None) or str(exc)
        else:
            log.exception("handler for %s from %s failed", request.method, request.peer)
            code, message = "InternalError", f"{type(exc).__name__}: {exc}"
        return frames.error_head(code, str(message)), b""


def split_address(address: str) -> tuple[str, int]:
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"peer address must be host:port, got {address!r}")
    return host.strip("[]"), int(port)


def retrieve(task: asyncio.Task[Any]) -> None:
    """Done callback of a shared task: its failure counts as seen though no caller waits."""
    if not task.cancelled():
        task.exception()
