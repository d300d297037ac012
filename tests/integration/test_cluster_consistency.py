"""Consistency across coordinators: several real shoal node processes on 127.0.0.1 (the
harness of test_cluster.py), each request sent to a different node. Racing writes to
one key never show a mix and end with every node agreeing; bucket records, policies and
CORS rules written through one node are what every other node answers; a node that was
down while things changed answers with the changes once back, and healing puts them on
its drive."""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from botocore.exceptions import ClientError

from tests.integration.conftest import error_code, signed_client
from tests.integration.conftest import wait_for as shared_wait_for
from tests.integration.test_cluster import KEY, SECRET_KEY, Node, heal, make_nodes, running

pytestmark = pytest.mark.slow

CHUNK = 262144  # cluster.erasure.chunk_size_bytes in make_nodes


@pytest.fixture
def three(tmp_path: Path) -> Iterator[list[Node]]:
    """Three nodes of two drives: one 4+2 erasure set over all of them."""
    with running(make_nodes(tmp_path, 3, 2)) as nodes:
        yield nodes


def client(node: Node) -> Any:
    """boto3 for `node`, every call bounded in time. Clients are made in the main
    thread only: boto3's default session is not thread-safe."""
    return signed_client(node.endpoint, KEY, SECRET_KEY, connect_timeout=10, read_timeout=30)


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def wait_for(what: str, check: Callable[[], bool], timeout: float = 20.0) -> None:
    """The shared wait, where a node that is starting or stopping answers nothing useful."""
    shared_wait_for(
        what, check, timeout, interval=0.2, ignore=(httpx.HTTPError, ValueError, KeyError)
    )


def node_state(observer: Node, name: str) -> str:
    return {n["node_id"]: n["state"] for n in observer.status()["nodes"]}[name]


def all_drives_online(observer: Node) -> bool:
    return all(d["state"] == "online" for members in observer.status()["sets"] for d in members)


def observe(s3: Any, bucket: str, key: str) -> tuple[str, bytes] | None:
    """(ETag without quotes, body) of the key as one node serves it, None for a 404.
    The ETag of the GET must be the MD5 of the body it sent (single-part PUTs only)."""
    try:
        got = s3.get_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        if error_code(exc) in ("404", "NoSuchKey"):
            return None
        raise
    body = got["Body"].read()
    etag = got["ETag"].strip('"')
    assert got["ContentLength"] == len(body)
    assert etag == md5(body), "a GET's ETag is not the MD5 of the body it sent"
    return etag, body


def listed(s3: Any, bucket: str, prefix: str) -> list[tuple[str, str, int]]:
    page = s3.list_objects_v2(Bucket=bucket, Prefix=prefix)
    assert not page["IsTruncated"]
    return [(o["Key"], o["ETag"].strip('"'), o["Size"]) for o in page.get("Contents", [])]


def test_concurrent_writes_to_one_key_from_every_node(three: list[Node]) -> None:
    """Three writers, each through its own node, overwrite one multi-chunk key while a
    reader on every node reads it: each read is exactly one written body, and at the end
    every node serves the same one, the newest of some writer's."""
    writes, max_reads = 8, 40
    bucket, key = "race", "hot/key"
    client(three[0]).create_bucket(Bucket=bucket)
    # ~1 MiB bodies: 4 full chunks of 256 KiB and a short one, all distinct.
    bodies = [
        [os.urandom(4 * CHUNK + 1000 * (w * writes + i + 1)) for i in range(writes)]
        for w in range(len(three))
    ]
    by_md5 = {md5(b): b for per_writer in bodies for b in per_writer}
    assert len(by_md5) == len(three) * writes
    writer_clients = [client(node) for node in three]
    reader_clients = [client(node) for node in three]
    first_done = threading.Event()
    writers_done = threading.Event()
    problems: list[str] = []
    seen: list[int] = [0] * len(three)

    def writer(w: int) -> None:
        for body in bodies[w]:
            reply = writer_clients[w].put_object(Bucket=bucket, Key=key, Body=body)
            assert reply["ETag"].strip('"') == md5(body)
            first_done.set()

    def reader(r: int) -> None:
        s3 = reader_clients[r]
        for _ in range(max_reads):
            if writers_done.is_set():
                return
            written_before = first_done.is_set()
            try:
                got = observe(s3, bucket, key)
            except Exception as exc:  # anything but a 200 or an early 404 is wrong
                problems.append(f"node{r}: GET failed: {exc!r}")
                continue
            if got is None:
                if written_before:
                    problems.append(f"node{r}: 404 after a write had completed")
                continue
            etag, body = got
            if by_md5.get(etag) != body:
                problems.append(f"node{r}: a body that was never written ({len(body)} bytes)")
            seen[r] += 1

    with ThreadPoolExecutor(2 * len(three)) as pool:
        readers = [pool.submit(reader, r) for r in range(len(three))]
        writing = [pool.submit(writer, w) for w in range(len(three))]
        try:
            for future in writing:
                future.result()
        finally:
            writers_done.set()
        for future in readers:
            future.result()
    assert problems == []
    assert sum(seen) > 0, "no read overlapped the writes"

    finals = {node.name: observe(client(node), bucket, key) for node in three}
    assert None not in finals.values(), f"404 after the writes: {finals.keys()}"
    etags = {name: got[0] for name, got in finals.items() if got is not None}
    assert len(set(etags.values())) == 1, f"nodes disagree: {etags}"
    etag, body = next(iter(finals.values()))  # type: ignore[misc]
    # The newest version wins, and each writer's later PUTs are newer than its earlier
    # ones: the survivor is the last body of one of the writers.
    assert body in [per_writer[-1] for per_writer in bodies]
    assert etag == md5(body)
    for node in three:
        assert listed(client(node), bucket, "hot/") == [(key, etag, len(body))], node.name
        head = client(node).head_object(Bucket=bucket, Key=key)
        assert (head["ETag"].strip('"'), head["ContentLength"]) == (etag, len(body))


