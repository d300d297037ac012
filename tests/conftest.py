"""Suite-wide settings: Hypothesis profiles for the parser fuzz tests.

`make test` runs the "ci" profile: derandomized (the same examples every run, so CI
cannot flake on a new one) and short. `make fuzz` selects "fuzz" (random, many more
examples, still bounded in time) through HYPOTHESIS_PROFILE.
"""

from __future__ import annotations

import os

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
