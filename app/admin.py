"""The management API under `/-/` (no bucket can be named "-"): JSON.

Open to anyone (GET or HEAD; app/health.py):

    GET  /-/live      200 while the process serves
    GET  /-/ready     200 when this node can take traffic, else 503 with the reasons
    GET  /-/version   version, python, mode

Any signed account (app/adminusers.py):

    GET  /-/admin/whoami  name, canonical id, admin flag of the caller

Admin only:

    GET  /-/cluster   this node: mode, erasure layout, drives with health, healing
    GET  /-/heal      healing status (backlog, current and last scan)
    POST /-/heal      run a healing scan now and return its report
                      (`?background=true`: start it and answer 202 at once)
    /-/admin/...      accounts, access keys, identity policies (app/adminusers.py)

With auth enabled, requests must be SigV4-signed by an admin account (a credential with
`admin = true`, or the only one configured; auth/accounts.py); with auth off, the
server is a dev/test tool on a trusted address and these are open like everything else.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from shoal.app import adminusers, health
from shoal.app.errors import AccessDenied, InvalidRequest, MethodNotAllowed, NoSuchKey

PREFIX = "/-/"


def is_admin_path(path: str) -> bool:
    return path.startswith(PREFIX)


def _json(data: Any, status: int = 200) -> Response:
    return Response(
        json.dumps(data, indent=2, default=str) + "\n", status, media_type="application/json"
    )


#: The admin-only endpoints (the open ones are health.ENDPOINTS).
ADMIN_ENDPOINTS = frozenset({"cluster", "heal"})
#: The one endpoint of the accounts API any signed account may call.
WHOAMI = "admin/whoami"


async def handle(request: Request, path: str, authenticate: Any) -> Response:
    """Route one management request; an S3Error for anything refused.

    Order of checks: a path that names no endpoint is 404 NoSuchKey before any
    signature check, whoever asks. That reveals nothing: the endpoints are the fixed,
    documented list above, so a 404 tells an anonymous caller only what the docs do,
    and answering 403 instead would tell a signed-in admin nothing useful about a
    typo. Admin endpoints then need a signature (403 AccessDenied before anything
    else about the request, its method included), the open ones never do. Below
    `/-/admin/` paths name users and keys, so everything there is checked for a
    signature first and only then routed (app/adminusers.py)."""
    name = path[len(PREFIX) :].rstrip("/")
    if name in health.ENDPOINTS:
        return _health(request, name)
    accounts_api = name == "admin" or name.startswith("admin/")
    if name not in ADMIN_ENDPOINTS and not accounts_api:
        raise NoSuchKey(f"No management endpoint {path}")
    # With auth off everyone acts as the default owner, with every right (as for S3).
    caller = dataclasses.replace(request.app.state.accounts.default_owner, admin=True)
    if request.app.state.config.auth.enabled:
        principal = authenticate(request)
        if principal.access_key is None:
            raise AccessDenied("The management API needs a signed request.")
        caller = request.app.state.accounts.by_key(principal.access_key)
        if caller is None:
            raise AccessDenied("The management API is for admin accounts.")
        if not caller.admin and name != WHOAMI:
            raise AccessDenied("The management API is for admin accounts.")
    if name == WHOAMI:
        if request.method != "GET":
            raise MethodNotAllowed()
        return adminusers.whoami(caller)
    if accounts_api:
        return await adminusers.handle(request, name[len("admin/") :])
    backend = request.app.state.backend
    healer = getattr(backend, "healer", None)
    if name == "cluster":
        if request.method != "GET":
            raise MethodNotAllowed()
        status = backend.status() if hasattr(backend, "status") else {"mode": "standalone"}
        return _json({"mode": "erasure", **status} if healer is not None else status)
    # name == "heal"
    if healer is None:
        raise InvalidRequest("Healing needs cluster mode (cluster.enabled = true).")
    if request.method == "GET":
        return _json(healer.status())
    if request.method != "POST":
        raise MethodNotAllowed()
    if request.query_params.get("background", "").lower() == "true":
        task = asyncio.get_running_loop().create_task(healer.scan())
        request.app.state.admin_tasks = {*getattr(request.app.state, "admin_tasks", ()), task}
        return _json({"started": True}, 202)
    return _json(dataclasses.asdict(await healer.scan()))


def _health(request: Request, name: str) -> Response:
    if request.method not in ("GET", "HEAD"):
        raise MethodNotAllowed()
    state = request.app.state
    if name == "live":
        response = _json({"status": "live"})
    elif name == "version":
        response = _json(health.version_info(state.backend))
    elif reasons := health.unready_reasons(state):
        response = _json({"status": "unavailable", "reason": "; ".join(reasons)}, 503)
    else:
        response = _json({"status": "ready"})
    response.headers["cache-control"] = "no-store"
    return response