def test_each_change_through_any_node_is_what_every_node_reads_next(
    three: list[Node],
) -> None:
    """PUTs and DELETEs of one key, one after the other, each through the next node in
    turn: right after each, every node serves exactly it (versions made by different
    nodes are ordered by when they were written)."""
    bucket, key = "in-turn", "k"
    clients = [client(node) for node in three]
    clients[0].create_bucket(Bucket=bucket)
    for step in range(9):
        writer = clients[step % len(clients)]
        expected: tuple[str, bytes] | None
        if step % 4 == 3:
            writer.delete_object(Bucket=bucket, Key=key)
            expected = None
        else:
            # One-chunk (read with its record) and multi-chunk bodies.
            body = os.urandom((1000, 2 * CHUNK, 4 * CHUNK)[step % 3] + step)
            writer.put_object(Bucket=bucket, Key=key, Body=body)
            expected = (md5(body), body)
        for node, s3 in zip(three, clients, strict=True):
            assert observe(s3, bucket, key) == expected, f"step {step}: {node.name}"
            entries = [] if expected is None else [(key, expected[0], len(expected[1]))]
            assert listed(s3, bucket, "") == entries, f"step {step}: {node.name}"


def test_put_delete_race_ends_with_every_node_agreeing(three: list[Node]) -> None:
    """Rounds of a PUT through a, a DELETE through b and a PUT through c released
    together on one key: afterwards (and once cleanups ran) every node answers the
    same, which is one of the racing requests' outcomes."""
    bucket, key = "putdel", "contested"
    setup = client(three[0])
    setup.create_bucket(Bucket=bucket)
    racers = [client(node) for node in three]
    observers = [client(node) for node in three]

    def state_everywhere() -> list[tuple[str, bytes] | None]:
        return [observe(s3, bucket, key) for s3 in observers]

    def etags(states: list[tuple[str, bytes] | None]) -> list[str | None]:
        return [None if s is None else s[0] for s in states]

    def race(start: threading.Barrier, s3: Any, body: bytes | None) -> None:
        start.wait(timeout=30)
        if body is None:
            s3.delete_object(Bucket=bucket, Key=key)
        else:
            s3.put_object(Bucket=bucket, Key=key, Body=body)

    outcomes = []
    for round_ in range(6):
        # The key exists before each race, so the DELETE has something to hide.
        setup.put_object(Bucket=bucket, Key=key, Body=os.urandom(CHUNK + 5000))
        x, y = os.urandom(2 * CHUNK + round_ + 1), os.urandom(3 * CHUNK + round_ + 7)
        start = threading.Barrier(3)
        with ThreadPoolExecutor(3) as pool:
            futures = [
                pool.submit(race, start, s3, body)
                for s3, body in zip(racers, (x, None, y), strict=True)
            ]
            for future in futures:
                future.result()
        states = state_everywhere()
        assert all(s == states[0] for s in states), f"round {round_}: {etags(states)}"
        final = states[0]
        assert final is None or final[1] in (x, y), f"round {round_}: an older body won"
        expected = [] if final is None else [(key, final[0], len(final[1]))]
        for s3 in observers:
            assert listed(s3, bucket, key) == expected, f"round {round_}"
        # The coordinators retire what the winner replaced in the background: that
        # must not change the answer (no older version back, no resurrection).
        time.sleep(0.5)
        again = state_everywhere()
        assert again == states, f"round {round_}: {etags(states)} became {etags(again)}"
        outcomes.append("deleted" if final is None else "x" if final[1] == x else "y")
    print("race outcomes:", outcomes)


