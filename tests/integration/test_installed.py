"""shoal installed with pip into a project that has its own `app/`, `config.py`, `auth/`,
`storage/` and `cluster/` (most FastAPI/Flask/Django projects have some of these): the
project's names stay its own however pytest is run, and the plugin's fixtures, the
embedded servers and `shoal serve` all work.

A wheel is built from the checkout and installed, with the `pytest` extra, into a fresh
venv: what a user's `pip install 'shoal[pytest]'` does (dependencies come from the
package index or pip's cache, as for `make test` itself).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

import httpx
import pytest

from tests.integration.serving import Proc

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
OWN_NAMES = ("app", "auth", "cluster", "config", "storage")

PROJECT = {
    "app/__init__.py": """
        OWNER = "user"

        def create_app():
            return "the project's app"
    """,
    "auth/__init__.py": 'OWNER = "user"\n',
    "cluster/__init__.py": 'OWNER = "user"\n',
    "storage/__init__.py": 'OWNER = "user"\n',
    "config.py": 'OWNER = "user"\nDATABASE_URL = "sqlite://"\n',
    "conftest.py": """
        # The project's root conftest imports its own config and app, as web projects do.
        import config
        from app import create_app

        assert config.OWNER == "user", config.__file__
        assert create_app() == "the project's app"
    """,
    "tests/test_project.py": """
        import app, auth, cluster, config, storage

        from shoal import Server, SyncServer


        def test_the_projects_names_are_its_own():
            for module in (app, auth, cluster, config, storage):
                assert getattr(module, "OWNER", None) == "user", module.__file__


        def test_plugin_fixtures(shoal_s3_client, shoal_bucket):
            shoal_s3_client.put_object(Bucket=shoal_bucket, Key="k", Body=b"hello")
            body = shoal_s3_client.get_object(Bucket=shoal_bucket, Key="k")["Body"]
            assert body.read() == b"hello"


        def test_embedded_in_a_subprocess():
            server = SyncServer.create_and_start(subprocess=True)
            try:
                assert server.create_bucket("from-a-child") == {"name": "from-a-child"}
            finally:
                server.stop()
            assert server.server.exit_status == 0
            assert Server is type(server.server)
    """,
}


def clean_env() -> dict[str, str]:
    """The user's environment: none of this test run's Python, pytest or shoal settings."""
    drop = ("SHOAL_", "PYTEST_", "PYTHON", "VIRTUAL_ENV", "COV_")
    return {k: v for k, v in os.environ.items() if not k.upper().startswith(drop)}


def run(argv: list[str | Path], cwd: Path, timeout: float = 300) -> str:
    done = subprocess.run(
        [str(a) for a in argv],
        cwd=cwd,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert done.returncode == 0, f"{argv}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def build_wheel(into: Path) -> Path:
    """A wheel from a copy of what pyproject.toml packages (the build leaves its build/ and
    egg-info in the copy, not in the checkout)."""
    tools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    source = into / "shoal-source"
    ignore = shutil.ignore_patterns("__pycache__")
    for folder in ["shoal", *tools["package-dir"].values()]:
        shutil.copytree(ROOT / folder, source / folder, ignore=ignore)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", into, source], into)
    (wheel,) = into.glob("shoal-*.whl")
    return wheel


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("installed")
    wheel = build_wheel(home)
    env = home / "venv"
    run([sys.executable, "-m", "venv", env], home)
    run([env / "bin" / "python", "-m", "pip", "install", "-q", f"{wheel}[pytest]"], home)
    return env


@pytest.fixture
def project(tmp_path: Path) -> Path:
    for name, text in PROJECT.items():
        path = tmp_path / "project" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip())
    return tmp_path / "project"


def test_only_shoal_is_installed_at_the_top_level(venv: Path) -> None:
    (site,) = venv.glob("lib/python3*/site-packages")
    assert (site / "shoal" / "app" / "dispatch.py").is_file()
    assert [name for name in OWN_NAMES if (site / name).exists()] == []
    (top_level,) = site.glob("shoal-*.dist-info/top_level.txt")
    assert top_level.read_text().split() == ["shoal"]


@pytest.mark.parametrize("pytest_cmd", [["pytest"], ["python", "-m", "pytest"]])
def test_project_suite_with_the_plugin(venv: Path, project: Path, pytest_cmd: list[str]) -> None:
    argv = [venv / "bin" / pytest_cmd[0], *pytest_cmd[1:], "-q", "-p", "no:cacheprovider"]
    out = run(argv, project)
    assert "3 passed" in out, out


def test_console_script_serves_from_the_project(venv: Path, project: Path) -> None:
    server = Proc(project, shoal=[str(venv / "bin" / "shoal")])
    try:
        assert httpx.put(f"{server.url}/made-by-the-script", timeout=10).status_code == 200
        assert (server.directory / "made-by-the-script").is_dir()
    finally:
        status = server.stop()
    assert status == 0, server.stderr()
