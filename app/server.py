"""Run shoal from Python: a real HTTP server on a free port, in-process or in a
subprocess, for tests and tools (the reference's `SmartStorage.createAndStart`).

In-process mode runs uvicorn as a task on the caller's event loop (or, for `SyncServer`,
on a private loop in a background thread), so starting takes milliseconds. Subprocess
mode runs `python -m shoal serve` and learns the port from its "listening" line, which
isolates the server from the caller's process (signals, globals, crashes).

This module also holds the uvicorn settings and socket binding shared with the CLI, so
both ways of serving behave the same.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import json
import logging
import os
import re
import signal
import socket
import ssl
import sys
import tempfile
import threading
import urllib.error
import urllib.request
import weakref
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import uvicorn

import shoal
from shoal.app import lifecycle, logs
from shoal.auth.signer import signed_headers
from shoal.config import Config, StorageConfig, load_config
from shoal.storage.diskio import rmtree_quiet

AppFactory = Callable[[Config], Any]

#: The line `shoal serve` prints on stdout once it accepts connections.
LISTENING_RE = re.compile(r"^shoal listening on (https?)://(\[[^\]]+\]|[^:/\s]+):(\d+)\s*$")

_UVICORN_LEVELS = {"error": "error", "warn": "warning", "info": "info", "debug": "debug"}

log = logging.getLogger("shoal.server")


# ---------------------------------------------------------------- shared with the CLI


def bind_socket(address: str, port: int) -> socket.socket:
    """A bound (not yet listening) TCP socket; port 0 picks a free port. Binding here,
    rather than inside uvicorn, is what lets callers learn the real port."""
    infos = socket.getaddrinfo(address, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    family, type_, proto, _, sockaddr = infos[0]
    sock = socket.socket(family, type_, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(sockaddr)
    except BaseException:
        sock.close()
        raise
    return sock


def url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def listening_line(sock: socket.socket, use_ssl: bool) -> str:
    """`shoal listening on URL`, a URL a user can open: for a wildcard bind (0.0.0.0,
    ::) the loopback address, which reaches it from the same host."""
    host, port = sock.getsockname()[:2]
    scheme = "https" if use_ssl else "http"
    return f"shoal listening on {scheme}://{url_host(client_host(host))}:{port}"


def client_host(address: str) -> str:
    """Where a local client should connect to reach a server bound to `address`."""
    if address in ("", "0.0.0.0"):
        return "127.0.0.1"
    if address == "::":
        return "::1"
    return address


#: Seconds `shoal serve` lets requests in flight finish after SIGTERM (uvicorn's
#: --timeout-graceful-shutdown); an embedded server's stop() waits less.
GRACEFUL_SHUTDOWN = 30.0
EMBEDDED_GRACEFUL_SHUTDOWN = 5.0


def uvicorn_config(
    app: Any, cfg: Config, *, embedded: bool, graceful_shutdown: float | None = None
) -> uvicorn.Config:
    """The uvicorn settings every way of serving shares: httptools with a time limit on
    request heads (app/protocol.py), lifespan on, no proxy headers trusted, no Server
    header, a Date header; HTTPS when server.tls is set.

    Logging: `shoal serve` has already routed uvicorn's loggers through shoal's pipeline
    (app/logs.py), so uvicorn leaves them alone here. Embedded, the host process's
    logging is left alone too, but for uvicorn's levels; failures still reach stderr
    through logging's last-resort handler and the error raised by Server.start()."""
    level = None
    if embedded:
        level = "critical" if logs.quiet(cfg) else _UVICORN_LEVELS[cfg.logging.level]
    if graceful_shutdown is None:
        graceful_shutdown = EMBEDDED_GRACEFUL_SHUTDOWN if embedded else GRACEFUL_SHUTDOWN
    tls = cfg.server.tls
    return uvicorn.Config(
        app,
        host=cfg.server.address,  # (the socket is bound by the caller: for app/exposure.py)
        port=cfg.server.port,
        loop="uvloop",
        http="shoal.app.protocol:HttpProtocol",
        ws="none",
        lifespan="on",
        interface="asgi3",
        proxy_headers=False,
        server_header=False,
        date_header=True,
        access_log=False,
        log_config=None,
        log_level=level,
        ssl_certfile=tls.cert_file,
        ssl_keyfile=tls.key_file,
        timeout_graceful_shutdown=graceful_shutdown,  # type: ignore[arg-type]
    )


