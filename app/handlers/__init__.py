"""One handler per S3 operation, grouped by family; importing this registers them all."""

from shoal.app.handlers import (  # noqa: F401
    attributes,
    bucket,
    copy,
    cors,
    lifecycle,
    listing,
    multipart,
    object,
    objectlock,
    postobject,
    tagging,
    versioning,
)
