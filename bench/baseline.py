"""The fair baseline: a minimal ASGI app that only moves bytes between sockets and files.

Run by uvicorn with the settings shoal uses (uvloop, httptools, one worker, no access
log, no Server header; lifespan off, as there is nothing to start). It does the least
an object server must:

- `PUT /b` makes a bucket directory; `PUT /b/k` streams the body into a temporary file
  in 1 MiB writes on worker threads (anyio.to_thread), fsyncs it, renames it into place
  and fsyncs the parent directory, so a 200 means the object is durable and whole — the
  durability shoal promises (shoal additionally writes and fsyncs a metadata sidecar and
  computes MD5). A body that fits in one chunk costs one thread hop.
- `GET /b/k` streams the file back in 1 MiB preads on worker threads and honours one
  `Range: bytes=a-b` (also `a-` and `-n`).
- `GET /b?list` returns every key in the bucket, sorted, one per line (one response).

Usage: `python bench/baseline.py --address 127.0.0.1 --port 0 --dir DIR`; prints
`baseline listening on http://HOST:PORT` once it accepts connections.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import secrets
import socket
import sys
from collections.abc import Callable
from typing import Any

import anyio.to_thread
import uvicorn

CHUNK = 1 << 20
_RANGE_RE = re.compile(rb"^bytes=(\d*)-(\d*)$")

Scope = dict[str, Any]
Receive = Any
Send = Any


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _open_tmp(tmp: str) -> int:
    return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)


def _open_write(tmp: str, data: bytes) -> int:
    fd = _open_tmp(tmp)
    _write_all(fd, data)
    return fd


def _finish(fd: int, tmp: str, dest: str, data: bytes) -> None:
    """Write the last bytes, fsync, rename into place, fsync the directory."""
    if fd < 0:
        fd = _open_tmp(tmp)
    try:
        _write_all(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    parent = os.path.dirname(dest)
    os.makedirs(parent, exist_ok=True)
    os.replace(tmp, dest)
    _fsync_dir(parent)


def _unlink_quiet(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def _range(header: bytes | None, size: int) -> tuple[int, int] | None:
    """(start, end inclusive) for a satisfiable single range; (-1, -1) if unsatisfiable."""
    if header is None:
        return None
    m = _RANGE_RE.match(header.strip())
    if m is None:
        return None
    a, b = m.group(1), m.group(2)
    if not a:
        if not b or int(b) == 0:
            return (-1, -1)
        n = min(int(b), size)
        return (size - n, size - 1)
    start = int(a)
    end = min(int(b), size - 1) if b else size - 1
    if start >= size or end < start:
        return (-1, -1)
    return (start, end)


def _open_read(path: str, range_header: bytes | None) -> tuple[int, int, int, int, bytes]:
    """(fd, size, start, end, first chunk); end == -2 means unsatisfiable range."""
    fd = os.open(path, os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size
        rng = _range(range_header, size)
        if rng == (-1, -1):
            os.close(fd)
            return -1, size, -1, -2, b""
        start, end = rng if rng is not None else (0, size - 1)
        first = os.pread(fd, min(CHUNK, end - start + 1), start) if end >= start else b""
        return fd, size, start, end, first
    except BaseException:
        os.close(fd)
        raise


def _list(bucket_dir: str) -> bytes:
    names: list[str] = []
    for dirpath, _dirs, files in os.walk(bucket_dir):
        rel = os.path.relpath(dirpath, bucket_dir)
        prefix = "" if rel == "." else rel + "/"
        names.extend(prefix + f for f in files)
    names.sort()
    return "\n".join(names).encode()


async def respond(send: Send, status: int, body: bytes = b"", ctype: bytes = b"text/plain") -> None:
    headers = [(b"content-length", str(len(body)).encode()), (b"content-type", ctype)]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class Baseline:
    """The ASGI application."""

    def __init__(self, root: str) -> None:
        self.root = root
        self.tmp = os.path.join(root, ".tmp")
        os.makedirs(self.tmp, exist_ok=True)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        method: str = scope["method"]
        bucket, _, key = scope["path"].lstrip("/").partition("/")
        if not bucket:
            await respond(send, 200, b"baseline\n")
            return
        if bucket.startswith(".") or ".." in key.split("/") or key.startswith("/"):
            await respond(send, 400, b"bad name\n")
            return
        bucket_dir = os.path.join(self.root, bucket)
        if method == "PUT" and not key:
            await anyio.to_thread.run_sync(lambda: os.makedirs(bucket_dir, exist_ok=True))
            await respond(send, 200)
        elif method == "PUT":
            await self.put(receive, send, bucket_dir, os.path.join(bucket_dir, key))
        elif method == "GET" and not key:
            try:
                listing = await anyio.to_thread.run_sync(_list, bucket_dir)
            except FileNotFoundError:
                await respond(send, 404, b"no such bucket\n")
                return
            await respond(send, 200, listing)
        elif method == "GET":
            await self.get(scope, send, os.path.join(bucket_dir, key))
        else:
            await respond(send, 405, b"method not allowed\n")

    async def put(self, receive: Receive, send: Send, bucket_dir: str, dest: str) -> None:
        if not os.path.isdir(bucket_dir):
            await respond(send, 404, b"no such bucket\n")
            return
        tmp = os.path.join(self.tmp, secrets.token_hex(10))
        fd = -1
        pending: list[bytes] = []
        pending_len = 0
        try:
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    raise ConnectionError("client went away")
                chunk = message.get("body", b"")
                if chunk:
                    pending.append(chunk)
                    pending_len += len(chunk)
                more = message.get("more_body", False)
                if not more:
                    data = b"".join(pending)
                    await anyio.to_thread.run_sync(_finish, fd, tmp, dest, data)
                    fd = -2  # closed by _finish
                    break
                if pending_len >= CHUNK:
                    data = b"".join(pending)
                    pending, pending_len = [], 0
                    if fd == -1:
                        fd = await anyio.to_thread.run_sync(_open_write, tmp, data)
                    else:
                        await anyio.to_thread.run_sync(_write_all, fd, data)
        except BaseException:
            if fd >= 0:
                os.close(fd)
            _unlink_quiet(tmp)
            raise
        await respond(send, 200)

    async def get(self, scope: Scope, send: Send, path: str) -> None:
        range_header = None
        for name, value in scope["headers"]:
            if name == b"range":
                range_header = value
        try:
            fd, size, start, end, first = await anyio.to_thread.run_sync(
                _open_read, path, range_header
            )
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            await respond(send, 404, b"no such key\n")
            return
        if end == -2:
            await send(
                {
                    "type": "http.response.start",
                    "status": 416,
                    "headers": [
                        (b"content-range", f"bytes */{size}".encode()),
                        (b"content-length", b"0"),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": b""})
            return
        try:
            length = end - start + 1
            headers = [
                (b"content-length", str(length).encode()),
                (b"content-type", b"application/octet-stream"),
                (b"accept-ranges", b"bytes"),
            ]
            status = 200
            if range_header is not None:
                status = 206
                headers.append((b"content-range", f"bytes {start}-{end}/{size}".encode()))
            await send({"type": "http.response.start", "status": status, "headers": headers})
            pos = start + len(first)
            await send({"type": "http.response.body", "body": first, "more_body": pos <= end})
            while pos <= end:
                data = await anyio.to_thread.run_sync(os.pread, fd, min(CHUNK, end - pos + 1), pos)
                if not data:
                    raise OSError("file shrank while reading")
                pos += len(data)
                await send({"type": "http.response.body", "body": data, "more_body": pos <= end})
        finally:
            os.close(fd)


def serve(app_for: Callable[[str], Any], name: str, argv: list[str] | None = None) -> int:
    """Run `app_for(data dir)` on uvicorn with shoal's settings (uvloop, httptools, one
    worker), announcing `<name> listening on <url>` once it serves; shared by the raw
    ASGI server (rawasgi.py)."""
    parser = argparse.ArgumentParser(description=f"the bench's {name} server")
    parser.add_argument("--address", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--dir", required=True)
    args = parser.parse_args(argv)
    root = os.path.abspath(args.dir)
    os.makedirs(root, exist_ok=True)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((args.address, args.port))
    config = uvicorn.Config(
        app_for(root),
        loop="uvloop",
        http="httptools",
        ws="none",
        lifespan="off",
        interface="asgi3",
        proxy_headers=False,
        server_header=False,
        date_header=True,
        access_log=False,
        log_level="warning",
        workers=1,
    )

    class Announcing(uvicorn.Server):
        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets=sockets)
            if self.started:
                host, port = sock.getsockname()[:2]
                print(f"{name} listening on http://{host}:{port}", flush=True)

    try:
        Announcing(config).run(sockets=[sock])
    except KeyboardInterrupt:
        return 130
    finally:
        sock.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    return serve(Baseline, "baseline", argv)


if __name__ == "__main__":
    sys.exit(main())
