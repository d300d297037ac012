"""The ways to start shoal: embedded async and sync servers (in-process and subprocess),
`shoal serve` / `python -m shoal`, uvicorn with the app factory, and the pytest plugin."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from shoal.app.server import LISTENING_RE, Server, StorageDescriptor, SyncServer
from shoal.config import Config, load_config

ROOT = Path(__file__).resolve().parents[2]


def child_env(**extra: str) -> dict[str, str]:
    """The environment for a child process: no SHOAL_* leaking in. shoal is imported as
    installed (no PYTHONPATH), as a user's process would."""
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("SHOAL_")}
    env.update(extra)
    return env


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=1):
        return True
    return False


def list_bucket_names(endpoint: str) -> list[str]:
    resp = httpx.get(endpoint + "/", timeout=10)
    assert resp.status_code == 200, resp.text
    assert resp.headers.get("x-amz-request-id")
    return re.findall(r"<Name>([^<]+)</Name>", resp.text)


def boto3_client(desc: StorageDescriptor) -> Any:
    boto3 = pytest.importorskip("boto3")
    from botocore.config import Config as BotoConfig

    return boto3.client(
        "s3", config=BotoConfig(s3={"addressing_style": "path"}), **desc.boto3_kwargs()
    )


# ---------------------------------------------------------------- in-process


@pytest.mark.anyio
async def test_async_in_process_start_stop() -> None:
    t0 = time.perf_counter()
    server = await Server.create_and_start()
    started_in = time.perf_counter() - t0
    try:
        desc = server.get_storage_descriptor()
        assert desc.endpoint == "127.0.0.1" and desc.port > 0
        assert (desc.access_key, desc.access_secret) == ("STORAGE", "STORAGE")
        assert desc.use_ssl is False and desc.region == "us-east-1"
        assert desc.endpoint_url == f"http://127.0.0.1:{desc.port}"
        assert server.app.state.config is server.config
        data_dir = Path(server.config.storage.directory)
        assert data_dir.is_dir()

        assert await server.create_bucket("embedded-async") == {"name": "embedded-async"}
        names = await asyncio.to_thread(list_bucket_names, desc.endpoint_url)
        assert "embedded-async" in names
    finally:
        await server.stop()
    assert started_in < 2.0, f"start took {started_in:.3f}s"
    assert not port_open(desc.port)
    assert not data_dir.exists(), "the temporary data directory is removed on stop"
    await server.stop()  # idempotent


@pytest.mark.anyio
async def test_async_context_manager_and_given_directory(tmp_path: Path) -> None:
    async with Server({"storage": {"directory": str(tmp_path / "data")}}) as server:
        await server.create_bucket("kept")
        assert server.config.storage.directory == str(tmp_path / "data")
        assert server.config.storage.clean_slate is True  # the embedded default
    assert (tmp_path / "data").is_dir(), "a directory the caller chose is not removed"


@pytest.mark.anyio
async def test_config_object_is_used_as_given(tmp_path: Path) -> None:
    cfg = load_config(
        {
            "server": {"port": 0, "address": "127.0.0.1", "region": "eu-west-3"},
            "storage": {"directory": str(tmp_path)},
            "auth": {"credentials": [{"access_key_id": "AK", "secret_access_key": "SK"}]},
        },
        env={},
    )
    async with Server(cfg) as server:
        assert server.config is cfg
        desc = server.get_storage_descriptor()
        assert (desc.access_key, desc.access_secret, desc.region) == ("AK", "SK", "eu-west-3")


@pytest.mark.anyio
async def test_two_servers_side_by_side() -> None:
    async with Server() as a, Server() as b:
        await a.create_bucket("only-in-a")
        assert a.port != b.port
        assert "only-in-a" not in await asyncio.to_thread(list_bucket_names, b.endpoint_url)


def failing_factory(cfg: Config) -> Any:
    """An app whose startup fails, to check a failed start is reported, not fatal."""
    from starlette.applications import Starlette

    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> Any:
        raise RuntimeError("backend exploded")
        yield

    return Starlette(lifespan=lifespan)


