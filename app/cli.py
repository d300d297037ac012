"""`shoal serve`: run the server with uvicorn (uvloop + httptools); `shoal admin`:
accounts, keys and identity policies through the admin API (app/admincli.py).

Flags are overrides on top of the TOML file and SHOAL_* environment. The socket is bound
here, before uvicorn starts, so `--port 0` works: once the app is up, one line
`shoal listening on http://HOST:PORT` goes to stdout for a parent process to read.
Logs (app/logs.py) go to stderr. SIGTERM (or SIGINT) stops it gracefully: no new
connections, requests in flight get up to --timeout-graceful-shutdown seconds to finish,
the rest are cut off cleanly (nothing partial stored), storage and QUIC close.
Exit status: 0 after a clean stop (SIGTERM included), 130 after SIGINT, 2 for a bad
configuration or usage (listening beyond loopback with auth off or the default
credentials included: app/exposure.py), 1 when the address cannot be bound, 3 when the
application fails to start (e.g. drive folders that cannot be used: one line `shoal:
storage failed to open: ...` on stderr, no traceback).
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
from typing import Any

from shoal import collector_paused
from shoal.app import admincli
from shoal.config import ConfigError, load_config

EXIT_CONFIG = 2
EXIT_BIND = 1
EXIT_START = 3  # the application failed to start (e.g. storage that cannot be opened)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="shoal", description="shoal: an S3-compatible object server"
    )
    parser.add_argument("--version", action=_VersionAction, nargs=0, help=_VERSION_HELP)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    serve = sub.add_parser(
        "serve",
        help="run the server",
        description="Run the server. Flags override the config file and SHOAL_* variables.",
    )
    serve.set_defaults(command_parser=serve)  # errors in serve's flags show serve's usage
    serve.add_argument("--config", metavar="FILE", help="TOML config file (default: $SHOAL_CONFIG)")
    serve.add_argument("--port", type=int, metavar="N", help="port; 0 picks a free one")
    serve.add_argument("--address", metavar="A", help="address to bind, e.g. 127.0.0.1")
    serve.add_argument("--dir", metavar="PATH", help="data directory (storage.directory)")
    serve.add_argument(
        "--clean-slate", action="store_true", default=None, help="wipe the data directory first"
    )
    serve.add_argument("--access-key", metavar="K", help="access key (with --secret-key)")
    serve.add_argument("--secret-key", metavar="S", help="secret key (with --access-key)")
    serve.add_argument("--auth", action="store_true", default=None, help="require SigV4 signatures")
    serve.add_argument("--region", metavar="R", help="region, default us-east-1")
    serve.add_argument(
        "--base-domain", metavar="D", help="enable virtual-hosted-style bucket.D addressing"
    )
    serve.add_argument("--tls-cert", metavar="F", help="PEM certificate (with --tls-key)")
    serve.add_argument("--tls-key", metavar="F", help="PEM private key (with --tls-cert)")
    serve.add_argument("--log-level", choices=["error", "warn", "info", "debug"])
    serve.add_argument("--log-format", choices=["text", "json"])
    serve.add_argument("--silent", action="store_true", default=None, help="no log output")
    serve.add_argument(
        "--timeout-graceful-shutdown",
        type=float,
        metavar="SECONDS",
        default=30.0,
        help="after SIGTERM, how long requests in flight may take to finish (default 30)",
    )
    # For embedding (app.server): stop when stdin closes, i.e. when the parent is gone.
    serve.add_argument("--exit-with-parent", action="store_true", help=argparse.SUPPRESS)
    # For tests and tools: serve another app factory ("module:callable").
    serve.add_argument("--app", default=None, help=argparse.SUPPRESS)
    admincli.add_parser(sub)
    return parser


def overrides_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """Only the flags that were given, as a nested overrides mapping."""
    out: dict[str, dict[str, Any]] = {}

    def put(section: str, key: str, value: Any) -> None:
        if value is not None:
            out.setdefault(section, {})[key] = value

    put("server", "port", args.port)
    put("server", "address", args.address)
    put("server", "region", args.region)
    put("server", "base_domain", args.base_domain)
    put("server", "silent", args.silent)
    put("storage", "directory", args.dir)
    put("storage", "clean_slate", args.clean_slate)
    put("auth", "enabled", args.auth)
    put("logging", "level", args.log_level)
    put("logging", "format", args.log_format)
    if args.access_key is not None or args.secret_key is not None:
        put(
            "auth",
            "credentials",
            [{"access_key_id": args.access_key, "secret_access_key": args.secret_key}],
        )
    if args.tls_cert is not None or args.tls_key is not None:
        tls = {"cert_file": args.tls_cert, "key_file": args.tls_key}
        put("server", "tls", {k: v for k, v in tls.items() if v is not None})
    return out


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "serve":
        if (args.access_key is None) != (args.secret_key is None):
            have, lack = ("access", "secret") if args.access_key else ("secret", "access")
            args.command_parser.error(f"--{have}-key needs --{lack}-key")
        return serve(args)
    if args.command == "admin":
        return admincli.run(args)
    parser.print_help(sys.stderr)
    return EXIT_CONFIG


def _fail(message: str, status: int) -> int:
    print(f"shoal: {message}", file=sys.stderr, flush=True)
    return status


def serve(args: argparse.Namespace) -> int:
    try:
        cfg = load_config(overrides_from_args(args), config_file=args.config)
    except ConfigError as e:
        if half := _half_tls_flags(args, e):
            args.command_parser.error(half)  # exits with status 2, like other usage errors
        return _fail(str(e), EXIT_CONFIG)
    from shoal.app import exposure  # (light: the HTTP stack is not loaded yet)

    try:
        exposure.check(cfg, cfg.server.address)
    except ConfigError as e:
        return _fail(str(e), EXIT_CONFIG)
    tls = cfg.server.tls
    for key, path in (("cert_file", tls.cert_file), ("key_file", tls.key_file)):
        if path is not None and not os.access(path, os.R_OK):
            return _fail(f"server.tls.{key}: cannot read {path!r}", EXIT_CONFIG)

    # Imported late: a config error should not pay for loading the HTTP stack. (This
    # process is the server's own: what loading it builds is frozen, shoal.collector_paused.)
    with collector_paused(freeze=True):
        from shoal.app import lifecycle, logs
        from shoal.app.server import (
            ShoalUvicornServer,
            bind_socket,
            default_app_factory,
            import_factory,
            listening_line,
            uvicorn_config,
        )

    try:
        sock = bind_socket(cfg.server.address, cfg.server.port)
    except OSError as e:
        where = f"{cfg.server.address}:{cfg.server.port}"
        return _fail(f"cannot listen on {where}: {e.strerror or e}", EXIT_BIND)

    logs.configure(cfg)
    factory = import_factory(args.app) if args.app else default_app_factory
    try:
        with collector_paused(freeze=True):  # (the factory imports the app's modules)
            app = factory(cfg)
    except ConfigError as e:  # settings the app refuses (e.g. features not built yet)
        sock.close()
        return _fail(str(e), EXIT_CONFIG)

    def announce() -> None:
        line = listening_line(sock, tls.enabled)
        lifecycle.log.info("listening", extra={"url": line.rsplit(" ", 1)[1]})
        print(line, flush=True)  # last: a parent may act on it (even SIGTERM) at once

    graceful = max(args.timeout_graceful_shutdown, 0.0)
    settings = uvicorn_config(app, cfg, embedded=False, graceful_shutdown=graceful)
    server = ShoalUvicornServer(settings, on_started=announce)
    if args.exit_with_parent:
        threading.Thread(target=_exit_on_stdin_eof, args=(server,), daemon=True).start()
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:
        return 130
    except SystemExit as e:  # uvicorn's failed startup: storage that cannot be opened...
        reason = lifecycle.start_error(app)
        if reason is None:
            raise
        return _fail(reason, e.code if isinstance(e.code, int) else EXIT_START)
    finally:
        sock.close()
    return 0


def _half_tls_flags(args: argparse.Namespace, error: ConfigError) -> str | None:
    """The usage error, in terms of the flags, when one of --tls-cert/--tls-key was given
    and neither the other flag nor the config file supplied its partner."""
    pairs = {
        "server.tls.key_file": ("--tls-cert", args.tls_cert, "--tls-key", "key_file"),
        "server.tls.cert_file": ("--tls-key", args.tls_key, "--tls-cert", "cert_file"),
    }
    if error.key not in pairs:
        return None
    have, given, lack, key = pairs[error.key]
    if given is None:  # the config file set only one of them: the key-named message fits
        return None
    return f"{have} needs {lack} (or server.tls.{key} in the config file)"


def _exit_on_stdin_eof(server: Any) -> None:
    """A parent that dies without stopping us closes our stdin; shut down gracefully.

    Reads the raw fd, not sys.stdin: this daemon thread is still blocked in the read when
    the interpreter exits, and one blocked inside the buffered reader holds its lock,
    which aborts finalization (`Fatal Python error: _enter_buffered_busy`, SIGABRT)."""
    fd = sys.stdin.fileno() if sys.stdin is not None else 0
    try:
        while os.read(fd, 4096):
            pass
    except (OSError, ValueError):
        pass
    server.should_exit = True


_VERSION_HELP = "show program's version number and exit"


class _VersionAction(argparse.Action):
    """argparse's `version` action, looking the version up only when asked: the
    package-metadata scan costs tens of milliseconds of every start otherwise."""

    def __call__(self, parser: argparse.ArgumentParser, *_: Any) -> None:
        print(f"{parser.prog} {_version()}", flush=True)  # stdout, as argparse's own
        parser.exit()


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("shoal")
    except PackageNotFoundError:  # imported from a checkout that was never installed
        return "0+unknown"


if __name__ == "__main__":
    sys.exit(main())
