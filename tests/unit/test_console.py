"""The web console's server side on a real server: its static files (security headers,
caching, 404s, no way out of the fixed file table) and its JSON endpoints (signatures,
who sees which buckets, the metrics history)."""

from __future__ import annotations

import fnmatch
import re
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from shoal.app.console import assets
from shoal.app.console.series import Sample, Series, point, quantile, read
from shoal.app.metrics import Metrics
from shoal.app.server import SyncServer
from shoal.auth import ANONYMOUS
from shoal.auth.signer import signed_headers
from shoal.config import load_config
from shoal.storage.filestore import FileStore
from tests.integration.conftest import signed_client, wait_for

ADMIN, ADMIN_SECRET = "console-admin", "admin-secret"
USER, USER_SECRET = "console-user", "user-secret"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SyncServer]:
    credentials = [
        {"access_key_id": ADMIN, "secret_access_key": ADMIN_SECRET, "admin": True},
        {"access_key_id": USER, "secret_access_key": USER_SECRET},
    ]
    config = {
        "auth": {"enabled": True, "credentials": credentials},
        "storage": {"directory": str(tmp_path_factory.mktemp("console") / "data")},
    }
    with SyncServer(config) as shoal:
        yield shoal


@pytest.fixture(scope="module")
def http(server: SyncServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.endpoint_url, timeout=10) as client:
        yield client


def signed(server: SyncServer, path: str, key: str, secret: str) -> dict[str, str]:
    host = server.endpoint_url.split("://", 1)[1]
    return signed_headers("GET", path, host, key, secret, "us-east-1")


def error_code(response: httpx.Response) -> str:
    match = re.search(r"<Code>([^<]+)</Code>", response.text)
    return match.group(1) if match else ""


# -- static files ------------------------------------------------------------------------


def test_the_page_carries_a_strict_policy_and_the_security_headers(http: httpx.Client) -> None:
    response = http.get("/-/console/")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    policy = response.headers["content-security-policy"]
    for directive in ("default-src 'self'", "script-src 'self'", "frame-ancestors 'none'"):
        assert directive in policy
    assert "unsafe-inline" not in policy and "unsafe-eval" not in policy
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] == "no-referrer"
    assert response.headers["cache-control"] == "no-cache"
    assert "x-amz-request-id" in response.headers


def test_the_page_has_no_inline_code_and_names_only_shipped_files() -> None:
    """The CSP forbids inline scripts, styles and handlers: the page must not need them."""
    for name, asset in assets.ASSETS.items():
        if name.endswith(".html"):
            html = asset.body.decode()
            assert not re.search(r"<script(?![^>]*\bsrc=)", html)
            assert "<style" not in html and " style=" not in html
            assert not re.search(r"\son[a-z]+=", html)
            for ref in re.findall(r'(?:src|href)="([^"#]+)"', html):
                assert ref in assets.ASSETS, ref
        if name.endswith(".js"):
            for module in re.findall(r'from "\./([^"]+)"', asset.body.decode()):
                assert module in assets.ASSETS, (name, module)
            assert "innerHTML" not in asset.body.decode()


def test_every_file_has_its_type_and_an_etag(http: httpx.Client) -> None:
    expected = {".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml"}
    assert {"index.html", "app.js", "sigv4.js", "console.css"} <= set(assets.ASSETS)
    for name in assets.ASSETS:
        response = http.get(f"/-/console/{name}")
        assert response.status_code == 200, name
        suffix = Path(name).suffix
        assert response.headers["content-type"].startswith(expected.get(suffix, "text/html"))
        assert response.content == (Path(assets.STATIC) / name).read_bytes()
        again = http.get(f"/-/console/{name}", headers={"if-none-match": response.headers["etag"]})
        assert again.status_code == 304 and again.content == b""


def test_head_and_the_folder_redirect(http: httpx.Client) -> None:
    head = http.head("/-/console/app.js")
    assert head.status_code == 200 and head.content == b""
    assert int(head.headers["content-length"]) == len(assets.ASSETS["app.js"].body)
    moved = http.get("/-/console")
    assert moved.status_code == 308 and moved.headers["location"] == "/-/console/"


