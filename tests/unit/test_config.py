"""Configuration: defaults, precedence, environment parsing, and error messages that name
the key and what is allowed."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from shoal.config import Config, ConfigError, Credential, load_config
from shoal.config.docs import env_name, example_toml, iter_settings

ROOT = Path(__file__).resolve().parents[2]


def load(overrides=None, env=None, **kw) -> Config:
    """load_config isolated from the real environment."""
    return load_config(overrides, env=env or {}, **kw)


def write(tmp_path: Path, text: str) -> str:
    p = tmp_path / "shoal.toml"
    p.write_text(text)
    return str(p)


# ---------------------------------------------------------------- defaults


def test_defaults_match_the_reference() -> None:
    c = load()
    assert (c.server.port, c.server.address, c.server.silent, c.server.region) == (
        3000,
        "0.0.0.0",
        False,
        "us-east-1",
    )
    assert c.server.base_domain is None and not c.server.tls.enabled
    assert (c.storage.directory, c.storage.clean_slate) == (".nogit/bucketsDir", False)
    assert c.auth.enabled is False
    assert c.auth.credentials == [Credential("STORAGE", "STORAGE")]
    assert c.cors.allowed_methods == ["GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS"]
    assert c.cors.exposed_headers == ["ETag", "x-amz-request-id", "x-amz-version-id"]
    assert (c.cors.max_age, c.cors.allow_credentials) == (86400, False)
    assert (c.logging.level, c.logging.format, c.logging.enabled) == ("info", "text", True)
    assert c.limits.max_object_size == 5 * 1024**3
    assert (c.limits.max_metadata_size, c.limits.request_timeout) == (2048, 300000)
    assert (c.multipart.expiration_days, c.multipart.cleanup_interval_minutes) == (7, 60)
    cl = c.cluster
    assert (cl.enabled, cl.node_id, cl.quic_port, cl.seed_nodes) == (False, None, 4000, [])
    assert (cl.erasure.data_shards, cl.erasure.parity_shards) == (4, 2)
    assert cl.erasure.chunk_size_bytes == 4194304 and cl.drives.paths == []
    assert (cl.heartbeat_interval_ms, cl.heartbeat_timeout_ms) == (5000, 30000)
    assert c == Config()


def test_config_is_frozen() -> None:
    c = load()
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.server.port = 1  # type: ignore[misc]


# ---------------------------------------------------------------- precedence


def test_precedence_file_env_overrides(tmp_path: Path) -> None:
    path = write(tmp_path, '[server]\nport = 1111\nregion = "eu-west-1"\naddress = "::1"\n')
    c = load(config_file=path)
    assert (c.server.port, c.server.region, c.server.address) == (1111, "eu-west-1", "::1")

    env = {"SHOAL_SERVER__PORT": "2222", "SHOAL_SERVER__REGION": "eu-north-1"}
    c = load(config_file=path, env=env)
    assert (c.server.port, c.server.region, c.server.address) == (2222, "eu-north-1", "::1")

    c = load({"server": {"port": 0}}, config_file=path, env=env)
    assert (c.server.port, c.server.region, c.server.address) == (0, "eu-north-1", "::1")


def test_shoal_config_env_names_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "[storage]\ndirectory = '/srv/s3'\nclean_slate = true\n")
    c = load(env={"SHOAL_CONFIG": path})
    assert (c.storage.directory, c.storage.clean_slate) == ("/srv/s3", True)
    # an explicit file wins over SHOAL_CONFIG
    other = tmp_path / "other.toml"
    other.write_text("[storage]\ndirectory = '/other'\n")
    assert load(env={"SHOAL_CONFIG": path}, config_file=str(other)).storage.directory == "/other"


def test_default_env_is_os_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHOAL_STORAGE__DIRECTORY", "/from/env")
    assert load_config().storage.directory == "/from/env"
    assert load_config(env={}).storage.directory == ".nogit/bucketsDir"


def test_nested_tables_from_file(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
[server.tls]
cert_file = "c.pem"
key_file = "k.pem"

[[auth.credentials]]
access_key_id = "a"
secret_access_key = "b"

[[auth.credentials]]
access_key_id = "c"
secret_access_key = "d"

[cluster]
enabled = true
seed_nodes = ["10.0.0.2:4000", "[fd00::3]:4000"]
secret = "s3cret"
erasure = { data_shards = 6, parity_shards = 3 }
drives.paths = ["/mnt/a", "/mnt/b"]
""",
    )
    c = load(config_file=path)
    assert c.server.tls.enabled and c.server.tls.cert_file == "c.pem"
    assert c.auth.credentials == [Credential("a", "b"), Credential("c", "d")]
    assert c.access_key == "a" and c.secret_key == "b"
    assert (c.cluster.erasure.data_shards, c.cluster.erasure.parity_shards) == (6, 3)
    assert c.cluster.drives.paths == ["/mnt/a", "/mnt/b"]


