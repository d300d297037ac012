"""Fault injection against a real erasure-coded node (`shoal serve` in cluster mode, 6
drive folders, 4 data + 2 parity shards, 256 KiB chunks): shards deleted or bit-flipped
on disk, drive folders taken away, too many drives lost, SIGKILL during writes. Reads
must stay byte-exact while k shards survive, fail with a clear 503 (never a short or
wrong 200) when they do not, and healing must put every shard back (quarantining rotten
ones) so that the set survives the next two lost drives, and sweep what killed writes
left behind."""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import os
import random
import shutil
import signal
import stat
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import google_crc32c
import httpx
import pytest
from botocore.exceptions import ClientError, ResponseStreamingError

from tests.integration.conftest import (
    ERASURE_CHUNK,
    erasure_config,
    error_code,
    multipart_put,
    signed_client,
    spawn_server,
    wait_for,
)
from tests.integration.crashing import at_random, kill_while_writing
from tests.integration.serving import Proc

pytestmark = pytest.mark.slow

CHUNK = ERASURE_CHUNK
WIDTH = 6  # 4 data + 2 parity: one erasure set, drive position = index in drives.paths
K = 4
PART = 5 * 1024 * 1024
BUCKET = "faults"

#: Plain PUTs: empty, one byte, less than a chunk, exactly two chunks, several chunks
#: with an odd tail.
SIZES = {
    "empty": 0,
    "one": 1,
    "small": 100_003,
    "dir/exact": 2 * CHUNK,
    "dir/sub/tail": 5 * CHUNK + 4321,
}
#: A multipart upload whose parts are no multiple of the chunk size either.
MULTI_KEY = "multi/three-parts"
MULTI_PARTS = (PART + 3, PART + 77_777, 12_345)


# ---------------------------------------------------------------- the node


class Node:
    """A `shoal serve` process in cluster mode on six drive folders below `root`."""

    def __init__(self, root: Path) -> None:
        self.root = root
        cluster = erasure_config(root / "drives")["cluster"]
        self.drives = [Path(p) for p in cluster["drives"]["paths"]]
        self.config = root / "shoal.toml"
        paths = ", ".join(json.dumps(str(p)) for p in self.drives)
        self.config.write_text(
            "[cluster]\nenabled = true\n"
            f"[cluster.drives]\npaths = [{paths}]\nprobe_interval_ms = 200\n"
            f"[cluster.erasure]\ndata_shards = {K}\nparity_shards = {WIDTH - K}\n"
            f"chunk_size_bytes = {CHUNK}\n"
            # No periodic scans during a test; healing as fast as the disk allows.
            "[cluster.healing]\ninterval_seconds = 86400\nbytes_per_second = 1073741824\n"
        )
        self.proc: subprocess.Popen[str] | None = None
        self.url = ""

    def start(self) -> None:
        """Start, and wait for the sweep at start (so tests see the drives settled)."""
        self.proc, self.url = spawn_server(
            self.root / "meta", "--config", str(self.config), "--log-level", "error"
        )
        wait_for(
            "the sweep at start finished",
            lambda: self.heal_status()["startup_sweep"] is not None,
            timeout=60,
        )

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()

    def s3(self, **config: Any) -> Any:
        return signed_client(self.url, connect_timeout=3, read_timeout=30, **config)

    def http(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30)

    def heal(self) -> dict[str, Any]:
        response = httpx.post(f"{self.url}/-/heal", timeout=120)
        assert response.status_code == 200, response.text
        return response.json()

    def heal_status(self) -> dict[str, Any]:
        return httpx.get(f"{self.url}/-/heal", timeout=30).json()

    def drive_status(self) -> list[dict[str, Any]]:
        """Health of the drives in `drives.paths` order (one erasure set)."""
        response = httpx.get(f"{self.url}/-/cluster", timeout=30)
        assert response.status_code == 200, response.text
        (members,) = response.json()["sets"]
        by_name = {Path(d["name"]): d for d in members}
        return [by_name[p] for p in self.drives]

    def wait_online(self, timeout: float = 15) -> None:
        wait_for(
            "every drive is online",
            lambda: all(d["state"] == "online" for d in self.drive_status()),
            timeout=timeout,
        )

    def wait_scans_done(self, timeout: float = 60) -> None:
        """Wait until no healing scan runs or is pending (drives that came back ask for
        one): a scan running while a test removes shards drive by drive would rebuild
        those of the first drives from the others."""

        def idle() -> bool:
            status = self.heal_status()
            return not (status["running"] or status["scan_pending"] or status["backlog"])

        wait_for("healing scans are done", idle, timeout=timeout)

    def wait_queue_idle(self, timeout: float = 30) -> dict[str, Any]:
        """Wait until reads' healing queue is drained and its totals stop moving; returns
        those totals."""
        deadline = time.monotonic() + timeout
        last, stable = None, 0
        while stable < 5:
            assert time.monotonic() < deadline, "healing queue never settled"
            status = self.heal_status()
            totals = status["queued"]
            key = json.dumps(totals, sort_keys=True)
            stable = stable + 1 if status["backlog"] == 0 and key == last else 0
            last = key
            time.sleep(0.15)
        return totals


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    n = Node(tmp_path)
    n.start()
    try:
        yield n
    finally:
        # Drive folders a test took away go back, so tmp_path can be cleaned up.
        for drive in n.drives:
            for gone in drive.glob(".smartstorage.*"):
                if not (drive / ".smartstorage").exists():
                    gone.rename(drive / ".smartstorage")
            root = drive / ".smartstorage"
            if root.exists():
                root.chmod(0o755)
        n.kill()