def test_bucket_records_and_documents_reach_every_node(three: list[Node]) -> None:
    a, b, c = three
    bucket = "config-everywhere"
    client(a).create_bucket(Bucket=bucket)
    for node in three:
        client(node).head_bucket(Bucket=bucket)
        assert bucket in [x["Name"] for x in client(node).list_buckets()["Buckets"]]

    policy = json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Sid": "PublicRead",
                    "Effect": "Allow",
                    "Principal": "*",
                    "Action": "s3:GetObject",
                    "Resource": f"arn:aws:s3:::{bucket}/*",
                }
            ],
        }
    )
    client(b).put_bucket_policy(Bucket=bucket, Policy=policy)
    assert client(c).get_bucket_policy(Bucket=bucket)["Policy"] == policy
    assert client(a).get_bucket_policy(Bucket=bucket)["Policy"] == policy
    # ... and it is in force there: an anonymous GET through c (policies are cached
    # for a second per node, hence the wait).
    client(a).put_object(Bucket=bucket, Key="public.txt", Body=b"for everyone")
    anonymous = f"{c.endpoint}/{bucket}/public.txt"
    wait_for(
        "node2 lets an anonymous GET through",
        lambda: httpx.get(anonymous, timeout=10).content == b"for everyone",
        timeout=10,
    )

    rules = {
        "CORSRules": [
            {
                "AllowedOrigins": ["http://site.localhost"],
                "AllowedMethods": ["GET", "PUT"],
                "AllowedHeaders": ["*"],
                "ExposeHeaders": ["ETag"],
                "MaxAgeSeconds": 120,
            }
        ]
    }
    client(c).put_bucket_cors(Bucket=bucket, CORSConfiguration=rules)
    for node in (a, b):
        got = client(node).get_bucket_cors(Bucket=bucket)["CORSRules"]
        assert [{k: r[k] for k in rules["CORSRules"][0]} for r in got] == rules["CORSRules"]

    def preflight_allowed() -> bool:
        reply = httpx.options(
            f"{a.endpoint}/{bucket}/public.txt",
            headers={"Origin": "http://site.localhost", "Access-Control-Request-Method": "PUT"},
            timeout=10,
        )
        return reply.status_code == 200 and reply.headers["access-control-max-age"] == "120"

    wait_for("node0 answers a preflight by the rules put through node2", preflight_allowed, 10)

    client(c).delete_object(Bucket=bucket, Key="public.txt")
    client(c).delete_bucket(Bucket=bucket)
    for node in (a, b):
        s3 = client(node)
        with pytest.raises(ClientError) as info:
            s3.head_bucket(Bucket=bucket)
        assert error_code(info.value) == "404", node.name
        with pytest.raises(ClientError) as info:
            s3.list_objects_v2(Bucket=bucket)
        assert error_code(info.value) == "NoSuchBucket", node.name
    for node in three:
        assert bucket not in [x["Name"] for x in client(node).list_buckets()["Buckets"]]
    # Its policy and rules went with it: a bucket of the same name starts bare.
    client(b).create_bucket(Bucket=bucket)
    for node in three:
        s3 = client(node)
        with pytest.raises(ClientError) as info:
            s3.get_bucket_policy(Bucket=bucket)
        assert error_code(info.value) == "NoSuchBucketPolicy", node.name
        with pytest.raises(ClientError) as info:
            s3.get_bucket_cors(Bucket=bucket)
        assert error_code(info.value) == "NoSuchCORSConfiguration", node.name
        assert listed(s3, bucket, "") == [], node.name


def test_a_bucket_deleted_through_one_node_takes_no_writes_through_another(
    three: list[Node],
) -> None:
    """Right after a DeleteBucket through c, a node that had just used the bucket must
    not accept a PUT into it: the object would outlive its bucket and turn up in the
    next bucket of that name."""
    a, b, c = three
    bucket = "gone-bucket"
    writer = client(a)
    writer.create_bucket(Bucket=bucket)
    writer.put_object(Bucket=bucket, Key="before", Body=b"x")  # a has seen the bucket
    client(c).delete_object(Bucket=bucket, Key="before")
    client(c).delete_bucket(Bucket=bucket)
    try:
        writer.put_object(Bucket=bucket, Key="ghost", Body=b"written after the delete")
        accepted = True
    except ClientError as exc:
        assert error_code(exc) == "NoSuchBucket"
        accepted = False
    client(b).create_bucket(Bucket=bucket)
    leftovers = {node.name: listed(client(node), bucket, "") for node in three}
    assert not accepted, f"PUT into the deleted bucket accepted; new bucket lists {leftovers}"
    assert all(keys == [] for keys in leftovers.values()), leftovers


