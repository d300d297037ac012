"""POST Object from a real browser: headless Chromium submits an HTML form built from a
presigned POST; within its policy it lands (and redirects back), outside it is refused."""

from __future__ import annotations

import html
import http.server
import json
import threading
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from shoal.app.server import SyncServer
from tests.integration.conftest import auth_config, signed_client
from tests.integration.test_cors_browser import CHROMIUM, run_page_dom

pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="needs a headless browser: apt-get install chromium"
)
KEY, SECRET = "AKIDBROWSERFORM", "browser-form-secret"

FORM = """<!doctype html><html><body>
<form id="f" method="post" enctype="multipart/form-data" action="%(action)s">%(inputs)s
<input type="file" name="file" id="file"></form>
<script>
const dt = new DataTransfer();
dt.items.add(new File([%(content)s], "page.txt", {type: "text/plain"}));
document.getElementById("file").files = dt.files;
document.getElementById("f").submit();
</script></body></html>"""


class Pages:
    """A loopback page server: /form/<n> serves a stored form, /done echoes its query."""

    def __init__(self) -> None:
        self.forms: dict[str, bytes] = {}
        pages = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                url = urlsplit(self.path)
                if url.path == "/done":
                    query = parse_qs(url.query)
                    body = f"<p>RESULT:ok:{html.escape(query['key'][0])}</p>".encode()
                else:
                    body = pages.forms[url.path]
                self.send_response(200)
                self.send_header("Content-Type", "text/html")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.origin = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def add(self, name: str, presigned: dict[str, Any], content: str, **override: str) -> str:
        fields = {**presigned["fields"], **override}
        inputs = "".join(
            f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}">'
            for k, v in fields.items()
        )
        page = FORM % {"action": presigned["url"], "inputs": inputs, "content": json.dumps(content)}
        self.forms[f"/form/{name}"] = page.encode()
        return f"{self.origin}/form/{name}"


@pytest.fixture(scope="module")
def setup() -> Iterator[tuple[Any, Pages]]:
    pages = Pages()
    with SyncServer(auth_config((KEY, SECRET))) as server:
        s3 = signed_client(server.endpoint_url, KEY, SECRET)
        s3.create_bucket(Bucket="browser-forms")
        yield s3, pages
    pages.server.shutdown()


def presign(s3: Any, pages: Pages, expires: int = 120) -> dict[str, Any]:
    done = f"{pages.origin}/done"
    return s3.generate_presigned_post(
        "browser-forms",
        "in/${filename}",
        Fields={"success_action_redirect": done, "Content-Type": "text/plain"},
        Conditions=[
            ["starts-with", "$key", "in/"],
            ["content-length-range", 1, 100],
            {"success_action_redirect": done},
            ["starts-with", "$Content-Type", "text/"],
        ],
        ExpiresIn=expires,
    )


def test_form_within_policy_lands(setup: tuple[Any, Pages]) -> None:
    s3, pages = setup
    dom = run_page_dom(pages.add("ok", presign(s3, pages), "hello from a form"))
    assert "RESULT:ok:in/page.txt" in dom
    assert s3.get_object(Bucket="browser-forms", Key="in/page.txt")["Body"].read() == (
        b"hello from a form"
    )


@pytest.mark.parametrize(
    ("case", "content", "override", "code"),
    [
        ("prefix", "x", {"key": "out/page.txt"}, "AccessDenied"),
        ("large", "x" * 500, {}, "EntityTooLarge"),
    ],
)
def test_form_outside_policy_is_refused(
    setup: tuple[Any, Pages], case: str, content: str, override: dict[str, str], code: str
) -> None:
    s3, pages = setup
    dom = run_page_dom(pages.add(case, presign(s3, pages), content, **override))
    assert code in dom and "RESULT:ok" not in dom
    assert "Contents" not in s3.list_objects_v2(Bucket="browser-forms", Prefix="out/")


def test_expired_form_is_refused(setup: tuple[Any, Pages]) -> None:
    s3, pages = setup
    url = pages.add("late", presign(s3, pages, expires=1), "late")
    time.sleep(2)
    dom = run_page_dom(url)
    assert "Policy expired" in dom and "RESULT:ok" not in dom
