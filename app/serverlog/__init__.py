"""Server access logging (PutBucketLogging): records in S3's log format, batched and
delivered as objects into each logging bucket's target bucket."""

from shoal.app.serverlog.delivery import ServerLog

__all__ = ["ServerLog"]
