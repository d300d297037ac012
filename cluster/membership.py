"""Who is in the cluster, where they are, which drives form which erasure sets, and
who is alive.

The cluster view (`View`) is versioned and persisted on every node
(`{storage.directory}/.cluster/view.json`), so a restarted node rejoins without its
seeds being up. A brand-new cluster is formed once every node named as a seed has
answered: the node with the smallest id forms the sets — drive 0 of every node, then
drive 1, ... (storage.erasure.layout.form_sets, the reference's interleaving) — and
pushes the view to the others; nobody guesses.

Joining a running cluster: a node with no view whose seed answers with one asks that
member to add it; the smallest id alive decides (others forward), one join at a time,
and pushes the new view — the newcomer's drives as new sets, a new pool (see
storage.erasure.versions.Placement) — to every member before answering.

Every node must hold the same kms keyring (shoal.sse.keyring): nodes exchange its
one-way fingerprint in hello and join. A new cluster is not formed while any seed's
keyring differs (each node logs which one, and forms once the odd node is restarted
with the same keys); a node joining or rejoining a formed cluster with another keyring
is refused (JoinRefused: the process stops) rather than seal data the others could not
open. The fingerprint reveals nothing of the keys.

Heartbeats: every node pings every other one each `heartbeat_interval_ms`. A peer not
heard from for two intervals is suspect; after `heartbeat_timeout_ms` it is offline —
but only while this node hears from a majority of the cluster (itself included), so
a node cut off on its own never declares the rest dead (split-brain rule).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from shoal.cluster.transport import PeerUnavailable, Reply, Request, RpcError, Transport
from shoal.storage.diskio import replace_atomically
from shoal.storage.erasure.layout import form_sets
from shoal.storage.threads import run

log = logging.getLogger("shoal.cluster")

VIEW_FORMAT = 1


class JoinRefused(Exception):
    """The cluster would not take this node in; the message says why."""


KEYRING_DIFFERS = "kms keyring differs from the cluster's"


def keyring_refusal(node: str, address: str) -> str:
    """Why a node refuses a peer whose keyring fingerprint differs (no key material)."""
    return (
        f"{KEYRING_DIFFERS}: node {node} at {address} holds other kms.keys; every node "
        "needs the same keys (ids and secrets)"
    )


@dataclass
class NodeInfo:
    node_id: str
    address: str  # QUIC host:port
    drives: list[str]  # drive ids, in the node's configured order


@dataclass
class View:
    """The agreed cluster: nodes, and erasure sets as (node id, drive id) pairs."""

    cluster_id: str
    version: int
    k: int
    m: int
    nodes: dict[str, NodeInfo]
    sets: list[list[tuple[str, str]]]
    pools: list[int] = field(default_factory=list)  # sets per pool: one pool per join

    def __post_init__(self) -> None:
        if not self.pools:
            self.pools = [len(self.sets)]

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": VIEW_FORMAT,
            "cluster_id": self.cluster_id,
            "version": self.version,
            "k": self.k,
            "m": self.m,
            "nodes": {n: asdict(info) for n, info in self.nodes.items()},
            "sets": [[list(member) for member in members] for members in self.sets],
            "pools": list(self.pools),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> View:
        return cls(
            cluster_id=str(d["cluster_id"]),
            version=int(d["version"]),
            k=int(d["k"]),
            m=int(d["m"]),
            nodes={n: NodeInfo(**info) for n, info in d["nodes"].items()},
            sets=[[(str(a), str(b)) for a, b in members] for members in d["sets"]],
            pools=[int(n) for n in d.get("pools", [])],
        )


def form_view(nodes: Sequence[tuple[str, str, int]], k: int, m: int) -> View:
    """A new cluster from (node id, address, drive count): drive ids are minted here."""
    ordered = sorted(nodes)
    infos = {
        node: NodeInfo(node, address, [str(uuid.uuid4()) for _ in range(count)])
        for node, address, count in ordered
    }
    placed = form_sets([(node, count) for node, _, count in ordered], k + m, data_shards=k)
    sets = [[(node, infos[node].drives[i]) for node, i in members] for members in placed]
    return View(str(uuid.uuid4()), 1, k, m, infos, sets)


def grow_view(view: View, node_id: str, address: str, drive_count: int) -> View:
    """The view with a joining node whose drives form new erasure sets of their own (a
    new pool): existing data stays where it is. ValueError if they cannot form sets."""
    info = NodeInfo(node_id, address, [str(uuid.uuid4()) for _ in range(drive_count)])
    try:
        placed = form_sets([(node_id, drive_count)], view.k + view.m, data_shards=view.k)
    except ValueError as exc:
        raise ValueError(
            f"node {node_id} cannot join: {exc} (a joining node brings whole erasure sets)"
        ) from None
    sets = [[(node_id, info.drives[i]) for _, i in members] for members in placed]
    return View(
        view.cluster_id,
        view.version + 1,
        view.k,
        view.m,
        {**view.nodes, node_id: info},
        view.sets + sets,
        [*view.pools, len(sets)],
    )


class ViewStore:
    """The view on this node's disk."""

    def __init__(self, directory: str) -> None:
        self.dir = os.path.join(directory, ".cluster")

    def load(self) -> View | None:
        try:
            with open(os.path.join(self.dir, "view.json"), "rb") as f:
                return View.from_dict(json.loads(f.read()))
        except FileNotFoundError:
            return None

    def save(self, view: View) -> None:
        os.makedirs(self.dir, exist_ok=True)
        data = json.dumps(view.to_dict(), indent=1).encode()
        replace_atomically(os.path.join(self.dir, "view.json"), data, self.dir)

    def node_id(self, configured: str | None) -> str:
        """The configured node id, else the one generated on first start."""
        if configured:
            return configured
        path = os.path.join(self.dir, "node-id")
        try:
            with open(path) as f:
                return f.read().strip()
        except FileNotFoundError:
            pass
        os.makedirs(self.dir, exist_ok=True)
        node = str(uuid.uuid4())
        replace_atomically(path, node.encode(), self.dir)
        return node


