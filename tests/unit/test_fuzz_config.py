"""Property tests for the configuration loader: any TOML document, SHOAL_* environment
and overrides yield a Config or a ConfigError whose message starts with the key at fault
(or the variable, or the file), never another exception; a Config written back out with
to_toml() loads to an equal one."""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hypothesis import example, given
from hypothesis import strategies as st

from shoal.config import Config, ConfigError, load_config
from shoal.config.docs import _toml_str, env_name, iter_settings

KEYS = [key for key, *_ in iter_settings()]
SECTIONS = sorted({key.rsplit(".", 1)[0] for key in KEYS if "." in key})


def spellings(key: str) -> st.SearchStrategy[str]:
    """A dotted key as written: as is, camelCase, SHOUTING, or a near miss."""
    camel = ".".join(
        part.split("_")[0] + "".join(w.title() for w in part.split("_")[1:])
        for part in key.split(".")
    )
    return st.sampled_from([key, key, camel, key.upper(), key + "x", key.replace(".", "_")])


scalars = st.one_of(
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.integers(min_value=0, max_value=70000),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=40),
    st.sampled_from(["", " ", "0.0.0.0", "127.0.0.1", "info", "JSON", "a:1", "host:70000"]),
    st.datetimes(min_value=dt.datetime(1, 1, 1), max_value=dt.datetime(9999, 1, 1)),
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.text(min_size=1, max_size=12), inner, max_size=4)
    ),
    max_leaves=10,
)
credential = st.fixed_dictionaries(
    {"access_key_id": st.text(max_size=8), "secret_access_key": st.text(max_size=8)}
)


@st.composite
def documents(draw: st.DrawFn) -> dict[str, Any]:
    """A nested mapping of settings: known keys in several spellings, unknown ones,
    sections given as scalars, credentials as tables or not."""
    doc: dict[str, Any] = {}
    for _ in range(draw(st.integers(0, 6))):
        dotted = draw(st.sampled_from(KEYS).flatmap(spellings) | st.text(min_size=1, max_size=12))
        value = draw(
            st.lists(credential | values, max_size=3) if dotted.startswith("auth.cred") else values
        )
        node = doc
        *parents, leaf = dotted.split(".")
        for part in parents:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                break
            node = child
        else:
            node[leaf] = value
    if draw(st.booleans()):
        doc[draw(st.sampled_from(SECTIONS).map(lambda s: s.split(".")[0]))] = draw(scalars)
    return doc


def toml_key(key: str) -> str:
    return _toml_str(key)


