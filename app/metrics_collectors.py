"""Metric families read from the running store when scraped, not counted per request:
build and readiness, drives (health tracking's state and counters, statvfs of local
drive folders), cluster nodes (membership), healing (the healer's running totals).

The store keeps plain state (ints, flags, small dicts) and knows nothing of
Prometheus; this collector turns it into families. Scrapes may run in another thread
than the event loop (the separate metrics listener, or a worker thread for the S3
listener's /metrics), so it only reads: single attribute reads and C-level copies of
containers, consistent enough for figures that are approximate the moment they are
read. Every family is emitted even when empty (standalone mode has no nodes), so
dashboards and alert rules find each name in any mode.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

#: The standalone store's data directory, reported as a drive of this name.
STANDALONE_DRIVE = "data"


@functools.cache
def version() -> str:
    """shoal's installed version (importlib.metadata costs some ms: not at start-up)."""
    from importlib import metadata

    try:
        return metadata.version("shoal")
    except metadata.PackageNotFoundError:
        return "unknown"


class StoreCollector:
    """See the module docstring. `ready` says whether storage is open."""

    def __init__(self, backend: Any, *, ready: Callable[[], bool]) -> None:
        self.backend = backend
        self.ready = ready

    def describe(self) -> list[Metric]:
        return []  # names are fixed: nothing to check at registration

    def collect(self) -> Iterator[Metric]:
        build = GaugeMetricFamily("shoal_build_info", "shoal version", labels=["version"])
        build.add_metric([version()], 1)
        yield build
        yield GaugeMetricFamily("shoal_ready", "1 while /-/ready answers 200", value=self.ready())
        yield from self._drives()
        yield from self._nodes()
        yield from self._healing()

    # -- drives ----------------------------------------------------------------------------

    def _local_paths(self) -> list[tuple[str, str]]:
        """(drive label, folder) of the drives on this machine."""
        paths = getattr(self.backend, "paths", None)
        if paths is not None:  # erasure-coded: labelled as health tracking names them
            return [(p, p) for p in paths]
        directory = getattr(self.backend, "root", "") or getattr(self.backend, "directory", "")
        return [(STANDALONE_DRIVE, directory)] if directory else []

    def _drives(self) -> Iterator[Metric]:
        online = GaugeMetricFamily(
            "shoal_drive_online",
            "1 while health tracking holds the drive online, 0 once it took it offline",
            labels=["drive", "set"],
        )
        errors = CounterMetricFamily(
            "shoal_drive_errors",
            "drive calls that failed with an I/O error or timed out",
            labels=["drive"],
        )
        latency = GaugeMetricFamily(
            "shoal_drive_latency_seconds",
            "moving average of a drive call's duration",
            labels=["drive"],
        )
        for s, members in enumerate(list(getattr(self.backend, "sets", ()))):
            for drive in list(members):
                online.add_metric([drive.name, str(s)], 1 if drive.online else 0)
                errors.add_metric([drive.name], drive.errors)
                if drive.latency_ms is not None:
                    latency.add_metric([drive.name], drive.latency_ms / 1000)
        free = GaugeMetricFamily(
            "shoal_drive_free_bytes",
            "space left for shoal on a local drive folder's file system",
            labels=["drive"],
        )
        total = GaugeMetricFamily(
            "shoal_drive_total_bytes",
            "size of a local drive folder's file system",
            labels=["drive"],
        )
        for label, path in self._local_paths():
            try:
                st = os.statvfs(path)
            except OSError:
                continue  # unmounted or gone: drive_online says the rest
            free.add_metric([label], st.f_bavail * st.f_frsize)
            total.add_metric([label], st.f_blocks * st.f_frsize)
        yield from (online, errors, latency, free, total)

    # -- nodes -----------------------------------------------------------------------------

    def _nodes(self) -> Iterator[Metric]:
        up = GaugeMetricFamily(
            "shoal_node_up",
            "1 while membership hears a node's heartbeats (this node: always)",
            labels=["node"],
        )
        rtt = GaugeMetricFamily(
            "shoal_node_heartbeat_rtt_seconds",
            "round trip of the last heartbeat answered by a node",
            labels=["node"],
        )
        membership = getattr(self.backend, "membership", None)
        if membership is not None:
            up.add_metric([membership.node_id], 1)
            for peer in list(membership.peers.values()):
                up.add_metric([peer.node_id], 1 if peer.state == "alive" else 0)
                if peer.rtt_ms is not None:
                    rtt.add_metric([peer.node_id], peer.rtt_ms / 1000)
        elif getattr(self.backend, "layout", None) is not None:
            up.add_metric([self.backend.layout.node_id], 1)  # a one-node erasure store
        yield from (up, rtt)

    # -- healing ---------------------------------------------------------------------------

    def _healing(self) -> Iterator[Metric]:
        healer = getattr(self.backend, "healer", None)
        reports = []
        if healer is not None:
            current = healer.current
            reports = [healer.queued_total, healer.scans_total]
            reports += [current] if current is not None else []
        for name, field, text in (
            ("shoal_heal_shards_healed", "shards_healed", "shards rebuilt and rewritten"),
            ("shoal_heal_objects_scanned", "objects_scanned", "objects checked by healing"),
            ("shoal_heal_shards_missing", "shards_missing", "shards healing found missing"),
            ("shoal_heal_shards_corrupt", "shards_corrupt", "shards healing found corrupt"),
        ):
            family = CounterMetricFamily(name, text)
            if healer is not None:
                family.add_metric([], sum(getattr(r, field) for r in reports))
            yield family
        backlog = GaugeMetricFamily("shoal_heal_backlog", "objects queued for healing")
        running = GaugeMetricFamily("shoal_heal_scan_running", "1 while a healing scan runs")
        if healer is not None:
            backlog.add_metric([], healer.backlog)
            running.add_metric([], 1 if healer.current is not None else 0)
        yield from (backlog, running)
