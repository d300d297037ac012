"""A do-nothing HTTP/1.1 server for measuring the load client's own ceiling.

It parses just enough (request head, Content-Length body) to answer every request on a
keep-alive connection: PUT gets an empty 200, GET gets `--get-size` bytes. Whatever
ops/s the client reaches against it is the most the client could ever report, so a
server figure well below it is the server's, not the client's.

Usage: `python bench/nullserver.py --port 0 [--get-size 4096]`; prints
`null listening on http://127.0.0.1:PORT`.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import sys
from typing import cast


class NullProtocol(asyncio.Protocol):
    def __init__(self, get_response: bytes, put_response: bytes) -> None:
        self.get_response = get_response
        self.put_response = put_response
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.need = -1  # body bytes still to skip, -1 while reading a head
        self.is_get = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's isn't a subclass

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while True:
            if self.need < 0:
                end = self.buf.find(b"\r\n\r\n")
                if end < 0:
                    return
                head = bytes(self.buf[:end]).lower()
                del self.buf[: end + 4]
                self.is_get = head.startswith(b"get ")
                i = head.find(b"content-length:")
                self.need = 0
                if i >= 0:
                    j = head.find(b"\r\n", i)
                    self.need = int(head[i + 15 : j if j >= 0 else len(head)])
            if len(self.buf) < self.need:
                self.need -= len(self.buf)
                self.buf.clear()
                return
            del self.buf[: self.need]
            self.need = -1
            assert self.transport is not None
            self.transport.write(self.get_response if self.is_get else self.put_response)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--get-size", type=int, default=4096)
    args = parser.parse_args(argv)
    body = b"x" * args.get_size
    get_response = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body
    put_response = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", args.port))
    sock.listen(1024)

    async def serve() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(
            lambda: NullProtocol(get_response, put_response), sock=sock
        )
        print(f"null listening on http://127.0.0.1:{sock.getsockname()[1]}", flush=True)
        async with server:
            await server.serve_forever()

    try:
        import uvloop

        uvloop.run(serve())
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
