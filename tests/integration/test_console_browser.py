"""The web console (/-/console/) in a real headless Chromium driven by Selenium through
Debian's chromedriver: sign in, create a bucket, upload 20 MiB by the file input
(multipart), see it listed, download it for real and compare bytes, delete it; and the
cluster page of a 3-node cluster with one node stopped, shown as down.

Screenshots of every page are kept: in $SHOAL_ARTIFACTS_DIR/console/ when that is set,
else in this run's pytest temporary folder (<basetemp>/console-screenshots/, printed).
Needs `apt-get install chromium chromium-driver` (.ci/run installs both)."""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from botocore.exceptions import ClientError

from shoal.app.server import SyncServer
from tests.integration.conftest import auth_config, signed_client, wait_for
from tests.integration.test_cluster import KEY, SECRET_KEY, make_nodes, running

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
try:
    from selenium import webdriver
    from selenium.common.exceptions import NoAlertPresentException, WebDriverException
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
except ImportError:  # the test extras not installed
    webdriver = None

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        CHROMIUM is None or CHROMEDRIVER is None,
        reason="needs a headless browser and its driver: apt-get install chromium chromium-driver",
    ),
    pytest.mark.skipif(webdriver is None, reason="needs selenium (the test extras)"),
]

#: Drops a file named arguments[1] holding arguments[2] on the element arguments[0].
DROP = """
const data = new DataTransfer();
data.items.add(new File([arguments[2]], arguments[1], {type: "text/plain"}));
for (const type of ["dragenter", "dragover", "drop"]) {
  const init = {dataTransfer: data, bubbles: true, cancelable: true};
  arguments[0].dispatchEvent(new DragEvent(type, init));
}
"""
ACCESS, SECRET = "console-admin", "console-admin-secret"
SIZE = 20 * 1024 * 1024


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = os.environ.get("SHOAL_ARTIFACTS_DIR")
    folder = Path(root) / "console" if root else tmp_path_factory.mktemp("console-screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    print(f"console screenshots in {folder}")
    return folder


@pytest.fixture
def downloads(tmp_path: Path) -> Path:
    folder = tmp_path / "downloads"
    folder.mkdir()
    return folder


@pytest.fixture
def browser(tmp_path: Path, downloads: Path) -> Iterator[Any]:
    yield from chromium(tmp_path, downloads)


#: A name for 127.0.0.1 that is not "localhost": a page from it is not a secure context.
INSECURE_HOST = "console.test"


@pytest.fixture
def insecure_browser(tmp_path: Path, downloads: Path) -> Iterator[Any]:
    yield from chromium(tmp_path, downloads, f"--host-resolver-rules=MAP {INSECURE_HOST} 127.0.0.1")


@pytest.fixture
def tls_browser(tmp_path: Path, downloads: Path) -> Iterator[Any]:
    """For a server with the tests' own self-signed certificate."""
    yield from chromium(tmp_path, downloads, "--ignore-certificate-errors")


def chromium(tmp_path: Path, downloads: Path, *flags: str) -> Iterator[Any]:
    """Headless Chromium through Debian's chromedriver, downloading into `downloads`."""
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1280,1000",
        f"--user-data-dir={tmp_path / 'profile'}",
        *flags,
    ):
        options.add_argument(flag)
    options.add_experimental_option(
        "prefs",
        {
            "download.default_directory": str(downloads),
            "download.prompt_for_download": False,
            "safebrowsing.enabled": False,
        },
    )
    # The driver's path given: Selenium Manager never looks for (or downloads) one.
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    try:
        driver.execute_cdp_cmd(
            "Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)}
        )
        yield driver
    finally:
        driver.quit()


def find(driver: Any, css: str) -> Any:
    return driver.find_element(By.CSS_SELECTOR, css)


def present(driver: Any, css: str) -> bool:
    return bool(driver.find_elements(By.CSS_SELECTOR, css))


