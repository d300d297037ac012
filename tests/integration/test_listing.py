"""ListObjects v1 and v2 against a brute-force reference computed from the key set.

The reference: keys under the prefix, each either listed itself or rolled up into its
common prefix (the key up to and including the first delimiter after the prefix); keys
and common prefixes together in UTF-8 byte order (= Python str order), each one once;
a marker / start-after / continuation point keeps only items strictly greater than it,
so a start-after inside a common prefix skips that prefix; max-keys counts both kinds.
"""

from __future__ import annotations

import uuid
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import unquote_plus

import botocore.exceptions
import httpx
import pytest

from tests.integration.conftest import error_code

NS = {"s3": "http://s3.amazonaws.com/doc/2006-03-01/"}

LONG_SEGMENT = "s" * 300
LONG_KEY = "long/" + "/".join(["y" * 98] * 10) + "y" * 6  # 1000 bytes, ten segments
KEYS = sorted(
    {
        "a",
        "a-c",
        "a/",
        "a/b",
        "a/b/",
        "a/b/c",
        "a/b/c/d",
        "a//b",
        "a/./b",
        "a/../b",
        "ab",
        "b",
        "bb/b",
        "b/b/b",
        "/lead",
        "//double-lead",
        "trail/",
        ".",
        "..",
        "ü/é",
        "é",
        "éa/é",
        "日本/語",
        "日本/語/テスト",
        "sp ace",
        "sp ace/x y",
        "plus+sign",
        "100%",
        "pct%2Fx",
        "amp&<>\"'",
        "tilde~star*",
        "q?uery#hash=1;x,y",
        f"seg/{LONG_SEGMENT}/end",
        f"seg/{LONG_SEGMENT}",
        LONG_KEY,
        "z",
    }
)
assert len(LONG_KEY.encode()) == 1000

PREFIXES = ["", "a", "a/", "a/b", "b", "日本", "sp", "seg/", "/", "long/y", "zzz"]
DELIMITERS = ["", "/", "b", "é", "/b"]
MAX_KEYS = [1, 2, 3, 4, 5, 6, 7, 1000]

Item = tuple[str, str]  # ("key" | "prefix", value)


def rollup(key: str, prefix: str, delimiter: str) -> str | None:
    if not delimiter:
        return None
    idx = key.find(delimiter, len(prefix))
    return None if idx < 0 else key[: idx + len(delimiter)]


def reference(keys: list[str], prefix: str, delimiter: str, after: str = "") -> list[Item]:
    """Every item a listing must return, in order."""
    items: dict[str, str] = {}
    for key in keys:
        if key.startswith(prefix):
            cp = rollup(key, prefix, delimiter)
            if cp is None:
                items[key] = "key"
            else:
                items.setdefault(cp, "prefix")
    return [(kind, value) for value, kind in sorted(items.items()) if value > after]


def page_items(page: dict[str, Any]) -> list[Item]:
    """A page's keys and common prefixes merged back into one ordered list."""
    keys = [o["Key"] for o in page.get("Contents", [])]
    prefixes = [p["Prefix"] for p in page.get("CommonPrefixes", [])]
    assert keys == sorted(keys)
    assert prefixes == sorted(prefixes)
    return sorted(
        [("key", k) for k in keys] + [("prefix", p) for p in prefixes], key=lambda i: i[1]
    )


def walk_v2(s3: Any, bucket: str, max_keys: int, **params: Any) -> list[list[Item]]:
    """All ListObjectsV2 pages, following continuation tokens; checks each page's fields."""
    pages: list[list[Item]] = []
    token: str | None = None
    for _ in range(2000):
        extra = {"ContinuationToken": token} if token else {}
        page = s3.list_objects_v2(Bucket=bucket, MaxKeys=max_keys, **params, **extra)
        items = page_items(page)
        assert page["KeyCount"] == len(items)
        assert page["MaxKeys"] == max_keys
        assert page.get("Prefix", "") == params.get("Prefix", "")
        assert page.get("Delimiter", "") == params.get("Delimiter", "")
        assert page.get("StartAfter", "") == params.get("StartAfter", "")
        assert page.get("ContinuationToken") == token
        assert len(items) <= max_keys
        pages.append(items)
        if not page["IsTruncated"]:
            assert "NextContinuationToken" not in page
            return pages
        assert items, "a truncated page must make progress"
        token = page["NextContinuationToken"]
    raise AssertionError("listing never ended")


