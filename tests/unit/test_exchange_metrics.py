"""Request metrics as the exchange reports them (app/exchange.py -> app/metrics.py): the
bytes and status counted once on the wire, errors by code, a request whose endpoint
failed as InternalError, and the in-flight gauge back at zero afterwards."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from starlette.requests import Request
from starlette.responses import Response

from shoal.app.asgi import error_response
from shoal.app.dispatch import Operation
from shoal.app.exchange import Exchanges
from shoal.app.metrics import NO_RESPONSE, Metrics
from shoal.app.timeouts import Timeouts
from shoal.auth import ANONYMOUS
from shoal.config import load_config
from shoal.storage.filestore import FileStore

pytestmark = pytest.mark.anyio

GET = Operation("GetObject", "b", "k", "s3:GetObject")


def _scope() -> dict[str, Any]:
    return {
        "type": "http",
        "method": "PUT",
        "path": "/b/k",
        "raw_path": b"/b/k",
        "query_string": b"",
        "headers": [(b"content-length", b"5")],
        "client": ("127.0.0.1", 1),
        "state": {},
    }


def _exchanges(tmp_path: Path) -> tuple[Exchanges, Metrics]:
    config = load_config({}, env={})
    metrics = Metrics(config, FileStore(tmp_path), lambda request: ANONYMOUS)
    exchanges = Exchanges(Timeouts.from_config(config), None, error_response)
    exchanges.metrics = metrics
    return exchanges, metrics


async def _serve(exchanges: Exchanges, endpoint: Any) -> list[dict[str, Any]]:
    sent: list[dict[str, Any]] = []
    chunks = [{"type": "http.request", "body": b"hello", "more_body": False}]

    async def receive() -> dict[str, Any]:
        return chunks.pop(0) if chunks else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await exchanges.serve(_scope(), receive, send, endpoint)
    return sent


def _value(metrics: Metrics, name: str, **labels: str) -> float:
    return metrics.registry.get_sample_value(name, labels) or 0.0


async def test_an_answer_is_counted_once_with_its_bytes_and_error_code(tmp_path: Path) -> None:
    exchanges, metrics = _exchanges(tmp_path)

    async def endpoint(request: Request) -> Response:
        await request.body()
        request.state.operation = GET
        request.state.error_code = "NoSuchKey"
        return Response(b"not here", 404)

    sent = await _serve(exchanges, endpoint)
    assert sent[0]["status"] == 404
    assert _value(metrics, "shoal_requests_total", operation="GetObject", status="404") == 1
    assert _value(metrics, "shoal_errors_total", operation="GetObject", code="NoSuchKey") == 1
    assert _value(metrics, "shoal_received_bytes_total", operation="GetObject") == 5
    assert _value(metrics, "shoal_sent_bytes_total", operation="GetObject") == 8
    assert _value(metrics, "shoal_request_duration_seconds_count", operation="GetObject") == 1
    assert _value(metrics, "shoal_requests_in_flight") == 0


async def test_an_endpoint_that_fails_counts_as_an_internal_error(tmp_path: Path) -> None:
    exchanges, metrics = _exchanges(tmp_path)

    async def endpoint(request: Request) -> Response:
        request.state.operation = GET
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        await _serve(exchanges, endpoint)
    assert _value(metrics, "shoal_requests_total", operation="GetObject", status="500") == 1
    assert _value(metrics, "shoal_errors_total", operation="GetObject", code="InternalError") == 1
    assert _value(metrics, "shoal_requests_in_flight") == 0


async def test_a_request_left_without_an_answer_is_a_499(tmp_path: Path) -> None:
    exchanges, metrics = _exchanges(tmp_path)

    async def endpoint(request: Request) -> Response:
        raise KeyboardInterrupt  # not an Exception: no InternalError, no status

    with pytest.raises(KeyboardInterrupt):
        await _serve(exchanges, endpoint)
    labels = {"operation": "Unknown", "status": str(NO_RESPONSE)}
    assert _value(metrics, "shoal_requests_total", **labels) == 1
    assert _value(metrics, "shoal_errors_total", operation="Unknown", code="InternalError") == 0
    assert _value(metrics, "shoal_requests_in_flight") == 0
