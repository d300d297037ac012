"""Prometheus metrics (prometheus-client): counted per request here, read from the
store at scrape time (app/metrics_collectors.py), served at /metrics.

Where. With `metrics.port = 0` (the default) the S3 listener answers a scrape at
`GET /-/metrics` (the management prefix: no bucket can be named "-") and at a bare
`GET /metrics`: path exactly /metrics, no query string, path-style. A bucket may be
named "metrics", so only that exact request is the scrape: SDKs always send a query
when listing a bucket (boto3: `list-type=2` or `encoding-type=url`), and object
requests have a longer path; `GET /metrics?...`, `/metrics/...`, any other method and a
virtual-hosted `GET /metrics` (object "metrics" of the Host's bucket) are S3 requests.
With auth on and that listener reachable beyond loopback, a scrape there must be
SigV4-signed by one of `auth.credentials` (AccessDenied otherwise), as the management
API is: metrics name buckets and count their objects. `metrics.public = true` lifts
that; `metrics.auth = true` asks for it always, even with auth off. With `metrics.port`
set, both paths are ordinary S3 requests again and metrics are served on
`metrics.address:metrics.port` (app/metrics_listener.py), any path, unauthenticated:
that address is loopback (127.0.0.1) unless configured, so a remote Prometheus
scrapes a private interface named there. `metrics.enabled = false` turns all of it
off, and with it every per-request cost.

What (names are a contract with deploy/'s dashboard and alert rules):

    shoal_requests_total{operation,status}          counter
    shoal_request_duration_seconds{operation}       histogram, until the last body byte
    shoal_received_bytes_total{operation}           request body bytes read (wire bytes,
    shoal_sent_bytes_total{operation}               so aws-chunked framing included) and
                                                    response body bytes sent
    shoal_errors_total{operation,code}              S3 error responses by code
    shoal_requests_in_flight                        gauge
    shoal_bucket_objects{bucket}, shoal_bucket_bytes{bucket},
    shoal_multipart_uploads_in_progress{bucket}     gauges (storage/usage.py)
    shoal_build_info{version}, shoal_ready          gauges
    shoal_node_up{node}, shoal_node_heartbeat_rtt_seconds{node}
    shoal_drive_online{drive,set}, shoal_drive_errors_total{drive},
    shoal_drive_latency_seconds{drive}, shoal_drive_free_bytes{drive},
    shoal_drive_total_bytes{drive}                  ("data": the standalone directory)
    shoal_rpc_duration_seconds{method}              histogram of node-to-node calls made
    shoal_rpc_bytes_total{method,direction}         their body bytes, sent|received
    shoal_heal_shards_healed_total, shoal_heal_objects_scanned_total,
    shoal_heal_shards_missing_total, shoal_heal_shards_corrupt_total,
    shoal_heal_backlog, shoal_heal_scan_running
    shoal_lifecycle_actions_total{action}           what the lifecycle worker did: expired,
                                                    noncurrent_removed,
                                                    delete_marker_removed, upload_aborted

`operation` is the S3 operation (GetObject, PutObject, ...), or GetMetrics for a scrape,
Admin for /-/ requests, Preflight for CORS OPTIONS, Unknown for requests refused before
their operation was known (a malformed bucket name, say). Per request the cost is a few
updates of label children cached per operation and status: about 5 us of CPU.

Bucket figures are counted once in the background at start (a paced listing) and then
kept by the store's writes, never by walking a directory per scrape (storage/usage.py).
In a cluster each node follows only the writes it coordinates, so while the view has
more than one node, each node also recounts every USAGE_RECOUNT_SECONDS (300 s; the
environment variable SHOAL_USAGE_RECOUNT_SECONDS overrides it, for tests): the same
paced listing, each bucket's figures replaced once its listing is done (storage.usage.
recount), so writes and deletions made through other nodes show up within about one
interval plus a listing. Standalone and one-node stores never recount.

Several uvicorn workers (multiprocess mode). Each worker is a process with its own
counters; prometheus-client's multiprocess mode sums them. Before uvicorn starts, point
PROMETHEUS_MULTIPROC_DIR at a directory that only this server uses and that is empty
at every start (deploy/shoal.service: `RuntimeDirectory=shoal shoal/prometheus`, which
systemd creates empty and removes at stop, and PROMETHEUS_MULTIPROC_DIR=
/run/shoal/prometheus in deploy/shoal.env), e.g. by hand:

    rm -rf /tmp/shoal-prom && mkdir /tmp/shoal-prom
    PROMETHEUS_MULTIPROC_DIR=/tmp/shoal-prom uvicorn app:create_app --factory --workers 4

Every worker then writes its figures to files there, and a scrape, whichever worker
answers it, reads all of them: request counters, histograms and RPC figures are summed
over workers (exited ones included: counters never go back); the in-flight gauge over
live workers (each new worker drops the files of exited ones); the bucket gauges are
sums of each worker's share: the first worker to start counts what is stored, and each
worker adds its own writes (a write made through another worker while that first count
runs may be counted twice, until the next start). Shares are never recounted; cluster
mode, which recounts, runs one process per node. Figures read at scrape time (ready,
build, drives, nodes, healing) are the answering worker's own view. With
`metrics.port`, every worker binds that port (SO_REUSEPORT) and any of them answers.
Without the variable each worker would report only itself: wrong behind one listener.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable
from time import perf_counter
from typing import TYPE_CHECKING, Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    values,
)
from prometheus_client.exposition import choose_encoder
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Scope

from shoal.app import exposure
from shoal.app.dispatch import Operation, split_target
from shoal.app.errors import AccessDenied
from shoal.app.metrics_collectors import StoreCollector
from shoal.app.metrics_listener import MetricsListener
from shoal.auth import Principal
from shoal.config import Config, ConfigError
from shoal.storage.usage import BucketUsage, count_existing, recount

if TYPE_CHECKING:
    from shoal.app.exchange import Exchange

log = logging.getLogger("shoal")

SCRAPE = Operation("GetMetrics", None, None, "shoal:GetMetrics")
ADMIN_PATH = "/-/metrics"
BARE_PATH = "/metrics"
#: Where the listener of metrics.port binds unless metrics.address says otherwise: it
#: answers anyone who reaches it, so by default only this host.
LISTENER_ADDRESS = "127.0.0.1"
#: The status label of a request that ended before any response (client gone, or
#: server shutting down), as nginx logs it.
NO_RESPONSE = 499
#: Marks the worker that counts the store at start, in PROMETHEUS_MULTIPROC_DIR.
COUNTER_MARK = "shoal-usage-counter"
#: Seconds between recounts of the bucket figures on a node of a cluster of several
#: (module docstring); the environment variable RECOUNT_ENV overrides it.
USAGE_RECOUNT_SECONDS = 300.0
RECOUNT_ENV = "SHOAL_USAGE_RECOUNT_SECONDS"

#: Small S3 calls take about a millisecond; large bodies and listings, seconds.
DURATION_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300,
)  # fmt: skip
RPC_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)

Authenticate = Callable[[Request], Principal]


def multiprocess_dir() -> str | None:
    """PROMETHEUS_MULTIPROC_DIR, if prometheus-client runs in multiprocess mode (it
    decides when first imported, so the variable must be set before the process starts)."""
    if values.ValueClass is values.MutexValue:
        return None
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR")


class _Op:
    """One operation's label children, bound once and reused by every request."""

    __slots__ = ("duration", "errors", "name", "received", "requests", "sent")

    def __init__(self, metrics: Metrics, name: str) -> None:
        self.name = name
        self.duration = metrics.duration.labels(name)
        self.received = metrics.received.labels(name)
        self.sent = metrics.sent.labels(name)
        self.requests: dict[int, Any] = {}
        self.errors: dict[str, Any] = {}


