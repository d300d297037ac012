"""ErasureCoder: round trips, every loss pattern within m, the no-decode fast path,
byte-identical repair, layout checks with their reasons, and concurrent use."""

from __future__ import annotations

import itertools
import random
import struct
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from pyeclib.ec_iface import ECDriver, ECDriverError

from shoal.storage.erasure.coder import (
    BACKENDS,
    DEFAULT_BACKEND,
    HEADER_SIZE,
    ErasureCoder,
    NotEnoughShards,
    ShardError,
    check_layout,
)

MiB = 1 << 20
RNG = random.Random(20240611)


def blob(size: int) -> bytes:
    return RNG.randbytes(size)


LAYOUTS = [
    ("isa_l_rs_vand", 1, 1),
    ("isa_l_rs_vand", 2, 1),
    ("isa_l_rs_vand", 4, 2),
    ("isa_l_rs_vand", 6, 3),
    ("isa_l_rs_cauchy", 1, 1),
    ("isa_l_rs_cauchy", 2, 1),
    ("isa_l_rs_cauchy", 4, 2),
    ("isa_l_rs_cauchy", 6, 3),
    ("isa_l_rs_cauchy", 8, 4),
]


def sizes_for(k: int) -> list[int]:
    """Empty, tiny, odd, just past a multiple of k*16 (ISA-L's alignment), 4 MiB."""
    return [0, 1, 3, k * 16 + 1, k * 64 - 1, 100_003, 4 * MiB]


def test_default_backend_is_allowed() -> None:
    assert DEFAULT_BACKEND in BACKENDS
    assert ErasureCoder(4, 2).backend == DEFAULT_BACKEND


@pytest.mark.parametrize("backend", BACKENDS)
def test_header_is_80_bytes(backend: str) -> None:
    """Empty input is legal and yields header-only shards; every shard is the header
    plus a payload whose length the header records, as pyeclib's own parser agrees."""
    coder = ErasureCoder(4, 2, backend)
    assert [len(s) for s in coder.encode(b"")] == [HEADER_SIZE] * 6
    data = blob(1001)
    driver = ECDriver(k=4, m=2, ec_type=backend)
    for i, shard in enumerate(coder.encode(data)):
        meta = driver.get_metadata(shard, formatted=True)
        assert meta["index"] == i
        assert meta["size"] == len(shard) - HEADER_SIZE
        assert meta["orig_data_size"] == len(data)
        assert struct.unpack_from("<Q", shard, 12)[0] == len(data)


@pytest.mark.parametrize(("backend", "k", "m"), LAYOUTS)
def test_round_trip(backend: str, k: int, m: int) -> None:
    coder = ErasureCoder(k, m, backend)
    assert (coder.k, coder.m, coder.n, coder.backend) == (k, m, k + m, backend)
    for size in sizes_for(k):
        data = blob(size)
        shards = coder.encode(data)
        assert len(shards) == k + m
        assert len({len(s) for s in shards}) == 1
        everything = dict(enumerate(shards))
        assert coder.decode(everything, size) == data
        # Only the data shards: the fast path.
        assert coder.decode({i: shards[i] for i in range(k)}, size) == data
        # The first m data shards lost: a real decode.
        assert coder.decode({i: s for i, s in everything.items() if i >= m}, size) == data
        # Only parity plus the last data shards.
        last = dict(list(everything.items())[-k:])
        assert coder.decode(last, size) == data


@pytest.mark.parametrize("backend", BACKENDS)
def test_every_loss_within_m_for_4_plus_2(backend: str) -> None:
    coder = ErasureCoder(4, 2, backend)
    for size in (1, 4099, 4 * MiB + 3):
        data = blob(size)
        shards = coder.encode(data)
        for lost_count in range(3):
            for lost in itertools.combinations(range(6), lost_count):
                present = {i: s for i, s in enumerate(shards) if i not in lost}
                assert coder.decode(present, size) == data, (size, lost)


def test_fast_path_does_not_call_pyeclib(monkeypatch: pytest.MonkeyPatch) -> None:
    coder = ErasureCoder(4, 2)

    def refuse(*args: object, **kwargs: object) -> bytes:
        raise AssertionError("pyeclib called")

    monkeypatch.setattr(coder._driver, "decode", refuse)
    monkeypatch.setattr(coder._driver, "reconstruct", refuse)
    for size in (0, 1, 3, 65, 1001, 4 * MiB + 1):
        data = blob(size)
        shards = coder.encode(data)
        assert coder.decode({0: shards[0], 1: shards[1], 2: shards[2], 3: shards[3]}, size) == data
        assert coder.decode(dict(enumerate(shards)), size) == data
        assert coder.decode({i: shards[i] for i in (0, 1, 2, 3, 5)}, size) == data
    # The patch is live: a missing data shard does go to pyeclib.
    with pytest.raises(AssertionError, match="pyeclib called"):
        coder.decode({i: shards[i] for i in (1, 2, 3, 4)}, 4 * MiB + 1)


