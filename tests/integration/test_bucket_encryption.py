"""Bucket default encryption (Put/Get/DeleteBucketEncryption) through boto3, raw requests
and the aws CLI against a standalone server and an erasure node alike, and the bucket
policy condition keys of server-side encryption (the classic policy that denies
unencrypted uploads)."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from botocore.exceptions import ClientError

from shoal.app.server import SyncServer
from shoal.auth.signer import signed_headers
from tests.integration.conftest import (
    AwsCli,
    auth_config,
    client_error,
    erasure_config,
    error_code,
    error_status,
    signed_client,
    wait_for,
)
from tests.integration.test_cluster import make_nodes, running
from tests.integration.test_sse import holds, pattern_body, stored_files

KEY, SECRET = "AKIDENCRYPTION", "encryption-secret"
NS = 'xmlns="http://s3.amazonaws.com/doc/2006-03-01/"'


def _secret() -> str:
    return base64.b64encode(os.urandom(32)).decode()


@pytest.fixture(scope="module", params=["standalone", "erasure"])
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SyncServer]:
    # Auth on: bucket policies apply only to signed-in callers.
    config = auth_config((KEY, SECRET))
    config["kms"] = {
        "keys": [{"id": name, "secret": _secret()} for name in ("key-1", "key-2")],
        "allow_sse_c_over_http": True,  # the SSE-C condition key's test, on loopback
    }
    if request.param == "erasure":
        config.update(erasure_config(tmp_path_factory.mktemp("encryption-erasure")))
    with SyncServer(config) as running:
        yield running


@pytest.fixture(scope="module")
def s3(server: SyncServer) -> Any:
    d = server.get_storage_descriptor()
    return signed_client(d.endpoint_url, d.access_key, d.access_secret)


@pytest.fixture
def bucket(s3: Any) -> str:
    name = f"enc-{uuid.uuid4().hex[:16]}"
    s3.create_bucket(Bucket=name)
    return name


def _raw_put(server: SyncServer, bucket: str, body: bytes, *, md5: bool = True) -> httpx.Response:
    """PutBucketEncryption with a body boto3 would not send."""
    d = server.get_storage_descriptor()
    host = d.endpoint_url.split("://", 1)[1]
    extra = {"content-md5": base64.b64encode(hashlib.md5(body).digest()).decode()} if md5 else {}
    headers = signed_headers(
        "PUT",
        f"/{bucket}",
        host,
        d.access_key,
        d.access_secret,
        d.region,
        query="encryption=",
        payload_hash=hashlib.sha256(body).hexdigest(),
        extra=extra,
    )
    return httpx.put(f"{d.endpoint_url}/{bucket}?encryption=", content=body, headers=headers)


def _rules(s3: Any, bucket: str) -> list[dict[str, Any]]:
    rules: list[dict[str, Any]] = s3.get_bucket_encryption(Bucket=bucket)[
        "ServerSideEncryptionConfiguration"
    ]["Rules"]
    return rules


def test_without_a_configuration_get_is_404(s3: Any, bucket: str) -> None:
    error = client_error(s3.get_bucket_encryption, Bucket=bucket)
    assert error_code(error) == "ServerSideEncryptionConfigurationNotFoundError"
    assert error_status(error) == 404
    assert "server side encryption configuration was not found" in str(error)


def test_sse_s3_default_round_trip_and_delete(s3: Any, bucket: str) -> None:
    config = {"Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]}
    put = s3.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration=config)
    assert put["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert _rules(s3, bucket) == [
        {
            "ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"},
            "BucketKeyEnabled": False,
        }
    ]
    deleted = s3.delete_bucket_encryption(Bucket=bucket)
    assert deleted["ResponseMetadata"]["HTTPStatusCode"] == 204
    error = client_error(s3.get_bucket_encryption, Bucket=bucket)
    assert error_code(error) == "ServerSideEncryptionConfigurationNotFoundError"
    # Deleting what is not there is 204 again, as S3.
    again = s3.delete_bucket_encryption(Bucket=bucket)
    assert again["ResponseMetadata"]["HTTPStatusCode"] == 204


def test_sse_kms_default_with_key_and_bucket_key(s3: Any, bucket: str) -> None:
    arn = "arn:aws:kms:us-east-1:123456789012:key/key-1"
    rule = {
        "ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": arn},
        "BucketKeyEnabled": True,
    }
    s3.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration={"Rules": [rule]})
    assert _rules(s3, bucket) == [rule]
    # A second PUT replaces the first.
    rule = {"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms"}}
    s3.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration={"Rules": [rule]})
    assert _rules(s3, bucket) == [{**rule, "BucketKeyEnabled": False}]


def test_kms_key_with_aes256_is_invalid_argument(s3: Any, bucket: str) -> None:
    default = {"SSEAlgorithm": "AES256", "KMSMasterKeyID": "key-1"}
    config = {"Rules": [{"ApplyServerSideEncryptionByDefault": default}]}
    error = client_error(
        s3.put_bucket_encryption, Bucket=bucket, ServerSideEncryptionConfiguration=config
    )
    assert error_code(error) == "InvalidArgument" and error_status(error) == 400
    assert error.response["Error"]["ArgumentName"] == "ApplyServerSideEncryptionByDefault"
    assert error_code(client_error(s3.get_bucket_encryption, Bucket=bucket)).endswith(
        "NotFoundError"
    )


@pytest.mark.parametrize(
    "rules",
    [
        [],
        [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}] * 2,
        [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES512"}}],
    ],
    ids=["no-rule", "two-rules", "bad-algorithm"],
)
def test_malformed_configurations(s3: Any, bucket: str, rules: list[Any]) -> None:
    config = {"Rules": rules}
    error = client_error(
        s3.put_bucket_encryption, Bucket=bucket, ServerSideEncryptionConfiguration=config
    )
    assert error_code(error) == "MalformedXML" and error_status(error) == 400


def test_raw_bodies(server: SyncServer, s3: Any, bucket: str) -> None:
    good = (
        f"<ServerSideEncryptionConfiguration {NS}><Rule><ApplyServerSideEncryptionByDefault>"
        "<SSEAlgorithm>AES256</SSEAlgorithm></ApplyServerSideEncryptionByDefault>"
        "</Rule></ServerSideEncryptionConfiguration>"
    ).encode()
    # S3 insists on an integrity header for this call (boto3 sends a checksum).
    missing = _raw_put(server, bucket, good, md5=False)
    assert missing.status_code == 400 and "<Code>InvalidRequest</Code>" in missing.text
    entity = _raw_put(server, bucket, b"<!DOCTYPE x [<!ENTITY a 'b'>]><x>&a;</x>")
    assert entity.status_code == 400 and "<Code>MalformedXML</Code>" in entity.text
    dsse = _raw_put(server, bucket, good.replace(b"AES256", b"aws:kms:dsse"))
    assert dsse.status_code == 501 and "<Code>NotImplemented</Code>" in dsse.text
    assert error_code(client_error(s3.get_bucket_encryption, Bucket=bucket)).endswith(
        "NotFoundError"
    )
    assert _raw_put(server, bucket, good).status_code == 200
    assert _rules(s3, bucket)[0]["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"


@pytest.mark.parametrize(
    "call",
    ["put_bucket_encryption", "get_bucket_encryption", "delete_bucket_encryption"],
)
def test_missing_bucket(s3: Any, call: str) -> None:
    kwargs: dict[str, Any] = {"Bucket": f"enc-missing-{uuid.uuid4().hex[:8]}"}
    if call == "put_bucket_encryption":
        kwargs["ServerSideEncryptionConfiguration"] = {"Rules": []}  # existence comes first
    error = client_error(getattr(s3, call), **kwargs)
    assert error_code(error) == "NoSuchBucket" and error_status(error) == 404


def test_the_iam_actions(s3: Any, bucket: str) -> None:
    """Get needs s3:GetEncryptionConfiguration; Put and Delete s3:PutEncryptionConfiguration."""
    config = {"Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]}
    s3.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration=config)
    arn = f"arn:aws:s3:::{bucket}"
    deny = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Deny", "Principal": "*", "Action": action, "Resource": arn}
            for action in ("s3:PutEncryptionConfiguration",)
        ],
    }
    s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps(deny))
    assert _rules(s3, bucket)[0]["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    put = client_error(
        s3.put_bucket_encryption, Bucket=bucket, ServerSideEncryptionConfiguration=config
    )
    assert error_code(put) == "AccessDenied"
    assert error_code(client_error(s3.delete_bucket_encryption, Bucket=bucket)) == "AccessDenied"
    deny["Statement"][0]["Action"] = "s3:GetEncryptionConfiguration"
    s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps(deny))
    assert error_code(client_error(s3.get_bucket_encryption, Bucket=bucket)) == "AccessDenied"
    assert s3.delete_bucket_encryption(Bucket=bucket)["ResponseMetadata"]["HTTPStatusCode"] == 204
    s3.delete_bucket_policy(Bucket=bucket)
    assert error_code(client_error(s3.get_bucket_encryption, Bucket=bucket)).endswith(
        "NotFoundError"
    )


def test_aws_cli_put_bucket_encryption(
    server: SyncServer, tmp_path: Path, s3: Any, bucket: str
) -> None:
    api = AwsCli.of(tmp_path, server.get_storage_descriptor()).api

    config = {
        "Rules": [
            {
                "ApplyServerSideEncryptionByDefault": {
                    "SSEAlgorithm": "aws:kms",
                    "KMSMasterKeyID": "key-1",
                },
                "BucketKeyEnabled": True,
            }
        ]
    }
    api(
        "put-bucket-encryption",
        "--bucket",
        bucket,
        "--server-side-encryption-configuration",
        json.dumps(config),
    )
    assert api("get-bucket-encryption", "--bucket", bucket) == {
        "ServerSideEncryptionConfiguration": config
    }
    assert _rules(s3, bucket) == config["Rules"]
    api("delete-bucket-encryption", "--bucket", bucket)
    assert error_code(client_error(s3.get_bucket_encryption, Bucket=bucket)).endswith(
        "NotFoundError"
    )


# ----------------------------------------------------------------- policy conditions


def _policy(bucket: str, *conditions: dict[str, Any]) -> str:
    statements = [
        {
            "Effect": "Deny",
            "Principal": "*",
            "Action": "s3:PutObject",
            "Resource": f"arn:aws:s3:::{bucket}/*",
            "Condition": condition,
        }
        for condition in conditions
    ]
    return json.dumps({"Version": "2012-10-17", "Statement": statements})


REQUIRE_SSE = {"Null": {"s3:x-amz-server-side-encryption": "true"}}
REQUIRE_AES256 = {"StringNotEquals": {"s3:x-amz-server-side-encryption": "AES256"}}


def test_a_policy_denying_unencrypted_uploads(s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="before", Body=b"plain")
    s3.put_bucket_policy(Bucket=bucket, Policy=_policy(bucket, REQUIRE_SSE, REQUIRE_AES256))
    refused = [
        lambda: s3.put_object(Bucket=bucket, Key="k", Body=b"plain"),
        lambda: s3.put_object(Bucket=bucket, Key="k", Body=b"x", ServerSideEncryption="aws:kms"),
        lambda: s3.copy_object(Bucket=bucket, Key="c", CopySource=f"{bucket}/before"),
        lambda: s3.create_multipart_upload(Bucket=bucket, Key="m"),
    ]
    for call in refused:
        with pytest.raises(ClientError) as info:
            call()
        assert error_code(info.value) == "AccessDenied"
    # An upload that asks for SSE-S3 passes the policy.
    s3.put_object(Bucket=bucket, Key="sse", Body=b"secret", ServerSideEncryption="AES256")
    assert s3.get_object(Bucket=bucket, Key="sse")["Body"].read() == b"secret"
    # The header decides, not the bucket default (as S3).
    config = {"Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]}
    s3.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration=config)
    error = client_error(s3.put_object, Bucket=bucket, Key="k", Body=b"plain")
    assert error_code(error) == "AccessDenied"
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]] == ["before", "sse"]


def test_the_parts_of_an_unencrypted_upload_are_refused(s3: Any, bucket: str) -> None:
    """UploadPart and Complete carry the upload's own encryption: none here."""
    upload = s3.create_multipart_upload(Bucket=bucket, Key="m")["UploadId"]
    s3.put_bucket_policy(Bucket=bucket, Policy=_policy(bucket, REQUIRE_SSE))
    error = client_error(
        s3.upload_part, Bucket=bucket, Key="m", UploadId=upload, PartNumber=1, Body=b"x"
    )
    assert error_code(error) == "AccessDenied"
    s3.delete_bucket_policy(Bucket=bucket)
    etag = s3.upload_part(Bucket=bucket, Key="m", UploadId=upload, PartNumber=1, Body=b"x")["ETag"]
    s3.put_bucket_policy(Bucket=bucket, Policy=_policy(bucket, REQUIRE_SSE))
    parts = {"Parts": [{"PartNumber": 1, "ETag": etag}]}
    error = client_error(
        s3.complete_multipart_upload,
        Bucket=bucket,
        Key="m",
        UploadId=upload,
        MultipartUpload=parts,
    )
    assert error_code(error) == "AccessDenied"
    # Aborting is s3:AbortMultipartUpload, which the policy leaves alone.
    s3.abort_multipart_upload(Bucket=bucket, Key="m", UploadId=upload)


