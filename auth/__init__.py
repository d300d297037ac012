"""Authentication and authorization (SigV4, presigned URLs, bucket policies).

The ASGI layer calls `authorize` once per request with the parsed operation, before any
body byte is read. Until SigV4 lands (the auth issue) every request is anonymous and
allowed, as the reference does with `auth.enabled = false`.
"""

from auth.seam import Principal, authorize

__all__ = ["Principal", "authorize"]
