"""Subprocess plumbing for the benchmarks: servers (and a 3-node cluster), client runs,
CPU pinning, cleanup.

Every process started here is registered and stopped by `stop_all()` (run.py calls it
in a `finally`, also on Ctrl-C). Servers run in their own session so a terminal's Ctrl-C
reaches only the orchestrator, which then stops them in order.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

from sigv4 import Credentials, signed_headers

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(BENCH_DIR)
PYTHON = sys.executable
LISTEN_RE = re.compile(r"listening on http://([\d.]+):(\d+)")

_live: list[subprocess.Popen[bytes]] = []


def cpu_plan(pin: bool) -> tuple[set[int] | None, set[int] | None]:
    """(server CPUs, client CPUs): one core each when there are at least two."""
    cpus = sorted(os.sched_getaffinity(0))
    if not pin or len(cpus) < 2:
        return None, None
    return {cpus[0]}, {cpus[1]}


def _preexec(cpus: set[int] | None) -> Callable[[], None] | None:
    """A `preexec_fn` pinning the child to `cpus` (None: leave it be)."""
    if cpus is None:
        return None

    def pin() -> None:
        os.sched_setaffinity(0, cpus)

    return pin


pin_fn = _preexec


def spawn(
    argv: list[str],
    *,
    cpus: set[int] | None,
    log_path: str | None,
    new_session: bool = True,
    env: dict[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    """Start a registered child; output goes to `log_path` (never to a pipe we might
    not drain). `env` is added to our own environment."""
    out: Any = subprocess.DEVNULL
    if log_path is not None:
        out = open(log_path, "ab")  # noqa: SIM115 (handed to the child)
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    try:
        proc = subprocess.Popen(
            argv,
            cwd=REPO,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=new_session,
            preexec_fn=_preexec(cpus),
            env=env,
        )
    finally:
        if log_path is not None:
            out.close()
    _live.append(proc)
    return proc


def stop(proc: subprocess.Popen[bytes], grace: float = 10.0) -> None:
    """SIGTERM the child's process group, then SIGKILL after `grace` seconds."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)
    if proc in _live:
        _live.remove(proc)


def stop_all() -> None:
    for proc in list(_live):
        try:
            stop(proc, grace=5.0)
        except Exception as e:  # keep stopping the others
            print(f"bench: could not stop pid {proc.pid}: {e}", file=sys.stderr)


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


@contextlib.contextmanager
def scratch(prefix: str) -> Iterator[tuple[str, Callable[[str], None]]]:
    """A bench run's frame: a scratch folder (with the servers' byte code) and a timed
    log to stderr; SIGTERM and SIGINT (even when started in the background, where SIGINT
    is ignored) raise KeyboardInterrupt; on the way out every server is stopped and the
    folder removed."""
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    work = tempfile.mkdtemp(prefix=prefix)
    # Servers started from here keep their byte code as an installed copy does (pip
    # compiles it), in the scratch folder, not in the checkout: where the environment
    # says not to write any, each start would compile every module again.
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    os.environ["PYTHONPYCACHEPREFIX"] = os.path.join(work, "pycache")
    t_start = time.monotonic()

    def log(msg: str) -> None:
        print(f"[{time.monotonic() - t_start:6.1f}s] {msg}", file=sys.stderr, flush=True)

    try:
        yield work, log
    finally:
        stop_all()
        shutil.rmtree(work, ignore_errors=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def tail(path: str, n: int = 2000) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - n))
            return f.read().decode(errors="replace")
    except OSError:
        return ""


