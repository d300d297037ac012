"""Loading: defaults, then a TOML file, then SHOAL_* environment variables, then explicit
overrides; each layer is checked key by key so a mistake is reported with its dotted key,
what is allowed, and where the bad value came from."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import tomllib
import types
import typing
from collections.abc import Mapping
from functools import cache
from typing import Any

from shoal.config.model import Config, Credential, KmsKey, Rule, kms_secret_bytes

ENV_PREFIX = "SHOAL_"
ENV_CONFIG_FILE = "SHOAL_CONFIG"

_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}
#: An integer from the environment: ASCII digits, optionally signed, at most 20 of them
#: (int() would also take "1_000", Unicode digits and 4,000-digit numbers).
_INT_RE = re.compile(r"[+-]?[0-9]{1,20}")
#: A key shown as is in messages; others (empty, spaces, dots, colons...) are quoted.
_PLAIN_KEY = re.compile(r"[A-Za-z0-9_-]+")


class ConfigError(ValueError):
    """A configuration problem; the message names the dotted key and what is allowed."""

    def __init__(self, message: str, key: str | None = None) -> None:
        super().__init__(message)
        self.key = key


@dataclasses.dataclass(frozen=True)
class _EnvValue:
    """A raw string from the environment, still to be parsed to the field's type."""

    name: str
    raw: str


def load_config(
    overrides: Mapping[str, Any] | Config | None = None,
    *,
    env: Mapping[str, str] | None = None,
    config_file: str | os.PathLike[str] | None = None,
) -> Config:
    """Build the Config: defaults < TOML file (`config_file`, else $SHOAL_CONFIG) <
    SHOAL_<SECTION>__<KEY> variables < `overrides`. A Config given as `overrides` is
    validated and returned as is (no file or environment is read)."""
    if isinstance(overrides, Config):
        # Re-apply every field onto the defaults so hand-built sections get the same
        # checks as any other source; the caller's object is returned unchanged.
        validate(_apply_section(Config(), overrides, "", ""))
        return overrides
    env = os.environ if env is None else env
    cfg = Config()
    path = config_file if config_file is not None else _env_get(env, ENV_CONFIG_FILE)
    if path:
        cfg = _apply_section(cfg, read_toml(path), "", f"in {os.fspath(path)}")
    tree = env_tree(env)
    if tree:
        cfg = _apply_section(cfg, tree, "", "from the environment")
    if overrides:
        cfg = _apply_section(cfg, overrides, "", "")
    validate(cfg)
    return cfg


def apply_overrides(cfg: Config, overrides: Mapping[str, Any]) -> Config:
    """`cfg` with a nested mapping of overrides applied and the result validated."""
    out = _apply_section(cfg, overrides, "", "") if overrides else cfg
    validate(out)
    return out


def read_toml(path: str | os.PathLike[str]) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"config file {os.fspath(path)}: not found") from None
    except OSError as e:
        raise ConfigError(f"config file {os.fspath(path)}: {e.strerror}") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"config file {os.fspath(path)}: invalid TOML: {e}") from None
    except RecursionError:  # tomllib recurses into nested arrays and inline tables
        raise ConfigError(
            f"config file {os.fspath(path)}: invalid TOML: nested too deeply"
        ) from None
    except UnicodeError as e:
        raise ConfigError(f"config file {os.fspath(path)}: not UTF-8: {e.reason}") from None
    except ValueError as e:  # a name open() refuses, e.g. with a NUL
        raise ConfigError(f"config file {os.fspath(path)!r}: {e}") from None


def _json(raw: str) -> Any:
    """A JSON value from an environment variable; ValueError for anything else (too
    deeply nested included: json recurses)."""
    try:
        return json.loads(raw)
    except RecursionError:
        raise ValueError("nested too deeply") from None


def _env_get(env: Mapping[str, str], name: str) -> str | None:
    for k, v in env.items():
        if k.upper() == name:
            return v
    return None


