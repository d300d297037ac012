"""Property tests for request resolution and the XML bodies parsed in my handlers.

dispatch.resolve sees the method, raw path, Host, query and headers of every request
before anything else; CompleteMultipartUpload and PutBucketCors bodies are client XML.
Each input yields an Operation (or parsed value) or an S3 error, never another exception.
"""

from __future__ import annotations

import re

from hypothesis import example, given
from hypothesis import strategies as st

from shoal.app import cors
from shoal.app.dispatch import Operation, resolve, valid_bucket_name
from shoal.app.errors import MalformedXML, S3Error
from shoal.app.handlers.multipart import completed_parts
from shoal.app.handlers.registry import HANDLERS
from shoal.auth.actions import action_for
from shoal.storage.backend import MAX_KEY_BYTES

METHODS = st.sampled_from(["GET", "HEAD", "PUT", "POST", "DELETE", "PATCH", "OPTIONS"]) | st.text(
    max_size=8
)
SEGMENTS = st.sampled_from(
    ["bucket", "b", "my.bucket", "Bad_B", "xn--abc", "192.168.1.1", "%62ucket", "k", "%2F", ".."]
)
RAW_PATHS = (
    (st.lists(SEGMENTS | st.text(max_size=10), max_size=5).map(lambda s: "/" + "/".join(s))).map(
        lambda p: p.encode("utf-8", "surrogatepass")
    )
    | st.binary(max_size=40)
    | st.just(b"/bucket/" + b"%ff%fe")
    | st.just(b"/bucket/" + b"k" * (MAX_KEY_BYTES + 1))
)
HOSTS = st.sampled_from(
    [
        "",
        "localhost",
        "127.0.0.1:9000",
        "bucket.localhost",
        "b.localhost:1",
        "[::1]",
        "x.s3.test",
        "s3.test:1",
    ]
) | st.text(max_size=20)
QUERY_NAMES = st.sampled_from(
    [
        "list-type",
        "uploads",
        "uploadId",
        "partNumber",
        "delete",
        "cors",
        "policy",
        "acl",
        "versioning",
        "location",
        "tagging",
        "versions",
        "versionId",
        "object-lock",
        "retention",
        "legal-hold",
        "select",
        "torrent",
        "attributes",
        "max-buckets",
        "continuation-token",
        "prefix",
        "bucket-region",
    ]
) | st.text(max_size=8)
QUERIES = st.dictionaries(QUERY_NAMES, st.sampled_from(["", "2", "3", "1"]) | st.text(max_size=8))
HEADERS = st.dictionaries(
    st.sampled_from(["x-amz-copy-source", "content-type", "host"]) | st.text(max_size=8),
    st.sampled_from(["multipart/form-data; boundary=x", "b/k"]) | st.text(max_size=12),
)


@given(METHODS, RAW_PATHS, HOSTS, QUERIES, HEADERS, st.sampled_from([None, "s3.test"]))
def test_resolve_total(
    method: str,
    raw_path: bytes,
    host: str,
    query: dict[str, str],
    headers: dict[str, str],
    base_domain: str | None,
) -> None:
    try:
        op = resolve(method, raw_path, host, query, headers, base_domain=base_domain)
    except S3Error as exc:
        assert 400 <= exc.status < 600 and exc.status != 500
        return
    assert isinstance(op, Operation)
    assert op.name in HANDLERS
    assert op.action == action_for(op.name, version=op.key is not None and "versionId" in query)
    if op.bucket is not None:
        assert valid_bucket_name(op.bucket)
    if op.key is not None:
        assert len(op.key.encode("utf-8", "surrogatepass")) <= MAX_KEY_BYTES


def _outcome(method: str, raw_path: bytes, host: str, base_domain: str | None) -> object:
    """resolve's Operation, or the code of the S3 error it raised."""
    try:
        return resolve(method, raw_path, host, {}, {}, base_domain=base_domain)
    except S3Error as exc:
        return exc.code


BASE_DOMAINS = st.sampled_from(["s3.localhost", "s3.test", "S3.Example.COM."])


