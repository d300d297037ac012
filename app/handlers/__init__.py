"""One handler per S3 operation, grouped by family; importing this registers them all."""

from shoal.app.handlers import (  # noqa: F401
    acl,
    attributes,
    bucket,
    copy,
    cors,
    encryption,
    lifecycle,
    listing,
    logging,
    multipart,
    object,
    objectlock,
    ownership,
    postobject,
    publicaccess,
    tagging,
    versioning,
)
