"""Clients that run in another process: a Python adapter in a venv of its own (a client
whose dependencies clash with the project's, or an older release), or a Node.js one.
Environments are built once and cached under .venv-compat/ at the repository root."""

from __future__ import annotations

import base64
import fcntl
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
CACHE = ROOT / ".venv-compat"
CLIENTS = Path(__file__).parent / "clients"


@contextmanager
def _locked(name: str) -> Iterator[Path]:
    """The cache directory for `name`, held by this process (xdist workers share it)."""
    CACHE.mkdir(exist_ok=True)
    with open(CACHE / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield CACHE / name


def _build(directory: Path, stamp: str, commands: list[list[str]], what: str) -> None:
    marker = directory / ".compat-stamp"
    if marker.exists() and marker.read_text() == stamp:
        return
    for argv in commands:
        done = subprocess.run(argv, capture_output=True, text=True, cwd=directory.parent)
        if done.returncode != 0:
            pytest.skip(f"could not install {what} ({' '.join(argv)}): {done.stderr[-500:]}")
    marker.write_text(stamp)


def python_env(name: str, requirements: list[str]) -> Path:
    """A venv under .venv-compat/NAME with `requirements`; returns its python."""
    with _locked(name) as directory:
        python = directory / "bin" / "python"
        commands = [
            [sys.executable, "-m", "venv", "--clear", str(directory)],
            [str(python), "-m", "pip", "install", "-q", *requirements],
        ]
        _build(
            directory, "\n".join(requirements), commands, f"pip install {' '.join(requirements)}"
        )
        return python


def node_env(name: str, packages: list[str]) -> Path:
    """node_modules under .venv-compat/NAME with `packages` (npm); returns the folder."""
    with _locked(name) as directory:
        directory.mkdir(exist_ok=True)
        (directory / "package.json").write_text('{"name": "shoal-compat", "private": true}\n')
        npm = ["npm", "install", "--no-audit", "--no-fund", "--prefix", str(directory)]
        _build(
            directory, "\n".join(packages), [[*npm, *packages]], f"npm install {' '.join(packages)}"
        )
        return directory


class AgentClient:
    """A scenario client whose steps run in a child process (see clients/agent.py)."""

    def __init__(self, argv: list[str], env: dict[str, str] | None = None) -> None:
        self.proc = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            encoding="utf-8",
            env={**os.environ, **(env or {})},
        )
        self.unsupported = frozenset(self._answer())

    def _answer(self) -> Any:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"client process ended (status {self.proc.wait()})")
        answer = json.loads(line)
        if "error" in answer:
            raise AssertionError(answer["error"])
        if "bytes" in answer:
            return base64.b64decode(answer["bytes"])
        return answer["result"]

    def call(self, method: str, *args: Any) -> Any:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"method": method, "args": args}) + "\n")
        self.proc.stdin.flush()
        return self._answer()

    def close(self) -> None:
        if self.proc.stdin:
            self.proc.stdin.close()
        self.proc.wait(timeout=30)

    def version(self) -> str:
        return str(self.call("version"))

    def create_bucket(self, bucket: str) -> None:
        self.call("create_bucket", bucket)

    def upload(self, bucket: str, key: str, path: str, metadata: dict[str, str] | None) -> None:
        self.call("upload", bucket, key, path, metadata)

    def upload_multipart(self, bucket: str, key: str, path: str) -> None:
        self.call("upload_multipart", bucket, key, path)

    def list(self, bucket: str, prefix: str, delimiter: str) -> tuple[list[str], list[str]]:
        keys, prefixes = self.call("list", bucket, prefix, delimiter)
        return keys, prefixes

    def read_range(self, bucket: str, key: str, start: int, end: int) -> bytes:
        return bytes(self.call("read_range", bucket, key, start, end))

    def copy(self, bucket: str, source: str, destination: str) -> None:
        self.call("copy", bucket, source, destination)

    def metadata(self, bucket: str, key: str) -> dict[str, str]:
        return dict(self.call("metadata", bucket, key))

    def delete_many(self, bucket: str, keys: list[str]) -> None:
        self.call("delete_many", bucket, keys)

    def delete_bucket(self, bucket: str) -> None:
        self.call("delete_bucket", bucket)


@contextmanager
def python_agent(
    python: Path, module: str, cls: str, target: dict[str, Any], **kwargs: Any
) -> Iterator[AgentClient]:
    argv = [str(python), str(CLIENTS / "agent.py"), module, cls, json.dumps(target)]
    client = AgentClient([*argv, json.dumps(kwargs)])
    try:
        yield client
    finally:
        client.close()