class ShoalUvicornServer(uvicorn.Server):
    """uvicorn.Server that reports when it is listening, tells the app when shutdown
    begins (so /-/ready turns 503 while requests drain) and, when embedded, neither
    takes over the host's signal handlers nor exits the host process on a failed start.

    Not embedded, SIGTERM is a request to stop, answered by a graceful shutdown and
    exit status 0; uvicorn itself re-raises the signal once it has stopped, which would
    end the process as killed by SIGTERM. SIGINT is re-raised (KeyboardInterrupt)."""

    def __init__(
        self,
        config: uvicorn.Config,
        *,
        on_started: Callable[[], None] | None = None,
        embedded: bool = False,
    ) -> None:
        self._exit_requested = False
        self._exit_event: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        super().__init__(config)
        self._on_started = on_started
        self._embedded = embedded
        self._signals: set[int] = set()
        self.startup_failed = False

    # uvicorn polls `should_exit` every 0.1 s; setting it here also wakes main_loop at
    # once (from any thread, or a signal handler), so a stop costs no polling delay.
    @property  # type: ignore[override]
    def should_exit(self) -> bool:
        return self._exit_requested

    @should_exit.setter
    def should_exit(self, value: bool) -> None:
        self._exit_requested = value
        loop, event = self._loop, self._exit_event
        if value and loop is not None and event is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(event.set)

    async def main_loop(self) -> None:
        """uvicorn's loop (refresh the Date header every second), woken by a stop."""
        self._exit_event = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        counter = 0
        while not await self.on_tick(counter):
            counter = (counter + 10) % 864000  # on_tick's "once per second" count
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._exit_event.wait(), 1.0)

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        if self._embedded or threading.current_thread() is not threading.main_thread():
            yield
            return
        handled = (signal.SIGINT, signal.SIGTERM)
        previous = {sig: signal.signal(sig, self._on_signal) for sig in handled}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        if signal.SIGINT in self._signals:
            signal.raise_signal(signal.SIGINT)

    def _on_signal(self, sig: int, frame: Any) -> None:
        # Nothing more here (no logging: it takes locks the interrupted code may hold).
        self._signals.add(sig)
        self.handle_exit(sig, frame)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        """uvicorn's shutdown, without its fixed 0.1 s pause when nothing is in flight:
        connections are told to close, then awaited until gone (uvicorn polls for them
        only when some are left)."""
        why = ",".join(signal.Signals(s).name for s in sorted(self._signals)) or None
        lifecycle.shutting_down(self.config.loaded_app, why)
        state = self.server_state
        if state.tasks or any(not _idle(c) for c in state.connections):
            await super().shutdown(sockets=sockets)
            return
        for server in self.servers:
            server.close()
        for sock in sockets or []:
            sock.close()
        for connection in list(state.connections):
            connection.shutdown()
        for server in self.servers:
            await server.wait_closed()
        if not self.force_exit:
            await self.lifespan.shutdown()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        try:
            with _known_failures_untraced(self.config, embedded=self._embedded):
                await super().startup(sockets=sockets)
        except SystemExit:
            if not self._embedded:
                raise
            self.startup_failed = True
            self.should_exit = True
            return
        if self.started and self._on_started is not None:
            self._on_started()