def test_degraded_decode_rebuilds_only_the_lost_data_shards(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    coder = ErasureCoder(6, 3)
    data = blob(60_001)
    shards = coder.encode(data)
    calls: list[list[int]] = []
    real = coder._driver.reconstruct

    def spy(fragments: list[bytes], indexes: list[int]) -> list[bytes]:
        calls.append(indexes)
        return real(fragments, indexes)

    monkeypatch.setattr(coder._driver, "reconstruct", spy)
    present = {i: s for i, s in enumerate(shards) if i not in (1, 4, 7)}
    assert coder.decode(present, len(data)) == data
    assert calls == [[1, 4]]


def test_corrupt_header_is_a_shard_error() -> None:
    """liberasurecode checks each header's own checksum when it has to compute."""
    coder = ErasureCoder(4, 2)
    shards = coder.encode(blob(5000))
    bad = bytearray(shards[4])
    bad[30] ^= 0xFF  # inside the checksummed metadata, outside the fields we read
    present = {1: shards[1], 2: shards[2], 3: shards[3], 4: bytes(bad)}
    with pytest.raises(ShardError, match="pyeclib refused shards"):
        coder.decode(present, 5000)


def test_buffers_other_than_bytes_are_accepted() -> None:
    """pyeclib takes only bytes and aborts the process on a memoryview fragment; the
    coder converts."""
    coder = ErasureCoder(4, 2)
    data = blob(5000)
    shards = coder.encode(memoryview(data))
    assert shards == coder.encode(bytearray(data)) == coder.encode(data)
    views = {i: memoryview(s) for i, s in enumerate(shards)}
    assert coder.decode(views, len(data)) == data
    assert coder.decode({i: bytearray(shards[i]) for i in (2, 3, 4, 5)}, len(data)) == data
    assert coder.reconstruct({i: views[i] for i in (1, 2, 4, 5)}, [0, 3]) == {
        0: shards[0],
        3: shards[3],
    }


@pytest.mark.parametrize("backend", BACKENDS)
def test_reconstruct_is_byte_identical(backend: str) -> None:
    coder = ErasureCoder(4, 2, backend)
    for size in (1, 4099, MiB + 7):
        shards = coder.encode(blob(size))
        for lost_count in (1, 2):
            for lost in itertools.combinations(range(6), lost_count):
                present = {i: s for i, s in enumerate(shards) if i not in lost}
                # Order of `missing` does not matter; results are keyed by index.
                rebuilt = coder.reconstruct(present, list(reversed(lost)))
                assert rebuilt == {i: shards[i] for i in lost}, (size, lost)


def test_reconstruct_ignores_a_shard_it_is_asked_to_replace() -> None:
    coder = ErasureCoder(4, 2)
    shards = coder.encode(blob(3000))
    corrupt = dict(enumerate(shards))
    corrupt[2] = corrupt[2][:HEADER_SIZE] + bytes(len(shards[2]) - HEADER_SIZE)
    assert coder.reconstruct(corrupt, [2]) == {2: shards[2]}
    assert coder.reconstruct(corrupt, []) == {}
    with pytest.raises(ValueError, match="out of range"):
        coder.reconstruct(corrupt, [6])


def test_not_enough_shards() -> None:
    coder = ErasureCoder(4, 2)
    shards = coder.encode(blob(1000))
    with pytest.raises(NotEnoughShards, match=r"3 of 6 shards present .*4 needed"):
        coder.decode({0: shards[0], 1: shards[1], 5: shards[5]}, 1000)
    with pytest.raises(NotEnoughShards, match="0 of 6"):
        coder.decode({}, 1000)
    with pytest.raises(NotEnoughShards, match="3 other shards present"):
        coder.reconstruct({i: shards[i] for i in (0, 1, 2, 5)}, [0, 3, 4])
    assert issubclass(NotEnoughShards, ValueError)


def test_shards_that_do_not_fit_are_refused() -> None:
    coder = ErasureCoder(4, 2)
    shards = coder.encode(blob(1000))
    other = coder.encode(blob(2000))
    same_size = coder.encode(blob(1000))
    with pytest.raises(ShardError, match=r"shard 3: .* bytes, others have"):
        coder.decode({0: shards[0], 1: shards[1], 2: shards[2], 3: other[3]}, 1000)
    with pytest.raises(ShardError, match="from a chunk of 1000 bytes, expected 999"):
        coder.decode({0: shards[0], 1: shards[1], 2: shards[2], 3: shards[3]}, 999)
    with pytest.raises(ShardError, match="header says index 4"):
        coder.decode({0: shards[0], 1: shards[1], 2: shards[2], 3: shards[4]}, 1000)
    with pytest.raises(ShardError, match="shorter than its header"):
        coder.decode({0: b"x" * 10}, 1000)
    with pytest.raises(ShardError, match="no liberasurecode header"):
        coder.decode({0: bytes(len(shards[0]))}, 1000)
    with pytest.raises(ValueError, match="out of range"):
        coder.decode({7: shards[0]}, 1000)
    # Same-sized shards of another chunk pass the header checks: telling them apart is
    # the per-shard checksum's and the version's job (see the module docstring).
    mixed = {0: shards[0], 1: shards[1], 2: shards[2], 3: same_size[3]}
    assert coder.decode(mixed, 1000) != coder.decode(dict(enumerate(shards)), 1000)


UNKNOWN = "unknown erasure backend 'jerasure_rs_vand': use one of isa_l_rs_vand, isa_l_rs_cauchy"
STALE = "parity shards must not exceed data shards: a lone stale copy could then outvote"
VAND = r"not guaranteed invertible for 5 or more parity shards.*use isa_l_rs_cauchy"


@pytest.mark.parametrize(
    ("k", "m", "backend", "match"),
    [
        (4, 2, "jerasure_rs_vand", UNKNOWN),
        (0, 1, "isa_l_rs_cauchy", "data shards must be at least 1"),
        (4, 0, "isa_l_rs_cauchy", "parity shards must be at least 1"),
        (20, 13, "isa_l_rs_cauchy", "must not exceed 32"),
        (2, 3, "isa_l_rs_cauchy", STALE),
        (6, 5, "isa_l_rs_vand", VAND),
        (12, 8, "isa_l_rs_vand", "isa_l_rs_vand with 8 parity shards is refused"),
    ],
)
def test_check_layout_says_why(k: int, m: int, backend: str, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        check_layout(k, m, backend)
    with pytest.raises(ValueError, match=match):
        ErasureCoder(k, m, backend)


def test_allowed_layouts() -> None:
    for k, m, backend in [
        (1, 1, "isa_l_rs_vand"),
        (8, 4, "isa_l_rs_vand"),
        (6, 5, "isa_l_rs_cauchy"),
        (16, 16, "isa_l_rs_cauchy"),
    ]:
        check_layout(k, m, backend)


def test_why_vand_is_refused_for_5_parity() -> None:
    """The reason behind the refusal, shown on the library itself: with 6+5 Vandermonde,
    losing shards 0, 2, 5, 7, 8 (within m) is not decodable; Cauchy decodes it."""
    data = blob(1000)
    for backend, ok in (("isa_l_rs_vand", False), ("isa_l_rs_cauchy", True)):
        driver = ECDriver(k=6, m=5, ec_type=backend)
        shards = driver.encode(data)
        rest = [s for i, s in enumerate(shards) if i not in (0, 2, 5, 7, 8)]
        if ok:
            assert driver.decode(rest) == data
        else:
            with pytest.raises(ECDriverError):
                driver.decode(rest)


def test_one_coder_from_many_threads() -> None:
    """8 threads share one coder (one pyeclib driver); every result must equal the one
    computed beforehand on a single thread."""
    coder = ErasureCoder(4, 2)
    cases = []
    for n in range(48):
        data = blob(RNG.choice([1, 777, 65_537, 300_001]))
        lost = RNG.sample(range(6), RNG.choice([1, 2]))
        cases.append((n, data, coder.encode(data), lost))
    names: set[str] = set()

    def work(case: tuple[int, bytes, list[bytes], list[int]]) -> None:
        _, data, expected, lost = case
        names.add(threading.current_thread().name)
        for _ in range(3):
            shards = coder.encode(data)
            assert shards == expected
            present = {i: s for i, s in enumerate(shards) if i not in lost}
            assert coder.decode(present, len(data)) == data
            assert coder.reconstruct(present, lost) == {i: expected[i] for i in lost}

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(work, cases))
    assert len(names) > 1


@pytest.mark.anyio
async def test_async_versions_run_on_worker_threads() -> None:
    coder = ErasureCoder(4, 2)
    seen: list[str] = []
    real_encode = coder._driver.encode

    def encode(data: bytes) -> list[bytes]:
        seen.append(threading.current_thread().name)
        return real_encode(data)

    coder._driver.encode = encode  # type: ignore[method-assign]
    data = blob(10_000)
    shards = await coder.encode_async(data)
    assert seen and seen[0].startswith("shoal-io")
    assert seen[0] != threading.current_thread().name
    present = {i: s for i, s in enumerate(shards) if i not in (0, 4)}
    assert await coder.decode_async(present, len(data)) == data
    assert await coder.reconstruct_async(present, [0, 4]) == {0: shards[0], 4: shards[4]}
