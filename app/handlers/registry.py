"""Operation name -> handler, filled by the @handler decorator in each handler module."""

from __future__ import annotations

import importlib
from collections.abc import Awaitable, Callable, Iterable

from starlette.responses import Response

from shoal.app.context import RequestContext
from shoal.app.xml import Node, document
from shoal.auth.accounts import ANONYMOUS_ID

Handler = Callable[[RequestContext], Awaitable[Response]]

#: The module (in shoal.app.handlers) defining each operation's handler. Modules load on
#: the first request that needs one, not at start-up: importing them all (and what they
#: import) was the largest share of the time from start to first answer. Kept complete
#: by tests/unit/test_handler_table.py.
MODULES: dict[str, str] = {
    **dict.fromkeys(("GetBucketAcl", "GetObjectAcl", "PutBucketAcl", "PutObjectAcl"), "acl"),
    "GetObjectAttributes": "attributes",
    **dict.fromkeys(
        (
            "CreateBucket",
            "DeleteBucket",
            "DeleteBucketPolicy",
            "GetBucketLocation",
            "GetBucketPolicy",
            "HeadBucket",
            "ListBuckets",
            "PutBucketPolicy",
        ),
        "bucket",
    ),
    **dict.fromkeys(("CopyObject", "UploadPartCopy"), "copy"),
    **dict.fromkeys(("DeleteBucketCors", "GetBucketCors", "PutBucketCors"), "cors"),
    **dict.fromkeys(
        ("DeleteBucketEncryption", "GetBucketEncryption", "PutBucketEncryption"), "encryption"
    ),
    **dict.fromkeys(
        (
            "DeleteBucketLifecycle",
            "GetBucketLifecycleConfiguration",
            "PutBucketLifecycleConfiguration",
        ),
        "lifecycle",
    ),
    **dict.fromkeys(("ListObjects", "ListObjectsV2"), "listing"),
    **dict.fromkeys(("GetBucketLogging", "PutBucketLogging"), "logging"),
    **dict.fromkeys(
        (
            "AbortMultipartUpload",
            "CompleteMultipartUpload",
            "CreateMultipartUpload",
            "ListMultipartUploads",
            "ListParts",
            "UploadPart",
        ),
        "multipart",
    ),
    **dict.fromkeys(
        ("DeleteObject", "DeleteObjects", "GetObject", "HeadObject", "PutObject"), "object"
    ),
    **dict.fromkeys(
        (
            "GetObjectLegalHold",
            "GetObjectLockConfiguration",
            "GetObjectRetention",
            "PutObjectLegalHold",
            "PutObjectLockConfiguration",
            "PutObjectRetention",
        ),
        "objectlock",
    ),
    **dict.fromkeys(
        (
            "DeleteBucketOwnershipControls",
            "GetBucketOwnershipControls",
            "PutBucketOwnershipControls",
        ),
        "ownership",
    ),
    "PostObject": "postobject",
    **dict.fromkeys(
        (
            "DeletePublicAccessBlock",
            "GetBucketPolicyStatus",
            "GetPublicAccessBlock",
            "PutPublicAccessBlock",
        ),
        "publicaccess",
    ),
    **dict.fromkeys(
        (
            "DeleteBucketTagging",
            "DeleteObjectTagging",
            "GetBucketTagging",
            "GetObjectTagging",
            "PutBucketTagging",
            "PutObjectTagging",
        ),
        "tagging",
    ),
    **dict.fromkeys(
        ("GetBucketVersioning", "ListObjectVersions", "PutBucketVersioning"), "versioning"
    ),
}


class Registry(dict[str, Handler]):
    """Operation name -> handler; a handler's module is imported when first asked for."""

    def __missing__(self, name: str) -> Handler:
        module = MODULES.get(name)
        if module is None:
            raise KeyError(name)
        importlib.import_module(f"shoal.app.handlers.{module}")
        return dict.__getitem__(self, name)  # registered by that import

    def __contains__(self, name: object) -> bool:
        return name in MODULES or dict.__contains__(self, name)

    def load_all(self) -> None:
        """Import every handler module (tools and tests that look at all of them)."""
        for module in sorted(set(MODULES.values())):
            importlib.import_module(f"shoal.app.handlers.{module}")


HANDLERS = Registry()


def handler(*names: str) -> Callable[[Handler], Handler]:
    def register(func: Handler) -> Handler:
        for name in names:
            assert not dict.__contains__(HANDLERS, name), name
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
