"""create_app(): the Starlette application.

One catch-all route: every request is resolved to an S3 operation (app/dispatch.py),
authorized (auth/), and passed to that operation's handler. Every response carries
x-amz-request-id; every error is rendered here, once, as an S3 XML document.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import importlib
import itertools
import logging
import os
import socket
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from shoal.app import admin, console, cors, health, lifecycle, logs, tagging
from shoal.app.accesslog import AccessLog
from shoal.app.authz import BucketSettings, PolicyGate
from shoal.app.body import unread_body
from shoal.app.context import RequestContext
from shoal.app.dispatch import resolve, split_target
from shoal.app.errors import AccessDenied, InternalError, InvalidRequest, S3Error, from_storage
from shoal.app.exchange import Exchanges
from shoal.app.handlers.registry import HANDLERS
from shoal.app.handlers.tagging import existing_tag_context
from shoal.app.metrics import Metrics
from shoal.app.runtimeaccounts import AccountDirectory
from shoal.app.serverlog import ServerLog
from shoal.app.ssepolicy import encryption_context
from shoal.app.timeouts import Timeouts
from shoal.app.xml import document
from shoal.auth import ANONYMOUS, Authenticator, Principal
from shoal.auth.accounts import Accounts, AccountSpec
from shoal.auth.acl import GRANT_HEADERS
from shoal.auth.actions import accepts_payload
from shoal.auth.sigv4 import AuthFailure
from shoal.config import Config, ConfigError, load_config
from shoal.sse.keyring import Keyring
from shoal.storage import checksums, memory
from shoal.storage.accounts import account_store
from shoal.storage.backend import Backend
from shoal.storage.errors import StorageError

log = logging.getLogger("shoal")

_request_ids = itertools.count(int.from_bytes(os.urandom(8), "big"))


def new_request_id() -> str:
    """Unique per process and cheap: a random start, then a counter (no syscall per call)."""
    return f"{next(_request_ids) & 0xFFFFFFFFFFFFFFFF:016X}"


def error_response(error: S3Error, request: Request, request_id: str) -> Response:
    """The S3 error document (status only for HEAD)."""
    request.state.error_code = error.code  # for metrics
    headers = {"x-amz-request-id": request_id, **error.headers}
    if request.method == "HEAD":
        return Response(status_code=error.status, headers=headers)
    children: list = [("Code", error.code), ("Message", error.text)]
    children += list(error.fields.items())
    children += [("Resource", request.url.path), ("RequestId", request_id)]
    body = document("Error", children, namespace=False, lossy=True)
    return Response(body, error.status, headers, media_type="application/xml")


def _lower_headers(request: Request) -> dict[str, str]:
    """Header name (lower case) -> value; repeated headers joined with commas."""
    headers: dict[str, str] = {}
    for raw_name, raw_value in request.scope["headers"]:
        name, value = raw_name.decode("latin-1").lower(), raw_value.decode("latin-1")
        headers[name] = f"{headers[name]},{value}" if name in headers else value
    return headers


async def s3_endpoint(request: Request) -> Response:
    request_id = new_request_id()
    request.state.request_id = request_id  # for the access log (app/exchange.py)
    config: Config = request.app.state.config
    headers = _lower_headers(request)
    base_domain = config.server.base_domain
    try:
        if "host" not in headers and request.scope.get("http_version") == "1.1":
            # RFC 9112 3.2: a server must refuse such a request with 400.
            raise InvalidRequest("An HTTP/1.1 request must carry a Host header.")
        if request.method == "OPTIONS":
            bucket, _ = split_target(_raw_path(request), headers.get("host", ""), base_domain)
            rules = await request.app.state.cors.for_request(config, bucket)
            response = cors.preflight(rules, headers)
            response.headers["x-amz-request-id"] = request_id
            return response
        metrics: Metrics | None = request.app.metrics
        if metrics is not None and metrics.is_scrape(request, headers.get("host", "")):
            response = await metrics.scrape(request)
            response.headers["x-amz-request-id"] = request_id
            return response
        if console.is_console_path(request.scope["path"]):  # before the admin API's router
            response = await console.handle(request, _authenticate)
            response.headers["x-amz-request-id"] = request_id
            return response
        if admin.is_admin_path(request.scope["path"]):
            response = await admin.handle(request, request.url.path, _authenticate)
            response.headers["x-amz-request-id"] = request_id
            return response
        query = dict(request.query_params) if request.scope["query_string"] else {}
        op = resolve(
            request.method,
            _raw_path(request),
            headers.get("host", ""),
            query,
            headers,
            base_domain=base_domain,
        )
        request.state.operation = op
        gate: PolicyGate | None = request.app.state.gate
        principal = ANONYMOUS
        # A POST Object form is authenticated by its own signed policy, in its handler.
        if gate is not None and op.name != "PostObject":
            principal = _authenticate(request)
            request.state.verified = principal.verified
            request.state.principal = principal  # the requester of server access logs
            if principal.verified and not accepts_payload(op.name, principal.verified.payload_hash):
                raise InvalidRequest(f"{op.name} does not take a request body in this form.")
            context = _policy_context(request, query, headers)
            backend = request.app.state.backend
            context.update(await existing_tag_context(gate, backend, op, query))
            context.update(await encryption_context(gate, backend, op, query, headers))
            await gate.check_operation(
                op.name, principal, op.bucket, op.key, context, op.action, query.get("versionId")
            )
        ctx = RequestContext(
            op=op,
            request=request,
            headers=headers,
            query=query,
            request_id=request_id,
            config=config,
            backend=request.app.state.backend,
            principal=principal,
            accounts=request.app.state.accounts,
            settings=request.app.state.settings,
            keyring=request.app.state.keyring,
            gate=gate,
        )
        response = await HANDLERS[op.name](ctx)
    except S3Error as exc:
        response = error_response(exc, request, request_id)
    except AuthFailure as exc:
        error = S3Error.registry.get(exc.code, AccessDenied)(exc.message, **exc.fields)
        response = error_response(error, request, request_id)
    except StorageError as exc:
        response = error_response(from_storage(exc), request, request_id)
    except Exception:
        log.exception("internal error", extra={"request_id": request_id})
        response = error_response(InternalError(), request, request_id)
    response.headers["x-amz-request-id"] = request_id
    if "origin" in headers:
        op = getattr(request.state, "operation", None)
        rules = await request.app.state.cors.for_request(config, op.bucket if op else None)
        cors.decorate(rules, request.method, headers, response)
    if unread_body(request, headers):
        response.headers["connection"] = "close"
    return response


def _raw_path(request: Request) -> bytes:
    """The path as sent (signatures and keys are read from it, never the decoded one)."""
    raw: bytes | None = request.scope.get("raw_path")
    return raw if raw is not None else request.scope["path"].encode()


def _authenticate(request: Request) -> Principal:
    """The signature (SigV4 or SigV2) from the raw path and query, before any body byte."""
    authenticator: Authenticator = request.app.state.authenticator
    return authenticator.authenticate(
        method=request.method,
        raw_path=_raw_path(request),
        raw_query=request.scope.get("query_string", b""),
        headers=request.scope["headers"],
        now=datetime.now(UTC),
    )


def _policy_context(
    request: Request, query: dict[str, str], headers: dict[str, str]
) -> dict[str, object]:
    """Condition keys a bucket policy may test (from the scope and the header table:
    Starlette's URL and Headers objects cost more than the rest of this together)."""
    client = request.scope.get("client")
    context: dict[str, object] = {
        "aws:SecureTransport": request.scope.get("scheme") == "https",
        "aws:SourceIp": client[0] if client else None,
    }
    for name in ("prefix", "delimiter", "max-keys"):
        if name in query:
            context[f"s3:{name}"] = query[name]
    if "versionId" in query:  # GetObjectVersion, DeleteObjectVersion, ...
        context["s3:versionid"] = query["versionId"]
    if tagging.HEADER in headers:
        context.update(tagging.request_condition_keys(headers[tagging.HEADER]))
    for name in ACL_CONDITION_HEADERS:
        if name in headers:
            context[f"s3:{name}"] = headers[name]
    return context


#: Request headers a bucket policy may test as s3:<name>.
ACL_CONDITION_HEADERS = ("x-amz-acl", *GRANT_HEADERS)


def mmap_threshold(config: Config) -> int:
    """Where malloc switches to mmap (storage.memory): an erasure-coded node's chunks
    are mmapped, everything else up to 8 MiB comes from the heap."""
    if not config.cluster.enabled:
        return memory.MALLOC_MMAP_THRESHOLD
    erasure = config.cluster.erasure
    return memory.erasure_mmap_threshold(erasure.chunk_size_bytes, erasure.data_shards)


def make_accounts(config: Config) -> Accounts:
    """Every configured credential as an account (auth/accounts.py)."""
    return Accounts.build(
        AccountSpec(c.access_key_id, c.display_name, c.email, c.admin)
        for c in config.auth.credentials
    )


def make_backend(config: Config) -> Backend:
    """FileStore on one directory; in cluster mode an ErasureStore over this node's
    drives, or, with a cluster secret, a DistributedStore over every node's drives."""
    if not config.cluster.enabled:
        from shoal.storage.filestore import FileStore

        return FileStore(
            config.storage.directory,
            clean_slate=config.storage.clean_slate,
            multipart_expiration_days=config.multipart.expiration_days,
            multipart_cleanup_interval_minutes=config.multipart.cleanup_interval_minutes,
        )
    c, limits = config.cluster, config.multipart
    erasure: dict[str, Any] = {
        "data_shards": c.erasure.data_shards,
        "parity_shards": c.erasure.parity_shards,
        "chunk_size": c.erasure.chunk_size_bytes,
        "coder_backend": c.erasure.backend,
        "node_id": c.node_id,
        "clean_slate": config.storage.clean_slate,
        "multipart_expiration_days": limits.expiration_days,
        "multipart_cleanup_interval_minutes": limits.cleanup_interval_minutes,
        "drive_timeout": c.drives.timeout_ms / 1000,
        "probe_interval": c.drives.probe_interval_ms / 1000,
        "heal_interval": c.healing.interval_seconds,
        "heal_bytes_per_second": c.healing.bytes_per_second,
    }
    secret = cluster_secret(config)
    if secret is None:
        from shoal.storage.erasure.store import ErasureStore

        return ErasureStore(c.drives.paths, **erasure)
    from shoal.cluster.store import DistributedStore

    return DistributedStore(
        c.drives.paths,
        state_dir=config.storage.directory,
        secret=secret,
        host=config.server.address,
        port=c.quic_port,
        advertise=c.advertise_address or advertised_host(config.server.address),
        seeds=c.seed_nodes,
        heartbeat_interval=c.heartbeat_interval_ms / 1000,
        heartbeat_timeout=c.heartbeat_timeout_ms / 1000,
        max_datagram_size=c.max_datagram_size,
        keyring_fingerprint=Keyring.from_config(config.kms).fingerprint(),
        **erasure,
    )


def cluster_secret(config: Config) -> str | None:
    """cluster.secret, or the first line of cluster.secret_file."""
    c = config.cluster
    if c.secret_file:
        try:
            with open(c.secret_file, encoding="utf-8") as f:
                secret = f.readline().strip()
        except OSError as exc:
            raise ConfigError(f"cluster.secret_file: cannot read {c.secret_file}: {exc}") from exc
        if not secret:
            raise ConfigError(f"cluster.secret_file: {c.secret_file} is empty")
        return secret
    return c.secret


def advertised_host(address: str) -> str:
    """Where peers reach a node bound to `address` (a wildcard is not an address)."""
    if address in ("0.0.0.0", "::", ""):
        return socket.gethostname()
    return address


class ShoalApp(Starlette):
    """Starlette for the lifespan and app state; every HTTP request goes straight to
    the S3 endpoint, which renders its own errors, skipping the router and middleware
    stack (a measurable share of a small request's CPU)."""

    metrics: Metrics | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await super().__call__(scope, receive, send)
            return
        scope["app"] = self
        # Timeouts, shutdown, byte counts, metrics and the access log line
        # (app/exchange.py).
        await self.state.exchanges.serve(scope, receive, send, s3_endpoint)


#: The collector's young-generation threshold in the server's own process (CPython's
#: default: 700); see warm_up.
GC_YOUNG = 10_000
#: Seconds after start-up when warm_up runs (see create_app).
WARM_UP_DELAY = 0.5
#: Loaded lazily (not before the first answer), then by warm_up: anyio's asyncio backend
#: (Starlette's first streamed body imports it) and cryptography (SSE).
WARM_MODULES = ("anyio._backends._asyncio", "cryptography.hazmat.primitives.ciphers.aead")


def warm_up(freeze: bool = False) -> None:
    """Load, on a worker thread, what the first requests would otherwise import on the
    event loop in their path: every handler module, the modules above and the
    CRC64NVME library. The first 64 MiB GET after a start took ~90 ms longer than the
    next ones, and the first PUT ~50 ms.

    `freeze` (the process is the server's own): then move everything alive into the
    garbage collector's permanent generation (gc.freeze). Modules, classes and
    functions live as long as the process, and each full collection walked them all
    (~45,000 objects, 10-20 ms) in the middle of whatever request set it off. And
    collect the young generation once GC_YOUNG objects more were made than freed, not
    700: a 10,000-key ListObjects on an erasure node set off ~46 collections, which moved
    the pages' short-lived objects into the older generations, and every few listings
    that made a full collection of everything the drives keep (~400,000 objects:
    270-390 ms, the event loop stopped). At 10,000 a listing sets off none, and a
    request's objects are freed by their reference counts before the collector looks."""
    HANDLERS.load_all()
    for name in WARM_MODULES:
        importlib.import_module(name)
    checksums.warm_up()
    if freeze:
        gc.freeze()
        gc.set_threshold(GC_YOUNG, *gc.get_threshold()[1:])


def create_app(config: Config | None = None) -> Starlette:
    """Build the application; the storage backend opens and closes with its lifespan."""
    config = config if config is not None else load_config()
    if not logs.hosted:  # a host process tunes its own allocator
        memory.tune_malloc(mmap_threshold(config))  # before the storage threads start
    logs.configure_once(config)  # under plain uvicorn; `shoal serve` did it already
    backend = make_backend(config)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await backend.open()
        await directory.start()
        # Loaded before the first requests need it, but not before the first answer:
        # the imports hold the GIL for ~0.1 s wherever they run.
        loop = asyncio.get_running_loop()
        warming: list[asyncio.Future[None]] = []
        later = loop.call_later(
            WARM_UP_DELAY,
            # (a host process's objects are its own business: no freeze there)
            lambda: warming.append(loop.run_in_executor(None, warm_up, not logs.hosted)),
        )
        if application.metrics is not None:
            await application.metrics.start()
        server_log.start()
        try:
            yield
        finally:
            await server_log.stop()  # delivers what is buffered while the store is open
            if application.metrics is not None:
                await application.metrics.stop()
            later.cancel()
            for warm in warming:
                await warm
            await directory.stop()
            await backend.close()

    application = ShoalApp(lifespan=lifecycle.around(lifespan))
    application.state.config = config
    application.state.backend = backend
    application.state.accounts = accounts = make_accounts(config)
    # Runtime accounts (the admin API) join the configured ones: app/runtimeaccounts.py.
    directory = AccountDirectory(account_store(backend), accounts)
    application.state.account_directory = directory
    application.state.settings = settings = BucketSettings(backend, accounts)
    application.state.gate = PolicyGate(settings) if config.auth.enabled else None
    application.state.cors = cors.BucketRules(backend)
    application.state.keyring = Keyring.from_config(config.kms)
    level, json_format = config.logging.level, config.logging.format == "json"
    quiet = logs.quiet(config) or level not in ("info", "debug")
    application.state.exchanges = Exchanges(
        Timeouts.from_config(config), None if quiet else AccessLog(json_format), error_response
    )
    application.state.server_log = server_log = ServerLog(
        backend,
        config.server.region,
        flush_seconds=config.logging.flush_seconds,
        flush_records=config.logging.flush_records,
        max_buffered=config.logging.max_buffered_records,
        accounts=accounts,
        auth_enabled=config.auth.enabled,
        keyring=application.state.keyring,
    )
    application.state.exchanges.server_log = server_log.observe
    application.state.authenticator = Authenticator(
        {c.access_key_id: c.secret_access_key for c in config.auth.credentials},
        config.server.region,
        sigv2=config.auth.sigv2,
        host_bucket=lambda host: split_target(b"/", host, config.server.base_domain)[0],
        runtime=accounts,
    )
    if config.metrics.enabled:
        application.metrics = Metrics(config, backend, _authenticate)
        application.state.exchanges.metrics = application.metrics
        application.metrics.readiness = lambda: not health.unready_reasons(application.state)
    return application
