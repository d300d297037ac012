"""A real shoal process for the operations tests (logs, health, limits, shutdown):
`shoal serve` or plain `uvicorn shoal:create_app --factory`, its stderr kept in a file so
that it can be read while the process runs and after it has gone."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from shoal.config import load_config

ROOT = Path(__file__).resolve().parents[2]
UVICORN_RE = re.compile(r"running on (http://127\.0\.0\.1:\d+)")


def config_file(path: Path, settings: Mapping[str, Any]) -> Path:
    """A complete TOML config with `settings` laid over the defaults."""
    path.write_text(load_config(dict(settings), env={}).to_toml())
    return path


class Proc:
    """One server process on 127.0.0.1, port chosen by the OS."""

    def __init__(
        self,
        tmp_path: Path,
        *flags: str,
        settings: Mapping[str, Any] | None = None,
        env: Mapping[str, str] | None = None,
        uvicorn: bool = False,
        name: str = "server",
        shoal: Sequence[str] = (sys.executable, "-m", "shoal"),
    ) -> None:
        """`shoal` is how to run the CLI: this interpreter's module by default, or another
        installation's console script."""
        self.log = tmp_path / f"{name}.stderr"
        self.directory = tmp_path / f"{name}-data"
        settings = {"storage": {"directory": str(self.directory)}, **(settings or {})}
        conf = config_file(tmp_path / f"{name}.toml", settings)
        child_env = {k: v for k, v in os.environ.items() if not k.startswith("SHOAL_")}
        child_env |= env or {}
        if uvicorn:
            child_env["SHOAL_CONFIG"] = str(conf)
            argv = [sys.executable, "-m", "uvicorn", "shoal:create_app", "--factory"]
            argv += ["--host", "127.0.0.1", "--port", "0", *flags]
        else:
            argv = [*shoal, "serve", "--config", str(conf)]
            argv += ["--address", "127.0.0.1", "--port", "0", *flags]
        with open(self.log, "w") as err:
            self.proc = subprocess.Popen(
                argv, stdout=subprocess.PIPE, stderr=err, text=True, env=child_env, cwd=tmp_path
            )
        self.url = self._wait_uvicorn() if uvicorn else self._wait_listening()

    def _wait_listening(self) -> str:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        assert "listening on" in line, f"{line!r}\n{self.stderr()}"
        return line.strip().rsplit(" ", 1)[1]

    def _wait_uvicorn(self) -> str:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if m := UVICORN_RE.search(self.stderr()):
                return m.group(1)
            assert self.proc.poll() is None, self.stderr()
            time.sleep(0.05)
        raise AssertionError(f"uvicorn did not start:\n{self.stderr()}")

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    def stderr(self) -> str:
        return self.log.read_text()

    def json_lines(self) -> list[dict[str, Any]]:
        """Every stderr line, parsed (a line that is not JSON fails the test)."""
        return [json.loads(line) for line in self.stderr().splitlines() if line.strip()]

    def wait_for(self, text: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.stderr():
            assert time.monotonic() < deadline, f"{text!r} never logged:\n{self.stderr()}"
            time.sleep(0.02)

    def terminate(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)

    def wait(self, timeout: float = 60) -> int:
        try:
            return self.proc.wait(timeout)
        finally:
            if self.proc.stdout is not None:
                self.proc.stdout.close()

    def stop(self, timeout: float = 60) -> int:
        self.terminate()
        return self.wait(timeout)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()
