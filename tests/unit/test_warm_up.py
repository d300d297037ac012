"""The start-up warm-up loads what the first requests would otherwise import on the
event loop, in their path (app.asgi.warm_up)."""

from __future__ import annotations

import subprocess
import sys

from shoal.app import asgi

#: In a fresh process: which of the lazily loaded modules the app's import left out,
#: and which warm_up left out; then how many objects the collector no longer walks, and
#: after how many new objects it collects the young generation.
_SCRIPT = """
import gc, sys
from shoal.app import asgi
from shoal.app.handlers.registry import MODULES
lazy = [*asgi.WARM_MODULES, "awscrt.checksums"]
lazy += sorted({f"shoal.app.handlers.{m}" for m in MODULES.values()})
print(sum(name not in sys.modules for name in lazy))
asgi.warm_up()
print(sum(name not in sys.modules for name in lazy), gc.get_freeze_count(), gc.get_threshold()[0])
asgi.warm_up(freeze=True)
print(gc.get_freeze_count(), gc.get_threshold()[0])
"""


def test_warm_up_loads_what_the_first_requests_would_import_then_freezes() -> None:
    before, after, unfrozen, young, frozen, tuned = subprocess.run(
        [sys.executable, "-c", _SCRIPT], capture_output=True, text=True, check=True, timeout=60
    ).stdout.split()
    assert int(before) >= 3  # left out of the start, or there is nothing to warm
    assert after == "0"
    # Frozen only when asked (a host process's objects are its own business).
    assert unfrozen == "0"
    assert int(young) < asgi.GC_YOUNG  # the interpreter's default, left alone in a host process
    assert int(frozen) > 10_000
    # The server's own process collects its young generation less often: a listing's
    # short-lived objects no longer set off collections (see warm_up).
    assert int(tuned) == asgi.GC_YOUNG > int(young)


#: In a fresh process: what loading the app factory, or the in-process Server, froze.
_FACTORY = """
import gc, shoal
shoal.{name}
print(gc.get_freeze_count(), gc.isenabled())
"""


def _loaded(name: str) -> tuple[int, str]:
    frozen, enabled = subprocess.run(
        [sys.executable, "-c", _FACTORY.format(name=name)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout.split()
    return int(frozen), enabled


def test_loading_the_app_factory_freezes_what_it_built_and_a_server_host_keeps_its_own() -> None:
    # uvicorn shoal:create_app: the process is the server's, so the collector's first
    # pass after the import does not walk all it built (shoal.collector_paused).
    frozen, enabled = _loaded("create_app")
    assert frozen > 10_000 and enabled == "True"
    # A test or tool hosting a Server: its collector is left as it was.
    assert _loaded("Server") == (0, "True")
