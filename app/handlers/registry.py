"""Operation name -> handler, filled by the @handler decorator in each handler module."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable

from starlette.responses import Response

from shoal.app.context import RequestContext
from shoal.app.xml import Node, document
from shoal.auth.accounts import ANONYMOUS_ID

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


async def bucket_owner(ctx: RequestContext) -> str:
    """The canonical id of the bucket's owner ("" when the bucket does not exist)."""
    auth = await ctx.settings.get(ctx.bucket)
    return "" if auth is None else auth.owner


def owner(ctx: RequestContext, canonical: str | None = None) -> list[Node]:
    """An Owner (or Initiator) element: the account `canonical` (a stored owner field,
    "" meaning the default owner), by default the caller."""
    if canonical is None:
        account = ctx.requester
        canonical = account.canonical_id if account is not None else ANONYMOUS_ID
    canonical = ctx.accounts.owner_id(canonical)
    return [("ID", canonical), ("DisplayName", ctx.accounts.display_name(canonical) or None)]