def text_of(driver: Any, css: str) -> str:
    """The element's text, "" while it is not there (read in the page: pages re-render
    while a test polls them)."""
    script = "const e = document.querySelector(arguments[0]); return e ? e.innerText : '';"
    return driver.execute_script(script, css)


def value_of(driver: Any, css: str) -> str:
    return find(driver, css).get_attribute("value")


def button(driver: Any, label: str) -> Any:
    return next(b for b in driver.find_elements(By.TAG_NAME, "button") if b.text == label)


def save(driver: Any, param: str, document: str) -> None:
    """Type `document` into a bucket setting's editor and press its Save button."""
    area = find(driver, f"#edit-{param}")
    area.clear()
    area.send_keys(document)
    area.find_element(By.XPATH, "ancestor::section//button[text()='Save']").click()


def status_line(driver: Any) -> str:
    return find(driver, "#status").text


def submit(driver: Any, endpoint: str, key: str, secret: str, shots: Path | None = None) -> None:
    """Open the console and send the sign-in form."""
    driver.get(f"{endpoint}/-/console/")
    wait_for("the sign-in form", lambda: find(driver, "#sign-in").is_displayed())
    if shots is not None:
        driver.save_screenshot(str(shots / "01-sign-in.png"))
    find(driver, "#access-key").send_keys(key)
    find(driver, "#secret-key").send_keys(secret)
    find(driver, "#sign-in-button").click()


def sign_in(driver: Any, endpoint: str, key: str, secret: str, shots: Path | None = None) -> None:
    submit(driver, endpoint, key, secret, shots)
    wait_for(
        "signed in",
        lambda: find(driver, "#nav").is_displayed(),
        timeout=30,
        ignore=(WebDriverException,),
    )
    assert "secret" not in driver.current_url


