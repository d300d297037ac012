"""Lean asyncio HTTP/1.1 load client, run in its own process by bench/run.py.

One `asyncio.Protocol` per keep-alive connection; responses are parsed by hand (status
line, Content-Length or chunked bodies) and bodies are counted, not kept, unless asked.
Every loop is bounded in time and in count.

Usage: `python bench/client.py '<json spec>'` prints one JSON document on stdout. The spec
is `{"host": ..., "port": ..., "ops": [{"op": "small_put", ...}, ...]}`; each op's
result is a dict, in order (see the `op_*` functions for their fields).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import html
import json
import os
import random
import re
import resource
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any, cast
from urllib.parse import quote

from sigv4 import UNSIGNED_PAYLOAD, Credentials, signed_headers

MiB = 1 << 20

#: Set from the spec's "auth" ({access_key, secret, region}): every request is then
#: SigV4-signed (payload UNSIGNED-PAYLOAD, which S3 allows), as for a server that
#: runs with auth on.
AUTH: Credentials | None = None

_HEAD, _BODY, _CHUNKED, _UNTIL_CLOSE = range(4)


@dataclass
class Response:
    """A parsed response; `body` is only filled when the request asked to keep it."""

    status: int
    headers: dict[bytes, bytes]
    body_len: int
    body: bytes


class Connection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection; one request in flight at a time."""

    def __init__(self, host_header: bytes) -> None:
        self.host_header = host_header
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self._buf = bytearray()
        self._state = _HEAD
        self._waiter: asyncio.Future[Response] | None = None
        self._keep = False
        self._method = b"GET"
        self._status = 0
        self._headers: dict[bytes, bytes] = {}
        self._body = bytearray()
        self._body_len = 0
        self._remaining = 0
        self._chunk_crlf = False
        self._in_trailers = False
        self._paused = False
        self._drain: asyncio.Future[None] | None = None

    # -- asyncio callbacks -------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's isn't a subclass
        self.transport.set_write_buffer_limits(high=4 * MiB)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._state == _UNTIL_CLOSE:
            self._complete()
        elif self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(ConnectionError(f"connection lost: {exc}"))
        if self._drain is not None and not self._drain.done():
            self._drain.set_exception(ConnectionError("connection lost"))

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False
        if self._drain is not None and not self._drain.done():
            self._drain.set_result(None)

    def data_received(self, data: bytes) -> None:
        state = self._state
        if state == _BODY:
            self._take_body(data)
        elif state == _HEAD:
            self._buf += data
            self._parse_head()
        elif state == _CHUNKED:
            self._buf += data
            self._parse_chunked()
        else:
            self._count(data)

    # -- parsing -----------------------------------------------------------------------

    def _count(self, data: bytes | bytearray) -> None:
        self._body_len += len(data)
        if self._keep:
            self._body += data

    def _fail(self, message: str) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(ConnectionError(message))
        if self.transport is not None:
            self.transport.close()

    def _parse_head(self) -> None:
        buf = self._buf
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            return
        lines = bytes(buf[:end]).split(b"\r\n")
        rest = bytes(buf[end + 4 :])
        self._buf = bytearray()
        try:
            status = int(lines[0][9:12])
        except ValueError:
            self._fail(f"bad status line {lines[0][:80]!r}")
            return
        headers: dict[bytes, bytes] = {}
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            headers[name.strip().lower()] = value.strip()
        if 100 <= status < 200:  # interim response: parse what follows
            self._buf = bytearray(rest)
            self._parse_head()
            return
        self._status, self._headers = status, headers
        if self._method == b"HEAD" or status in (204, 304):
            self._complete()
            return
        if b"chunked" in headers.get(b"transfer-encoding", b"").lower():
            self._state = _CHUNKED
            self._buf = bytearray(rest)
            self._parse_chunked()
            return
        length = headers.get(b"content-length")
        if length is None:
            self._state = _UNTIL_CLOSE
            self._count(rest)
            return
        self._remaining = int(length)
        self._state = _BODY
        if rest or self._remaining == 0:
            self._take_body(rest)

    def _take_body(self, data: bytes) -> None:
        n = len(data)
        if n > self._remaining:
            self._fail("more bytes than Content-Length")
            return
        self._remaining -= n
        self._count(data)
        if self._remaining == 0:
            self._complete()

    def _parse_chunked(self) -> None:
        buf = self._buf
        while True:
            if self._in_trailers:
                if buf.startswith(b"\r\n"):
                    del buf[:2]
                    self._complete()
                    return
                end = buf.find(b"\r\n\r\n")
                if end < 0:
                    return
                del buf[: end + 4]
                self._complete()
                return
            if self._remaining:
                take = min(len(buf), self._remaining)
                if take == 0:
                    return
                self._count(buf[:take])
                del buf[:take]
                self._remaining -= take
                if self._remaining:
                    return
                self._chunk_crlf = True
            if self._chunk_crlf:
                if len(buf) < 2:
                    return
                del buf[:2]
                self._chunk_crlf = False
            end = buf.find(b"\r\n")
            if end < 0:
                return
            size = int(bytes(buf[:end]).split(b";")[0], 16)
            del buf[: end + 2]
            if size == 0:
                self._in_trailers = True
            else:
                self._remaining = size

    def _complete(self) -> None:
        response = Response(self._status, self._headers, self._body_len, bytes(self._body))
        self._state = _HEAD
        self._in_trailers = False
        self._body = bytearray()
        waiter, self._waiter = self._waiter, None
        if self._headers.get(b"connection", b"").lower() == b"close" and self.transport:
            self.transport.close()
        if waiter is not None and not waiter.done():
            waiter.set_result(response)

    # -- requests ----------------------------------------------------------------------

    def _start(self, method: bytes, keep_body: bool) -> asyncio.Future[Response]:
        if self.closed or self.transport is None:
            raise ConnectionError("connection closed")
        self._waiter = asyncio.get_running_loop().create_future()
        self._method = method
        self._keep = keep_body
        self._body_len = 0
        self._body = bytearray()
        return self._waiter

    def head_bytes(self, method: bytes, target: str, extra: str = "", length: int = -1) -> bytes:
        """The request head; Content-Length only when `length` >= 0."""
        cl = f"Content-Length: {length}\r\n" if length >= 0 else ""
        if AUTH is not None:
            path, _, query = target.partition("?")
            signed = signed_headers(
                AUTH,
                method.decode(),
                path,
                self.host_header.decode(),
                query=query,
                payload_hash=UNSIGNED_PAYLOAD,
            )
            del signed["host"]
            extra = "".join(f"{k}: {v}\r\n" for k, v in signed.items()) + extra
        return (
            method
            + b" "
            + target.encode()
            + b" HTTP/1.1\r\nHost: "
            + self.host_header
            + b"\r\n"
            + f"{cl}{extra}\r\n".encode()
        )

    async def send(self, raw: bytes, method: bytes = b"GET", keep_body: bool = False) -> Response:
        """Send a fully formed request (head + body) and wait for its response."""
        waiter = self._start(method, keep_body)
        assert self.transport is not None
        self.transport.write(raw)
        return await waiter

    async def request(
        self,
        method: bytes,
        target: str,
        body: bytes = b"",
        extra: str = "",
        keep_body: bool = False,
    ) -> Response:
        length = len(body) if (body or method in (b"PUT", b"POST")) else -1
        return await self.send(
            self.head_bytes(method, target, extra, length) + body, method, keep_body
        )

    async def stream_put(self, target: str, size: int, chunks: Iterator[bytes]) -> Response:
        """PUT `size` bytes produced by `chunks`, honouring transport flow control."""
        waiter = self._start(b"PUT", False)
        assert self.transport is not None
        self.transport.write(self.head_bytes(b"PUT", target, "", size))
        for chunk in chunks:
            if waiter.done():  # early answer (an error): stop sending
                break
            self.transport.write(chunk)
            if self._paused:
                self._drain = asyncio.get_running_loop().create_future()
                await self._drain
        return await waiter

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


