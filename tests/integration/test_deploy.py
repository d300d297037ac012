"""deploy/: the systemd unit verifies and its ExecStart line, run by hand, serves; the
alert rules and the scrape config pass promtool; every metric and label the alerts and
the Grafana dashboard use exists in the /metrics output of real servers (standalone,
erasure-coded, a 3-node cluster)."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from botocore.exceptions import ClientError
from prometheus_client.parser import text_string_to_metric_families

from shoal.config import load_config
from shoal.storage.keys import OBJECT_MARKER
from tests.integration.conftest import erasure_config, signed_client, spawn_server
from tests.integration.test_cluster import KEY, SECRET_KEY, make_nodes, running

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
UNIT = DEPLOY / "shoal.service"
ALERTS = DEPLOY / "alerts.yml"
DASHBOARD = DEPLOY / "grafana-dashboard.json"
VENV_BIN = Path(sys.executable).parent
#: Where the unit's installation steps put the example files.
INSTALLED = {"/etc/shoal/shoal.toml": "shoal.example.toml", "/etc/shoal/shoal.env": "shoal.env"}
#: Labels Prometheus adds to every scraped series.
TARGET_LABELS = {"instance", "job", "cluster"}


# -- the unit file -----------------------------------------------------------------------


def unit_entries(text: str) -> list[tuple[str, str, str]]:
    """(section, key, value) for each assignment, continuation lines joined."""
    entries, section, pending = [], "", ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line[0] in "#;"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line, pending = pending + line, ""
        if line.startswith("["):
            section = line.strip("[]")
        else:
            key, _, value = line.partition("=")
            entries.append((section, key.strip(), value.strip()))
    return entries


def unit_values(key: str, section: str = "Service") -> list[str]:
    return [v for s, k, v in unit_entries(UNIT.read_text()) if (s, k) == (section, key)]


def unit_value(key: str, section: str = "Service") -> str:
    values = unit_values(key, section)
    assert values, f"{UNIT.name}: no {key}= in [{section}]"
    return values[-1]


def exec_start() -> list[str]:
    argv = shlex.split(unit_value("ExecStart"))
    while argv[0][0] in "-@:+!":  # systemd's command prefixes
        argv[0] = argv[0][1:]
    return argv


def env_file_entries(text: str) -> dict[str, str]:
    out = {}
    for raw in text.splitlines():
        line = raw.strip()
        if line and line[0] not in "#;":
            key, _, value = line.partition("=")
            out[key.strip()] = " ".join(shlex.split(value)) if value.strip() else ""
    return out


def option(argv: list[str], flag: str) -> str:
    return argv[argv.index(flag) + 1]


def test_unit_has_the_production_settings() -> None:
    assert unit_value("User") == unit_value("Group") == "shoal"
    assert unit_value("StateDirectory") == "shoal"
    assert unit_value("Restart") == "on-failure"
    for key, value in {
        "ProtectSystem": "strict",
        "NoNewPrivileges": "yes",
        "PrivateTmp": "yes",
        "ProtectHome": "yes",
        "KillSignal": "SIGTERM",
    }.items():
        assert unit_value(key) == value, key
    writable = " ".join(unit_values("ReadWritePaths")).split()
    assert "/var/lib/shoal" in writable
    argv = exec_start()
    assert argv[:2] == ["/opt/shoal/bin/uvicorn", "shoal:create_app"] and "--factory" in argv
    # systemd must wait longer than uvicorn's graceful shutdown before it kills.
    graceful = int(option(argv, "--timeout-graceful-shutdown"))
    assert int(unit_value("TimeoutStopSec").rstrip("s")) > graceful
    # The data directory is inside the writable state directory.
    environment = unit_environment()
    assert environment["SHOAL_STORAGE__DIRECTORY"].startswith("/var/lib/shoal/")
    assert environment["SHOAL_CONFIG"] in INSTALLED
    # Secure by default: requests signed, keys from a root-only file that must exist.
    assert environment["SHOAL_AUTH__ENABLED"] == "true"
    assert unit_value("EnvironmentFile") in INSTALLED
    steps = install_steps()
    env_file = unit_value("EnvironmentFile")
    assert f"install -D -m 0600 deploy/shoal.env {env_file}" in steps
    assert "SHOAL_AUTH__CREDENTIALS" not in env_file_entries((DEPLOY / "shoal.env").read_text())
    assert any("SHOAL_AUTH__CREDENTIALS" in step and env_file in step for step in steps)
    # Prometheus scrapes the metrics listener the unit sets up.
    port = environment["SHOAL_METRICS__PORT"]
    targets = yaml.safe_load((DEPLOY / "prometheus.yml").read_text())["scrape_configs"][0]
    for target in targets["static_configs"][0]["targets"]:
        assert target.endswith(f":{port}"), target


def unit_environment() -> dict[str, str]:
    return dict(e.split("=", 1) for v in unit_values("Environment") for e in shlex.split(v))


def install_steps() -> list[str]:
    """The commands of the unit's "Install" comment."""
    steps, started = [], False
    for line in UNIT.read_text().splitlines():
        if line.startswith("# Install"):
            started = True
        elif started and line.startswith("#   "):
            steps.append(line[4:].strip())
        elif started and steps:
            break
    return steps


