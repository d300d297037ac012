"""Lifecycle end to end with boto3 at its defaults, standalone and on an erasure-coded
node, with a one-second lifecycle day (`lifecycle.day_seconds = 1`) and a worker pass
every second: the configuration's round trip and AWS's errors, x-amz-expiration, and the
worker expiring objects, removing noncurrent versions and lone delete markers, aborting
stale uploads — and leaving alone what the rules do not cover or object lock protects."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from botocore.exceptions import ClientError

from shoal.app.server import SyncServer
from tests.integration.conftest import (
    AwsCli,
    auth_config,
    erasure_config,
    error_code,
    signed_client,
    spawn_server,
    wait_for,
)
from tests.integration.test_cluster import make_nodes, running

FAST = {"lifecycle": {"day_seconds": 1, "interval_seconds": 1}}
#: Expiry is due within two lifecycle days of a write; a pass runs every second.
EXPIRY_TIMEOUT = 30.0


@pytest.fixture(scope="module", params=["standalone", "erasure"])
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SyncServer]:
    config: dict[str, Any] = dict(FAST)
    if request.param == "erasure":
        config |= erasure_config(tmp_path_factory.mktemp("lifecycle-drives"))
    with SyncServer(config) as running_server:
        yield running_server


@pytest.fixture
def s3(server: SyncServer) -> Any:
    return signed_client(server.endpoint_url)


@pytest.fixture
def bucket(s3: Any) -> str:
    name = f"lc-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name)
    return name


def versioning_supported(s3: Any, bucket: str) -> bool:
    """Enable versioning, or find the store cannot yet (erasure mode, until it can)."""
    try:
        s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    except ClientError as exc:
        assert error_code(exc) == "NotImplemented"
        return False
    return True


def keys(s3: Any, bucket: str) -> list[str]:
    return [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]


def code_of(call: Any, **kwargs: Any) -> tuple[str, int]:
    with pytest.raises(ClientError) as info:
        call(**kwargs)
    return error_code(info.value), info.value.response["ResponseMetadata"]["HTTPStatusCode"]


# ---------------------------------------------------------------- the configuration


def test_configuration_round_trip(s3: Any, bucket: str) -> None:
    assert code_of(s3.get_bucket_lifecycle_configuration, Bucket=bucket) == (
        "NoSuchLifecycleConfiguration",
        404,
    )
    rules = [
        {
            "ID": "logs",
            "Status": "Enabled",
            "Filter": {"Prefix": "logs/"},
            "Expiration": {"Days": 30},
            "NoncurrentVersionExpiration": {"NoncurrentDays": 7, "NewerNoncurrentVersions": 2},
        },
        {
            "ID": "tagged-and-sized",
            "Status": "Disabled",
            "Filter": {
                "And": {
                    "Prefix": "data/",
                    "Tags": [{"Key": "tier", "Value": "tmp"}],
                    "ObjectSizeGreaterThan": 10,
                    "ObjectSizeLessThan": 1000,
                }
            },
            "Expiration": {"Date": datetime(2030, 1, 1, tzinfo=UTC)},
        },
        {
            "ID": "markers-and-uploads",
            "Status": "Enabled",
            "Filter": {},
            "Expiration": {"ExpiredObjectDeleteMarker": True},
            "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 3},
        },
        {"ID": "legacy", "Status": "Enabled", "Prefix": "old/", "Expiration": {"Days": 1}},
    ]
    s3.put_bucket_lifecycle_configuration(Bucket=bucket, LifecycleConfiguration={"Rules": rules})
    got = s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]
    assert [r["ID"] for r in got] == [r["ID"] for r in rules]
    assert got[0]["Filter"] == {"Prefix": "logs/"} and got[0]["Expiration"] == {"Days": 30}
    assert got[0]["NoncurrentVersionExpiration"] == {
        "NoncurrentDays": 7,
        "NewerNoncurrentVersions": 2,
    }
    assert got[1]["Filter"]["And"]["Tags"] == [{"Key": "tier", "Value": "tmp"}]
    assert got[1]["Expiration"]["Date"] == datetime(2030, 1, 1, tzinfo=UTC)
    assert got[1]["Status"] == "Disabled"
    assert got[2]["Expiration"] == {"ExpiredObjectDeleteMarker": True}
    assert got[2]["AbortIncompleteMultipartUpload"] == {"DaysAfterInitiation": 3}
    assert got[3]["Prefix"] == "old/" and "Filter" not in got[3]
    deleted = s3.delete_bucket_lifecycle(Bucket=bucket)
    assert deleted["ResponseMetadata"]["HTTPStatusCode"] == 204
    assert code_of(s3.get_bucket_lifecycle_configuration, Bucket=bucket)[0] == (
        "NoSuchLifecycleConfiguration"
    )


def _rule(**fields: Any) -> dict[str, Any]:
    return {"ID": "r", "Status": "Enabled", "Filter": {}, **fields}


@pytest.mark.parametrize(
    ("rules", "expected"),
    [
        ([_rule(Expiration={"Days": 0})], ("InvalidArgument", 400)),
        ([_rule(ID="x" * 256, Expiration={"Days": 1})], ("InvalidArgument", 400)),
        ([_rule(Expiration={"Days": 1}), _rule(Expiration={"Days": 2})], ("InvalidArgument", 400)),
        (
            [_rule(Expiration={"Date": datetime(2030, 1, 1, 12, tzinfo=UTC)})],
            ("InvalidArgument", 400),
        ),
        (
            [
                _rule(
                    NoncurrentVersionExpiration={"NoncurrentDays": 1, "NewerNoncurrentVersions": 0}
                )
            ],
            ("InvalidArgument", 400),
        ),
        ([_rule()], ("InvalidRequest", 400)),  # no action
        (
            [_rule(Transitions=[{"Days": 30, "StorageClass": "GLACIER"}])],
            ("InvalidRequest", 400),
        ),
        (
            [
                _rule(
                    Filter={"Tag": {"Key": "k", "Value": "v"}},
                    AbortIncompleteMultipartUpload={"DaysAfterInitiation": 1},
                )
            ],
            ("InvalidRequest", 400),
        ),
        ([_rule(Status="On", Expiration={"Days": 1})], ("MalformedXML", 400)),
        (
            [_rule(Expiration={"Days": 1, "ExpiredObjectDeleteMarker": True})],
            ("MalformedXML", 400),
        ),
    ],
)
def test_configuration_errors(s3: Any, bucket: str, rules: list[Any], expected: Any) -> None:
    kept = [_rule(ID="kept", Expiration={"Days": 5})]
    s3.put_bucket_lifecycle_configuration(Bucket=bucket, LifecycleConfiguration={"Rules": kept})
    put = s3.put_bucket_lifecycle_configuration
    assert code_of(put, Bucket=bucket, LifecycleConfiguration={"Rules": rules}) == expected
    got = s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]
    assert [r["ID"] for r in got] == ["kept"]  # a refused PUT changes nothing


def test_transitions_refused_clearly(s3: Any, bucket: str) -> None:
    rules = [_rule(Transitions=[{"Days": 30, "StorageClass": "STANDARD_IA"}])]
    with pytest.raises(ClientError) as info:
        s3.put_bucket_lifecycle_configuration(
            Bucket=bucket, LifecycleConfiguration={"Rules": rules}
        )
    assert "storage class" in info.value.response["Error"]["Message"]


def test_no_such_bucket(s3: Any) -> None:
    missing = f"lc-missing-{uuid.uuid4().hex[:8]}"
    assert code_of(s3.get_bucket_lifecycle_configuration, Bucket=missing)[0] == "NoSuchBucket"
    rules = [_rule(Expiration={"Days": 1})]
    put = s3.put_bucket_lifecycle_configuration
    assert code_of(put, Bucket=missing, LifecycleConfiguration={"Rules": rules})[0] == (
        "NoSuchBucket"
    )


# ---------------------------------------------------------------- the header


def test_expiration_header(s3: Any, bucket: str) -> None:
    rules = [
        _rule(ID="far", Filter={"Prefix": "f/"}, Expiration={"Days": 100000}),
        _rule(ID="far later", Expiration={"Days": 200000}),
    ]
    s3.put_bucket_lifecycle_configuration(Bucket=bucket, LifecycleConfiguration={"Rules": rules})
    s3.put_object(Bucket=bucket, Key="f/k", Body=b"x")
    head = s3.head_object(Bucket=bucket, Key="f/k")
    match = re.fullmatch(r'expiry-date="([^"]+)", rule-id="([^"]+)"', head["Expiration"])
    assert match is not None, head["Expiration"]
    # A day is a second here: creation + 100000 days, then on to the next "midnight".
    expected = head["LastModified"] + timedelta(seconds=100001)
    assert parsedate_to_datetime(match[1]) == expected
    assert match[1].endswith(" GMT") and match[2] == "far"
    got = s3.get_object(Bucket=bucket, Key="f/k")
    assert got["Expiration"] == head["Expiration"]
    # The earliest rule that applies; the rule id URL-encoded.
    s3.put_object(Bucket=bucket, Key="other", Body=b"x")
    assert s3.head_object(Bucket=bucket, Key="other")["Expiration"].endswith(
        'rule-id="far%20later"'
    )
    s3.delete_bucket_lifecycle(Bucket=bucket)
    wait_for(
        "the header goes with the rules",
        lambda: "Expiration" not in s3.head_object(Bucket=bucket, Key="f/k"),
    )


# ---------------------------------------------------------------- the worker


def test_expires_what_the_rules_cover_and_nothing_else(s3: Any, bucket: str) -> None:
    for key in ("logs/a", "logs/b", "keep/a"):
        s3.put_object(Bucket=bucket, Key=key, Body=b"x")
    s3.put_object(Bucket=bucket, Key="tagged", Body=b"x", Tagging="state=old")
    s3.put_object(Bucket=bucket, Key="tag-differs", Body=b"x", Tagging="state=new")
    s3.put_object(Bucket=bucket, Key="big", Body=b"x" * 2000)
    s3.put_object(Bucket=bucket, Key="small", Body=b"x" * 10)
    s3.put_object(Bucket=bucket, Key="disabled/a", Body=b"x")
    rules = [
        _rule(ID="logs", Filter={"Prefix": "logs/"}, Expiration={"Days": 1}),
        _rule(ID="tag", Filter={"Tag": {"Key": "state", "Value": "old"}}, Expiration={"Days": 1}),
        _rule(ID="size", Filter={"ObjectSizeGreaterThan": 1000}, Expiration={"Days": 1}),
        _rule(ID="off", Status="Disabled", Filter={"Prefix": "disabled/"}, Expiration={"Days": 1}),
    ]
    s3.put_bucket_lifecycle_configuration(Bucket=bucket, LifecycleConfiguration={"Rules": rules})
    left = ["disabled/a", "keep/a", "small", "tag-differs"]
    wait_for("the covered objects expire", lambda: keys(s3, bucket) == left, EXPIRY_TIMEOUT)
    # Still there a few passes later, and still readable.
    for key in left:
        assert s3.get_object(Bucket=bucket, Key=key)["Body"].read()


def test_aborts_stale_uploads(s3: Any, bucket: str) -> None:
    stale = s3.create_multipart_upload(Bucket=bucket, Key="tmp/upload")["UploadId"]
    kept = s3.create_multipart_upload(Bucket=bucket, Key="keep/upload")["UploadId"]
    s3.upload_part(Bucket=bucket, Key="tmp/upload", UploadId=stale, PartNumber=1, Body=b"p")
    rules = [
        _rule(
            ID="abort",
            Filter={"Prefix": "tmp/"},
            AbortIncompleteMultipartUpload={"DaysAfterInitiation": 1},
        )
    ]
    s3.put_bucket_lifecycle_configuration(Bucket=bucket, LifecycleConfiguration={"Rules": rules})

    def uploads() -> list[str]:
        return [u["UploadId"] for u in s3.list_multipart_uploads(Bucket=bucket).get("Uploads", [])]

    wait_for("the stale upload is aborted", lambda: uploads() == [kept], EXPIRY_TIMEOUT)
    assert code_of(s3.list_parts, Bucket=bucket, Key="tmp/upload", UploadId=stale)[0] == (
        "NoSuchUpload"
    )
    s3.upload_part(Bucket=bucket, Key="keep/upload", UploadId=kept, PartNumber=1, Body=b"q")
    s3.abort_multipart_upload(Bucket=bucket, Key="keep/upload", UploadId=kept)


def _versions(s3: Any, bucket: str, prefix: str) -> set[tuple[str, str, bool, bool]]:
    """(key, version id, is a delete marker, is latest) of every version under prefix."""
    listed = s3.list_object_versions(Bucket=bucket, Prefix=prefix)
    found = {(v["Key"], v["VersionId"], False, v["IsLatest"]) for v in listed.get("Versions", [])}
    found |= {
        (m["Key"], m["VersionId"], True, m["IsLatest"]) for m in listed.get("DeleteMarkers", [])
    }
    return found


def test_versioned_bucket(s3: Any, bucket: str) -> None:
    if not versioning_supported(s3, bucket):
        pytest.skip("this store has no versioning yet")
    nc = [
        s3.put_object(Bucket=bucket, Key="nc/k", Body=str(i).encode())["VersionId"]
        for i in range(4)
    ]
    cur = s3.put_object(Bucket=bucket, Key="cur/k", Body=b"c")["VersionId"]
    s3.put_object(Bucket=bucket, Key="dm/lone", Body=b"d")
    lone_marker = s3.delete_object(Bucket=bucket, Key="dm/lone")["VersionId"]
    lone_version = [
        v["VersionId"]
        for v in s3.list_object_versions(Bucket=bucket, Prefix="dm/lone").get("Versions", [])
    ]
    s3.delete_object(Bucket=bucket, Key="dm/lone", VersionId=lone_version[0])
    s3.put_object(Bucket=bucket, Key="dm/over", Body=b"o")
    over_marker = s3.delete_object(Bucket=bucket, Key="dm/over")["VersionId"]
    rules = [
        _rule(
            ID="nc",
            Filter={"Prefix": "nc/"},
            NoncurrentVersionExpiration={"NoncurrentDays": 1, "NewerNoncurrentVersions": 1},
        ),
        _rule(ID="cur", Filter={"Prefix": "cur/"}, Expiration={"Days": 1}),
        _rule(ID="dm", Filter={"Prefix": "dm/"}, Expiration={"ExpiredObjectDeleteMarker": True}),
    ]
    s3.put_bucket_lifecycle_configuration(Bucket=bucket, LifecycleConfiguration={"Rules": rules})

    def ids(prefix: str) -> set[str]:
        return {vid for _, vid, _, _ in _versions(s3, bucket, prefix)}

    # nc/k: the current version and the one newest noncurrent version stay.
    wait_for("old noncurrent versions go", lambda: ids("nc/") == {nc[3], nc[2]}, EXPIRY_TIMEOUT)
    # cur/k: expired under versioning, a delete marker hides it; the version stays.
    wait_for("the current version expires", lambda: len(ids("cur/")) == 2, EXPIRY_TIMEOUT)
    latest = {(marker, latest) for _, vid, marker, latest in _versions(s3, bucket, "cur/")}
    assert latest == {(True, True), (False, False)} and cur in ids("cur/")
    # dm/lone: a marker with nothing under it is removed; dm/over's marker still hides a
    # version, so it stays.
    wait_for("the lone delete marker goes", lambda: not ids("dm/lone"), EXPIRY_TIMEOUT)
    assert lone_marker not in ids("dm/")
    over = _versions(s3, bucket, "dm/over")
    assert ("dm/over", over_marker, True, True) in over and len(over) == 2


def test_object_lock_is_respected(s3: Any) -> None:
    name = f"lc-lock-{uuid.uuid4().hex[:8]}"
    try:
        s3.create_bucket(Bucket=name, ObjectLockEnabledForBucket=True)
    except ClientError as exc:
        assert error_code(exc) == "NotImplemented"
        pytest.skip("this store has no object lock yet")
    until = datetime.now(UTC) + timedelta(days=1)
    held = s3.put_object(Bucket=name, Key="held", Body=b"h", ObjectLockLegalHoldStatus="ON")
    kept = s3.put_object(
        Bucket=name,
        Key="kept",
        Body=b"k",
        ObjectLockMode="GOVERNANCE",
        ObjectLockRetainUntilDate=until,
    )
    free = s3.put_object(Bucket=name, Key="free", Body=b"f")
    for key in ("held", "kept", "free"):
        s3.put_object(Bucket=name, Key=key, Body=b"new")
    rules = [_rule(ID="nc", NoncurrentVersionExpiration={"NoncurrentDays": 1})]
    s3.put_bucket_lifecycle_configuration(Bucket=name, LifecycleConfiguration={"Rules": rules})

    def ids() -> set[str]:
        return {vid for _, vid, _, _ in _versions(s3, name, "")}

    wait_for(
        "the unlocked noncurrent version goes",
        lambda: free["VersionId"] not in ids(),
        EXPIRY_TIMEOUT,
    )
    # The same pass saw the locked ones and left them.
    assert {held["VersionId"], kept["VersionId"]} <= ids()
    s3.put_object_legal_hold(
        Bucket=name, Key="held", VersionId=held["VersionId"], LegalHold={"Status": "OFF"}
    )
    for key, vid, _, _ in _versions(s3, name, ""):
        s3.delete_object(Bucket=name, Key=key, VersionId=vid, BypassGovernanceRetention=True)
    s3.delete_bucket(Bucket=name)


def test_metrics_count_the_work(server: SyncServer, s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="m/k", Body=b"x")
    rules = [_rule(ID="m", Filter={"Prefix": "m/"}, Expiration={"Days": 1})]
    s3.put_bucket_lifecycle_configuration(Bucket=bucket, LifecycleConfiguration={"Rules": rules})
    wait_for("m/k expires", lambda: keys(s3, bucket) == [], EXPIRY_TIMEOUT)
    text = httpx.get(server.endpoint_url + "/metrics", verify=False).text
    found = re.search(r'^shoal_lifecycle_actions_total\{action="expired"\} (\S+)$', text, re.M)
    assert found is not None and float(found[1]) >= 1


def test_rules_and_work_survive_a_restart(tmp_path: Path) -> None:
    """The configuration persists; a new server on the same data expires what the old
    one left (its first pass runs at start)."""
    config = {
        **FAST,
        "storage": {"directory": str(tmp_path / "data"), "clean_slate": False},
    }
    slow = {**config, "lifecycle": {"day_seconds": 1, "interval_seconds": 3600}}
    rules = [_rule(ID="all", Expiration={"Days": 1})]
    with SyncServer(slow) as first:
        s3 = signed_client(first.endpoint_url)
        s3.create_bucket(Bucket="kept-rules")
        s3.put_bucket_lifecycle_configuration(
            Bucket="kept-rules", LifecycleConfiguration={"Rules": rules}
        )
        s3.put_object(Bucket="kept-rules", Key="k", Body=b"x")
    with SyncServer(config) as second:
        s3 = signed_client(second.endpoint_url)
        assert s3.get_bucket_lifecycle_configuration(Bucket="kept-rules")["Rules"][0]["ID"] == "all"
        wait_for("k expires", lambda: keys(s3, "kept-rules") == [], EXPIRY_TIMEOUT)


@pytest.mark.slow
def test_in_a_cluster_one_node_runs_each_bucket(tmp_path: Path) -> None:
    nodes = make_nodes(tmp_path, 3, 2)
    for node in nodes:
        with open(node.config, "a", encoding="utf-8") as f:
            f.write("\n[lifecycle]\nday_seconds = 1\ninterval_seconds = 1\n")
    with running(nodes) as (a, b, c):
        s3 = a.s3()
        name = f"lc-{uuid.uuid4().hex[:8]}"
        s3.create_bucket(Bucket=name)
        for i in range(6):
            s3.put_object(Bucket=name, Key=f"x/{i}", Body=b"x")
        s3.put_object(Bucket=name, Key="keep", Body=b"k")
        rules = [_rule(ID="x", Filter={"Prefix": "x/"}, Expiration={"Days": 1})]
        b.s3().put_bucket_lifecycle_configuration(
            Bucket=name, LifecycleConfiguration={"Rules": rules}
        )
        wait_for("x/ expires", lambda: keys(c.s3(), name) == ["keep"], 60)

        def expired(node: Any) -> float:
            text = httpx.get(node.endpoint + "/metrics", timeout=10).text
            found = re.search(
                r'^shoal_lifecycle_actions_total\{action="expired"\} (\S+)$', text, re.M
            )
            return float(found[1]) if found else 0.0

        counts = [expired(n) for n in nodes]
        assert sorted(counts) == [0.0, 0.0, 6.0], counts


@pytest.mark.cli
def test_aws_cli(server: SyncServer, s3: Any, bucket: str, tmp_path: Path) -> None:
    """The aws CLI's put/get/delete-bucket-lifecycle-configuration."""
    cli = AwsCli(tmp_path, server.endpoint_url, "k", "s")
    config = tmp_path / "lifecycle.json"
    rules = [_rule(ID="cli", Filter={"Prefix": "cli/"}, Expiration={"Days": 7})]
    config.write_text(json.dumps({"Rules": rules}))

    def aws(*args: str) -> subprocess.CompletedProcess[str]:
        return cli.run("s3api", *args, "--bucket", bucket, check=False)

    put = aws("put-bucket-lifecycle-configuration", "--lifecycle-configuration", f"file://{config}")
    assert put.returncode == 0, put.stderr
    got = aws("get-bucket-lifecycle-configuration")
    assert got.returncode == 0, got.stderr
    assert json.loads(got.stdout)["Rules"] == [
        {"ID": "cli", "Status": "Enabled", "Filter": {"Prefix": "cli/"}, "Expiration": {"Days": 7}}
    ]
    assert aws("delete-bucket-lifecycle").returncode == 0
    missing = aws("get-bucket-lifecycle-configuration")
    assert missing.returncode != 0 and "NoSuchLifecycleConfiguration" in missing.stderr


