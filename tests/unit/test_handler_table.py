"""The registry's table of handler modules (app/handlers/registry.py): handlers load on
first use, so the table must name the module that registers each operation."""

from __future__ import annotations

import importlib
import pkgutil

import shoal.app.handlers
from shoal.app.handlers.registry import HANDLERS, MODULES
from shoal.auth.actions import OPERATIONS


def _registered_by_module() -> dict[str, str]:
    """Every handler module imported: operation -> the module its handler lives in."""
    for info in pkgutil.iter_modules(shoal.app.handlers.__path__):
        importlib.import_module(f"shoal.app.handlers.{info.name}")
    return {name: dict.__getitem__(HANDLERS, name).__module__ for name in dict.keys(HANDLERS)}


def test_table_names_the_module_of_every_handler() -> None:
    registered = _registered_by_module()
    assert {name: f"shoal.app.handlers.{m}" for name, m in MODULES.items()} == registered


def test_every_operation_has_a_handler_by_name() -> None:
    """What dispatch can resolve, the registry can serve (imported on demand)."""
    missing = [name for name in OPERATIONS if name not in HANDLERS]
    assert missing == []
    for name in MODULES:
        assert callable(HANDLERS[name])


def test_unknown_operation_is_a_key_error() -> None:
    assert "NoSuchOperation" not in HANDLERS
    try:
        HANDLERS["NoSuchOperation"]
    except KeyError:
        pass
    else:
        raise AssertionError("an unknown operation resolved to a handler")
