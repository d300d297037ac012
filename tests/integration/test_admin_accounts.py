"""Runtime accounts on a real standalone server: the admin API (app/adminusers.py) signed
by its own client, the fresh keys used by boto3, disabling, revoking, identity policies
with bucket policies, files mode 0600, a restart, the server log, and `shoal admin`."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from shoal.app.adminclient import AdminClient, AdminError
from tests.integration.conftest import error_code, signed_client
from tests.integration.serving import Proc

ADMIN = ("admin", "admin-secret")
BOB = ("bob", "bob-secret")  # a configured account that is not an admin


def settings(**extra: Any) -> dict[str, Any]:
    credentials = [
        {"access_key_id": ADMIN[0], "secret_access_key": ADMIN[1], "admin": True},
        {"access_key_id": BOB[0], "secret_access_key": BOB[1]},
    ]
    return {"auth": {"enabled": True, "credentials": credentials}, **extra}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proc]:
    proc = Proc(tmp_path_factory.mktemp("accounts"), "--log-level", "debug", settings=settings())
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def admin(server: Proc) -> AdminClient:
    return AdminClient(server.url, *ADMIN)


def new_user(client: AdminClient, name: str, *, admin: bool = False) -> tuple[str, str]:
    """A fresh runtime account with one key: (access key, secret)."""
    client.add_user(name, admin)
    key = client.create_key(name)
    return key["access_key"], key["secret_key"]


def refused(call: Any, *args: Any, **kwargs: Any) -> str:
    with pytest.raises(Exception) as info:
        call(*args, **kwargs)
    return error_code(info.value)


def admin_error(call: Any, *args: Any) -> tuple[int, str]:
    with pytest.raises(AdminError) as info:
        call(*args)
    return info.value.status, info.value.code


def doc(*statements: dict[str, Any]) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


def test_a_fresh_key_works_for_s3_at_once(server: Proc, admin: AdminClient) -> None:
    user = admin.add_user("alice")
    assert (user["source"], user["admin"], user["disabled"], user["keys"]) == (
        "runtime",
        False,
        False,
        [],
    )
    key = admin.create_key("alice")
    assert key["user"] == "alice" and len(key["secret_key"]) >= 40
    s3 = signed_client(server.url, key["access_key"], key["secret_key"])
    s3.create_bucket(Bucket="alice-bucket")
    s3.put_object(Bucket="alice-bucket", Key="k", Body=b"hello")
    assert s3.get_object(Bucket="alice-bucket", Key="k")["Body"].read() == b"hello"
    assert [b["Name"] for b in s3.list_buckets()["Buckets"]] == ["alice-bucket"]
    owner = s3.get_bucket_acl(Bucket="alice-bucket")["Owner"]
    assert owner == {"ID": user["canonical_id"], "DisplayName": "alice"}
    listed = admin.keys("alice")
    assert listed == [
        {"access_key": key["access_key"], "status": "active", "created": key["created"]}
    ]
    assert "secret_key" not in json.dumps(admin.users())


def test_disabled_accounts_and_revoked_keys_are_refused(server: Proc, admin: AdminClient) -> None:
    first = new_user(admin, "carol")
    second = admin.create_key("carol")
    s3 = signed_client(server.url, *first)
    s3.list_buckets()
    admin.set_enabled("carol", False)
    assert refused(s3.list_buckets) == "InvalidAccessKeyId"
    assert admin.user("carol")["disabled"] is True
    admin.set_enabled("carol", True)
    s3.list_buckets()
    admin.revoke_key(first[0])
    assert refused(s3.list_buckets) == "InvalidAccessKeyId"
    other = signed_client(server.url, second["access_key"], second["secret_key"])
    other.list_buckets()  # the account's other key still works
    admin.remove_user("carol")
    assert refused(other.list_buckets) == "InvalidAccessKeyId"
    assert admin_error(admin.user, "carol") == (404, "NoSuchUser")


def test_identity_policies_combine_with_bucket_policies(server: Proc, admin: AdminClient) -> None:
    key, secret = new_user(admin, "dave")
    dave = signed_client(server.url, key, secret)
    bob = signed_client(server.url, *BOB)
    bob.create_bucket(Bucket="bobs")
    bob.put_object(Bucket="bobs", Key="k", Body=b"x")
    grant = {
        "Effect": "Allow",
        "Principal": {"AWS": f"arn:aws:iam::000000000000:user/{key}"},
        "Action": "s3:GetObject",
        "Resource": "arn:aws:s3:::bobs/*",
    }
    bob.put_bucket_policy(Bucket="bobs", Policy=doc(grant))
    # No identity policy: dave is the root of his own account; bob's policy suffices.
    assert dave.get_object(Bucket="bobs", Key="k")["Body"].read() == b"x"
    # With policies, dave is an IAM user: cross-account needs his side too.
    put_only = doc({"Effect": "Allow", "Action": "s3:PutObject", "Resource": "*"})
    admin.attach_policy("dave", "put-only", put_only)
    assert refused(dave.get_object, Bucket="bobs", Key="k") == "AccessDenied"
    read = doc({"Effect": "Allow", "Action": ["s3:GetObject", "s3:CreateBucket"], "Resource": "*"})
    admin.attach_policy("dave", "read", read)
    assert dave.get_object(Bucket="bobs", Key="k")["Body"].read() == b"x"
    # Same account: his own bucket, his own policies suffice (no bucket policy there).
    dave.create_bucket(Bucket="daves")
    dave.put_object(Bucket="daves", Key="mine", Body=b"m")
    assert refused(dave.list_objects_v2, Bucket="daves") == "AccessDenied"
    # An explicit Deny anywhere wins: his own...
    admin.attach_policy(
        "dave", "no-get", doc({"Effect": "Deny", "Action": "s3:GetObject", "Resource": "*"})
    )
    assert refused(dave.get_object, Bucket="bobs", Key="k") == "AccessDenied"
    assert refused(dave.get_object, Bucket="daves", Key="mine") == "AccessDenied"
    admin.detach_policy("dave", "no-get")
    assert dave.get_object(Bucket="bobs", Key="k")["Body"].read() == b"x"
    # ... or the bucket's.
    deny = {**grant, "Effect": "Deny", "Sid": "no"}
    bob.put_bucket_policy(Bucket="bobs", Policy=doc({**grant, "Sid": "yes"}, deny))
    assert refused(dave.get_object, Bucket="bobs", Key="k") == "AccessDenied"
    assert sorted(admin.policies("dave")) == ["put-only", "read"]
    assert admin.policies("dave")["read"] == json.loads(read)
    assert admin.user("dave")["policies"] == ["put-only", "read"]


def test_bad_requests_get_s3_errors(admin: AdminClient) -> None:
    admin.add_user("erin")
    assert admin_error(admin.add_user, "erin") == (409, "UserAlreadyExists")
    assert admin_error(admin.add_user, "admin") == (409, "UserAlreadyExists")
    assert admin_error(admin.add_user, "no/slash")[0] == 400
    assert admin_error(admin.user, "nobody") == (404, "NoSuchUser")
    assert admin_error(admin.create_key, "nobody") == (404, "NoSuchUser")
    assert admin_error(admin.revoke_key, "SKNOSUCHKEY000000000") == (404, "NoSuchAccessKey")
    assert admin_error(admin.detach_policy, "erin", "none") == (404, "NoSuchPolicy")
    bad = doc({"Effect": "Allow", "Principal": "*", "Action": "s3:*", "Resource": "*"})
    assert admin_error(admin.attach_policy, "erin", "p", bad) == (400, "MalformedPolicy")
    assert admin_error(admin.attach_policy, "erin", "p", "{not json") == (400, "MalformedPolicy")
    with pytest.raises(AdminError) as info:
        admin.call("POST", "users", raw="[1, 2")
    assert info.value.status == 400
    with pytest.raises(AdminError) as info:
        admin.call("GET", "nothing/here")
    assert info.value.status == 404


def test_configured_accounts_are_listed_and_read_only(admin: AdminClient) -> None:
    users = {u["name"]: u for u in admin.users()}
    assert users["admin"]["source"] == "config" and users["admin"]["admin"] is True
    assert users["bob"]["keys"] == [{"access_key": "bob", "status": "active", "created": None}]
    assert admin_error(admin.remove_user, "bob") == (403, "AccessDenied")
    assert admin_error(admin.set_enabled, "bob", False) == (403, "AccessDenied")
    assert admin_error(admin.create_key, "bob") == (403, "AccessDenied")
    assert admin_error(admin.revoke_key, "bob") == (403, "AccessDenied")


def test_only_admins_manage_accounts_and_anyone_signed_may_ask_who_they_are(
    server: Proc, admin: AdminClient
) -> None:
    plain = AdminClient(server.url, *new_user(admin, "frank"))
    me = plain.whoami()
    assert (me["name"], me["admin"]) == ("frank", False)
    assert admin_error(plain.users) == (403, "AccessDenied")
    assert admin_error(AdminClient(server.url, *BOB).add_user, "x") == (403, "AccessDenied")
    boss = AdminClient(server.url, *new_user(admin, "grace", admin=True))
    assert boss.whoami()["admin"] is True
    boss.add_user("made-by-grace")
    assert admin.user("made-by-grace")["source"] == "runtime"
    assert admin_error(AdminClient(server.url, "nobody", "x").whoami)[1] == "InvalidAccessKeyId"


def test_secrets_are_stored_mode_0600_and_never_logged(server: Proc, admin: AdminClient) -> None:
    key, secret = new_user(admin, "heidi")
    signed_client(server.url, key, secret).list_buckets()
    users = server.directory / ".accounts" / "users"
    assert stat.S_IMODE(os.stat(users).st_mode) == 0o700
    for path in users.iterdir():
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600, path
    assert secret in (users / "heidi.json").read_text()
    server.wait_for(f"access_key={key}")  # the access log names the key's id, as S3's does
    assert secret not in server.stderr()


def test_accounts_survive_a_restart(tmp_path: Path) -> None:
    proc = Proc(tmp_path, settings=settings())
    try:
        admin = AdminClient(proc.url, *ADMIN)
        key, secret = new_user(admin, "ivan")
        admin.attach_policy(
            "ivan", "all", doc({"Effect": "Allow", "Action": "s3:*", "Resource": "*"})
        )
        signed_client(proc.url, key, secret).create_bucket(Bucket="ivans")
    finally:
        assert proc.stop() == 0
    proc = Proc(tmp_path, settings=settings())
    try:
        s3 = signed_client(proc.url, key, secret)
        assert [b["Name"] for b in s3.list_buckets()["Buckets"]] == ["ivans"]
        assert AdminClient(proc.url, *ADMIN).policies("ivan") == {
            "all": {
                "Version": "2012-10-17",
                "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}],
            }
        }
    finally:
        proc.stop()


def shoal_admin(
    server: Proc, *args: str, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "SHOAL_"))}
    env |= {
        "AWS_ENDPOINT_URL": server.url,
        "AWS_ACCESS_KEY_ID": ADMIN[0],
        "AWS_SECRET_ACCESS_KEY": ADMIN[1],
    }
    argv = [sys.executable, "-m", "shoal", "admin", *args]
    return subprocess.run(argv, env=env, input=stdin, capture_output=True, text=True, timeout=60)


def test_the_cli_end_to_end(server: Proc, tmp_path: Path) -> None:
    done = shoal_admin(server, "user", "add", "judy")
    assert done.returncode == 0 and "judy" in done.stdout, done.stderr
    made = shoal_admin(server, "--json", "key", "create", "judy")
    key = json.loads(made.stdout)
    s3 = signed_client(server.url, key["access_key"], key["secret_key"])
    s3.create_bucket(Bucket="judys")
    listed = shoal_admin(server, "key", "list", "judy").stdout
    assert key["access_key"] in listed and key["secret_key"] not in listed
    users = json.loads(shoal_admin(server, "--json", "user", "list").stdout)["users"]
    assert "judy" in {u["name"] for u in users}
    policy = tmp_path / "deny.json"
    policy.write_text(doc({"Effect": "Deny", "Action": "s3:ListAllMyBuckets", "Resource": "*"}))
    assert shoal_admin(server, "policy", "attach", "judy", "deny", str(policy)).returncode == 0
    assert shoal_admin(server, "policy", "list", "judy").stdout.split() == ["deny"]
    assert refused(s3.list_buckets) == "AccessDenied"
    assert shoal_admin(server, "policy", "detach", "judy", "deny").returncode == 0
    s3.list_buckets()
    assert shoal_admin(server, "user", "disable", "judy").returncode == 0
    assert refused(s3.list_buckets) == "InvalidAccessKeyId"
    assert shoal_admin(server, "user", "enable", "judy").returncode == 0
    assert shoal_admin(server, "key", "revoke", key["access_key"]).returncode == 0
    assert refused(s3.list_buckets) == "InvalidAccessKeyId"
    assert shoal_admin(server, "user", "remove", "judy").returncode == 0
    missing = shoal_admin(server, "user", "disable", "judy")
    assert missing.returncode == 1 and "NoSuchUser" in missing.stderr
    bad = shoal_admin(server, "policy", "attach", "judy", "p", "-", stdin="{")
    assert bad.returncode == 1
    # Credentials that are not an admin's: refused, exit status 1, nothing on stdout.
    flags = ["--endpoint-url", server.url, "--access-key", BOB[0], "--secret-key", BOB[1]]
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    argv = [sys.executable, "-m", "shoal", "admin", *flags, "user", "list"]
    env_less = subprocess.run(argv, capture_output=True, text=True, timeout=60, env=env)
    assert env_less.returncode == 1 and "AccessDenied" in env_less.stderr
    assert env_less.stdout == ""
    assert key["secret_key"] not in server.stderr()
