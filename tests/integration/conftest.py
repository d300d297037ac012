"""Fixtures for integration tests: the real server (from shoal's own pytest plugin),
boto3 clients in both checksum modes, a raw HTTP client for malformed requests."""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import os
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import boto3
import httpx
import pytest
from botocore.config import Config as BotoConfig
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def signed_client(
    endpoint: str, key: str = "k", secret: str = "s", verify: str | bool = True, **config: Any
) -> Any:
    """boto3 for a shoal server: path-style, SigV4 (also for presigning), no retries."""
    return boto3.client(
        "s3",
        verify=verify,
        endpoint_url=endpoint,
        aws_access_key_id=key,
        aws_secret_access_key=secret,
        region_name="us-east-1",
        config=BotoConfig(
            s3={"addressing_style": "path"},
            signature_version="s3v4",
            retries={"max_attempts": 1},
            **config,
        ),
    )


def wait_for(
    what: str,
    check: Callable[[], bool],
    timeout: float = 20.0,
    *,
    interval: float = 0.05,
    ignore: tuple[type[Exception], ...] = (),
) -> None:
    """Poll `check` until it holds (the one deadline loop of the integration tests);
    exceptions in `ignore` count as "not yet" (a node starting or stopping)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if check():
                return
        except ignore:
            pass
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(interval)


def auth_config(*pairs: tuple[str, str]) -> dict[str, Any]:
    """Server settings with auth on and these (access key, secret) pairs."""
    credentials = [{"access_key_id": k, "secret_access_key": s} for k, s in pairs]
    return {"auth": {"enabled": True, "credentials": credentials}}


def spawn_server(
    directory: Path, *flags: str, stderr: int | None = None
) -> tuple[subprocess.Popen[str], str]:
    """`shoal serve` in a child process on a free port: (process, endpoint URL).
    `flags` are extra CLI flags (default: `--log-level error`)."""
    argv = [sys.executable, "-m", "shoal", "serve", "--address", "127.0.0.1", "--port", "0"]
    argv += ["--dir", str(directory), *(flags or ("--log-level", "error"))]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=stderr, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert "listening on" in line, line
    return proc, line.strip().rsplit(" ", 1)[1]


def make_certificate(
    directory: Path, names: tuple[str, ...] = ("localhost", "*.localhost")
) -> tuple[str, str]:
    """A self-signed certificate (the test's own CA) for 127.0.0.1 and DNS `names`."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "shoal test")])
    now = dt.datetime.now(dt.UTC)
    alt = [x509.IPAddress(ipaddress.IPv4Address("127.0.0.1"))]
    alt += [x509.DNSName(n) for n in names]
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.SubjectAlternativeName(alt), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = directory / "cert.pem", directory / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pkcs8 = serialization.PrivateFormat.PKCS8
    plain = serialization.NoEncryption()
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, pkcs8, plain))
    return str(cert_file), str(key_file)


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    return make_certificate(tmp_path_factory.mktemp("tls"))


#: Small chunks so that ordinary test objects span several (1 MiB against 4 MiB in
#: production); 6 drives as 4 data + 2 parity shards.
ERASURE_CHUNK = 256 * 1024


def erasure_config(directory: Path, drives: int = 6, **erasure: Any) -> dict[str, Any]:
    """Server settings for an erasure-coded node on `drives` folders below `directory`."""
    paths = []
    for i in range(drives):
        path = directory / f"drive{i}"
        path.mkdir(parents=True, exist_ok=True)
        paths.append(str(path))
    return {
        "cluster": {
            "enabled": True,
            "drives": {"paths": paths},
            "erasure": {"chunk_size_bytes": ERASURE_CHUNK, **erasure},
        }
    }


@pytest.fixture(
    scope="session",
    params=["http", "https", "http-erasure", "https-erasure"],
)
def shoal_config(
    request: pytest.FixtureRequest,
    tls_files: tuple[str, str],
    tmp_path_factory: pytest.TempPathFactory,
) -> dict:
    """Every integration test runs over plain HTTP and over HTTPS (where boto3 sends
    its checksums as aws-chunked trailers), against the standalone store and against an
    erasure-coded node (6 drives, 4+2)."""
    config: dict[str, Any] = {}
    if request.param.startswith("https"):
        config["server"] = {"tls": {"cert_file": tls_files[0], "key_file": tls_files[1]}}
    if request.param.endswith("erasure"):
        config |= erasure_config(tmp_path_factory.mktemp("drives"))
    return config


@pytest.fixture(scope="session")
def erasure(shoal_config: dict) -> bool:
    """Whether this session's server is the erasure-coded node."""
    return bool(shoal_config.get("cluster"))


@pytest.fixture(scope="session")
def verify(shoal_descriptor: Any, tls_files: tuple[str, str]) -> str | bool:
    return tls_files[0] if shoal_descriptor.use_ssl else True


def make_client(descriptor: Any, verify: str | bool = True, **config: Any) -> Any:
    return signed_client(
        descriptor.endpoint_url, descriptor.access_key, descriptor.access_secret, verify, **config
    )


@pytest.fixture(scope="session")
def s3(shoal_descriptor: Any, verify: str | bool) -> Any:
    """boto3 with its defaults (checksums when supported: aws-chunked trailers)."""
    return make_client(shoal_descriptor, verify)


@pytest.fixture(scope="session")
def s3_required(shoal_descriptor: Any, verify: str | bool) -> Any:
    """boto3 sending checksums only where an operation requires them."""
    return make_client(
        shoal_descriptor,
        verify,
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
    )