@dataclass
class Peer:
    node_id: str
    address: str
    state: str = "unknown"  # alive | suspect | offline | unknown
    last_seen: float | None = None  # monotonic
    last_seen_wall: float | None = None
    rtt_ms: float | None = None
    failures: int = 0
    since: float = field(default_factory=time.time)
    #: The peer's drives' space as it last reported it: name -> free_bytes, total_bytes.
    drives: dict[str, dict[str, int]] = field(default_factory=dict)


class Membership:
    """The cluster view plus each peer's liveness, for this node."""

    def __init__(
        self,
        transport: Transport,
        store: ViewStore,
        *,
        node_id: str,
        address: str,
        drive_count: int,
        seeds: Sequence[str],
        k: int,
        m: int,
        heartbeat_interval: float,
        heartbeat_timeout: float,
        keyring_fingerprint: str = "",
    ) -> None:
        self.transport = transport
        #: Keyring.fingerprint() of this node's kms keyring, compared with every peer's.
        self.keyring = keyring_fingerprint
        self._keyring_warned: set[tuple[str, str]] = set()
        self.store = store
        self.node_id = node_id
        self.address = address
        self.drive_count = drive_count
        self.seeds = [s for s in seeds if s != address]
        self.k, self.m = k, m
        self.interval = heartbeat_interval
        self.timeout = heartbeat_timeout
        self.view: View | None = store.load()
        self.peers: dict[str, Peer] = {}
        self._adopted = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._join_lock = asyncio.Lock()
        self._adopting = asyncio.Lock()
        self._announcing: asyncio.Task[None] | None = None
        #: Called with each newer view adopted (the store takes in new sets).
        self.on_view: Callable[[View], None] | None = None
        #: Called with a peer's id when it answers again after being suspect or offline.
        self.on_peer_back: Callable[[str], None] | None = None
        #: Measures this node's drives' space (blocking: run in a thread, one at a time,
        #: every heartbeat); what it last found goes out with every heartbeat answer, so
        #: each node can show every drive's free space.
        self.drive_space: Callable[[], dict[str, dict[str, int]]] | None = None
        self._space: dict[str, dict[str, int]] = {}
        self._measuring: asyncio.Task[None] | None = None
        transport.handle("cluster.hello", self._hello)
        transport.handle("cluster.join", self._join)
        transport.handle("cluster.view", self._receive_view)
        transport.handle("cluster.ping", self._ping)
        if self.view is not None:
            self._adopted.set()
            self._refresh_peers()

    # -- formation ---------------------------------------------------------------------

    async def join(self, deadline: float = 600.0) -> View:
        """The view: persisted, else received, else formed with the seeds."""
        started = time.monotonic()
        if self.view is not None:  # a restart: the members that answer must agree
            others = [i.address for n, i in self.view.nodes.items() if n != self.node_id]
            self._check_keyrings(await self._ask_hello(others))
        while self.view is None:
            if time.monotonic() - started > deadline:
                raise TimeoutError("cluster formation: seeds did not all answer")
            infos = await self._ask_seeds()
            self._check_keyrings([i for i in infos if i.get("view")])
            differing = [i for i in infos if i.get("keyring", "") != self.keyring]
            if self.view is not None:
                break
            known = [View.from_dict(i["view"]) for i in infos if i.get("view")]
            if known:
                view = max(known, key=lambda v: v.version)
                if self.node_id in view.nodes:
                    await self._adopt(view)
                    break
                try:
                    await self._adopt(
                        await self._ask_to_join([i["address"] for i in infos if i.get("view")])
                    )
                    break
                except PeerUnavailable as exc:
                    log.warning("joining: %s; retrying", exc)
            elif differing:  # not forming a cluster whose nodes could not read each other
                self._warn_keyrings(differing)
            elif len(infos) == len(self.seeds):
                everyone = [(self.node_id, self.address, self.drive_count)]
                everyone += [(i["node_id"], i["address"], int(i["drives"])) for i in infos]
                if min(everyone)[0] == self.node_id:
                    view = form_view(everyone, self.k, self.m)
                    await self._adopt(view)
                    await self._push(view)
                    log.info("formed cluster %s with %d nodes", view.cluster_id, len(everyone))
                    break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._adopted.wait(), 0.5)
        assert self.view is not None
        mine = self.view.nodes.get(self.node_id)
        if mine is not None and mine.address != self.address:
            self._announcing = asyncio.get_running_loop().create_task(self._announce())
        return self.view

    async def _announce(self) -> None:
        """This node is back at another address: have the view say so (a join of a
        member updates its address), so the others reach it there."""
        while True:
            assert self.view is not None
            others = [i.address for n, i in self.view.nodes.items() if n != self.node_id]
            try:
                await self._adopt(await self._ask_to_join(others))
                log.info("the cluster now reaches this node at %s", self.address)
                return
            except (PeerUnavailable, JoinRefused) as exc:
                log.warning("announcing the new address %s: %s", self.address, exc)
            await asyncio.sleep(1.0)

    async def _ask_seeds(self) -> list[dict[str, Any]]:
        return await self._ask_hello(self.seeds)

    async def _ask_hello(self, addresses: Sequence[str]) -> list[dict[str, Any]]:
        async def one(address: str) -> dict[str, Any] | None:
            try:
                return (await self.transport.call(address, "cluster.hello", {}, timeout=2)).result
            except (PeerUnavailable, RpcError):
                return None

        answers = await asyncio.gather(*(one(a) for a in addresses))
        return [a for a in answers if a is not None]

    def _warn_keyrings(self, infos: Sequence[dict[str, Any]]) -> None:
        """Log (once per peer and keyring) that these seeds hold another keyring."""
        for info in infos:
            seen = (str(info.get("node_id")), str(info.get("keyring")))
            if seen not in self._keyring_warned:
                self._keyring_warned.add(seen)
                message = keyring_refusal(seen[0], str(info.get("address")))
                log.error("not forming the cluster: %s", message)

    def _check_keyrings(self, infos: Sequence[dict[str, Any]]) -> None:
        """JoinRefused if any member of a formed cluster that answered holds another
        kms keyring."""
        for info in infos:
            if info.get("keyring", "") != self.keyring:
                message = keyring_refusal(str(info.get("node_id")), str(info.get("address")))
                log.error("refusing to join the cluster: %s", message)
                raise JoinRefused(message)

    async def _ask_to_join(self, members: list[str]) -> View:
        """Runtime join: a member adds this node to the view (see _join)."""
        args = {
            "node_id": self.node_id,
            "address": self.address,
            "drives": self.drive_count,
            "keyring": self.keyring,
        }
        for address in members:
            try:
                reply = await self.transport.call(address, "cluster.join", args, timeout=30)
            except PeerUnavailable:
                continue
            except RpcError as exc:
                if exc.code in ("NotFormed", "Unavailable"):
                    continue  # asked again in a moment
                raise JoinRefused(exc.message) from None
            log.info("joined cluster through %s", address)
            return View.from_dict(reply.result["view"])
        raise PeerUnavailable(f"no member answered the join request: {members}")

    async def _join(self, request: Request) -> Reply:
        """A node asks to join. The member with the smallest id among those alive
        decides (one at a time, so two joins never mint the same view version); the
        others forward to it. The new view goes to every member before the answer."""
        view = self.view
        if view is None:
            raise RpcError("NotFormed", "this node is not a member of a formed cluster yet")
        args = request.args
        if args.get("keyring", "") != self.keyring:
            message = keyring_refusal(str(args.get("node_id")), str(args.get("address")))
            log.error("refusing a join: %s", message)
            raise RpcError("KeyringMismatch", message)
        leader = self.leader()
        if leader != self.node_id and not args.get("forwarded"):
            address = view.nodes[leader].address
            try:
                reply = await self.transport.call(
                    address, "cluster.join", {**args, "forwarded": True}, timeout=25
                )
            except PeerUnavailable as exc:
                raise RpcError("Unavailable", f"{leader} decides joins: {exc}") from None
            return Reply(reply.result)
        node, address = str(args["node_id"]), str(args["address"])
        if not args.get("forwarded") and node != request.peer:
            raise RpcError("AccessDenied", f"node {request.peer} asked to join as {node}")
        async with self._join_lock:
            current = self.view
            assert current is not None
            if node in current.nodes:
                if current.nodes[node].address == address:
                    return Reply({"view": current.to_dict()})
                grown = View.from_dict(current.to_dict())
                grown.version += 1
                grown.nodes[node].address = address
            else:
                try:
                    grown = grow_view(current, node, address, int(args["drives"]))
                except ValueError as exc:
                    raise RpcError("JoinRefused", str(exc)) from None
            await self._adopt(grown)
            await self._push(grown)
            log.info("node %s joined at %s (view version %d)", node, address, grown.version)
            return Reply({"view": grown.to_dict()})

    async def _push(self, view: View) -> None:
        async def one(address: str) -> None:
            with contextlib.suppress(PeerUnavailable, RpcError):
                await self.transport.call(address, "cluster.view", view.to_dict())

        await asyncio.gather(
            *(one(info.address) for node, info in view.nodes.items() if node != self.node_id)
        )

    async def _adopt(self, view: View) -> None:
        """Take `view` if it is newer: on disk (fsynced, on a worker thread: never on the
        event loop) before anyone here acts on it. One at a time, so the file always
        holds the newest view adopted."""
        async with self._adopting:
            if self.view is not None and (
                view.cluster_id != self.view.cluster_id or view.version <= self.view.version
            ):
                return
            await run(self.store.save, view)
            self.view = view
            self._refresh_peers()
            self._adopted.set()
            if self.on_view is not None:
                self.on_view(view)

    def _refresh_peers(self) -> None:
        assert self.view is not None
        for node, info in self.view.nodes.items():
            if node == self.node_id:
                continue
            peer = self.peers.get(node)
            if peer is None:
                self.peers[node] = Peer(node, info.address)
            else:
                peer.address = info.address

    async def _hello(self, request: Request) -> Reply:
        return Reply(
            {
                "node_id": self.node_id,
                "address": self.address,
                "drives": self.drive_count,
                "view": self.view.to_dict() if self.view else None,
                "keyring": self.keyring,
            }
        )

    async def _receive_view(self, request: Request) -> Reply:
        await self._adopt(View.from_dict(request.args))
        self._called_by(request.peer)
        return Reply({"version": self.view.version if self.view else 0})

    # -- heartbeats ----------------------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._heartbeats())

    async def stop(self) -> None:
        for task in (self._task, self._announcing, self._measuring):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    async def _ping(self, request: Request) -> Reply:
        peer = self._called_by(request.peer)
        if peer is not None:
            self._heard(peer)
        return Reply(
            {
                "node_id": self.node_id,
                "view_version": self.view.version if self.view else 0,
                "drives": self._space,
            }
        )

    def _called_by(self, node: str) -> Peer | None:
        """A member called: calls to it need not wait out a failed connect's backoff."""
        peer = self.peers.get(node)
        if peer is not None:
            self.transport.forgive(peer.address)
        return peer

    def _heard(self, peer: Peer, rtt: float | None = None) -> None:
        back = peer.state in ("suspect", "offline")
        if peer.state != "alive":
            log.info("node %s is alive", peer.node_id)
            peer.since = time.time()
        peer.state, peer.failures = "alive", 0
        if back and self.on_peer_back is not None:
            self.on_peer_back(peer.node_id)
        peer.last_seen, peer.last_seen_wall = time.monotonic(), time.time()
        if rtt is not None:
            peer.rtt_ms = rtt * 1000

    def _measure_space(self) -> None:
        """Start measuring this node's drives' space unless a measurement still runs (a
        hung drive holds one thread, never the loop or a pile of threads)."""
        if self.drive_space is None or (self._measuring and not self._measuring.done()):
            return
        measure = self.drive_space

        async def run() -> None:
            with contextlib.suppress(OSError):
                self._space = await asyncio.to_thread(measure)

        self._measuring = asyncio.get_running_loop().create_task(run())

    async def _heartbeats(self) -> None:
        while True:
            self._measure_space()
            await asyncio.gather(*(self._ping_one(p) for p in list(self.peers.values())))
            self._judge()
            await asyncio.sleep(self.interval)

    async def _ping_one(self, peer: Peer) -> None:
        started = time.monotonic()
        try:
            reply = await self.transport.call(
                peer.address, "cluster.ping", {}, timeout=max(self.interval, 0.5)
            )
        except (PeerUnavailable, RpcError):
            peer.failures += 1
            return
        self._heard(peer, time.monotonic() - started)
        drives = reply.result.get("drives")
        if isinstance(drives, dict):
            peer.drives = drives
        if self.view is not None and int(reply.result.get("view_version", 0)) < self.view.version:
            with contextlib.suppress(PeerUnavailable, RpcError):
                await self.transport.call(peer.address, "cluster.view", self.view.to_dict())

    def _judge(self) -> None:
        now = time.monotonic()
        total = len(self.peers) + 1
        heard = 1 + sum(
            1
            for p in self.peers.values()
            if p.last_seen is not None and now - p.last_seen < self.timeout
        )
        majority = heard > total // 2
        for peer in self.peers.values():
            silent = now - peer.last_seen if peer.last_seen is not None else float("inf")
            if silent < 2 * self.interval:
                continue
            state = "offline" if silent >= self.timeout and majority else "suspect"
            if state != peer.state:
                log.warning("node %s is %s (silent %.1fs)", peer.node_id, state, silent)
                peer.state, peer.since = state, time.time()

    def leader(self) -> str:
        """The node that decides joins and runs catch-up healing: the smallest id
        among the members this node does not consider offline."""
        members = self.view.nodes if self.view is not None else {}
        return min([n for n in members if self.reachable(n)] + [self.node_id])

    def reachable(self, node_id: str) -> bool:
        """False only for a peer this node has declared offline."""
        peer = self.peers.get(node_id)
        return peer is None or peer.state != "offline"

    def status(self) -> list[dict[str, Any]]:
        nodes = [
            {
                "node_id": self.node_id,
                "address": self.address,
                "state": "alive",
                "self": True,
                "last_heartbeat": time.time(),
                "rtt_ms": 0.0,
                "drives": self._space,
            }
        ]
        for peer in self.peers.values():
            nodes.append(
                {
                    "node_id": peer.node_id,
                    "address": peer.address,
                    "state": peer.state,
                    "self": False,
                    "last_heartbeat": peer.last_seen_wall,
                    "rtt_ms": peer.rtt_ms,
                    "since": peer.since,
                    "drives": peer.drives,
                }
            )
        return nodes
