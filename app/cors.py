"""CORS from the global `cors` configuration, evaluated as S3 evaluates a CORS rule.

Preflights (OPTIONS with Access-Control-Request-Method) are answered here, before
dispatch and without authentication; a preflight no rule allows gets 403. Actual
requests from an allowed origin get the Allow-Origin/Expose-Headers headers. Every
answer to a request that carries an Origin says `Vary: Origin`, so caches keep
per-origin answers apart.
"""

from __future__ import annotations

import functools
import re

from starlette.responses import Response

from app.xml import document
from config import Config
from config.model import CorsConfig


@functools.lru_cache(maxsize=64)
def _pattern(allowed: str) -> re.Pattern[str]:
    """An allowed origin or header with S3's single `*` wildcard, case-insensitive."""
    return re.compile("^" + ".*".join(map(re.escape, allowed.split("*"))) + "$", re.I)


def _matches(value: str, allowed: list[str]) -> bool:
    return any(_pattern(a).match(value) for a in allowed)


def _origin_headers(cors: CorsConfig, origin: str) -> dict[str, str]:
    wildcard = cors.allowed_origins == ["*"] and not cors.allow_credentials
    headers = {
        "access-control-allow-origin": "*" if wildcard else origin,
        "vary": "Origin",
    }
    if cors.allow_credentials:
        headers["access-control-allow-credentials"] = "true"
    return headers


def preflight(config: Config, headers: dict[str, str]) -> Response:
    """The answer to an OPTIONS request."""
    cors = config.cors
    origin = headers.get("origin")
    method = headers.get("access-control-request-method")
    wanted = [h.strip() for h in headers.get("access-control-request-headers", "").split(",")]
    wanted = [h for h in wanted if h]
    allowed = (
        cors.enabled
        and origin is not None
        and method is not None
        and _matches(origin, cors.allowed_origins)
        and (cors.allowed_methods == ["*"] or method.upper() in cors.allowed_methods)
        and all(_matches(h, cors.allowed_headers) for h in wanted)
    )
    if not allowed:
        text = "CORSResponse: This CORS request is not allowed."
        if not cors.enabled:
            text = "CORSResponse: CORS is not enabled for this bucket."
        body = document("Error", [("Code", "AccessForbidden"), ("Message", text)], namespace=False)
        return Response(body, 403, {"vary": "Origin"}, media_type="application/xml")
    assert origin is not None and method is not None
    answer = _origin_headers(cors, origin)
    answer["access-control-allow-methods"] = ", ".join(cors.allowed_methods)
    if wanted:
        answer["access-control-allow-headers"] = ", ".join(wanted)
    answer["access-control-max-age"] = str(cors.max_age)
    return Response(status_code=200, headers=answer)


def decorate(config: Config, headers: dict[str, str], response: Response) -> None:
    """Add CORS headers to the answer of an actual (non-preflight) request."""
    cors = config.cors
    origin = headers.get("origin")
    if not cors.enabled or origin is None:
        return
    response.headers["vary"] = "Origin"
    if not _matches(origin, cors.allowed_origins):
        return
    response.headers.update(_origin_headers(cors, origin))
    if cors.exposed_headers:
        response.headers["access-control-expose-headers"] = ", ".join(cors.exposed_headers)
