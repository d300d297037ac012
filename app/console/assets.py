"""The console's static files: a fixed name -> file table read once at import, so a
request can only ever name one of the files shipped (no path is joined, nothing is
looked up on disk per request: no traversal)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from starlette.requests import Request
from starlette.responses import Response

from shoal.app.errors import MethodNotAllowed, NoSuchKey

STATIC = Path(__file__).with_name("static")

CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}

#: Scripts, styles, images, fetches: this origin only; no inline code of any kind, no
#: framing (clickjacking), no plugins, no <base> rewriting. blob: images and downloads
#: are the browser's own object URLs.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)

#: On every console response, the JSON ones included.
SECURITY_HEADERS = {
    "content-security-policy": CONTENT_SECURITY_POLICY,
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
}


@dataclass(frozen=True, slots=True)
class Asset:
    body: bytes
    content_type: str
    etag: str


def load(directory: Path = STATIC) -> dict[str, Asset]:
    """Every file of `directory` with a known type, by its name."""
    table = {}
    for path in sorted(directory.iterdir()):
        content_type = CONTENT_TYPES.get(path.suffix)
        if content_type is None or not path.is_file():
            continue
        body = path.read_bytes()
        etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
        table[path.name] = Asset(body, content_type, etag)
    return table


ASSETS = load()
INDEX = "index.html"


def serve(request: Request, rest: str) -> Response:
    """`rest` is the path after /-/console: "" redirects to the folder form (relative
    URLs in the page resolve against it), "/" is the page, "/<name>" a file."""
    if request.method not in ("GET", "HEAD"):
        raise MethodNotAllowed()
    if rest == "":
        return Response(status_code=308, headers={"location": "/-/console/", **SECURITY_HEADERS})
    name = rest[1:] or INDEX
    asset = ASSETS.get(name)
    if asset is None:
        raise NoSuchKey(f"The console has no file {name!r}.")
    headers = {
        "etag": asset.etag,
        # Revalidated on every load (a 304 is cheap), so an upgraded server's files are
        # picked up at once, never mixed with a cached older module.
        "cache-control": "no-cache",
        **SECURITY_HEADERS,
    }
    if asset.etag in request.headers.get("if-none-match", ""):
        return Response(status_code=304, headers=headers)
    body = b"" if request.method == "HEAD" else asset.body
    response = Response(body, 200, headers, media_type=asset.content_type)
    response.headers["content-length"] = str(len(asset.body))
    return response
