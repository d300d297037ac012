"""The console's own JSON endpoints, under /-/console/api/ (S3 has no call for these):

    GET info      public: the region to sign for, whether auth is on
    GET buckets   any signed account: its buckets (every bucket for an admin) with
                  versioning and the objects, bytes and uploads storage/usage.py counts
                  (null while not counted: metrics off, or the start-up count not there yet)
    GET metrics   admin: this process's request rate and latency, one point per 5 s for
                  the last 30 minutes (app/console/series.py), and the free space of this
                  node's drives

Signed like the management API (app/admin.py): with auth on, a SigV4 signature of a
known account, 403 AccessDenied otherwise; with auth off, open. A name that is none of
these is 404 before any signature check (the list above is public anyway).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable
from weakref import WeakKeyDictionary

from starlette.requests import Request
from starlette.responses import Response

from shoal.app.console.assets import SECURITY_HEADERS
from shoal.app.console.series import INTERVAL, Series
from shoal.app.errors import AccessDenied, MethodNotAllowed, NoSuchKey
from shoal.app.metrics_collectors import StoreCollector
from shoal.auth import Principal
from shoal.auth.accounts import Account
from shoal.storage.usage import BucketUsage

PREFIX = "/api/"
ENDPOINTS = frozenset({"info", "buckets", "metrics"})

Authenticate = Callable[[Request], Principal]

#: Each app's metrics history, started by its first console request.
_series: WeakKeyDictionary[Any, Series] = WeakKeyDictionary()


@runtime_checkable
class Counted(Protocol):
    """A store that counts its buckets' objects (both of shoal's stores do)."""

    usage: BucketUsage


def start_sampling(app: Any) -> None:
    """Begin the metrics history of `app` (once; nothing without metrics)."""
    if app.metrics is not None and app not in _series:
        series = _series[app] = Series(app.metrics)
        series.start()


def _json(data: Any) -> Response:
    headers = {"cache-control": "no-store", **SECURITY_HEADERS}
    return Response(json.dumps(data, default=str), 200, headers, media_type="application/json")


async def handle(request: Request, name: str, authenticate: Authenticate) -> Response:
    if name not in ENDPOINTS:
        raise NoSuchKey(f"The console API has no endpoint {name!r}.")
    if request.method != "GET":
        raise MethodNotAllowed()
    state = request.app.state
    if name == "info":
        config = state.config
        return _json({"region": config.server.region, "auth": config.auth.enabled})
    account, admin = _caller(request, authenticate)
    if name == "buckets":
        return _json(await _buckets(request, account, admin))
    if not admin:
        raise AccessDenied("Server metrics are for admin accounts.")
    return _json(await _metrics(request))


def _caller(request: Request, authenticate: Authenticate) -> tuple[Account | None, bool]:
    """The signing account and whether it is an admin; (None, True) with auth off."""
    state = request.app.state
    if not state.config.auth.enabled:
        return None, True
    principal = authenticate(request)
    account = state.accounts.by_key(principal.access_key)
    if principal.access_key is None or account is None:
        raise AccessDenied("The console API needs a request signed by an account.")
    return account, account.admin


async def _buckets(request: Request, account: Account | None, admin: bool) -> dict[str, Any]:
    state = request.app.state
    backend, accounts = state.backend, state.accounts
    buckets = await backend.list_buckets()
    if not admin and account is not None:
        buckets = [b for b in buckets if accounts.owner_id(b.owner) == account.canonical_id]
    counting = request.app.metrics is not None and isinstance(backend, Counted)
    figures = backend.usage.snapshot() if counting else {}
    rows = []
    for b in sorted(buckets, key=lambda b: b.name):
        objects, size, uploads = figures.get(b.name, (None, None, None))
        rows.append(
            {
                "name": b.name,
                "created": b.created.isoformat(),
                "versioning": b.versioning or "Unversioned",
                "object_lock": b.object_lock,
                "objects": objects,
                "bytes": size,
                "uploads": uploads,
            }
        )
    return {"buckets": rows, "counted": counting}


async def _metrics(request: Request) -> dict[str, Any]:
    series = _series.get(request.app)
    # statvfs of every local drive: in a thread, as a hung drive must not stop the loop
    drives = await asyncio.to_thread(_drive_space, request.app.state.backend)
    return {
        "interval_seconds": INTERVAL,
        "points": series.points() if series is not None else [],
        "metrics": series is not None,
        "drives": drives,
    }


def _drive_space(backend: Any) -> list[dict[str, Any]]:
    """Free and total bytes of this node's drives, as the metrics scrape reports them."""
    found: dict[str, dict[str, Any]] = {}
    for family in StoreCollector(backend, ready=lambda: True).collect():
        if family.name in ("shoal_drive_free_bytes", "shoal_drive_total_bytes"):
            field = "free_bytes" if "free" in family.name else "total_bytes"
            for s in family.samples:
                found.setdefault(s.labels["drive"], {})[field] = s.value
    return [{"drive": name, **values} for name, values in sorted(found.items())]