def test_overrides_merge_per_key_not_per_section() -> None:
    c = load({"server": {"port": 9}}, env={"SHOAL_SERVER__REGION": "x-1"})
    assert (c.server.port, c.server.region) == (9, "x-1")


def test_replace_and_config_input(tmp_path: Path) -> None:
    base = load()
    c = base.replace(server={"port": 0}, storage={"directory": tmp_path})
    assert c.server.port == 0 and c.storage.directory == str(tmp_path)
    assert base.server.port == 3000  # unchanged
    assert load_config(c) is c
    with pytest.raises(ConfigError, match=r"^server\.port:"):
        base.replace({"server": {"port": 70000}})


def test_camel_case_aliases() -> None:
    c = load(
        {
            "server": {"baseDomain": "s3.local"},
            "storage": {"cleanSlate": True},
            "cluster": {"erasure": {"dataShards": 8}},
        }
    )
    assert c.server.base_domain == "s3.local" and c.storage.clean_slate
    assert c.cluster.erasure.data_shards == 8
    c = load({"auth": {"credentials": [{"accessKeyId": "k", "secretAccessKey": "s"}]}})
    assert c.auth.credentials == [Credential("k", "s")]


def test_to_toml_round_trips(tmp_path: Path) -> None:
    c = load(
        {
            "server": {"port": 0, "base_domain": "s3.test", "region": 'we"ird\\\n\x7f'},
            "storage": {"directory": str(tmp_path / "dätä ☃")},
            "auth": {
                "credentials": [
                    {"access_key_id": "a", "secret_access_key": "b"},
                    {"access_key_id": "c", "secret_access_key": "d"},
                ]
            },
            "cluster": {"seed_nodes": ["h:1"], "drives": {"paths": ["/x"]}},
        }
    )
    path = write(tmp_path, c.to_toml())
    assert load(config_file=path) == c
    assert load(config_file=write(tmp_path, Config().to_toml())) == Config()


# ---------------------------------------------------------------- environment parsing


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("true", True),
        ("1", True),
        ("YES", True),
        ("on", True),
        ("false", False),
        ("0", False),
        ("no", False),
        ("Off", False),
    ],
)
def test_env_bools(raw: str, expected: bool) -> None:
    assert load(env={"SHOAL_AUTH__ENABLED": raw}).auth.enabled is expected


def test_env_ints_lists_nested_and_case() -> None:
    env = {
        "shoal_cluster__erasure__data_shards": "6",
        "SHOAL_CLUSTER__SEED_NODES": "a:1, b:2",
        "SHOAL_CORS__ALLOWED_ORIGINS": '["http://x", "http://y"]',
        "SHOAL_CORS__ALLOWED_METHODS": "get,put",
        "SHOAL_LOGGING__LEVEL": "DEBUG",
        "SHOAL_SERVER__BASE_DOMAIN": "S3.Example.COM.",
        "SHOAL_CLUSTER__DRIVES__PATHS": "",
    }
    c = load(env=env)
    assert c.cluster.erasure.data_shards == 6
    assert c.cluster.seed_nodes == ["a:1", "b:2"]
    assert c.cors.allowed_origins == ["http://x", "http://y"]
    assert c.cors.allowed_methods == ["GET", "PUT"]
    assert c.logging.level == "debug"
    assert c.server.base_domain == "s3.example.com"
    assert c.cluster.drives.paths == []


def test_env_credentials_json_and_pairs() -> None:
    c = load(
        env={"SHOAL_AUTH__CREDENTIALS": '[{"access_key_id": "k1", "secret_access_key": "s1"}]'}
    )
    assert c.auth.credentials == [Credential("k1", "s1")]
    c = load(env={"SHOAL_AUTH__CREDENTIALS": "k1:s1,k2:s:2"})
    assert c.auth.credentials == [Credential("k1", "s1"), Credential("k2", "s:2")]


