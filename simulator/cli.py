"""``gridloop sim``: run the simulator until SIGINT/SIGTERM.

Offers `main(argv) -> int` (also ``python -m simulator``). On start it prints
exactly one line ``gridloop sim listening on HOST:PORT`` and flushes stdout.
On SIGINT/SIGTERM it stops, writes the stats JSON (``--stats-json``) and
returns 0. A bad site file prints ``error: <file>: <field>: <problem>`` to
stderr and returns 2; bad flags return 2 (argparse).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import signal
import sys
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

from .config import SiteConfigError, load_site
from .server import SimulatorServer

__all__ = ["main"]


def _positive(name: str) -> type[float] | object:
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be a number, got {text!r}") from None
        if not (math.isfinite(value) and value > 0):
            raise argparse.ArgumentTypeError(f"{name} must be > 0, got {text!r}")
        return value

    return parse


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"port must be an integer, got {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"port must be in 0..65535, got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The ``gridloop sim`` argument parser."""
    parser = argparse.ArgumentParser(
        prog="gridloop sim",
        description="Serve a simulated site over the Frequenz Microgrid API v1alpha18.",
    )
    parser.add_argument("--config", metavar="SITE.toml", help="site file (default: demo site)")
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind (default loopback)")
    parser.add_argument("--port", type=_port, default=50051, help="TCP port, 0 = pick a free one")
    parser.add_argument(
        "--time-scale",
        type=_positive("--time-scale"),  # type: ignore[arg-type]
        default=1.0,
        help="simulated seconds per wall second (default 1)",
    )
    parser.add_argument(
        "--telemetry-hz",
        type=_positive("--telemetry-hz"),  # type: ignore[arg-type]
        default=10.0,
        help="telemetry messages per second per stream (default 10)",
    )
    parser.add_argument("--seed", type=int, default=0, help="noise seed (default 0)")
    parser.add_argument("--stats-json", metavar="FILE", help="write setpoint stats here on exit")
    return parser


async def _serve(args: argparse.Namespace, server: SimulatorServer) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        print(f"gridloop sim listening on {server.address}", flush=True)
        await stop.wait()


def _run(coro: Coroutine[Any, Any, None]) -> None:
    """Run ``coro`` on uvloop if it is installed, else on the default loop."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - non-Linux
        asyncio.run(coro)
    else:
        uvloop.run(coro)


def _write_stats(path: str, stats: dict[str, object]) -> None:
    Path(path).write_text(json.dumps(stats, indent=2) + "\n", encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    """Run ``gridloop sim`` with ``argv`` (default: ``sys.argv[1:]``); returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        site = load_site(args.config)
    except SiteConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    server = SimulatorServer(
        site,
        host=args.host,
        port=args.port,
        time_scale=args.time_scale,
        telemetry_hz=args.telemetry_hz,
        seed=args.seed,
    )
    try:
        _run(_serve(args, server))
    except OSError as exc:
        print(f"error: --port {args.port}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # pragma: no cover - signal before handlers were installed
        pass
    if args.stats_json:
        try:
            _write_stats(args.stats_json, server.stats())
        except OSError as exc:
            print(f"error: --stats-json {args.stats_json}: {exc.strerror or exc}", file=sys.stderr)
            return 2
    return 0