@pytest.fixture(params=["when_supported", "when_required"])
def any_s3(request: pytest.FixtureRequest, s3: Any, s3_required: Any) -> Any:
    return s3 if request.param == "when_supported" else s3_required


@pytest.fixture(scope="session")
def shoal_s3_client(s3: Any) -> Any:
    """The plugin's fixtures (shoal_bucket) use the TLS-aware client."""
    return s3


@pytest.fixture
def bucket(shoal_bucket: str) -> str:
    """A fresh bucket, emptied and deleted after the test (the plugin's own fixture)."""
    return shoal_bucket


@pytest.fixture(scope="session")
def endpoint(shoal_descriptor: Any) -> str:
    return shoal_descriptor.endpoint_url


def ssl_context(verify: str | bool) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=verify if isinstance(verify, str) else None)


@pytest.fixture
def http(endpoint: str, verify: str | bool) -> Iterator[httpx.Client]:
    """Raw HTTP for requests no SDK would send."""
    with httpx.Client(base_url=endpoint, timeout=30, verify=ssl_context(verify)) as client:
        yield client


@pytest.fixture
def raw(endpoint: str, verify: str | bool) -> Callable[[bytes], str]:
    """Send bytes on a fresh connection (TLS where the server uses it) and return all
    the server answered before closing, for framing no HTTP client would produce."""
    url = urlsplit(endpoint)

    def exchange(payload: bytes, *, hang_up: bool = False) -> str:
        sock: socket.socket = socket.create_connection((url.hostname, url.port), timeout=10)
        if url.scheme == "https":
            sock = ssl_context(verify).wrap_socket(sock, server_hostname=url.hostname)
        with sock:
            sock.sendall(payload.replace(b"{host}", url.netloc.encode()))
            if hang_up:
                return ""
            received = b""
            while chunk := sock.recv(65536):
                received += chunk
        return received.decode("latin-1")

    return exchange


def multipart_put(s3: Any, bucket: str, key: str, pieces: list[bytes], **create: Any) -> None:
    """Upload `pieces` as the parts of one multipart upload and complete it."""
    upload = s3.create_multipart_upload(Bucket=bucket, Key=key, **create)["UploadId"]
    parts = []
    for number, piece in enumerate(pieces, start=1):
        etag = s3.upload_part(
            Bucket=bucket, Key=key, UploadId=upload, PartNumber=number, Body=piece
        )["ETag"]
        parts.append({"PartNumber": number, "ETag": etag})
    s3.complete_multipart_upload(
        Bucket=bucket, Key=key, UploadId=upload, MultipartUpload={"Parts": parts}
    )


def error_code(exc: Any) -> str:
    return exc.response["Error"]["Code"]


def error_status(exc: Any) -> int:
    status: int = exc.response["ResponseMetadata"]["HTTPStatusCode"]
    return status


def client_error(call: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """The botocore ClientError that `call(*args, **kwargs)` must raise."""
    from botocore.exceptions import ClientError

    with pytest.raises(ClientError) as info:
        call(*args, **kwargs)
    return info.value


#: The aws CLI installed with the test extras (beside this interpreter).
AWS = Path(sys.executable).parent / "aws"


class AwsCli:
    """The aws CLI at its defaults against one endpoint, with nothing of the user's own
    configuration: credentials from the environment, one attempt (a refused request
    fails the test instead of being retried), no pager."""

    def __init__(
        self,
        home: Path,
        endpoint: str,
        key: str,
        secret: str,
        *,
        region: str = "us-east-1",
        ca_bundle: str | bool = True,
        config_file: Path | None = None,
    ) -> None:
        if not AWS.exists():
            pytest.skip(f"aws CLI not found at {AWS}")
        self.endpoint = endpoint
        self.env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(home),
            "LC_ALL": "C.UTF-8",
            "PYTHONUTF8": "1",
            "AWS_CONFIG_FILE": str(config_file or home / "none"),
            "AWS_SHARED_CREDENTIALS_FILE": str(home / "none"),
            "AWS_ACCESS_KEY_ID": key,
            "AWS_SECRET_ACCESS_KEY": secret,
            "AWS_DEFAULT_REGION": region,
            "AWS_MAX_ATTEMPTS": "1",
            "AWS_PAGER": "",
        }
        if isinstance(ca_bundle, str):
            self.env["AWS_CA_BUNDLE"] = ca_bundle

    @classmethod
    def of(
        cls,
        home: Path,
        descriptor: Any,
        ca_bundle: str | bool = True,
        config_file: Path | None = None,
    ) -> AwsCli:
        """For a server started by the shoal pytest plugin (its storage descriptor)."""
        return cls(
            home,
            descriptor.endpoint_url,
            descriptor.access_key,
            descriptor.access_secret,
            region=descriptor.region,
            ca_bundle=ca_bundle,
            config_file=config_file,
        )

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """`aws <args> --endpoint-url ...`; with `check`, it must succeed."""
        cmd = [str(AWS), *args, "--endpoint-url", self.endpoint]
        done = subprocess.run(cmd, env=self.env, capture_output=True, text=True, timeout=120)
        if check:
            assert done.returncode == 0, f"{args}: {done.returncode}\n{done.stderr}"
        return done

    def api(self, *args: str) -> dict[str, Any]:
        """`aws s3api <args>`, which must succeed, its JSON answer ({} for none)."""
        done = self.run("s3api", *args, "--output", "json")
        return json.loads(done.stdout) if done.stdout.strip() else {}
