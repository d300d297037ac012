"""The installed distribution claims one top-level import name, `shoal`: every folder of
the code is listed as a subpackage in pyproject.toml, and nothing imports itself by a
bare `app`, `storage`, `cluster`, `auth` or `config` (which would load a second copy of
a module in a checkout, and the user's own package of that name when installed)."""

from __future__ import annotations

import ast
import subprocess
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FOLDERS = ("app", "auth", "cluster", "config", "sse", "storage")


def pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_every_code_folder_is_a_listed_subpackage() -> None:
    tools = pyproject()["tool"]["setuptools"]
    assert tools["package-dir"] == {f"shoal.{name}": name for name in FOLDERS}
    found = {"shoal"}
    for name in FOLDERS:
        for init in (ROOT / name).rglob("__init__.py"):
            parts = init.parent.relative_to(ROOT).parts
            found.add(".".join(("shoal", *parts)))
    assert sorted(tools["packages"]) == sorted(found)


def test_entry_points_go_through_shoal() -> None:
    project = pyproject()["project"]
    assert project["scripts"] == {"shoal": "shoal.app.cli:main"}
    assert project["entry-points"]["pytest11"] == {"shoal": "shoal.app.pytest_plugin"}


def bare_imports(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        found += [
            f"{path.relative_to(ROOT)}:{node.lineno}: {name}"
            for name in names
            if name.split(".")[0] in FOLDERS
        ]
    return found


def test_no_module_imports_shoal_code_by_a_bare_name() -> None:
    tracked = subprocess.run(
        ["git", "ls-files", "*.py"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    assert len(tracked) > 100
    offenders = [hit for name in tracked for hit in bare_imports(ROOT / name)]
    assert offenders == []