def http_answers(port: int, deadline: float) -> bool:
    """One attempt: connect to 127.0.0.1:`port` and read an HTTP status line (any
    status); False if nothing answers yet."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0) as s:
            s.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            s.settimeout(max(0.1, deadline - time.perf_counter()))
            return s.recv(16).startswith(b"HTTP/1.")
    except OSError:
        return False


class Server:
    """A server subprocess that announces `... listening on http://HOST:PORT`."""

    def __init__(
        self,
        name: str,
        argv: list[str],
        log_path: str,
        cpus: set[int] | None,
        env: dict[str, str] | None = None,
        probe_port: int | None = None,
    ) -> None:
        self.name = name
        self.argv = argv
        self.log_path = log_path
        # A server that doesn't print `listening on` (uvicorn serving shoal's factory):
        # it listens on this port, and is ready once an HTTP answer comes back.
        self.probe_port = probe_port
        self.cpus = cpus
        self.env = env
        self.proc: subprocess.Popen[bytes] | None = None
        self.host = "127.0.0.1"
        self.port = 0
        self._offset = 0

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def pids(self) -> list[int]:
        """The processes whose CPU time counts as the server's."""
        return [self.pid]

    def start(self, timeout: float = 30.0) -> Server:
        self.launch()
        return self.wait_ready(timeout)

    def launch(self) -> None:
        """Spawn the process without waiting for it (`wait_ready()` does)."""
        self._offset = os.path.getsize(self.log_path) if os.path.exists(self.log_path) else 0
        self.proc = spawn(self.argv, cpus=self.cpus, log_path=self.log_path, env=self.env)

    def wait_ready(self, timeout: float = 30.0) -> Server:
        """Wait for the `listening on` line (in the log, past what was there before)."""
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.probe_port is not None:
                if http_answers(self.probe_port, time.perf_counter() + 1.0):
                    self.port = self.probe_port
                    return self
            else:
                with open(self.log_path, "rb") as f:
                    f.seek(self._offset)
                    m = LISTEN_RE.search(f.read().decode(errors="replace"))
                if m:
                    self.host, self.port = m.group(1), int(m.group(2))
                    return self
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited with {self.proc.returncode}:\n{tail(self.log_path)}"
                )
            time.sleep(0.01)
        self.stop()
        raise RuntimeError(f"{self.name} did not announce itself in {timeout}s")

    def stop(self) -> None:
        if self.proc is not None:
            stop(self.proc)
            self.proc = None

    def __enter__(self) -> Server:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def shoal_argv(data_dir: str, port: int = 0) -> list[str]:
    return [
        PYTHON,
        "-m",
        "shoal",
        "serve",
        "--address",
        "127.0.0.1",
        "--port",
        str(port),
        "--dir",
        data_dir,
    ]


#: drive folders of the benchmark's erasure-coded node: 4 data + 2 parity shards (the
#: cluster.erasure defaults, as is the chunk size)
EC_DRIVES = 6


def erasure_env(root: str, drives: int = EC_DRIVES) -> dict[str, str]:
    """SHOAL_* variables for a single erasure-coded node over `drives` folders under
    `root` (created here); shard counts, backend and chunk size stay at their defaults."""
    paths = [os.path.join(root, f"drive{i}") for i in range(1, drives + 1)]
    for p in paths:
        os.makedirs(p, exist_ok=True)
    return {"SHOAL_CLUSTER__ENABLED": "true", "SHOAL_CLUSTER__DRIVES__PATHS": ",".join(paths)}


def sse_env() -> dict[str, str]:
    """SHOAL_* variables giving a standalone shoal a one-key keyring (a fresh random
    32-byte key each time, never written to disk), so it can seal SSE-S3 objects."""
    key = base64.b64encode(os.urandom(32)).decode()
    return {"SHOAL_KMS__KEYS": json.dumps([{"id": "bench-key", "secret": key}])}


#: the benchmark's cluster: CLUSTER_NODES node processes with CLUSTER_DRIVES drive folders
#: each, i.e. one erasure set of 6 drives at the default 4 data + 2 parity shards
CLUSTER_NODES = 3
CLUSTER_DRIVES = 2


def _toml_list(items: list[str]) -> str:
    return "[" + ", ".join(json.dumps(i) for i in items) + "]"


