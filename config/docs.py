"""Docs generated from the schema: the README's configuration table, the commented
example TOML, and `Config.to_toml()` (used to hand a config to a subprocess)."""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Iterator
from typing import Any

from shoal.config.loader import ENV_PREFIX, _describe, _hints
from shoal.config.model import Config, Credential, KmsKey, Rule


def iter_settings(
    cls: type = Config, path: str = ""
) -> Iterator[tuple[str, Any, Any, Rule | None]]:
    """(dotted key, type, default, rule) for every leaf setting, in schema order."""
    default = cls()
    for f in dataclasses.fields(cls):
        tp = _hints(cls)[f.name]
        key = f"{path}.{f.name}" if path else f.name
        if dataclasses.is_dataclass(tp):
            yield from iter_settings(tp, key)
        else:
            yield key, tp, getattr(default, f.name), f.metadata.get("rule")


def env_name(key: str) -> str:
    return ENV_PREFIX + key.replace(".", "__").upper()


# ---------------------------------------------------------------- TOML output


def _toml_str(s: str) -> str:
    out = ['"']
    for ch in s:
        o = ord(ch)
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif o < 0x20 or o == 0x7F:
            out.append(f"\\u{o:04x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return _toml_str(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {value!r} as TOML")


def to_toml(cfg: Config) -> str:
    """Every set value; None (TOML has no null) is left out, which loads back as None."""
    lines: list[str] = []

    def section(obj: Any, name: str) -> None:
        scalars, tables = [], []
        for f in dataclasses.fields(obj):
            v = getattr(obj, f.name)
            tables_list = isinstance(v, list) and bool(v) and dataclasses.is_dataclass(v[0])
            if dataclasses.is_dataclass(v) or tables_list:
                tables.append((f.name, v))
            elif v is not None:
                scalars.append(f"{f.name} = {toml_value(v)}")
        lines.append(f"[{name}]")
        lines.extend(scalars)
        lines.append("")
        for sub, v in tables:
            if isinstance(v, list):
                for item in v:
                    lines.append(f"[[{name}.{sub}]]")
                    for g in dataclasses.fields(item):
                        if (value := getattr(item, g.name)) is not None:
                            lines.append(f"{g.name} = {toml_value(value)}")
                    lines.append("")
            else:
                section(v, f"{name}.{sub}")

    for f in dataclasses.fields(cfg):
        section(getattr(cfg, f.name), f.name)
    return "\n".join(lines)


# ---------------------------------------------------------------- docs


def _default_text(tp: Any, default: Any) -> str:
    if default is None:
        return "unset"
    if isinstance(default, list) and default and isinstance(default[0], Credential):
        return ", ".join(f"{c.access_key_id}/{c.secret_access_key}" for c in default)
    return toml_value(default)


def markdown_table() -> str:
    rows = [
        "| Key | Default | Environment variable | Allowed / meaning |",
        "|---|---|---|---|",
    ]
    for key, tp, default, rule in iter_settings():
        expect = rule.expect if rule and rule.expect else _describe(tp)
        doc = f"{rule.doc}; " if rule and rule.doc else ""
        if tp == list[Credential]:
            expect = "JSON list of {access_key_id, secret_access_key}, or KEY:SECRET,..."
        if tp == list[KmsKey]:
            expect = (
                "TOML `[[kms.keys]]` tables, each `id` and `secret` (base64 of 32 random "
                "bytes) or `secret_file` (a file holding it); env: JSON list of {id, "
                "secret_file}"
            )
        text = f"{doc}{expect}".replace("|", "\\|")
        rows.append(f"| `{key}` | `{_default_text(tp, default)}` | `{env_name(key)}` | {text} |")
    return "\n".join(rows)


def example_toml() -> str:
    """Every key, commented out at its default, with its meaning; section headers are
    live so that uncommenting a key is all it takes."""
    out = [
        "# shoal configuration. Every key is optional; shown commented out at its default.",
        "# Load it with `shoal serve --config FILE` or SHOAL_CONFIG=FILE. Any key can also",
        "# be set from the environment as SHOAL_<SECTION>__<KEY>, e.g. SHOAL_SERVER__PORT=8080",
        "# (nested: SHOAL_CLUSTER__ERASURE__DATA_SHARDS=6). Precedence: defaults < this file",
        "# < environment < command-line flags.",
        "#",
        "# Credentials do not belong here (this file is readable by the shoal group): put",
        "# SHOAL_AUTH__CREDENTIALS=KEY:SECRET in the root-only /etc/shoal/shoal.env",
        "# (deploy/shoal.env). Beyond loopback, shoal refuses to start with auth off or the",
        "# default STORAGE/STORAGE credentials (server.allow_insecure_public opts out).",
    ]

    def section(cls: type, name: str) -> None:
        out.extend(["", f"[{name}]"])
        nested = []
        default = cls()
        for f in dataclasses.fields(cls):
            tp = _hints(cls)[f.name]
            rule: Rule | None = f.metadata.get("rule")
            value = getattr(default, f.name)
            if dataclasses.is_dataclass(tp) or tp in (list[Credential], list[KmsKey]):
                nested.append((f.name, tp, value, rule))
                continue
            expect = rule.expect if rule and rule.expect else _describe(tp)
            doc = f"{rule.doc}. " if rule and rule.doc else ""
            out.append(f"# {doc}Allowed: {expect}.")
            shown = '"..."' if value is None else toml_value(value)
            out.append(f"# {f.name} = {shown}")
        for sub, tp, value, rule in nested:
            if tp == list[Credential]:
                out.extend(["", f"# {rule.doc if rule else sub}. Repeat the table for more."])
                for c in value:
                    out.extend(
                        [
                            f"# [[{name}.{sub}]]",
                            f"# access_key_id = {toml_value(c.access_key_id)}",
                            f"# secret_access_key = {toml_value(c.secret_access_key)}",
                        ]
                    )
            elif tp == list[KmsKey]:
                out.extend(
                    [
                        "",
                        f"# {rule.doc if rule else sub}. Repeat the table for more keys;",
                        "# secret_file holds base64 of 32 random bytes (openssl rand -base64",
                        '# 32 > FILE; chmod 600), or give secret = "<that base64>" instead.',
                        f"# [[{name}.{sub}]]",
                        '# id = "key-1"',
                        '# secret_file = "/etc/shoal/kms-key-1"',
                    ]
                )
            else:
                section(tp, f"{name}.{sub}")

    for f in dataclasses.fields(Config):
        section(_hints(Config)[f.name], f.name)
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    what = args[0] if args else "markdown"
    if what == "markdown":
        print(markdown_table())
    elif what == "toml":
        print(example_toml(), end="")
    else:
        print("usage: python -m shoal.config [markdown|toml]", file=sys.stderr)
        return 2
    return 0