class Metrics:
    """Everything metrics for one app: see the module docstring. `authenticate` checks
    a request's SigV4 signature (app.asgi's), for `metrics.auth`."""

    def __init__(self, config: Config, backend: Any, authenticate: Authenticate) -> None:
        m = config.metrics
        if m.address is not None and m.port == 0:
            raise ConfigError(
                "metrics.address: a separate metrics listener needs metrics.port as well",
                "metrics.address",
            )
        if m.auth and m.port != 0:
            raise ConfigError(
                "metrics.auth: signed scrapes are checked on the S3 listener only; with "
                "metrics.port set, protect metrics.address instead",
                "metrics.auth",
            )
        if m.auth and m.public:
            raise ConfigError(
                "metrics.public: scrapes cannot be both public and signed (metrics.auth)",
                "metrics.public",
            )
        # `*_created` samples would double the series count, and nothing reads them.
        disable_created_metrics()
        self.config = config
        self.backend = backend
        self.authenticate = authenticate
        #: Settled at start, once the address served on is known (see _guard).
        self.require_signature = m.auth
        self.base_domain = config.server.base_domain
        self.multiproc = multiprocess_dir()
        self.ready = False
        #: Seconds between recounts in a cluster (module docstring).
        self.recount_interval = recount_interval()
        self._count_task: asyncio.Task[None] | None = None
        self._ops: dict[str, _Op] = {}

        # In multiprocess mode the metric objects write to PROMETHEUS_MULTIPROC_DIR and
        # the scrape reads every worker's files, so they are not registered themselves.
        own = None if self.multiproc else CollectorRegistry()
        self.requests = Counter(
            "shoal_requests", "S3 requests answered", ["operation", "status"], registry=own
        )
        self.duration = Histogram(
            "shoal_request_duration_seconds",
            "time from a request's arrival to its response's last byte",
            ["operation"],
            buckets=DURATION_BUCKETS,
            registry=own,
        )
        self.received = Counter(
            "shoal_received_bytes", "request body bytes read", ["operation"], registry=own
        )
        self.sent = Counter(
            "shoal_sent_bytes", "response body bytes sent", ["operation"], registry=own
        )
        self.errors = Counter(
            "shoal_errors", "S3 error responses", ["operation", "code"], registry=own
        )
        self.in_flight = Gauge(
            "shoal_requests_in_flight",
            "requests being answered",
            registry=own,
            multiprocess_mode="livesum",
        )
        self.usage_gauges = _UsageGauges(own)
        self.rpc_duration = Histogram(
            "shoal_rpc_duration_seconds",
            "node-to-node calls this node made, until their reply (or failure)",
            ["method"],
            buckets=RPC_BUCKETS,
            registry=own,
        )
        self.rpc_bytes = Counter(
            "shoal_rpc_bytes",
            "body bytes of node-to-node calls this node made",
            ["method", "direction"],
            registry=own,
        )
        self._rpc: dict[str, tuple[Any, Any, Any]] = {}
        self.lifecycle_actions = Counter(
            "shoal_lifecycle_actions",
            "what the lifecycle worker did, by action",
            ["action"],
            registry=own,
        )
        #: What /-/ready answers (app.health), set by create_app: shoal_ready follows it.
        self.readiness: Callable[[], bool] | None = None

        self.registry = own if own is not None else CollectorRegistry()
        if self.multiproc:
            MultiProcessCollector(self.registry, path=self.multiproc)
        self.registry.register(StoreCollector(backend, ready=self._ready))
        self.listener = (
            MetricsListener(
                self.registry,
                m.address or LISTENER_ADDRESS,
                m.port,
                shared=self.multiproc is not None,
            )
            if m.port
            else None
        )

    def _ready(self) -> bool:
        return self.ready and (self.readiness is None or self.readiness())

    # -- lifecycle -----------------------------------------------------------------------

    def _guard(self) -> None:
        """With auth on and the S3 listener reachable beyond loopback, scrapes there must
        be signed too, unless metrics.public (module docstring)."""
        m, config = self.config.metrics, self.config
        if not m.auth and config.auth.enabled and not m.public:
            self.require_signature = not exposure.is_loopback(exposure.bound_host(config))

    async def start(self) -> None:
        """Once storage is open: follow its writes, count what it holds, listen."""
        self._guard()
        self.ready = True
        if self.multiproc:
            forget_exited_workers(self.multiproc)
        usage: BucketUsage | None = getattr(self.backend, "usage", None)
        if usage is not None:
            counting = self._counts_store()
            usage.listener = self.usage_gauges
            usage.track(counting=counting, shared=self.multiproc is not None)
            if counting:
                task = asyncio.get_running_loop().create_task(self._count(usage))
                task.add_done_callback(_log_failure)
                self._count_task = task
        transport = getattr(self.backend, "transport", None)
        if transport is not None:
            transport.observer = self.rpc_observed
        if self.listener is not None:
            await asyncio.to_thread(self.listener.start)

    async def stop(self) -> None:
        self.ready = False
        if self._count_task is not None:
            self._count_task.cancel()
            await asyncio.gather(self._count_task, return_exceptions=True)
            self._count_task = None
        if self.listener is not None:
            await asyncio.to_thread(self.listener.stop)

    async def _count(self, usage: BucketUsage) -> None:
        """Count what is stored; then, on a cluster node (one process: never in
        multiprocess mode), recount periodically while the view has other nodes."""
        await count_existing(self.backend, usage)
        if self.multiproc is not None or getattr(self.backend, "membership", None) is None:
            return
        while True:
            await asyncio.sleep(self.recount_interval)
            view = self.backend.membership.view
            if view is None or len(view.nodes) < 2:
                continue
            try:
                await recount(self.backend, usage)
            except Exception:
                log.exception("recounting stored objects failed; trying again later")

    def _counts_store(self) -> bool:
        """Whether this process counts what is stored: always, except in multiprocess
        mode, where only the first worker of this run does (it creates the mark)."""
        if self.multiproc is None:
            return True
        try:
            os.close(os.open(os.path.join(self.multiproc, COUNTER_MARK), os.O_CREAT | os.O_EXCL))
        except FileExistsError:
            return False
        return True

    # -- per request ---------------------------------------------------------------------

    def request_began(self) -> None:
        """A request arrived (app/exchange.py calls this and `request_ended`)."""
        self.in_flight.inc()

    def request_ended(self, scope: Scope, exchange: Exchange) -> None:
        """Count a request once its answer is sent or abandoned: the exchange already
        counted its bytes and status on the wire, so nothing here wraps receive or send."""
        self.in_flight.dec()
        state = scope.get("state") or {}
        op = state.get("operation")
        entry = self._op(op.name if op is not None else _unresolved(scope))
        entry.duration.observe(perf_counter() - exchange.started)
        if exchange.bytes_in:
            entry.received.inc(exchange.bytes_in)
        if exchange.bytes_out:
            entry.sent.inc(exchange.bytes_out)
        code: str | None = None
        status = exchange.status
        if exchange.failed:  # escaped the S3 endpoint: mid-stream, say
            code, status = "InternalError", status or 500
        status = status or NO_RESPONSE
        counter = entry.requests.get(status)
        if counter is None:
            counter = entry.requests[status] = self.requests.labels(entry.name, str(status))
        counter.inc()
        code = code or state.get("error_code")
        if code is not None:
            error = entry.errors.get(code)
            if error is None:
                error = entry.errors[code] = self.errors.labels(entry.name, code)
            error.inc()

    def _op(self, name: str) -> _Op:
        entry = self._ops.get(name)
        if entry is None:
            entry = self._ops[name] = _Op(self, name)
        return entry

    def rpc_observed(self, method: str, seconds: float, sent: int, received: int) -> None:
        """cluster.transport's observer: one node-to-node call made."""
        children = self._rpc.get(method)
        if children is None:
            children = self._rpc[method] = (
                self.rpc_duration.labels(method),
                self.rpc_bytes.labels(method, "sent"),
                self.rpc_bytes.labels(method, "received"),
            )
        children[0].observe(seconds)
        if sent:
            children[1].inc(sent)
        if received:
            children[2].inc(received)

    def lifecycle_action(self, action: str) -> None:
        """storage.lifecycle's observer: one object expired, version or marker removed,
        or upload aborted."""
        self.lifecycle_actions.labels(action).inc()

    # -- the scrape on the S3 listener -----------------------------------------------------

    def is_scrape(self, request: Request, host: str) -> bool:
        """GET /-/metrics, or the bare GET /metrics (module docstring)."""
        scope = request.scope
        if self.listener is not None or scope["method"] != "GET":
            return False
        path = scope["path"]
        if path == ADMIN_PATH:
            return True
        return (
            path == BARE_PATH
            and not scope["query_string"]
            and scope.get("raw_path", b"/metrics") == b"/metrics"
            and split_target(b"/metrics", host, self.base_domain) == ("metrics", None)
        )

    async def scrape(self, request: Request) -> Response:
        """The exposition, in the format the scraper asks for; S3 errors if refused."""
        request.state.operation = SCRAPE
        if self.require_signature and self.authenticate(request).access_key is None:
            raise AccessDenied("Metrics need a request signed by a configured credential.")
        encoder, content_type = choose_encoder(request.headers.get("accept", ""))
        body = await asyncio.to_thread(encoder, self.registry)
        return Response(body, headers={"content-type": content_type})