def test_the_customer_algorithm_condition(s3: Any, bucket: str) -> None:
    """A policy can refuse SSE-C uploads (the customer-algorithm key is present)."""
    no_sse_c = {"Null": {"s3:x-amz-server-side-encryption-customer-algorithm": "false"}}
    s3.put_bucket_policy(Bucket=bucket, Policy=_policy(bucket, no_sse_c))
    customer = {"SSECustomerAlgorithm": "AES256", "SSECustomerKey": os.urandom(32)}
    error = client_error(s3.put_object, Bucket=bucket, Key="c", Body=b"x", **customer)
    assert error_code(error) == "AccessDenied"
    error = client_error(s3.create_multipart_upload, Bucket=bucket, Key="c", **customer)
    assert error_code(error) == "AccessDenied"
    s3.put_object(Bucket=bucket, Key="s", Body=b"x", ServerSideEncryption="AES256")
    assert s3.get_object(Bucket=bucket, Key="s")["Body"].read() == b"x"


def test_the_kms_key_id_condition(s3: Any, bucket: str) -> None:
    key_id = "s3:x-amz-server-side-encryption-aws-kms-key-id"
    only_key_1 = {"StringNotEquals": {key_id: "key-1"}, "Null": {key_id: "false"}}
    s3.put_bucket_policy(Bucket=bucket, Policy=_policy(bucket, only_key_1))
    error = client_error(
        s3.put_object,
        Bucket=bucket,
        Key="k",
        Body=b"x",
        ServerSideEncryption="aws:kms",
        SSEKMSKeyId="key-2",
    )
    assert error_code(error) == "AccessDenied"
    # No key id at all: the Null test lets it through.
    s3.put_object(Bucket=bucket, Key="plain", Body=b"x")
    assert s3.get_object(Bucket=bucket, Key="plain")["Body"].read() == b"x"


