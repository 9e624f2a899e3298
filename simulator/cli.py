"""``gridloop sim``: run the simulator until SIGINT/SIGTERM.

Offers `main(argv) -> int` (also ``python -m simulator``). On start it prints
exactly one line ``gridloop sim listening on HOST:PORT`` and flushes stdout.
On SIGINT/SIGTERM it stops, writes the stats JSON (``--stats-json``) and
returns 0. A bad site file prints ``error: <file>: <field>: <problem>`` to
stderr and returns 2; bad flags return 2 (argparse).

Faults: ``--fault KEY=VALUE`` (repeatable; any key of the site's ``[faults]``
table, see `simulator.config.FaultConfig`) overrides the site file, e.g.
``--fault stream_end_per_h=2 --fault error_state_per_h=1``; ``--faults-seed N``
sets ``faults.seed``. A bad key or value prints one line
``error: --fault KEY=VALUE: faults.KEY: <problem>`` and returns 2. SIGUSR1
stops injecting new faults (running episodes still end): a soak harness uses it
to check that every faulted component comes back.

Stats: ``--stats-json FILE`` writes `SimulatorServer.stats` as JSON when the
server is listening, every ``--stats-interval`` wall seconds (if given) and on
exit; every write is atomic (a temporary file in the same directory, then
``os.replace``), so a reader never sees a partial file.

API versions: the Microgrid API v1, v1alpha18 and v1alpha19 are served on the
one port; ``--api-versions v1,v1alpha18`` restricts the set (the others answer
UNIMPLEMENTED). The versions served are logged on stderr, one line after the
listening line (which stays exactly as it is: scripts parse it).

Frequency: ``--frequency-csv FILE`` serves a recorded grid frequency (timestamp
and Hz columns, >= 1 sample per second; see
:func:`simulator.frequency_series.read_frequency_csv` for the gap rules) from
simulated time 0 instead of the site's ``[frequency]`` base, repeating after its
end; the site's noise and scripted events still add on top. An unusable file is
one line ``error: --frequency-csv FILE: ...`` and exit 2; the trace's length, its
gaps and the problems found (at most 10 lines, then a count) are logged on
stderr after start-up.

Security: ``--api-key KEY`` makes every call require metadata ``key: KEY``
(UNAUTHENTICATED otherwise); ``--tls-cert FILE --tls-key FILE`` serves TLS
only. The server binds loopback (127.0.0.1) unless ``--host`` says otherwise.

Dispatch API: ``--dispatch-port PORT`` also serves the Frequenz Dispatch API
(`simulator.dispatch.DispatchServer`, plaintext, same host) for the site's
microgrid id, with the same ``--api-key``; stderr says where, e.g.
``gridloop sim: Dispatch API on 127.0.0.1:50052 (microgrid 1)``.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import math
import os
import signal
import ssl
import sys
from collections.abc import Callable, Coroutine
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .config import (
    FAULT_KEYS,
    FaultConfig,
    SiteConfig,
    SiteConfigError,
    faults_from_dict,
    load_site,
)
from .csv_series import CsvSeriesError
from .frequency_series import read_frequency_csv
from .server import API_VERSIONS, SimulatorServer, check_api_versions

if TYPE_CHECKING:
    from .dispatch import DispatchServer

__all__ = [
    "frequency_log_lines",
    "main",
    "parse_fault_overrides",
    "with_frequency_csv",
]


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


def _int_in(name: str, lo: int, hi: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be an integer, got {text!r}") from None
        if not lo <= value <= hi:
            raise argparse.ArgumentTypeError(f"{name} must be in {lo}..{hi}, got {text!r}")
        return value

    return parse


_port = _int_in("port", 0, 65535)


def _api_versions(text: str) -> tuple[str, ...]:
    """``--api-versions``: comma-separated versions of `API_VERSIONS` (one message
    naming the flag, the value and the allowed set otherwise)."""
    versions = [v.strip() for v in text.split(",") if v.strip()]
    try:
        return check_api_versions(versions)
    except ValueError as exc:
        shown = text if text.isprintable() else repr(text)
        raise argparse.ArgumentTypeError(
            f"--api-versions {shown}: {str(exc).removeprefix('api_versions: ')}"
        ) from None


def build_parser() -> argparse.ArgumentParser:
    """The ``gridloop sim`` argument parser."""
    parser = argparse.ArgumentParser(
        prog="gridloop sim",
        description="Serve a simulated site over the Frequenz Microgrid API"
        " (v1, v1alpha18 and v1alpha19 on one port).",
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
    parser.add_argument(
        "--telemetry-phases",
        type=_int_in("telemetry phases", 1, 1000),
        default=None,
        metavar="K",
        help="split the telemetry period into K phases; a component streams in phase"
        " id %% K (default 10, fewer above 10 Hz: at most one every ~10 ms;"
        " 1 = all streams at once)",
    )
    parser.add_argument("--seed", type=int, default=0, help="noise seed (default 0)")
    parser.add_argument(
        "--frequency-csv",
        metavar="FILE",
        help="serve this recorded grid frequency (timestamp, Hz; >= 1 sample/s) from"
        " simulated time 0 instead of the site's [frequency] base",
    )
    parser.add_argument(
        "--api-versions",
        type=_api_versions,
        default=API_VERSIONS,
        metavar="V[,V...]",
        help=f"Microgrid API versions to serve (default all: {','.join(API_VERSIONS)})",
    )
    parser.add_argument(
        "--stats-json",
        metavar="FILE",
        help="write the stats JSON here when listening, every --stats-interval s and on exit",
    )
    parser.add_argument(
        "--stats-interval",
        type=_positive("--stats-interval"),  # type: ignore[arg-type]
        metavar="S",
        help="with --stats-json: also rewrite the file every S wall seconds",
    )
    parser.add_argument(
        "--fault",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="fault injection setting overriding the site's [faults] table"
        " (repeatable), e.g. stream_end_per_h=2",
    )
    parser.add_argument(
        "--faults-seed", type=int, metavar="N", help="seed of the fault RNG (faults.seed)"
    )
    parser.add_argument(
        "--api-key",
        metavar="KEY",
        help="require this key in the 'key' metadata of every call (else UNAUTHENTICATED)",
    )
    parser.add_argument(
        "--tls-cert", metavar="FILE", help="PEM server certificate (chain); serve TLS only"
    )
    parser.add_argument("--tls-key", metavar="FILE", help="PEM private key of --tls-cert")
    parser.add_argument(
        "--dispatch-port",
        type=_int_in("dispatch-port", 0, 65535),
        metavar="PORT",
        help="also serve the Frequenz Dispatch API for the site's microgrid on this port"
        " (plaintext; 0 = pick a free one)",
    )
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


def parse_fault_overrides(
    items: list[str], seed: int | None, base: FaultConfig
) -> FaultConfig:
    """Apply ``--fault KEY=VALUE`` items and ``--faults-seed`` to ``base``.

    Values are TOML scalars (``2``, ``0.5``, ``1e-3``). Raises `ValueError`
    with one line naming the flag, the key and the value.
    """
    overrides: dict[str, object] = {}
    for raw in items:
        item = raw if raw.isprintable() else repr(raw)  # the error stays one line
        key, sep, text = raw.partition("=")
        key, text = key.strip(), text.strip()
        if not sep or not key or not text:
            raise ValueError(f"--fault {item}: expected KEY=VALUE, e.g. stream_end_per_h=2")
        if key not in FAULT_KEYS:
            raise ValueError(f"--fault {item}: unknown key {key!r}; one of {', '.join(FAULT_KEYS)}")
        value: object
        try:
            value = int(text)
        except ValueError:
            try:
                value = float(text)
            except ValueError:
                value = text
        overrides[key] = value
        try:
            faults_from_dict({key: value}, "--fault", base)
        except SiteConfigError as exc:
            raise ValueError(f"--fault {item}: {exc.detail}") from None
    if seed is not None:
        overrides["seed"] = seed
    try:
        return faults_from_dict(overrides, "--faults-seed", base)
    except SiteConfigError as exc:
        raise ValueError(f"--faults-seed {seed}: {exc.detail}") from None


def with_frequency_csv(site: SiteConfig, path: str) -> SiteConfig:
    """``site`` serving the recorded frequency of ``path`` (``--frequency-csv``).

    Raises:
        ValueError: an unusable file, one line naming the flag, the file, the line
            and the value.
    """
    try:
        series = read_frequency_csv(path, nominal_hz=site.frequency.nominal_hz)
    except CsvSeriesError as exc:
        raise ValueError(f"--frequency-csv {path}: {exc}") from None
    return replace(site, frequency=replace(site.frequency, series=series))


def frequency_log_lines(site: SiteConfig) -> list[str]:
    """What the site's frequency trace is and what was wrong in its file (stderr lines)."""
    series = site.frequency.series
    if series is None:
        return []
    lines = [f"gridloop sim: frequency: {series.summary()}"]
    lines += [f"gridloop sim: warning: {line}" for line in series.problem_lines()]
    return lines