def test_env_optional_empty_means_unset() -> None:
    c = load({"cluster": {"node_id": "n1"}}, env={})
    assert c.cluster.node_id == "n1"
    assert load(env={"SHOAL_CLUSTER__NODE_ID": ""}).cluster.node_id is None


def test_env_nested_section_as_json() -> None:
    c = load(env={"SHOAL_CLUSTER__ERASURE": '{"data_shards": 2, "parity_shards": 1}'})
    assert (c.cluster.erasure.data_shards, c.cluster.erasure.parity_shards) == (2, 1)


def test_unrelated_env_is_ignored() -> None:
    c = load(env={"SHOAL_SOMETHING": "x", "HOME": "/root", "SHOALX__Y": "1"})
    assert c == Config()


# ---------------------------------------------------------------- errors


def error(*args, **kw) -> str:
    with pytest.raises(ConfigError) as info:
        load(*args, **kw)
    return str(info.value)


def test_bad_port_from_env_names_key_value_and_variable() -> None:
    msg = error(env={"SHOAL_SERVER__PORT": "abc"})
    assert msg.startswith("server.port: expected an integer 0..65535")
    assert "got 'abc'" in msg and "SHOAL_SERVER__PORT" in msg


@pytest.mark.parametrize(
    ("overrides", "key", "fragment"),
    [
        ({"server": {"port": 65536}}, "server.port", "0..65535"),
        ({"server": {"port": -1}}, "server.port", "0..65535"),
        ({"server": {"port": "80"}}, "server.port", "got '80'"),
        ({"server": {"port": True}}, "server.port", "got True"),
        ({"server": {"silent": "yes"}}, "server.silent", "true or false"),
        ({"server": {"address": ""}}, "server.address", "non-empty"),
        ({"server": {"base_domain": "http://x/"}}, "server.base_domain", "DNS name"),
        ({"storage": {"directory": 5}}, "storage.directory", "path"),
        ({"limits": {"max_object_size": -5}}, "limits.max_object_size", ">= 1"),
        ({"limits": {"max_metadata_size": -1}}, "limits.max_metadata_size", ">= 0"),
        ({"logging": {"level": "verbose"}}, "logging.level", "error, warn, info, debug"),
        ({"logging": {"format": "xml"}}, "logging.format", "text, json"),
        ({"cors": {"allowed_methods": ["GET", "FETCH"]}}, "cors.allowed_methods", "FETCH"),
        ({"cors": {"allowed_origins": "*"}}, "cors.allowed_origins", "a list of strings"),
        ({"multipart": {"expiration_days": 0}}, "multipart.expiration_days", ">= 1"),
        ({"cluster": {"erasure": {"parity_shards": 0}}}, "cluster.erasure.parity_shards", "1..31"),
        ({"cluster": {"erasure": {"data_shards": 0}}}, "cluster.erasure.data_shards", "1..31"),
        ({"cluster": {"seed_nodes": ["nohost"]}}, "cluster.seed_nodes", "host:port"),
        ({"cluster": {"drives": {"paths": ["/a", "/a"]}}}, "cluster.drives.paths", "duplicate"),
        ({"auth": {"credentials": []}}, "auth.credentials", "non-empty list"),
        (
            {"auth": {"credentials": [{"access_key_id": "a"}]}},
            "auth.credentials[0]",
            "missing secret_access_key",
        ),
        (
            {"auth": {"credentials": [{"access_key_id": "a", "secret_access_key": ""}]}},
            "auth.credentials[0].secret_access_key",
            "non-empty",
        ),
        ({"server": 5}, "server", "table"),
    ],
)
def test_bad_values_are_named(overrides: dict, key: str, fragment: str) -> None:
    msg = error(overrides)
    assert msg.startswith(f"{key}:"), msg
    assert fragment in msg, msg


def test_unknown_keys_at_every_level() -> None:
    msg = error({"cluster": {"erasure": {"dat_shards": 3}}})
    assert msg == (
        "cluster.erasure.dat_shards: unknown key "
        "(allowed: data_shards, parity_shards, chunk_size_bytes, backend)"
    )
    assert error({"servr": {}}).startswith("servr: unknown key (allowed: server, storage,")
    assert error({"server": {"prot": 1}}).startswith("server.prot: unknown key")
    msg = error(
        {"auth": {"credentials": [{"access_key_id": "a", "secret_access_key": "b", "x": 1}]}}
    )
    assert msg.startswith("auth.credentials[0].x: unknown key")


