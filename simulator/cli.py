"""``gridloop sim``: run the simulator until SIGINT/SIGTERM.

Offers `main(argv) -> int` (also ``python -m simulator``). On start it prints
exactly one line ``gridloop sim listening on HOST:PORT`` and flushes stdout.
On SIGINT/SIGTERM it stops, writes the stats JSON (``--stats-json``) and
returns 0. A bad site file prints ``error: <file>: <field>: <problem>`` to
stderr and returns 2; bad flags return 2 (argparse).

Security: ``--api-key KEY`` makes every call require metadata ``key: KEY``
(UNAUTHENTICATED otherwise); ``--tls-cert FILE --tls-key FILE`` serves TLS
only. The server binds loopback (127.0.0.1) unless ``--host`` says otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import signal
import ssl
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
    parser.add_argument(
        "--api-key",
        metavar="KEY",
        help="require this key in the 'key' metadata of every call (else UNAUTHENTICATED)",
    )
    parser.add_argument(
        "--tls-cert", metavar="FILE", help="PEM server certificate (chain); serve TLS only"
    )
    parser.add_argument("--tls-key", metavar="FILE", help="PEM private key of --tls-cert")
    return parser


def _read_pem(flag: str, path: str) -> bytes:
    """Read the PEM file of ``flag``; `ValueError` names the flag, the path and the problem."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ValueError(f"{flag} {path}: cannot read: {exc.strerror or exc}") from None
    if b"-----BEGIN " not in data:
        raise ValueError(f"{flag} {path}: not a PEM file")
    return data


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
    if (args.tls_cert is None) != (args.tls_key is None):
        print("error: --tls-cert and --tls-key must be given together", file=sys.stderr)
        return 2
    if args.api_key is not None and not args.api_key:
        print("error: --api-key: must not be empty", file=sys.stderr)
        return 2
    try:
        tls_cert = _read_pem("--tls-cert", args.tls_cert) if args.tls_cert else None
        tls_key = _read_pem("--tls-key", args.tls_key) if args.tls_key else None
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.tls_cert and args.tls_key:
        try:  # the stdlib checks that the certificate and the key parse and match
            ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(args.tls_cert, args.tls_key)
        except ssl.SSLError as exc:
            print(
                f"error: --tls-cert {args.tls_cert} --tls-key {args.tls_key}: not a valid PEM"
                f" certificate chain and matching private key ({exc.reason or exc})",
                file=sys.stderr,
            )
            return 2
    server = SimulatorServer(
        site,
        host=args.host,
        port=args.port,
        time_scale=args.time_scale,
        telemetry_hz=args.telemetry_hz,
        seed=args.seed,
        api_key=args.api_key,
        tls_cert=tls_cert,
        tls_key=tls_key,
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
