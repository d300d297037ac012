"""CORS from the global configuration: preflights and headers on actual requests."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from shoal.app.server import SyncServer

ALLOWED = "http://app.localhost:5173"


@pytest.fixture(scope="module")
def cors_http() -> Iterator[httpx.Client]:
    config = {
        "cors": {
            "enabled": True,
            "allowed_origins": [ALLOWED, "http://*.example.test"],
            "allowed_methods": ["GET", "PUT", "HEAD"],
            "allowed_headers": ["content-type", "x-amz-*"],
            "exposed_headers": ["ETag", "x-amz-request-id"],
            "max_age": 600,
        }
    }
    with SyncServer(config) as server, httpx.Client(base_url=server.endpoint_url) as client:
        assert client.put("/cors-bucket").status_code == 200
        yield client


def preflight(client: httpx.Client, origin: str, method: str, headers: str = "") -> httpx.Response:
    request_headers = {"Origin": origin, "Access-Control-Request-Method": method}
    if headers:
        request_headers["Access-Control-Request-Headers"] = headers
    return client.options("/cors-bucket/key", headers=request_headers)


def test_preflight_allowed(cors_http: httpx.Client) -> None:
    response = preflight(cors_http, ALLOWED, "PUT", "Content-Type, X-Amz-Meta-Color")
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == ALLOWED
    assert "PUT" in response.headers["access-control-allow-methods"]
    assert response.headers["access-control-allow-headers"] == "Content-Type, X-Amz-Meta-Color"
    assert response.headers["access-control-max-age"] == "600"
    assert response.headers["vary"] == "Origin"
    wildcard = preflight(cors_http, "http://shop.example.test", "GET")
    assert wildcard.status_code == 200


@pytest.mark.parametrize(
    ("origin", "method", "headers"),
    [
        ("http://evil.localhost", "GET", ""),  # origin not allowed
        (ALLOWED, "DELETE", ""),  # method not allowed
        (ALLOWED, "PUT", "authorization-extra"),  # header not allowed
        ("http://example.test", "GET", ""),  # the wildcard needs a subdomain
    ],
)
def test_preflight_refused(cors_http: httpx.Client, origin: str, method: str, headers: str) -> None:
    response = preflight(cors_http, origin, method, headers)
    assert response.status_code == 403
    assert "AccessForbidden" in response.text
    assert "access-control-allow-origin" not in response.headers


def test_actual_request_headers(cors_http: httpx.Client) -> None:
    put = cors_http.put("/cors-bucket/key", content=b"x", headers={"Origin": ALLOWED})
    assert put.status_code == 200
    assert put.headers["access-control-allow-origin"] == ALLOWED
    assert put.headers["access-control-expose-headers"] == "ETag, x-amz-request-id"
    assert put.headers["vary"] == "Origin"
    other = cors_http.get("/cors-bucket/key", headers={"Origin": "http://evil.localhost"})
    assert other.status_code == 200  # CORS is for browsers to enforce; S3 still answers
    assert "access-control-allow-origin" not in other.headers
    assert other.headers["vary"] == "Origin"
    plain = cors_http.get("/cors-bucket/key")
    assert "access-control-allow-origin" not in plain.headers


def test_cors_disabled_by_default(http: httpx.Client) -> None:
    response = http.options(
        "/any-bucket/key", headers={"Origin": ALLOWED, "Access-Control-Request-Method": "GET"}
    )
    assert response.status_code == 403 and "CORS is not enabled" in response.text
    assert "access-control-allow-origin" not in http.get("/", headers={"Origin": ALLOWED}).headers


def test_bucket_cors_configuration(s3, http: httpx.Client, bucket: str) -> None:
    from botocore.exceptions import ClientError

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
    s3.put_bucket_cors(Bucket=bucket, CORSConfiguration=rules)
    got = s3.get_bucket_cors(Bucket=bucket)["CORSRules"][0]
    assert got["AllowedOrigins"] == ["http://site.localhost"] and got["MaxAgeSeconds"] == 120
    ok = http.options(
        f"/{bucket}/k",
        headers={
            "Origin": "http://site.localhost",
            "Access-Control-Request-Method": "PUT",
            "Access-Control-Request-Headers": "content-type",
        },
    )
    assert ok.status_code == 200 and ok.headers["access-control-max-age"] == "120"
    bad = http.options(
        f"/{bucket}/k",
        headers={"Origin": "http://site.localhost", "Access-Control-Request-Method": "DELETE"},
    )
    assert bad.status_code == 403
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    actual = http.get(f"/{bucket}/k", headers={"Origin": "http://site.localhost"})
    assert actual.headers["access-control-allow-origin"] == "http://site.localhost"
    assert actual.headers["access-control-expose-headers"] == "ETag"
    with pytest.raises(ClientError) as info:
        s3.put_bucket_cors(
            Bucket=bucket,
            CORSConfiguration={
                "CORSRules": [{"AllowedOrigins": ["*"], "AllowedMethods": ["PATCH"]}]
            },
        )
    assert info.value.response["Error"]["Code"] == "MalformedXML"
    s3.delete_bucket_cors(Bucket=bucket)
    with pytest.raises(ClientError) as info:
        s3.get_bucket_cors(Bucket=bucket)
    assert info.value.response["Error"]["Code"] == "NoSuchCORSConfiguration"
    gone = http.options(
        f"/{bucket}/k",
        headers={"Origin": "http://site.localhost", "Access-Control-Request-Method": "GET"},
    )
    assert gone.status_code == 403
