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

import importlib
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
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
