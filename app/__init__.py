"""shoal's ASGI layer. `create_app` is the uvicorn entry point (`uvicorn app:create_app
--factory`); `Server`/`SyncServer` embed a real server in tests and tools.

Attributes are imported on first use (PEP 562) so that `import app.cli` or loading the
pytest plugin stays cheap and does not pull in the whole HTTP stack.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from app.asgi import create_app
    from app.server import Server, StorageDescriptor, SyncServer

__all__ = ["Server", "StorageDescriptor", "SyncServer", "create_app"]

_LAZY = {
    "create_app": "app.asgi",
    "Server": "app.server",
    "SyncServer": "app.server",
    "StorageDescriptor": "app.server",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'app' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