def accept_confirm(driver: Any) -> bool:
    try:
        driver.switch_to.alert.accept()
    except NoAlertPresentException:
        return False
    return True


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_sign_in_bucket_upload_download_delete(
    browser: Any, shots: Path, downloads: Path, tmp_path: Path
) -> None:
    driver = browser
    config = {**auth_config((ACCESS, SECRET)), "storage": {"directory": str(tmp_path / "data")}}
    with SyncServer(config) as shoal:
        endpoint = shoal.endpoint_url
        submit(driver, endpoint, "wrong", "wrong")
        wait_for("a refused sign-in", lambda: "InvalidAccessKeyId" in status_line(driver))
        sign_in(driver, endpoint, ACCESS, SECRET, shots)
        wait_for("the buckets page", lambda: present(driver, "#bucket-list"))
        stored = driver.execute_script(
            "return JSON.stringify([sessionStorage, localStorage, document.cookie])"
        )
        assert SECRET not in stored and SECRET not in driver.page_source
        find(driver, "#new-bucket").send_keys("console-test")
        find(driver, "#create-bucket button[type=submit]").click()
        wait_for("the bucket listed", lambda: present(driver, 'tr[data-bucket="console-test"]'))
        s3 = signed_client(endpoint, ACCESS, SECRET)
        assert [b["Name"] for b in s3.list_buckets()["Buckets"]] == ["console-test"]
        driver.save_screenshot(str(shots / "02-buckets.png"))

        find(driver, 'tr[data-bucket="console-test"] a').click()
        wait_for("the object page", lambda: present(driver, "#file-input"))
        source = tmp_path / "big.bin"
        source.write_bytes(os.urandom(SIZE))
        find(driver, "#file-input").send_keys(str(source))
        wait_for("the upload under way", lambda: present(driver, 'li.upload[data-key="big.bin"]'))
        driver.save_screenshot(str(shots / "03-uploading.png"))
        wait_for(
            "the upload done",
            lambda: (
                find(driver, 'li.upload[data-key="big.bin"]').get_attribute("data-state")
                in ("done", "failed")
            ),
            timeout=120,
        )
        assert find(driver, 'li.upload[data-key="big.bin"]').get_attribute("data-state") == "done"
        wait_for("the object listed", lambda: present(driver, 'tr[data-key="big.bin"]'))
        # drag and drop: a file dropped on the drop zone (a DragEvent carrying it)
        driver.execute_script(DROP, find(driver, "#drop-zone"), "dropped.txt", "dropped by a test")
        wait_for("the dropped file listed", lambda: present(driver, 'tr[data-key="dropped.txt"]'))
        dropped = s3.get_object(Bucket="console-test", Key="dropped.txt")["Body"].read()
        assert dropped == b"dropped by a test"
        head = s3.head_object(Bucket="console-test", Key="big.bin")
        assert head["ContentLength"] == SIZE
        assert head["ETag"].endswith('-3"')  # multipart: 8 + 8 + 4 MiB
        driver.save_screenshot(str(shots / "04-objects.png"))

        find(driver, 'tr[data-key="big.bin"] td.actions button').click()
        target = downloads / "big.bin"
        wait_for(
            "the download on disk",
            lambda: target.exists() and target.stat().st_size == SIZE,
            timeout=120,
        )
        assert sha256(target) == sha256(source)

        find(driver, 'tr[data-key="big.bin"] td a').click()
        wait_for("the object's metadata", lambda: "content-length" in text_of(driver, "#metadata"))
        assert str(SIZE) in find(driver, "#metadata").text
        find(driver, "#share-expiry").send_keys("1 hour")
        button(driver, "Create link").click()
        wait_for("a share link", lambda: "X-Amz-Signature=" in value_of(driver, "#share-url"))
        link = value_of(driver, "#share-url")
        assert SECRET not in link and "X-Amz-Expires=3600" in link
        assert hashlib.sha256(httpx.get(link, timeout=30).content).hexdigest() == sha256(source)
        driver.save_screenshot(str(shots / "05-object.png"))

        driver.back()
        wait_for("the listing again", lambda: present(driver, 'tr[data-key="big.bin"] input.pick'))
        find(driver, 'tr[data-key="big.bin"] input.pick').click()
        find(driver, 'tr[data-key="dropped.txt"] input.pick').click()
        find(driver, "#delete-selected").click()
        wait_for("the confirmation", lambda: accept_confirm(driver), ignore=(WebDriverException,))
        wait_for("the objects gone", lambda: not present(driver, 'tr[data-key="big.bin"]'))
        assert not present(driver, 'tr[data-key="dropped.txt"]')
        assert "Deleted 2 object" in status_line(driver)
        assert s3.list_objects_v2(Bucket="console-test").get("KeyCount") == 0

        driver.get(f"{endpoint}/-/console/#/settings?bucket=console-test")
        wait_for("the settings page", lambda: find(driver, "#versioning-state").text != "")
        driver.save_screenshot(str(shots / "06-settings.png"))
        button(driver, "Enable versioning").click()
        wait_for("versioning on", lambda: text_of(driver, "#versioning-state") == "Enabled")
        assert s3.get_bucket_versioning(Bucket="console-test")["Status"] == "Enabled"
        save(driver, "policy", "{not json")
        wait_for("refused here", lambda: "not valid JSON" in status_line(driver))
        save(driver, "policy", '{"Version": "2012-10-17", "Statement": []}')
        wait_for("S3's own error", lambda: status_line(driver).startswith("MalformedPolicy: "))
        lifecycle = (
            "<LifecycleConfiguration><Rule><ID>tmp</ID><Status>Enabled</Status>"
            "<Filter><Prefix>tmp/</Prefix></Filter><Expiration><Days>7</Days></Expiration>"
            "</Rule></LifecycleConfiguration>"
        )
        save(driver, "lifecycle", lifecycle)
        wait_for("lifecycle saved", lambda: status_line(driver) == "Lifecycle saved.")
        rules = s3.get_bucket_lifecycle_configuration(Bucket="console-test")["Rules"]
        assert [r["ID"] for r in rules] == ["tmp"]

        # two versions of a key; the older one restored over the newer
        old = s3.put_object(Bucket="console-test", Key="docs/a b+c.txt", Body=b"first")
        s3.put_object(Bucket="console-test", Key="docs/a b+c.txt", Body=b"second")
        driver.get(f"{endpoint}/-/console/#/objects?bucket=console-test&prefix=docs%2F")
        wait_for("the folder", lambda: present(driver, 'tr[data-key="docs/a b+c.txt"] td a'))
        find(driver, 'tr[data-key="docs/a b+c.txt"] td a').click()
        wait_for("the versions", lambda: old["VersionId"] in text_of(driver, "#versions"))
        button(driver, "Restore").click()
        wait_for("restored", lambda: "restored" in status_line(driver))
        restored = s3.get_object(Bucket="console-test", Key="docs/a b+c.txt")["Body"].read()
        assert restored == b"first"
        find(driver, "#tags").send_keys("team=blue\nstage = test")
        button(driver, "Save tags").click()
        wait_for("tags saved", lambda: status_line(driver) == "Tags saved.")
        tags = s3.get_object_tagging(Bucket="console-test", Key="docs/a b+c.txt")["TagSet"]
        assert {t["Key"]: t["Value"] for t in tags} == {"team": "blue", "stage": "test"}
        driver.save_screenshot(str(shots / "07-versions.png"))

        driver.get(f"{endpoint}/-/console/#/accounts")
        wait_for("the accounts page", lambda: present(driver, f'tr[data-user="{ACCESS}"]'))
        find(driver, "#new-user").send_keys("alice")
        button(driver, "Add user").click()
        wait_for("alice's page", lambda: "User alice" in text_of(driver, "#user"))
        button(driver, "Create access key").click()
        wait_for("the new key", lambda: present(driver, "#new-secret"))
        alice_key, alice_secret = (
            e.text for e in driver.find_elements(By.CSS_SELECTOR, "#new-secret dd.mono")
        )
        driver.save_screenshot(str(shots / "08-accounts.png"))
        alice = signed_client(endpoint, alice_key, alice_secret)
        assert alice.list_buckets()["Buckets"] == []
        manage_alice(driver, alice)

        driver.set_window_size(390, 844)  # a phone
        driver.get(f"{endpoint}/-/console/#/buckets")
        wait_for("the bucket list", lambda: present(driver, 'tr[data-bucket="console-test"]'))
        driver.save_screenshot(str(shots / "09-buckets-phone.png"))

        find(driver, "#sign-out").click()
        wait_for("signed out", lambda: find(driver, "#sign-in").is_displayed())
        assert driver.execute_script("return sessionStorage.length") == 0
        # alice: no admin, no Accounts page, none of the admin's buckets
        sign_in(driver, endpoint, alice_key, alice_secret)
        wait_for(
            "alice's bucket list", lambda: "No buckets yet." in text_of(driver, "#bucket-list")
        )
        assert not find(driver, "#nav-accounts").is_displayed()
        assert not find(driver, "#nav-cluster").is_displayed()
        assert text_of(driver, "#whoami") == "alice"


