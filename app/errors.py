"""The one table of S3 errors: a class per AWS error code, with its HTTP status and
AWS's default message. Raising one anywhere in a request yields the right XML document
(app/asgi.py has the single handler)."""

from __future__ import annotations

from email.utils import formatdate
from typing import ClassVar

from shoal.storage import errors as storage_errors


class S3Error(Exception):
    status: ClassVar[int] = 500
    message: ClassVar[str] = "We encountered an internal error. Please try again."
    #: The code AWS sends; defaults to the class name.
    code: ClassVar[str] = ""
    registry: ClassVar[dict[str, type[S3Error]]] = {}

    def __init_subclass__(cls) -> None:
        super().__init_subclass__()
        cls.code = cls.__dict__.get("code") or cls.__name__
        S3Error.registry[cls.code] = cls

    def __init__(self, message: str | None = None, /, **fields: str | int) -> None:
        self.text = message or self.message
        self.fields = {k: str(v) for k, v in fields.items()}
        self.headers: dict[str, str] = {}
        super().__init__(f"{self.code}: {self.text}")


class AccessDenied(S3Error):
    status, message = 403, "Access Denied"


class AccessControlListNotSupported(S3Error):
    status, message = 400, "The bucket does not allow ACLs"


class AuthorizationHeaderMalformed(S3Error):
    status, message = 400, "The authorization header is malformed."


class AuthorizationQueryParametersError(S3Error):
    status = 400
    message = (
        "Query-string authentication version 4 requires the X-Amz-Algorithm,"
        " X-Amz-Credential, X-Amz-Signature, X-Amz-Date, X-Amz-SignedHeaders, and"
        " X-Amz-Expires parameters."
    )


class BadRequest(S3Error):
    status, message = 400, "Bad Request"


class BadDigest(S3Error):
    status, message = 400, "The Content-MD5 you specified did not match what we received."


class BucketAlreadyExists(S3Error):
    status, message = 409, "The requested bucket name is not available."


class BucketAlreadyOwnedByYou(S3Error):
    status = 409
    message = "Your previous request to create the named bucket succeeded and you already own it."


class BucketNotEmpty(S3Error):
    status, message = 409, "The bucket you tried to delete is not empty"


class ConditionalRequestConflict(S3Error):
    status, message = 409, "A conflicting operation occurred. Please retry."


class EntityTooLarge(S3Error):
    status, message = 400, "Your proposed upload exceeds the maximum allowed size"


class EntityTooSmall(S3Error):
    status, message = 400, "Your proposed upload is smaller than the minimum allowed object size."


class IncorrectNumberOfFilesInPostRequest(S3Error):
    status, message = 400, "POST requires exactly one file upload per request."


class IncompleteBody(S3Error):
    status, message = (
        400,
        "You did not provide the number of bytes specified by the Content-Length HTTP header.",
    )


class InternalError(S3Error):
    status, message = 500, "We encountered an internal error. Please try again."


class InvalidAccessKeyId(S3Error):
    status = 403
    message = "The AWS Access Key Id you provided does not exist in our records."


class InvalidArgument(S3Error):
    status, message = 400, "Invalid Argument"


class InvalidBucketName(S3Error):
    status, message = 400, "The specified bucket is not valid."


class InvalidBucketState(S3Error):
    status, message = 409, "The request is not valid with the current state of the bucket."


class InvalidDigest(S3Error):
    status, message = 400, "The Content-MD5 you specified is not valid."


class InvalidEncryptionAlgorithmError(S3Error):
    status = 400
    message = "The encryption request you specified is not valid. The valid value is AES256."


class InvalidPart(S3Error):
    status = 400
    message = (
        "One or more of the specified parts could not be found. The part may not have been"
        " uploaded, or the specified entity tag may not match the part's entity tag."
    )


class InvalidPartNumber(S3Error):
    status, message = 416, "The requested partnumber is not satisfiable"


class InvalidPartOrder(S3Error):
    status = 400
    message = "The list of parts was not in ascending order. Parts must be ordered by part number."


class InvalidPolicyDocument(S3Error):
    status = 400
    message = (
        "The content of the form does not meet the conditions specified in the policy document."
    )


class InvalidRange(S3Error):
    status, message = 416, "The requested range is not satisfiable"


class InvalidRequest(S3Error):
    status, message = 400, "Invalid Request"


class InvalidTag(S3Error):
    status = 400
    message = (
        "The tag provided was not a valid tag. This error can occur if the tag did not pass"
        " input validation."
    )


class InvalidStorageClass(S3Error):
    status, message = 400, "The storage class you specified is not valid"


class InvalidTargetBucketForLogging(S3Error):
    status, message = 400, "The target bucket for logging does not exist"


class KeyTooLongError(S3Error):
    status, message = 400, "Your key is too long"


class KMSNotFoundException(S3Error):
    """An SSE-KMS key id the keyring does not hold (AWS names the KMS error it got)."""

    code = "KMS.NotFoundException"
    status, message = 400, "The specified KMS key does not exist."


class InvalidBucketAclWithObjectOwnership(S3Error):
    status = 400
    message = "Bucket cannot have ACLs set with ObjectOwnership's BucketOwnerEnforced setting"