def local_unit(directory: Path) -> Path:
    """The unit as installed on this machine: uvicorn from this venv."""
    copy = directory / "shoal.service"
    copy.write_text(UNIT.read_text().replace("/opt/shoal/bin/", f"{VENV_BIN}/"))
    return copy


@pytest.mark.skipif(
    shutil.which("systemd-analyze") is None,
    reason="systemd-analyze is not installed (Debian package systemd; .ci/run installs it)",
)
def test_systemd_analyze_verify(tmp_path: Path) -> None:
    unit = local_unit(tmp_path)
    done = subprocess.run(
        ["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=120
    )
    # Unknown or misspelt directives are only warnings: any output is a failure.
    assert done.returncode == 0 and not (done.stdout + done.stderr).strip(), done.stderr
    # The sandboxing keeps systemd's exposure score low ("OK", below 2.0 of 10).
    done = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", "--threshold=20", str(unit)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout[-2000:]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_ready(proc: subprocess.Popen[Any], url: str) -> None:
    """Until GET /-/ready answers 200 (or the process dies: fail with its output)."""
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"the server exited with {proc.returncode}"
        try:
            if httpx.get(f"{url}/-/ready", timeout=5).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    pytest.fail(f"{url}/-/ready never answered 200")


def test_exec_start_run_by_hand_serves(tmp_path: Path) -> None:
    """ExecStart with the unit's environment, as systemd would run it, on this machine:
    /opt/shoal/bin is this venv, paths under /etc, /var/lib and /run are below tmp_path,
    and the address is 127.0.0.1 on a free port."""

    def here(value: str) -> str:
        for prefix in ("/etc/shoal", "/var/lib/shoal", "/run/shoal"):
            value = value.replace(prefix, str(tmp_path) + prefix)
        return value

    # What systemd and the installation steps provide.
    for directory in ("StateDirectory", "ConfigurationDirectory", "RuntimeDirectory"):
        root = {"State": "/var/lib", "Configuration": "/etc", "Runtime": "/run"}
        for name in unit_value(directory).split():
            Path(here(f"{root[directory.removesuffix('Directory')]}/{name}")).mkdir(
                parents=True, exist_ok=True
            )
    for target, source in INSTALLED.items():
        shutil.copy(DEPLOY / source, here(target))
    env_file = Path(here(unit_value("EnvironmentFile")))
    # Without the generated keys, ExecStart on the unit's public address refuses to
    # start (before it binds), and says how to set them.
    argv = [here(a).replace("/opt/shoal/bin/", f"{VENV_BIN}/") for a in exec_start()]
    assert option(argv, "--host") == "0.0.0.0"
    argv[argv.index("--port") + 1] = str(free_port())  # (were it to start after all)
    refused = subprocess.run(
        argv,
        env=unit_env(here, env_file),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert refused.returncode != 0 and "SHOAL_AUTH__CREDENTIALS" in refused.stderr
    # The installation step that generates them, as written.
    (step,) = [s for s in install_steps() if "SHOAL_AUTH__CREDENTIALS" in s]
    subprocess.run(["bash", "-c", here(step).replace("python3", sys.executable)], check=True)
    env = unit_env(here, env_file)
    key, secret = env["SHOAL_AUTH__CREDENTIALS"].split(":", 1)
    assert len(secret) >= 32 and secret != "STORAGE"

    argv = [here(a).replace("/opt/shoal/bin/", f"{VENV_BIN}/") for a in exec_start()]
    port, metrics_port = free_port(), free_port()
    argv[argv.index("--host") + 1] = "127.0.0.1"
    argv[argv.index("--port") + 1] = str(port)
    env["SHOAL_METRICS__PORT"] = str(metrics_port)
    url = f"http://127.0.0.1:{port}"
    log = (tmp_path / "stderr").open("w+")
    proc = subprocess.Popen(argv, env=env, cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_ready(proc, url)
        assert httpx.put(f"{url}/anonymous", timeout=30).status_code == 403  # auth is on
        s3 = signed_client(url, key, secret)
        s3.create_bucket(Bucket="unit")
        s3.put_object(Bucket="unit", Key="hello.txt", Body=b"from the unit's ExecStart")
        got = s3.get_object(Bucket="unit", Key="hello.txt")["Body"].read()
        assert got == b"from the unit's ExecStart"
        # Stored where the unit's Environment= says.
        data = Path(env["SHOAL_STORAGE__DIRECTORY"])
        assert data.is_relative_to(tmp_path)
        assert (data / "unit" / f"hello.txt{OBJECT_MARKER}").is_file()
        # The EnvironmentFile was applied: its SHOAL_LOGGING__FORMAT=json.
        log.seek(0)
        # (complete lines only: the server may be writing the last one)
        lines = [json.loads(line) for line in log if line.startswith("{") and line[-1] == "\n"]
        assert lines, "no JSON log"
        assert any(line.get("event") == "starting" and line["auth"] == "on" for line in lines)
        # Prometheus's scrape: the metrics listener, unsigned, on loopback by default.
        scraped = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=30)
        assert scraped.status_code == 200 and "shoal_requests_total" in scraped.text
        # systemd's stop: SIGTERM, then a clean exit. uvicorn finishes its graceful
        # shutdown and re-raises the signal, which systemd counts as a clean stop too.
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) in (0, -signal.SIGTERM)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.seek(0)
        print(log.read()[-5000:])
        log.close()


def unit_env(here: Any, env_file: Path) -> dict[str, str]:
    """The environment systemd gives ExecStart: the unit's, then its EnvironmentFile."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHOAL_")}
    for value in unit_values("Environment"):
        env |= {k: here(v) for k, v in (e.split("=", 1) for e in shlex.split(value))}
    return env | {k: here(v) for k, v in env_file_entries(env_file.read_text()).items()}


# -- the container ------------------------------------------------------------------------

DOCKERFILE = ROOT / "Dockerfile.optional"


def dockerfile_final_stage() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the last stage, continuation lines joined."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line, pending = pending + line, ""
        word, _, rest = line.partition(" ")
        if word.upper() == "FROM":
            instructions = []
        instructions.append((word.upper(), rest.strip()))
    return instructions


def test_dockerfile_commands_serve_here(tmp_path: Path) -> None:
    """Without Docker: the image's CMD and HEALTHCHECK, with this venv's programs, a
    free port and /data below tmp_path, serve and report ready; SIGTERM exits 0."""
    stage = dockerfile_final_stage()
    given = {word: rest for word, rest in stage}
    assert given["USER"] not in ("root", "0") and "/data" in given["VOLUME"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHOAL_")}
    for word, rest in stage:
        if word == "ENV":
            env |= {
                k: v.replace("/data", str(tmp_path / "data"))
                for k, v in (e.split("=", 1) for e in shlex.split(rest))
                if k.startswith("SHOAL_")
            }
    port = str(free_port())
    cmd = json.loads(given["CMD"])
    assert cmd[0] == "shoal" and option(cmd, "--port") == "3000"
    cmd[0] = str(VENV_BIN / "shoal")
    cmd[cmd.index("--port") + 1] = port
    # As the image runs it, on 0.0.0.0, without credentials: refused, saying how to set
    # them (`docker run -e SHOAL_AUTH__...`, or the throwaway opt-in).
    assert option(cmd, "--address") == "0.0.0.0"
    refused = subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert refused.returncode == 2 and "SHOAL_AUTH__CREDENTIALS" in refused.stderr
    assert "SHOAL_SERVER__ALLOW_INSECURE_PUBLIC" in refused.stderr
    cmd[cmd.index("--address") + 1] = "127.0.0.1"
    check = json.loads(given["HEALTHCHECK"].split(" CMD ", 1)[1])
    assert check[0] == "python" and "/-/ready" in check[-1]
    check = [sys.executable, *check[1:-1], check[-1].replace(":3000/", f":{port}/")]

    def healthy() -> bool:
        return subprocess.run(check, capture_output=True, timeout=30).returncode == 0

    assert not healthy()  # nothing listening yet
    proc = subprocess.Popen(cmd, env=env, cwd=tmp_path, stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 90
        while not healthy():
            assert proc.poll() is None and time.monotonic() < deadline, "never healthy"
            time.sleep(0.2)
        s3 = signed_client(f"http://127.0.0.1:{port}", "STORAGE", "STORAGE")
        s3.create_bucket(Bucket="container")
        s3.put_object(Bucket="container", Key="k", Body=b"in /data")
        assert (tmp_path / "data" / "container" / f"k{OBJECT_MARKER}").is_file()
        proc.send_signal(signal.SIGTERM)  # docker stop
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


# -- promtool ------------------------------------------------------------------------------

needs_promtool = pytest.mark.skipif(
    shutil.which("promtool") is None,
    reason="promtool is not installed (Debian package prometheus; .ci/run installs it)",
)


def promtool(*args: str, cwd: Path = DEPLOY) -> str:
    done = subprocess.run(["promtool", *args], cwd=cwd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


@needs_promtool
def test_promtool_checks_rules_and_config() -> None:
    assert "SUCCESS" in promtool("check", "rules", ALERTS.name)
    assert "SUCCESS" in promtool("check", "config", "prometheus.yml")


def dashboard_queries() -> list[str]:
    return [
        target["expr"]
        for panel in json.loads(DASHBOARD.read_text())["panels"]
        for target in panel.get("targets", [])
    ]


def grafana_to_promql(expr: str) -> str:
    return expr.replace("$__rate_interval", "5m").replace("$instance", ".*")


@needs_promtool
def test_dashboard_queries_are_valid_promql(tmp_path: Path) -> None:
    """Each panel's query, as a recording rule, passes promtool's parser."""
    rules = [
        {"record": f"shoal:dashboard_query_{i}", "expr": grafana_to_promql(expr)}
        for i, expr in enumerate(dashboard_queries())
    ]
    (tmp_path / "dashboard.yml").write_text(
        json.dumps({"groups": [{"name": "dashboard", "rules": rules}]})
    )
    promtool("check", "rules", "dashboard.yml", cwd=tmp_path)


@needs_promtool
def test_alerts_fire_when_they_should(tmp_path: Path) -> None:
    """promtool's rule unit tests: each alert fires on the failure it is for, with its
    labels and summary, and not on the healthy series beside it."""
    n1 = {"instance": "n1:3000", "job": "shoal"}

    def series(name: str, values: str, **labels: str) -> dict[str, str]:
        inner = ", ".join(f'{k}="{v}"' for k, v in sorted((n1 | labels).items()))
        return {"series": f"{name}{{{inner}}}", "values": values}

    def fires(alert: str, at: str, labels: dict[str, str] | None = None, summary: str = ""):
        expected = [{"exp_labels": labels, "exp_annotations": {"summary": summary}}]
        return {"eval_time": at, "alertname": alert, "exp_alerts": expected if labels else []}

    critical, warning = {"severity": "critical"}, {"severity": "warning"}
    d0, d1 = {"drive": "/mnt/d0", "set": "0"}, {"drive": "/mnt/d1", "set": "0"}
    tests = [
        {
            "interval": "1m",
            "input_series": [
                series("up", "1 1 0x10"),
                series("shoal_ready", "1x3 0x10"),
                # node2 is down as both other nodes see it; node3 only as node1 sees it.
                series("shoal_node_up", "1 0x10", node="node2"),
                series("shoal_node_up", "1 0x10", node="node2", instance="n3:3000"),
                series("shoal_node_up", "1 0x10", node="node3"),
                series("shoal_node_up", "1x11", node="node3", instance="n3:3000"),
                series("shoal_drive_online", "1 0x10", **d1),
                series("shoal_drive_online", "1x11", **d0),
                series("shoal_drive_free_bytes", "50x20", drive="/mnt/d0"),
                series("shoal_drive_total_bytes", "1000x20", drive="/mnt/d0"),
                series("shoal_drive_free_bytes", "900x20", drive="/mnt/d1"),
                series("shoal_drive_total_bytes", "1000x20", drive="/mnt/d1"),
                series("shoal_heal_backlog", "5000x40"),
                series("shoal_requests_total", "0+100x20", operation="GetObject", status="200"),
                series("shoal_requests_total", "0+20x20", operation="PutObject", status="503"),
            ],
            "alert_rule_test": [
                fires("ShoalInstanceDown", "1m"),
                fires(
                    "ShoalInstanceDown", "5m", n1 | critical, "shoal on n1:3000 cannot be scraped"
                ),
                fires("ShoalNotReady", "10m", n1 | critical, "shoal on n1:3000 is not ready"),
                fires(
                    "ShoalNodeDown",
                    "5m",
                    {"node": "node2"} | critical,
                    "cluster node node2 is down",
                ),
                fires(
                    "ShoalDriveOffline",
                    "8m",
                    n1 | d1 | critical,
                    "drive /mnt/d1 (set 0) is offline",
                ),
                fires("ShoalDiskNearlyFull", "14m"),  # 5% free, but not for 15 minutes yet
                fires(
                    "ShoalDiskNearlyFull",
                    "16m",
                    n1 | {"drive": "/mnt/d0"} | warning,
                    "drive /mnt/d0 on n1:3000 is 5% free",
                ),
                fires("ShoalDiskFull", "16m"),
                fires(
                    "ShoalHealBacklogHigh",
                    "35m",
                    n1 | warning,
                    "healing backlog on n1:3000 is 5000 objects",
                ),
                fires(
                    "ShoalHigh5xxRate",
                    "18m",
                    {"instance": "n1:3000"} | warning,
                    "16.67% of requests to n1:3000 fail with 5xx",
                ),
                fires("ShoalDriveErrors", "10m"),
                fires("ShoalSlowRequests", "10m"),
            ],
        }
    ]
    # Only the summaries are compared: promtool matches annotations exactly.
    rules = yaml.safe_load(ALERTS.read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            rule["annotations"].pop("description", None)
    (tmp_path / "alerts.yml").write_text(json.dumps(rules))
    (tmp_path / "test.yml").write_text(
        json.dumps({"rule_files": ["alerts.yml"], "evaluation_interval": "1m", "tests": tests})
    )
    promtool("test", "rules", "test.yml", cwd=tmp_path)


# -- the dashboard -------------------------------------------------------------------------


def test_dashboard_is_a_grafana_dashboard_with_the_panels() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] and dashboard["title"] and dashboard["schemaVersion"] >= 30
    panels = dashboard["panels"]
    assert len({p["id"] for p in panels}) == len(panels)
    graphs = [p for p in panels if p["type"] != "row"]
    for panel in graphs:
        assert panel["targets"] and all(t["expr"] for t in panel["targets"]), panel["title"]
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24 and grid["h"] > 0, panel["title"]
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["query"] == "prometheus"
    # What an operator looks for, by the metric behind it.
    queries = "\n".join(dashboard_queries())
    for needed in [
        "rate(shoal_requests_total",  # request rate by operation
        "shoal_errors_total",  # errors by code
        "histogram_quantile(0.5, sum by (le) (rate(shoal_request_duration_seconds_bucket",
        "histogram_quantile(0.99, sum by (le) (rate(shoal_request_duration_seconds_bucket",
        "shoal_received_bytes_total",
        "shoal_sent_bytes_total",
        "shoal_bucket_objects",
        "shoal_bucket_bytes",
        "shoal_node_up",
        "shoal_drive_online",
        "shoal_heal_backlog",
        "rate(shoal_rpc_duration_seconds_bucket",
    ]:
        assert needed in queries, needed


# -- every metric referenced exists --------------------------------------------------------

FUNCTION_OR_KEYWORD = {"by", "without", "on", "ignoring", "group_left", "group_right"}
FUNCTION_OR_KEYWORD |= {"bool", "and", "or", "unless", "offset", "inf", "nan"}


@dataclass
class Query:
    where: str
    metrics: set[str] = field(default_factory=set)
    #: label names used in matchers, groupings and templates
    labels: set[str] = field(default_factory=set)
    #: (metric, label) from `metric{label=...}`
    matchers: set[tuple[str, str]] = field(default_factory=set)


def parse_promql(expr: str, where: str) -> Query:
    """Metric names and label names in a PromQL expression (or a Grafana query)."""
    query = Query(where)
    if grafana := re.fullmatch(r"\s*label_values\(\s*([\w:]+)\s*,\s*(\w+)\s*\)\s*", expr):
        query.metrics.add(grafana[1])
        query.labels.add(grafana[2])
        return query
    expr = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`', '""', expr)
    expr = re.sub(r"\$\{?\w+\}?", "", expr)  # Grafana variables
    expr = re.sub(r"\[[^\]]*\]", "", expr)  # range vectors, subqueries
    for grouping in re.findall(
        r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)", expr
    ):
        query.labels.update(re.findall(r"[A-Za-z_]\w*", grouping))
    expr = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", expr)
    for metric, inner in re.findall(r"([A-Za-z_:][\w:]*)?\s*\{([^}]*)\}", expr):
        for label in re.findall(r"([A-Za-z_]\w*)\s*(?:=~|!~|!=|=)", inner):
            query.labels.add(label)
            if metric:
                query.matchers.add((metric, label))
    expr = re.sub(r"\{[^}]*\}", " ", expr)
    for name, call in re.findall(r"(?<![\w:.])([A-Za-z_:][\w:]*)(\s*\()?", expr):
        if not call and name not in FUNCTION_OR_KEYWORD:
            query.metrics.add(name)
    return query


def templated_labels(*texts: str) -> set[str]:
    """Labels named in `{{ $labels.x }}` (alert annotations) or `{{x}}` (legends)."""
    found = set()
    for text in texts:
        found.update(re.findall(r"\{\{\s*\$labels\.(\w+)\s*\}\}", text))
        found.update(re.findall(r"\{\{\s*(\w+)\s*\}\}", text))
    return found


def referenced_queries() -> list[Query]:
    queries = []
    for group in yaml.safe_load(ALERTS.read_text())["groups"]:
        for rule in group["rules"]:
            query = parse_promql(rule["expr"], f"alerts.yml {rule['alert']}")
            query.labels |= templated_labels(*rule.get("annotations", {}).values())
            queries.append(query)
    dashboard = json.loads(DASHBOARD.read_text())
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            query = parse_promql(target["expr"], f"dashboard panel {panel['title']!r}")
            query.labels |= templated_labels(target.get("legendFormat", ""))
            queries.append(query)
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            text = variable["query"]
            text = text["query"] if isinstance(text, dict) else text
            queries.append(parse_promql(text, f"dashboard variable {variable['name']}"))
    return queries


def test_promql_parsing() -> None:
    q = parse_promql(
        "histogram_quantile(0.99, sum by (method, le) (rate(shoal_rpc_duration_seconds_bucket"
        '{instance=~"$instance"}[$__rate_interval]))) / ignoring(x) up offset 5m > 1e3',
        "t",
    )
    assert q.metrics == {"shoal_rpc_duration_seconds_bucket", "up"}
    assert q.labels == {"method", "le", "instance", "x"}
    assert q.matchers == {("shoal_rpc_duration_seconds_bucket", "instance")}
    q = parse_promql("label_values(shoal_build_info, instance)", "t")
    assert (q.metrics, q.labels) == ({"shoal_build_info"}, {"instance"})
    assert templated_labels("{{ $labels.drive }} of {{set}} {{ $value }}") == {"drive", "set"}


@dataclass
class Exposition:
    """Sample names seen in /metrics output, with the labels each carried."""

    labels: dict[str, set[str]] = field(default_factory=dict)

    def add(self, text: str) -> None:
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                self.labels.setdefault(sample.name, set()).update(sample.labels)


def scrape(url: str) -> str:
    response = httpx.get(f"{url}/metrics", timeout=30)
    assert response.status_code == 200, response.text[:500]
    return response.text


def exercise(s3: Any, bucket: str) -> None:
    """A few requests of each kind: successes, an error, an upload left in progress."""
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="a.txt", Body=b"x" * 300_000)
    s3.get_object(Bucket=bucket, Key="a.txt")["Body"].read()
    s3.list_objects_v2(Bucket=bucket)
    with pytest.raises(ClientError):
        s3.get_object(Bucket=bucket, Key="missing")
    s3.create_multipart_upload(Bucket=bucket, Key="big")


def wanted(queries: list[Query]) -> set[str]:
    return {m for q in queries for m in q.metrics} - {"up"}


def scrape_until(urls: list[str], names: set[str], seen: Exposition) -> None:
    """Scrape until every name has been seen or a while has passed (heartbeats report on
    their own schedule); what is missing then is the test's failure."""
    deadline = time.monotonic() + 30
    while True:
        for url in urls:
            seen.add(scrape(url))
        if names <= seen.labels.keys() or time.monotonic() > deadline:
            return
        time.sleep(0.5)


@pytest.fixture(scope="module")
def exposition(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Exposition]:
    """/metrics of a standalone server, an erasure-coded node and a 3-node cluster, each
    after a few requests."""
    names = wanted(referenced_queries())
    seen = Exposition()
    tmp = tmp_path_factory.mktemp("deploy-metrics")

    proc, url = spawn_server(tmp / "standalone")
    try:
        exercise(signed_client(url, "STORAGE", "STORAGE"), "standalone")
        seen.add(scrape(url))
    finally:
        proc.terminate()
        proc.wait(timeout=30)

    config = tmp / "erasure.toml"
    config.write_text(load_config(erasure_config(tmp / "erasure"), env={}).to_toml())
    proc, url = spawn_server(tmp / "erasure-state", "--config", str(config), "--log-level", "error")
    try:
        exercise(signed_client(url, "STORAGE", "STORAGE"), "erasure")
        seen.add(scrape(url))
    finally:
        proc.terminate()
        proc.wait(timeout=30)

    nodes = make_nodes(tmp / "cluster", 3, 2)
    with running(nodes):
        exercise(signed_client(nodes[0].endpoint, KEY, SECRET_KEY), "cluster")
        scrape_until([node.endpoint for node in nodes], names, seen)
    yield seen


def check_exists(queries: list[Query], seen: Exposition) -> None:
    missing, bad_labels = [], []
    for query in queries:
        metrics = query.metrics - {"up"}
        missing += [f"{query.where}: {m}" for m in sorted(metrics - seen.labels.keys())]
        available = set().union(*(seen.labels.get(m, set()) for m in metrics)) | TARGET_LABELS
        bad_labels += [f"{query.where}: label {lbl}" for lbl in sorted(query.labels - available)]
        bad_labels += [
            f"{query.where}: {m}{{{lbl}}}"
            for m, lbl in sorted(query.matchers)
            if m in seen.labels and lbl not in seen.labels[m] | TARGET_LABELS
        ]
    assert not missing, "not in any /metrics output:\n" + "\n".join(missing)
    assert not bad_labels, "labels no such series carries:\n" + "\n".join(bad_labels)


def test_check_exists_catches_unknown_metrics_and_labels() -> None:
    seen = Exposition()
    seen.add('# TYPE shoal_x_total counter\nshoal_x_total{code="a"} 1\n')
    check_exists([parse_promql('sum by (code) (rate(shoal_x_total{job="s"}[5m]))', "ok")], seen)
    for expr in ["shoal_y", "sum by (node) (shoal_x_total)", 'shoal_x_total{drive="d"}']:
        with pytest.raises(AssertionError):
            check_exists([parse_promql(expr, "bad")], seen)


@pytest.mark.slow
def test_alert_rules_use_only_metrics_that_exist(exposition: Exposition) -> None:
    queries = [q for q in referenced_queries() if q.where.startswith("alerts.yml")]
    assert len(queries) >= 8
    check_exists(queries, exposition)


@pytest.mark.slow
def test_dashboard_uses_only_metrics_that_exist(exposition: Exposition) -> None:
    queries = [q for q in referenced_queries() if q.where.startswith("dashboard")]
    assert len(queries) >= 20
    check_exists(queries, exposition)