async def connect(host: str, port: int) -> Connection:
    loop = asyncio.get_running_loop()
    host_header = f"{host}:{port}".encode()
    _, proto = await loop.create_connection(lambda: Connection(host_header), host, port)
    return proto


# ---------------------------------------------------------------- measurement helpers


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty list."""
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]


def cpu_seconds() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


async def closed_loop(
    conns: list[Connection],
    one: Callable[[Connection, int, int], Awaitable[Response]],
    expect: int,
    duration: float,
    max_ops: int,
) -> dict[str, Any]:
    """Each connection issues requests back to back until time or count runs out."""
    latencies: list[float] = []
    samples: list[str] = []
    n_errors = issued = 0
    end = time.perf_counter() + duration

    async def worker(wid: int, conn: Connection) -> None:
        nonlocal issued, n_errors
        seq = 0
        clock = time.perf_counter
        while issued < max_ops:
            t0 = clock()
            if t0 >= end:
                break
            issued += 1
            response = await one(conn, wid, seq)
            seq += 1
            latencies.append(clock() - t0)
            if response.status != expect:
                n_errors += 1
                if len(samples) < 5:
                    samples.append(f"status {response.status}")

    cpu0, t0 = cpu_seconds(), time.perf_counter()
    await asyncio.gather(*(worker(i, c) for i, c in enumerate(conns)))
    elapsed = time.perf_counter() - t0
    cpu = cpu_seconds() - cpu0
    ok = len(latencies) - n_errors
    return {
        "ops": len(latencies),
        "errors": n_errors,
        "error_samples": samples,
        "seconds": elapsed,
        "ops_per_s": ok / elapsed if elapsed > 0 else 0.0,
        "p50_ms": percentile(latencies, 50) * 1e3 if latencies else None,
        "p99_ms": percentile(latencies, 99) * 1e3 if latencies else None,
        "client_cpu": cpu / elapsed if elapsed > 0 else 0.0,
    }


async def open_conns(host: str, port: int, n: int) -> list[Connection]:
    return list(await asyncio.gather(*(connect(host, port) for _ in range(n))))


def close_all(conns: list[Connection]) -> None:
    for c in conns:
        c.close()


# ---------------------------------------------------------------- operations


async def op_bucket(host: str, port: int, spec: dict[str, Any]) -> dict[str, Any]:
    """Create bucket `bucket` (200 or an 'already exists' answer both count as done)."""
    conn = await connect(host, port)
    try:
        r = await conn.request(b"PUT", f"/{spec['bucket']}", keep_body=True)
        return {"status": r.status}
    finally:
        conn.close()


#: PutBucketEncryption's body for SSE-S3 as the default of every write.
SSE_S3_DEFAULT = (
    b'<ServerSideEncryptionConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
    b"<Rule><ApplyServerSideEncryptionByDefault><SSEAlgorithm>AES256</SSEAlgorithm>"
    b"</ApplyServerSideEncryptionByDefault></Rule></ServerSideEncryptionConfiguration>"
)


async def op_bucket_encryption(host: str, port: int, spec: dict[str, Any]) -> dict[str, Any]:
    """PutBucketEncryption on `bucket`: SSE-S3 (AES256) by default for every write that
    names no encryption itself; then GetBucketEncryption, to report what the server
    holds. Unsigned, like every bench request (the servers run with auth off)."""
    md5 = base64.b64encode(hashlib.md5(SSE_S3_DEFAULT).digest()).decode()
    conn = await connect(host, port)
    try:
        target = f"/{spec['bucket']}?encryption="
        put = await conn.request(
            b"PUT", target, SSE_S3_DEFAULT, f"Content-MD5: {md5}\r\n", keep_body=True
        )
        get = await conn.request(b"GET", target, keep_body=True)
        return {
            "status": put.status,
            "put_body": put.body.decode(errors="replace")[:500],
            "get_status": get.status,
            "algorithm": "AES256" if b"<SSEAlgorithm>AES256</SSEAlgorithm>" in get.body else None,
        }
    finally:
        conn.close()


async def op_small_put(host: str, port: int, spec: dict[str, Any]) -> dict[str, Any]:
    """PUT `size`-byte objects at `concurrency` for `duration` s (after `warmup` s)."""
    bucket, size, conc = spec["bucket"], spec["size"], spec["concurrency"]
    # Fresh keys on every run: overwriting is a different workload (the old data is
    # freed, which on a filesystem mounted with `discard` means TRIMs).
    prefix = f"{spec.get('prefix', 'put')}-{os.urandom(4).hex()}"
    body = os.urandom(size)
    conns = await open_conns(host, port, conc)
    try:

        async def one_put(conn: Connection, wid: int, seq: int, tag: str = "w") -> Response:
            target = f"/{bucket}/{prefix}/c{conc}{tag}{wid}/{seq}"
            return await conn.request(b"PUT", target, body)

        if spec.get("warmup", 0) > 0:

            async def warm(conn: Connection, wid: int, seq: int) -> Response:
                return await one_put(conn, wid, seq, "x")

            await closed_loop(conns, warm, 200, spec["warmup"], spec["max_ops"])
        return await closed_loop(conns, one_put, 200, spec["duration"], spec["max_ops"])
    finally:
        close_all(conns)


async def populate(
    host: str, port: int, bucket: str, keys: list[str], size: int, concurrency: int
) -> dict[str, Any]:
    """PUT every key once with `concurrency` connections; returns timing and failures."""
    body = os.urandom(size)
    conns = await open_conns(host, port, min(concurrency, len(keys)))
    todo = iter(keys)
    failures: list[str] = []

    async def worker(conn: Connection) -> None:
        for key in todo:
            r = await conn.request(b"PUT", f"/{bucket}/{quote(key)}", body)
            if r.status != 200:
                failures.append(f"{key}: {r.status}")

    t0 = time.perf_counter()
    try:
        await asyncio.gather(*(worker(c) for c in conns))
    finally:
        close_all(conns)
    elapsed = time.perf_counter() - t0
    return {
        "keys": len(keys),
        "seconds": elapsed,
        "failures": failures[:5],
        "failed": len(failures),
    }


async def op_small_get(host: str, port: int, spec: dict[str, Any]) -> dict[str, Any]:
    """GET `size`-byte objects (populated first, `n_keys` of them) at `concurrency`."""
    bucket, size, conc = spec["bucket"], spec["size"], spec["concurrency"]
    n_keys = spec.get("n_keys", 256)
    keys = [f"get{size}/k{i:05d}" for i in range(n_keys)]
    if spec.get("populate", True):
        pop = await populate(host, port, bucket, keys, size, 16)
        if pop["failed"]:
            return {"error": f"populate failed: {pop['failures']}"}
    conns = await open_conns(host, port, conc)
    heads = [conns[0].head_bytes(b"GET", f"/{bucket}/{k}") for k in keys]
    bad_len = 0
    try:

        async def one_get(conn: Connection, wid: int, seq: int) -> Response:
            nonlocal bad_len
            r = await conn.send(heads[(wid * 7919 + seq) % n_keys])
            if r.body_len != size:
                bad_len += 1
            return r

        if spec.get("warmup", 0) > 0:
            await closed_loop(conns, one_get, 200, spec["warmup"], spec["max_ops"])
            bad_len = 0
        result = await closed_loop(conns, one_get, 200, spec["duration"], spec["max_ops"])
        result["bad_length"] = bad_len
        return result
    finally:
        close_all(conns)


def body_chunks(size: int, block: bytes) -> Iterator[bytes]:
    """`size` bytes generated on the fly by repeating `block`."""
    chunk = len(block)
    full, rest = divmod(size, chunk)
    for _ in range(full):
        yield block
    if rest:
        yield block[:rest]


async def op_big_put(host: str, port: int, spec: dict[str, Any]) -> dict[str, Any]:
    """One streamed PUT of `size` bytes (one random 1 MiB block repeated); MB/s is 10^6
    bytes per second. `probe` is 64 bytes of that block (hex), which every file holding
    the plaintext contains, so the orchestrator can look for them on disk; `sse` is the
    encryption the server says it applied (`x-amz-server-side-encryption`)."""
    conn = await connect(host, port)
    try:
        size = spec["size"]
        block = os.urandom(MiB)
        cpu0, t0 = cpu_seconds(), time.perf_counter()
        r = await asyncio.wait_for(
            conn.stream_put(f"/{spec['bucket']}/{spec['key']}", size, body_chunks(size, block)),
            spec.get("timeout", 600),
        )
        elapsed = time.perf_counter() - t0
        sse = r.headers.get(b"x-amz-server-side-encryption")
        return {
            "status": r.status,
            "bytes": size,
            "seconds": elapsed,
            "mb_per_s": size / elapsed / 1e6,
            "client_cpu": (cpu_seconds() - cpu0) / elapsed,
            "probe": block[4096 : 4096 + 64].hex(),
            "sse": None if sse is None else sse.decode(),
        }
    finally:
        conn.close()


async def op_big_get(host: str, port: int, spec: dict[str, Any]) -> dict[str, Any]:
    """GET the whole object, on `parallel` connections at once (default 1); the bodies
    are counted and discarded; MB/s is all bytes over the time until the last ends."""
    n = spec.get("parallel", 1)
    conns = await open_conns(host, port, n)
    try:
        cpu0, t0 = cpu_seconds(), time.perf_counter()
        target = f"/{spec['bucket']}/{spec['key']}"
        rs = await asyncio.wait_for(
            asyncio.gather(*(c.request(b"GET", target) for c in conns)),
            spec.get("timeout", 600),
        )
        elapsed = time.perf_counter() - t0
        total = sum(r.body_len for r in rs)
        bad = [r.status for r in rs if r.status != 200]
        return {
            "status": bad[0] if bad else 200,
            "bytes": rs[0].body_len if n == 1 else total // n,
            "parallel": n,
            "total_bytes": total,
            "seconds": elapsed,
            "mb_per_s": total / elapsed / 1e6,
            "client_cpu": (cpu_seconds() - cpu0) / elapsed,
        }
    finally:
        close_all(conns)


async def op_range_get(host: str, port: int, spec: dict[str, Any]) -> dict[str, Any]:
    """Sequential random `length`-byte range GETs within an `object_size`-byte object."""
    conn = await connect(host, port)
    rng = random.Random(spec.get("seed", 1))
    size, length = spec["object_size"], spec.get("length", MiB)
    target = f"/{spec['bucket']}/{spec['key']}"
    latencies: list[float] = []
    bad = 0
    end = time.perf_counter() + spec.get("max_seconds", 30)
    try:
        for _ in range(spec["count"]):
            if time.perf_counter() >= end:
                break
            start = rng.randrange(0, size - length + 1)
            head = conn.head_bytes(b"GET", target, f"Range: bytes={start}-{start + length - 1}\r\n")
            t0 = time.perf_counter()
            r = await conn.send(head)
            latencies.append(time.perf_counter() - t0)
            if r.status != 206 or r.body_len != length:
                bad += 1
    finally:
        conn.close()
    return {
        "requests": len(latencies),
        "bad": bad,
        "p50_ms": percentile(latencies, 50) * 1e3,
        "p99_ms": percentile(latencies, 99) * 1e3,
        "mean_ms": sum(latencies) / len(latencies) * 1e3,
    }


def listing_keys(n: int, prefixes: int) -> list[str]:
    return [f"p{i % prefixes}/obj-{i:05d}" for i in range(n)]


async def op_populate(host: str, port: int, spec: dict[str, Any]) -> dict[str, Any]:
    """PUT `n` small keys under `prefixes` prefixes (p0/ .. pN/)."""
    keys = listing_keys(spec["n"], spec.get("prefixes", 4))
    return await populate(
        host, port, spec["bucket"], keys, spec.get("size", 64), spec.get("concurrency", 32)
    )


_TOKEN_RE = re.compile(rb"<NextContinuationToken>([^<]*)</NextContinuationToken>")


async def list_s3(conn: Connection, bucket: str, max_pages: int) -> tuple[int, int]:
    """ListObjectsV2 through every page; returns (keys, pages)."""
    token: str | None = None
    keys = pages = 0
    while pages < max_pages:
        target = f"/{bucket}?list-type=2&max-keys=1000"
        if token is not None:
            target += "&continuation-token=" + quote(token, safe="")
        r = await conn.request(b"GET", target, keep_body=True)
        pages += 1
        if r.status != 200:
            raise RuntimeError(f"list status {r.status}: {r.body[:200]!r}")
        keys += r.body.count(b"<Key>")
        m = _TOKEN_RE.search(r.body)
        if b"<IsTruncated>true</IsTruncated>" not in r.body or m is None:
            break
        token = html.unescape(m.group(1).decode())
    return keys, pages


async def list_plain(conn: Connection, bucket: str) -> tuple[int, int]:
    """The baseline's one-shot directory listing (newline-separated names)."""
    r = await conn.request(b"GET", f"/{bucket}?list", keep_body=True)
    if r.status != 200:
        raise RuntimeError(f"list status {r.status}")
    return (r.body.count(b"\n") + 1 if r.body else 0), 1