@pytest.mark.parametrize(
    "path",
    [
        "/-/console/nothing.js",
        "/-/console/static/app.js",
        "/-/console/app.js/",
        "/-/console/__init__.py",
        "/-/console/assets.py",
        "/-/console/%2e%2e/assets.py",
        "/-/console/..%2fapi.py",
        "/-/console/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
        "/-/console/app.js%00",
        "/-/console/api/",
        "/-/console/api/nothing",
        "/-/console/api/%2e%2e/api/info",
        "/-/console/api/info/",
    ],
)
def test_unknown_names_are_404_whoever_asks(http: httpx.Client, path: str) -> None:
    response = http.get(httpx.URL(path))
    assert response.status_code == 404, response.text
    assert error_code(response) == "NoSuchKey"
    assert "root:" not in response.text


def test_only_get_and_head(http: httpx.Client) -> None:
    for method, path in (("POST", "/-/console/"), ("PUT", "/-/console/app.js")):
        response = http.request(method, path)
        assert response.status_code == 405
        assert error_code(response) == "MethodNotAllowed"
    assert http.post("/-/console/api/info").status_code == 405


# -- JSON endpoints ----------------------------------------------------------------------


def test_info_is_public(http: httpx.Client) -> None:
    response = http.get("/-/console/api/info")
    assert response.status_code == 200
    assert response.json() == {"region": "us-east-1", "auth": True}
    assert response.headers["cache-control"] == "no-store"


@pytest.mark.parametrize("name", ["buckets", "metrics"])
def test_data_needs_a_valid_signature(server: SyncServer, http: httpx.Client, name: str) -> None:
    path = f"/-/console/api/{name}"
    assert error_code(http.get(path)) == "AccessDenied"
    wrong = http.get(path, headers=signed(server, path, ADMIN, "not-the-secret"))
    assert (wrong.status_code, error_code(wrong)) == (403, "SignatureDoesNotMatch")
    unknown = http.get(path, headers=signed(server, path, "nobody", "x"))
    assert (unknown.status_code, error_code(unknown)) == (403, "InvalidAccessKeyId")


def buckets(server: SyncServer, http: httpx.Client, key: str, secret: str) -> dict[str, Any]:
    path = "/-/console/api/buckets"
    response = http.get(path, headers=signed(server, path, key, secret))
    assert response.status_code == 200, response.text
    return response.json()


def test_each_account_sees_its_buckets_with_counts(server: SyncServer, http: httpx.Client) -> None:
    admin = signed_client(server.endpoint_url, ADMIN, ADMIN_SECRET)
    user = signed_client(server.endpoint_url, USER, USER_SECRET)
    admin.create_bucket(Bucket="admins-bucket")
    user.create_bucket(Bucket="users-bucket")
    user.put_object(Bucket="users-bucket", Key="a", Body=b"x" * 1000)
    user.put_object(Bucket="users-bucket", Key="b/c", Body=b"y" * 24)

    def row(key: str, secret: str, bucket: str) -> dict[str, Any] | None:
        return next(
            (b for b in buckets(server, http, key, secret)["buckets"] if b["name"] == bucket), None
        )

    wait_for(
        "the objects counted",
        lambda: (row(USER, USER_SECRET, "users-bucket") or {}).get("objects") == 2,
    )
    mine = row(USER, USER_SECRET, "users-bucket")
    assert mine is not None
    assert (mine["bytes"], mine["uploads"], mine["versioning"]) == (1024, 0, "Unversioned")
    assert row(USER, USER_SECRET, "admins-bucket") is None  # not the user's
    assert buckets(server, http, USER, USER_SECRET)["counted"] is True
    names = {b["name"] for b in buckets(server, http, ADMIN, ADMIN_SECRET)["buckets"]}
    assert {"admins-bucket", "users-bucket"} <= names  # an admin sees every bucket