def test_the_parts_of_an_encrypted_upload_pass(s3: Any, bucket: str) -> None:
    """An upload the policy let begin (it asked for SSE-S3) completes under it."""
    s3.put_bucket_policy(Bucket=bucket, Policy=_policy(bucket, REQUIRE_SSE, REQUIRE_AES256))
    upload = s3.create_multipart_upload(Bucket=bucket, Key="m", ServerSideEncryption="AES256")
    upload_id = upload["UploadId"]
    etag = s3.upload_part(
        Bucket=bucket, Key="m", UploadId=upload_id, PartNumber=1, Body=b"part one"
    )["ETag"]
    done = s3.complete_multipart_upload(
        Bucket=bucket,
        Key="m",
        UploadId=upload_id,
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": etag}]},
    )
    assert done["ServerSideEncryption"] == "AES256"
    assert s3.get_object(Bucket=bucket, Key="m")["Body"].read() == b"part one"


def test_a_post_form_carries_its_encryption_fields(
    server: SyncServer, s3: Any, bucket: str
) -> None:
    s3.put_bucket_policy(Bucket=bucket, Policy=_policy(bucket, REQUIRE_SSE))

    def post(key: str, fields: dict[str, str]) -> httpx.Response:
        conditions: list[Any] = [{k: v} for k, v in fields.items()]
        form = s3.generate_presigned_post(bucket, key, Fields=fields, Conditions=conditions)
        files = {"file": ("a.txt", b"form body", "text/plain")}
        return httpx.post(form["url"], data=form["fields"], files=files)

    refused = post("plain", {})
    assert refused.status_code == 403 and "<Code>AccessDenied</Code>" in refused.text
    sealed = post("sealed", {"x-amz-server-side-encryption": "AES256"})
    assert sealed.status_code == 204, sealed.text
    assert sealed.headers["x-amz-server-side-encryption"] == "AES256"
    assert s3.get_object(Bucket=bucket, Key="sealed")["Body"].read() == b"form body"


