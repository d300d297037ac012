"""POST Object: browser-style form uploads authorized by a signed POST policy."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from shoal.app.server import SyncServer
from tests.integration.conftest import auth_config, signed_client

KEY, SECRET = "AKIDPOSTFORM", "post-form-secret"


@pytest.fixture(scope="module")
def s3() -> Iterator[Any]:
    with SyncServer(auth_config((KEY, SECRET))) as server:
        client = signed_client(server.endpoint_url, KEY, SECRET)
        client.create_bucket(Bucket="forms")
        yield client


def presigned(s3: Any, key: str = "uploads/${filename}", **extra: Any) -> dict[str, Any]:
    conditions = [
        ["starts-with", "$key", "uploads/"],
        ["content-length-range", 1, 1000],
        ["starts-with", "$Content-Type", "text/"],
        *extra.pop("conditions", []),
    ]
    fields = {"Content-Type": "text/plain", **extra.pop("fields", {})}
    return s3.generate_presigned_post(
        "forms", key, Fields=fields, Conditions=conditions, ExpiresIn=extra.pop("expires", 60)
    )


def post(
    form: dict[str, Any], content: bytes = b"hello form", filename: str = "a.txt", **override: str
) -> httpx.Response:
    fields = {**form["fields"], **override}
    return httpx.post(form["url"], data=fields, files={"file": (filename, content, "text/plain")})


def test_upload_within_the_policy(s3: Any) -> None:
    response = post(presigned(s3))
    assert response.status_code == 204, response.text
    got = s3.get_object(Bucket="forms", Key="uploads/a.txt")
    assert got["Body"].read() == b"hello form"
    assert got["ContentType"] == "text/plain"
    assert response.headers["etag"] == got["ETag"]


def test_success_action_status_and_redirect(s3: Any) -> None:
    form = presigned(
        s3,
        "uploads/created.txt",
        fields={"success_action_status": "201"},
        conditions=[{"success_action_status": "201"}],
    )
    response = post(form)
    assert response.status_code == 201 and "<Key>uploads/created.txt</Key>" in response.text
    form = presigned(
        s3,
        "uploads/redirected.txt",
        fields={"success_action_redirect": "http://127.0.0.1:1/done"},
        conditions=[{"success_action_redirect": "http://127.0.0.1:1/done"}],
    )
    response = post(form)
    assert response.status_code == 303
    assert response.headers["location"].startswith("http://127.0.0.1:1/done?bucket=forms&key=")


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"key": "elsewhere/a.txt"}, "AccessDenied"),  # outside starts-with
        ({"Content-Type": "image/png"}, "AccessDenied"),
        ({"x-amz-meta-extra": "not in the policy"}, "AccessDenied"),
        ({"x-amz-signature": "0" * 64}, "SignatureDoesNotMatch"),
    ],
)
def test_refused_outside_the_policy(s3: Any, change: dict[str, str], code: str) -> None:
    response = post(presigned(s3, "uploads/refused.txt"), **change)
    assert response.status_code in (400, 403) and f"<Code>{code}</Code>" in response.text
    assert "Contents" not in s3.list_objects_v2(Bucket="forms", Prefix="elsewhere/")
    assert "Contents" not in s3.list_objects_v2(Bucket="forms", Prefix="uploads/refused")


def test_too_large_and_expired(s3: Any) -> None:
    response = post(presigned(s3, "uploads/big.txt"), content=b"x" * 2000)
    assert response.status_code == 400 and "EntityTooLarge" in response.text
    form = presigned(s3, "uploads/late.txt", expires=-60)  # expired a minute ago
    response = post(form)
    assert response.status_code == 403 and "Policy expired" in response.text
    assert "Contents" not in s3.list_objects_v2(Bucket="forms", Prefix="uploads/big")
    assert "Contents" not in s3.list_objects_v2(Bucket="forms", Prefix="uploads/late")


def test_wrong_secret_and_no_policy(s3: Any) -> None:
    forger = signed_client(s3.meta.endpoint_url, KEY, "not-the-secret")
    response = post(presigned(forger, "uploads/forged.txt"))
    assert response.status_code == 403 and "SignatureDoesNotMatch" in response.text
    anonymous = httpx.post(
        f"{s3.meta.endpoint_url}/forms",
        data={"key": "uploads/anon.txt"},
        files={"file": ("a.txt", b"x", "text/plain")},
    )
    assert anonymous.status_code == 403 and "AccessDenied" in anonymous.text
