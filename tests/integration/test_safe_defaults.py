"""Safe defaults (app/exposure.py): beyond loopback, a server with auth off or the
well-known credentials refuses to start, under `shoal serve` and plain uvicorn alike,
saying how to set credentials; `server.allow_insecure_public` is the explicit opt-in;
the startup log says whether auth is on; metrics on a public S3 listener with auth on
need a signature, and the metrics listener defaults to loopback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from shoal.app import SyncServer, exposure
from shoal.app.metrics import Metrics
from shoal.auth import ANONYMOUS
from shoal.auth.signer import signed_headers
from shoal.config import ConfigError, load_config
from shoal.storage.filestore import FileStore
from tests.integration.conftest import auth_config, spawn_server

STRONG = ("admin", "a-long-random-secret-for-tests")


def config(**sections: object) -> object:
    return load_config(sections, env={})


# -- the decision -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.3.2.1", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        (exposure.UNIX_SOCKET, True),
        ("0.0.0.0", False),
        ("::", False),
        ("", False),
        ("10.1.2.3", False),
        ("192.0.2.7", False),
        ("no-such-host.invalid", False),
    ],
)
def test_loopback_addresses(host: str, loopback: bool) -> None:
    assert exposure.is_loopback(host) is loopback


@pytest.mark.parametrize(
    ("settings", "key"),
    [
        ({}, "auth.enabled"),
        ({"auth": {"enabled": True}}, "auth.credentials"),  # STORAGE/STORAGE
        (
            {
                "auth": {
                    "enabled": True,
                    "credentials": [
                        {"access_key_id": "admin", "secret_access_key": "strong-enough-1"},
                        {"access_key_id": "STORAGE", "secret_access_key": "STORAGE"},
                    ],
                }
            },
            "auth.credentials",
        ),
    ],
)
def test_open_servers_beyond_loopback_are_refused(settings: dict, key: str) -> None:
    cfg = config(**settings)
    for host in ("0.0.0.0", "::", "10.1.2.3"):
        with pytest.raises(ConfigError) as info:
            exposure.check(cfg, host)  # type: ignore[arg-type]
        assert info.value.key == key
        assert "SHOAL_AUTH__CREDENTIALS" in str(info.value)
        assert "server.allow_insecure_public" in str(info.value)
    exposure.check(cfg, "127.0.0.1")  # type: ignore[arg-type]
    opted_in = config(**settings, server={"allow_insecure_public": True})
    exposure.check(opted_in, "0.0.0.0")  # type: ignore[arg-type]


def test_credentials_of_ones_own_may_listen_anywhere() -> None:
    exposure.check(config(**auth_config(STRONG)), "0.0.0.0")  # type: ignore[arg-type]
    env = {"SHOAL_SERVER__ALLOW_INSECURE_PUBLIC": "true"}
    assert load_config(env=env).server.allow_insecure_public is True


# -- shoal serve and plain uvicorn --------------------------------------------------------


def run(argv: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """A server that must refuse to start: it exits before binding, within the timeout."""
    return subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True, timeout=60)


def clean_env(**more: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("SHOAL_")}
    return env | more


SERVE = [sys.executable, "-m", "shoal", "serve", "--port", "0"]


@pytest.mark.parametrize(
    ("flags", "why"),
    [
        ([], "authentication off"),  # server.address defaults to 0.0.0.0
        (["--address", "0.0.0.0"], "authentication off"),
        (["--address", "::", "--auth"], "default credentials"),
    ],
)
def test_shoal_serve_refuses_with_status_2(tmp_path: Path, flags: list[str], why: str) -> None:
    done = run([*SERVE, "--dir", str(tmp_path / "d"), *flags], clean_env(), tmp_path)
    assert done.returncode == 2, done.stderr
    assert why in done.stderr and "SHOAL_AUTH__CREDENTIALS" in done.stderr
    assert done.stdout == ""  # never listened
    assert not (tmp_path / "d").exists()  # nor opened storage


def test_plain_uvicorn_refuses_too(tmp_path: Path) -> None:
    argv = [sys.executable, "-m", "uvicorn", "shoal:create_app", "--factory"]
    argv += ["--host", "0.0.0.0", "--port", "0", "--http", "shoal.app.protocol:HttpProtocol"]
    env = clean_env(SHOAL_STORAGE__DIRECTORY=str(tmp_path / "d"))
    done = run(argv, env, tmp_path)
    assert done.returncode != 0
    assert "refusing to listen on 0.0.0.0" in done.stderr
    assert "SHOAL_AUTH__CREDENTIALS" in done.stderr
    env |= {"SHOAL_AUTH__ENABLED": "true", "SHOAL_AUTH__CREDENTIALS": "STORAGE:STORAGE"}
    done = run(argv, env, tmp_path)
    assert done.returncode != 0 and "default credentials" in done.stderr


def test_startup_log_says_whether_auth_is_on(tmp_path: Path) -> None:
    for flags, auth in (
        ([], "off"),
        (["--auth", "--access-key", STRONG[0], "--secret-key", STRONG[1]], "on"),
    ):
        proc, _ = spawn_server(
            tmp_path / auth, "--log-format", "json", *flags, stderr=subprocess.PIPE
        )
        proc.terminate()
        _, err = proc.communicate(timeout=30)
        lines = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
        starting = [line for line in lines if line.get("event") == "starting"]
        assert starting, err
        assert starting[0]["auth"] == auth and starting[0]["address"] == "127.0.0.1"


# -- metrics -------------------------------------------------------------------------------


@pytest.fixture
def public(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """As if 127.0.0.1 were reachable from anywhere: the server's view of a public bind."""
    monkeypatch.setattr(exposure, "is_loopback", lambda host: False)
    yield


