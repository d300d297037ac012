"""A Transport's side of the bulk lane (cluster.lane): the lane server it offers, the
lanes its peers offered (asked once per client QUIC connection), and per peer address the
path its bulk calls took (`PayloadCounts`, in `Transport.status()`).

Apart from cluster.transport, which hands it bulk calls and tells it of connections coming
and going, so the QUIC connection code reads on its own; what it needs of a connection is
the `Connection` protocol below.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Protocol

from shoal.cluster import frames, lane
from shoal.cluster.frames import Frame
from shoal.cluster.lane import LaneError, LanePool, LaneServer
from shoal.cluster.rpc import (
    PeerUnavailable,
    Reply,
    Request,
    RpcError,
    answer,
    retrieve,
    split_address,
)

if TYPE_CHECKING:
    from shoal.cluster.transport import Transport

log = logging.getLogger("shoal.cluster.transport")  # as before the split: same records

LANE_OFFER = "_lane.offer"


class _LaneUnavailable(Exception):
    """Refuses a lane offer: this node's lane is not listening."""

    code = "LaneUnavailable"


@dataclass
class PayloadCounts:
    """Bulk calls to one address and their body bytes (both ways), by the path taken."""

    lane_calls: int = 0
    lane_bytes: int = 0
    quic_calls: int = 0
    quic_bytes: int = 0


class Connection(Protocol):
    """What the lanes need of a client QUIC connection (cluster.transport)."""

    address: str
    closed: PeerUnavailable | None

    async def request(self, head: bytes, body: bytes | bytearray | memoryview) -> Frame:
        """Send one request frame and wait for its response or error frame."""
        ...

    async def rpc(self, method: str, args: dict[str, Any]) -> dict[str, Any]:
        """Call `method` on the peer over this connection: its result, or RpcError."""
        ...