def env_tree(env: Mapping[str, str]) -> dict[str, Any]:
    """SHOAL_A__B__C=v (any case) -> {"a": {"b": {"c": _EnvValue}}}. Variables without
    `__` are not configuration (SHOAL_CONFIG is the file name), except a section name
    followed by a single underscore, which is surely a typo and is reported."""
    sections = {_norm(f.name) for f in dataclasses.fields(Config)}
    tree: dict[str, Any] = {}
    for name, raw in sorted(env.items()):
        upper = name.upper()
        if not upper.startswith(ENV_PREFIX) or upper == ENV_CONFIG_FILE:
            continue
        rest = name[len(ENV_PREFIX) :]
        if "__" not in rest:
            head = rest.split("_", 1)[0]
            if "_" in rest and _norm(head) in sections:
                raise ConfigError(
                    f"{name}: not a configuration variable; use a double underscore "
                    f"between section and key, e.g. {ENV_PREFIX}{head.upper()}__"
                    f"{rest.split('_', 1)[1].upper()}"
                )
            continue
        parts = [p.lower() for p in rest.split("__")]
        if any(not p for p in parts):
            raise ConfigError(f"{name}: empty name segment")
        node = tree
        for p in parts[:-1]:
            child = node.setdefault(p, {})
            if not isinstance(child, dict):
                raise ConfigError(f"{name}: conflicts with another variable for the same key")
            node = child
        if parts[-1] in node:
            raise ConfigError(f"{name}: conflicts with another variable for the same key")
        node[parts[-1]] = _EnvValue(name, raw)
    return tree


# ---------------------------------------------------------------- applying layers


def _norm(key: str) -> str:
    """snake_case, camelCase and SHOUTING forms of one name compare equal."""
    return key.replace("_", "").replace("-", "").lower()


@cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _suffix(origin: str) -> str:
    return f" ({origin})" if origin else ""


def _apply_section(obj: Any, data: Any, path: str, origin: str) -> Any:
    """A copy of dataclass `obj` with `data` (a mapping) applied field by field."""
    cls = type(obj)
    if isinstance(data, _EnvValue):
        origin = f"from {data.name}"
        try:
            data = _json(data.raw)
        except ValueError:
            data = None
    if isinstance(data, cls):  # a hand-built section: check it field by field too
        data = {f.name: getattr(data, f.name) for f in dataclasses.fields(cls)}
    if not isinstance(data, Mapping):
        raise ConfigError(
            f"{path or 'config'}: expected a table of settings, got {_show(data)}{_suffix(origin)}",
            path,
        )
    by_norm = {_norm(f.name): f for f in dataclasses.fields(cls)}
    changes: dict[str, Any] = {}
    for key, value in data.items():
        if not isinstance(key, str):
            raise ConfigError(f"{_join(path, str(key))}: keys must be strings", path)
        f = by_norm.get(_norm(key))
        if f is None:
            allowed = ", ".join(x.name for x in dataclasses.fields(cls))
            dotted = _join(path, key if _PLAIN_KEY.fullmatch(key) else json.dumps(key))
            raise ConfigError(
                f"{dotted}: unknown key (allowed: {allowed}){_suffix(origin)}", dotted
            )
        dotted = _join(path, f.name)
        if f.name in changes:
            raise ConfigError(f"{dotted}: given twice (as {key!r} and another spelling)", dotted)
        changes[f.name] = _convert(
            _hints(cls)[f.name], value, getattr(obj, f.name), dotted, origin, f.metadata.get("rule")
        )
    return dataclasses.replace(obj, **changes)


def _convert(tp: Any, value: Any, current: Any, path: str, origin: str, rule: Rule | None) -> Any:
    if dataclasses.is_dataclass(tp):
        return _apply_section(current, value, path, origin)
    env_raw: str | None = None
    if isinstance(value, _EnvValue):
        origin, env_raw = f"from {value.name}", value.raw
    expect = rule.expect if rule and rule.expect else _describe(tp)

    def fail(detail: str | None = None) -> ConfigError:
        shown = repr(env_raw) if env_raw is not None else _show(value)
        if rule and rule.secret:
            shown = "a value not shown (a secret)"
        more = f" ({detail})" if detail else ""
        return ConfigError(f"{path}: expected {expect}, got {shown}{more}{_suffix(origin)}", path)

    if env_raw is not None:
        try:
            value = _parse_env(tp, env_raw)
        except ValueError:
            raise fail() from None
    if tp in _TABLE_LISTS:
        return _tables(
            _TABLE_LISTS[tp], value, path, origin, fail, secret=bool(rule and rule.secret)
        )
    value = _typed(tp, value, fail)
    if rule and rule.check:
        try:
            value = rule.check(value)
        except ValueError as e:
            raise fail(str(e) or None) from None
    return value


