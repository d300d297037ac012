"""The access log: one line per request (logger `shoal.access`), written off the event loop.

The line is rendered here, with the logging pipeline's renderer (app/logs.py), and
handed to the background writer: no LogRecord, no handler lock, no flush per request.
Its fields never include headers, so no credential, signature or presigned query ends
up in a log; the access key id (not secret) is the verified one, or for unsigned or
refused requests the one the request claims.
"""

from __future__ import annotations

import re
import time
from typing import Any

from shoal.app import logs

_CREDENTIAL = re.compile(rb"Credential=([A-Za-z0-9+=,.@_-]{1,128})/")
_QUERY_CREDENTIAL = re.compile(rb"(?:^|&)X-Amz-Credential=([A-Za-z0-9+=,.@_-]{1,128})%2F", re.I)
# SigV2 (`AWS key:signature`, `AWSAccessKeyId=key`): its requests carry no SigV4 proof.
_SIGV2 = re.compile(rb"AWS ([A-Za-z0-9+=,.@_-]{1,128}):")
_QUERY_SIGV2 = re.compile(rb"(?:^|&)AWSAccessKeyId=([A-Za-z0-9+=,.@_-]{1,128})(?:&|$)")


def claimed_access_key(scope: dict[str, Any]) -> str | None:
    """The access key id a SigV4 or SigV2 request names (header or presigned query)."""
    for name, value in scope["headers"]:
        if name == b"authorization":
            match = _CREDENTIAL.search(value) or _SIGV2.match(value)
            return match.group(1).decode() if match else None
    query: bytes = scope.get("query_string", b"")
    if b"Credential" in query:
        match = _QUERY_CREDENTIAL.search(query)
        return match.group(1).decode() if match else None
    if b"AWSAccessKeyId" in query:
        match = _QUERY_SIGV2.search(query)
        return match.group(1).decode() if match else None
    return None


class AccessLog:
    """Renders request lines (text or JSON, as configured) and queues them."""

    def __init__(self, json_format: bool, writer: logs.BackgroundWriter | None = None) -> None:
        self._render = logs.renderer(json_format)
        self._writer = writer or logs.writer()

    def __call__(self, fields: dict[str, Any]) -> None:
        event = {
            "timestamp": logs.CLOCK.stamp(time.time()),
            "level": "info",
            "logger": "shoal.access",
            "event": "request",
            **fields,
        }
        self._writer.write(self._render(None, "info", event))