class _UsageGauges:
    """storage.usage's listener: the per-bucket gauges. In multiprocess mode each
    worker's values are its share of a sum (multiprocess_mode="sum", kept for exited
    workers too)."""

    def __init__(self, registry: CollectorRegistry | None) -> None:
        self.objects = Gauge(
            "shoal_bucket_objects",
            "objects stored in a bucket",
            ["bucket"],
            registry=registry,
            multiprocess_mode="sum",
        )
        self.bytes = Gauge(
            "shoal_bucket_bytes",
            "bytes stored in a bucket (object sizes)",
            ["bucket"],
            registry=registry,
            multiprocess_mode="sum",
        )
        self.uploads = Gauge(
            "shoal_multipart_uploads_in_progress",
            "multipart uploads created and not yet completed or aborted",
            ["bucket"],
            registry=registry,
            multiprocess_mode="sum",
        )
        self._children: dict[str, tuple[Any, Any, Any]] = {}

    def bucket_changed(self, bucket: str, objects: int, size: int, uploads: int) -> None:
        children = self._children.get(bucket)
        if children is None:
            children = self._children[bucket] = (
                self.objects.labels(bucket),
                self.bytes.labels(bucket),
                self.uploads.labels(bucket),
            )
        children[0].set(objects)
        children[1].set(size)
        children[2].set(uploads)

    def bucket_removed(self, bucket: str) -> None:
        if self._children.pop(bucket, None) is not None:
            for gauge in (self.objects, self.bytes, self.uploads):
                gauge.remove(bucket)


