"""Cost of authorization per request: `gate.check_operation` (what app/asgi.py awaits
before every handler) in µs per call, for the common cases, on a FileStore with auth on
and two credentials. Settings caches are warm, as in a busy server (they refresh once a
second per bucket; the loop spans several refreshes).

    python bench/authz_cost.py                       # this checkout
    python bench/authz_cost.py --before 5cc0606      # and that commit, taking turns

Cases: the owner reading (no policy, and with a one-statement policy), another account
allowed by the policy, and refusals (anonymous, another account with no policy, and
anonymous where some object of the bucket has grants of its own, which reads the
object's metadata). With `--before REF` the commit REF (exported with `git archive` to a
temporary directory laid out as the installed package) and this checkout are measured
in turns, `--rounds` times each, each in a fresh process; the table has each case's
median µs per call for both and their ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from shoal.app.asgi import create_app
from shoal.app.errors import AccessDenied
from shoal.auth import ANONYMOUS, Principal
from shoal.config import load_config
from shoal.storage.backend import ObjectWrite

OWNER, OTHER = "AKIDOWNER", "AKIDOTHER"
REPO = Path(__file__).resolve().parent.parent


async def _body() -> AsyncIterator[bytes]:
    yield b"payload"


def _policy(bucket: str) -> str:
    statement = {
        "Effect": "Allow",
        "Principal": {"AWS": f"arn:aws:iam::000000000000:user/{OTHER}"},
        "Action": "s3:GetObject",
        "Resource": f"arn:aws:s3:::{bucket}/*",
    }
    return json.dumps({"Version": "2012-10-17", "Statement": [statement]})


async def measure(seconds: float) -> dict[str, float]:
    directory = tempfile.mkdtemp(prefix="shoal-authz-")
    credentials = [
        {"access_key_id": OWNER, "secret_access_key": "s1"},
        {"access_key_id": OTHER, "secret_access_key": "s2"},
    ]
    config = load_config(
        {
            "auth": {"enabled": True, "credentials": credentials},
            "storage": {"directory": directory, "clean_slate": True},
            "server": {"silent": True},
        },
        env={},
    )
    app = create_app(config)
    backend, gate = app.state.backend, app.state.gate
    await backend.open()
    try:
        # Owner "" is the first credential's (and means nothing to code without owners).
        for bucket in ("plain", "withpolicy", "granted"):
            await backend.create_bucket(bucket)
            await backend.put_object(bucket, "k", _body(), ObjectWrite())
        await backend.put_bucket_policy("withpolicy", _policy("withpolicy"))
        # A bucket where some object has grants of its own: refusing a stranger then
        # reads the object's metadata (auth/bucketauth.py; an unused document before).
        await backend.put_bucket_document("granted", "object-grants", "true")
        owner, other = Principal(OWNER), Principal(OTHER)
        cases = {
            "owner GET, no policy": (owner, "plain", True),
            "owner GET, policy": (owner, "withpolicy", True),
            "other account GET, allowed by policy": (other, "withpolicy", True),
            "anonymous GET, refused": (ANONYMOUS, "plain", False),
            "other account GET, no policy": (other, "plain", None),
            "anonymous GET, refused, bucket with object grants": (ANONYMOUS, "granted", False),
        }
        results = {}
        for name, (principal, bucket, allowed) in cases.items():
            results[name] = await _per_call(gate, principal, bucket, allowed, seconds)
        return results
    finally:
        await backend.close()


async def _per_call(
    gate: Any, principal: Principal, bucket: str, allowed: bool | None, seconds: float
) -> float:
    """Median over rounds of the mean µs per check; `allowed` None: either outcome."""

    async def once() -> bool:
        try:
            await gate.check_operation("GetObject", principal, bucket, "k", {}, "s3:GetObject")
        except AccessDenied:  # a refusal is an outcome measured, not an error
            return False
        return True

    outcome = await once()
    assert allowed is None or outcome is allowed, (bucket, principal, outcome)
    rounds = []
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline or len(rounds) < 5:
        n, start = 2000, time.perf_counter()
        for _ in range(n):
            await once()
        rounds.append((time.perf_counter() - start) / n * 1e6)
    return statistics.median(rounds)


PACKAGE_DIRS = ("app", "auth", "cluster", "config", "storage")


def export_tree(ref: str, into: Path) -> Path:
    """`ref` laid out as the installed package (shoal/ with app/, auth/, ... inside), so
    that PYTHONPATH=<returned> imports it ahead of the editable install."""
    tree = into / "tree"
    tree.mkdir()
    archive = subprocess.run(["git", "archive", ref], cwd=REPO, check=True, capture_output=True)
    subprocess.run(["tar", "-x", "-C", str(tree)], input=archive.stdout, check=True)
    package = into / "py" / "shoal"
    shutil.copytree(tree / "shoal", package)
    for name in PACKAGE_DIRS:
        (package / name).symlink_to(tree / name)
    return into / "py"


def run_once(seconds: float, pythonpath: Path | None) -> dict[str, float]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    if pythonpath is not None:
        env["PYTHONPATH"] = str(pythonpath)
    argv = [sys.executable, __file__, "--seconds", str(seconds), "--json"]
    done = subprocess.run(argv, env=env, cwd=tempfile.gettempdir(), check=True, capture_output=True)
    return json.loads(done.stdout)


def compare(ref: str, rounds: int, seconds: float) -> None:
    with tempfile.TemporaryDirectory(prefix="shoal-authz-before-") as scratch:
        before_path = export_tree(ref, Path(scratch))
        before: list[dict[str, float]] = []
        after: list[dict[str, float]] = []
        for _ in range(rounds):
            before.append(run_once(seconds, before_path))
            after.append(run_once(seconds, None))
    print(f"{'before ' + ref:>16} {'after':>9} {'ratio':>6}  µs per check_operation (median)")
    for name in after[0]:
        b = statistics.median(r[name] for r in before)
        a = statistics.median(r[name] for r in after)
        print(f"{b:16.2f} {a:9.2f} {a / b:6.2f}  {name}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="per case (default 3)")
    parser.add_argument("--before", metavar="REF", help="also measure this commit, in turns")
    parser.add_argument("--rounds", type=int, default=3, help="with --before (default 3)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    if args.before:
        compare(args.before, args.rounds, args.seconds)
        return
    results = asyncio.run(measure(args.seconds))
    if args.json:
        print(json.dumps(results))
        return
    for name, micros in results.items():
        print(f"{micros:8.2f} µs  {name}")


if __name__ == "__main__":
    main()
