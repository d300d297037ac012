"""Liveness, readiness and version: what load balancers, orchestrators and people ask
before sending traffic. Answered without credentials (they reveal no data).

- live: the process serves HTTP. Always 200 when it answers at all.
- ready: storage is open and not shutting down, and in cluster mode the node can
  actually write: it hears from a majority of the cluster's nodes and every erasure set
  has at least k+1 drives online (the write quorum) on nodes it hears from. 503 with
  the reasons otherwise.
- version: the package version, Python, and the mode (standalone, erasure, cluster).
"""

from __future__ import annotations

import os
import sys
import time
from functools import cache
from typing import Any

ENDPOINTS = ("live", "ready", "version")


@cache
def version() -> str:
    """The installed distribution's version. Logged at start: read from the name of its
    `.dist-info` folder (what importlib.metadata finds first too), since importing
    importlib.metadata alone costs tens of milliseconds of every start."""
    found = _dist_info_version()
    if found is not None:
        return found
    try:
        from importlib.metadata import version as package_version

        return package_version("shoal")
    except Exception:
        return "0+unknown"


def _dist_info_version() -> str | None:
    for entry in sys.path:
        try:
            names = os.listdir(entry or ".")
        except OSError:
            continue
        for name in names:
            if name.startswith("shoal-") and name.endswith(".dist-info"):
                return name[len("shoal-") : -len(".dist-info")]
    return None


def mode(backend: Any) -> str:
    if getattr(backend, "membership", None) is not None or hasattr(backend, "transport"):
        return "cluster"
    return "erasure" if hasattr(backend, "sets") else "standalone"


def version_info(backend: Any) -> dict[str, str]:
    # sys.version begins with what platform.python_version() answers (no import needed).
    return {"version": version(), "python": sys.version.split()[0], "mode": mode(backend)}


def unready_reasons(state: Any) -> list[str]:
    """Why this node should not get traffic now (empty: ready). `state` is app.state."""
    if state.exchanges.draining:
        return ["shutting down"]
    if not getattr(state, "storage_open", False):
        return ["storage is not open"]
    backend = state.backend
    if not hasattr(backend, "sets"):
        return []
    membership = getattr(backend, "membership", None)
    reasons: list[str] = []
    seen = _nodes_heard(membership) if membership is not None else None
    if membership is not None and seen is not None:
        view = membership.view
        total = len(view.nodes) if view is not None else len(membership.peers) + 1
        if len(seen) <= total // 2:
            reasons.append(f"hears from {len(seen)} of {total} nodes, needs a majority")
    placed = membership.view.sets if membership is not None and membership.view else None
    need = backend.k + 1
    for number, drives in enumerate(backend.sets):
        nodes = placed[number] if placed is not None and number < len(placed) else None
        online = sum(
            1
            for i, drive in enumerate(drives)
            if drive.online and (seen is None or nodes is None or nodes[i][0] in seen)
        )
        if online < need:
            reasons.append(
                f"erasure set {number} has {online} of {len(drives)} drives online, needs {need}"
            )
    return reasons


def _nodes_heard(membership: Any) -> set[str]:
    """This node and the peers heard from within the heartbeat timeout (the rule
    cluster.membership uses to judge a majority)."""
    now = time.monotonic()
    heard = {membership.node_id}
    for peer in membership.peers.values():
        if peer.last_seen is not None and now - peer.last_seen < membership.timeout:
            heard.add(peer.node_id)
    return heard
