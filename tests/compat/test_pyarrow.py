"""pyarrow's S3FileSystem (the AWS C++ SDK underneath): write a partitioned Parquet
dataset and read it back, with a filter that reads parts of files by range."""

from __future__ import annotations

from typing import Any

import pytest

from tests.compat.scenario import Target, new_bucket_name

pa = pytest.importorskip("pyarrow", reason="pip install pyarrow (or shoal[test])")
import pyarrow.dataset as ds  # noqa: E402
import pyarrow.fs as pafs  # noqa: E402


def filesystem(target: Target) -> Any:
    return pafs.S3FileSystem(
        access_key=target.access_key,
        secret_key=target.secret_key,
        region=target.region,
        scheme="https" if target.https else "http",
        endpoint_override=target.host_port,
        tls_ca_file_path=target.ca_file,
        allow_bucket_creation=True,
        allow_bucket_deletion=True,
    )


def test_dataset_write_read(target: Target, verifier: Any, cleanup_buckets: list[str]) -> None:
    bucket = new_bucket_name("pyarrow")
    cleanup_buckets.append(bucket)
    fs = filesystem(target)
    fs.create_dir(bucket)
    table = pa.table(
        {
            "city": ["oslo", "lima", "oslo", "pune"] * 5000,
            "n": list(range(20000)),
        }
    )
    ds.write_dataset(
        table,
        f"{bucket}/cities",
        filesystem=fs,
        format="parquet",
        partitioning=["city"],
        partitioning_flavor="hive",
    )
    listed = fs.get_file_info(pafs.FileSelector(f"{bucket}/cities", recursive=True))
    files = sorted(i.path for i in listed if i.type == pafs.FileType.File)
    assert [f.split("/")[2] for f in files] == ["city=lima", "city=oslo", "city=pune"]
    dataset = ds.dataset(f"{bucket}/cities", filesystem=fs, format="parquet", partitioning="hive")
    assert dataset.count_rows() == 20000
    oslo = dataset.to_table(filter=ds.field("city") == "oslo", columns=["n"])
    assert oslo.num_rows == 10000
    assert sum(oslo.column("n").to_pylist()) == sum(range(0, 20000, 4)) + sum(range(2, 20000, 4))
    with fs.open_input_file(files[0]) as f:
        f.seek(4)
        assert f.read(4) != b""  # a ranged read in the middle of an object
    fs.delete_dir(f"{bucket}/cities")
    assert verifier.list_objects_v2(Bucket=bucket)["KeyCount"] == 0
    fs.delete_dir(bucket)
    assert bucket not in [b["Name"] for b in verifier.list_buckets()["Buckets"]]
