"""Suite-wide settings: Hypothesis profiles for the parser fuzz tests, and the event loop
async tests run on.

`make test` runs the "ci" profile: derandomized (the same examples every run, so CI
cannot flake on a new one) and short. `make fuzz` selects "fuzz" (random, many more
examples, still bounded in time) through HYPOTHESIS_PROFILE.
"""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci",
    derandomize=True,
    max_examples=200,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "fuzz",
    max_examples=20_000,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture
def anyio_backend() -> str:
    """asyncio: the server's loop (uvicorn), and the one its async embedding API
    (app/server.py) runs on. anyio's own default also tries trio whenever it is installed
    (selenium, for the browser tests, brings it along)."""
    return "asyncio"
