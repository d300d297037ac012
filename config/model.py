# ruff: noqa: RUF009  (`setting()` returns a dataclasses.field, evaluated once per class)
"""The configuration schema: frozen dataclasses with the reference product's sections,
fields and defaults, in snake_case.

Each field carries a `Rule` in its metadata (what values are allowed, how to say so, a
one-line doc). The loader applies and checks those rules; the docs generator turns them
into the README table and the example TOML, so schema, validation and docs never drift.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import ipaddress
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

GiB = 1024**3

LOG_LEVELS = ("error", "warn", "info", "debug")
LOG_FORMATS = ("text", "json")
HTTP_METHODS = ("GET", "HEAD", "PUT", "POST", "DELETE", "OPTIONS", "PATCH")

#: pyeclib's Reed-Solomon backends handle at most this many shards per stripe.
MAX_TOTAL_SHARDS = 32


@dataclass(frozen=True)
class Rule:
    """What a field accepts: `expect` is the phrase used in error messages and docs;
    `check` returns the normalised value or raises ValueError (optionally with a more
    specific message)."""

    expect: str
    check: Callable[[Any], Any] | None = None
    doc: str = ""
    #: A secret: error messages never show the value given.
    secret: bool = False


def setting(
    default: Any = dataclasses.MISSING,
    *,
    expect: str = "",
    check: Callable[[Any], Any] | None = None,
    doc: str = "",
    factory: Callable[[], Any] | None = None,
    secret: bool = False,
) -> Any:
    """A dataclass field carrying its validation rule and documentation."""
    meta = {"rule": Rule(expect, check, doc, secret)}
    if factory is not None:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


# ---------------------------------------------------------------- checks


def int_range(lo: int, hi: int | None = None) -> Callable[[int], int]:
    def check(value: int) -> int:
        if value < lo or (hi is not None and value > hi):
            raise ValueError
        return value

    return check


def non_empty(value: str) -> str:
    if not value.strip():
        raise ValueError
    return value


def optional_non_empty(value: str | None) -> str | None:
    if value is not None and not value.strip():
        raise ValueError
    return value


def one_of(*choices: str, aliases: Mapping[str, str] | None = None) -> Callable[[str], str]:
    def check(value: str) -> str:
        v = value.strip().lower()
        v = (aliases or {}).get(v, v)
        if v not in choices:
            raise ValueError
        return v

    return check


_HOST_RE = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*$")


def base_domain(value: str | None) -> str | None:
    """Virtual-hosted-style requests name `bucket.<base_domain>` in Host; a leading dot
    or trailing dot is tolerated and dropped, case is folded."""
    if value is None:
        return None
    v = value.strip().strip(".").lower()
    if not _HOST_RE.match(v):
        raise ValueError
    return v


def methods(value: list[str]) -> list[str]:
    out = []
    for m in value:
        u = m.strip().upper()
        if u != "*" and u not in HTTP_METHODS:
            raise ValueError(f"unknown HTTP method {m!r}")
        out.append(u)
    return out


def unique_non_empty(value: list[str]) -> list[str]:
    if any(not v.strip() for v in value):
        raise ValueError("empty entry")
    if len(set(value)) != len(value):
        raise ValueError("duplicate entry")
    return value


_PORT_RE = re.compile(r"[0-9]{1,5}")


def host_ports(value: list[str]) -> list[str]:
    for entry in value:
        host, sep, port = entry.rpartition(":")
        host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
        ok = bool(sep and host and _PORT_RE.fullmatch(port) and 1 <= int(port) <= 65535)
        if ok and ":" in host:
            try:
                ipaddress.IPv6Address(host)
            except ValueError:
                ok = False
        if not ok:
            raise ValueError(f"{entry!r} is not host:port")
    return value


#: A kms key id: shown in headers and ARNs, so a conservative alphabet.
_KEY_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,255}")

#: Bytes in a kms key (AES-256).
KMS_KEY_SIZE = 32


def kms_key_id(value: str) -> str:
    if not _KEY_ID_RE.fullmatch(value):
        raise ValueError
    return value


def optional_kms_key_id(value: str | None) -> str | None:
    return None if value is None else kms_key_id(value)


def kms_secret_bytes(text: str) -> bytes:
    """The 32 bytes a kms secret's base64 text stands for. The ValueError never quotes
    the text (it is a secret)."""
    try:
        raw = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("not base64") from None
    if len(raw) != KMS_KEY_SIZE:
        raise ValueError(f"decodes to {len(raw)} bytes, not {KMS_KEY_SIZE}")
    return raw


def optional_kms_secret(value: str | None) -> str | None:
    if value is not None:
        kms_secret_bytes(value)
    return value


# ---------------------------------------------------------------- sections

PORT = "an integer 0..65535 (0 picks a free port)"


@dataclass(frozen=True)
class TlsConfig:
    cert_file: str | None = setting(
        None,
        expect="a path or nothing",
        check=optional_non_empty,
        doc="PEM certificate; with key_file, the server speaks HTTPS",
    )
    key_file: str | None = setting(
        None,
        expect="a path or nothing",
        check=optional_non_empty,
        doc="PEM private key for cert_file",
    )

    @property
    def enabled(self) -> bool:
        return self.cert_file is not None and self.key_file is not None


@dataclass(frozen=True)
class ServerConfig:
    port: int = setting(3000, expect=PORT, check=int_range(0, 65535), doc="HTTP(S) port")
    address: str = setting(
        "0.0.0.0",
        expect="a non-empty host or IP address",
        check=non_empty,
        doc="address to bind",
    )
    silent: bool = setting(False, doc="suppress all server output")
    region: str = setting(
        "us-east-1",
        expect="a non-empty region name",
        check=non_empty,
        doc="region reported to clients and used for SigV4",
    )
    base_domain: str | None = setting(
        None,
        expect="a DNS name such as s3.example.com, or nothing",
        check=base_domain,
        doc="enables virtual-hosted-style addressing: bucket.<base_domain>",
    )
    tls: TlsConfig = setting(factory=TlsConfig, doc="HTTPS; give both files or neither")
    allow_insecure_public: bool = setting(
        False,
        doc="start even when listening beyond loopback with auth off or the default "
        "credentials, open to anyone (throwaway servers only)",
    )


@dataclass(frozen=True)
class StorageConfig:
    directory: str = setting(
        ".nogit/bucketsDir",
        expect="a non-empty path",
        check=non_empty,
        doc="data directory (standalone mode; cluster metadata in cluster mode)",
    )
    clean_slate: bool = setting(False, doc="wipe the data directory on start")


@dataclass(frozen=True)
class Credential:
    access_key_id: str = setting("", expect="a non-empty string", check=non_empty)
    secret_access_key: str = setting("", expect="a non-empty string", check=non_empty)
    display_name: str | None = setting(
        None,
        expect="a non-empty string, or nothing",
        check=optional_non_empty,
        doc="the account's DisplayName in owners and ACLs (default: the access key id)",
    )
    email: str | None = setting(
        None,
        expect="an e-mail address, or nothing",
        check=optional_non_empty,
        doc="the address ACL grants by emailAddress resolve to this account",
    )
    admin: bool = setting(
        False, doc="may do anything to every bucket (operators); a lone credential is admin"
    )

    def __repr__(self) -> str:  # keep secrets out of logs and tracebacks
        return f"Credential(access_key_id={self.access_key_id!r}, secret_access_key='***')"


def _default_credentials() -> list[Credential]:
    return [Credential("STORAGE", "STORAGE")]


@dataclass(frozen=True)
class AuthConfig:
    enabled: bool = setting(
        False, doc="require AWS signatures (SigV4; SigV2 too unless auth.sigv2 = false)"
    )
    credentials: list[Credential] = setting(
        factory=_default_credentials,
        expect="a non-empty list of {access_key_id, secret_access_key}",
        doc="accepted key pairs; the first is the one the embedded API hands out",
    )
    sigv2: bool = setting(
        True,
        doc="also accept AWS Signature Version 2 (header and presigned URLs, what boto3 "
        "presigns with by default); false: SigV4 only, SigV2 is 400 InvalidRequest",
    )


@dataclass(frozen=True)
class CorsConfig:
    enabled: bool = setting(False, doc="answer CORS preflights and add CORS headers")
    allowed_origins: list[str] = setting(factory=lambda: ["*"], doc="origins, or *")
    allowed_methods: list[str] = setting(
        factory=lambda: ["GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS"],
        expect=f"a list of HTTP methods ({', '.join(HTTP_METHODS)}) or *",
        check=methods,
        doc="methods allowed cross-origin",
    )
    allowed_headers: list[str] = setting(factory=lambda: ["*"], doc="request headers, or *")
    exposed_headers: list[str] = setting(
        factory=lambda: ["ETag", "x-amz-request-id", "x-amz-version-id"],
        doc="response headers visible to scripts",
    )
    max_age: int = setting(
        86400,
        expect="an integer >= 0 (seconds)",
        check=int_range(0),
        doc="preflight cache lifetime, seconds",
    )
    allow_credentials: bool = setting(False, doc="send Access-Control-Allow-Credentials")


@dataclass(frozen=True)
class LoggingConfig:
    level: str = setting(
        "info",
        expect="one of " + ", ".join(LOG_LEVELS),
        check=one_of(*LOG_LEVELS, aliases={"warning": "warn"}),
        doc="error | warn | info | debug",
    )
    format: str = setting(
        "text",
        expect="one of " + ", ".join(LOG_FORMATS),
        check=one_of(*LOG_FORMATS),
        doc="text | json (one line per request either way)",
    )
    enabled: bool = setting(True, doc="turn logging off entirely")
    flush_seconds: int = setting(
        300,
        expect="an integer >= 1 (seconds)",
        check=int_range(1),
        doc="server access logs (PutBucketLogging): deliver each bucket's buffered records "
        "at least this often",
    )
    flush_records: int = setting(
        1000,
        expect="an integer >= 1",
        check=int_range(1),
        doc="server access logs: deliver a batch as soon as it holds this many records",
    )
    max_buffered_records: int = setting(
        100000,
        expect="an integer >= 1",
        check=int_range(1),
        doc="server access logs: records held in memory at most; past it new ones are "
        "dropped and counted",
    )


@dataclass(frozen=True)
class LimitsConfig:
    max_object_size: int = setting(
        5 * GiB,
        expect="an integer >= 1 (bytes)",
        check=int_range(1),
        doc="largest single PUT or part, bytes (5 GiB)",
    )
    max_metadata_size: int = setting(
        2048,
        expect="an integer >= 0 (bytes)",
        check=int_range(0),
        doc="user metadata (x-amz-meta-*) per object, bytes",
    )
    request_timeout: int = setting(
        300000,
        expect="an integer >= 0 (milliseconds, 0 = none)",
        check=int_range(0),
        doc="per-request time limit, milliseconds (0 = none)",
    )


@dataclass(frozen=True)
class MultipartConfig:
    expiration_days: int = setting(
        7,
        expect="an integer >= 1 (days)",
        check=int_range(1),
        doc="abort unfinished uploads older than this",
    )
    cleanup_interval_minutes: int = setting(
        60,
        expect="an integer >= 1 (minutes)",
        check=int_range(1),
        doc="how often expired uploads are looked for",
    )


@dataclass(frozen=True)
class LifecycleConfig:
    day_seconds: int = setting(
        86400,
        expect="an integer >= 1 (seconds)",
        check=int_range(1),
        doc="length of a lifecycle rule's day: shorten it (e.g. 1) to test expiry in seconds",
    )
    interval_seconds: int = setting(
        3600,
        expect="an integer >= 1 (seconds)",
        check=int_range(1),
        doc="how often the lifecycle worker passes over the buckets with rules",
    )
    operations_per_second: int = setting(
        200,
        expect="an integer >= 1",
        check=int_range(1),
        doc="the lifecycle worker's budget: deletes, aborts and listing pages per second, "
        "so requests keep priority",
    )


@dataclass(frozen=True)
class ErasureConfig:
    data_shards: int = setting(
        4,
        expect=f"an integer 1..{MAX_TOTAL_SHARDS - 1}",
        check=int_range(1, MAX_TOTAL_SHARDS - 1),
        doc="k: shards needed to rebuild a chunk",
    )
    parity_shards: int = setting(
        2,
        expect=f"an integer 1..{MAX_TOTAL_SHARDS - 1}",
        check=int_range(1, MAX_TOTAL_SHARDS - 1),
        doc="m: shards that may be lost",
    )
    chunk_size_bytes: int = setting(
        4194304,
        expect="an integer >= 1 (bytes)",
        check=int_range(1),
        doc="objects are cut into chunks of this size (4 MiB)",
    )
    backend: str = setting(
        "isa_l_rs_cauchy",
        expect="isa_l_rs_cauchy or isa_l_rs_vand",
        check=one_of("isa_l_rs_cauchy", "isa_l_rs_vand"),
        doc="pyeclib Reed-Solomon backend (vand is refused with 5+ parity shards)",
    )


@dataclass(frozen=True)
class HealingConfig:
    interval_seconds: int = setting(
        86400,
        expect="an integer >= 1 (seconds)",
        check=int_range(1),
        doc="how often every shard is checked (and queued objects healed sooner)",
    )
    bytes_per_second: int = setting(
        33554432,
        expect="an integer >= 1 (bytes/s)",
        check=int_range(1),
        doc="healing's read+write budget, so foreground I/O keeps priority",
    )


@dataclass(frozen=True)
class DrivesConfig:
    paths: list[str] = setting(
        factory=list,
        expect="a list of distinct paths",
        check=unique_non_empty,
        doc="this node's drives (one directory each)",
    )
    timeout_ms: int = setting(
        10000,
        expect="an integer >= 1 (milliseconds)",
        check=int_range(1),
        doc="a drive call slower than this counts as a failure",
    )
    probe_interval_ms: int = setting(
        5000,
        expect="an integer >= 1 (milliseconds)",
        check=int_range(1),
        doc="how often an offline drive is probed to bring it back",
    )


@dataclass(frozen=True)
class ClusterConfig:
    enabled: bool = setting(False, doc="run as a cluster node")
    node_id: str | None = setting(
        None,
        expect="a non-empty string or nothing",
        check=optional_non_empty,
        doc="stable node name; generated and persisted if unset",
    )
    quic_port: int = setting(
        4000,
        expect=PORT,
        check=int_range(0, 65535),
        doc="inter-node port: QUIC (UDP) and the shard lane (TCP)",
    )
    seed_nodes: list[str] = setting(
        factory=list,
        expect="a list of host:port",
        check=host_ports,
        doc="QUIC addresses of existing members",
    )
    secret: str | None = setting(
        None,
        expect="a non-empty string or nothing",
        check=optional_non_empty,
        doc="shared secret nodes use to authenticate each other (enables QUIC)",
    )
    secret_file: str | None = setting(
        None,
        expect="a path or nothing",
        check=optional_non_empty,
        doc="file holding the secret instead (its first line)",
    )
    advertise_address: str | None = setting(
        None,
        expect="a host name or IP address, or nothing",
        check=optional_non_empty,
        doc="where peers reach this node (default: server.address, or the host name)",
    )
    max_datagram_size: int = setting(
        16384,
        expect="an integer 1200..16384 (bytes)",
        check=int_range(1200, 16384),
        doc="QUIC datagram size: 16384 (aioquic's most) on loopback, 8952 on jumbo-frame "
        "LANs, 1452 on 1500-byte networks",
    )
    erasure: ErasureConfig = setting(factory=ErasureConfig, doc="erasure coding")
    drives: DrivesConfig = setting(factory=DrivesConfig, doc="local drives")
    healing: HealingConfig = setting(factory=HealingConfig, doc="background healing")
    heartbeat_interval_ms: int = setting(
        5000,
        expect="an integer >= 1 (milliseconds)",
        check=int_range(1),
        doc="how often peers are pinged",
    )
    heartbeat_timeout_ms: int = setting(
        30000,
        expect="an integer >= 1 (milliseconds)",
        check=int_range(1),
        doc="silence after which a peer is offline (must exceed the interval)",
    )


@dataclass(frozen=True)
class MetricsConfig:
    enabled: bool = setting(True, doc="serve Prometheus metrics (off: no per-request cost)")
    auth: bool = setting(
        False,
        doc="scrapes on the S3 listener must be SigV4-signed by one of auth.credentials, "
        "always (with auth on beyond loopback they must be anyway, unless metrics.public)",
    )
    public: bool = setting(
        False,
        doc="with auth on beyond loopback, answer unsigned scrapes on the S3 listener "
        "too: anyone who reaches it then sees bucket names and counts",
    )
    port: int = setting(
        0,
        expect="an integer 0..65535",
        check=int_range(0, 65535),
        doc="0: served at /metrics and /-/metrics on the S3 listener; else on a listener "
        "of their own on this port (any path, never signed)",
    )
    address: str | None = setting(
        None,
        expect="a host or IP address, or nothing",
        check=optional_non_empty,
        doc="that listener's address (default: 127.0.0.1, loopback only; e.g. a private "
        "interface Prometheus reaches); needs metrics.port",
    )


KMS_SECRET = "base64 of 32 random bytes (e.g. `openssl rand -base64 32`)"


@dataclass(frozen=True)
class KmsKey:
    """One key-encryption key of the local keyring: `secret` or `secret_file`."""

    id: str = setting(
        "",
        expect="a key id: letters, digits, '.', '_', '-' (at most 256)",
        check=kms_key_id,
        doc="the key's name, as SSE-KMS requests give it (or in an ARN ending key/<id>)",
    )
    secret: str | None = setting(
        None,
        expect=KMS_SECRET,
        check=optional_kms_secret,
        doc="the key itself",
        secret=True,
    )
    secret_file: str | None = setting(
        None,
        expect="a path or nothing",
        check=optional_non_empty,
        doc="a file holding the key's base64 text instead",
    )

    def __repr__(self) -> str:  # keep secrets out of logs and tracebacks
        return f"KmsKey(id={self.id!r}, secret='***', secret_file={self.secret_file!r})"


@dataclass(frozen=True)
class KmsConfig:
    keys: list[KmsKey] = setting(
        factory=list,
        expect="a list of {id, secret} or {id, secret_file}",
        secret=True,
        doc="the local keyring sealing SSE-S3 and SSE-KMS data keys (none: those "
        "requests are refused); every cluster node needs the same; keep retired keys "
        "to read what they sealed",
    )
    default_key_id: str | None = setting(
        None,
        expect="the id of one of kms.keys, or nothing",
        check=optional_kms_key_id,
        doc="the key SSE-S3 (and SSE-KMS without a key id) seals new objects with "
        "(default: the first key)",
    )
    allow_sse_c_over_http: bool = setting(
        False,
        doc="accept SSE-C keys over plain HTTP (tests on loopback); otherwise they are "
        "refused unless the request came over HTTPS",
    )


@dataclass(frozen=True)
class Config:
    """The whole configuration. Build it with `load_config`, derive variants with
    `replace`. Sections built by hand are checked when the Config passes through
    `load_config(cfg)`, as the embedded Server does."""

    server: ServerConfig = setting(factory=ServerConfig)
    storage: StorageConfig = setting(factory=StorageConfig)
    auth: AuthConfig = setting(factory=AuthConfig)
    cors: CorsConfig = setting(factory=CorsConfig)
    logging: LoggingConfig = setting(factory=LoggingConfig)
    limits: LimitsConfig = setting(factory=LimitsConfig)
    multipart: MultipartConfig = setting(factory=MultipartConfig)
    lifecycle: LifecycleConfig = setting(factory=LifecycleConfig)
    cluster: ClusterConfig = setting(factory=ClusterConfig)
    metrics: MetricsConfig = setting(factory=MetricsConfig)
    kms: KmsConfig = setting(factory=KmsConfig)

    def replace(self, overrides: Mapping[str, Any] | None = None, /, **sections: Any) -> Config:
        """A validated copy with `overrides` (nested mapping) and/or keyword sections
        applied, e.g. `cfg.replace(server={"port": 0})`."""
        from shoal.config.loader import apply_overrides

        merged: dict[str, Any] = dict(overrides or {})
        merged.update(sections)
        return apply_overrides(self, merged)

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (None values included)."""
        return dataclasses.asdict(self)

    def to_toml(self) -> str:
        """TOML text that `load_config(config_file=...)` reads back to an equal Config."""
        from shoal.config.docs import to_toml

        return to_toml(self)

    @property
    def access_key(self) -> str:
        return self.auth.credentials[0].access_key_id

    @property
    def secret_key(self) -> str:
        return self.auth.credentials[0].secret_access_key