def test_a_read_through_one_node_survives_an_overwrite_through_another(
    three: list[Node],
) -> None:
    """A GET streaming a large object through b, overwritten through c meanwhile, still
    delivers the whole old body: a version a reader anywhere has open stays on disk."""
    a, b, c = three
    bucket, key = "long-read", "big"
    client(a).create_bucket(Bucket=bucket)
    # Far more than socket buffers and the reader's read-ahead hold: most chunks are
    # read from the drives after the overwrite.
    body = os.urandom(96 * CHUNK)
    client(a).put_object(Bucket=bucket, Key=key, Body=body)
    got = client(b).get_object(Bucket=bucket, Key=key)
    head = got["Body"].read(CHUNK)
    client(c).put_object(Bucket=bucket, Key=key, Body=b"the new version")

    def versions_on_disk() -> int:
        return len(
            list(
                a.directory.parent.glob(
                    f"node*/drive*/.smartstorage/data/{bucket}/{key}._storage_object/*"
                )
            )
        )

    # Give the coordinator's cleanup time to run (with the bug: until the old version
    # is gone from every drive; fixed, it may rightly wait for the reader).
    deadline = time.monotonic() + 5
    while versions_on_disk() > 6 and time.monotonic() < deadline:
        time.sleep(0.1)
    rest = got["Body"].read()
    assert len(head) + len(rest) == len(body)
    assert head + rest == body


def test_a_node_that_was_down_catches_up(tmp_path: Path) -> None:
    """Six single-drive nodes: node5 is killed, buckets, a policy and objects change
    without it; back, it answers with the changes at once (quorum reads), and healing
    writes them to its drive."""
    nodes = make_nodes(tmp_path, 6, 1)
    with running(nodes):
        first, victim = nodes[0], nodes[5]
        s3 = client(first)
        s3.create_bucket(Bucket="early")
        s3.put_object(Bucket="early", Key="old", Body=os.urandom(2 * CHUNK + 10))
        victim.kill()
        wait_for("node1 sees node5 offline", lambda: node_state(nodes[1], "node5") == "offline")

        s3.create_bucket(Bucket="late")
        policy = json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Principal": "*",
                        "Action": "s3:GetObject",
                        "Resource": "arn:aws:s3:::late/*",
                    }
                ],
            }
        )
        s3.put_bucket_policy(Bucket="late", Policy=policy)
        objects = {f"obj{i}": os.urandom(2 * CHUNK + 1000 * (i + 1)) for i in range(3)}
        for key, body in objects.items():
            s3.put_object(Bucket="late", Key=key, Body=body)
        s3.delete_object(Bucket="early", Key="old")

        # It misses it all: its drive lacks the new bucket, its policy and objects,
        # and still holds its shards of the deleted object.
        meta = victim.directory / "drive0" / ".smartstorage"
        assert (meta / "buckets" / "early.json").exists()
        assert not (meta / "buckets" / "late.json").exists()
        assert not (meta / "policies" / "late.policy.json").exists()
        assert not list(meta.glob("data/late/obj*"))
        assert list(meta.glob("data/early/old._storage_object/*/chunk-*/shard-*.dat"))

        victim.start()
        victim.wait_ready()
        wait_for("node0 sees node5 online", lambda: node_state(first, "node5") == "alive")
        wait_for("node0 sees every drive online", lambda: all_drives_online(first))
        wait_for(
            "node5 sees every node online",
            lambda: all(n["state"] == "alive" for n in victim.status()["nodes"]),
        )

        back = client(victim)
        assert [x["Name"] for x in back.list_buckets()["Buckets"]] == ["early", "late"]
        assert back.get_bucket_policy(Bucket="late")["Policy"] == policy
        for key, body in objects.items():
            got = observe(back, "late", key)
            assert got is not None and got[1] == body, key
        assert observe(back, "early", "old") is None
        assert listed(back, "early", "") == []
        assert [k for k, _, _ in listed(back, "late", "")] == sorted(objects)

        report = heal(first)
        assert report["unrecoverable"] == [] and report["errors"] == [], report
        record = json.loads((meta / "buckets" / "late.json").read_text())
        assert record["name"] == "late"
        assert json.loads((meta / "policies" / "late.policy.json").read_text())["text"] == policy
        for key, body in objects.items():
            assert (meta / "data" / "late" / f"{key}._storage_object.metadata.json").exists()
            versions = list((meta / "data" / "late" / f"{key}._storage_object").iterdir())
            assert len(versions) == 1, key
            shards = sorted(versions[0].glob("chunk-*/shard-*.dat"))
            # One shard of every chunk on each drive of the set.
            assert len(shards) == -(-len(body) // CHUNK), key
        # The deleted object's shards are gone from the returned drive too.
        assert not list(meta.glob("data/early/old._storage_object/*/chunk-*/shard-*.dat"))
        # And the returned node's copy now counts: two others may go.
        nodes[1].kill()
        nodes[2].kill()
        for key, body in objects.items():
            got = observe(client(victim), "late", key)
            assert got is not None and got[1] == body, key
