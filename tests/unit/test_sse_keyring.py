"""The `[kms]` config and the keyring built from it (shoal.sse.keyring): loading from
TOML, env and secret files, validation errors that never show a secret, ARN
resolution, sealing, and the fingerprint clusters compare."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from shoal.config import ConfigError, load_config
from shoal.sse.errors import KeyNotFound, TamperedError
from shoal.sse.keyring import Keyring

K1 = bytes(range(32))
K2 = bytes(range(100, 132))
S1 = base64.b64encode(K1).decode()
S2 = base64.b64encode(K2).decode()


def kms(keys: list[dict[str, Any]], **more: Any) -> dict[str, Any]:
    return {"kms": {"keys": keys, **more}}


def keyring(settings: dict[str, Any]) -> Keyring:
    return Keyring.from_config(load_config(settings, env={}).kms)


def error(settings: dict[str, Any], env: dict[str, str] | None = None) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load_config(settings, env=env or {})
    return info.value


def test_no_keys_no_default() -> None:
    ring = keyring({})
    assert ring.default_id is None and ring.ids == []
    assert not ring.has("key-1")
    with pytest.raises(KeyNotFound):
        ring.seal("key-1", bytes(32), b"b/k")


def test_keys_from_toml_default_is_the_first(tmp_path: Path) -> None:
    config = tmp_path / "shoal.toml"
    tables = [f'[[kms.keys]]\nid = "key-{i}"\nsecret = "{s}"\n' for i, s in ((1, S1), (2, S2))]
    config.write_text("\n".join(tables))
    cfg = load_config(config_file=config, env={})
    ring = Keyring.from_config(cfg.kms)
    assert ring.ids == ["key-1", "key-2"] and ring.default_id == "key-1"
    assert cfg.kms.allow_sse_c_over_http is False
    assert S1 not in repr(cfg) and S1 not in repr(ring)
    # to_toml (how configs reach node processes) writes the keys back
    again = tmp_path / "again.toml"
    again.write_text(cfg.to_toml())
    assert load_config(config_file=again, env={}) == cfg


def test_secret_file_and_default(tmp_path: Path) -> None:
    path = tmp_path / "key-2"
    path.write_text(S2 + "\n")
    ring = keyring(
        kms(
            [{"id": "key-1", "secret": S1}, {"id": "key-2", "secret_file": str(path)}],
            default_key_id="key-2",
        )
    )
    assert ring.default_id == "key-2"
    data_key = bytes(range(7, 39))
    wrapped = ring.seal("key-2", data_key, b"b/k")
    assert Keyring({"key-2": K2}).unseal("key-2", wrapped, b"b/k") == data_key
    with pytest.raises(TamperedError):
        Keyring({"key-2": K1}).unseal("key-2", wrapped, b"b/k")


def test_keys_from_the_environment(tmp_path: Path) -> None:
    path = tmp_path / "k"
    path.write_text(S1)
    env = {
        "SHOAL_KMS__KEYS": json.dumps([{"id": "key-1", "secret_file": str(path)}]),
        "SHOAL_KMS__ALLOW_SSE_C_OVER_HTTP": "true",
    }
    cfg = load_config(env=env)
    assert Keyring.from_config(cfg.kms).has("key-1")
    assert cfg.kms.allow_sse_c_over_http is True


@pytest.mark.parametrize(
    ("settings", "key", "says"),
    [
        (kms([{"id": "a", "secret": S1[:-3]}]), "kms.keys[0].secret", "not base64"),
        (
            kms([{"id": "a", "secret": base64.b64encode(K1[:16]).decode()}]),
            "kms.keys[0].secret",
            "decodes to 16 bytes, not 32",
        ),
        (kms([{"id": "a"}]), "kms.keys[0]", "needs secret or secret_file (one of them)"),
        (
            kms([{"id": "a", "secret": S1, "secret_file": "/x"}]),
            "kms.keys[0]",
            "not both",
        ),
        (
            kms([{"id": "a", "secret": S1}, {"id": "a", "secret": S2}]),
            "kms.keys[1].id",
            "duplicate key id 'a'",
        ),
        (kms([{"id": "", "secret": S1}]), "kms.keys[0].id", "expected a key id"),
        (kms([{"secret": S1}]), "kms.keys[0]", "missing id"),
        (kms([{"id": "a", "secret": S1}], default_key_id="b"), "kms.default_key_id", "no key 'b'"),
        (kms([{"id": "a", "secret": S1, "colour": "red"}]), "kms.keys[0].colour", "unknown key"),
        (kms([f"a:{S1}"]), "kms.keys[0]", "expected a table with id"),
        ({"kms": {"keys": {"id": "a", "secret": S1}}}, "kms.keys", "expected a list"),
    ],
)
def test_validation_names_key_and_field_never_the_secret(
    settings: dict[str, Any], key: str, says: str
) -> None:
    exc = error(settings)
    assert exc.key == key, str(exc)
    assert str(exc).startswith(key + ":"), str(exc)
    assert says in str(exc)
    for secret in (S1, S1[:-3], S2, base64.b64encode(K1[:16]).decode()):
        assert secret not in str(exc)


def test_secret_file_problems(tmp_path: Path) -> None:
    missing = error(kms([{"id": "a", "secret_file": str(tmp_path / "nope")}]))
    assert missing.key == "kms.keys[0].secret_file" and "cannot read" in str(missing)
    short = tmp_path / "short"
    short.write_text(base64.b64encode(K1[:31]).decode())
    bad = error(kms([{"id": "a", "secret_file": str(short)}]))
    assert bad.key == "kms.keys[0].secret_file"
    assert "decodes to 31 bytes" in str(bad) and short.read_text() not in str(bad)
    binary = tmp_path / "binary"
    binary.write_bytes(b"\xff\xfe" + K1)
    assert "not UTF-8" in str(error(kms([{"id": "a", "secret_file": str(binary)}])))


def test_secret_from_the_environment_is_not_echoed() -> None:
    bad = json.dumps({"id": "a", "secret": S1})  # a table, not a list of them
    exc = error({}, env={"SHOAL_KMS__KEYS": bad})
    assert str(exc).startswith("kms.keys:") and S1 not in str(exc)
    short = json.dumps([{"id": "a", "secret": S1[:20]}])
    exc = error({}, env={"SHOAL_KMS__KEYS": short})
    assert exc.key == "kms.keys[0].secret" and S1[:20] not in str(exc)


def test_resolve_ids_aliases_and_arns() -> None:
    ring = Keyring({"key-1": K1, "key-2": K2})
    assert ring.resolve("key-1") == "key-1"
    assert ring.resolve("arn:aws:kms:us-east-1:123456789012:key/key-2") == "key-2"
    assert ring.resolve("alias/key-1") == "key-1"
    assert ring.resolve("arn:aws:kms:eu-west-1:1:alias/key-1") == "key-1"
    for bad in (
        "key-3",
        "",
        "arn:aws:kms:us-east-1:123456789012:key/key-3",
        "arn:aws:s3:us-east-1:123456789012:key/key-1",
        "arn:aws:kms:us-east-1:key/key-1",
        "arn:aws:kms:us-east-1:1:other/key-1",
    ):
        with pytest.raises(KeyNotFound) as info:
            ring.resolve(bad)
        assert info.value.key_id == bad


def test_fingerprint_equal_iff_same_keys() -> None:
    a = Keyring({"key-1": K1, "key-2": K2})
    assert a.fingerprint() == Keyring({"key-2": K2, "key-1": K1}, "key-2").fingerprint()
    assert a.fingerprint() != Keyring({"key-1": K1}).fingerprint()
    assert a.fingerprint() != Keyring({"key-1": K1, "key-2": K1}).fingerprint()
    assert a.fingerprint() != Keyring({"key-1": K1, "key-3": K2}).fingerprint()
    assert Keyring({}).fingerprint() == Keyring({}).fingerprint() != a.fingerprint()
    for secret in (K1, K2):
        assert secret.hex() not in a.fingerprint()
        assert base64.b64encode(secret).decode() not in a.fingerprint()


def test_bad_default_and_key_sizes() -> None:
    with pytest.raises(KeyNotFound):
        Keyring({"key-1": K1}, "key-2")
    with pytest.raises(ValueError):
        Keyring({"key-1": K1[:16]})