def walk_v1(s3: Any, bucket: str, max_keys: int, **params: Any) -> list[list[Item]]:
    """All ListObjects (v1) pages: resume at NextMarker (sent only with a delimiter),
    otherwise after the last key of the page."""
    pages: list[list[Item]] = []
    marker = params.pop("Marker", "")
    delimiter = params.get("Delimiter", "")
    for _ in range(2000):
        page = s3.list_objects(Bucket=bucket, MaxKeys=max_keys, Marker=marker, **params)
        items = page_items(page)
        assert page["MaxKeys"] == max_keys
        assert page.get("Marker", "") == marker
        assert page.get("Delimiter", "") == delimiter
        assert all("Owner" in o for o in page.get("Contents", []))
        assert len(items) <= max_keys
        pages.append(items)
        if not page["IsTruncated"]:
            return pages
        assert items, "a truncated page must make progress"
        if delimiter:
            assert page["NextMarker"] == items[-1][1]
            marker = page["NextMarker"]
        else:
            assert "NextMarker" not in page
            marker = page["Contents"][-1]["Key"]
    raise AssertionError("listing never ended")


def check_pages(pages: list[list[Item]], expected: list[Item], max_keys: int) -> None:
    flat = [item for page in pages for item in page]
    assert len(flat) == len(set(flat)), "an item was listed twice"
    assert flat == expected
    # Every page but the last is full (common prefixes count toward max-keys).
    assert all(len(page) == max_keys for page in pages[:-1])


def put_keys(s3: Any, bucket: str, keys: list[str]) -> None:
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda k: s3.put_object(Bucket=bucket, Key=k, Body=b"x"), keys))


def delete_keys(s3: Any, bucket: str, keys: list[str]) -> None:
    for i in range(0, len(keys), 1000):
        objects = [{"Key": k} for k in keys[i : i + 1000]]
        s3.delete_objects(Bucket=bucket, Delete={"Objects": objects, "Quiet": True})


@pytest.fixture
def http_only(shoal_descriptor: Any) -> None:
    """Skip the HTTPS run of a long, transport-independent test (paging logic sits above
    the transport; the cheaper tests of this module still run over both)."""
    if shoal_descriptor.use_ssl:
        pytest.skip("transport-independent; run over HTTP only")


@pytest.fixture(scope="module")
def awkward(s3_required: Any) -> Iterator[str]:
    """A bucket holding KEYS, shared by the read-only listing tests of this module."""
    name = f"t-list-{uuid.uuid4().hex[:16]}"
    s3_required.create_bucket(Bucket=name)
    put_keys(s3_required, name, KEYS)
    yield name
    delete_keys(s3_required, name, KEYS)
    s3_required.delete_bucket(Bucket=name)


def test_keys_round_trip(s3: Any, awkward: str) -> None:
    """Every awkward key is stored as itself and listed exactly once."""
    listed = [o["Key"] for o in s3.list_objects_v2(Bucket=awkward)["Contents"]]
    assert listed == KEYS
    for key in (".", "..", "a/../b", LONG_KEY, "amp&<>\"'"):
        assert s3.head_object(Bucket=awkward, Key=key)["ContentLength"] == 1


@pytest.mark.parametrize("delimiter", DELIMITERS)
@pytest.mark.usefixtures("http_only")
def test_v2_against_reference(s3: Any, awkward: str, delimiter: str) -> None:
    """ListObjectsV2 for every prefix and page size walks exactly the reference items."""
    for prefix in PREFIXES:
        expected = reference(KEYS, prefix, delimiter)
        for max_keys in MAX_KEYS:
            pages = walk_v2(s3, awkward, max_keys, Prefix=prefix, Delimiter=delimiter)
            check_pages(pages, expected, max_keys)