def _typed(tp: Any, value: Any, fail: Any) -> Any:
    """Type-check a file/override value; paths may be given as os.PathLike."""
    if tp is bool:
        if not isinstance(value, bool):
            raise fail()
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise fail()
        return value
    if tp is str:
        if isinstance(value, os.PathLike):
            value = os.fspath(value)
        if not isinstance(value, str):
            raise fail()
        return value
    if _is_optional_str(tp):
        return None if value is None else _typed(str, value, fail)
    if tp == list[str]:
        if isinstance(value, str | bytes) or not isinstance(value, list | tuple):
            raise fail()
        return [_typed(str, v, fail) for v in value]
    raise TypeError(f"unsupported config type {tp!r}")  # a schema bug, not user input


#: The fields every credential must give (the account fields are optional).
REQUIRED_CREDENTIAL_FIELDS = ("access_key_id", "secret_access_key")


@dataclasses.dataclass(frozen=True)
class _TableList:
    """A setting that is a list of tables (TOML `[[section.key]]`)."""

    item: type
    required: tuple[str, ...]
    non_empty: bool
    what: str  # "a table with ..." in messages


_TABLE_LISTS: dict[Any, _TableList] = {
    list[Credential]: _TableList(
        Credential,
        REQUIRED_CREDENTIAL_FIELDS,
        True,
        "a table with access_key_id and secret_access_key",
    ),
    list[KmsKey]: _TableList(KmsKey, ("id",), False, "a table with id and secret or secret_file"),
}


def _tables(
    spec: _TableList, value: Any, path: str, origin: str, fail: Any, *, secret: bool
) -> list[Any]:
    if not isinstance(value, list | tuple) or (spec.non_empty and not value):
        raise fail()
    out = []
    for i, item in enumerate(value):
        ipath = f"{path}[{i}]"
        if isinstance(item, spec.item):
            item = dataclasses.asdict(item)
        if not isinstance(item, Mapping):
            shown = "something else" if secret else _show(item)
            raise ConfigError(f"{ipath}: expected {spec.what}, got {shown}{_suffix(origin)}", ipath)
        given = {_norm(str(k)) for k in item}
        missing = [n for n in spec.required if _norm(n) not in given]
        if missing:
            raise ConfigError(f"{ipath}: missing {', '.join(missing)}{_suffix(origin)}", ipath)
        out.append(_apply_section(spec.item(), item, ipath, origin))
    return out


def _parse_env(tp: Any, raw: str) -> Any:
    s = raw.strip()
    if tp is bool:
        if s.lower() in _TRUE:
            return True
        if s.lower() in _FALSE:
            return False
        raise ValueError
    if tp is int:
        if not _INT_RE.fullmatch(s):
            raise ValueError
        return int(s)
    if tp is str:
        return raw
    if _is_optional_str(tp):
        return raw or None
    if tp == list[str]:
        if s.startswith("["):
            return _json(s)
        return [p.strip() for p in s.split(",") if p.strip()]
    if tp == list[KmsKey]:
        return _json(s)
    if tp == list[Credential]:
        if s.startswith("["):
            return _json(s)
        # KEY:SECRET[,KEY:SECRET...] for the shell-minded
        pairs = [p.split(":", 1) for p in s.split(",") if p.strip()]
        if not pairs or any(len(p) != 2 for p in pairs):
            raise ValueError
        return [{"access_key_id": k.strip(), "secret_access_key": v.strip()} for k, v in pairs]
    raise ValueError


def _is_optional_str(tp: Any) -> bool:
    return isinstance(tp, types.UnionType) and set(typing.get_args(tp)) == {str, type(None)}


def _describe(tp: Any) -> str:
    if tp is bool:
        return "true or false"
    if tp is int:
        return "an integer"
    if tp is str:
        return "a string"
    if _is_optional_str(tp):
        return "a string or nothing"
    if tp == list[str]:
        return "a list of strings"
    if tp in _TABLE_LISTS:
        return f"a list of tables ({_TABLE_LISTS[tp].what})"
    return "a table of settings"


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


# ---------------------------------------------------------------- cross-field checks