class MalformedACLError(S3Error):
    status = 400
    message = (
        "The XML you provided was not well-formed or did not validate against our published schema"
    )


class MalformedPolicy(S3Error):
    status, message = 400, "Policies must be valid JSON and the first byte must be '{'"


class MalformedXML(S3Error):
    status = 400
    message = (
        "The XML you provided was not well-formed or did not validate against our published schema"
    )


class MalformedPOSTRequest(S3Error):
    status, message = 400, "The body of your POST request is not well-formed multipart/form-data."


class MalformedTrailerError(S3Error):
    status, message = 400, "The request contained trailing data that was not well-formed."


class MaxPostPreDataLengthExceeded(S3Error):
    status = 400
    message = "Your POST request fields preceding the upload file were too large."


class MetadataTooLarge(S3Error):
    status, message = 400, "Your metadata headers exceed the maximum allowed metadata size."


class MethodNotAllowed(S3Error):
    status, message = 405, "The specified method is not allowed against this resource."


class MissingSecurityHeader(S3Error):
    status, message = 400, "Your request is missing a required header."


class MissingContentLength(S3Error):
    status, message = 411, "You must provide the Content-Length HTTP header."


class MissingRequestBodyError(S3Error):
    status, message = 400, "Request Body is empty"


class NoSuchBucket(S3Error):
    status, message = 404, "The specified bucket does not exist"


class NoSuchBucketPolicy(S3Error):
    status, message = 404, "The bucket policy does not exist"


class NoSuchCORSConfiguration(S3Error):
    status, message = 404, "The CORS configuration does not exist"


class NoSuchLifecycleConfiguration(S3Error):
    status, message = 404, "The lifecycle configuration does not exist"


class NoSuchKey(S3Error):
    status, message = 404, "The specified key does not exist."


class NoSuchVersion(S3Error):
    status, message = 404, "The specified version does not exist."


class NoSuchObjectLockConfiguration(S3Error):
    status, message = 404, "The specified object does not have a ObjectLock configuration"


class NoSuchPublicAccessBlockConfiguration(S3Error):
    status, message = 404, "The public access block configuration was not found"


class NoSuchTagSet(S3Error):
    status, message = 404, "The TagSet does not exist"


class OwnershipControlsNotFoundError(S3Error):
    status, message = 404, "The bucket ownership controls were not found"


class UnexpectedContent(S3Error):
    status, message = 400, "This request does not support content"


class UnresolvableGrantByEmailAddress(S3Error):
    status = 400
    message = "The e-mail address you provided does not match any account on record."


class NoSuchUser(S3Error):
    """The admin API (app/adminusers.py): no account of that name."""

    status, message = 404, "The specified user does not exist."


class NoSuchAccessKey(S3Error):
    status, message = 404, "The specified access key does not exist."


class NoSuchPolicy(S3Error):
    status, message = 404, "The user has no policy of that name."


class UserAlreadyExists(S3Error):
    status, message = 409, "A user of that name already exists."


class NoSuchUpload(S3Error):
    status = 404
    message = (
        "The specified multipart upload does not exist. The upload ID might be invalid,"
        " or the multipart upload might have been aborted or completed."
    )


class NotImplementedFeature(S3Error):
    code = "NotImplemented"
    status = 501
    message = "A header or query you provided implies functionality that is not implemented."


class ObjectLockConfigurationNotFoundError(S3Error):
    status, message = 404, "Object Lock configuration does not exist for this bucket"


class PreconditionFailed(S3Error):
    status, message = 412, "At least one of the pre-conditions you specified did not hold"


class RequestHeaderSectionTooLarge(S3Error):
    status = 400
    message = (
        "The request header and query parameters used to make the request exceed the"
        " maximum allowed size."
    )


class RequestTimeout(S3Error):
    status = 400
    message = (
        "Your socket connection to the server was not read from or written to within the"
        " timeout period."
    )


class RequestTimeTooSkewed(S3Error):
    status = 403
    message = "The difference between the request time and the current time is too large."


class ServerSideEncryptionConfigurationNotFoundError(S3Error):
    status, message = 404, "The server side encryption configuration was not found"


class ServiceUnavailable(S3Error):
    status, message = 503, "Please reduce your request rate."


class SignatureDoesNotMatch(S3Error):
    status = 403
    message = (
        "The request signature we calculated does not match the signature you provided."
        " Check your key and signing method."
    )


class XAmzContentSHA256Mismatch(S3Error):
    status = 400
    message = "The provided 'x-amz-content-sha256' header does not match what was computed."


#: Storage-layer error class name -> S3 code, where the two differ.
_RENAMED = {"KeyTooLong": "KeyTooLongError", "Unsupported": "NotImplemented"}


def from_storage(exc: storage_errors.StorageError) -> S3Error:
    """Translate a deliberate service-layer error; anything unknown is internal."""
    name = type(exc).__name__
    cls = S3Error.registry.get(_RENAMED.get(name, name), InternalError)
    error = cls(exc.message or None, **exc.details)
    if exc.delete_marker is not None:
        error.headers.update({"x-amz-delete-marker": "true", "x-amz-version-id": exc.delete_marker})
    if exc.last_modified is not None:
        error.headers["last-modified"] = formatdate(exc.last_modified.timestamp(), usegmt=True)
    return error
