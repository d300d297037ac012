"""Authentication and authorization: SigV4 (header, presigned, aws-chunked) in
auth/sigv4.py, SigV2 (header, presigned) in auth/sigv2.py, the bucket-policy engine in
auth/policy.py, the operation → IAM action table in auth/actions.py, and the seam the
ASGI layer calls in auth/seam.py.
"""

from shoal.auth.seam import ANONYMOUS, Authenticator, Principal

__all__ = ["ANONYMOUS", "Authenticator", "Principal"]