def toml_text(value: Any) -> str:
    """TOML for a value as an inline table, array or scalar (keys always quoted)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        return ("inf" if value > 0 else "-inf") if math.isinf(value) else repr(value)
    if isinstance(value, str):
        return _toml_str(value)
    if isinstance(value, dt.datetime):
        return value.isoformat()
    if isinstance(value, list):
        return "[" + ", ".join(toml_text(v) for v in value) + "]"
    return "{" + ", ".join(f"{toml_key(k)} = {toml_text(v)}" for k, v in value.items()) + "}"


def toml_document(doc: dict[str, Any]) -> str:
    return "".join(f"{toml_key(k)} = {toml_text(v)}\n" for k, v in doc.items())


env_names = st.one_of(
    st.sampled_from(KEYS).map(env_name),
    st.sampled_from(KEYS).map(lambda k: env_name(k).lower()),
    st.sampled_from(KEYS).map(lambda k: env_name(k).replace("__", "_", 1)),  # the typo
    st.sampled_from(["SHOAL_", "SHOAL___X", "SHOAL_SERVER__", "SHOAL_X__Y", "SHOAL_A"]),
    st.text(max_size=12).map(lambda s: "SHOAL_" + s),
)
env_values = st.one_of(
    st.text(max_size=30),
    st.sampled_from(
        [
            "true",
            "off",
            "3000",
            "+7",
            "1_000",
            "\u0661\u0662",  # Arabic-Indic digits: not a number here
            "9" * 5000,
            "[" * 5000,
            "[" * 5000 + "]" * 5000,
            '[{"access_key_id": "a", "secret_access_key": 1}]',
            '{"port": 1}',
            "a:b,c",
            "a:1,b:70000",
            "null",
        ]
    ),
)


def outcome(load: Callable[[], Config]) -> Config | None:
    """The Config, or None after checking the ConfigError names what is at fault."""
    try:
        cfg = load()
    except ConfigError as exc:
        message = str(exc)
        head = message.split(":", 1)[0]
        if exc.key is None:
            assert head.upper().startswith("SHOAL_") or head.startswith("config file"), message
        elif exc.key == "":
            assert head == "config", message
        else:
            assert exc.key.startswith(head) or head.startswith(exc.key), (exc.key, message)
        return None
    assert isinstance(cfg, Config)
    return cfg


def round_trips(cfg: Config) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "written.toml"
        path.write_text(cfg.to_toml(), encoding="utf-8")
        assert load_config(config_file=path, env={}) == cfg


@given(documents())
@example({"cluster": {"seed_nodes": ["a:\u00b2"]}})
@example({"server": {"port": 10**40}})
@example({"auth": {"credentials": []}})
@example({"metrics": {"public": True, "auth": True}})
@example({"": {"": False}})  # an empty key: its message said ": unknown key"
@example({"server": {"a:b c": 1}})
def test_any_document_loads_or_names_the_key(doc: dict[str, Any]) -> None:
    text = toml_document(doc)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "shoal.toml"
        path.write_text(text, encoding="utf-8")
        cfg = outcome(lambda: load_config(config_file=path, env={}))
    if cfg is not None:
        round_trips(cfg)
    # The same settings as overrides take the same path through the checks.
    outcome(lambda: load_config(doc, env={}))


@given(st.binary(max_size=300) | st.text(max_size=300).map(str.encode))
@example(b"a = " + b"[" * 5000 + b"]" * 5000)
@example(b"a = " + b"{ b = " * 3000 + b"1" + b" }" * 3000)
@example(b"\xff\xfe[server]\n")
@example(b"[server]\nport = 3000\n[server]\n")
def test_any_bytes_as_the_file_load_or_are_refused(raw: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "shoal.toml"
        path.write_bytes(raw)
        outcome(lambda: load_config(config_file=path, env={}))


@given(st.dictionaries(env_names, env_values, max_size=6))
@example({"SHOAL_SERVER__PORT": "\u0661\u0662"})
@example({"SHOAL_SERVER__PORT": "1_000"})
@example({"SHOAL_CLUSTER__SEED_NODES": "[" * 5000 + "]" * 5000})
@example({"SHOAL_AUTH__CREDENTIALS": "[" * 5000})
@example({"SHOAL_SERVER": "[" * 5000})
@example({"SHOAL_CONFIG": "/no/such\x00file"})
def test_any_environment_loads_or_names_the_variable(env: dict[str, str]) -> None:
    cfg = outcome(lambda: load_config(env=env))
    if cfg is not None:
        round_trips(cfg)


@given(st.dictionaries(env_names, env_values, max_size=4), documents())
def test_environment_over_overrides(env: dict[str, str], doc: dict[str, Any]) -> None:
    outcome(lambda: load_config(doc, env=env))


def test_environment_integers_are_ascii_digits() -> None:
    for raw in ("\u0661\u0662", "1_000", "\u00b2", "9" * 5000, "0x10", " 7 8"):
        try:
            load_config(env={"SHOAL_SERVER__PORT": raw})
        except ConfigError as exc:
            assert exc.key == "server.port"
        else:
            raise AssertionError(f"{raw!r} taken as a port")
    assert load_config(env={"SHOAL_SERVER__PORT": " 8080 "}).server.port == 8080


def test_every_setting_is_reachable_by_the_strategies() -> None:
    """The documents name every key of the schema (so none escapes the fuzzing)."""
    fields = {f.name for f in dataclasses.fields(Config)}
    assert {key.split(".")[0] for key in KEYS} == fields
