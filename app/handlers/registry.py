"""Operation name -> handler, filled by the @handler decorator in each handler module."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable

from starlette.responses import Response

from shoal.app.context import RequestContext
from shoal.app.xml import Node, document

Handler = Callable[[RequestContext], Awaitable[Response]]
HANDLERS: dict[str, Handler] = {}


def handler(*names: str) -> Callable[[Handler], Handler]:
    def register(func: Handler) -> Handler:
        for name in names:
            assert name not in HANDLERS, name
            HANDLERS[name] = func
        return func

    return register


def xml_response(
    root: str, children: Iterable[Node], *, status: int = 200, headers: dict[str, str] | None = None
) -> Response:
    return Response(document(root, children), status, headers, media_type="application/xml")


def owner() -> list[Node]:
    from shoal.app.context import OWNER_ID, OWNER_NAME

    return [("ID", OWNER_ID), ("DisplayName", OWNER_NAME)]