class ClusterServer:
    """CLUSTER_NODES shoal node processes on 127.0.0.1 forming one cluster over QUIC,
    used like a `Server`: `host`, `port` and `pid` are node 0's (the coordinator the
    client talks to); `pids` are all the nodes (their CPU time counts as the server's).

    Each node gets a TOML config (as tests/integration/test_cluster.py writes them):
    `[cluster]` enabled, node_id, a free UDP `quic_port`, the other nodes as
    `seed_nodes`, a shared secret, heartbeats every second; `[cluster.drives]` two
    folders. Erasure layout, chunk size, drive timeouts and datagram size stay at their
    defaults; auth is off, as on the other servers (the bench client doesn't sign).
    The nodes are all started before any is waited for (a node announces itself only
    once the cluster has formed), then `start()` waits until node 0's `GET /-/cluster`
    shows every node alive and every drive online.
    """

    def __init__(
        self,
        name: str,
        root: str,
        log_dir: str,
        cpus: set[int] | None,
        nodes: int = CLUSTER_NODES,
        drives: int = CLUSTER_DRIVES,
        cluster_toml: str = "",
        env: dict[str, str] | None = None,
        auth: Credentials | None = None,
    ) -> None:
        """`cluster_toml`: more `[cluster]` lines (e.g. `max_datagram_size = 1452`);
        `env`: more variables for every node (e.g. auth)."""
        self.name = name
        self.root = root
        self.cpus = cpus
        self.auth = auth
        self.info: dict[str, Any] = {}
        self.drives = nodes * drives
        ports = [free_udp_port() for _ in range(nodes)]
        self.nodes: list[Server] = []
        for i in range(nodes):
            home = os.path.join(root, f"node{i}")
            paths = [os.path.join(home, f"drive{d}") for d in range(drives)]
            for p in paths:
                os.makedirs(p, exist_ok=True)
            seeds = [f"127.0.0.1:{p}" for j, p in enumerate(ports) if j != i]
            config = os.path.join(home, "shoal.toml")
            with open(config, "w") as f:
                f.write(
                    "[cluster]\n"
                    "enabled = true\n"
                    f'node_id = "node{i}"\n'
                    f"quic_port = {ports[i]}\n"
                    f"seed_nodes = {_toml_list(seeds)}\n"
                    'secret = "shoal-bench-cluster"\n'
                    "heartbeat_interval_ms = 1000\n"
                    "heartbeat_timeout_ms = 30000\n"
                    f"{cluster_toml}"
                    "\n[cluster.drives]\n"
                    f"paths = {_toml_list(paths)}\n"
                )
            argv = [*shoal_argv(os.path.join(home, "state")), "--config", config]
            self.nodes.append(
                Server(
                    f"{name} node{i}",
                    argv,
                    os.path.join(log_dir, f"{name}-node{i}.log"),
                    cpus,
                    env=env,
                )
            )

    @property
    def host(self) -> str:
        return self.nodes[0].host

    @property
    def port(self) -> int:
        return self.nodes[0].port

    @property
    def pid(self) -> int:
        return self.nodes[0].pid

    @property
    def pids(self) -> list[int]:
        return [n.pid for n in self.nodes]

    @property
    def peer_pids(self) -> list[int]:
        return [n.pid for n in self.nodes[1:]]

    def start(self, timeout: float = 60.0) -> ClusterServer:
        deadline = time.monotonic() + timeout
        try:
            for node in self.nodes:
                node.launch()
            for node in self.nodes:
                node.wait_ready(max(1.0, deadline - time.monotonic()))
            self.info = self._wait_formed(deadline)
        except BaseException:
            self.stop()
            raise
        return self

    def status(self) -> dict[str, Any]:
        """Node 0's `GET /-/cluster` (signed when its nodes run with auth)."""
        return cluster_status(self.host, self.port, self.auth)

    def _wait_formed(self, deadline: float) -> dict[str, Any]:
        info: dict[str, Any] = {}
        while True:
            try:
                info = self.status()
            except (OSError, ValueError):
                info = {}
            nodes = info.get("nodes") or []
            drives = [d for s in info.get("sets") or [] for d in s]
            if (
                len(nodes) == len(self.nodes)
                and all(n.get("state") == "alive" for n in nodes)
                and len(drives) == self.drives
                and all(d.get("state") == "online" for d in drives)
            ):
                return info
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"{self.name}: not formed in time: nodes "
                    f"{[(n.get('node_id'), n.get('state')) for n in nodes]}, drives "
                    f"{[(d.get('name'), d.get('state')) for d in drives]}; node0 log:\n"
                    f"{tail(self.nodes[0].log_path)}"
                )
            for node in self.nodes:
                if node.proc is not None and node.proc.poll() is not None:
                    raise RuntimeError(
                        f"{node.name} exited with {node.proc.returncode}:\n{tail(node.log_path)}"
                    )
            time.sleep(0.2)

    def stop(self) -> None:
        """SIGTERM every node first, then wait for each (so none waits on a peer that
        hasn't been told yet)."""
        for node in self.nodes:
            if node.proc is not None and node.proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(node.proc.pid, signal.SIGTERM)
        for node in self.nodes:
            node.stop()

    def __enter__(self) -> ClusterServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def cluster_status(host: str, port: int, auth: Credentials | None = None) -> dict[str, Any]:
    """A node's `GET /-/cluster` (mode, erasure layout, nodes, drives), signed with
    `auth` when given."""
    headers = {}
    if auth is not None:
        headers = signed_headers(auth, "GET", "/-/cluster", f"{host}:{port}")
    req = urllib.request.Request(f"http://{host}:{port}/-/cluster", headers=headers)
    with urllib.request.urlopen(req, timeout=10) as r:
        return dict(json.load(r))


def file_server_argv(name: str, data_dir: str, port: int = 0) -> list[str]:
    """The command line of one of the bench's file servers: "baseline" (durable) or
    "rawasgi" (the outside harness's raw ASGI server)."""
    script = os.path.join(BENCH_DIR, f"{name}.py")
    return [PYTHON, script, "--address", "127.0.0.1", "--port", str(port), "--dir", data_dir]