class _UntracedStart(logging.Filter):
    """Drops the traceback uvicorn logs for a failed startup when the app has already
    said, in one line, why (lifecycle.start_error): `shoal serve` prints that line."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__()
        self._config = config

    def filter(self, record: logging.LogRecord) -> bool:
        text = str(record.msg)
        known = lifecycle.start_error(self._config.loaded_app) is not None
        return not (known and text.startswith("Traceback (most recent call last)"))


@contextlib.contextmanager
def _known_failures_untraced(config: uvicorn.Config, *, embedded: bool) -> Iterator[None]:
    if embedded:  # the host gets the traceback in the RuntimeError start() raises
        yield
        return
    logger = logging.getLogger("uvicorn.error")
    untraced = _UntracedStart(config)
    logger.addFilter(untraced)
    try:
        yield
    finally:
        logger.removeFilter(untraced)


def _idle(connection: Any) -> bool:
    """An HTTP connection between requests (keep-alive): shutdown() closes it at once."""
    return getattr(connection, "cycle", None) is None or bool(connection.cycle.response_complete)


def default_app_factory(cfg: Config) -> Any:
    from shoal.app.asgi import create_app

    return create_app(cfg)


def import_factory(spec: str) -> AppFactory:
    """'module:attr' -> the callable (for tests and tools that serve another app)."""
    module, _, attr = spec.partition(":")
    factory: AppFactory = getattr(importlib.import_module(module), attr or "create_app")
    return factory


# ---------------------------------------------------------------- embedded API


@dataclass(frozen=True)
class StorageDescriptor:
    """How a client reaches a running server (the reference's IS3Descriptor)."""

    endpoint: str
    port: int
    access_key: str
    access_secret: str
    use_ssl: bool = False
    region: str = "us-east-1"

    @property
    def endpoint_url(self) -> str:
        scheme = "https" if self.use_ssl else "http"
        return f"{scheme}://{url_host(self.endpoint)}:{self.port}"

    def boto3_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for `boto3.client("s3", **kwargs)`. Pair them with
        path-style addressing: `config=botocore.config.Config(s3={"addressing_style":
        "path"})`."""
        return {
            "endpoint_url": self.endpoint_url,
            "aws_access_key_id": self.access_key,
            "aws_secret_access_key": self.access_secret,
            "region_name": self.region,
        }


def embedded_config(config: Config | Mapping[str, Any] | None = None) -> tuple[Config, bool]:
    """The config an embedded server runs with, and whether it needs a temporary data
    directory. A Config is used exactly as given. A mapping is applied on top of the
    embedded defaults (127.0.0.1, port 0, clean slate, silent) and the environment is
    not read, so a developer's SHOAL_* variables cannot leak into tests."""
    if isinstance(config, Config):
        return load_config(config), False
    base = load_config(
        {
            "server": {"address": "127.0.0.1", "port": 0, "silent": True},
            "storage": {"clean_slate": True},
        },
        env={},
    )
    cfg = base.replace(config or {})
    return cfg, cfg.storage.directory == StorageConfig().directory


async def _reap(task: asyncio.Future[Any]) -> None:
    """Wait for a task just cancelled: its cancellation is expected, any other failure
    is logged (the caller is stopping and has nothing to raise it to)."""
    try:
        await task
    except asyncio.CancelledError:
        pass
    except Exception:
        log.warning("a server task failed while stopping", exc_info=True)


def _remove_tree(path: str) -> None:
    rmtree_quiet(path)  # not shutil.rmtree: keys nest 1,023 directories deep


def _terminate(pid: int) -> None:
    with contextlib.suppress(OSError):
        os.kill(pid, signal.SIGTERM)


class Server:
    """An embedded shoal server.

    async with Server({"auth": {"enabled": False}}) as server:
        await server.create_bucket("b")
        client = boto3.client("s3", **server.get_storage_descriptor().boto3_kwargs())
    """

    def __init__(
        self,
        config: Config | Mapping[str, Any] | None = None,
        *,
        subprocess: bool = False,
        app_factory: AppFactory | str | None = None,
        startup_timeout: float = 30.0,
        stop_timeout: float = 10.0,
    ) -> None:
        self._input = config
        self.subprocess = subprocess
        # Another app to serve instead of app.asgi.create_app: a callable, or
        # "module:callable" (what subprocess mode passes to the child).
        self._factory_spec: str | None = None
        if isinstance(app_factory, str):
            self._factory_spec, app_factory = app_factory, import_factory(app_factory)
        elif app_factory is not None:
            self._factory_spec = f"{app_factory.__module__}:{app_factory.__qualname__}"
        self._app_factory: AppFactory = app_factory or default_app_factory
        self.startup_timeout = startup_timeout
        self.stop_timeout = stop_timeout
        self.config: Config | None = None
        self.app: Any = None  # the ASGI app, in-process mode only
        self._port: int | None = None
        self._host = "127.0.0.1"
        self._cleanup: list[weakref.finalize] = []
        # in-process
        self._uvicorn: ShoalUvicornServer | None = None
        self._task: asyncio.Task[None] | None = None
        self._sock: socket.socket | None = None
        # subprocess
        self._proc: asyncio.subprocess.Process | None = None
        self._pump: asyncio.Task[None] | None = None
        self._kill_at_exit: weakref.finalize | None = None
        #: Subprocess mode: the child's exit status once stop() has waited for it
        #: (0 after a clean stop).
        self.exit_status: int | None = None

    # -- construction

    @classmethod
    async def create_and_start(
        cls,
        config: Config | Mapping[str, Any] | None = None,
        *,
        subprocess: bool = False,
        **kwargs: Any,
    ) -> Server:
        server = cls(config, subprocess=subprocess, **kwargs)
        await server.start()
        return server

    @classmethod
    def create_and_start_sync(
        cls,
        config: Config | Mapping[str, Any] | None = None,
        *,
        subprocess: bool = False,
        **kwargs: Any,
    ) -> SyncServer:
        return SyncServer.create_and_start(config, subprocess=subprocess, **kwargs)

    # -- state

    @property
    def running(self) -> bool:
        return self._port is not None

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("shoal server is not running")
        return self._port

    @property
    def endpoint_url(self) -> str:
        return self.get_storage_descriptor().endpoint_url

    def get_storage_descriptor(self) -> StorageDescriptor:
        """Connection details for S3 clients; credentials are the first configured pair."""
        cfg = self.config
        if cfg is None or self._port is None:
            raise RuntimeError("shoal server is not running")
        return StorageDescriptor(
            endpoint=self._host,
            port=self._port,
            access_key=cfg.access_key,
            access_secret=cfg.secret_key,
            use_ssl=cfg.server.tls.enabled,
            region=cfg.server.region,
        )

    # -- lifecycle

    async def start(self) -> None:
        if self.running:
            return
        cfg, needs_dir = embedded_config(self._input)
        if needs_dir:
            tmp = tempfile.mkdtemp(prefix="shoal-")
            self._cleanup.append(weakref.finalize(self, _remove_tree, tmp))
            cfg = cfg.replace(storage={"directory": tmp})
        self.config = cfg
        self._host = client_host(cfg.server.address)
        try:
            if self.subprocess:
                await self._start_subprocess(cfg)
            else:
                await self._start_in_process(cfg)
        except BaseException:
            try:
                await self.stop()
            except Exception:  # the start's own error is what the caller needs to see
                log.warning("cleanup after a failed start failed", exc_info=True)
            raise

    async def stop(self) -> None:
        """Stop serving (requests in flight finish first) and remove the temporary data
        directory. Safe to call twice."""
        try:
            if self._proc is not None:
                await self._stop_subprocess()
            elif self._task is not None:
                await self._stop_in_process()
        finally:
            await self._release()

    async def _release(self) -> None:
        if self._sock is not None:
            self._sock.close()
        if self._pump is not None:
            self._pump.cancel()
            await _reap(self._pump)
        self._sock = self._task = self._uvicorn = self._proc = self._pump = None
        self._port = None
        self.app = None
        for fin in self._cleanup:
            fin()
        self._cleanup.clear()

    async def __aenter__(self) -> Server:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    # -- operations

    async def create_bucket(self, name: str) -> dict[str, Any]:
        """Create a bucket; returns {"name": name} like the reference."""
        if not self.running:
            raise RuntimeError("shoal server is not running")
        if self._proc is None:
            info = await self.app.state.backend.create_bucket(name)
            return {"name": info.name}
        await asyncio.to_thread(self._http, "PUT", "/" + name)
        return {"name": name}

    async def cluster_status(self) -> dict[str, Any]:
        """The reference's `clusterStatus`: this node's drives, sets and healing
        (`{"mode": "standalone"}` without cluster mode)."""
        return json.loads(await self._admin("GET", "/-/cluster"))

    async def heal(self) -> dict[str, Any]:
        """Run a healing scan now (cluster mode) and return its report."""
        return json.loads(await self._admin("POST", "/-/heal"))

    async def _admin(self, method: str, path: str) -> bytes:
        if not self.running:
            raise RuntimeError("shoal server is not running")
        return await asyncio.to_thread(self._http, method, path)

    def _http(self, method: str, path: str, body: bytes | None = None) -> bytes:
        """One request to the server, SigV4-signed with the first configured credential
        (harmless when auth is off)."""
        desc = self.get_storage_descriptor()
        req = urllib.request.Request(desc.endpoint_url + path, data=body, method=method)
        host = desc.endpoint_url.split("://", 1)[1]
        for name, value in signed_headers(
            method, path, host, desc.access_key, desc.access_secret, desc.region
        ).items():
            req.add_header(name, value)
        if body is None and method in ("PUT", "POST"):
            req.add_header("Content-Length", "0")
        context = None
        if desc.use_ssl:
            # Our own child on loopback, typically with a self-signed certificate.
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        try:
            with urllib.request.urlopen(req, timeout=30, context=context) as resp:
                data: bytes = resp.read()
                return data
        except urllib.error.HTTPError as e:
            detail = e.read().decode("utf-8", "replace")
            raise RuntimeError(f"{method} {path} failed: HTTP {e.code}: {detail}") from None

    # -- in-process

    async def _start_in_process(self, cfg: Config) -> None:
        logs.hosted = True  # someone else's process: create_app leaves logging, malloc, gc be
        self._sock = bind_socket(cfg.server.address, cfg.server.port)
        self.app = self._app_factory(cfg)
        started = asyncio.Event()
        server = ShoalUvicornServer(
            uvicorn_config(self.app, cfg, embedded=True), on_started=started.set, embedded=True
        )
        errors = _ErrorCollector()
        with errors.attached():
            task = asyncio.create_task(server.serve(sockets=[self._sock]), name="shoal-server")
            self._uvicorn, self._task = server, task
            waiter = asyncio.create_task(started.wait())
            try:
                await asyncio.wait(
                    {task, waiter},
                    timeout=self.startup_timeout,
                    return_when=asyncio.FIRST_COMPLETED,
                )
            finally:
                waiter.cancel()
        if not started.is_set():
            await self._stop_in_process()
            raise RuntimeError(f"shoal server failed to start{errors.summary()}")
        self._port = self._sock.getsockname()[1]

    async def _stop_in_process(self) -> None:
        server, task = self._uvicorn, self._task
        if server is None or task is None:
            return
        server.should_exit = True
        try:
            await asyncio.wait_for(asyncio.shield(task), timeout=self.stop_timeout)
        except TimeoutError:
            server.force_exit = True
            task.cancel()
            await _reap(task)
        finally:
            self._task = None
        if task.done() and not task.cancelled() and task.exception() is not None:
            raise RuntimeError("shoal server stopped with an error") from task.exception()

    # -- subprocess

    async def _start_subprocess(self, cfg: Config) -> None:
        fd, conf_path = tempfile.mkstemp(prefix="shoal-", suffix=".toml")
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(cfg.to_toml())
        self._cleanup.append(weakref.finalize(self, _unlink, conf_path))
        # The child imports shoal from where this process did (the folder holding the
        # `shoal` package), whatever the caller's working directory or sys.path.
        root = str(Path(shoal.__file__).resolve().parent.parent)
        env = {k: v for k, v in os.environ.items() if not k.upper().startswith("SHOAL_")}
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
        env["PYTHONUNBUFFERED"] = "1"
        cmd = [
            sys.executable,
            "-m",
            "shoal",
            "serve",
            "--config",
            conf_path,
            "--port",
            str(cfg.server.port),
            "--address",
            cfg.server.address,
            "--exit-with-parent",
        ]
        if self._factory_spec:
            cmd += ["--app", self._factory_spec]
        proc = await asyncio.create_subprocess_exec(
            *cmd,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            env=env,
        )
        self._proc = proc
        # If the owner never calls stop(): at exit, or when this object is collected.
        self._kill_at_exit = weakref.finalize(self, _terminate, proc.pid)
        assert proc.stdout is not None
        try:
            while True:
                raw = await asyncio.wait_for(proc.stdout.readline(), self.startup_timeout)
                if not raw:
                    code = await proc.wait()
                    raise RuntimeError(
                        f"shoal subprocess exited with status {code} before listening "
                        "(its stderr is above)"
                    )
                m = LISTENING_RE.match(raw.decode("utf-8", "replace"))
                if m:
                    break
                self._echo(raw)
        except TimeoutError:
            raise RuntimeError(
                f"shoal subprocess did not start within {self.startup_timeout}s"
            ) from None
        self._port = int(m.group(3))
        self._pump = asyncio.create_task(self._drain(proc.stdout))

    def _echo(self, raw: bytes) -> None:
        if self.config is not None and not self.config.server.silent:
            sys.stdout.write(raw.decode("utf-8", "replace"))
            sys.stdout.flush()

    async def _drain(self, stream: asyncio.StreamReader) -> None:
        """Keep reading the child's stdout so it never blocks on a full pipe."""
        while raw := await stream.readline():
            self._echo(raw)

    async def _stop_subprocess(self) -> None:
        """SIGTERM (graceful: requests in flight finish), SIGKILL after stop_timeout."""
        proc = self._proc
        if proc is None:
            return
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), self.stop_timeout)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
        self.exit_status = proc.returncode
        if self._kill_at_exit is not None:
            self._kill_at_exit.detach()  # never signal a recycled pid
            self._kill_at_exit = None
        if proc.stdin is not None:
            proc.stdin.close()


