"""The wrk-equivalent load generator (bench/loadgen.c): building it and running it.

`build()` compiles loadgen.c with the C compiler every CI and developer machine has
(`cc`, else `gcc`) into a folder of the caller's; `small_requests()` prepares one
request per key (SigV4-signed when credentials are given), `run()` runs one loop as its
own process (pinned to the client's CPUs) and returns its JSON figures.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import struct
import subprocess
from collections.abc import Iterable
from typing import Any

import procs
from sigv4 import Credentials, request_bytes

SOURCE = os.path.join(procs.BENCH_DIR, "loadgen.c")


def build(out_dir: str) -> str:
    """Compile loadgen.c into `out_dir`; returns the binary's path."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        raise RuntimeError("no C compiler (cc or gcc) to build bench/loadgen.c")
    out = os.path.join(out_dir, "loadgen")
    subprocess.run([cc, "-O2", "-o", out, SOURCE], check=True, capture_output=True, timeout=120)
    return out


def write_requests(path: str, requests: Iterable[bytes]) -> int:
    """The request file loadgen reads: records of a little-endian u32 length and bytes."""
    n = 0
    with open(path, "wb") as f:
        for r in requests:
            f.write(struct.pack("<I", len(r)))
            f.write(r)
            n += 1
    return n


def key_name(prefix: str, i: int) -> str:
    return f"{prefix}/k{i:05d}"


def small_requests(
    method: str,
    host: str,
    bucket: str,
    keys: list[str],
    body: bytes = b"",
    creds: Credentials | None = None,
) -> list[bytes]:
    """One request per key (PUT with `body`, or GET), each signed for its key."""
    payload = hashlib.sha256(body).hexdigest() if creds is not None and body else None
    return [
        request_bytes(method, f"/{bucket}/{k}", host, body, creds, payload_hash=payload)
        for k in keys
    ]


def run(
    binary: str,
    host: str,
    port: int,
    requests_path: str,
    *,
    conns: int,
    duration: float,
    warmup: float = 0.0,
    max_ops: int = 1_000_000,
    once: bool = False,
    expect_status: int = 200,
    expect_body: int = -1,
    cpus: set[int] | None = None,
    seed: int = 1,
) -> dict[str, Any]:
    """One loop of loadgen; its JSON result. `once`: every request once, in order
    (`duration` is then the time limit)."""
    argv = [
        binary,
        "--host",
        host,
        "--port",
        str(port),
        "--conns",
        str(conns),
        "--requests",
        requests_path,
        "--duration",
        str(duration),
        "--warmup",
        str(warmup),
        "--max-ops",
        str(max_ops),
        "--expect-status",
        str(expect_status),
        "--expect-body",
        str(expect_body),
        "--seed",
        str(seed),
    ] + (["--once"] if once else [])
    proc = subprocess.run(
        argv,
        capture_output=True,
        timeout=duration + warmup + 60,
        preexec_fn=procs.pin_fn(cpus),
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"loadgen failed ({proc.returncode}): {proc.stderr.decode()[-500:]}")
    return dict(json.loads(proc.stdout))
