"""pytest plugin for `make fuzz` (`-p tests.fuzz.budget`): bounds the long Hypothesis run.

HYPOTHESIS_PROFILE=fuzz asks for 20,000 random examples per test, which for the slower
suites is an hour. This plugin caps it: FUZZ_MAX_EXAMPLES examples per test (default
5,000), and FUZZ_TEST_SECONDS (default 20) of running examples, after which each test's
remaining examples return at once (generation still runs, but costs little). Both apply
only when the plugin is loaded, so `make test` (the derandomized "ci" profile) is unchanged.
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import settings


def pytest_configure(config: pytest.Config) -> None:
    """Runs after tests/conftest.py loaded its profile and before test modules import."""
    examples = int(os.environ.get("FUZZ_MAX_EXAMPLES", "5000"))
    settings.register_profile("fuzz-budget", parent=settings.default, max_examples=examples)
    settings.load_profile("fuzz-budget")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    seconds = float(os.environ.get("FUZZ_TEST_SECONDS", "20"))
    for item in items:
        hypothesis = getattr(getattr(item, "obj", None), "hypothesis", None)
        if hypothesis is not None:
            hypothesis.inner_test = _time_boxed(hypothesis.inner_test, seconds)


def _time_boxed(inner: Callable[..., Any], seconds: float) -> Callable[..., Any]:
    """The test body, skipped once `seconds` have gone since its first example."""
    started: list[float] = []

    @functools.wraps(inner)
    def run(*args: Any, **kwargs: Any) -> Any:
        now = time.monotonic()
        if not started:
            started.append(now)
        if now - started[0] > seconds:
            return None
        return inner(*args, **kwargs)

    return run