@given(
    METHODS,
    RAW_PATHS,
    BASE_DOMAINS,
    st.sampled_from(["lower", "upper", "dot"]),
    st.sampled_from(["", ":9000", ":1"]),
)
@example("GET", b"/", "s3.localhost", "lower", ":9000")  # ListBuckets, not bucket "s3"
def test_base_domain_itself_is_path_style(
    method: str, raw_path: bytes, base_domain: str, case: str, port: str
) -> None:
    """A request to the base domain itself (any case, trailing dot, any port) resolves
    exactly like the same request to an address: `GET /` is ListBuckets."""
    host = base_domain.lower().rstrip(".")
    host = {"lower": host, "upper": host.upper(), "dot": host + "."}[case] + port
    assert _outcome(method, raw_path, host, base_domain) == _outcome(
        method, raw_path, "127.0.0.1" + port, None
    )


@given(st.sampled_from(["bkt", "my.bucket", "bucket-1"]), BASE_DOMAINS, st.sampled_from(["", ":9"]))
def test_bucket_below_base_domain(bucket: str, base_domain: str, port: str) -> None:
    """`<bucket>.<base domain>` names the bucket, never one ending in the domain's labels."""
    host = f"{bucket}.{base_domain.rstrip('.')}{port}"
    op = resolve("GET", b"/k", host, {}, {}, base_domain=base_domain)
    assert (op.name, op.bucket, op.key) == ("GetObject", bucket, "k")
    listing = resolve("GET", b"/", host, {}, {}, base_domain=base_domain)
    assert (listing.name, listing.bucket) == ("ListObjects", bucket)


@given(st.text(max_size=6))
def test_list_type(value: str) -> None:
    try:
        op = resolve("GET", b"/bucket", "", {"list-type": value}, {})
    except S3Error as exc:
        assert exc.code == "InvalidArgument" and value != "2"
        return
    assert value == "2" and op.name == "ListObjectsV2"


