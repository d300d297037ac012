"""Service-layer errors.

Each class is named after the S3 error code it becomes at the HTTP boundary
(app/errors.py translates them); anything else raised by a backend is an internal
error. Nothing here knows about HTTP.
"""

from __future__ import annotations

from datetime import datetime


class StorageError(Exception):
    """Base of the errors a backend raises on purpose. `delete_marker` names the delete
    marker the error is about (a read of a key whose current version is a marker, or of
    a marker by its version id): S3 answers with x-amz-delete-marker and its version id,
    and with the marker's `last_modified` when a request named it."""

    def __init__(
        self,
        message: str = "",
        *,
        delete_marker: str | None = None,
        last_modified: datetime | None = None,
        **details: str,
    ) -> None:
        super().__init__(message or type(self).__name__)
        self.message = message
        self.details = details
        self.delete_marker = delete_marker
        self.last_modified = last_modified


class NoSuchBucket(StorageError):
    pass


class BucketAlreadyOwnedByYou(StorageError):
    pass


class BucketNotEmpty(StorageError):
    pass


class NoSuchKey(StorageError):
    pass


class NoSuchUpload(StorageError):
    pass


class NoSuchVersion(StorageError):
    """A version id that does not exist for the key (a malformed one is the app's 400)."""


class MethodNotAllowed(StorageError):
    """A GET or HEAD of a delete marker by its version id."""


class NoSuchBucketPolicy(StorageError):
    pass


class NoSuchBucketDocument(StorageError):
    """A bucket sub-resource document (cors, ...) that was never set; the app names it."""


class InvalidPart(StorageError):
    pass


class InvalidPartOrder(StorageError):
    pass


class EntityTooSmall(StorageError):
    pass


class EntityTooLarge(StorageError):
    pass


class PreconditionFailed(StorageError):
    """A conditional write (If-Match / If-None-Match) did not hold at commit time."""


class KeyTooLong(StorageError):
    pass


class InvalidRequest(StorageError):
    pass


class Unsupported(StorageError):
    """A feature this backend does not offer (S3's 501 NotImplemented)."""


class ServiceUnavailable(StorageError):
    """Too few drives (or nodes) answered to read or write safely; retrying may succeed."""