async def op_list(host: str, port: int, spec: dict[str, Any]) -> dict[str, Any]:
    """Time listing the whole bucket `repeat` times (S3 paging, or the baseline's list),
    starting no new listing once `max_seconds` (if given) have gone by."""
    conn = await connect(host, port)
    times: list[float] = []
    keys = pages = 0
    stop = time.perf_counter() + spec.get("max_seconds", float("inf"))
    try:
        for _ in range(spec.get("repeat", 3)):
            if times and time.perf_counter() >= stop:
                break
            t0 = time.perf_counter()
            if spec.get("style", "s3") == "s3":
                keys, pages = await list_s3(conn, spec["bucket"], spec.get("max_pages", 1000))
            else:
                keys, pages = await list_plain(conn, spec["bucket"])
            times.append(time.perf_counter() - t0)
    finally:
        conn.close()
    return {
        "keys": keys,
        "pages": pages,
        "seconds": sorted(times)[len(times) // 2],
        "first_seconds": times[0],
        "all_seconds": times,
    }


OPS: dict[str, Callable[[str, int, dict[str, Any]], Awaitable[dict[str, Any]]]] = {
    "bucket": op_bucket,
    "bucket_encryption": op_bucket_encryption,
    "small_put": op_small_put,
    "small_get": op_small_get,
    "big_put": op_big_put,
    "big_get": op_big_get,
    "range_get": op_range_get,
    "populate": op_populate,
    "list": op_list,
}


async def run_spec(spec: dict[str, Any]) -> list[dict[str, Any]]:
    global AUTH
    auth = spec.get("auth")
    AUTH = None if auth is None else Credentials(**auth)
    results = []
    for op in spec["ops"]:
        try:
            results.append(await OPS[op["op"]](spec["host"], spec["port"], op))
        except Exception as e:  # report, don't hide: the orchestrator prints it
            results.append({"error": f"{type(e).__name__}: {e}"})
    return results


def main() -> None:
    spec = json.loads(sys.argv[1])
    try:
        import uvloop

        runner = uvloop.run
    except ImportError:  # pragma: no cover
        runner = asyncio.run
    print(json.dumps(runner(run_spec(spec))), flush=True)


if __name__ == "__main__":
    main()