@pytest.mark.anyio
async def test_failed_start_raises_without_exiting_the_host() -> None:
    server = Server(app_factory=failing_factory)
    with pytest.raises(RuntimeError, match="failed to start"):
        await server.start()
    assert not server.running


def test_sync_in_process() -> None:
    with SyncServer() as server:
        assert server.create_bucket("embedded-sync") == {"name": "embedded-sync"}
        desc = server.get_storage_descriptor()
        client = boto3_client(desc)
        assert "embedded-sync" in [b["Name"] for b in client.list_buckets()["Buckets"]]
        client.head_bucket(Bucket="embedded-sync")
    assert not server.running
    assert not port_open(desc.port)


def test_sync_create_and_start_forms() -> None:
    server = Server.create_and_start_sync({"server": {"region": "ap-south-2"}})
    try:
        assert isinstance(server, SyncServer)
        assert server.get_storage_descriptor().region == "ap-south-2"
    finally:
        server.stop()
    server = SyncServer.create_and_start()
    server.stop()
    server.stop()


# ---------------------------------------------------------------- subprocess


@pytest.mark.anyio
async def test_async_subprocess_mode() -> None:
    server = await Server.create_and_start(subprocess=True)
    try:
        desc = server.get_storage_descriptor()
        assert desc.port > 0 and port_open(desc.port)
        assert await server.create_bucket("from-subprocess") == {"name": "from-subprocess"}
        names = await asyncio.to_thread(list_bucket_names, desc.endpoint_url)
        assert "from-subprocess" in names
        data_dir = Path(server.config.storage.directory)
        pid = server._proc.pid  # type: ignore[union-attr]
    finally:
        await server.stop()
    assert not port_open(desc.port)
    assert not data_dir.exists()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


@pytest.mark.anyio
async def test_subprocess_stop_exits_0_without_fatal_error(
    capfd: pytest.CaptureFixture[str],
) -> None:
    """The child's stdin watcher used to sit in a buffered read at interpreter exit:
    `Fatal Python error: _enter_buffered_busy` and SIGABRT on every stop()."""
    server = await Server.create_and_start(subprocess=True)
    try:
        assert await server.create_bucket("stops-cleanly") == {"name": "stops-cleanly"}
    finally:
        await server.stop()
    err = capfd.readouterr().err  # the child writes to the stderr it inherited
    assert server.exit_status == 0, err
    assert "Fatal Python error" not in err


class _SleepRecorder:
    """Stands in for the `asyncio` module inside uvicorn.server, noting its sleeps."""

    def __init__(self) -> None:
        self.sleeps: list[float] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(asyncio, name)

    async def sleep(self, delay: float, *args: Any) -> Any:
        self.sleeps.append(delay)
        return await asyncio.sleep(delay, *args)


@pytest.mark.anyio
@pytest.mark.parametrize("keep_alive", [False, True])
async def test_in_process_stop_waits_on_conditions_not_sleeps(
    monkeypatch: pytest.MonkeyPatch, keep_alive: bool
) -> None:
    """stop() is woken by the request to stop and by the connections closing, rather
    than uvicorn's 0.1 s polls (two per stop, ~200 ms), and still stops cleanly."""
    import uvicorn.server

    recorder = _SleepRecorder()
    monkeypatch.setattr(uvicorn.server, "asyncio", recorder)
    server = await Server.create_and_start()
    port = server.port
    data_dir = Path(server.config.storage.directory)  # type: ignore[union-attr]
    async with httpx.AsyncClient() as client:
        if keep_alive:  # an idle keep-alive connection open while stopping
            resp = await client.get(server.endpoint_url + "/")
            assert resp.status_code == 200
        await server.stop()
    assert recorder.sleeps == []
    assert not port_open(port)
    assert not data_dir.exists()