# ------------------------------------------------------- the default applied to writes


def test_plain_writes_get_the_default(server: SyncServer, s3: Any, bucket: str) -> None:
    clear, sealed = pattern_body(300_000, b"CLEAR"), pattern_body(100_000, b"DEFAULT")
    s3.put_object(Bucket=bucket, Key="before", Body=clear)
    rule = {
        "ApplyServerSideEncryptionByDefault": {
            "SSEAlgorithm": "aws:kms",
            "KMSMasterKeyID": "key-2",
        },
        "BucketKeyEnabled": True,
    }
    s3.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration={"Rules": [rule]})
    put = s3.put_object(Bucket=bucket, Key="after", Body=sealed)
    assert put["ServerSideEncryption"] == "aws:kms" and put["BucketKeyEnabled"] is True
    assert put["SSEKMSKeyId"].endswith("key-2")
    head = s3.head_object(Bucket=bucket, Key="after")
    assert head["ServerSideEncryption"] == "aws:kms" and head["SSEKMSKeyId"].endswith("key-2")
    assert s3.get_object(Bucket=bucket, Key="after")["Body"].read() == sealed
    # On disk (every drive, in erasure mode): the plain object is found, the other not.
    files = stored_files(server)
    assert holds(files, b"<<PLAINTEXT-CLEAR>>")
    assert not holds(files, b"<<PLAINTEXT-DEFAULT>>")
    # Headers on the request win over the default.
    own = s3.put_object(Bucket=bucket, Key="own", Body=b"x", ServerSideEncryption="AES256")
    assert own["ServerSideEncryption"] == "AES256" and "SSEKMSKeyId" not in own
    # Objects written before the default stay as they were.
    assert "ServerSideEncryption" not in s3.head_object(Bucket=bucket, Key="before")
    s3.delete_bucket_encryption(Bucket=bucket)
    assert "ServerSideEncryption" not in s3.put_object(Bucket=bucket, Key="later", Body=b"x")


