"""ListBuckets paging (AWS, 2024): max-buckets, continuation-token, prefix,
bucket-region and BucketRegion, through boto3, its paginator, raw HTTP and the aws CLI;
the token and page logic also on their own."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError
from hypothesis import given
from hypothesis import strategies as st

from shoal.app.errors import InvalidArgument
from shoal.app.handlers.bucket import bucket_page, bucket_token, token_bucket
from shoal.storage.backend import BucketInfo
from tests.integration.conftest import AwsCli, error_code

NAMES = st.from_regex(r"[a-z0-9][a-z0-9-]{1,20}[a-z0-9]", fullmatch=True)


@pytest.fixture
def family(s3: Any) -> Iterator[tuple[str, list[str]]]:
    """Five buckets sharing a fresh prefix (other tests' buckets may exist beside them)."""
    prefix = f"pg{uuid.uuid4().hex[:10]}-"
    names = [f"{prefix}{i}" for i in range(5)]
    for name in names:
        s3.create_bucket(Bucket=name)
    yield prefix, names
    for name in names:
        s3.delete_bucket(Bucket=name)


def test_unpaged_answer_is_unchanged(s3: Any, http: Any, family: tuple[str, list[str]]) -> None:
    listing = s3.list_buckets()
    names = [b["Name"] for b in listing["Buckets"]]
    assert set(family[1]) <= set(names) and names == sorted(names)
    assert "ContinuationToken" not in listing and "Prefix" not in listing
    assert all("BucketRegion" not in b for b in listing["Buckets"])
    text = http.get("/").text
    assert "<BucketRegion>" not in text and "<ContinuationToken>" not in text


def test_pages_by_max_buckets(s3: Any, family: tuple[str, list[str]]) -> None:
    prefix, names = family
    seen: list[str] = []
    token: str | None = None
    pages = 0
    while True:
        kwargs: dict[str, Any] = {"MaxBuckets": 2, "Prefix": prefix}
        if token:
            kwargs["ContinuationToken"] = token
        page = s3.list_buckets(**kwargs)
        pages += 1
        assert page["Prefix"] == prefix
        assert len(page["Buckets"]) <= 2
        assert all(b["BucketRegion"] == "us-east-1" for b in page["Buckets"])
        seen += [b["Name"] for b in page["Buckets"]]
        token = page.get("ContinuationToken")
        if not token:
            break
        assert prefix not in token  # opaque, not the name itself
    assert seen == names and pages == 3


def test_paginator_walks_every_bucket(s3: Any, family: tuple[str, list[str]]) -> None:
    everything = [b["Name"] for b in s3.list_buckets()["Buckets"]]
    paginator = s3.get_paginator("list_buckets")
    pages = list(paginator.paginate(PaginationConfig={"PageSize": 2}))
    walked = [b["Name"] for page in pages for b in page["Buckets"]]
    assert walked == everything and len(pages) == -(-len(everything) // 2)
    prefixed = paginator.paginate(Prefix=family[0], PaginationConfig={"PageSize": 3})
    assert [b["Name"] for page in prefixed for b in page["Buckets"]] == family[1]


def test_prefix_and_region(s3: Any, family: tuple[str, list[str]]) -> None:
    prefix, names = family
    one = s3.list_buckets(Prefix=prefix + "3")
    assert [b["Name"] for b in one["Buckets"]] == [names[3]]
    assert "ContinuationToken" not in one
    here = s3.list_buckets(Prefix=prefix, BucketRegion="us-east-1")
    assert [b["Name"] for b in here["Buckets"]] == names
    elsewhere = s3.list_buckets(Prefix=prefix, BucketRegion="eu-west-1")
    assert elsewhere["Buckets"] == []
    assert s3.list_buckets(Prefix="zz-no-such-prefix")["Buckets"] == []


@pytest.mark.parametrize("value", ["0", "10001", "-1", "two", "1.5", ""])
def test_bad_max_buckets(http: Any, value: str) -> None:
    response = http.get("/", params={"max-buckets": value})
    assert response.status_code == 400
    assert "<Code>InvalidArgument</Code>" in response.text


@pytest.mark.parametrize(
    "token",
    [
        "not a token",
        "%%%",
        base64.urlsafe_b64encode(b"pg-some-bucket").decode(),  # a bare name is no token
        base64.urlsafe_b64encode(b"shoal-buckets:UPPER").decode(),
        bucket_token("fine-name") + "==",
    ],
)
def test_bad_continuation_token(s3: Any, token: str) -> None:
    with pytest.raises(ClientError) as info:
        s3.list_buckets(ContinuationToken=token, MaxBuckets=2)
    assert error_code(info.value) == "InvalidArgument"
    assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400


@pytest.mark.cli
def test_aws_cli_max_buckets(
    shoal_descriptor: Any, verify: str | bool, tmp_path: Path, family: tuple[str, list[str]]
) -> None:
    cli = AwsCli.of(tmp_path, shoal_descriptor, verify)
    # An explicit --max-buckets turns the CLI's own paging off: one page of 2, as asked.
    done = cli.run(
        "s3api", "list-buckets", "--max-buckets", "2", "--prefix", family[0], check=False
    )
    if "Unknown options" in done.stderr:
        pytest.skip("this aws CLI has no list-buckets --max-buckets")
    assert done.returncode == 0, done.stderr
    page = json.loads(done.stdout)
    assert [b["Name"] for b in page["Buckets"]] == family[1][:2]
    assert page["ContinuationToken"]
    # --page-size: the CLI walks every page of 2, following the tokens.
    done = cli.run("s3api", "list-buckets", "--page-size", "2", "--prefix", family[0])
    assert [b["Name"] for b in json.loads(done.stdout)["Buckets"]] == family[1]


# The token and the page on their own.


@given(NAMES)
def test_token_round_trip(name: str) -> None:
    token = bucket_token(name)
    assert token_bucket(token) == name and name not in token


@given(st.text(max_size=64))
def test_any_other_text_is_refused_or_is_a_token(text: str) -> None:
    try:
        name = token_bucket(text)
    except InvalidArgument:
        return
    assert bucket_token(name) == text


@given(st.lists(NAMES, unique=True, max_size=30), st.integers(1, 7), st.sampled_from(["", "a"]))
def test_pages_cover_each_bucket_once(names: list[str], limit: int, prefix: str) -> None:
    when = datetime(2024, 1, 1, tzinfo=UTC)
    buckets = [BucketInfo(n, when) for n in names]
    seen: list[str] = []
    after = None
    while True:
        page, token = bucket_page(buckets, prefix=prefix, after=after, limit=limit)
        assert len(page) <= limit
        seen += [b.name for b in page]
        if token is None:
            break
        assert len(page) == limit
        after = token_bucket(token)
    assert seen == sorted(n for n in names if n.startswith(prefix))
