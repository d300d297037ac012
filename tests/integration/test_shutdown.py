"""Graceful shutdown: on SIGTERM the server stops accepting connections, lets requests in
flight finish up to its deadline (--timeout-graceful-shutdown), cuts off the rest
without storing anything partial, closes storage and exits 0 (`shoal serve`).

Uploads are real streaming PUTs (httpx, a generator body fed a piece at a time from a
thread), started before the signal: one ends within the deadline and must be stored
whole, one is still sending at the deadline and must leave no object and no temporary
file behind."""

from __future__ import annotations

import hashlib
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.conftest import erasure_config
from tests.integration.serving import Proc

PIECE = 64 * 1024
GRACE = 4.0  # seconds
#: The process must be gone this long after SIGTERM: the deadline, plus the time a
#: loaded machine needs to cancel, clean up and close storage.
MARGIN = 15.0


@dataclass
class Upload:
    """A PUT of `pieces` pieces, one every `interval` seconds, in a thread."""

    url: str
    pieces: int
    interval: float
    data: bytes = b""
    sent: int = 0
    result: Any = None
    started: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self.data = bytes(i % 251 for i in range(self.pieces * PIECE))
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _body(self) -> Iterator[bytes]:
        for i in range(self.pieces):
            yield self.data[i * PIECE : (i + 1) * PIECE]
            self.sent += 1
            self.started.set()
            time.sleep(self.interval)

    def _run(self) -> None:
        headers = {"content-length": str(len(self.data))}
        try:
            with httpx.Client(timeout=60) as client:
                self.result = client.put(self.url, content=self._body(), headers=headers)
        except httpx.HTTPError as exc:  # the server cut the connection
            self.result = exc

    def wait(self) -> Any:
        self.thread.join(60)
        assert not self.thread.is_alive()
        return self.result


def files_named(root: Path, part: str) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and part in str(p.relative_to(root))]


def temp_files(root: Path) -> list[Path]:
    """Leftovers of unfinished writes: the standalone store's .tmp/ and each drive's
    tmp/, and *.tmp files anywhere."""
    found = [p for p in root.rglob("*.tmp") if p.is_file()]
    for tmp in [*root.rglob(".tmp"), *root.rglob(".smartstorage/tmp")]:
        found += [p for p in tmp.rglob("*") if p.is_file()]
    return found


def shut_down_during_uploads(proc: Proc, root: Path) -> None:
    assert httpx.put(f"{proc.url}/shutdown", timeout=30).status_code == 200
    whole = Upload(f"{proc.url}/shutdown/whole", pieces=4, interval=0.25)
    cut = Upload(f"{proc.url}/shutdown/cut", pieces=80, interval=0.25)
    assert whole.started.wait(30) and cut.started.wait(30)
    proc.terminate()
    signalled = time.monotonic()
    proc.wait_for("Shutting down")
    # No new connections once shutdown has begun.
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{proc.url}/-/live", timeout=5)

    code = proc.wait(GRACE + MARGIN)
    elapsed = time.monotonic() - signalled
    assert code == 0, proc.stderr()
    assert elapsed < GRACE + MARGIN

    done = whole.wait()
    assert isinstance(done, httpx.Response) and done.status_code == 200, done
    assert done.headers["etag"].strip('"') == hashlib.md5(whole.data).hexdigest()
    ended = cut.wait()
    assert cut.sent < cut.pieces, "the long upload was not cut off"
    if isinstance(ended, httpx.Response):  # cut off before its response began
        assert ended.status_code == 503 and b"ServiceUnavailable" in ended.content
    assert files_named(root, "cut") == []
    assert temp_files(root) == []
    assert "Traceback" not in proc.stderr()


def check_stored(tmp_path: Path, settings: dict[str, Any], whole: bytes) -> None:
    """Restarted on the same storage: the finished upload is there, whole; the cut one
    is not."""
    proc = Proc(tmp_path, settings=settings, name="again")
    try:
        got = httpx.get(f"{proc.url}/shutdown/whole", timeout=30)
        assert got.status_code == 200 and got.content == whole
        assert httpx.head(f"{proc.url}/shutdown/cut", timeout=30).status_code == 404
        listing = httpx.get(f"{proc.url}/shutdown?list-type=2", timeout=30).text
        assert "<Key>whole</Key>" in listing and "<Key>cut</Key>" not in listing
    finally:
        assert proc.stop() == 0


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["standalone", "erasure"])
def test_sigterm_finishes_uploads_within_the_deadline_and_cuts_off_the_rest(
    tmp_path: Path, mode: str
) -> None:
    data = tmp_path / "data"
    settings: dict[str, Any] = {"storage": {"directory": str(data)}}
    if mode == "erasure":
        settings |= erasure_config(tmp_path / "drives")
    proc = Proc(tmp_path, "--timeout-graceful-shutdown", str(GRACE), settings=settings)
    try:
        shut_down_during_uploads(proc, tmp_path)
    finally:
        proc.kill()
    whole = bytes(i % 251 for i in range(4 * PIECE))
    check_stored(tmp_path, settings, whole)


@pytest.mark.slow
def test_sigterm_under_plain_uvicorn(tmp_path: Path) -> None:
    """The same under `uvicorn shoal:create_app --factory --timeout-graceful-shutdown`,
    except that uvicorn (>= 0.29) re-raises SIGTERM once it has shut down gracefully, so
    the process ends as killed by SIGTERM, which systemd counts as a clean stop. Every
    log line is written before that, up to uvicorn's last."""
    data = tmp_path / "data"
    settings: dict[str, Any] = {"storage": {"directory": str(data)}}
    flags = ("--http", "shoal.app.protocol:HttpProtocol", "--timeout-graceful-shutdown", "4")
    proc = Proc(tmp_path, *flags, settings=settings, uvicorn=True)
    try:
        assert httpx.put(f"{proc.url}/shutdown", timeout=30).status_code == 200
        whole = Upload(f"{proc.url}/shutdown/whole", pieces=4, interval=0.25)
        cut = Upload(f"{proc.url}/shutdown/cut", pieces=80, interval=0.25)
        assert whole.started.wait(30) and cut.started.wait(30)
        proc.terminate()
        assert proc.wait(GRACE + MARGIN) in (0, -signal.SIGTERM)
    finally:
        proc.kill()
    assert whole.wait().status_code == 200
    cut.wait()
    assert cut.sent < cut.pieces
    assert files_named(tmp_path / "data", "cut") == [] and temp_files(tmp_path) == []
    assert "Finished server process" in proc.stderr()
    check_stored(tmp_path, settings, whole.data)