def test_sync_subprocess_mode() -> None:
    with SyncServer({"server": {"region": "eu-central-1"}}, subprocess=True) as server:
        server.create_bucket("sync-sub")
        desc = server.get_storage_descriptor()
        assert desc.region == "eu-central-1"
        boto3_client(desc).head_bucket(Bucket="sync-sub")
    assert not port_open(desc.port)


# ---------------------------------------------------------------- CLI


@contextlib.contextmanager
def cli_server(*args: str, env: dict[str, str] | None = None) -> Iterator[tuple[Any, str]]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "shoal", "serve", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env or child_env(),
        cwd=ROOT,
    )
    try:
        line = proc.stdout.readline()  # type: ignore[union-attr]
        if not LISTENING_RE.match(line):
            proc.kill()
            _, err = proc.communicate()
            pytest.fail(f"no listening line: {line!r}\n{err}")
        yield proc, line.strip()
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        proc.stdout.close()  # type: ignore[union-attr]
        proc.stderr.close()  # type: ignore[union-attr]


def test_cli_port_zero_prints_listening_line_and_stops_on_sigterm(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with cli_server(
        "--port", "0", "--address", "127.0.0.1", "--dir", str(data), "--region", "us-west-2"
    ) as (proc, line):
        m = LISTENING_RE.match(line)
        assert m and m.group(1) == "http" and m.group(2) == "127.0.0.1"
        url = f"http://127.0.0.1:{m.group(3)}"
        assert httpx.put(url + "/cli-bucket", timeout=10).status_code == 200
        assert "cli-bucket" in list_bucket_names(url)
        resp = httpx.get(url + "/cli-bucket?location", timeout=10)
        assert "server" not in resp.headers and "date" in resp.headers
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) in (0, -signal.SIGTERM)
    assert (data / "cli-bucket").is_dir()


def test_cli_config_file_env_and_flags(tmp_path: Path) -> None:
    conf = tmp_path / "shoal.toml"
    conf.write_text(f'[storage]\ndirectory = "{tmp_path / "from-file"}"\n[server]\nport = 1\n')
    env = child_env(SHOAL_CONFIG=str(conf), SHOAL_SERVER__ADDRESS="127.0.0.1")
    with cli_server("--port", "0", env=env) as (_, line):
        port = int(LISTENING_RE.match(line).group(3))  # type: ignore[union-attr]
        assert httpx.put(f"http://127.0.0.1:{port}/bkt-one", timeout=10).status_code == 200
    assert (tmp_path / "from-file" / "bkt-one").is_dir()


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["--port", "70000"], {}, "server.port: expected an integer 0..65535"),
        ([], {"SHOAL_SERVER__PORT": "abc"}, "SHOAL_SERVER__PORT"),
        ([], {"SHOAL_CLUSTER__ERASURE__DAT_SHARDS": "3"}, "cluster.erasure.dat_shards"),
        (["--config", "/nonexistent/shoal.toml"], {}, "not found"),
        (["--tls-cert", "/nonexistent.pem"], {}, "server.tls"),
    ],
)
def test_cli_bad_config_exits_2_without_traceback(
    args: list[str], env: dict[str, str], message: str
) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "shoal", "serve", *args],
        capture_output=True,
        text=True,
        env=child_env(**env),
        cwd=ROOT,
        timeout=60,
    )
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stdout == ""


def run_cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "shoal", *args],
        capture_output=True,
        text=True,
        env=child_env(),
        cwd=ROOT,
        timeout=timeout,
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--tls-cert", "c.pem"], "--tls-cert needs --tls-key (or server.tls.key_file "),
        (["--tls-key", "k.pem"], "--tls-key needs --tls-cert (or server.tls.cert_file "),
        (["--access-key", "k"], "--access-key needs --secret-key"),
        (["--secret-key", "s"], "--secret-key needs --access-key"),
        (["--port", "abc"], "argument --port: invalid int value"),
    ],
)
def test_cli_flag_errors_name_the_flags_and_show_serve_usage(args: list[str], message: str) -> None:
    proc = run_cli("serve", *args)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("usage: shoal serve "), proc.stderr
    assert f"shoal serve: error: {message}" in proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout == ""


