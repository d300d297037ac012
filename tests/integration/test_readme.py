"""The README's examples work as written against `shoal serve` (what `make run` starts)."""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.integration.conftest import signed_client, spawn_server, wait_for
from tests.integration.serving import config_file

README = Path(__file__).resolve().parents[2] / "README.md"
MAKE_RUN_ENDPOINT = "http://127.0.0.1:3000"


def example(language: str, after: str) -> str:
    """The first ```language block following the line `after`."""
    text = README.read_text()
    start = text.index(after)
    match = re.search(rf"```{language}\n(.*?)```", text[start:], re.S)
    assert match, f"no {language} example after {after!r}"
    return match.group(1)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[str]:
    """`shoal serve` as `make run` starts it, on a free port instead of 3000."""
    proc, url = spawn_server(tmp_path / "data")
    try:
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_make_run_is_what_the_readme_says() -> None:
    makefile = (README.parent / "Makefile").read_text()
    assert "serve --address 127.0.0.1 --port 3000 --dir ./data" in makefile
    assert MAKE_RUN_ENDPOINT in README.read_text()


def test_readme_boto3_example(served: str) -> None:
    code = example("python", "boto3:").replace(MAKE_RUN_ENDPOINT, served)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, "README.md", "exec"), {})  # the reader's paste, verbatim
    assert out.getvalue().splitlines() == ["b'Hello, shoal!'", "['hello.txt']"]


@pytest.mark.cli
def test_readme_aws_cli_example(served: str, tmp_path: Path) -> None:
    aws = Path(sys.executable).parent / "aws"
    if not aws.exists():
        pytest.skip("the aws CLI is not installed (pip install awscli)")
    lines = [ln for ln in example("sh", "aws CLI").splitlines() if ln.strip()]
    env = dict(
        os.environ,
        AWS_CONFIG_FILE=str(tmp_path / "none"),
        PATH=f"{aws.parent}:{os.environ['PATH']}",
    )
    script = "set -e\n" + "\n".join(lines).replace(MAKE_RUN_ENDPOINT, served)
    done = subprocess.run(
        ["bash", "-c", script],
        cwd=README.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "docs/README.md" in done.stdout


def test_readme_cluster_example_serves(tmp_path: Path) -> None:
    """The erasure-coded node's TOML, with its drive paths pointed at temporary folders,
    starts a server that stores objects across the drives."""
    toml = example("toml", "## Erasure-coded storage")
    for i in range(6):
        (tmp_path / f"d{i}").mkdir()
        toml = toml.replace(f"/mnt/d{i}", str(tmp_path / f"d{i}"))
    config = tmp_path / "shoal.toml"
    config.write_text(toml)
    proc, url = spawn_server(tmp_path / "data", "--config", str(config), "--log-level", "error")
    try:
        client = signed_client(url, "admin", "admin")
        client.create_bucket(Bucket="readme")
        client.put_object(Bucket="readme", Key="a/b.txt", Body=b"across six drives")
        assert client.get_object(Bucket="readme", Key="a/b.txt")["Body"].read() == (
            b"across six drives"
        )
        # A small object's shards live in its record on each drive (one per drive).
        records = list(tmp_path.glob("d*/.smartstorage/data/readme/a/b.txt.*.metadata.json"))
        assert len(records) == 6
        assert all('"inline"' in record.read_text() for record in records)
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_readme_embedded_example_runs_as_written(tmp_path: Path) -> None:
    """The embedded example pasted into a file of its own: imports, asyncio.run and all."""
    script = tmp_path / "embedded.py"
    script.write_text(example("python", "**Embedded, from Python**"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHOAL_")}
    done = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["b'Hello, shoal!'"]


def test_readme_curl_admin_example(tmp_path: Path) -> None:
    """The management API called with curl as the README shows, on an erasure node with
    auth on: signed, it answers the cluster's state; unsigned, 403."""
    curl = shutil.which("curl")
    if curl is None:
        pytest.skip("curl is not installed")
    drives = [tmp_path / f"d{i}" for i in range(6)]
    settings = {"cluster": {"enabled": True, "drives": {"paths": [str(d) for d in drives]}}}
    config = tmp_path / "shoal.toml"
    config_file(config, settings)
    flags = ("--config", str(config), "--auth", "--access-key", "ops", "--secret-key", "s3cr3t-k3y")
    proc, url = spawn_server(tmp_path / "data", *flags, "--log-level", "error")
    try:
        command = example("sh", "- **Management**").replace("http://127.0.0.1:3000", url)
        env = {**os.environ, "ACCESS_KEY": "ops", "SECRET_KEY": "s3cr3t-k3y"}
        done = subprocess.run(
            ["bash", "-c", command], capture_output=True, text=True, timeout=60, env=env
        )
        assert done.returncode == 0, done.stderr
        assert "sets" in json.loads(done.stdout)
        unsigned = subprocess.run(
            [curl, "-s", "-o", "/dev/null", "-w", "%{http_code}", f"{url}/-/cluster"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert unsigned.stdout == "403"
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_readme_uvicorn_line_serves(tmp_path: Path) -> None:
    """ "Other ways to start": the uvicorn line, from the checkout, on a free port and a
    temporary data directory instead of 3000 and /srv/shoal."""
    command = example("sh", "**uvicorn, with the app factory.**")
    assert "--port 3000" in command and "/srv/shoal" in command
    command = command.replace("--port 3000", "--port 0").replace("/srv/shoal", str(tmp_path))
    log = tmp_path / "uvicorn.stderr"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHOAL_")}
    with open(log, "w") as err:
        proc = subprocess.Popen(
            ["bash", "-c", command], cwd=README.parent, env=env, stderr=err, start_new_session=True
        )
    try:
        found: list[str] = []

        def started() -> bool:
            assert proc.poll() is None, log.read_text()
            found[:] = re.findall(r"running on (http://127\.0\.0\.1:\d+)", log.read_text())
            return bool(found)

        wait_for("uvicorn is listening", started, timeout=60)
        assert httpx.put(f"{found[0]}/from-uvicorn", timeout=10).status_code == 200
        assert (tmp_path / "from-uvicorn").is_dir()
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        # uvicorn re-raises SIGTERM once it has shut down gracefully (test_shutdown.py).
        assert proc.wait(timeout=60) in (0, -signal.SIGTERM), log.read_text()
    assert "Finished server process" in log.read_text()


def test_readme_pytest_plugin_example(tmp_path: Path) -> None:
    """The plugin example in a test file of its own, run by pytest with the installed
    plugin found through its entry point (nothing named on the command line)."""
    (tmp_path / "test_example.py").write_text(example("python", "**pytest plugin.**"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SHOAL_", "PYTEST_"))}
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_example.py"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 passed" in done.stdout