def _unlink(path: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)


class _ErrorCollector(logging.Handler):
    """Collects uvicorn's error lines during startup for the exception message."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        if record.exc_info and record.exc_info[1] is not None:
            text += f": {record.exc_info[1]!r}"
        self.lines.append(text)

    @contextlib.contextmanager
    def attached(self) -> Iterator[None]:
        logger = logging.getLogger("uvicorn.error")
        logger.addHandler(self)
        try:
            yield
        finally:
            logger.removeHandler(self)

    def summary(self) -> str:
        return (": " + " | ".join(self.lines)) if self.lines else ""


class SyncServer:
    """The embedded server for synchronous code: the same API without `await`, running
    on a private event loop in a background thread (or as a subprocess).

        with SyncServer() as server:
            server.create_bucket("b")
    """

    def __init__(
        self,
        config: Config | Mapping[str, Any] | None = None,
        *,
        subprocess: bool = False,
        **kwargs: Any,
    ) -> None:
        self.server = Server(config, subprocess=subprocess, **kwargs)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    @classmethod
    def create_and_start(
        cls,
        config: Config | Mapping[str, Any] | None = None,
        *,
        subprocess: bool = False,
        **kwargs: Any,
    ) -> SyncServer:
        server = cls(config, subprocess=subprocess, **kwargs)
        server.start()
        return server

    @property
    def config(self) -> Config | None:
        return self.server.config

    @property
    def app(self) -> Any:
        return self.server.app

    @property
    def running(self) -> bool:
        return self.server.running

    @property
    def port(self) -> int:
        return self.server.port

    @property
    def endpoint_url(self) -> str:
        return self.server.endpoint_url

    def get_storage_descriptor(self) -> StorageDescriptor:
        return self.server.get_storage_descriptor()

    def _call(self, coro: Any) -> Any:
        if self._loop is None:
            coro.close()
            raise RuntimeError("shoal server is not running")
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def start(self) -> None:
        if self._loop is not None:
            return
        loop = _new_loop()
        thread = threading.Thread(target=loop.run_forever, name="shoal-server", daemon=True)
        thread.start()
        self._loop, self._thread = loop, thread
        try:
            self._call(self.server.start())
        except BaseException:
            self._shutdown_loop()
            raise

    def stop(self) -> None:
        if self._loop is None:
            return
        try:
            self._call(self.server.stop())
        finally:
            self._shutdown_loop()

    def _shutdown_loop(self) -> None:
        loop, thread = self._loop, self._thread
        self._loop = self._thread = None
        if loop is None or thread is None:
            return
        loop.call_soon_threadsafe(loop.stop)
        thread.join()
        loop.close()

    def create_bucket(self, name: str) -> dict[str, Any]:
        result: dict[str, Any] = self._call(self.server.create_bucket(name))
        return result

    def cluster_status(self) -> dict[str, Any]:
        result: dict[str, Any] = self._call(self.server.cluster_status())
        return result

    def heal(self) -> dict[str, Any]:
        result: dict[str, Any] = self._call(self.server.heal())
        return result

    def run(self, coro: Any) -> Any:
        """Run a coroutine on the server's loop (e.g. to call `app.state.backend`)."""
        return self._call(coro)

    def __enter__(self) -> SyncServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _new_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency, but keep working
        return asyncio.new_event_loop()
    loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
    return loop