class _DispatchBindError(Exception):
    """The Dispatch API port could not be bound."""


async def _serve(args: argparse.Namespace, server: SimulatorServer) -> None:
    if args.dispatch_port is None:
        await _serve_microgrid(args, server, None)
        return
    from .dispatch import DispatchServer  # only with --dispatch-port: the sim stays light

    dispatch = DispatchServer(
        server.site.microgrid_id, host=args.host, port=args.dispatch_port, api_key=args.api_key
    )
    try:
        await dispatch.start()
    except OSError as exc:
        raise _DispatchBindError(str(exc)) from None
    try:
        await _serve_microgrid(args, server, dispatch)
    finally:
        await dispatch.stop()


async def _serve_microgrid(
    args: argparse.Namespace, server: SimulatorServer, dispatch: DispatchServer | None
) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    def stop_injecting() -> None:
        server.injecting = False

    loop.add_signal_handler(signal.SIGUSR1, stop_injecting)
    async with server:
        # Collect the start-up garbage once and take everything alive now (modules,
        # the site, the server) out of the collector's view: full collections then
        # scan only what serving allocated since (a full one was ~15 ms at the
        # 100-pair bench site, delaying every stream and call behind it).
        gc.collect()
        gc.freeze()
        print(f"gridloop sim listening on {server.address}", flush=True)
        if args.stats_json:
            _checked_write(args.stats_json, server)
        # On stderr, once start-up has succeeded: the listening line stays the only
        # stdout line, and a start-up error stays the only stderr line.
        print(
            f"gridloop sim: Microgrid API {', '.join(server.api_versions)}",
            file=sys.stderr,
            flush=True,
        )
        if dispatch is not None:
            print(
                f"gridloop sim: Dispatch API on {dispatch.host}:{dispatch.port}"
                f" (microgrid {dispatch.microgrid_id})",
                file=sys.stderr,
                flush=True,
            )
        for line in frequency_log_lines(server.site):
            print(line, file=sys.stderr, flush=True)
        if args.stats_json and args.stats_interval:
            while not stop.is_set():
                try:
                    await asyncio.wait_for(stop.wait(), args.stats_interval)
                except TimeoutError:
                    _checked_write(args.stats_json, server)
        await stop.wait()