# ---------------------------------------------------------------- objects


def seed(s3: Any) -> dict[str, bytes]:
    """The bucket with one object of every size class; returns key -> bytes."""
    s3.create_bucket(Bucket=BUCKET)
    rng = random.Random(20261127)
    objects: dict[str, bytes] = {}
    for key, size in SIZES.items():
        data = rng.randbytes(size)
        s3.put_object(Bucket=BUCKET, Key=key, Body=data)
        objects[key] = data
    parts = [rng.randbytes(n) for n in MULTI_PARTS]
    multipart_put(s3, BUCKET, MULTI_KEY, parts)
    objects[MULTI_KEY] = b"".join(parts)
    return objects


def boundaries(key: str, size: int) -> list[int]:
    """Offsets where a chunk (or a part) starts, a few per object."""
    if key != MULTI_KEY:
        return [c for c in (CHUNK, 2 * CHUNK, 5 * CHUNK) if c < size]
    first, second = MULTI_PARTS[0], MULTI_PARTS[0] + MULTI_PARTS[1]
    return [CHUNK, first - (first % CHUNK), first, first + CHUNK, second]


def ranges(key: str, size: int) -> list[tuple[int, int]]:
    """Inclusive byte ranges crossing chunk boundaries, plus the first and last byte and
    one long range over several chunks."""
    if size == 0:
        return []
    out = [(0, 0), (size - 1, size - 1)]
    out += [(max(b - 7, 0), min(b + 8, size - 1)) for b in boundaries(key, size)]
    if size > 3 * CHUNK:
        out.append((CHUNK // 2, 3 * CHUNK + 99))
    return out


def check_reads(
    s3: Any,
    objects: dict[str, bytes],
    damage: Callable[[], object] = lambda: None,
    *,
    listing: bool = True,
) -> None:
    """Every object reads back byte-exact (whole and by ranges); HEAD and (unless
    `listing` is false: `objects` is only some of them) ListObjectsV2 agree. `damage`
    runs before every GET: a degraded read queues its object for healing, which would
    otherwise repair the damage behind the next read's back."""
    for key, data in objects.items():
        damage()
        got = s3.get_object(Bucket=BUCKET, Key=key)
        body = got["Body"].read()
        assert got["ContentLength"] == len(data) and body == data, f"{key}: wrong bytes"
        head = s3.head_object(Bucket=BUCKET, Key=key)
        assert head["ContentLength"] == len(data), key
        assert head["ETag"] == got["ETag"], key
        for lo, hi in ranges(key, len(data)):
            damage()
            part = s3.get_object(Bucket=BUCKET, Key=key, Range=f"bytes={lo}-{hi}")
            assert part["Body"].read() == data[lo : hi + 1], f"{key} bytes {lo}-{hi}"
            assert part["ContentRange"] == f"bytes {lo}-{hi}/{len(data)}", key
        if len(data) > 10:
            damage()
            tail = s3.get_object(Bucket=BUCKET, Key=key, Range="bytes=-10")["Body"].read()
            assert tail == data[-10:], key
    if not listing:
        return
    listed = s3.list_objects_v2(Bucket=BUCKET)
    assert {o["Key"]: o["Size"] for o in listed.get("Contents", [])} == {
        k: len(v) for k, v in objects.items()
    }
    assert not listed["IsTruncated"]
    # And page by page, so the continuation token crosses the drives' pages too.
    keys: list[str] = []
    token: dict[str, str] = {}
    for _ in range(len(objects) + 1):
        page = s3.list_objects_v2(Bucket=BUCKET, MaxKeys=2, **token)
        keys += [o["Key"] for o in page.get("Contents", [])]
        if not page["IsTruncated"]:
            break
        token = {"ContinuationToken": page["NextContinuationToken"]}
    assert keys == sorted(objects)


# ---------------------------------------------------------------- the drives


def data_dir(drive: Path) -> Path:
    return drive / ".smartstorage" / "data" / BUCKET


def records_of(drive: Path) -> list[Path]:
    return sorted(data_dir(drive).rglob("*._storage_object.metadata.json"))


def change_inline(drive: Path, change: Callable[[bytes], bytes | None]) -> int:
    """Apply `change` to every inline shard (records.py: small objects keep theirs in
    their version records) on the drive: None drops it from the record, as a lost shard
    file. Returns how many."""
    changed = 0
    for path in records_of(drive):
        stored = json.loads(path.read_text())
        inline = [e for e in stored["versions"] if "inline" in e]
        for entry in inline:
            new = change(base64.b64decode(entry["inline"]))
            if new is None:
                del entry["inline"]
            else:
                entry["inline"] = base64.b64encode(new).decode()
        if inline:
            path.write_text(json.dumps(stored))
        changed += len(inline)
    return changed


def inline_count(drive: Path) -> int:
    return sum(
        "inline" in e
        for path in records_of(drive)
        for e in json.loads(path.read_text())["versions"]
    )


def remove_shards(drive: Path, *, from_chunk: int = 0, under: str = "") -> int:
    """Delete the shard files (.dat) below the drive's data folder (or one object's
    folder); only chunks numbered `from_chunk` or higher. From the whole drive, its
    inline shards go too. Returns how many."""
    removed = 0
    for dat in sorted((data_dir(drive) / under).rglob("*.dat")):
        if int(dat.parent.name.removeprefix("chunk-")) >= from_chunk:
            dat.unlink()
            removed += 1
    if not from_chunk and not under:
        removed += change_inline(drive, lambda _: None)
    return removed


def _flipped(data: bytes) -> bytes:
    raw = bytearray(data)
    raw[len(raw) // 2] ^= 0xFF
    return bytes(raw)


def flip_shards(drive: Path) -> int:
    """Invert one byte in the middle of every shard file and inline shard on the drive
    (same length)."""
    flipped = 0
    for dat in sorted(data_dir(drive).rglob("*.dat")):
        data = dat.read_bytes()
        if data:
            dat.write_bytes(_flipped(data))
            flipped += 1
    return flipped + change_inline(drive, _flipped)


def take_away(drive: Path) -> Path:
    """The drive's whole .smartstorage folder disappears (unmounted disk)."""
    away = drive / ".smartstorage.away"
    (drive / ".smartstorage").rename(away)
    return away


def bring_back(drive: Path) -> None:
    (drive / ".smartstorage.away").rename(drive / ".smartstorage")


def shard_count(drives: list[Path]) -> int:
    """Shard files and inline shards."""
    files = sum(1 for d in drives for _ in data_dir(d).rglob("*.dat"))
    return files + sum(inline_count(d) for d in drives)


def check_shards(drives: list[Path], objects: dict[str, bytes]) -> int:
    """Every drive holds the record of every object, all naming the same current version,
    and every shard of that version is on the drive at its position, (j + rot) % 6, with
    the CRC32C the record gives it. Returns the number of shards verified."""
    records: dict[str, list[dict[str, Any]]] = {}
    for p, drive in enumerate(drives):
        found = sorted(data_dir(drive).rglob("*._storage_object.metadata.json"))
        for record in found:
            rel = str(record.relative_to(data_dir(drive)))
            versions = json.loads(record.read_text())["versions"]
            records.setdefault(rel, [None] * len(drives))[p] = versions  # type: ignore[list-item]
    assert len(records) == len(objects), sorted(records)
    verified = 0
    for rel, per_drive in records.items():
        assert all(v for v in per_drive), f"{rel}: record missing on a drive"
        newest = {v[0]["v"] for v in per_drive}
        assert len(newest) == 1, f"{rel}: drives disagree on the current version {newest}"
        entry = per_drive[0][0]
        assert not entry.get("deleted"), rel
        size = entry["meta"]["size"]
        assert sum(part["size"] for part in entry["parts"]) == size, rel
        vdir = rel.removesuffix(".metadata.json") + "/" + entry["v"]
        if "inline" in entry:  # each drive's copy holds its own shard
            (crcs,) = entry["parts"][0]["crc"]
            for p, versions in enumerate(per_drive):
                j = (p - entry["rot"]) % WIDTH
                shard = base64.b64decode(versions[0]["inline"])
                assert google_crc32c.value(shard) == crcs[j], f"{rel}: corrupt on drive {p}"
                verified += 1
            assert not (data_dir(drives[0]) / vdir).exists(), f"{rel}: inline, yet a folder"
            continue
        for part in entry["parts"]:
            base = vdir if part["n"] == 0 else f"{vdir}/part-{part['n']}"
            expected_chunks = -(-part["size"] // part["chunk"])
            assert len(part["crc"]) == expected_chunks, rel
            for c, crcs in enumerate(part["crc"]):
                assert len(crcs) == WIDTH, rel
                for j in range(WIDTH):
                    p = (j + entry["rot"]) % WIDTH
                    dat = data_dir(drives[p]) / base / f"chunk-{c}" / f"shard-{j}.dat"
                    assert dat.is_file(), f"missing {dat}"
                    assert google_crc32c.value(dat.read_bytes()) == crcs[j], f"corrupt {dat}"
                    assert dat.with_suffix(".meta").is_file(), f"no .meta beside {dat}"
                    verified += 1
    return verified


def assert_clean(report: dict[str, Any]) -> None:
    """A heal that found nothing to do."""
    for field in ("shards_missing", "shards_corrupt", "shards_healed", "records_healed"):
        assert report[field] == 0, (field, report)
    assert report["quarantined"] == 0, report
    assert report["unrecoverable"] == [] and report["errors"] == [], report


def s3_error(exc: ClientError) -> tuple[int, str, str]:
    return (
        exc.response["ResponseMetadata"]["HTTPStatusCode"],
        error_code(exc),
        exc.response["Error"].get("Message", ""),
    )


# ---------------------------------------------------------------- 1 and 6: lost shards


def test_two_drives_without_shards_still_read_exact(node: Node) -> None:
    s3 = node.s3()
    objects = seed(s3)
    total = shard_count(node.drives)
    assert total == check_shards(node.drives, objects)

    one = node.drives[1]
    assert remove_shards(one) == total // WIDTH
    check_reads(s3, objects, lambda: remove_shards(one))
    both = (node.drives[1], node.drives[4])
    assert remove_shards(both[1]) == total // WIDTH
    check_reads(s3, objects, lambda: [remove_shards(d) for d in both])
    # With reads left to heal nothing, the other four hold exactly k shards of a chunk.
    node.wait_queue_idle()
    for drive in both:
        remove_shards(drive)
    assert shard_count(node.drives) == total * K // WIDTH
    check_reads(s3, objects)


def test_heal_restores_every_shard_so_two_more_drives_can_go(node: Node) -> None:
    s3 = node.s3()
    objects = seed(s3)
    total = check_shards(node.drives, objects)

    removed = remove_shards(node.drives[0]) + remove_shards(node.drives[3])
    check_reads(s3, objects)  # degraded reads queue their objects for healing
    queued = node.wait_queue_idle()
    report = node.heal()
    assert report["unrecoverable"] == [] and report["errors"] == [], report
    assert report["objects_scanned"] == len(objects)
    assert report["shards_corrupt"] == report["quarantined"] == 0, report
    # Every missing shard was found and rebuilt once: by the queue or by the scan.
    assert queued["shards_missing"] + report["shards_missing"] == removed, (queued, report)
    assert queued["shards_healed"] + report["shards_healed"] == removed, (queued, report)
    assert check_shards(node.drives, objects) == total
    assert_clean(node.heal())

    # Redundancy is back: two *other* drives may go now, then the last two.
    remove_shards(node.drives[1])
    remove_shards(node.drives[4])
    check_reads(s3, objects)
    node.wait_queue_idle()
    node.heal()
    assert check_shards(node.drives, objects) == total
    remove_shards(node.drives[2])
    remove_shards(node.drives[5])
    check_reads(s3, objects)


# ---------------------------------------------------------------- 2: drives gone


def test_unusable_drives_are_faults_and_reads_stay_exact(node: Node) -> None:
    s3 = node.s3()
    objects = seed(s3)

    # An unmounted disk: its .smartstorage folder is gone. Every call on it is a fault;
    # after three in a row the drive is offline and skipped.
    take_away(node.drives[2])
    check_reads(s3, objects)
    status = node.drive_status()
    gone = status[2]
    assert gone["state"] == "offline", gone
    assert gone["errors"] >= 3 and ".smartstorage is missing" in gone["last_error"], gone
    assert "consecutive errors" in gone["offline_reason"], gone
    assert [d["state"] for i, d in enumerate(status) if i != 2] == ["online"] * 5, status

    # Writes still reach the write quorum (5 of 6) without it. Chunked reads skip it up
    # front: not degraded, so they queue nothing for healing (which could not reach it
    # anyway). (Single-chunk objects take a one-round-trip path of their own.)
    before = node.wait_queue_idle()
    later = b"written while drive 2 was away" * 10_000
    s3.put_object(Bucket=BUCKET, Key="later", Body=later)
    objects["later"] = later
    check_reads(s3, {k: v for k, v in objects.items() if len(v) > CHUNK}, listing=False)
    assert node.wait_queue_idle()["objects_scanned"] == before["objects_scanned"]
    check_reads(s3, objects)

    if os.geteuid() != 0:  # root reads through mode 000; anyone else gets EACCES
        root = node.drives[5] / ".smartstorage"
        root.chmod(0)
        try:
            check_reads(s3, objects)
            assert node.drive_status()[5]["errors"] > 0
        finally:
            root.chmod(stat.S_IRWXU | stat.S_IRGRP | stat.S_IXGRP | stat.S_IROTH | stat.S_IXOTH)

    # Back in place, the probe finds the same drive (by format.json) and takes it back;
    # healing fills in what it missed.
    node.wait_queue_idle()
    bring_back(node.drives[2])
    node.wait_online()
    report = node.heal()
    assert report["unrecoverable"] == [] and report["errors"] == [], report
    # "later" is all it missed: its record and one shard of each of its two chunks.
    # (Reads skipped the offline drive without counting as degraded: nothing queued.)
    assert report["records_healed"] == 1, report
    assert report["shards_missing"] == report["shards_healed"] == 2, report
    check_shards(node.drives, objects)

    # A blank disk in place of a dead one (restart needed): formatted into the same
    # slot, filled by healing, and then the set survives losing two other drives.
    node.stop()
    shutil.rmtree(node.drives[3] / ".smartstorage")
    node.start()
    s3 = node.s3()
    check_reads(s3, objects)
    node.wait_queue_idle()
    report = node.heal()
    assert report["unrecoverable"] == [] and report["errors"] == [], report
    check_shards(node.drives, objects)
    remove_shards(node.drives[0])
    remove_shards(node.drives[1])
    check_reads(s3, objects)


# ---------------------------------------------------------------- 3: bit rot


def test_flipped_bytes_are_caught_quarantined_and_healed(node: Node) -> None:
    s3 = node.s3()
    objects = seed(s3)
    total = check_shards(node.drives, objects)

    flipped = flip_shards(node.drives[1]) + flip_shards(node.drives[3])
    assert flipped > 0
    # CRC32C catches every flipped shard a read touches; parity stands in for it.
    check_reads(s3, objects)
    queued = node.wait_queue_idle()
    report = node.heal()
    assert report["unrecoverable"] == [] and report["errors"] == [], report
    assert report["shards_missing"] == 0 and queued["shards_missing"] == 0, (queued, report)
    for field in ("shards_corrupt", "quarantined", "shards_healed"):
        assert queued[field] + report[field] == flipped, (field, queued, report)
    assert report["shards_checked"] == total, report

    # Nothing is deleted: the rotten shards sit in quarantine/, still failing their CRC.
    quarantined = [
        dat for d in node.drives for dat in (d / ".smartstorage" / "quarantine").rglob("*.dat")
    ]
    assert len(quarantined) == flipped
    assert all((node.drives[1] in q.parents) or (node.drives[3] in q.parents) for q in quarantined)
    assert check_shards(node.drives, objects) == total
    assert_clean(node.heal())
    check_reads(s3, objects)


# ---------------------------------------------------------------- 4: too few shards


def get_raw(http: httpx.Client, key: str, headers: dict[str, str] | None = None) -> tuple:
    """(status, body, error): reads the whole body; a transport error while reading is
    returned rather than raised."""
    with http.stream("GET", f"/{BUCKET}/{key}", headers=headers or {}) as response:
        body = b""
        try:
            for piece in response.iter_bytes():
                body += piece
        except httpx.TransportError as exc:
            return response.status_code, body, exc, response.headers
        return response.status_code, body, None, response.headers


def assert_no_false_success(http: httpx.Client, key: str, data: bytes, **kw: Any) -> int:
    """A 200/206 must carry exactly Content-Length bytes equal to the object's; returns
    the status (a cut-off body counts as a failure, status 0)."""
    status, body, error, headers = get_raw(http, key, **kw)
    if status in (200, 206):
        if error is not None:
            assert len(body) < int(headers["content-length"]), "complete body yet an error"
            return 0
        assert len(body) == int(headers["content-length"]), key
        lo, hi = 0, len(data) - 1
        if status == 206:
            span = headers["content-range"].split(" ")[1].split("/")[0]
            lo, hi = (int(x) for x in span.split("-"))
        assert body == data[lo : hi + 1], f"{key}: a success with wrong bytes"
    return status


def test_too_few_drives_fail_cleanly(node: Node) -> None:
    s3 = node.s3()
    objects = seed(s3)
    victim = b"first version " * 50_000
    s3.put_object(Bucket=BUCKET, Key="victim", Body=victim)
    objects["victim"] = victim

    # Three of six drives gone: no write can reach k+1 drives, no read k.
    for p in (0, 2, 4):
        take_away(node.drives[p])
    with pytest.raises(ClientError) as caught:
        s3.put_object(Bucket=BUCKET, Key="victim", Body=b"second version " * 50_000)
    status, code, message = s3_error(caught.value)
    assert (status, code) == (503, "ServiceUnavailable"), message
    assert "Not enough drives" in message, message
    with pytest.raises(ClientError) as caught:
        s3.get_object(Bucket=BUCKET, Key="victim")
    assert s3_error(caught.value)[:2] == (503, "ServiceUnavailable")
    with node.http() as http:
        response = http.get(f"/{BUCKET}/victim")
        assert response.status_code == 503, response.text
        assert b"<Code>ServiceUnavailable</Code>" in response.content
    for p in (0, 2, 4):
        bring_back(node.drives[p])
    node.wait_online()
    check_reads(s3, objects)  # the failed PUT changed nothing
    node.wait_scans_done()

    # Shards that fail only after the first chunk was sent: the 200 is already out, so
    # the response must be cut off short, never completed with made-up bytes.
    under = "dir/sub/tail._storage_object"
    for p in (1, 3, 5):
        assert remove_shards(node.drives[p], from_chunk=3, under=under) > 0
    data = objects["dir/sub/tail"]
    with node.http() as http:
        assert assert_no_false_success(http, "dir/sub/tail", data) == 0
        # Ranges within the intact chunks still work; one reaching the lost ones fails.
        early = {"Range": "bytes=5-600000"}
        assert assert_no_false_success(http, "dir/sub/tail", data, headers=early) == 206
        big_range = {"Range": f"bytes=0-{4 * CHUNK}"}
        assert assert_no_false_success(http, "dir/sub/tail", data, headers=big_range) == 0
        late = {"Range": f"bytes={3 * CHUNK + 1}-{3 * CHUNK + 100}"}
        assert assert_no_false_success(http, "dir/sub/tail", data, headers=late) == 503
    got = s3.get_object(Bucket=BUCKET, Key="dir/sub/tail")
    with pytest.raises(ResponseStreamingError):  # boto3 notices the short body too
        got["Body"].read()
    assert s3.head_object(Bucket=BUCKET, Key="small")["ContentLength"] == len(objects["small"])

    # Three drives without any shards: every non-empty object fails with a 503 that
    # says why, by boto3 and on the wire (a range may not: below); HEAD and listing
    # (records) still work.
    for p in (1, 3, 5):
        remove_shards(node.drives[p])
    with node.http() as http:
        for key, data in objects.items():
            if not data:
                assert s3.get_object(Bucket=BUCKET, Key=key)["Body"].read() == b""
                continue
            with pytest.raises(ClientError) as caught:
                s3.get_object(Bucket=BUCKET, Key=key)
            status, code, message = s3_error(caught.value)
            assert (status, code) == (503, "ServiceUnavailable"), (key, message)
            assert "Not enough intact shards" in message, message
            assert assert_no_false_success(http, key, data) == 503, key
            for lo, hi in ranges(key, len(data))[:3]:
                # A range reads only the data shards holding it (each CRC-checked), so
                # one whose shards survive may still succeed, with exact bytes.
                span = {"Range": f"bytes={lo}-{hi}"}
                assert assert_no_false_success(http, key, data, headers=span) in (206, 503), key
            assert s3.head_object(Bucket=BUCKET, Key=key)["ContentLength"] == len(data)
    listed = s3.list_objects_v2(Bucket=BUCKET)["Contents"]
    assert {o["Key"] for o in listed} == set(objects)
    # Healing cannot rebuild them either, and says so rather than writing garbage.
    report = node.heal()
    assert report["shards_healed"] == 0, report
    assert len(report["unrecoverable"]) == len(objects) - 1, report


# ---------------------------------------------------------------- 5: SIGKILL


KEYS = ["kill/a", "kill/b", "kill/deep/c", "kill/mp"]


def version_body(key: str, version: int) -> bytes:
    """Recognizable bytes: the key and version repeated; sizes span 0-4 chunks (the
    multipart key: one 5 MiB part and a tail)."""
    stamp = f"<{key} v{version}>".encode()
    size = PART + 40_000 + version if key.endswith("mp") else 1 + (version * 97_331) % (4 * CHUNK)
    return (stamp * (size // len(stamp) + 1))[:size]


def write_version(s3: Any, key: str, version: int) -> None:
    body = version_body(key, version)
    meta = {"version": str(version), "sha256": hashlib.sha256(body).hexdigest()}
    if not key.endswith("mp"):
        s3.put_object(Bucket=BUCKET, Key=key, Body=body, Metadata=meta)
        return
    multipart_put(s3, BUCKET, key, [body[:PART], body[PART:]], Metadata=meta)


def test_sigkill_during_writes_leaves_whole_versions(node: Node) -> None:
    rng = random.Random(4242)
    s3 = node.s3()
    s3.create_bucket(Bucket=BUCKET)
    attempted = {key: {0} for key in KEYS}
    started: dict[int, float] = {}
    acked: dict[int, float] = {}
    for key in KEYS:
        write_version(s3, key, 0)
        acked[0] = started[0] = time.monotonic()
    lock = threading.Lock()
    next_version = 1

    def writer(seed: int, client: Any, stop: threading.Event) -> None:
        nonlocal next_version
        local = random.Random(seed)
        while not stop.is_set():
            key = local.choice(KEYS)
            with lock:
                version = next_version
                next_version += 1
                attempted[key].add(version)
                started[version] = time.monotonic()
            try:
                write_version(client, key, version)
            except Exception:
                return  # the server died under us
            with lock:
                acked[version] = time.monotonic()

    for round_ in range(5):
        writers = [functools.partial(writer, round_ * 10 + i, node.s3()) for i in range(3)]
        kill_while_writing(node.kill, writers, at_random(rng, 0.3, 1.2))

        node.start()
        s3 = node.s3()
        for key in KEYS:
            got = s3.get_object(Bucket=BUCKET, Key=key)
            body = got["Body"].read()
            meta = got["Metadata"]
            version = int(meta["version"])
            assert version in attempted[key], (key, version)
            assert hashlib.sha256(body).hexdigest() == meta["sha256"], f"{key}: torn body"
            assert body == version_body(key, version), f"{key}: bytes of another version"
            head = s3.head_object(Bucket=BUCKET, Key=key)
            assert head["ETag"] == got["ETag"] and head["Metadata"] == meta, key
            assert head["ContentLength"] == got["ContentLength"] == len(body), key
            # A write acknowledged before another one even started never loses to it.
            final_end = acked.get(version, float("inf"))
            lost = [v for v in attempted[key] if v in acked and started[v] > final_end]
            assert not lost, f"{key}: acknowledged writes {lost} lost"

    listed = s3.list_objects_v2(Bucket=BUCKET)["Contents"]
    assert sorted(o["Key"] for o in listed) == sorted(KEYS)
    report = node.heal()
    assert report["unrecoverable"] == [] and report["errors"] == [], report
    assert report["shards_corrupt"] == 0 and report["failures"] == 0, report
    # What the kills left, the sweep at the last start took; the scan found nothing more.
    assert report["orphans_removed"] == 0, report


def test_heal_sweeps_what_killed_writes_left_behind(node: Node) -> None:
    s3 = node.s3()
    s3.create_bucket(Bucket=BUCKET)
    data = os.urandom(3 * CHUNK)
    s3.put_object(Bucket=BUCKET, Key="orphans", Body=data)
    # What writes SIGKILLed before their commit leave (the crash loop above makes them):
    # version folders no record lists, beside a live version or for a key that never
    # got a record at all, and temp files. Two hours old, they are garbage; a fresh one
    # may be a write still in flight and stays.
    hours_ago = time.time() - 2 * 3600
    stale = f"{time.time_ns() - 2 * 3600 * 10**9:016x}deadbeef"
    fresh = f"{time.time_ns():016x}deadbeef"
    planted = []
    for drive in node.drives:
        folder = data_dir(drive) / "orphans._storage_object"
        (current,) = folder.iterdir()
        for vid in (stale, fresh):
            shutil.copytree(current, folder / vid)
        never = data_dir(drive) / "never-committed._storage_object" / stale
        shutil.copytree(current, never)
        junk = drive / ".smartstorage" / "tmp" / "killed-write.tmp"
        junk.parent.mkdir(exist_ok=True)
        junk.write_bytes(b"half a record")
        for path in (folder / stale, never, junk):
            os.utime(path, (hours_ago, hours_ago))
            planted.append(path)
    report = node.heal()
    assert report["unrecoverable"] == [] and report["errors"] == [], report
    assert report["orphans_removed"] == len(planted), report
    assert [p for p in planted if p.exists()] == []
    assert all((data_dir(d) / "orphans._storage_object" / fresh).is_dir() for d in node.drives)
    assert s3.get_object(Bucket=BUCKET, Key="orphans")["Body"].read() == data
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET)["Contents"]] == ["orphans"]
    check_shards(node.drives, {"orphans": data})


# ---------------------------------------------------------------- a fresh node


def test_fresh_node_creates_its_drive_folders(tmp_path: Path) -> None:
    """Drive folders (and their parents) that do not exist yet are created at the first
    start, as storage.directory is; objects land on them as shards."""
    drives = [tmp_path / "new" / f"disk{i}" / "shoal" for i in range(WIDTH)]
    settings = {
        "cluster": {
            "enabled": True,
            "drives": {"paths": [str(p) for p in drives]},
            "erasure": {"data_shards": K, "parity_shards": WIDTH - K},
        }
    }
    server = Proc(tmp_path, "--log-level", "error", settings=settings)
    try:
        s3 = signed_client(server.url)
        s3.create_bucket(Bucket=BUCKET)
        body = os.urandom(100_003)
        s3.put_object(Bucket=BUCKET, Key="k", Body=body)
        assert s3.get_object(Bucket=BUCKET, Key="k")["Body"].read() == body
        assert all((d / ".smartstorage" / "format.json").is_file() for d in drives)
        assert shard_count(drives) == WIDTH
    finally:
        assert server.stop() == 0, server.stderr()