@pytest.mark.usefixtures("public")
@pytest.mark.parametrize("opt_out", [False, True])
def test_metrics_of_a_public_server_with_auth_need_a_signature(
    tmp_path: Path, opt_out: bool
) -> None:
    settings = {**auth_config(STRONG), "storage": {"directory": str(tmp_path)}}
    settings["metrics"] = {"public": opt_out}
    with SyncServer(settings) as server, httpx.Client(base_url=server.endpoint_url) as client:
        d = server.get_storage_descriptor()
        for path in ("/metrics", "/-/metrics"):
            unsigned = client.get(path)
            if opt_out:
                assert unsigned.status_code == 200 and "shoal_requests_total" in unsigned.text
                continue
            assert unsigned.status_code == 403 and "<Code>AccessDenied</Code>" in unsigned.text
            host = f"{d.endpoint}:{d.port}"
            headers = signed_headers("GET", path, host, *STRONG, "us-east-1")
            signed = client.get(path, headers=headers)
            assert signed.status_code == 200 and "shoal_requests_total" in signed.text


def test_metrics_on_loopback_stay_open_to_local_scrapers(tmp_path: Path) -> None:
    settings = {**auth_config(STRONG), "storage": {"directory": str(tmp_path)}}
    with SyncServer(settings) as server:
        assert httpx.get(server.endpoint_url + "/metrics", timeout=30).status_code == 200


def test_metrics_listener_defaults_to_loopback(tmp_path: Path) -> None:
    cfg = load_config({"server": {"address": "0.0.0.0"}, "metrics": {"port": 9}}, env={})
    metrics = Metrics(cfg, FileStore(tmp_path), lambda request: ANONYMOUS)
    assert metrics.listener is not None and metrics.listener.address == "127.0.0.1"
    cfg = cfg.replace(metrics={"address": "10.0.0.5"})
    metrics = Metrics(cfg, FileStore(tmp_path), lambda request: ANONYMOUS)
    assert metrics.listener is not None and metrics.listener.address == "10.0.0.5"
    with pytest.raises(ConfigError) as info:
        Metrics(
            load_config({"metrics": {"auth": True, "public": True}}, env={}),
            FileStore(tmp_path),
            lambda request: ANONYMOUS,
        )
    assert info.value.key == "metrics.public"
