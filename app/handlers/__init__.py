"""One handler per S3 operation, grouped by family; importing this registers them all."""

from app.handlers import bucket, copy, cors, listing, multipart, object  # noqa: F401
