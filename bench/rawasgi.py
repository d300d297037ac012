"""The outside harness's baseline: a raw ASGI file server, as little as can serve objects.

uvicorn with uvloop and httptools, one worker, no access log. Every file operation is a
plain blocking call on the event loop (no thread hops) and nothing is fsynced, so this
is the floor for GETs and big transfers, not for durable writes (bench/baseline.py, the
durable baseline, is the one 4 KiB PUTs are compared with):

- `PUT /b` makes a bucket directory; `PUT /b/k` writes the body to `b/k` as it arrives
  (open, write each received chunk, close; no temp file, no fsync).
- `GET /b/k` reads the file in 1 MiB blocking reads and sends each.
- `GET /` answers 200 (start-up probes).

Usage: `python bench/rawasgi.py --address 127.0.0.1 --port 0 --dir DIR`; prints
`rawasgi listening on http://HOST:PORT` once it accepts connections.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from baseline import respond, serve

CHUNK = 1 << 20

Scope = dict[str, Any]
Receive = Any
Send = Any


class RawFiles:
    """The ASGI application."""

    def __init__(self, root: str) -> None:
        self.root = root

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        bucket, _, key = scope["path"].lstrip("/").partition("/")
        if not bucket:
            await respond(send, 200, b"rawasgi\n")
            return
        if bucket.startswith(".") or ".." in key.split("/") or key.startswith("/"):
            await respond(send, 400, b"bad name\n")
            return
        path = os.path.join(self.root, bucket, key) if key else os.path.join(self.root, bucket)
        method = scope["method"]
        if method == "PUT" and not key:
            os.makedirs(path, exist_ok=True)
            await respond(send, 200)
        elif method == "PUT":
            await self.put(receive, send, path)
        elif method == "GET" and key:
            await self.get(send, path)
        else:
            await respond(send, 405)

    async def put(self, receive: Receive, send: Send, path: str) -> None:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    raise ConnectionError("client went away")
                f.write(message.get("body", b""))
                if not message.get("more_body", False):
                    break
        await respond(send, 200)

    async def get(self, send: Send, path: str) -> None:
        try:
            f = open(path, "rb")  # noqa: SIM115 (closed below, after streaming)
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            await respond(send, 404)
            return
        with f:
            size = os.fstat(f.fileno()).st_size
            headers = [
                (b"content-length", str(size).encode()),
                (b"content-type", b"application/octet-stream"),
            ]
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            left = size
            while True:
                data = f.read(min(CHUNK, left)) if left else b""
                left -= len(data)
                more = left > 0 and bool(data)
                await send({"type": "http.response.body", "body": data, "more_body": more})
                if not more:
                    break


def main(argv: list[str] | None = None) -> int:
    return serve(RawFiles, "rawasgi", argv)


if __name__ == "__main__":
    sys.exit(main())