def test_copies_and_multipart_uploads_get_the_default(s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="source", Body=b"copy me")
    config = {"Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]}
    s3.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration=config)
    copied = s3.copy_object(Bucket=bucket, Key="copy", CopySource=f"{bucket}/source")
    assert copied["ServerSideEncryption"] == "AES256"
    assert s3.head_object(Bucket=bucket, Key="copy")["ServerSideEncryption"] == "AES256"
    assert s3.get_object(Bucket=bucket, Key="copy")["Body"].read() == b"copy me"
    upload = s3.create_multipart_upload(Bucket=bucket, Key="multi")
    assert upload["ServerSideEncryption"] == "AES256"
    part = s3.upload_part(
        Bucket=bucket, Key="multi", UploadId=upload["UploadId"], PartNumber=1, Body=b"one part"
    )
    assert part["ServerSideEncryption"] == "AES256"
    s3.complete_multipart_upload(
        Bucket=bucket,
        Key="multi",
        UploadId=upload["UploadId"],
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]},
    )
    assert s3.head_object(Bucket=bucket, Key="multi")["ServerSideEncryption"] == "AES256"
    assert s3.get_object(Bucket=bucket, Key="multi")["Body"].read() == b"one part"


def test_a_bucket_made_again_starts_without_a_default(s3: Any, bucket: str) -> None:
    """Deleting the bucket drops its default at once, cache and all."""
    config = {"Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]}
    s3.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration=config)
    assert s3.put_object(Bucket=bucket, Key="k", Body=b"x")["ServerSideEncryption"] == "AES256"
    s3.delete_object(Bucket=bucket, Key="k")
    s3.delete_bucket(Bucket=bucket)
    s3.create_bucket(Bucket=bucket)
    assert "ServerSideEncryption" not in s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    assert error_code(client_error(s3.get_bucket_encryption, Bucket=bucket)).endswith(
        "NotFoundError"
    )


