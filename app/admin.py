"""The management API under `/-/` (no bucket can be named "-"): JSON, admin only.

    GET  /-/cluster   this node: mode, erasure layout, drives with health, healing
    GET  /-/heal      healing status (backlog, current and last scan)
    POST /-/heal      run a healing scan now and return its report
                      (`?background=true`: start it and answer 202 at once)

With auth enabled, requests must be SigV4-signed by one of the configured credentials
(they are the server's administrators); with auth off, the server is a dev/test tool on
a trusted address and these are open like everything else.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from app.errors import AccessDenied, InvalidRequest, MethodNotAllowed, NoSuchKey

PREFIX = "/-/"


def is_admin_path(path: str) -> bool:
    return path.startswith(PREFIX)


def _json(data: Any, status: int = 200) -> Response:
    return Response(
        json.dumps(data, indent=2, default=str) + "\n", status, media_type="application/json"
    )


async def handle(request: Request, path: str, authenticate: Any) -> Response:
    """Route one management request; an S3Error for anything refused."""
    config = request.app.state.config
    if config.auth.enabled:
        principal = authenticate(request)
        if principal.access_key is None:
            raise AccessDenied("The management API needs a signed request.")
    backend = request.app.state.backend
    healer = getattr(backend, "healer", None)
    name = path[len(PREFIX) :].rstrip("/")
    if name == "cluster":
        if request.method != "GET":
            raise MethodNotAllowed()
        status = backend.status() if hasattr(backend, "status") else {"mode": "standalone"}
        return _json({"mode": "erasure", **status} if healer is not None else status)
    if name == "heal":
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
    raise NoSuchKey(f"No management endpoint {path}")
