"""One logging pipeline for everything shoal prints, built from structlog processors.

Three sources feed it: the access log (app/accesslog.py) hands its event dicts straight
to `render` (a LogRecord per request would cost more than the rest of a small GET's
logging); the stdlib loggers `shoal.*` (cluster and storage events, lifecycle) and
uvicorn's go through one handler whose ProcessorFormatter runs the same processors.
Every line ends up on stderr through one background writer, so lines never interleave
and the event loop never waits for a slow terminal or a full pipe.

A line is JSON (`logging.format = "json"`) or text, and either way starts with the same
four fields: timestamp (UTC, milliseconds), level, logger, event; then the event's own
fields. Text quotes a value only when it needs it, so keys with spaces or newlines can
neither break a line nor forge one:

    2026-05-09T10:00:00.123Z info  shoal.access: request request_id=17F0... key="a b"
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import queue
import re
import sys
import threading
import time
from collections.abc import Callable, MutableMapping
from typing import Any, TextIO

import structlog
from structlog.stdlib import ExtraAdder, ProcessorFormatter

from shoal.config import Config

EventDict = MutableMapping[str, Any]
Renderer = Callable[[Any, str, EventDict], str]

#: Loggers routed through the pipeline; everything else in the process is left alone.
ROOTS = ("shoal", "uvicorn")
_LEVELS = {"error": logging.ERROR, "warn": logging.WARNING, "info": logging.INFO}
_LEVELS["debug"] = logging.DEBUG
#: Record attributes that are presentation, not data (uvicorn's coloured copy).
_DROPPED = ("color_message", "_record", "_from_structlog")
_HEAD = ("timestamp", "level", "logger", "event")


class BackgroundWriter:
    """Lines queued by any thread, written to a stream by one daemon thread in batches
    (every 50 ms, and at exit): a flush per line would release the GIL once per request,
    and with I/O threads busy the event loop then waits to get it back.

    `synchronous()` writes what is queued and every later line at once: for the last
    lines of a process that may end by a signal (uvicorn re-raises SIGTERM after its
    graceful shutdown), where atexit handlers never run."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream
        self._lines: queue.SimpleQueue[str] = queue.SimpleQueue()
        self._wake = threading.Event()
        self._lock = threading.Lock()
        self._sync = False
        threading.Thread(target=self._drain, name="shoal-log", daemon=True).start()
        atexit.register(self.flush)

    def write(self, line: str) -> None:
        self._lines.put(line)
        if self._sync:
            self.flush()
        elif not self._wake.is_set():
            self._wake.set()

    def synchronous(self) -> None:
        self._sync = True
        self.flush()

    def flush(self) -> None:
        with self._lock:
            lines = []
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
            self._wake.wait()
            time.sleep(0.05)  # let lines gather: one write and one wake-up per batch
            self._wake.clear()
            # stderr closed or broken: the lines are lost, the server goes on
            with contextlib.suppress(OSError, ValueError):
                self.flush()


class Clock:
    """ISO 8601 UTC timestamps with milliseconds; strftime runs once a second."""

    def __init__(self) -> None:
        self._cache: tuple[int, str] = (-1, "")  # one tuple: threads swap it atomically

    def stamp(self, now: float) -> str:
        second = int(now)
        cached, prefix = self._cache
        if second != cached:
            prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
            self._cache = (second, prefix)
        return f"{prefix}.{int((now - second) * 1000):03d}Z"


CLOCK = Clock()

_SKIP = frozenset((*_HEAD, "exception"))
_QUOTE = re.compile(r"[\s\"'=\\]")


def render_text(_: Any, __: str, event: EventDict) -> str:
    """`TIMESTAMP LEVEL LOGGER: EVENT key=value ...`, then a traceback if there is one.
    A string value is JSON-quoted when empty or holding spaces, quotes, `=`, a
    backslash or anything unprintable. (structlog's ConsoleRenderer takes ~20 µs a
    line, this ~5: it runs once per request.)"""
    message = str(event.get("event", ""))
    if not message.isprintable():
        message = json.dumps(message)[1:-1]
    head = f"{event.get('timestamp', '')} {event.get('level', '-'):<5} {event.get('logger')}:"
    parts = [head, message]
    for key, value in event.items():
        if value is None or key in _SKIP:
            continue
        kind = value.__class__
        if kind is str:
            if not value or _QUOTE.search(value) or not value.isprintable():
                value = json.dumps(value)
        elif kind is int or kind is float:
            value = repr(value)
        else:
            value = json.dumps(value, default=str, separators=(",", ":"))
        parts.append(f"{key}={value}")
    line = " ".join(parts)
    if event.get("exception"):
        line += "\n" + str(event["exception"])
    return line


