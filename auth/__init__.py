"""Authentication and authorization: SigV4 (header, presigned, aws-chunked) in
auth/sigv4.py, SigV2 (header, presigned) in auth/sigv2.py, the bucket-policy engine in
auth/policy.py, the operation → IAM action table in auth/actions.py, and the seam the
ASGI layer calls in auth/seam.py. Accounts (canonical ids, admins) in auth/accounts.py,
ACLs (canned, grant headers, AccessControlPolicy, grant evaluation) in auth/acl.py, a
bucket's settings as records and documents in auth/bucketauth.py, and what makes a
policy public in auth/publicpolicy.py; app/authz.py puts them together.
"""

from shoal.auth.seam import ANONYMOUS, Authenticator, Principal

__all__ = ["ANONYMOUS", "Authenticator", "Principal"]