NO_BUCKETS = (
    '{"Version": "2012-10-17", "Statement": [{"Effect": "Deny", '
    '"Action": "s3:CreateBucket", "Resource": "*"}]}'
)


def refused(call: Any, **kwargs: Any) -> str:
    """The error code of a boto3 call expected to fail."""
    with pytest.raises(ClientError) as info:
        call(**kwargs)
    return info.value.response["Error"]["Code"]


def manage_alice(driver: Any, alice: Any) -> None:
    """On alice's account page: a policy attached and detached, the account disabled and
    enabled, a second key made and revoked, each in effect at once (checked with
    alice's own boto3 calls)."""
    find(driver, "#policy-name").send_keys("no-buckets")
    find(driver, "#policy-body").send_keys(NO_BUCKETS)
    button(driver, "Attach").click()
    wait_for("the status", lambda: "no-buckets" in status_line(driver))
    assert status_line(driver) == "Policy no-buckets attached."
    wait_for("attached", lambda: button_there(driver, "Detach"))
    assert refused(alice.create_bucket, Bucket="alices") == "AccessDenied"
    button(driver, "Detach").click()
    wait_for("detached", lambda: "No policies attached." in text_of(driver, "#user"))
    alice.create_bucket(Bucket="alices")
    alice.delete_bucket(Bucket="alices")
    button(driver, "Disable").click()
    wait_for("disabled", lambda: button_there(driver, "Enable"))
    assert refused(alice.list_buckets) in ("AccessDenied", "InvalidAccessKeyId")
    button(driver, "Enable").click()
    wait_for("enabled", lambda: button_there(driver, "Disable"))
    assert alice.list_buckets()["Buckets"] == []
    # a second key, revoked: refused at once, the first one unaffected
    first = text_of(driver, "#new-secret")
    button(driver, "Create access key").click()
    wait_for("another key", lambda: text_of(driver, "#new-secret") not in ("", first))
    key, secret = (e.text for e in driver.find_elements(By.CSS_SELECTOR, "#new-secret dd.mono"))
    spare = signed_client(alice.meta.endpoint_url, key, secret)
    assert spare.list_buckets()["Buckets"] == []
    revoke = f'button[aria-label="Revoke {key}"]'
    wait_for("the key listed", lambda: present(driver, revoke))
    find(driver, revoke).click()
    wait_for("the confirmation", lambda: accept_confirm(driver), ignore=(WebDriverException,))
    wait_for("revoked", lambda: status_line(driver) == f"Key {key} revoked.")
    assert refused(spare.list_buckets) in ("InvalidAccessKeyId", "AccessDenied")
    assert alice.list_buckets()["Buckets"] == []


