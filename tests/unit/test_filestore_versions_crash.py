"""A writer on a versioned bucket SIGKILLed at random moments: after each restart every
acknowledged version and marker is there and whole, nothing half-written shows, and
nothing orphaned is left in the version tree or the temporary area."""

from __future__ import annotations

import hashlib
import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import anyio
import pytest

from shoal.storage.backend import NULL_VERSION, ObjectWrite
from shoal.storage.filestore import FileStore
from tests.unit.conftest import chunks

pytestmark = pytest.mark.anyio

_WRITER = """
import anyio, sys
from shoal.storage.filestore import FileStore
from shoal.storage.backend import ObjectWrite

async def body(n):
    for _ in range(n):
        yield bytes([n % 256]) * 65536

def say(*words):
    print(*words, flush=True)

async def main():
    fs = FileStore(sys.argv[1])
    await fs.open()
    say("ready")
    i = int(sys.argv[2])
    while True:
        i += 1
        key = "k/%d" % (i % 3)
        meta = await fs.put_object("bucket", key, body(1 + i % 24), ObjectWrite())
        say("put", key, meta.version_id)
        if i % 4 == 0:
            r = await fs.delete_object("bucket", key)
            say("put", key, r.version_id)
        if i % 5 == 0:
            page = await fs.list_object_versions("bucket", prefix=key, max_keys=1000)
            mine = [v for v in page.versions if v.key == key]
            if len(mine) > 3:
                for victim in (mine[-1], mine[0]):  # the oldest, then the current one
                    say("going", key, victim.version_id)
                    await fs.delete_object("bucket", key, version_id=victim.version_id)
                    say("gone", key, victim.version_id)
        if i % 6 == 0:
            await fs.update_bucket("other", versioning="Suspended" if i % 12 else "Enabled")
            await fs.put_object("other", "n", body(1 + i % 7), ObjectWrite())

anyio.run(main)
"""


def _check_tree(root: Path) -> None:
    """No version data without its record, no record of an object without its data,
    and the temporary area holds only the live store's directory."""
    for dirpath, _dirs, files in os.walk(root / ".versions"):
        names = set(files)
        for name in names:
            if name.endswith(".json"):
                continue
            assert name + ".json" in names, f"orphaned version data {dirpath}/{name}"
    assert len(os.listdir(root / ".tmp")) == 1


@pytest.mark.slow
async def test_sigkill_on_a_versioned_bucket(tmp_path: Path) -> None:
    data_dir = tmp_path / "d"
    fs = FileStore(data_dir)
    await fs.open()
    for bucket in ("bucket", "other"):
        await fs.create_bucket(bucket)
        await fs.update_bucket(bucket, versioning="Enabled")
    await fs.close()
    #: (key, version id) -> whether it must be there (None: its removal was under way)
    acked: dict[tuple[str, str], bool | None] = {}
    rng = random.Random(13)
    step = 0
    for _ in range(8):
        proc = subprocess.Popen(
            [sys.executable, "-c", _WRITER, str(data_dir), str(step)], stdout=subprocess.PIPE
        )
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == b"ready"
        await anyio.sleep(rng.uniform(0.2, 0.8))
        proc.send_signal(signal.SIGKILL)
        out, _ = proc.communicate()
        for line in out.decode().splitlines():
            words = line.split()
            if len(words) == 3:  # a torn last line is not an acknowledgement
                acked[(words[1], words[2])] = {"put": True, "going": None}.get(words[0], False)
        step += 1000
        fs = FileStore(data_dir)
        await fs.open()
        try:
            _check_tree(data_dir)
            found: dict[tuple[str, str], bool] = {}
            key_marker, vid_marker = "", ""
            while True:
                page = await fs.list_object_versions(
                    "bucket", key_marker=key_marker, version_id_marker=vid_marker, max_keys=7
                )
                for v in page.versions:
                    found[(v.key, v.version_id)] = v.delete_marker
                    if v.delete_marker:
                        continue
                    async with await fs.open_object("bucket", v.key, v.version_id) as reader:
                        data = await reader.read_all()
                    assert hashlib.md5(data).hexdigest() == v.etag == reader.meta.etag
                if not page.truncated:
                    break
                key_marker = page.next_key_marker or ""
                vid_marker = page.next_version_id_marker or ""
            for ident, expected in acked.items():
                if expected is not None:
                    assert (ident in found) == expected, ident
            for obj in (await fs.list_objects("bucket")).objects:
                assert (await fs.head_object("bucket", obj.key)).etag == obj.etag
            other = await fs.list_object_versions("other")
            for v in other.versions:
                if not v.delete_marker:
                    async with await fs.open_object("other", v.key, v.version_id) as reader:
                        assert hashlib.md5(await reader.read_all()).hexdigest() == v.etag
            assert sum(v.version_id == NULL_VERSION for v in other.versions) <= 1
        finally:
            await fs.close()
    assert sum(bool(v) for v in acked.values()) > 10  # the writer got somewhere


async def test_interrupted_plan_is_rolled_forward(tmp_path: Path) -> None:
    """A plan decided but not applied (the record in a dead process's temporary area)
    is finished by the next open: the write it decided becomes the current version."""
    from shoal.storage import fileversions
    from shoal.storage.journal import Plan

    fs = FileStore(tmp_path / "d")
    await fs.open()
    await fs.create_bucket("bucket")
    await fs.update_bucket("bucket", versioning="Enabled")
    v1 = await fs.put_object("bucket", "k", chunks(b"one"), ObjectWrite())
    applied: list[Plan] = []

    def stop_before_applying(plan: Plan, record_path: str) -> None:
        applied.append(plan)
        raise KeyboardInterrupt  # the process dies here, the record stays

    real = fileversions.decide.__globals__["apply"]
    fileversions.decide.__globals__["apply"] = stop_before_applying
    try:
        with pytest.raises(KeyboardInterrupt):
            await fs.put_object("bucket", "k", chunks(b"two"), ObjectWrite())
    finally:
        fileversions.decide.__globals__["apply"] = real
    assert applied
    temp_dir = fs.temp.dir
    fs.temp._fd, fd = -1, fs.temp._fd  # leave the temporary area as a dead process would
    await fs.close()
    os.close(fd)
    assert any(n.endswith(".plan") for n in os.listdir(temp_dir))
    fs = FileStore(tmp_path / "d")
    await fs.open()
    try:
        async with await fs.open_object("bucket", "k") as reader:
            assert await reader.read_all() == b"two"
        async with await fs.open_object("bucket", "k", v1.version_id) as reader:
            assert await reader.read_all() == b"one"
        assert not os.path.exists(temp_dir)
    finally:
        await fs.close()