def validate(cfg: Config) -> None:
    """Checks that involve more than one field (single fields were checked on the way in)."""
    tls = cfg.server.tls
    if (tls.cert_file is None) != (tls.key_file is None):
        have, lack = ("cert_file", "key_file") if tls.cert_file else ("key_file", "cert_file")
        raise ConfigError(
            f"server.tls: {have} is set but {lack} is not; set server.tls.{lack} too "
            "(HTTPS needs both the certificate and its private key)",
            f"server.tls.{lack}",
        )
    creds = cfg.auth.credentials
    if not creds:
        raise ConfigError("auth.credentials: expected at least one credential", "auth.credentials")
    keys = [c.access_key_id for c in creds]
    for i, key in enumerate(keys):
        if key in keys[:i]:
            raise ConfigError(
                f"auth.credentials[{i}].access_key_id: duplicate access key {key!r}",
                f"auth.credentials[{i}].access_key_id",
            )
    c = cfg.cluster
    total = c.erasure.data_shards + c.erasure.parity_shards
    if total > 32:
        raise ConfigError(
            f"cluster.erasure: data_shards + parity_shards must be at most 32, got {total}",
            "cluster.erasure",
        )
    if c.enabled:
        from shoal.storage.erasure.coder import check_layout

        try:
            check_layout(c.erasure.data_shards, c.erasure.parity_shards, c.erasure.backend)
        except ValueError as exc:
            raise ConfigError(f"cluster.erasure: {exc}", "cluster.erasure") from exc
        if not c.drives.paths:
            raise ConfigError(
                "cluster.drives.paths: cluster mode needs at least "
                f"{c.erasure.data_shards + c.erasure.parity_shards} drives (data + parity shards)",
                "cluster.drives.paths",
            )
    if c.secret and c.secret_file:
        raise ConfigError(
            "cluster.secret_file: give the secret or a file holding it, not both",
            "cluster.secret_file",
        )
    if c.enabled and c.seed_nodes and not (c.secret or c.secret_file):
        raise ConfigError(
            "cluster.secret: nodes of a cluster authenticate each other with a shared "
            "secret; set cluster.secret or cluster.secret_file",
            "cluster.secret",
        )
    if c.heartbeat_timeout_ms <= c.heartbeat_interval_ms:
        raise ConfigError(
            f"cluster.heartbeat_timeout_ms: expected more than heartbeat_interval_ms "
            f"({c.heartbeat_interval_ms}), got {c.heartbeat_timeout_ms}",
            "cluster.heartbeat_timeout_ms",
        )
    if c.enabled and c.quic_port != 0 and c.quic_port == cfg.server.port:
        raise ConfigError(
            f"cluster.quic_port: must differ from server.port ({cfg.server.port})",
            "cluster.quic_port",
        )
    _validate_kms(cfg)


def _validate_kms(cfg: Config) -> None:
    """Key ids unique, each key's secret given once and readable, the default one of
    them. Messages name the key and field, never a secret."""
    keys = cfg.kms.keys
    ids = [k.id for k in keys]
    for i, key in enumerate(keys):
        if key.id in ids[:i]:
            raise ConfigError(f"kms.keys[{i}].id: duplicate key id {key.id!r}", f"kms.keys[{i}].id")
        kms_key_bytes(key, f"kms.keys[{i}]")
    default = cfg.kms.default_key_id
    if default is not None and default not in ids:
        raise ConfigError(
            f"kms.default_key_id: no key {default!r} in kms.keys", "kms.default_key_id"
        )


def kms_key_bytes(key: KmsKey, where: str) -> bytes:
    """The 32 bytes of a kms key, from its secret or by reading its secret_file (at
    load, and again when the keyring is built). `where` is the key's dotted path
    (kms.keys[i]) for messages."""
    if (key.secret is None) == (key.secret_file is None):
        which = "not both" if key.secret is not None else "one of them"
        raise ConfigError(f"{where}: key {key.id!r} needs secret or secret_file ({which})", where)
    if key.secret is not None:
        try:
            return kms_secret_bytes(key.secret)
        except ValueError as exc:  # already checked on the way in; hand-built Config
            raise ConfigError(f"{where}.secret: key {key.id!r}: {exc}", f"{where}.secret") from None
    assert key.secret_file is not None
    try:
        with open(key.secret_file, encoding="utf-8") as f:
            text = f.read(4096)
    except (OSError, ValueError) as exc:
        if isinstance(exc, UnicodeError):
            reason = "not UTF-8 text"  # the decoder's message would quote a byte of it
        else:
            reason = exc.strerror if isinstance(exc, OSError) else str(exc)
        raise ConfigError(
            f"{where}.secret_file: cannot read {key.secret_file!r}: {reason}",
            f"{where}.secret_file",
        ) from None
    try:
        return kms_secret_bytes(text)
    except ValueError as exc:
        raise ConfigError(
            f"{where}.secret_file: {key.secret_file!r} does not hold base64 of 32 bytes ({exc})",
            f"{where}.secret_file",
        ) from None