def button_there(driver: Any, label: str) -> bool:
    """Whether a button says `label` (asked in the page: rows are re-rendered meanwhile)."""
    return driver.execute_script(
        "return [...document.querySelectorAll('button')]"
        ".some((b) => b.textContent === arguments[0])",
        label,
    )


def test_cluster_page_shows_a_stopped_node_down(browser: Any, shots: Path, tmp_path: Path) -> None:
    driver = browser
    nodes = make_nodes(tmp_path, 3, 2, create_drives=False)
    with running(nodes) as (a, _b, c):
        c.kill(signal.SIGSTOP)  # alive to the kernel, never answers
        sign_in(driver, a.endpoint, KEY, SECRET_KEY)
        driver.get(f"{a.endpoint}/-/console/#/cluster")
        wait_for("the nodes table", lambda: present(driver, 'tr[data-node="node2"]'), timeout=30)
        wait_for(
            "node2 shown as down",
            lambda: find(driver, 'tr[data-node="node2"] td.state').text.startswith("down"),
            timeout=30,
            ignore=(WebDriverException,),
        )
        assert find(driver, 'tr[data-node="node0"] td.state').text == "up"
        # node1 runs on: up (a loaded machine may make it late, suspect, for a moment)
        wait_for(
            "node1 up",
            lambda: text_of(driver, 'tr[data-node="node1"] td.state') == "up",
            timeout=30,
            ignore=(WebDriverException,),
        )
        wait_for("the charts", lambda: present(driver, "#charts svg.chart"))
        wait_for("the drives", lambda: present(driver, "#drives tr.down"))  # node2's
        driver.set_window_size(1280, 2400)  # the whole page in the screenshot
        driver.save_screenshot(str(shots / "10-cluster.png"))