def forget_exited_workers(path: str) -> None:
    """Drop the live gauges (requests in flight) of workers that have exited, as
    prometheus-client's mark_process_dead does: uvicorn replaces a dead worker but
    tells nobody, so each new worker looks for the files of the ones gone."""
    for name in os.listdir(path):
        pid = name.removesuffix(".db").rpartition("_")[2]
        if name.startswith("gauge_live") and pid.isdigit():
            try:
                os.kill(int(pid), 0)
            except ProcessLookupError:
                mark_process_dead(int(pid), path)
            except PermissionError:
                pass  # alive, another user's


def recount_interval() -> float:
    """USAGE_RECOUNT_SECONDS, or RECOUNT_ENV's value if set."""
    raw = os.environ.get(RECOUNT_ENV)
    if raw is None:
        return USAGE_RECOUNT_SECONDS
    try:
        seconds = float(raw)
    except ValueError:
        seconds = 0.0
    if not 0 < seconds < float("inf"):
        raise ConfigError(f"{RECOUNT_ENV}: a number of seconds above 0, not {raw!r}")
    return seconds


def _unresolved(scope: Scope) -> str:
    """The operation label of a request that never got one."""
    if scope["path"].startswith("/-/"):
        return "Admin"
    return "Preflight" if scope["method"] == "OPTIONS" else "Unknown"


def _log_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("counting stored objects failed", exc_info=task.exception())
