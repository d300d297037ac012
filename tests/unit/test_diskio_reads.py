"""Whole-file reads with plain descriptor calls (storage.diskio): what is read is what
was written, whatever the size (empty, below and above one read's worth)."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shoal.storage.diskio import CHUNK, read_file, read_whole


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 3 * CHUNK + 7), st.binary(min_size=1, max_size=64))
def test_a_file_reads_back_whole(size: int, pattern: bytes) -> None:
    data = (pattern * (size // len(pattern) + 1))[:size]
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "f"
        path.write_bytes(data)
        assert read_whole(str(path)) == data
        assert read_file(str(path)) == data


def test_a_missing_file_is_file_not_found(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        read_whole(str(tmp_path / "nope"))
