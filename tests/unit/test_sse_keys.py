"""Data-key wrapping and SSE-C key proofs (shoal.sse.keys)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shoal.sse.errors import TamperedError
from shoal.sse.keys import WRAPPED_SIZE, key_proof, new_data_key, proof_matches, unwrap, wrap

keys32 = st.binary(min_size=32, max_size=32)


@given(keys32, keys32, st.binary(max_size=200))
def test_wrap_round_trip(kek: bytes, data_key: bytes, aad: bytes) -> None:
    wrapped = wrap(kek, data_key, aad)
    assert len(wrapped) == WRAPPED_SIZE
    assert data_key not in wrapped
    assert unwrap(kek, wrapped, aad) == data_key


@given(keys32, keys32, keys32)
def test_wrong_kek_is_refused(kek: bytes, other: bytes, data_key: bytes) -> None:
    if kek == other:
        return
    with pytest.raises(TamperedError):
        unwrap(other, wrap(kek, data_key, b"b/k"), b"b/k")


def test_wrong_aad_is_refused() -> None:
    """A wrapped key moved to another object's record does not open."""
    kek, data_key = new_data_key(), new_data_key()
    wrapped = wrap(kek, data_key, b"bucket/a")
    with pytest.raises(TamperedError):
        unwrap(kek, wrapped, b"bucket/b")


@given(st.data())
def test_any_damage_to_a_wrapped_key_is_refused(data: st.DataObject) -> None:
    kek, data_key = bytes(32), bytes(range(32))
    wrapped = bytearray(wrap(kek, data_key, b"x"))
    pos = data.draw(st.integers(0, len(wrapped) - 1))
    wrapped[pos] ^= 1 << data.draw(st.integers(0, 7))
    with pytest.raises(TamperedError):
        unwrap(kek, bytes(wrapped), b"x")
    with pytest.raises(TamperedError):
        unwrap(kek, bytes(wrapped[:pos]), b"x")


def test_wrapping_is_randomised_and_keys_are_fresh() -> None:
    kek, data_key = new_data_key(), new_data_key()
    assert len(data_key) == 32 and data_key != new_data_key()
    assert wrap(kek, data_key, b"") != wrap(kek, data_key, b"")


def test_bad_key_lengths_are_errors() -> None:
    with pytest.raises(ValueError):
        wrap(bytes(16), bytes(32), b"")
    with pytest.raises(ValueError):
        wrap(bytes(32), bytes(31), b"")
    with pytest.raises(ValueError):
        unwrap(bytes(31), bytes(WRAPPED_SIZE), b"")


@given(keys32, keys32)
def test_proof_matches_only_its_key(key: bytes, other: bytes) -> None:
    proof = key_proof(key)
    assert proof_matches(key, proof)
    assert proof_matches(other, proof) == (key == other)
    assert key.hex() not in proof


def test_proofs_are_salted() -> None:
    key = new_data_key()
    assert key_proof(key) != key_proof(key)


@pytest.mark.parametrize(
    "proof",
    ["", "hmac-sha256", "hmac-sha256::", "md5:AAAA:AAAA", "hmac-sha256:!!:AAAA"],
)
def test_malformed_proofs_are_tampered(proof: str) -> None:
    with pytest.raises(TamperedError):
        proof_matches(bytes(32), proof)


def test_truncated_proof_is_tampered() -> None:
    proof = key_proof(bytes(32))
    with pytest.raises(TamperedError):
        proof_matches(bytes(32), proof[:-4])
