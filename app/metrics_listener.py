"""Prometheus metrics on an address and port of their own (`metrics.port`), away from
the S3 listener: prometheus-client's WSGI exposition app on a small threaded HTTP
server in a daemon thread, so a scrape never waits behind S3 traffic in the event loop
(and its statvfs calls never block it). Any path answers, as with prometheus-client's
own `start_http_server`; requests are not logged.

With several uvicorn workers every worker binds the port with SO_REUSEPORT and the
kernel hands each scrape to one of them; in multiprocess mode they all serve the same
figures (see app/metrics.py).
"""

from __future__ import annotations

import logging
import socket
import threading
from wsgiref.simple_server import WSGIRequestHandler, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app
from prometheus_client.exposition import ThreadingWSGIServer

log = logging.getLogger("shoal")


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        """Scrapes every few seconds are not worth a log line."""


class MetricsListener:
    """Serves `registry` on address:port once started (port 0 picks a free one:
    `port` holds it afterwards)."""

    def __init__(self, registry: CollectorRegistry, address: str, port: int, *, shared: bool):
        self.registry = registry
        self.address = address
        self.port = port
        self.shared = shared
        self._server: ThreadingWSGIServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        info = socket.getaddrinfo(
            self.address, self.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]

        class Server(ThreadingWSGIServer):
            address_family = info[0]
            allow_reuse_port = self.shared

        try:
            server = make_server(
                info[4][0], self.port, make_wsgi_app(self.registry), Server, _QuietHandler
            )
        except OSError as exc:
            where = f"{self.address}:{self.port}"
            raise OSError(exc.errno, f"metrics listener on {where}: {exc.strerror}") from exc
        self.port = server.server_address[1]
        self._server = server
        # Polled for shutdown every 0.1 s rather than 0.5: stopping the server waits on it.
        self._thread = threading.Thread(
            target=server.serve_forever, args=(0.1,), name="shoal-metrics", daemon=True
        )
        self._thread.start()
        host = f"[{self.address}]" if ":" in self.address else self.address
        log.info("metrics on http://%s:%d/metrics", host, self.port)

    def stop(self) -> None:
        """Blocks until the serving thread is done (call it off the event loop)."""
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
