"""Refusing to serve openly by accident.

A server reachable beyond loopback with authentication off lets anyone create buckets
and read or write every object; with the well-known default credentials (STORAGE /
STORAGE, which the embedded API and every example use) it is no better. Both refuse to
start, with a message that says how to set credentials, unless the configuration says
`server.allow_insecure_public = true` (throwaway containers, demos).

Checked by `shoal serve` before it binds (exit status 2), and by the app's lifespan
(app/lifecycle.py) for every way of serving, plain uvicorn included: there the address
is the one uvicorn was told to bind (its --host, --fd or --uds), found through the
uvicorn lifespan that runs the app's startup, else `server.address`.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import os
import socket
from typing import Any

from shoal.config import Config, ConfigError, Credential

#: The credentials every example and the embedded API use: known to everyone.
WELL_KNOWN = Credential("STORAGE", "STORAGE")
#: Where a server bound to a Unix socket is reported to listen.
UNIX_SOCKET = "unix socket"

HOW_TO_FIX = (
    "Set credentials of your own: SHOAL_AUTH__ENABLED=true and "
    "SHOAL_AUTH__CREDENTIALS=KEY:SECRET (a long random secret; or [[auth.credentials]] "
    "in the config file, or `shoal serve --auth --access-key KEY --secret-key SECRET`). "
    "Or listen on 127.0.0.1 only. For a throwaway server that anyone may use, set "
    "server.allow_insecure_public = true (SHOAL_SERVER__ALLOW_INSECURE_PUBLIC=true)."
)


def is_loopback(host: str) -> bool:
    """Whether every address `host` names is a loopback one (or a Unix socket). A
    wildcard ("", 0.0.0.0, ::) or a name that does not resolve counts as public."""
    if host == UNIX_SOCKET:
        return True
    name = host.strip("[]")
    if name == "":
        return False
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(name, None, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        return False
    return bool(infos) and all(
        ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]).is_loopback for info in infos
    )


def weakness(config: Config) -> tuple[str, str] | None:
    """(the key at fault, why anyone could use this server), or None when it asks for
    credentials of its own."""
    if not config.auth.enabled:
        return "auth.enabled", "authentication off"
    if any(c.secret_access_key == WELL_KNOWN.secret_access_key for c in config.auth.credentials):
        return "auth.credentials", "the well-known default credentials"
    return None


def check(config: Config, host: str) -> None:
    """Raise ConfigError when serving on `host` would be open to whoever reaches it."""
    weak = weakness(config)
    if weak is None or config.server.allow_insecure_public or is_loopback(host):
        return
    key, why = weak
    raise ConfigError(
        f"{key}: refusing to listen on {host or '*'} with {why}: anyone who reaches "
        f"it could read, write and delete every bucket. {HOW_TO_FIX}",
        key,
    )


def auth_state(config: Config) -> str:
    """For the startup log line: whether requests must be signed, and with what."""
    if not config.auth.enabled:
        return "off"
    return "on (default credentials)" if weakness(config) else "on"


def bound_host(config: Config) -> str:
    """The address this process serves on: uvicorn's own settings when its lifespan is
    running the caller (`shoal serve` and the embedded server hand it server.address),
    else server.address."""
    settings = _uvicorn_settings()
    if settings is None:
        return config.server.address
    if getattr(settings, "uds", None):
        return UNIX_SOCKET
    fd = getattr(settings, "fd", None)
    if fd is not None:
        return _socket_host(fd) or config.server.address
    return str(getattr(settings, "host", config.server.address))


def _uvicorn_settings() -> Any:
    """uvicorn.Config of the lifespan this task runs in: uvicorn starts the app's
    lifespan as a task running `LifespanOn.main`, which holds its config."""
    task = asyncio.current_task()
    frame = getattr(task.get_coro(), "cr_frame", None) if task is not None else None
    owner = frame.f_locals.get("self") if frame is not None else None
    settings = getattr(owner, "config", None)
    if type(owner).__module__.startswith("uvicorn.") and hasattr(settings, "host"):
        return settings
    return None


def _socket_host(fd: int) -> str | None:
    with contextlib.suppress(OSError), socket.socket(fileno=os.dup(fd)) as sock:
        name = sock.getsockname()
        return name[0] if isinstance(name, tuple) else UNIX_SOCKET
    return None
