"""Where shoal's event-loop time goes on the small-object paths (cProfile).

Starts shoal under `python -m cProfile`, drives 4 KiB PUTs and then 4 KiB GETs at
16 connections from the usual client process, stops the server (SIGTERM, so cProfile
writes its file) and prints the top functions by own time and by cumulative time.
cProfile sees the main thread only: the event loop and everything it runs. Work done
on anyio worker threads (disk I/O, fsync, hashing) shows up as time awaiting them.

Usage: `python bench/profile_small.py [--seconds 4] [--op put|get|both] [--top 30]
[--erasure]` (--erasure: a single erasure-coded node over 6 drive folders, as
`bench/run.py --only erasure-node` starts it).
"""

from __future__ import annotations

import argparse
import io
import os
import pstats
import sys

import procs


def serve_profiled(out: str, args: list[str]) -> int:
    """Child mode: run `shoal <args>` under a profiler, dumping stats to `out` on exit.
    `out` ending in .yappi means yappi (CPU clock, every thread), else cProfile (main
    thread, wall clock). uvicorn re-raises SIGTERM after a graceful stop; our handler
    turns it into SystemExit so the stats still get written."""
    import signal

    sys.path.insert(0, procs.REPO)
    from shoal.app.cli import main as shoal_main

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    if out.endswith(".yappi"):
        import yappi

        yappi.set_clock_type("cpu")
        yappi.start()
        try:
            return shoal_main(args)
        finally:
            yappi.stop()
            yappi.get_func_stats().save(out, type="pstat")
            with open(out + ".threads", "w") as f:
                yappi.get_thread_stats().print_all(out=f)
    import cProfile

    prof = cProfile.Profile()
    prof.enable()
    try:
        return shoal_main(args)
    finally:
        prof.disable()
        prof.dump_stats(out)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--serve-profiled"]:
        return serve_profiled(argv[1], argv[2:])
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--op", choices=["put", "get", "both"], default="both")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument(
        "--yappi",
        action="store_true",
        help="yappi, CPU clock, all threads (pip install yappi) instead of "
        "cProfile (main thread, wall clock)",
    )
    parser.add_argument(
        "--callees",
        metavar="FUNC",
        help="also print what the functions matching FUNC (a pstats pattern) call",
    )
    parser.add_argument(
        "--erasure",
        action="store_true",
        help="profile an erasure-coded node (6 drive folders, 4+2) instead of standalone",
    )
    args = parser.parse_args(argv)
    server_cpus, client_cpus = procs.cpu_plan(True)
    with procs.scratch("shoal-bench-prof-") as (work, _):
        for op in ["put", "get"] if args.op == "both" else [args.op]:
            data = os.path.join(work, f"data-{op}")
            prof = os.path.join(work, f"{op}.yappi" if args.yappi else f"{op}.prof")
            argv_ = [
                procs.PYTHON,
                os.path.abspath(__file__),
                "--serve-profiled",
                prof,
                *procs.shoal_argv(data)[3:],
            ]
            env = None
            if args.erasure:
                env = procs.erasure_env(os.path.join(work, f"drives-{op}"))
            server = procs.Server(
                "shoal", argv_, os.path.join(work, f"{op}.log"), server_cpus, env=env
            )
            spec = {
                "bucket": "profbench",
                "size": 4096,
                "concurrency": args.concurrency,
                "duration": args.seconds,
                "warmup": 0.0,
                "max_ops": 1_000_000,
            }
            with server:
                ops: list[dict] = [{"op": "bucket", "bucket": "profbench"}]
                if op == "put":
                    ops.append({"op": "small_put", **spec})
                else:
                    ops.append({"op": "small_get", "n_keys": 256, **spec})
                results = procs.run_client(
                    server, ops, cpus=client_cpus, timeout=args.seconds * 3 + 120
                )
            r = results[-1]
            if "error" in r or not os.path.exists(prof):
                print(f"{op}: {r}\n{procs.tail(server.log_path)}")
                continue
            tool = "yappi" if args.yappi else "cProfile"
            print(
                f"=== 4 KiB {op.upper()} under {tool}: {r.get('ops_per_s', 0):.0f} ops/s "
                f"({r.get('ops')} requests; profiling slows the server) ==="
            )
            out = io.StringIO()
            stats = pstats.Stats(prof, stream=out).strip_dirs()
            stats.sort_stats("tottime").print_stats(args.top)
            stats.sort_stats("cumulative").print_stats(args.top)
            if args.callees:
                stats.print_callees(args.callees)
            print(out.getvalue())
            if args.yappi and os.path.exists(prof + ".threads"):
                with open(prof + ".threads") as f:
                    print(f.read())
    return 0


if __name__ == "__main__":
    sys.exit(main())