@pytest.mark.parametrize("delimiter", DELIMITERS)
@pytest.mark.usefixtures("http_only")
def test_v1_against_reference(s3: Any, awkward: str, delimiter: str) -> None:
    """ListObjects (v1) for every prefix and page size walks exactly the reference items."""
    for prefix in PREFIXES:
        expected = reference(KEYS, prefix, delimiter)
        for max_keys in MAX_KEYS:
            pages = walk_v1(s3, awkward, max_keys, Prefix=prefix, Delimiter=delimiter)
            check_pages(pages, expected, max_keys)


START_AFTER = [
    ("", "/", "a/b"),  # inside the common prefix "a/": it is not listed again
    ("", "/", "a/"),  # exactly a common prefix
    ("", "/", "a"),
    ("", "", "a/b"),
    ("a/", "/", "a/b"),
    ("a/", "/", "a/b/c"),  # inside "a/b/" under prefix "a/"
    ("a/", "/", "a/.0"),  # not a key
    ("", "b", "a/b"),
    ("", "/", "日本"),
    ("", "", "\U0010ffff"),  # after everything
    ("zzz", "/", ""),
    ("a", "/", "0"),  # before the prefix
]


@pytest.mark.parametrize(("prefix", "delimiter", "start_after"), START_AFTER)
@pytest.mark.usefixtures("http_only")
def test_start_after_and_marker(
    s3: Any, awkward: str, prefix: str, delimiter: str, start_after: str
) -> None:
    """start-after (v2) and marker (v1) keep only items strictly after them."""
    expected = reference(KEYS, prefix, delimiter, start_after)
    for max_keys in (1, 3, 1000):
        params = {"Prefix": prefix, "Delimiter": delimiter}
        pages = walk_v2(s3, awkward, max_keys, StartAfter=start_after, **params)
        check_pages(pages, expected, max_keys)
        pages = walk_v1(s3, awkward, max_keys, Marker=start_after, **params)
        check_pages(pages, expected, max_keys)


def test_paginators(s3: Any, awkward: str) -> None:
    """boto3's own paginators over both versions agree with the reference."""
    for operation in ("list_objects_v2", "list_objects"):
        paginator = s3.get_paginator(operation)
        for delimiter in ("", "/"):
            got: list[Item] = []
            for page in paginator.paginate(
                Bucket=awkward, Delimiter=delimiter, PaginationConfig={"PageSize": 4}
            ):
                got += page_items(page)
            assert got == reference(KEYS, "", delimiter), (operation, delimiter)


def test_empty_bucket(s3: Any, bucket: str) -> None:
    """An empty bucket lists nothing, untruncated, in both versions."""
    v2 = s3.list_objects_v2(Bucket=bucket, Delimiter="/")
    assert (v2["KeyCount"], v2["IsTruncated"]) == (0, False)
    assert "Contents" not in v2
    assert "CommonPrefixes" not in v2
    v1 = s3.list_objects(Bucket=bucket)
    assert v1["IsTruncated"] is False
    assert "Contents" not in v1


def test_max_keys_zero(s3: Any, awkward: str) -> None:
    """max-keys=0 returns no items and is not truncated."""
    v2 = s3.list_objects_v2(Bucket=awkward, MaxKeys=0)
    assert (v2["KeyCount"], v2["IsTruncated"], v2["MaxKeys"]) == (0, False, 0)
    assert "Contents" not in v2
    v1 = s3.list_objects(Bucket=awkward, MaxKeys=0)
    assert v1["IsTruncated"] is False
    assert "Contents" not in v1


def test_max_keys_capped_at_1000(s3: Any, awkward: str) -> None:
    """A max-keys above 1000 is served as 1000."""
    page = s3.list_objects_v2(Bucket=awkward, MaxKeys=5000)
    assert page["KeyCount"] == len(KEYS)
    assert page["MaxKeys"] <= 5000


def test_fetch_owner(s3: Any, awkward: str) -> None:
    """v2 lists Owner only with fetch-owner=true; v1 always does."""
    plain = s3.list_objects_v2(Bucket=awkward, MaxKeys=3)
    assert all("Owner" not in o for o in plain["Contents"])
    owned = s3.list_objects_v2(Bucket=awkward, MaxKeys=3, FetchOwner=True)
    assert all(o["Owner"].get("ID") for o in owned["Contents"])
    v1 = s3.list_objects(Bucket=awkward, MaxKeys=3)
    assert all(o["Owner"].get("ID") for o in v1["Contents"])


