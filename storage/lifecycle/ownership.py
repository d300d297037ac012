"""Which node runs a bucket's lifecycle pass in a cluster: exactly one of the members
it considers live, chosen by rendezvous hashing of the bucket name over their ids.
Every node that agrees on who is live picks the same one; when a node goes offline
only its buckets move, to the next-highest node, which resumes from the bucket's stored
progress. Standalone and single erasure nodes run every bucket (`Everything`); when
uvicorn runs several worker processes over one standalone data directory, the one
holding a lock file runs them (`OneProcess`)."""

from __future__ import annotations

import fcntl
import hashlib
import os
from collections.abc import Mapping
from typing import Protocol


class Ownership(Protocol):
    def refresh(self) -> None:
        """Once before each pass, on a worker thread (it may touch the disk)."""
        ...

    def runs(self, bucket: str) -> bool:
        """Whether this node runs `bucket`'s pass now (pure: no I/O)."""
        ...

    def release(self) -> None:
        """The worker stops: give up whatever refresh took."""
        ...


class Everything:
    """The one node there is runs every bucket."""

    def refresh(self) -> None:
        pass

    def runs(self, bucket: str) -> bool:
        return True

    def release(self) -> None:
        pass


class OneProcess:
    """Of the processes serving one data directory (uvicorn --workers), the one holding
    an exclusive flock on `path` runs every pass; the others try again before each pass,
    so another takes over when the holder exits (the kernel drops its lock)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._fd: int | None = None

    def refresh(self) -> None:
        if self._fd is not None:
            return
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return
        self._fd = fd

    def runs(self, bucket: str) -> bool:
        return self._fd is not None

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = None


class NodeView(Protocol):
    @property
    def nodes(self) -> Mapping[str, object]: ...


class Members(Protocol):
    """What cluster/membership.py's Membership offers: this node's id, the view of the
    cluster's members, and which of them this node has not declared offline."""

    @property
    def node_id(self) -> str: ...

    @property
    def view(self) -> NodeView | None: ...

    def reachable(self, node_id: str) -> bool: ...


def owner(bucket: str, node_ids: list[str]) -> str:
    """The node among `node_ids` that runs `bucket` (highest random weight)."""

    def weight(node: str) -> bytes:
        return hashlib.sha256(f"{node}\0{bucket}".encode()).digest()

    return max(node_ids, key=weight)


class ByMembership:
    """One node per bucket, among the members this node sees alive."""

    def __init__(self, members: Members) -> None:
        self.members = members

    def refresh(self) -> None:
        pass  # liveness is read as each bucket is decided

    def release(self) -> None:
        pass

    def live(self) -> list[str]:
        view = self.members.view
        nodes = list(view.nodes) if view is not None else []
        live = [n for n in nodes if self.members.reachable(n)]
        return sorted(set(live) | {self.members.node_id})

    def runs(self, bucket: str) -> bool:
        return owner(bucket, self.live()) == self.members.node_id