def test_cli_half_tls_pair_in_the_file_names_the_keys(tmp_path: Path) -> None:
    conf = tmp_path / "shoal.toml"
    conf.write_text('[server.tls]\ncert_file = "c.pem"\n')
    proc = run_cli("serve", "--config", str(conf))
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith(
        "shoal: server.tls: cert_file is set but key_file is not; set server.tls.key_file too"
    ), proc.stderr
    # the flag given, its partner in the file: nothing missing, so on to reading them
    local = ("--address", "127.0.0.1", "--tls-key", str(tmp_path / "k.pem"))
    proc = run_cli("serve", "--config", str(conf), *local)
    assert proc.returncode == 2 and "server.tls.cert_file: cannot read" in proc.stderr


def test_cli_wildcard_bind_prints_a_url_one_can_open(tmp_path: Path) -> None:
    with cli_server(
        "--address", "0.0.0.0", "--port", "0", "--dir", str(tmp_path), "--silent",
        "--auth", "--access-key", "admin", "--secret-key", "a-long-secret-for-tests-12345",
    ) as (_, line):  # fmt: skip
        m = LISTENING_RE.match(line)
        assert m and m.group(2) == "127.0.0.1", line
        url = line.rsplit(" ", 1)[1]
        assert httpx.get(url + "/-/live", timeout=10).json() == {"status": "live"}


def test_cli_storage_that_cannot_open_is_one_line_and_status_3(tmp_path: Path) -> None:
    """A drive folder that cannot be used (here a regular file) used to fail the start
    with a traceback packed into a log line."""
    drives = [tmp_path / f"drive{i}" for i in range(6)]
    drives[0].write_text("not a folder")
    conf = tmp_path / "shoal.toml"
    paths = ", ".join(f'"{d}"' for d in drives)
    conf.write_text(f"[cluster]\nenabled = true\n[cluster.drives]\npaths = [{paths}]\n")
    proc = run_cli("serve", "--config", str(conf), "--address", "127.0.0.1", "--port", "0")
    assert proc.returncode == 3, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.startswith("shoal: ")]
    assert len(lines) == 1 and lines[0].startswith("shoal: storage failed to open: "), lines
    assert str(drives[0]) in lines[0]
    assert "Traceback" not in proc.stderr and proc.stdout == ""


def test_cli_console_script_entry() -> None:
    from shoal.app.cli import build_parser, main, overrides_from_args

    args = build_parser().parse_args(
        [
            "serve",
            "--port",
            "0",
            "--dir",
            "d",
            "--clean-slate",
            "--access-key",
            "k",
            "--secret-key",
            "s",
            "--tls-cert",
            "c",
            "--tls-key",
            "k2",
            "--log-format",
            "json",
        ]
    )
    assert overrides_from_args(args) == {
        "server": {"port": 0, "tls": {"cert_file": "c", "key_file": "k2"}},
        "storage": {"directory": "d", "clean_slate": True},
        "auth": {"credentials": [{"access_key_id": "k", "secret_access_key": "s"}]},
        "logging": {"format": "json"},
    }
    with pytest.raises(SystemExit) as info:
        main(["serve", "--access-key", "only"])
    assert info.value.code == 2


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl to make a cert")
def test_cli_https(tmp_path: Path) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    cfg = {"server": {"tls": {"cert_file": str(cert), "key_file": str(key)}}}
    with SyncServer(cfg, subprocess=True) as server:
        desc = server.get_storage_descriptor()
        assert desc.use_ssl and desc.endpoint_url.startswith("https://")
        server.create_bucket("over-tls")
        resp = httpx.get(desc.endpoint_url + "/", verify=False, timeout=10)
        assert "over-tls" in resp.text


# ---------------------------------------------------------------- uvicorn entry