class Lanes:
    """A Transport's bulk lane side (cluster.lane): the lane server it offers, the lanes
    its peers offered (one per client QUIC connection, asked once), and per peer address
    the path its bulk calls took."""

    def __init__(self, owner: Transport, key: bytes) -> None:
        self._owner = owner
        self._key = key
        self.server: LaneServer | None = None
        #: The TCP port offered: the lane server's, 0 without one.
        self.port = 0
        self._offers: dict[Connection, asyncio.Task[LanePool | None] | LanePool | None] = {}
        self._warming: set[asyncio.Task[None]] = set()
        self.counts: dict[str, PayloadCounts] = {}

    async def start(self, cert: str, key: str) -> None:
        """The bulk lane listens on the QUIC address and port number, over TCP; if that
        is taken the node runs without it (its peers send it shards over QUIC)."""
        owner = self._owner
        server = LaneServer(
            node_id=owner.node_id,
            key=self._key,
            dispatch=self.dispatch,
            context=lane.server_context(cert, key),
            fingerprint=owner.certificate_fingerprint,
            auth_timeout=2 * owner.connect_timeout,
        )
        try:
            await server.start(owner.host, owner.port)
        except OSError as exc:
            log.warning(
                "bulk lane cannot listen on TCP %s:%d (%s): shard payloads to this node "
                "go over QUIC",
                owner.host,
                owner.port,
                exc,
            )
            return
        self.server = server
        self.port = server.port

    async def stop(self) -> None:
        for warming in list(self._warming):
            warming.cancel()
        for entry in self._offers.values():
            if isinstance(entry, LanePool):
                entry.close()
            elif isinstance(entry, asyncio.Task):
                entry.cancel()
        self._offers.clear()
        if self.server is not None:
            await self.server.stop()
            self.server = None
            self.port = 0

    def connected(self, conn: Connection, address: str) -> None:
        """A client QUIC connection is up: ask for its peer's lane and warm it."""
        warming = asyncio.get_running_loop().create_task(self._warm(conn, address))
        self._warming.add(warming)
        warming.add_done_callback(self._warming.discard)

    def forget(self, conn: Connection) -> None:
        """The QUIC connection is gone, and the lane offered on it with it."""
        entry = self._offers.pop(conn, None)
        if isinstance(entry, LanePool):
            entry.close()
        elif isinstance(entry, asyncio.Task):
            entry.cancel()

    async def request(
        self, conn: Connection, address: str, head: bytes, body: bytes | bytearray
    ) -> Frame:
        """Over the peer's lane if it offers one; over QUIC if not, or if the lane failed
        before any of the request went out. PeerUnavailable if it failed after."""
        counts = self.counts.setdefault(address, PayloadCounts())
        pool = await self._lane(conn, address) if self._owner.bulk_lane else None
        if pool is not None:
            try:
                frame = await pool.call(head, body)
            except LaneError as exc:
                if exc.sent:
                    raise PeerUnavailable(f"{address}: bulk lane failed mid-call: {exc}") from None
                log.debug("bulk lane to %s not used: %s", address, exc)
            else:
                counts.lane_calls += 1
                counts.lane_bytes += frames.body_size(body) + len(frame.body)
                return frame
        frame = await conn.request(head, body)
        counts.quic_calls += 1
        counts.quic_bytes += frames.body_size(body) + len(frame.body)
        return frame

    async def _lane(self, conn: Connection, address: str) -> LanePool | None:
        """The lane `conn`'s peer offered (asked once per connection), if usable now."""
        entry = self._offers.get(conn)
        if entry is None and conn not in self._offers:
            entry = asyncio.get_running_loop().create_task(self._ask(conn, address))
            entry.add_done_callback(retrieve)
            self._offers[conn] = entry
        if isinstance(entry, asyncio.Task):
            try:
                entry = await asyncio.shield(entry)
            except asyncio.CancelledError:
                if entry.cancelled():
                    return None  # the connection went while asking
                raise
        return entry if entry is not None and entry.usable() else None

    async def _warm(self, conn: Connection, address: str) -> None:
        """Ask for the lane and open a connection as soon as the QUIC connection is up:
        the first shard calls then find it ready."""
        pool = await self._lane(conn, address)
        if pool is not None:
            await pool.warm()

    async def _ask(self, conn: Connection, address: str) -> LanePool | None:
        pool: LanePool | None = None
        try:
            offer = await conn.rpc(LANE_OFFER, {})
            if offer.get("version") != lane.VERSION:
                raise ValueError(f"lane version {offer.get('version')!r}")
            pool = LanePool(
                host=split_address(address)[0],
                port=int(offer["port"]),
                fingerprint=bytes.fromhex(str(offer["fingerprint"])).hex(),
                node_id=self._owner.node_id,
                key=self._key,
                connect_timeout=self._owner.connect_timeout,
            )
        except RpcError as exc:  # an older node (UnknownMethod), or no lane there
            log.info("%s offers no bulk lane (%s): shard payloads go over QUIC", address, exc)
        except (KeyError, ValueError, TypeError) as exc:
            log.warning("%s made an unusable bulk lane offer (%s): using QUIC", address, exc)
        except PeerUnavailable:
            pass  # the connection is gone: the call fails on it too
        if conn.closed is not None or self._offers.get(conn) is not asyncio.current_task():
            if pool is not None:
                pool.close()
            return None
        self._offers[conn] = pool
        return pool

    async def offer(self, request: Request) -> Reply:
        if self.server is None or not self.port:
            raise _LaneUnavailable("this node has no bulk lane")
        return Reply(
            {
                "version": lane.VERSION,
                "port": self.port,
                "fingerprint": self.server.fingerprint,
            }
        )

    async def dispatch(
        self, method: str, args: dict[str, Any], body: bytes, peer: str
    ) -> tuple[bytes, bytes | bytearray]:
        handler = self._owner.handler_for(method)
        if handler is None:
            return frames.error_head("UnknownMethod", f"no handler for {method!r}"), b""
        return await answer(handler, Request(method, args, body, peer))

    def status(self) -> dict[str, Any]:
        peers: dict[str, Any] = {}
        for address, counts in self.counts.items():
            peers[address] = {"lane": "none", **asdict(counts)}
        for conn, entry in self._offers.items():
            if conn.address in peers and isinstance(entry, LanePool):
                peers[conn.address]["lane"] = entry.state
        return {"lane_port": self.port or None, "peers": peers}
