"""The version shoal logs at start and serves at /-/version: read cheaply from the
installed distribution's folder name, it must be what package metadata says."""

from __future__ import annotations

from importlib.metadata import version as package_version

from shoal.app import health


def test_version_is_the_installed_distributions() -> None:
    found = health._dist_info_version()
    assert found is not None  # the test environment installs shoal
    assert found == package_version("shoal")
    assert health.version() == found