def test_a_killed_pass_resumes_where_it_stopped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A slow pass saves its progress; after SIGKILL the next server resumes after the
    saved key, finishes, and clears the progress. An object written (and due) behind
    the pass before the kill proves it: a pass from the start would have expired it."""
    data = tmp_path / "data"
    progress = data / ".bucket-config" / "resumed" / "lifecycle-progress"
    monkeypatch.setenv("SHOAL_LIFECYCLE__DAY_SECONDS", "1")
    monkeypatch.setenv("SHOAL_LIFECYCLE__INTERVAL_SECONDS", "3600")  # one pass, at start
    proc, endpoint = spawn_server(data)
    try:
        s3 = signed_client(endpoint)
        s3.create_bucket(Bucket="resumed")
        for i in range(60):
            s3.put_object(Bucket="resumed", Key=f"k{i:03d}", Body=b"x")
        rules = [_rule(ID="all", Expiration={"Days": 1})]
        s3.put_bucket_lifecycle_configuration(
            Bucket="resumed", LifecycleConfiguration={"Rules": rules}
        )
        last = s3.head_object(Bucket="resumed", Key="k059")["LastModified"]
        proc.terminate()
        proc.wait(timeout=30)
        # Every object due before the next server's pass at start (else it finds nothing
        # to do, saves no checkpoint, and runs again only an interval later).
        wait_for("k059 is due", lambda: datetime.now(UTC) >= last + timedelta(seconds=2))
        # A slow server (4 operations/s): its pass at start takes about 15 s.
        monkeypatch.setenv("SHOAL_LIFECYCLE__OPERATIONS_PER_SECOND", "4")
        proc, endpoint = spawn_server(data)
        s3 = signed_client(endpoint)
        s3.put_object(Bucket="resumed", Key="a-behind", Body=b"x")  # after its listing
        written = s3.head_object(Bucket="resumed", Key="a-behind")["LastModified"]
        wait_for("a checkpoint is saved", progress.exists, EXPIRY_TIMEOUT)
        wait_for(
            "a-behind is due",
            lambda: datetime.now(UTC) >= written + timedelta(seconds=2),
        )
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        saved = json.loads(progress.read_text())
        assert saved["phase"] == "objects" and "k000" <= saved["key"] < "k059"
        monkeypatch.setenv("SHOAL_LIFECYCLE__OPERATIONS_PER_SECOND", "1000")
        proc, endpoint = spawn_server(data)
        s3 = signed_client(endpoint)
        wait_for("the pass finishes", lambda: not progress.exists(), EXPIRY_TIMEOUT)
        assert keys(s3, "resumed") == ["a-behind"]
    finally:
        proc.kill()
        proc.wait(timeout=10)


def test_iam_actions() -> None:
    """GET needs s3:GetLifecycleConfiguration; PUT and DELETE s3:PutLifecycleConfiguration:
    an anonymous caller allowed only the first reads the rules and changes nothing."""
    key, secret = "AKIDLIFECYCLE", "lifecycle-secret"
    with SyncServer({**FAST, **auth_config((key, secret))}) as running_server:
        owner = signed_client(running_server.endpoint_url, key, secret)
        name = f"lc-iam-{uuid.uuid4().hex[:8]}"
        owner.create_bucket(Bucket=name)
        rules = [_rule(ID="iam", Expiration={"Days": 30})]
        owner.put_bucket_lifecycle_configuration(
            Bucket=name, LifecycleConfiguration={"Rules": rules}
        )
        policy = {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": "*",
                    "Action": "s3:GetLifecycleConfiguration",
                    "Resource": f"arn:aws:s3:::{name}",
                }
            ],
        }
        owner.put_bucket_policy(Bucket=name, Policy=json.dumps(policy))
        with httpx.Client(base_url=running_server.endpoint_url) as anonymous:
            got = anonymous.get(f"/{name}?lifecycle")
            assert got.status_code == 200 and "<ID>iam</ID>" in got.text
            assert anonymous.delete(f"/{name}?lifecycle").status_code == 403
            put = anonymous.put(f"/{name}?lifecycle", content=b"<LifecycleConfiguration/>")
            assert put.status_code == 403
        assert owner.get_bucket_lifecycle_configuration(Bucket=name)["Rules"][0]["ID"] == "iam"
