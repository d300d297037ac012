"""The erasure store's typed records: what drives already hold still reads, and every
record survives its own round trip through JSON."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shoal.storage.backend import ObjectMeta, PartInfo
from shoal.storage.erasure.records import (
    SCHEMA,
    PartLayout,
    PartRecord,
    RecordSummary,
    UnsupportedRecord,
    VersionRecord,
)
from shoal.storage.records import dumps, loads, meta_to_dict

WHEN = datetime(2026, 12, 3, 10, 0, 0, tzinfo=UTC)

#: A PUT's entry and a delete marker exactly as drives stored them before the record
#: was typed (no "schema" field, a marker without "rot").
OLD_PUT = {
    "v": "18e0000000000001aaaaaaaa",
    "rot": 3,
    "meta": {
        "format": 1,
        "key": "a/b.txt",
        "size": 11,
        "etag": "5eb63bbbe01eeed093cb22bb8f5acdc3",
        "last_modified": "2026-12-03T10:00:00Z",
        "content_type": "text/plain",
        "headers": {"x-amz-storage-class": "STANDARD_IA"},
        "user_metadata": {"colour": "blue"},
        "checksums": {"CRC32C": "yZRlqg=="},
        "checksum_type": "FULL_OBJECT",
        "parts": None,
        "extra": {},
    },
    "parts": [{"n": 0, "size": 11, "chunk": 65536, "crc": [[1, 2, 3, 4, 5, 6]]}],
}
OLD_MARKER = {"v": "18e0000000000002aaaaaaaa", "deleted": True, "meta": {}, "parts": []}


def test_a_record_in_the_old_shape_reads_as_schema_one() -> None:
    record = VersionRecord.from_dict(OLD_PUT)
    assert record.vid == OLD_PUT["v"] and record.rot == 3 and not record.deleted
    assert record.meta is not None and record.meta.etag == OLD_PUT["meta"]["etag"]
    assert record.meta.user_metadata == {"colour": "blue"}
    assert record.meta.last_modified == WHEN
    assert record.parts == (PartLayout(0, 11, 65536, ((1, 2, 3, 4, 5, 6),)),)
    assert record.size == 11 and record.inline is None
    assert record.order == OLD_PUT["v"]  # ordered by its id, as before "order" existed
    marker = VersionRecord.from_dict(OLD_MARKER)
    assert marker.deleted and marker.meta is None and marker.parts == () and marker.size is None


def test_what_is_written_keeps_the_old_key_names() -> None:
    written = VersionRecord.from_dict(OLD_PUT).to_dict()
    assert written["schema"] == SCHEMA
    for name in ("v", "rot", "parts"):
        assert written[name] == OLD_PUT[name]
    for name, value in OLD_PUT["meta"].items():  # type: ignore[attr-defined]
        assert written["meta"][name] == value
    marker = VersionRecord.from_dict(OLD_MARKER).to_dict()
    assert marker["deleted"] is True and marker["meta"] == {} and marker["parts"] == []
    # A listing summarises the stored dict directly: the same answer either way.
    assert RecordSummary.of_stored(written) == RecordSummary.of_stored(OLD_PUT)
    assert RecordSummary.of_stored(OLD_PUT).storage_class == "STANDARD_IA"


def test_a_newer_schema_is_refused_not_misread() -> None:
    with pytest.raises(UnsupportedRecord):
        VersionRecord.from_dict({**OLD_PUT, "schema": SCHEMA + 1})


def test_the_commit_order_ranks_versions_and_round_trips() -> None:
    began_first = VersionRecord("18e0000000000001aaaaaaaa", committed="18e0000000000009aaaaaaaa")
    began_later = VersionRecord("18e0000000000002aaaaaaaa", committed="18e0000000000003aaaaaaaa")
    assert began_first.rank > began_later.rank  # committed last: the newer version
    stored = began_first.to_dict()
    assert stored["v"] == began_first.vid and stored["order"] == began_first.committed
    assert VersionRecord.from_dict(stored) == began_first
    assert RecordSummary.of_stored(stored).order == began_first.committed


def test_an_inline_shard_round_trips() -> None:
    record = VersionRecord("v1", 1, None, parts=(), inline=b"\x00\xffshard")
    assert VersionRecord.from_dict(loads(dumps(record.to_dict()))) == record


_text = st.text(st.characters(blacklist_categories=["Cs"]), max_size=12)
_crcs = st.lists(
    st.lists(st.integers(0, 2**32 - 1), min_size=1, max_size=6).map(tuple), max_size=4
).map(tuple)
_layouts = st.builds(
    PartLayout, st.integers(0, 10_000), st.integers(0, 2**40), st.integers(1, 2**26), _crcs
)
_parts_info = st.builds(
    PartInfo,
    number=st.integers(1, 10_000),
    size=st.integers(0, 2**40),
    etag=_text,
    last_modified=st.just(WHEN),
    checksums=st.dictionaries(st.sampled_from(["CRC32", "SHA256"]), _text, max_size=2),
)
_metas = st.builds(
    ObjectMeta,
    key=_text,
    size=st.integers(0, 2**40),
    etag=_text,
    last_modified=st.just(WHEN),
    content_type=st.just("text/plain"),
    headers=st.dictionaries(_text, _text, max_size=3),
    user_metadata=st.dictionaries(_text, _text, max_size=3),
    parts=st.none() | st.lists(_parts_info, max_size=3),
)
_records = st.builds(
    VersionRecord,
    vid=_text.filter(bool),
    rot=st.integers(0, 15),
    meta=st.none() | _metas,
    deleted=st.booleans(),
    parts=st.lists(_layouts, max_size=3).map(tuple),
    inline=st.none() | st.binary(max_size=64),
    committed=st.none() | _text.filter(bool),
)


@given(_records)
def test_every_record_survives_json(record: VersionRecord) -> None:
    stored = json.loads(dumps(record.to_dict()))
    assert VersionRecord.from_dict(stored) == record
    if record.meta is not None:  # the meta is exactly what the standalone sidecar holds
        assert stored["meta"] == json.loads(dumps(meta_to_dict(record.meta)))


@given(_parts_info, st.integers(1, 2**26), _crcs)
def test_a_part_record_survives_json(info: PartInfo, chunk: int, crcs: tuple) -> None:  # type: ignore[type-arg]
    record = PartRecord("18e0000000000001aaaaaaaa", info, info.size, chunk, crcs)
    stored = json.loads(dumps(record.to_dict()))
    assert set(stored) == {"v", "info", "size", "chunk", "crc"}
    assert PartRecord.from_dict(stored) == record
    assert record.layout().number == info.number and record.layout(0).number == 0


def test_an_inline_shard_round_trips_and_a_schema_3_record_still_reads() -> None:
    with_shard = VersionRecord.from_dict({**OLD_PUT, "schema": 3, "inline": "AAEC/w=="})
    assert with_shard.inline == b"\x00\x01\x02\xff" and with_shard.is_inline
    assert VersionRecord.from_dict(with_shard.to_dict()) == with_shard
    assert with_shard.to_dict()["schema"] == SCHEMA == 4
    # For every drive: without this drive's shard; the rest the same.
    assert with_shard.shared().inline is None and with_shard.shared().is_inline
    assert with_shard.shared().to_dict() == {
        k: v for k, v in with_shard.to_dict().items() if k != "inline"
    }
    # Damaged base64 reads as no bytes (its CRC32C then fails), not as a broken record.
    assert VersionRecord.from_dict({**OLD_PUT, "inline": "!!"}).inline == b""
    assert not VersionRecord.from_dict(OLD_PUT).is_inline


_tricky = st.sampled_from(['"inl":true,', '{"inl":true,"inline":"x"}', "inl", ""]) | _text


@given(_records, st.binary(max_size=200), st.dictionaries(_tricky, _tricky, max_size=3))
def test_a_drives_copy_is_encoded_as_if_made_afresh(
    record: VersionRecord, shard: bytes, user_metadata: dict[str, str]
) -> None:
    """holding() splices the shard into the shared entry's encoding: the bytes must be
    what encoding the copy itself gives, whatever the metadata spells."""
    if record.meta is not None:
        record = replace(record, meta=replace(record.meta, user_metadata=user_metadata))
    shared = replace(record, inline=None, inlined=True)
    own = shared.holding(shard)
    afresh = replace(record, inline=shard)
    assert own == afresh
    assert own.stored == dumps(afresh.to_dict())
    assert own.summary == afresh.summary
    assert VersionRecord.from_dict(loads(own.stored)) == afresh