class _StatsWriteError(Exception):
    """The stats file could not be written while serving."""


def _checked_write(path: str, server: SimulatorServer) -> None:
    try:
        _write_stats(path, server.stats())
    except OSError as exc:
        raise _StatsWriteError(exc.strerror or str(exc)) from exc


def _run(coro: Coroutine[Any, Any, None]) -> None:
    """Run ``coro`` on uvloop if it is installed, else on the default loop."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - non-Linux
        asyncio.run(coro)
    else:
        uvloop.run(coro)


def _ensure_std_fds() -> None:
    """Open ``/dev/null`` on each of fds 0, 1, 2 that is closed (``gridloop sim <&-``).

    Otherwise the next socket or pipe gets that number and uvloop aborts the
    process when it closes it (``uv__close: Assertion 'fd > STDERR_FILENO'``).
    The same as ``controller.runtime.process.ensure_std_fds``: the simulator imports
    nothing from the controller, and ``python -m simulator`` does not pass there.
    """
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            null = os.open(os.devnull, os.O_RDWR)
            if null != fd:
                os.dup2(null, fd)
                os.close(null)
            else:
                os.set_inheritable(fd, True)
    if sys.stdout is None:  # Python's stream for a fd that was closed at start
        sys.stdout = open(1, "w", encoding="utf-8", closefd=False)  # noqa: SIM115
    if sys.stderr is None:
        sys.stderr = open(2, "w", encoding="utf-8", closefd=False)  # noqa: SIM115


def _write_stats(path: str, stats: dict[str, object]) -> None:
    """Write ``stats`` to ``path`` atomically (temporary file + ``os.replace``)."""
    target = Path(path)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(json.dumps(stats, indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def main(argv: list[str] | None = None) -> int:
    """Run ``gridloop sim`` with ``argv`` (default: ``sys.argv[1:]``); returns the exit code."""
    _ensure_std_fds()
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        site = load_site(args.config)
    except SiteConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.frequency_csv is not None:
        try:
            site = with_frequency_csv(site, args.frequency_csv)
        except ValueError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    if (args.tls_cert is None) != (args.tls_key is None):
        print("error: --tls-cert and --tls-key must be given together", file=sys.stderr)
        return 2
    if args.dispatch_port is not None and args.tls_cert is not None:
        print("error: --dispatch-port: the Dispatch API is served in plaintext only,"
              " not with --tls-cert", file=sys.stderr)
        return 2
    if args.stats_interval is not None and not args.stats_json:
        print("error: --stats-interval needs --stats-json FILE", file=sys.stderr)
        return 2
    try:
        faults = parse_fault_overrides(args.fault, args.faults_seed, site.faults)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
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
        telemetry_phases=args.telemetry_phases,
        seed=args.seed,
        api_key=args.api_key,
        tls_cert=tls_cert,
        tls_key=tls_key,
        faults=faults,
        api_versions=args.api_versions,
    )
    try:
        _run(_serve(args, server))
    except _DispatchBindError as exc:
        print(f"error: --dispatch-port {args.dispatch_port}: {exc}", file=sys.stderr)
        return 2
    except _StatsWriteError as exc:
        print(f"error: --stats-json {args.stats_json}: {exc}", file=sys.stderr)
        return 2
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
