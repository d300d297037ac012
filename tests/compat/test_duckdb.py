"""DuckDB's httpfs: COPY ... TO 's3://...' as Parquet, read back with a glob (ranged
GETs, ListObjectsV2). The extension comes from PyPI's duckdb-ext-httpfs, loaded from
its folder in site-packages: nothing is downloaded at run time."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import pytest

from tests.compat.scenario import Target, new_bucket_name

duckdb = pytest.importorskip("duckdb", reason="pip install duckdb==1.4.4 (or shoal[test])")


def extension_directory() -> str:
    """Where duckdb-ext-httpfs put httpfs (…/duckdb_ext/extensions/vX.Y.Z/PLATFORM/)."""
    spec = importlib.util.find_spec("duckdb_ext")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip(
            "DuckDB's httpfs is not installed: pip install duckdb-ext-httpfs (or shoal[test])"
        )
    folder = Path(next(iter(spec.submodule_search_locations))) / "extensions"
    if not (folder / f"v{duckdb.__version__}").is_dir():
        found = sorted(p.name for p in folder.iterdir())
        pytest.skip(f"duckdb-ext-httpfs has {found}, not v{duckdb.__version__}: match the two")
    return str(folder)


def connect(target: Target) -> Any:
    con = duckdb.connect()
    con.execute(f"SET extension_directory = '{extension_directory()}'")
    con.execute("SET autoinstall_known_extensions = false")
    con.execute("LOAD httpfs")
    if target.ca_file:
        con.execute("SET enable_server_cert_verification = true")
        con.execute(f"SET ca_cert_file = '{target.ca_file}'")
    con.execute(
        f"""CREATE SECRET shoal (
            TYPE s3, KEY_ID '{target.access_key}', SECRET '{target.secret_key}',
            REGION '{target.region}', ENDPOINT '{target.host_port}', URL_STYLE 'path',
            USE_SSL {str(target.https).lower()})"""
    )
    return con


def test_copy_parquet_and_glob(target: Target, verifier: Any, cleanup_buckets: list[str]) -> None:
    bucket = new_bucket_name("duckdb")
    cleanup_buckets.append(bucket)
    verifier.create_bucket(Bucket=bucket)
    con = connect(target)
    for part in range(3):
        con.execute(
            f"""COPY (SELECT {part} AS part, i, 'row ' || i AS label FROM range(20000) t(i))
                TO 's3://{bucket}/events/part-{part}.parquet' (FORMAT parquet)"""
        )
    verifier.put_object(Bucket=bucket, Key="events/readme.txt", Body=b"not parquet")
    listed = sorted(o["Key"] for o in verifier.list_objects_v2(Bucket=bucket)["Contents"])
    assert listed[:3] == [f"events/part-{p}.parquet" for p in range(3)]
    count, parts, total = con.execute(
        f"SELECT count(*), count(DISTINCT part), sum(i) FROM 's3://{bucket}/events/*.parquet'"
    ).fetchone()
    assert (count, parts, total) == (60000, 3, 3 * sum(range(20000)))
    # A projection and a filter read only parts of a file: ranged GETs.
    label = con.execute(
        f"SELECT label FROM read_parquet('s3://{bucket}/events/part-1.parquet') WHERE i = 12345"
    ).fetchone()
    assert label == ("row 12345",)
    globbed = con.execute(f"SELECT file FROM glob('s3://{bucket}/events/*.parquet')").fetchall()
    assert sorted(f for (f,) in globbed) == [f"s3://{bucket}/{k}" for k in listed[:3]]
