"""The lifecycle worker's pace against a foreground load, in one run.

Starts `shoal serve` (standalone, a temporary directory) with a one-second lifecycle day
and a pass every second, fills a bucket with `--objects` small objects, then measures a
4 KiB GET load (`--clients` processes, keep-alive connections, `--seconds` each phase):

1. before: the GET load alone (no lifecycle rules yet);
2. during: a rule expiring every object of the filled bucket is put, and once the
   worker has started, the same GET load runs while it deletes: objects expired per
   second (from shoal_lifecycle_actions_total{action="expired"}) and GET ops/s;
3. after: the rule removed (a pass stops at its next page), the GET load alone again.

Usage: python bench/lifecycle_pace.py [--objects 3000] [--seconds 8] [--clients 4]
       [--ops 200]   (lifecycle.operations_per_second, the worker's budget)
Bounded in time: about 3 x --seconds plus the fill, and every wait has a deadline.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import http.client
import multiprocessing
import os
import re
import subprocess
import sys
import tempfile
import time
from urllib.parse import urlsplit

BODY_4K = os.urandom(4096)
RULES = (
    b"<LifecycleConfiguration><Rule><ID>all</ID><Status>Enabled</Status><Filter/>"
    b"<Expiration><Days>1</Days></Expiration></Rule></LifecycleConfiguration>"
)


def start_server(directory: str, ops: int) -> tuple[subprocess.Popen[str], str]:
    env = {
        **os.environ,
        "SHOAL_LIFECYCLE__DAY_SECONDS": "1",
        "SHOAL_LIFECYCLE__INTERVAL_SECONDS": "1",
        "SHOAL_LIFECYCLE__OPERATIONS_PER_SECOND": str(ops),
    }
    argv = [sys.executable, "-m", "shoal", "serve", "--address", "127.0.0.1", "--port", "0"]
    argv += ["--dir", directory, "--log-level", "error"]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, env=env)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if "listening on" not in line:
        proc.kill()
        raise SystemExit(f"server did not start: {line!r}")
    return proc, line.strip().rsplit(" ", 1)[1]


def connect(endpoint: str) -> http.client.HTTPConnection:
    parts = urlsplit(endpoint)
    return http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=30)


def request(
    conn: http.client.HTTPConnection,
    method: str,
    path: str,
    body: bytes = b"",
    headers: dict[str, str] | None = None,
) -> tuple[int, bytes]:
    conn.request(method, path, body=body, headers=headers or {})
    response = conn.getresponse()
    return response.status, response.read()


def put_many(args: tuple[str, int, int]) -> int:
    endpoint, start, stop = args
    conn = connect(endpoint)
    for i in range(start, stop):
        status, _ = request(conn, "PUT", f"/cold/obj-{i:07d}", b"x" * 100)
        assert status == 200, status
    return stop - start


def get_load(args: tuple[str, float]) -> int:
    """GET /hot/k (4 KiB) on one keep-alive connection until the deadline; ops done."""
    endpoint, seconds = args
    conn = connect(endpoint)
    done, deadline = 0, time.monotonic() + seconds
    while time.monotonic() < deadline:
        status, body = request(conn, "GET", "/hot/k")
        assert status == 200 and len(body) == 4096, status
        done += 1
    return done


def expired_total(endpoint: str) -> float:
    conn = connect(endpoint)
    _, text = request(conn, "GET", "/metrics")
    found = re.search(rb'^shoal_lifecycle_actions_total\{action="expired"\} (\S+)$', text, re.M)
    return float(found[1]) if found else 0.0


def remaining(endpoint: str) -> int:
    conn = connect(endpoint)
    _, text = request(conn, "GET", "/cold?list-type=2&max-keys=1000")
    return text.count(b"<Key>")


def load(pool: multiprocessing.pool.Pool, endpoint: str, clients: int, seconds: float) -> float:
    return sum(pool.map(get_load, [(endpoint, seconds)] * clients)) / seconds


def _steady(endpoint: str) -> bool:
    """No object expired over half a second."""
    first = expired_total(endpoint)
    time.sleep(0.5)
    return expired_total(endpoint) == first


def wait_until(what: str, check, timeout: float) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting until {what}")
        time.sleep(0.05)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--objects", type=int, default=3000)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--ops", type=int, default=200, help="lifecycle.operations_per_second")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="shoal-lifecycle-pace-") as directory:
        proc, endpoint = start_server(directory, args.ops)
        try:
            with multiprocessing.Pool(max(args.clients, 8)) as pool:
                conn = connect(endpoint)
                for bucket in ("hot", "cold"):
                    assert request(conn, "PUT", f"/{bucket}")[0] == 200
                assert request(conn, "PUT", "/hot/k", BODY_4K)[0] == 200
                step = -(-args.objects // 8)
                chunks = [
                    (endpoint, i, min(i + step, args.objects)) for i in range(0, args.objects, step)
                ]
                filled_at = time.monotonic()
                sum(pool.map(put_many, chunks))
                print(f"filled {args.objects} objects in {time.monotonic() - filled_at:.1f} s")

                before = load(pool, endpoint, args.clients, args.seconds)
                md5 = base64.b64encode(hashlib.md5(RULES).digest()).decode()
                conn = connect(endpoint)  # the first one has idled past keep-alive
                status, body = request(conn, "PUT", "/cold?lifecycle", RULES, {"Content-MD5": md5})
                assert status == 200, body
                wait_until("the worker starts expiring", lambda: expired_total(endpoint) > 0, 30)
                start_count = expired_total(endpoint)
                during = load(pool, endpoint, args.clients, args.seconds)
                expired = expired_total(endpoint) - start_count
                left = remaining(endpoint)
                print(f"GET 4 KiB, {args.clients} clients, before: {before:8.0f} ops/s")
                print(
                    f"GET 4 KiB, {args.clients} clients, during: {during:8.0f} ops/s "
                    f"({during / before - 1:+.1%})"
                )
                print(
                    f"worker: {expired / args.seconds:.0f} objects expired/s during the load "
                    f"(budget lifecycle.operations_per_second = {args.ops}); "
                    f"{'more than ' if left >= 1000 else ''}{left} objects left at the end"
                )
                # Remove the rule: the pass stops at its next page (it checks).
                conn = connect(endpoint)
                assert request(conn, "DELETE", "/cold?lifecycle")[0] == 204
                wait_until(
                    "the worker stops",
                    lambda: _steady(endpoint),
                    30,
                )
                after = load(pool, endpoint, args.clients, args.seconds)
                print(f"GET 4 KiB, {args.clients} clients, after:  {after:8.0f} ops/s")
        finally:
            proc.terminate()
            proc.wait(timeout=30)


if __name__ == "__main__":
    main()