def test_metrics_are_for_admins(server: SyncServer, http: httpx.Client) -> None:
    path = "/-/console/api/metrics"
    refused = http.get(path, headers=signed(server, path, USER, USER_SECRET))
    assert (refused.status_code, error_code(refused)) == (403, "AccessDenied")
    answer = http.get(path, headers=signed(server, path, ADMIN, ADMIN_SECRET)).json()
    assert answer["metrics"] is True and answer["interval_seconds"] == 5
    assert isinstance(answer["points"], list)
    (drive,) = answer["drives"]
    assert drive["drive"] == "data" and 0 < drive["free_bytes"] <= drive["total_bytes"]


# -- the metrics history -------------------------------------------------------------------


def sample(
    t: float, requests: float, seconds: float, buckets: tuple[tuple[float, float], ...]
) -> Sample:
    count = buckets[-1][1] if buckets else 0.0
    return Sample(t, requests, requests / 10, seconds, count, buckets, 1.0)


def test_rates_and_latencies_between_samples() -> None:
    inf = float("inf")
    before = sample(100.0, 50, 1.0, ((0.01, 40), (0.1, 50), (inf, 50)))
    after = sample(105.0, 150, 3.0, ((0.01, 130), (0.1, 148), (inf, 150)))
    p = point(before, after)
    assert p["requests_per_second"] == 20.0
    assert p["errors_per_second"] == 2.0
    assert p["latency_mean_ms"] == pytest.approx(20.0)  # 2 s over 100 requests
    assert p["latency_p95_ms"] == pytest.approx(100.0)  # the 95th of 100 is in (0.01, 0.1]
    assert quantile(0.5, before, after) == 0.01
    idle = point(after, sample(110.0, 150, 3.0, after.buckets))
    assert idle["requests_per_second"] == 0 and idle["latency_mean_ms"] is None
    assert idle["latency_p95_ms"] is None


def test_with_auth_off_the_endpoints_are_open(tmp_path: Path) -> None:
    """As `make run` serves (auth off): everything is open, like the rest of `/-/`."""
    config = {"auth": {"enabled": False}, "storage": {"directory": str(tmp_path / "data")}}
    with SyncServer(config) as shoal, httpx.Client(base_url=shoal.endpoint_url) as http:
        signed_client(shoal.endpoint_url).create_bucket(Bucket="open")
        assert http.get("/-/console/api/info").json()["auth"] is False
        names = [b["name"] for b in http.get("/-/console/api/buckets").json()["buckets"]]
        assert names == ["open"]
        assert http.get("/-/console/api/metrics").json()["metrics"] is True
        assert http.get("/-/console/").status_code == 200


def test_every_static_file_is_served_and_packaged() -> None:
    """A file added to app/console/static/ must have a known type (else the table skips
    it) and match pyproject.toml's package-data (else a wheel goes without it)."""
    root = Path(assets.__file__).resolve().parents[2]
    data = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]
    globs = data["package-data"]["shoal.app.console"]
    for path in assets.STATIC.iterdir():
        assert path.name in assets.ASSETS, path.name
        assert any(fnmatch.fnmatch(f"static/{path.name}", g) for g in globs), path.name


def test_samples_read_the_servers_own_counters(tmp_path: Path) -> None:
    metrics = Metrics(load_config({}, env={}), FileStore(tmp_path), lambda request: ANONYMOUS)
    before = read(metrics)
    metrics.requests.labels("GetObject", "200").inc(40)
    metrics.errors.labels("GetObject", "NoSuchKey").inc(4)
    for _ in range(40):
        metrics.duration.labels("GetObject").observe(0.003)
    after = read(metrics)
    assert (after.requests - before.requests, after.errors - before.errors) == (40, 4)
    assert quantile(0.95, before, after) == 0.005  # the bucket holding 3 ms
    series = Series(metrics, size=3)
    for _ in range(10):
        series.samples.append(read(metrics))
    assert len(series.samples) == 4  # bounded: the size, plus one to difference from


def test_the_readme_names_the_console_on_its_first_screen() -> None:
    """A new user reads the quick start, runs `make run`, and opens the console there."""
    root = Path(assets.__file__).resolve().parents[2]
    port = re.search(r"shoal serve .*--port (\d+)", (root / "Makefile").read_text())
    assert port is not None
    first_screen = "\n".join((root / "README.md").read_text().splitlines()[:25])
    assert f"http://127.0.0.1:{port.group(1)}/-/console/" in first_screen
