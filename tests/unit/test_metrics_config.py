"""The `metrics` configuration section: defaults, checks, and the combinations the app
refuses at start."""

from __future__ import annotations

from pathlib import Path

import pytest

from shoal.app.metrics import Metrics
from shoal.auth import ANONYMOUS
from shoal.config import ConfigError, load_config
from shoal.storage.filestore import FileStore


def test_defaults_serve_metrics_on_the_s3_listener_unauthenticated() -> None:
    m = load_config({}, env={}).metrics
    assert (m.enabled, m.auth, m.port, m.address) == (True, False, 0, None)


def test_environment_and_checks() -> None:
    env = {"SHOAL_METRICS__PORT": "9100", "SHOAL_METRICS__ENABLED": "off"}
    m = load_config(env=env).metrics
    assert (m.port, m.enabled) == (9100, False)
    with pytest.raises(ConfigError, match=r"^metrics\.port: expected an integer 0\.\.65535"):
        load_config({"metrics": {"port": 70000}}, env={})
    with pytest.raises(ConfigError, match=r"^metrics\.address:"):
        load_config({"metrics": {"address": " "}}, env={})
    with pytest.raises(ConfigError, match=r"^metrics\.auth:"):
        load_config({"metrics": {"auth": "yes please"}}, env={})


@pytest.mark.parametrize(
    ("settings", "key"),
    [
        ({"address": "127.0.0.1"}, "metrics.address"),  # an address needs a port
        ({"auth": True, "port": 9100}, "metrics.auth"),  # signatures: S3 listener only
    ],
)
def test_the_app_refuses_combinations_it_cannot_honour(
    tmp_path: Path, settings: dict[str, object], key: str
) -> None:
    config = load_config({"metrics": settings}, env={})
    with pytest.raises(ConfigError) as info:
        Metrics(config, FileStore(tmp_path), lambda request: ANONYMOUS)
    assert info.value.key == key
    assert str(info.value).startswith(key)