def test_a_default_naming_an_unknown_key_fails_the_writes(s3: Any, bucket: str) -> None:
    """S3 does not check KMSMasterKeyID at PUT; the writes that use it are refused."""
    default = {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": "no-such-key"}
    config = {"Rules": [{"ApplyServerSideEncryptionByDefault": default}]}
    s3.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration=config)
    error = client_error(s3.put_object, Bucket=bucket, Key="k", Body=b"x")
    assert error_code(error) == "KMS.NotFoundException" and error_status(error) == 400
    assert "Contents" not in s3.list_objects_v2(Bucket=bucket)


def test_a_server_without_keys_refuses_a_default(tmp_path: Path) -> None:
    with SyncServer(auth_config((KEY, SECRET))) as server:
        s3 = signed_client(server.endpoint_url, KEY, SECRET)
        s3.create_bucket(Bucket="nokeys")
        config = {"Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]}
        error = client_error(
            s3.put_bucket_encryption, Bucket="nokeys", ServerSideEncryptionConfiguration=config
        )
        assert error_code(error) == "InvalidRequest" and "kms.keys" in str(error)
        assert error_code(client_error(s3.get_bucket_encryption, Bucket="nokeys")).endswith(
            "NotFoundError"
        )
        s3.put_object(Bucket="nokeys", Key="k", Body=b"x")
        assert s3.get_object(Bucket="nokeys", Key="k")["Body"].read() == b"x"


@pytest.mark.slow
def test_in_a_cluster(tmp_path: Path) -> None:
    """A default set through one node is every node's: read back through another, and a
    plain write through a third is sealed (no drive of any node holds its plaintext)."""
    nodes = make_nodes(tmp_path, 3, 2)
    keys = ", ".join(f'{{ id = "key-{i}", secret = "{_secret()}" }}' for i in (1, 2))
    for i in range(3):
        config = tmp_path / f"node{i}" / "shoal.toml"
        config.write_text(config.read_text() + f"\n[kms]\nkeys = [{keys}]\n")
    with running(nodes) as (a, b, c):
        a.s3().create_bucket(Bucket="defaults")
        rule = {"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms"}}
        a.s3().put_bucket_encryption(
            Bucket="defaults", ServerSideEncryptionConfiguration={"Rules": [rule]}
        )
        got = b.s3().get_bucket_encryption(Bucket="defaults")
        assert got["ServerSideEncryptionConfiguration"]["Rules"] == [
            {**rule, "BucketKeyEnabled": False}
        ]
        body = pattern_body(300_000, b"CLUSTER-DEFAULT")

        def sealed_through_c() -> bool:
            # Another node's cached "no default" lasts at most a second.
            put = c.s3().put_object(Bucket="defaults", Key="probe", Body=b"probe")
            return put.get("ServerSideEncryption") == "aws:kms"

        wait_for("node c applies the default", sealed_through_c)
        put = c.s3().put_object(Bucket="defaults", Key="k", Body=body)
        assert put["ServerSideEncryption"] == "aws:kms"
        assert b.s3().get_object(Bucket="defaults", Key="k")["Body"].read() == body
        files = [p for p in tmp_path.rglob("*") if p.is_file()]
        assert not holds(files, b"<<PLAINTEXT-CLUSTER-DEFAULT>>")
