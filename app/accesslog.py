"""The access log: one line per request, written off the event loop.

It bypasses the logging module on purpose: a LogRecord plus a StreamHandler flush per
request cost about half of a small GET's CPU here (the flush releases the GIL, and with
I/O threads busy the loop then waits to get it back). The line is built with a
once-a-second timestamp and queued; a daemon thread writes whatever gathered every
50 ms, and at exit. The format matches the logging configuration of `shoal serve`.
"""

from __future__ import annotations

import atexit
import json
import queue
import sys
import threading
import time
from typing import Any, TextIO


class BackgroundWriter:
    """Lines queued by any thread, written to a stream by one daemon thread in batches."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream
        self._lines: queue.SimpleQueue[str] = queue.SimpleQueue()
        threading.Thread(target=self._drain, name="shoal-log", daemon=True).start()
        atexit.register(self.flush)

    def write(self, line: str) -> None:
        self._lines.put(line)

    def flush(self, first: str | None = None) -> None:
        lines = [] if first is None else [first]
        while True:
            try:
                lines.append(self._lines.get_nowait())
            except queue.Empty:
                break
        if lines:
            stream = self._stream or sys.stderr  # looked up late: tests swap sys.stderr
            stream.write("\n".join(lines) + "\n")
            stream.flush()

    def _drain(self) -> None:
        while True:
            first = self._lines.get()
            time.sleep(0.05)  # let lines gather: one write and one wake-up per batch
            self.flush(first)


class AccessLog:
    """Formats request lines as text or JSON (the fields never include headers)."""

    def __init__(self, json_format: bool, writer: BackgroundWriter | None = None) -> None:
        self._json = json_format
        self._writer = writer or BackgroundWriter()
        self._second = -1
        self._stamp = ""

    def _timestamp(self, now: float) -> str:
        second = int(now)
        if second != self._second:
            self._second = second
            fmt = "%Y-%m-%dT%H:%M:%S%z" if self._json else "%Y-%m-%d %H:%M:%S"
            self._stamp = time.strftime(fmt, time.localtime(second))
        return self._stamp

    def __call__(self, fields: dict[str, Any]) -> None:
        now = time.time()
        event = (
            f"{fields['request_id']} {fields['operation']} {fields['remote']}"
            f" {fields['bucket'] or ''}/{fields['key'] or ''} {fields['status']}"
            f" {fields['duration_ms']:.2f}ms"
        )
        if self._json:
            line = json.dumps(
                {
                    "timestamp": self._timestamp(now),
                    "level": "info",
                    "logger": "shoal.access",
                    "event": event,
                    **fields,
                }
            )
        else:
            millis = int(now * 1000) % 1000
            line = f"{self._timestamp(now)},{millis:03d} INFO    shoal.access: {event}"
        self._writer.write(line)