def test_item_fields(s3: Any, bucket: str) -> None:
    """Contents carry the object's size, ETag, storage class and modification time."""
    s3.put_object(Bucket=bucket, Key="sized", Body=b"12345")
    head = s3.head_object(Bucket=bucket, Key="sized")
    (item,) = s3.list_objects_v2(Bucket=bucket)["Contents"]
    assert (item["Key"], item["Size"], item["ETag"]) == ("sized", 5, head["ETag"])
    assert item["StorageClass"] == "STANDARD"
    assert abs((item["LastModified"] - head["LastModified"]).total_seconds()) < 1


# --- encoding-type=url -------------------------------------------------------------------


def raw_list(http: httpx.Client, bucket: str, **params: str) -> ET.Element:
    resp = http.get(f"/{bucket}", params=params)
    assert resp.status_code == 200, resp.text
    return ET.fromstring(resp.content)


def texts(root: ET.Element, path: str) -> list[str]:
    return [e.text or "" for e in root.findall(path, NS)]


#: Keys whose encoded form is the same under every reading of AWS's rules: space is '+',
#: reserved and non-ASCII bytes are %XX (upper-case hex), A-Za-z0-9 - _ . stay.
ENCODED = {
    "sp ace": "sp+ace",
    "plus+sign": "plus%2Bsign",
    "100%": "100%25",
    "amp&<>\"'": "amp%26%3C%3E%22%27",
    "é": "%C3%A9",
    "a-c": "a-c",
    ".": ".",
    "..": "..",
}


def test_encoding_type_url_raw(http: httpx.Client, awkward: str) -> None:
    """With encoding-type=url the XML carries URL-encoded keys, prefixes and delimiters."""
    root = raw_list(http, awkward, **{"list-type": "2", "encoding-type": "url"})
    assert texts(root, "s3:EncodingType") == ["url"]
    raw_keys = texts(root, "s3:Contents/s3:Key")
    assert [unquote_plus(k) for k in raw_keys] == KEYS
    by_key = dict(zip(KEYS, raw_keys, strict=True))
    for key, encoded in ENCODED.items():
        assert by_key[key] == encoded, key
    allowed = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.~*/%+")
    for raw in raw_keys:
        assert set(raw) <= allowed, raw

    # Whether '/' is sent as itself or as %2F is left open; everything else is exact.
    def plain(values: list[str]) -> list[str]:
        return [v.replace("%2F", "/") for v in values]

    params = {"list-type": "2", "encoding-type": "url", "prefix": "sp ", "delimiter": " "}
    root = raw_list(http, awkward, **params)
    assert texts(root, "s3:Prefix") == ["sp+"]
    assert texts(root, "s3:Delimiter") == ["+"]
    assert texts(root, "s3:Contents/s3:Key") == ["sp+ace"]
    assert plain(texts(root, "s3:CommonPrefixes/s3:Prefix")) == ["sp+ace/x+"]

    root = raw_list(http, awkward, **{"encoding-type": "url", "delimiter": "é"})
    assert texts(root, "s3:Delimiter") == ["%C3%A9"]
    assert plain(texts(root, "s3:CommonPrefixes/s3:Prefix")) == ["%C3%A9", "%C3%BC/%C3%A9"]

    root = raw_list(http, awkward, **{"encoding-type": "url", "marker": "sp ace", "max-keys": "1"})
    assert texts(root, "s3:Marker") == ["sp+ace"]
    assert plain(texts(root, "s3:Contents/s3:Key")) == ["sp+ace/x+y"]


def test_without_encoding_type_raw(http: httpx.Client, awkward: str) -> None:
    """Without encoding-type keys are sent as themselves (XML-escaped)."""
    root = raw_list(http, awkward, **{"list-type": "2"})
    assert texts(root, "s3:EncodingType") == []
    assert texts(root, "s3:Contents/s3:Key") == KEYS
    root = raw_list(http, awkward)
    assert texts(root, "s3:Contents/s3:Key") == KEYS


