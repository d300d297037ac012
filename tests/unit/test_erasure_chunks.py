"""Which chunks a read of an erasure-coded object touches (storage.erasure.versions):
`chunks_for` works the range's chunks out from the parts' sizes, and must name exactly
the chunks of `chunk_refs` (every chunk of the object) that hold a byte of the range."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from shoal.storage.erasure.records import PartLayout
from shoal.storage.erasure.versions import chunk_refs, chunks_for

MiB = 1 << 20


def layout(number: int, size: int, chunk: int) -> PartLayout:
    """A part as a PUT or an upload stores it: one CRC tuple per chunk, the last shorter."""
    count = -(-size // chunk)
    return PartLayout(number, size, chunk, tuple((number, i) for i in range(count)))


@st.composite
def objects(draw: st.DrawFn) -> tuple[list[PartLayout], int, int]:
    """Parts of an object (a plain PUT's part 0, or numbered parts of any chunk size,
    empty ones included) and a range [start, end] that may reach past the object's end,
    or be empty."""
    plain = draw(st.booleans())
    sizes = [draw(st.integers(0, 60))] if plain else draw(st.lists(st.integers(0, 60), max_size=4))
    parts = [
        layout(0 if plain else n + 1, size, draw(st.integers(1, 16)))
        for n, size in enumerate(sizes)
    ]
    total = sum(sizes)
    start = draw(st.integers(0, total + 2))
    end = draw(st.integers(start - 2, total + 2))
    return parts, start, end


@given(objects())
def test_a_range_names_exactly_the_chunks_holding_its_bytes(
    case: tuple[list[PartLayout], int, int],
) -> None:
    parts, start, end = case
    every = chunk_refs("v", parts)
    holding = [r for r in every if r.offset <= end and r.offset + r.size > start]
    # (An empty range, end before start, holds no byte and reads no chunk.)
    assert chunks_for("v", parts, start, end) == (holding if start <= end else [])


def test_a_range_of_a_large_object_makes_only_its_own_chunks() -> None:
    # 1 GiB in 4 MiB chunks: a 1 MiB range across one chunk boundary is two chunks.
    (part,) = parts = [layout(0, 1024 * MiB, 4 * MiB)]
    start = 100 * 4 * MiB - MiB // 2
    refs = chunks_for("b/k/v1", parts, start, start + MiB - 1)
    assert [(r.base, r.index, r.offset, r.size) for r in refs] == [
        ("b/k/v1", 99, 99 * 4 * MiB, 4 * MiB),
        ("b/k/v1", 100, 100 * 4 * MiB, 4 * MiB),
    ]
    assert [r.crcs for r in refs] == [part.crcs[99], part.crcs[100]]
    # The last, shorter chunk of a multipart object's second part, under its own folder.
    parts = [layout(1, 10 * MiB, 4 * MiB), layout(2, 9 * MiB, 4 * MiB)]
    (last,) = chunks_for("v", parts, 19 * MiB - 1, 19 * MiB - 1)
    assert (last.base, last.index, last.offset, last.size) == ("v/part-2", 2, 18 * MiB, MiB)
