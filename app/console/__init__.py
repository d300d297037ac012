"""The web console at `/-/console/`: a one-page app served by the S3 listener itself.

Static files (app/console/static/, shipped as package data) are public: they hold no
data. Everything the pages show comes through SigV4-signed calls the browser makes
itself (WebCrypto): the ordinary S3 API, the management API under `/-/`, and the few
JSON endpoints of app/console/api.py that S3 has no call for (bucket usage, a short
metrics history). The secret key stays in the tab (sessionStorage); the server keeps
no session, so every node of a cluster serves the console alike, and a forged
cross-site request cannot carry a signature (no CSRF).

app/asgi.py routes every path under PREFIX here before the management API.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from shoal.app.console import api, assets
from shoal.app.console.api import Authenticate

PREFIX = "/-/console"


def is_console_path(path: str) -> bool:
    return path == PREFIX or path.startswith(PREFIX + "/")


async def handle(request: Request, authenticate: Authenticate) -> Response:
    """One console request: an API call or a static file; an S3Error if refused."""
    api.start_sampling(request.app)
    rest = request.scope["path"][len(PREFIX) :]
    if rest.startswith(api.PREFIX):
        return await api.handle(request, rest[len(api.PREFIX) :], authenticate)
    return assets.serve(request, rest)
