"""CORS in a real browser: headless Chromium loads a page from one loopback origin and
uploads/downloads an object on shoal with fetch(); allowed origins succeed, others are
blocked by the browser itself. Needs Debian's `chromium` (installed by .ci/run)."""

from __future__ import annotations

import http.server
import re
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Iterator

import pytest

from shoal.app.server import SyncServer
from tests.integration.conftest import signed_client

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="needs a headless browser: apt-get install chromium"
)

PAGE = """<!doctype html><html><body><pre id="out">pending</pre><script>
(async () => {
  const url = "%(endpoint)s/browser-bucket/from-the-page.txt";
  const out = document.getElementById("out");
  try {
    const put = await fetch(url, {method: "PUT", body: "hello from %(origin)s",
                                  headers: {"Content-Type": "text/plain"}});
    const got = await fetch(url);
    out.textContent = "RESULT:ok:" + put.status + ":" + (await got.text()) + ":" +
        got.headers.get("ETag");
  } catch (e) {
    out.textContent = "RESULT:blocked:" + e.name;
  }
})();
</script></body></html>"""


def serve_page() -> tuple[http.server.ThreadingHTTPServer, int]:
    """A page server on a free loopback port; its page is set once shoal's URL is known."""
    holder: dict[str, bytes] = {"page": b""}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.end_headers()
            self.wfile.write(holder["page"])

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.holder = holder  # type: ignore[attr-defined]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, server.server_address[1]


@pytest.fixture(scope="module")
def pages() -> Iterator[tuple[SyncServer, dict[str, tuple[object, str]]]]:
    allowed, allowed_port = serve_page()
    denied, denied_port = serve_page()
    origin = f"http://127.0.0.1:{allowed_port}"
    config = {
        "cors": {
            "enabled": True,
            "allowed_origins": [origin],
            "allowed_headers": ["*"],
            "exposed_headers": ["ETag"],
        }
    }
    with SyncServer(config) as shoal:
        endpoint = shoal.endpoint_url.replace("127.0.0.1", "localhost")  # another origin
        s3 = signed_client(shoal.endpoint_url)
        s3.create_bucket(Bucket="browser-bucket")
        servers = {}
        for name, (server, port) in {
            "allowed": (allowed, allowed_port),
            "denied": (denied, denied_port),
        }.items():
            page_origin = f"http://127.0.0.1:{port}"
            server.holder["page"] = (PAGE % {"endpoint": endpoint, "origin": page_origin}).encode()  # type: ignore[attr-defined]
            servers[name] = (server, f"{page_origin}/index.html")
        yield shoal, servers
    allowed.shutdown()
    denied.shutdown()


def run_page_dom(url: str) -> str:
    """The DOM Chromium ends up with after loading `url` and running its scripts."""
    with tempfile.TemporaryDirectory() as profile:
        done = subprocess.run(
            [
                CHROMIUM,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                f"--user-data-dir={profile}",
                "--virtual-time-budget=15000",
                "--dump-dom",
                url,
            ],
            capture_output=True,
            text=True,
            timeout=90,
        )
    return done.stdout


def run_page(url: str) -> str:
    dom = run_page_dom(url)
    match = re.search(r"RESULT:[^<]*", dom)
    assert match, f"no result from the page: {dom[-500:]}"
    return match.group(0)


def test_fetch_from_allowed_and_other_origins(pages) -> None:
    """One test, in order: the allowed page writes the object, the other page is blocked
    and (its preflight refused) never reaches it."""
    shoal, servers = pages
    result = run_page(servers["allowed"][1])
    assert result.startswith("RESULT:ok:200:hello from http://127.0.0.1:"), result
    assert result.count('"') == 2  # the ETag header was exposed to the script
    assert run_page(servers["denied"][1]) == "RESULT:blocked:TypeError"
    s3 = signed_client(shoal.endpoint_url)
    stored = s3.get_object(Bucket="browser-bucket", Key="from-the-page.txt")["Body"].read()
    assert stored.decode() == "hello from " + servers["allowed"][1].rsplit("/", 1)[0]
