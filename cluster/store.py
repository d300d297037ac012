"""DistributedStore: the erasure-coded store over the drives of several nodes.

Everything about objects — chunking, quorum writes and reads, versions, healing — is
the single-node ErasureStore's; what changes is where the drives are. The erasure sets
come from the cluster view (cluster.membership) and mix this node's LocalDrives with
RemoteDrives reached over QUIC (cluster.drive_rpc); this node serves its own drives to
the others. Any node can coordinate any request.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

from shoal.cluster.drive_rpc import DriveService, RemoteDrive
from shoal.cluster.membership import Membership, View, ViewStore
from shoal.cluster.transport import Reply, Request, Transport
from shoal.storage.erasure.drive import Drive, LocalDrive
from shoal.storage.erasure.layout import Layout, LayoutError, format_record, parse_format
from shoal.storage.erasure.store import ErasureStore

log = logging.getLogger("shoal.cluster")


class DistributedStore(ErasureStore):
    exclusive_drives = False

    def __init__(
        self,
        paths: Sequence[str],
        *,
        state_dir: str,
        secret: str,
        host: str,
        port: int,
        advertise: str,
        seeds: Sequence[str],
        heartbeat_interval: float,
        heartbeat_timeout: float,
        max_datagram_size: int | None = None,
        keyring_fingerprint: str = "",
        **erasure: Any,
    ) -> None:
        super().__init__(paths, **erasure)
        self.state_dir = state_dir
        self.views = ViewStore(state_dir)
        self.node_id = self.views.node_id(self.node_id)
        options: dict[str, Any] = {}
        if max_datagram_size is not None:
            options["max_datagram_size"] = max_datagram_size
        self.transport = Transport(
            node_id=self.node_id,
            secret=secret,
            host=host,
            port=port,
            state_dir=self.views.dir,
            rpc_timeout=self.drive_timeout,
            **options,
        )
        self._advertise = advertise
        self._seeds = list(seeds)
        self._heartbeat = (heartbeat_interval, heartbeat_timeout)
        self._keyring = keyring_fingerprint  # every node must hold the same kms keyring
        self.membership: Membership | None = None
        self._remotes: defaultdict[str, list[RemoteDrive]] = defaultdict(list)  # by node

    async def open(self) -> None:
        self.transport.expect_handlers()  # (until the drive service below is registered)
        self.transport.on_connected = self._reached
        await self.transport.start()
        host = self._advertise or "127.0.0.1"
        self.membership = Membership(
            self.transport,
            self.views,
            node_id=self.node_id,
            address=f"{host}:{self.transport.port}",
            drive_count=len(self.paths),
            seeds=self._seeds,
            k=self.k,
            m=self.m,
            heartbeat_interval=self._heartbeat[0],
            heartbeat_timeout=self._heartbeat[1],
            keyring_fingerprint=self._keyring,
        )
        self.membership.start()
        await self.membership.join()
        await super().open()
        local = {
            drive_id: drive
            for members, ids in zip(self.sets, self.layout.drive_ids, strict=True)  # type: ignore[union-attr]
            for drive, drive_id in zip(members, ids, strict=True)
            if not isinstance(drive.inner, RemoteDrive)
        }
        DriveService(self.transport, local)
        # Named as the other nodes name these drives (_remote), for their drive tables.
        folders = {
            f"{self.node_id}:{drive_id[:8]}": drive.inner.path
            for drive_id, drive in local.items()
            if isinstance(drive.inner, LocalDrive)
        }
        self.membership.drive_space = lambda: drive_space(folders)
        self.transport.handle("store.busy", self._serve_busy)
        self.transport.handle("store.forget_bucket", self._serve_forget_bucket)
        self.transport.serving()
        self.membership.on_view = self._view_changed
        self.membership.on_peer_back = self._peer_back
        self._view_changed(self.membership.view)  # one adopted while the drives opened

    def _view_changed(self, view: View | None) -> None:
        """Nodes joined: take in the erasure sets their drives form (new pools). A node
        that came back at another address is reached there."""
        if view is None or self.layout is None:
            return
        for node, remotes in self._remotes.items():
            for remote in remotes:
                remote.address = view.nodes[node].address
        if len(view.sets) <= len(self.sets):
            return
        new = view.sets[len(self.sets) :]
        self.layout.drive_ids += [[d for _, d in members] for members in new]
        self.add_sets(
            [[(self._remote(view, node, d), d, True) for node, d in members] for members in new],
            view.pools[len(self.pools) :],
        )
        self._drive_returned()  # the new drives need the buckets and their records
        log.info(
            "cluster view %d: now %d erasure sets in %d pools",
            view.version,
            len(self.sets),
            len(self.pools),
        )

    # -- what the other nodes must hear about -------------------------------------------

    async def _ask_peers(self, method: str, args: dict[str, Any]) -> list[Reply | None]:
        """Ask every other node this one does not hold offline; one item each: its
        answer, or None if it gave none within a couple of seconds."""
        membership = self.membership
        if membership is None or membership.view is None:
            return []
        addresses = [
            info.address
            for node, info in membership.view.nodes.items()
            if node != self.node_id and membership.reachable(node)
        ]
        replies = await asyncio.gather(
            *(self.transport.call(a, method, args, timeout=2.0) for a in addresses),
            return_exceptions=True,
        )
        for r in replies:
            if isinstance(r, BaseException) and not isinstance(r, Exception):
                raise r
        return [r if isinstance(r, Reply) else None for r in replies]

    async def in_use(self, bucket: str, key: str, vid: str) -> bool:
        """A version replaced through this node may be streaming to a client of another.
        A node that is up but did not answer (busy, on a loaded machine) may be one of
        them: its silence counts as "in use", so the caller asks again later rather than
        deleting shards under a reader's feet."""
        if self.busy(bucket, key, vid):
            return True
        replies = await self._ask_peers("store.busy", {"bucket": bucket, "key": key, "vid": vid})
        return any(r is None or r.result.get("busy") for r in replies)

    async def _serve_busy(self, request: Request) -> Reply:
        args = request.args
        return Reply({"busy": self.busy(str(args["bucket"]), str(args["key"]), str(args["vid"]))})

    async def bucket_changed(self, bucket: str) -> None:
        """The others stop trusting what they saw of it: that it exists (writes would
        otherwise get into a deleted bucket for a moment), its versioning state."""
        await self._ask_peers("store.forget_bucket", {"bucket": bucket})

    async def _serve_forget_bucket(self, request: Request) -> Reply:
        self.buckets.forget(str(request.args["bucket"]))
        return Reply({})

    def _peer_back(self, node: str) -> None:
        """A node answers again after silence: it missed what was written meanwhile."""
        view = self.membership.view if self.membership is not None else None
        if view is not None and node in view.nodes:
            self._reached(view.nodes[node].address)
        self._drive_returned()

    def _reached(self, address: str) -> None:
        """A node's drives that went offline while it could not be reached (a node
        starting before its peers listen, a restart, a partition) come back now rather
        than at their next probe, seconds later: writes need them for their quorum."""
        for drive in self.drives:
            if isinstance(drive.inner, RemoteDrive) and drive.inner.address == address:
                drive.probe_soon()

    def _drive_returned(self) -> None:
        """Every node sees a returning node's drives come back; one of them (the
        smallest id alive) runs the scan that catches them up."""
        if self.membership is not None and self.membership.leader() == self.node_id:
            super()._drive_returned()

    def _remote(self, view: View, node: str, drive_id: str) -> RemoteDrive:
        remote = RemoteDrive(
            self.transport, view.nodes[node].address, drive_id, f"{node}:{drive_id[:8]}"
        )
        self._remotes[node].append(remote)
        return remote

    async def close(self) -> None:
        if self.membership is not None:
            await self.membership.stop()
        await super().close()
        await self.transport.stop()

    async def _open_layout(self, local: list[Drive]) -> Layout:
        assert self.membership is not None and self.membership.view is not None
        view = self.membership.view
        if (view.k, view.m) != (self.k, self.m):
            raise LayoutError(
                f"the cluster was formed for {view.k}+{view.m}, config says {self.k}+{self.m}; "
                "the erasure layout cannot change"
            )
        if self.node_id not in view.nodes:
            raise LayoutError(
                f"node {self.node_id} is not a member of cluster {view.cluster_id}, whose "
                "view this node has saved: a node joins with a state directory holding "
                "no view (.cluster/view.json) and a member among its seed_nodes"
            )
        mine = view.nodes[self.node_id].drives
        if len(mine) != len(local):
            raise LayoutError(
                f"this node joined the cluster with {len(mine)} drives, config lists {len(local)}"
            )
        slots = {member: (s, p) for s, ms in enumerate(view.sets) for p, member in enumerate(ms)}
        ids = [[d for _, d in members] for members in view.sets]
        missing: list[str] = []
        errors: dict[str, str] = {}
        reads: list[tuple[dict[str, Any] | None, Exception | None]] = []
        for drive in local:
            try:
                reads.append((await drive.read_format(), None))
            except Exception as exc:
                reads.append((None, exc))
        # As on a single node (storage.erasure.layout): while none of this node's drives
        # is formatted, a drive folder that does not exist yet is a blank drive to create.
        fresh = all(record is None for record, _ in reads)
        for drive, drive_id, (record, error) in zip(local, mine, reads, strict=True):
            absent = fresh and isinstance(error, FileNotFoundError)
            if error is not None and not absent:  # unreadable: offline in its slot
                missing.append(drive.name)
                errors[drive.name] = repr(error)
                continue
            slot = slots[(self.node_id, drive_id)]
            if record is None:
                if not absent and not await drive.is_empty():
                    raise LayoutError(
                        f"drive {drive.name} has data but no .smartstorage/format.json; "
                        "refusing to format it"
                    )
                await drive.write_format(
                    format_record(
                        cluster_id=view.cluster_id,
                        node_id=self.node_id,
                        drive_id=drive_id,
                        slot=slot,
                        k=self.k,
                        m=self.m,
                        sets=ids,
                    )
                )
                continue
            fmt = parse_format(record, drive.name)
            if fmt.cluster_id != view.cluster_id:
                raise LayoutError(f"drive {drive.name} belongs to another cluster")
            if fmt.drive_id != drive_id:
                raise LayoutError(
                    f"drive {drive.name} is drive {fmt.drive_id}, expected {drive_id} in "
                    "this position: drives swapped?"
                )
        by_id = dict(zip(mine, local, strict=True))
        sets: list[list[Drive]] = [
            [
                by_id[d] if node == self.node_id else self._remote(view, node, d)
                for node, d in members
            ]
            for members in view.sets
        ]
        return Layout(
            view.cluster_id,
            self.node_id,
            self.k,
            self.m,
            sets,
            ids,
            missing,
            errors,
            pools=view.pools,
        )

    def status(self) -> dict[str, Any]:
        status = super().status()
        if self.membership is not None:
            status["nodes"] = self.membership.status()
            view = self.membership.view
            status["view_version"] = view.version if view else None
        status["transport"] = self.transport.status()
        return status


def drive_space(folders: Mapping[str, str]) -> dict[str, dict[str, int]]:
    """Free and total bytes of each named drive folder's file system (blocking); a
    folder that cannot be read is left out (its drive's health says why)."""
    space: dict[str, dict[str, int]] = {}
    for name, folder in folders.items():
        try:
            st = os.statvfs(folder)
        except OSError:
            continue
        space[name] = {
            "free_bytes": st.f_bavail * st.f_frsize,
            "total_bytes": st.f_blocks * st.f_frsize,
        }
    return space