def test_an_upload_resumes_after_a_network_error(
    browser: Any, downloads: Path, tmp_path: Path
) -> None:
    """Part 2 of 3 cannot reach the server (the browser blocks its URL): parts 1 and 3
    are stored, the upload stops after its retries; with the network back, Resume asks
    the server which parts it holds and completes the same upload."""
    driver = browser
    config = {**auth_config((ACCESS, SECRET)), "storage": {"directory": str(tmp_path / "data")}}
    with SyncServer(config) as shoal:
        endpoint = shoal.endpoint_url
        s3 = signed_client(endpoint, ACCESS, SECRET)
        s3.create_bucket(Bucket="resumed")
        sign_in(driver, endpoint, ACCESS, SECRET)
        driver.get(f"{endpoint}/-/console/#/objects?bucket=resumed")
        wait_for("the object page", lambda: present(driver, "#file-input"))
        driver.execute_cdp_cmd("Network.enable", {})
        driver.execute_cdp_cmd("Network.setBlockedURLs", {"urls": ["*partNumber=2*"]})
        source = tmp_path / "resumable.bin"
        source.write_bytes(os.urandom(SIZE))
        find(driver, "#file-input").send_keys(str(source))
        row = 'li.upload[data-key="resumable.bin"]'
        wait_for(
            "the upload failed",
            lambda: find(driver, row).get_attribute("data-state") == "failed",
            timeout=60,
            ignore=(WebDriverException,),
        )
        (upload,) = s3.list_multipart_uploads(Bucket="resumed")["Uploads"]
        parts = s3.list_parts(Bucket="resumed", Key="resumable.bin", UploadId=upload["UploadId"])
        assert [p["PartNumber"] for p in parts["Parts"]] == [1, 3]

        driver.execute_cdp_cmd("Network.setBlockedURLs", {"urls": []})
        find(driver, f"{row} button").click()  # Resume
        wait_for(
            "the upload done",
            lambda: find(driver, row).get_attribute("data-state") == "done",
            timeout=60,
        )
        assert "Uploads" not in s3.list_multipart_uploads(Bucket="resumed")  # the same one
        stored = s3.get_object(Bucket="resumed", Key="resumable.bin")
        assert stored["ETag"].endswith('-3"')
        assert hashlib.sha256(stored["Body"].read()).hexdigest() == sha256(source)
        assert driver.execute_script("return sessionStorage.length") == 0  # the note gone
        driver.refresh()  # the key was in the page's memory only: sign in again
        wait_for("the sign-in form", lambda: find(driver, "#sign-in").is_displayed())


def test_signing_without_webcrypto_on_a_plain_http_name(
    insecure_browser: Any, tmp_path: Path
) -> None:
    """Over plain HTTP to a name other than loopback's, the browser withholds WebCrypto:
    the console signs with its own SHA-256 and HMAC, and the server accepts them."""
    driver = insecure_browser
    config = {**auth_config((ACCESS, SECRET)), "storage": {"directory": str(tmp_path / "data")}}
    with SyncServer(config) as shoal:
        endpoint = shoal.endpoint_url.replace("127.0.0.1", INSECURE_HOST)
        sign_in(driver, endpoint, ACCESS, SECRET)
        assert driver.execute_script("return window.isSecureContext") is False
        digests = driver.execute_async_script(
            """const done = arguments[arguments.length - 1];
            import("./sigv4.js").then(async (m) => done(await Promise.all(
              arguments[0].map((text) => m.sha256Hex(text)))));""",
            VECTORS,
        )
        assert digests == [hashlib.sha256(v.encode()).hexdigest() for v in VECTORS]
        find(driver, "#new-bucket").send_keys("plain-http")
        find(driver, "#create-bucket button[type=submit]").click()
        wait_for("the bucket listed", lambda: present(driver, 'tr[data-bucket="plain-http"]'))
        find(driver, 'tr[data-bucket="plain-http"] a').click()
        wait_for("the object page", lambda: present(driver, "#drop-zone"))
        driver.execute_script(DROP, find(driver, "#drop-zone"), "note.txt", "über plain HTTP")
        wait_for("the file listed", lambda: present(driver, 'tr[data-key="note.txt"]'))
        s3 = signed_client(shoal.endpoint_url, ACCESS, SECRET)
        body = s3.get_object(Bucket="plain-http", Key="note.txt")["Body"].read()
        assert body == "über plain HTTP".encode()

        # a bucket is deleted once empty; before, S3's refusal is shown
        driver.get(f"{endpoint}/-/console/#/buckets")
        delete_bucket = 'tr[data-bucket="plain-http"] button[aria-label="Delete bucket plain-http"]'
        wait_for("the bucket list", lambda: present(driver, delete_bucket))
        find(driver, delete_bucket).click()
        wait_for("the confirmation", lambda: accept_confirm(driver), ignore=(WebDriverException,))
        wait_for("S3's refusal", lambda: status_line(driver).startswith("BucketNotEmpty: "))
        s3.delete_object(Bucket="plain-http", Key="note.txt")
        find(driver, delete_bucket).click()
        wait_for("the confirmation", lambda: accept_confirm(driver), ignore=(WebDriverException,))
        wait_for("the bucket gone", lambda: not present(driver, 'tr[data-bucket="plain-http"]'))
        assert s3.list_buckets()["Buckets"] == []