@pytest.mark.parametrize(
    ("entry", "factory_flag"),
    [
        ("shoal:create_app", ["--factory"]),
        ("shoal:create_app", []),
        ("app:create_app", ["--factory"]),  # from a checkout (cwd = the repository)
    ],
)
def test_uvicorn_app_factory(tmp_path: Path, entry: str, factory_flag: list[str]) -> None:
    env = child_env(SHOAL_STORAGE__DIRECTORY=str(tmp_path / "d"))
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            entry,
            *factory_flag,
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--log-level",
            "info",
        ],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
        env=env,
        cwd=ROOT if entry.startswith("app:") else tmp_path,
    )
    try:
        port = None
        for line in proc.stderr:  # type: ignore[union-attr]
            m = re.search(r"running on http://127\.0\.0\.1:(\d+)", line)
            if m:
                port = int(m.group(1))
                break
        assert port, "uvicorn did not start"
        assert httpx.put(f"http://127.0.0.1:{port}/via-uvicorn", timeout=10).status_code == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(15)
        proc.stderr.close()  # type: ignore[union-attr]
    assert (tmp_path / "d" / "via-uvicorn").is_dir()


# ---------------------------------------------------------------- pytest plugin


def test_pytest_plugin_fixtures(tmp_path: Path) -> None:
    """Run a small suite in a child pytest with only the plugin loaded (explicitly, so
    the test is the same whether or not shoal's entry point is installed)."""
    pytest.importorskip("boto3")
    (tmp_path / "test_user.py").write_text(
        textwrap.dedent("""
        BUCKETS = []

        def test_fixtures(shoal_server, shoal_descriptor, shoal_s3_client, shoal_bucket):
            assert shoal_descriptor == shoal_server.get_storage_descriptor()
            shoal_s3_client.put_object(Bucket=shoal_bucket, Key="k", Body=b"hello")
            got = shoal_s3_client.get_object(Bucket=shoal_bucket, Key="k")["Body"].read()
            assert got == b"hello"
            BUCKETS.append(shoal_bucket)

        def test_fresh_bucket_per_test(shoal_s3_client, shoal_bucket):
            assert shoal_bucket not in BUCKETS
            names = [b["Name"] for b in shoal_s3_client.list_buckets()["Buckets"]]
            assert BUCKETS[0] not in names, "the previous test's bucket was deleted"
            assert shoal_bucket in names
    """)
    )
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "shoal.app.pytest_plugin",
            "-p",
            "no:cacheprovider",
            "test_user.py",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
        env=child_env(PYTEST_DISABLE_PLUGIN_AUTOLOAD="1"),
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "2 passed" in proc.stdout


def test_package_exports() -> None:
    import shoal
    import shoal.app
    from shoal.app.asgi import create_app

    for package in (shoal, shoal.app):
        assert package.create_app is create_app
        assert (package.Server, package.SyncServer, package.StorageDescriptor) == (
            Server,
            SyncServer,
            StorageDescriptor,
        )
        with pytest.raises(AttributeError):
            package.nothing_here  # noqa: B018


def test_cli_busy_port_exits_1(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "shoal",
                "serve",
                "--address",
                "127.0.0.1",
                "--port",
                str(port),
                "--dir",
                str(tmp_path),
            ],
            capture_output=True,
            text=True,
            env=child_env(),
            cwd=ROOT,
            timeout=60,
        )
    assert proc.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_cli_exit_with_parent_stops_when_stdin_closes(tmp_path: Path) -> None:
    """What keeps a subprocess-mode server from outliving a parent that was killed."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "shoal",
            "serve",
            "--address",
            "127.0.0.1",
            "--port",
            "0",
            "--dir",
            str(tmp_path),
            "--silent",
            "--exit-with-parent",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=child_env(),
        cwd=ROOT,
    )
    try:
        assert LISTENING_RE.match(proc.stdout.readline())  # type: ignore[union-attr]
        proc.stdin.close()  # type: ignore[union-attr]
        assert proc.wait(15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()  # type: ignore[union-attr]