def _element(children: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    tag = st.sampled_from(
        [
            "Part",
            "PartNumber",
            "ETag",
            "ChecksumCRC32",
            "CORSRule",
            "AllowedOrigin",
            "AllowedMethod",
            "AllowedHeader",
            "ExposeHeader",
            "MaxAgeSeconds",
            "ID",
            "x",
        ]
    )
    return st.builds(lambda t, inner: f"<{t}>{inner}</{t}>", tag, children)


TEXTS = st.sampled_from(["1", "GET", "*", "0600", "\u00b2", "9" * 5000, "&#13;&#10;", "&amp;"]) | (
    st.text(st.characters(blacklist_categories=["Cs"], blacklist_characters="<&"), max_size=10)
)
XML_TREES = st.recursive(TEXTS, lambda inner: st.lists(_element(inner), max_size=4).map("".join))


def documents(root: str) -> st.SearchStrategy[bytes]:
    wrapped = XML_TREES.map(lambda body: f"<{root}>{body}</{root}>".encode())
    declared = wrapped.map(lambda d: b'<?xml version="1.0" encoding="UTF-8"?>' + d)
    return (
        wrapped
        | declared
        | st.binary(max_size=60)
        | st.sampled_from(
            [
                b"<?xml version='1.0' encoding='bogus'?><a/>",
                b"\xef\xbb\xbf<a/>",
                b"<a xmlns:x='y'/>",
            ]
        )
    )


@given(documents("CompleteMultipartUpload"))
@example(
    b"<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>e</ETag></Part></CompleteMultipartUpload>"
)
def test_complete_multipart_body(body: bytes) -> None:
    try:
        parts = completed_parts(body)
    except MalformedXML:
        return
    assert parts
    for part in parts:
        assert 0 <= part.number < 10**19 and isinstance(part.etag, str)


@given(documents("CORSConfiguration"))
@example(
    b"<CORSConfiguration><CORSRule><AllowedOrigin>*</AllowedOrigin><AllowedMethod>GET</AllowedMethod>"
    b"<MaxAgeSeconds>0600</MaxAgeSeconds><ExposeHeader>ETag</ExposeHeader></CORSRule></CORSConfiguration>"
)
def test_cors_configuration_body(body: bytes) -> None:
    try:
        rules = cors.parse_configuration(body)
    except MalformedXML:
        return
    assert 1 <= len(rules) <= cors.MAX_RULES
    rendered = cors.render_configuration(rules)
    assert cors.parse_configuration(rendered) == rules  # what is stored parses back alike
    for rule in rules:
        assert rule.max_age is None or 0 <= rule.max_age <= cors.MAX_AGE
        response = cors.preflight(
            rules, {"origin": "http://o", "access-control-request-method": "GET"}
        )
        assert response.status_code in (200, 403)
        response.headers.raw  # noqa: B018 - every header value encodes


WILD_TEXT = st.text(st.sampled_from("ab*.A"), max_size=8)


@given(WILD_TEXT, st.text(st.sampled_from("abAB.*"), max_size=10))
def test_wildcard_match_is_glob(pattern: str, value: str) -> None:
    """The linear matcher agrees with a regex where `*` is `.*` (short inputs only)."""
    regex = ".*".join(re.escape(p) for p in pattern.lower().split("*"))
    expected = re.fullmatch(regex, value.lower(), re.DOTALL) is not None
    assert cors.wildcard_match(pattern, value) is expected


@given(METHODS, QUERIES, st.sampled_from([None, "s3.test"]))
def test_service_requests_are_list_buckets(
    method: str, query: dict[str, str], base_domain: str | None
) -> None:
    """GET / with any parameters (ListBuckets' paging ones among them) is ListBuckets;
    other methods on the service are 405."""
    try:
        op = resolve(method, b"/", "127.0.0.1:9000", query, {}, base_domain=base_domain)
    except S3Error as exc:
        assert exc.code == "MethodNotAllowed" and method not in ("GET", "HEAD")
        return
    assert op.name == "ListBuckets" and op.action == "s3:ListAllMyBuckets"


@given(QUERIES, METHODS)
def test_attributes_is_get_object_attributes(query: dict[str, str], method: str) -> None:
    """?attributes on an object is GetObjectAttributes for GET (its version's action with
    versionId), HeadObject for HEAD (as with every sub-resource), 405 for every other
    method."""
    query = {**query, "attributes": ""}
    try:
        op = resolve(method, b"/bkt/k", "", query, {})
    except S3Error as exc:
        assert 400 <= exc.status < 600 and exc.status != 500
        return
    unsupported = {"select", "torrent"} & set(query)
    assert method in ("GET", "HEAD") and not unsupported
    if method == "HEAD":
        assert op.name == "HeadObject"  # and so needs s3:GetObject, as any HEAD
        return
    if "uploadId" in query:
        assert op.name == "ListParts"
        return
    if {"retention", "legal-hold", "acl"} & set(query):
        return
    version = "versionId" in query
    assert op.name == "GetObjectAttributes"
    assert op.action == ("s3:GetObjectVersionAttributes" if version else "s3:GetObjectAttributes")


#: The operation ?tagging is for each method, on a bucket and on an object.
_TAGGING = {
    ("GET", False): ("GetBucketTagging", "s3:GetBucketTagging"),
    ("PUT", False): ("PutBucketTagging", "s3:PutBucketTagging"),
    ("DELETE", False): ("DeleteBucketTagging", "s3:PutBucketTagging"),
    ("GET", True): ("GetObjectTagging", "s3:GetObjectTagging"),
    ("PUT", True): ("PutObjectTagging", "s3:PutObjectTagging"),
    ("DELETE", True): ("DeleteObjectTagging", "s3:DeleteObjectTagging"),
}


@given(METHODS, st.booleans(), st.booleans())
def test_tagging_routes(method: str, on_object: bool, version: bool) -> None:
    """?tagging alone is the tagging operation of its method (the version's action with a
    versionId on an object), HeadObject/HeadBucket for HEAD, 405 for any other method."""
    query = {"tagging": ""} | ({"versionId": "null"} if version else {})
    path = b"/bkt/k" if on_object else b"/bkt"
    try:
        op = resolve(method, path, "", query, {})
    except S3Error as exc:
        assert exc.code == "MethodNotAllowed"
        assert method not in ("GET", "HEAD", "PUT", "DELETE")
        return
    if method == "HEAD":
        assert op.name == ("HeadObject" if on_object else "HeadBucket")
        return
    name, action = _TAGGING[(method, on_object)]
    if on_object and version:
        action = action.replace("Object", "ObjectVersion")
    assert (op.name, op.action) == (name, action)
    assert op.name in HANDLERS