def test_unknown_key_in_file_names_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "[storage]\ndir = 'x'\n")
    msg = error(config_file=path)
    assert msg.startswith("storage.dir: unknown key (allowed: directory, clean_slate)")
    assert path in msg


def test_unknown_env_key_and_single_underscore_typo() -> None:
    assert error(env={"SHOAL_SERVER__PROT": "1"}).startswith("server.prot: unknown key")
    msg = error(env={"SHOAL_SERVER_PORT": "1"})
    assert "SHOAL_SERVER__PORT" in msg


def test_file_problems(tmp_path: Path) -> None:
    assert "not found" in error(config_file=str(tmp_path / "missing.toml"))
    assert "invalid TOML" in error(config_file=write(tmp_path, "[server\n"))


def test_cross_field_rules() -> None:
    msg = error({"server": {"tls": {"cert_file": "c.pem"}}})
    assert msg.startswith("server.tls:") and "key_file" in msg
    msg = error({"cluster": {"heartbeat_interval_ms": 5000, "heartbeat_timeout_ms": 5000}})
    assert msg.startswith("cluster.heartbeat_timeout_ms:")
    msg = error({"cluster": {"erasure": {"data_shards": 20, "parity_shards": 20}}})
    assert msg.startswith("cluster.erasure:") and "32" in msg
    msg = error(
        {
            "auth": {
                "credentials": [
                    {"access_key_id": "a", "secret_access_key": "b"},
                    {"access_key_id": "a", "secret_access_key": "c"},
                ]
            }
        }
    )
    assert msg.startswith("auth.credentials[1].access_key_id: duplicate")


def test_error_carries_key() -> None:
    with pytest.raises(ConfigError) as info:
        load({"server": {"port": -1}})
    assert info.value.key == "server.port"
    assert isinstance(info.value, ValueError)


def test_secrets_not_in_repr() -> None:
    c = load({"auth": {"credentials": [{"access_key_id": "AK", "secret_access_key": "SeCrEt"}]}})
    assert "SeCrEt" not in repr(c)


# ---------------------------------------------------------------- docs stay in sync


def test_readme_and_example_document_every_key() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    example = (ROOT / "deploy" / "shoal.example.toml").read_text(encoding="utf-8")
    assert example == example_toml(), "regenerate: python -m shoal.config toml > deploy/..."
    for key, *_ in iter_settings():
        assert f"`{key}`" in readme, key
        assert f"`{env_name(key)}`" in readme, key
        leaf = key.rsplit(".", 1)[-1]
        assert re.search(rf"^# (\[\[.*\]\]|{leaf} = )", example, re.M), key


def test_hand_built_config_is_checked_by_load_config() -> None:
    from shoal.config import ServerConfig

    bad = Config(server=ServerConfig(port=-1))
    with pytest.raises(ConfigError, match=r"^server\.port:"):
        load_config(bad)
    good = Config(server=ServerConfig(port=0))
    assert load_config(good) is good
    assert load().replace(server=ServerConfig(port=5)).server.port == 5


def test_cluster_mode_checks_the_erasure_layout() -> None:
    base = {"cluster": {"enabled": True, "drives": {"paths": [f"/d{i}" for i in range(8)]}}}
    vand = {
        "cluster": {
            **base["cluster"],
            "erasure": {"data_shards": 6, "parity_shards": 5, "backend": "isa_l_rs_vand"},
        }
    }
    msg = error(vand)
    assert msg.startswith("cluster.erasure: isa_l_rs_vand with 5 parity shards is refused")
    assert "isa_l_rs_cauchy" in msg
    assert "must not exceed data shards" in error(
        {"cluster": {**base["cluster"], "erasure": {"data_shards": 2, "parity_shards": 3}}}
    )
    assert "cluster.drives.paths" in error({"cluster": {"enabled": True}})
    seeded = {"cluster": {**base["cluster"], "seed_nodes": ["10.0.0.2:4000"]}}
    assert error(seeded).startswith("cluster.secret: nodes of a cluster authenticate")
    both = {"cluster": {**base["cluster"], "secret": "a", "secret_file": "/f"}}
    assert error(both).startswith("cluster.secret_file: give the secret or a file")
    assert load(base, env={}).cluster.erasure.backend == "isa_l_rs_cauchy"
