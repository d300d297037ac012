"""shoal's ASGI layer, installed as `shoal.app`.

It hands out what the `shoal` package does (`create_app`, `Server`, `SyncServer`,
`StorageDescriptor`), so that from a checkout `uvicorn app:create_app --factory` keeps
working beside the installed `uvicorn shoal:create_app --factory`. Nothing is imported
until asked for: `shoal serve` and the pytest plugin stay cheap.
"""

from __future__ import annotations

from typing import Any

__all__ = ["Server", "StorageDescriptor", "SyncServer", "create_app"]


def __getattr__(name: str) -> Any:
    import shoal

    if name not in shoal.__all__:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(shoal, name)
