"""storage.checksums.crc32c: google-crc32c's value for every size and buffer type,
taken by awscrt's faster code from CRC32C_FAST_MIN bytes on once it is loaded."""

from __future__ import annotations

import google_crc32c
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shoal.storage import checksums
from shoal.storage.checksums import CRC32C_FAST_MIN, crc32c


@pytest.fixture(params=["google-crc32c only", "awscrt loaded"])
def implementation(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "awscrt loaded":
        checksums.warm_up()
        assert checksums._crt is not None
    else:
        monkeypatch.setattr(checksums, "_crt", None)
    return str(request.param)


@pytest.mark.parametrize("size", [0, 1, 4096, CRC32C_FAST_MIN - 1, CRC32C_FAST_MIN, 3 << 20])
@pytest.mark.parametrize("kind", [bytes, bytearray, memoryview])
def test_every_buffer_type_and_size_gives_google_crc32cs_value(
    implementation: str, size: int, kind: type
) -> None:
    data = bytes((i * 7 + size) % 251 for i in range(min(size, 4096))) * (size // 4096 + 1)
    data = data[:size]
    buf = kind(bytearray(data)) if kind is memoryview else kind(data)
    assert crc32c(buf) == google_crc32c.value(data)


def test_awscrt_takes_the_large_buffers_once_loaded(monkeypatch: pytest.MonkeyPatch) -> None:
    """The fast code really runs (not only the fallback): a stand-in that counts calls."""
    checksums.warm_up()
    calls: list[int] = []
    real = checksums._crt

    class Counting:
        @staticmethod
        def crc32c(data: memoryview, previous: int) -> int:
            calls.append(len(data))
            return int(real.crc32c(data, previous))

    monkeypatch.setattr(checksums, "_crt", Counting)
    big, small = b"x" * CRC32C_FAST_MIN, b"x" * (CRC32C_FAST_MIN - 1)
    assert crc32c(big) == google_crc32c.value(big)
    assert crc32c(small) == google_crc32c.value(small)
    assert calls == [CRC32C_FAST_MIN]


@settings(max_examples=60, deadline=None)
@given(
    head=st.binary(max_size=2048),
    tail_size=st.sampled_from([0, 17, CRC32C_FAST_MIN - 5, CRC32C_FAST_MIN + 3]),
    loaded=st.booleans(),
)
def test_extending_a_crc_is_the_crc_of_the_whole(head: bytes, tail_size: int, loaded: bool) -> None:
    """A running checksum (checksums.Checksum's CRC32C) fed in pieces of any size."""
    saved = checksums._crt
    try:
        if loaded:
            checksums.warm_up()
        else:
            checksums._crt = None
        tail = bytes(range(256)) * (tail_size // 256) + bytes(tail_size % 256)
        assert crc32c(memoryview(tail), crc32c(head)) == google_crc32c.value(head + tail)
    finally:
        checksums._crt = saved
