"""Put/Get/DeleteBucketLifecycleConfiguration, and the x-amz-expiration header of GET/HEAD.

The configuration is a bucket document ("lifecycle") in every mode, stored as the JSON
of storage/lifecycle/rules.py's records so the worker reads it without the XML layer;
GET renders it back as XML. GET/HEAD of a current object that an enabled expiration rule
covers answer `x-amz-expiration: expiry-date="<RFC 1123>", rule-id="<URL-encoded id>"`,
reading the configuration through a one-second cache (as the CORS rules are read).
"""

from __future__ import annotations

import os
from email.utils import format_datetime
from typing import Any
from urllib.parse import quote

from starlette.responses import Response

from shoal.app.body import read_small, require_integrity_header
from shoal.app.context import RequestContext
from shoal.app.errors import NoSuchLifecycleConfiguration
from shoal.app.handlers.registry import handler
from shoal.app.lifecyclexml import parse_configuration, render
from shoal.app.metrics import Metrics
from shoal.config import Config
from shoal.storage.backend import Backend, ObjectMeta
from shoal.storage.errors import NoSuchBucket, NoSuchBucketDocument
from shoal.storage.lifecycle.ownership import ByMembership, Everything, OneProcess, Ownership
from shoal.storage.lifecycle.progress import DOCUMENT as PROGRESS
from shoal.storage.lifecycle.rules import Configuration, from_json, object_expiration, to_json
from shoal.storage.lifecycle.worker import DOCUMENT, LifecycleWorker, Settings
from shoal.storage.ttlcache import TtlCache

MAX_LIFECYCLE_BODY = 2 * 1024 * 1024
CACHE_SECONDS = 1.0
_NONE = Configuration(())


class BucketLifecycles:
    """Each bucket's lifecycle configuration, cached for a second, forgotten when this
    process changes it (another node's change shows within the second)."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self._cache: TtlCache[str, Configuration] = TtlCache(CACHE_SECONDS)

    def forget(self, bucket: str) -> None:
        self._cache.forget(bucket)

    async def get(self, bucket: str) -> Configuration:
        """The bucket's configuration; one without rules when it has none."""
        return await self._cache.load(bucket, lambda: self._read(bucket))

    async def _read(self, bucket: str) -> Configuration:
        try:
            return from_json(await self.backend.get_bucket_document(bucket, DOCUMENT))
        except (NoSuchBucketDocument, NoSuchBucket):
            return _NONE


def _lifecycles(ctx: RequestContext) -> BucketLifecycles:
    lifecycles: BucketLifecycles = ctx.request.app.state.lifecycle_rules
    return lifecycles


@handler("PutBucketLifecycleConfiguration")
async def put_bucket_lifecycle(ctx: RequestContext) -> Response:
    require_integrity_header(ctx.headers)
    await ctx.backend.head_bucket(ctx.bucket)
    config = parse_configuration(await read_small(ctx.request, MAX_LIFECYCLE_BODY))
    await ctx.backend.put_bucket_document(ctx.bucket, DOCUMENT, to_json(config))
    _lifecycles(ctx).forget(ctx.bucket)
    return Response()


@handler("GetBucketLifecycleConfiguration")
async def get_bucket_lifecycle(ctx: RequestContext) -> Response:
    try:
        text = await ctx.backend.get_bucket_document(ctx.bucket, DOCUMENT)
    except NoSuchBucketDocument as exc:
        raise NoSuchLifecycleConfiguration(BucketName=ctx.bucket) from exc
    return Response(render(from_json(text)), media_type="application/xml")


@handler("DeleteBucketLifecycle")
async def delete_bucket_lifecycle(ctx: RequestContext) -> Response:
    await ctx.backend.delete_bucket_document(ctx.bucket, DOCUMENT)
    # A pass cut short must not resume halfway through the bucket under new rules.
    await ctx.backend.delete_bucket_document(ctx.bucket, PROGRESS)
    _lifecycles(ctx).forget(ctx.bucket)
    return Response(status_code=204)


async def expiration_headers(
    ctx: RequestContext, meta: ObjectMeta, version_id: str | None
) -> dict[str, str]:
    """x-amz-expiration for a GET/HEAD of the current version (none for a named one)."""
    if version_id is not None or meta.delete_marker:
        return {}
    config = await _lifecycles(ctx).get(ctx.bucket)
    if not config.rules:
        return {}
    found = object_expiration(
        config,
        ctx.key,
        meta.size,
        meta.tags,
        meta.last_modified,
        ctx.config.lifecycle.day_seconds,
    )
    if found is None:
        return {}
    when, rule_id = found
    date = format_datetime(when, usegmt=True)
    return {"x-amz-expiration": f'expiry-date="{date}", rule-id="{quote(rule_id, safe="")}"'}


def start_worker(app: Any) -> LifecycleWorker:
    """The lifecycle worker for a started app (app/lifecycle.py calls this once storage
    is open): settings from `lifecycle.*`, one node per bucket in a cluster, actions
    counted in the app's metrics. Also makes the rules cache GET/HEAD read."""
    state = app.state
    config: Config = state.config
    backend: Backend = state.backend
    state.lifecycle_rules = BucketLifecycles(backend)
    ownership: Ownership = Everything()
    if not config.cluster.enabled:
        # uvicorn may run several processes over one directory: one of them runs passes.
        ownership = OneProcess(os.path.join(config.storage.directory, ".lifecycle.lock"))
    elif config.cluster.secret or config.cluster.secret_file:
        # A DistributedStore (app.asgi.make_backend), whose module is loaded already; an
        # erasure node alone never imports it (the QUIC stack: ~150 ms of its start).
        from shoal.cluster.store import DistributedStore

        if isinstance(backend, DistributedStore) and backend.membership is not None:
            ownership = ByMembership(backend.membership)
    metrics: Metrics | None = app.metrics
    settings = Settings(
        day_seconds=config.lifecycle.day_seconds,
        interval=float(config.lifecycle.interval_seconds),
        operations_per_second=float(config.lifecycle.operations_per_second),
    )
    worker = LifecycleWorker(
        backend,
        settings,
        ownership=ownership,
        observer=metrics.lifecycle_action if metrics is not None else None,
    )
    worker.start()
    return worker
