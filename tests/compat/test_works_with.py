"""README's "Works with" table against the suite: every client module is listed, and
the versions it names are the ones the tests install or find."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Callable
from importlib import metadata
from pathlib import Path

import pytest

from tests.compat import test_boto3_old, test_js_sdk, test_s3fs

HERE = Path(__file__).parent
README = HERE.parents[1] / "README.md"
#: Modules that pin server behaviour or check this table, not a client.
NOT_CLIENTS = {"test_pinned.py", "test_works_with.py"}


def _pin(requirement: str) -> Callable[[], str]:
    return lambda: requirement.rsplit("==", 1)[-1].rsplit("@", 1)[-1]


def _package(name: str) -> Callable[[], str | None]:
    def version() -> str | None:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return None

    return version


def _command(argv: list[str], pattern: str) -> Callable[[], str | None]:
    def version() -> str | None:
        if shutil.which(argv[0]) is None:
            return None
        out = subprocess.run(argv, capture_output=True, text=True, timeout=60).stdout
        found = re.search(pattern, out)
        return found[1] if found else out

    return version


#: How each client module's tested version is found.
VERSIONS: dict[str, Callable[[], str | None]] = {
    "test_boto3.py": _package("boto3"),
    "test_boto3_old.py": _pin(test_boto3_old.REQUIREMENTS[0]),
    "test_awscli.py": _package("awscli"),
    "test_js_sdk.py": _pin(test_js_sdk.PACKAGES[0]),
    "test_minio.py": _package("minio"),
    "test_s3fs.py": _pin(test_s3fs.REQUIREMENTS[0]),
    "test_duckdb.py": _package("duckdb"),
    "test_pyarrow.py": _package("pyarrow"),
    "test_rclone.py": _command(["rclone", "version"], r"rclone v(\d+\.\d+\.\d+)"),
    "test_s3cmd.py": _command(["s3cmd", "--version"], r"version (\S+)"),
}


def table() -> dict[str, str]:
    """Test module file name -> the version the README names."""
    section = README.read_text().split("\n## Works with\n", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 4 and cells[2].startswith("`tests/compat/"):
            rows[Path(cells[2].strip("`")).name] = cells[1]
    return rows


def test_every_client_module_is_listed() -> None:
    modules = {p.name for p in HERE.glob("test_*.py")} - NOT_CLIENTS
    assert set(table()) == modules
    assert set(VERSIONS) == modules


@pytest.mark.parametrize("module", sorted(VERSIONS))
def test_listed_version_is_the_tested_one(module: str) -> None:
    installed = VERSIONS[module]()
    if installed is None:
        pytest.skip(f"the client of {module} is not installed here (its test skips too)")
    assert table()[module] == installed
