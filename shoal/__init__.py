"""shoal, an S3-compatible object storage server.

The installed distribution's only top-level import package: the repository's folders are
its subpackages (`shoal.app`, `shoal.storage`, `shoal.cluster`, `shoal.auth`,
`shoal.config`), so a project with its own `app/` or `config.py` keeps them.

    from shoal import Server, SyncServer      # a real server in tests and tools
    uvicorn shoal:create_app --factory        # the ASGI entry point

Attributes are imported on first use (PEP 562) so that `shoal serve` or loading the pytest
plugin stays cheap and does not pull in the whole HTTP stack.
"""

from __future__ import annotations

import contextlib
import gc
import importlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from shoal.app.asgi import create_app
    from shoal.app.server import Server, StorageDescriptor, SyncServer

__all__ = ["Server", "StorageDescriptor", "SyncServer", "create_app"]

_LAZY = {
    "create_app": "shoal.app.asgi",
    "Server": "shoal.app.server",
    "SyncServer": "shoal.app.server",
    "StorageDescriptor": "shoal.app.server",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'shoal' has no attribute {name!r}")
    # The app factory's process is the server's own (uvicorn shoal:create_app); a
    # Server's is its host's, whose collector is left as it was.
    with collector_paused(freeze=name == "create_app"):
        value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


@contextlib.contextmanager
def collector_paused(*, freeze: bool = False) -> Iterator[None]:
    """No cyclic garbage collection while loading the server. Its modules build tens of
    thousands of objects that live as long as it does, and the collector walks them
    again on each of its passes meanwhile: 28-39 ms of the ~280 ms that importing the
    app takes on a 2-core VM (timed with gc.callbacks).

    `freeze`: then move what is alive into the permanent generation (gc.freeze) before
    the collector is back on. Otherwise its first pass, at the next allocation, walks
    all that the import built: 11-13 ms of every start (app.asgi.warm_up freezes what
    the first seconds add)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if freeze:
            gc.freeze()
        if enabled:
            gc.enable()


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