#: SHA-256 inputs of every padding case: empty, one block, the 55/56/64-byte edges, and
#: several blocks of multi-byte characters.
VECTORS = ["", "abc", "a" * 55, "a" * 56, "a" * 64, "ä€😀" * 100]


def test_a_large_bucket_is_listed_a_page_at_a_time(browser: Any, tmp_path: Path) -> None:
    """1005 keys: 1000 on the first page, 5 on the next (a continuation token), and back."""
    driver = browser
    config = {**auth_config((ACCESS, SECRET)), "storage": {"directory": str(tmp_path / "data")}}
    with SyncServer(config) as shoal:
        s3 = signed_client(shoal.endpoint_url, ACCESS, SECRET)
        s3.create_bucket(Bucket="many")
        with ThreadPoolExecutor(8) as pool:
            list(
                pool.map(
                    lambda i: s3.put_object(Bucket="many", Key=f"k{i:04}", Body=b""), range(1005)
                )
            )
        sign_in(driver, shoal.endpoint_url, ACCESS, SECRET)
        driver.get(f"{shoal.endpoint_url}/-/console/#/objects?bucket=many")
        rows = "return document.querySelectorAll('#objects tr[data-key]').length"
        wait_for("the first page", lambda: driver.execute_script(rows) == 1000)
        assert button_there(driver, "Next page") and not button_there(driver, "Previous page")
        button(driver, "Next page").click()
        wait_for("the second page", lambda: driver.execute_script(rows) == 5)
        assert text_of(driver, "#objects tbody tr:last-child").split()[0] == "k1004"
        assert not button_there(driver, "Next page")
        button(driver, "Previous page").click()
        wait_for("the first page again", lambda: driver.execute_script(rows) == 1000)
        assert text_of(driver, "#objects tbody tr:first-child").split()[0] == "k0000"


def test_the_console_over_https(
    tls_browser: Any, downloads: Path, tmp_path: Path, tls_files: tuple[str, str]
) -> None:
    """Served over the S3 listener's TLS: relative URLs, signing and downloads work."""
    driver = tls_browser
    config = {
        **auth_config((ACCESS, SECRET)),
        "storage": {"directory": str(tmp_path / "data")},
        "server": {"tls": {"cert_file": tls_files[0], "key_file": tls_files[1]}},
    }
    with SyncServer(config) as shoal:
        endpoint = shoal.endpoint_url
        assert endpoint.startswith("https://")
        sign_in(driver, endpoint, ACCESS, SECRET)
        find(driver, "#new-bucket").send_keys("over-tls")
        find(driver, "#create-bucket button[type=submit]").click()
        wait_for("the bucket listed", lambda: present(driver, 'tr[data-bucket="over-tls"]'))
        find(driver, 'tr[data-bucket="over-tls"] a').click()
        wait_for("the object page", lambda: present(driver, "#drop-zone"))
        driver.execute_script(DROP, find(driver, "#drop-zone"), "secret.txt", "sent over TLS")
        wait_for("the file listed", lambda: present(driver, 'tr[data-key="secret.txt"]'))
        find(driver, 'tr[data-key="secret.txt"] td.actions button').click()
        target = downloads / "secret.txt"
        wait_for("the download", lambda: target.exists() and target.stat().st_size == 13)
        assert target.read_bytes() == b"sent over TLS"