#: The bench's access key for the production-line shoal (auth on, as the unit runs it).
BENCH_ACCESS_KEY = "bench"


def production_argv(port: int) -> list[str]:
    """shoal as deploy/shoal.service starts it (README "Production"): uvicorn serving the
    app factory with the unit's flags; only the address (127.0.0.1) and port differ."""
    return [
        PYTHON,
        "-m",
        "uvicorn",
        "shoal:create_app",
        "--factory",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--loop",
        "uvloop",
        "--http",
        "shoal.app.protocol:HttpProtocol",
        "--lifespan",
        "on",
        "--ws",
        "none",
        "--no-proxy-headers",
        "--no-server-header",
        "--no-access-log",
        "--timeout-graceful-shutdown",
        "30",
    ]


def production_env(data_dir: str, secret: str, metrics_port: int) -> dict[str, str]:
    """The unit's environment (its Environment= lines and deploy/shoal.env's settings):
    the example TOML (every key at its default), data under `data_dir`, auth on with
    one generated key, metrics on their own listener, JSON logs (shoal's access log,
    one line per request, to the server's log file as journald would get it)."""
    return {
        "SHOAL_CONFIG": os.path.join(REPO, "deploy", "shoal.example.toml"),
        "SHOAL_STORAGE__DIRECTORY": data_dir,
        "SHOAL_AUTH__ENABLED": "true",
        "SHOAL_AUTH__CREDENTIALS": f"{BENCH_ACCESS_KEY}:{secret}",
        "SHOAL_METRICS__PORT": str(metrics_port),
        "SHOAL_LOGGING__FORMAT": "json",
    }


def null_argv(port: int = 0) -> list[str]:
    return [PYTHON, os.path.join(BENCH_DIR, "nullserver.py"), "--port", str(port)]


def run_client(
    server: Server | ClusterServer,
    ops: list[dict[str, Any]],
    *,
    cpus: set[int] | None,
    timeout: float,
    during: Callable[[], None] | None = None,
    auth: dict[str, str] | None = None,
) -> list[dict[str, Any]]:
    """Run bench/client.py against `server` with `ops`; returns one result per op.
    `during`, if given, is called once the client is running (e.g. to start a sampler);
    `auth` ({access_key, secret, region}) makes it sign every request."""
    spec = json.dumps({"host": server.host, "port": server.port, "ops": ops, "auth": auth})
    proc = subprocess.Popen(
        [PYTHON, os.path.join(BENCH_DIR, "client.py"), spec],
        cwd=REPO,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        preexec_fn=_preexec(cpus),
    )
    _live.append(proc)
    try:
        if during is not None:
            during()
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise RuntimeError(f"client timed out after {timeout}s") from None
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc in _live:
            _live.remove(proc)
    if proc.returncode != 0:
        raise RuntimeError(f"client failed ({proc.returncode}): {err.decode()[-2000:]}")
    return list(json.loads(out))


def tree_pids(pid: int) -> list[int]:
    """`pid` and all its descendants (via /proc/*/task/*/children)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as f:
                    todo.extend(int(c) for c in f.read().split())
        except OSError:
            continue
    return out


def cpu_times(pids: list[int]) -> tuple[float, float]:
    """(user, system) CPU seconds used so far by `pids` and their descendants (all
    threads)."""
    user = system = 0
    for p in (p for pid in pids for p in tree_pids(pid)):
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            user += int(fields[11])  # utime, stime (fields 14, 15)
            system += int(fields[12])
        except (OSError, IndexError, ValueError):
            continue
    tick = os.sysconf("SC_CLK_TCK")
    return user / tick, system / tick


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds used so far by `pid` and its descendants (all threads)."""
    return sum(cpu_times([pid]))


def settled_rss(pid: int, still: float = 0.5, timeout: float = 10.0) -> int:
    """rss_bytes(pid) once it has held within 64 KiB for `still` seconds (or after
    `timeout`): a server loads modules for a while after its first answer (app.asgi's
    warm-up, ~15 MiB), and an "idle" read before that counts them as growth."""
    deadline = time.monotonic() + timeout
    last, since = rss_bytes(pid), time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.05)
        now = rss_bytes(pid)
        if abs(now - last) > 64 * 1024:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= still:
            break
    return last


def rss_bytes(pid: int) -> int:
    """VmRSS summed over the process tree rooted at `pid` (0 if gone)."""
    total = 0
    for p in tree_pids(pid):
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) * 1024
                        break
        except OSError:
            continue
    return total