def test_encoding_type_decoded_by_botocore(s3: Any, awkward: str) -> None:
    """botocore asks for encoding-type=url and decodes: the keys come back unchanged,
    also as delimiters, prefixes and start-after values with odd characters."""
    for prefix, delimiter, start_after in [("sp ace", " ", ""), ("", "%", "1"), ("", "+", "a")]:
        page = s3.list_objects_v2(
            Bucket=awkward, Prefix=prefix, Delimiter=delimiter, StartAfter=start_after
        )
        assert page_items(page) == reference(KEYS, prefix, delimiter, start_after)
        assert page["Delimiter"] == delimiter
        assert page.get("StartAfter", "") == start_after


def test_bad_encoding_type(http: httpx.Client, awkward: str) -> None:
    resp = http.get(f"/{awkward}", params={"list-type": "2", "encoding-type": "base64"})
    assert resp.status_code == 400
    assert "<Code>InvalidArgument</Code>" in resp.text


# --- errors ------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["-1", "abc", "1.5"])
@pytest.mark.parametrize("version", ["1", "2"])
def test_invalid_max_keys(http: httpx.Client, bucket: str, value: str, version: str) -> None:
    """A max-keys that is not a non-negative integer is InvalidArgument."""
    params = {"max-keys": value}
    if version == "2":
        params["list-type"] = "2"
    resp = http.get(f"/{bucket}", params=params)
    assert resp.status_code == 400
    assert "<Code>InvalidArgument</Code>" in resp.text


@pytest.mark.parametrize("token", ["not a token!", "%%%", "AAAA"])
def test_bad_continuation_token(s3: Any, bucket: str, token: str) -> None:
    with pytest.raises(botocore.exceptions.ClientError) as info:
        s3.list_objects_v2(Bucket=bucket, ContinuationToken=token)
    assert error_code(info.value) == "InvalidArgument"


def test_missing_bucket(s3: Any) -> None:
    """Listing a bucket that does not exist is NoSuchBucket (404) in both versions."""
    name = f"t-missing-{uuid.uuid4().hex[:12]}"
    for call in (s3.list_objects_v2, s3.list_objects):
        with pytest.raises(botocore.exceptions.ClientError) as info:
            call(Bucket=name)
        assert error_code(info.value) == "NoSuchBucket"
        assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404


# --- many keys ---------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.usefixtures("http_only")
def test_paginator_over_2500_keys(s3_required: Any) -> None:
    """2,500 keys come back through the paginators exactly once each, in order.

    2,500 durable PUTs (several fsyncs each) take most of this file's time, so the
    bucket is left to the session's temporary data directory: deleting them would cost
    as much again.
    """
    s3 = s3_required
    bucket = f"t-many-{uuid.uuid4().hex[:16]}"
    s3.create_bucket(Bucket=bucket)
    keys = [f"k{i}" for i in range(2000)] + [f"dir/{i % 50:02d}/x{i}" for i in range(500)]
    put_keys(s3, bucket, keys)

    paginator = s3.get_paginator("list_objects_v2")
    pages = list(paginator.paginate(Bucket=bucket))
    assert [p["KeyCount"] for p in pages] == [1000, 1000, 500]
    assert [o["Key"] for p in pages for o in p["Contents"]] == sorted(keys)

    v1 = s3.get_paginator("list_objects").paginate(
        Bucket=bucket, PaginationConfig={"PageSize": 700}
    )
    assert [o["Key"] for p in v1 for o in p.get("Contents", [])] == sorted(keys)

    grouped = list(paginator.paginate(Bucket=bucket, Delimiter="/"))
    assert [p["Prefix"] for g in grouped for p in g.get("CommonPrefixes", [])] == ["dir/"]
    assert sum(g["KeyCount"] for g in grouped) == 2001

    nested = paginator.paginate(
        Bucket=bucket, Prefix="dir/", Delimiter="/", PaginationConfig={"PageSize": 7}
    )
    prefixes = [p["Prefix"] for g in nested for p in g.get("CommonPrefixes", [])]
    assert prefixes == [f"dir/{i:02d}/" for i in range(50)]