def renderer(json_format: bool) -> Renderer:
    return render_json if json_format else render_text


#: Made once: json.dumps given `default` (as structlog's JSONRenderer calls it) makes an
#: encoder per call, a quarter of what rendering an access-log line cost.
_JSON = json.JSONEncoder(default=repr)


def render_json(_: Any, __: str, event: EventDict) -> str:
    """One JSON object (what structlog's JSONRenderer writes): a value JSON has no
    form for is written as its repr."""
    return _JSON.encode(event)


def _stamp(_: Any, __: str, event: EventDict) -> EventDict:
    record: logging.LogRecord | None = event.get("_record")
    event["timestamp"] = CLOCK.stamp(record.created if record is not None else time.time())
    return event


def _order(_: Any, __: str, event: EventDict) -> EventDict:
    """The four common fields first, presentation-only attributes dropped."""
    ordered = {k: event.pop(k) for k in _HEAD if k in event}
    for key in _DROPPED:
        event.pop(key, None)
    ordered.update(event)
    return ordered


def formatter(json_format: bool) -> ProcessorFormatter:
    """For stdlib records: the record's message, level, logger name, time and `extra`
    fields, and its traceback, rendered like every other line."""
    return ProcessorFormatter(
        foreign_pre_chain=[
            structlog.stdlib.add_log_level,
            structlog.stdlib.add_logger_name,
            _stamp,
            ExtraAdder(),
        ],
        processors=[structlog.processors.format_exc_info, _order, renderer(json_format)],
    )


class PipelineHandler(logging.Handler):
    """Formats a record on the caller's thread, writes it on the writer's."""

    def __init__(self, writer: BackgroundWriter, json_format: bool) -> None:
        super().__init__()
        self.writer = writer
        self.setFormatter(formatter(json_format))
        self.addFilter(_not_an_abort)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.writer.write(self.format(record))
        except Exception:
            self.handleError(record)


def _not_an_abort(record: logging.LogRecord) -> bool:
    """uvicorn reports a request task cancelled at shutdown, or one stopped by a timeout
    after its response began, as an application error; the access log line for that
    request already says what happened (app/exchange.py)."""
    exc = record.exc_info[1] if record.exc_info else None
    return not (record.name == "uvicorn.error" and getattr(exc, "shoal_abort", False))


_writer: BackgroundWriter | None = None
_handler: PipelineHandler | None = None
_configured = False
#: Set when shoal runs inside someone else's process (app.server's in-process mode):
#: that process's logging (and its malloc and gc, see app.asgi) is its own business.
hosted = False


def writer() -> BackgroundWriter:
    """The process's one stderr writer (access lines and records share it)."""
    global _writer
    if _writer is None:
        _writer = BackgroundWriter()
    return _writer


def finish() -> None:
    """The app has stopped: write every line now, and later ones at once, since the
    process may end by a signal (BackgroundWriter.synchronous)."""
    if _writer is not None and not hosted:
        _writer.synchronous()


def quiet(config: Config) -> bool:
    return config.server.silent or not config.logging.enabled


def configure(config: Config) -> None:
    """Route `shoal.*` and uvicorn's loggers through the pipeline at the configured
    level, or silence them. uvicorn's per-request access lines are redundant beside
    shoal.access and cost a LogRecord each, so they show only at debug level."""
    global _handler, _configured
    _configured = True
    if _handler is not None:
        for name in ROOTS:
            logging.getLogger(name).removeHandler(_handler)
    silent = quiet(config)
    level = logging.CRITICAL + 1 if silent else _LEVELS[config.logging.level]
    _handler = None if silent else PipelineHandler(writer(), config.logging.format == "json")
    for name in ROOTS:
        logger = logging.getLogger(name)
        for old in list(logger.handlers):
            logger.removeHandler(old)
        if _handler is not None:
            logger.addHandler(_handler)
        logger.setLevel(level)
        logger.propagate = False
    # uvicorn sets levels on these from its own --log-level; shoal's setting wins.
    for name in ("uvicorn.error", "uvicorn.asgi"):
        child = logging.getLogger(name)
        child.handlers.clear()
        child.setLevel(level)
        child.propagate = True
    access = logging.getLogger("uvicorn.access")
    access.handlers.clear()
    access.setLevel(level if level <= logging.DEBUG else logging.WARNING)
    access.propagate = True


def configure_once(config: Config) -> None:
    """For `uvicorn shoal:create_app`: take over logging unless `shoal serve` already did
    or the process only hosts an embedded server."""
    if not _configured and not hosted:
        configure(config)
