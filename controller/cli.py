"""The ``gridloop`` command line.

Subcommands:

- ``gridloop run``: the control service (the main job). Without ``--api`` it
  starts the bundled simulator in a child process and controls it over gRPC.
- ``gridloop sim``: the bundled Microgrid API simulator on its own.
- ``gridloop replay``: peak-shaving / frequency-response quality on recorded
  load data, against the perfect-foresight optimum (virtual clock, no gRPC).
- ``gridloop report``: render a ``--record`` CSV into a PNG report.
- ``gridloop bench``: dispatch-latency benchmark against the simulator
  (``bench latency``), step tests of a real site's dispatch chain (``bench site``).

Errors in what the user gave (flags, config files, an unreachable server) end
the command with one line on stderr and exit status 2, never a traceback.
``gridloop run`` also exits 1 (runtime error or lost output), 3 (the server came
back as another site), 4 (another client commands the site) or 5 (the safe
stop's 0 W was not confirmed by every inverter): see
:func:`controller.run.run_main`.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from controller.cli_args import OneLineParser, api_version, port, positive_float

if TYPE_CHECKING:
    import asyncio

__all__ = ["main"]

_USAGE = """\
usage: gridloop COMMAND [ARGS]

commands:
  run      run the control service (default: against the bundled simulator)
  sim      serve the bundled Microgrid API simulator
  replay   replay recorded load data against the optimum (control quality)
  report   render a recording (gridloop run --record FILE.csv) to a PNG
  bench    benchmarks (gridloop bench latency --inverters N; gridloop bench site --api URL)

'gridloop COMMAND --help' describes each command.
"""


def _run_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="gridloop run",
        description=(
            "Run the control service. Without --api, start the bundled simulator "
            "(default site) on a free loopback port and control it over gRPC."
        ),
    )
    parser.add_argument(
        "--api",
        metavar="URL",
        help="Microgrid API server, grpc://HOST:PORT[?ssl=true] (default: embedded simulator)",
    )
    parser.add_argument(
        "--api-key", metavar="KEY", help="API key sent as metadata (or GRIDLOOP_API_KEY)"
    )
    parser.add_argument(
        "--root-cert", metavar="FILE", help="PEM root certificate to verify the server's TLS"
    )
    parser.add_argument(
        "--api-version",
        type=api_version("--api-version"),
        metavar="VERSION",
        help="Microgrid API version the server speaks: v1, v1alpha18 or v1alpha19 (default:"
        " the config's [api] version, else found at connect time, newest first)",
    )
    parser.add_argument(
        "--config", metavar="FILE", help="gridloop TOML config (strategies, limits, cadence)"
    )
    parser.add_argument(
        "--dispatch-url",
        metavar="URL",
        help="Frequenz Dispatch API with the site's schedule windows, as dispatch-cli --url"
        " takes it: grpc://HOST[:PORT][?ssl=false] (TLS, port 443 unless given)",
    )
    parser.add_argument(
        "--dispatch-key",
        metavar="KEY",
        help="Dispatch API auth key (or DISPATCH_API_AUTH_KEY, as for dispatch-cli)",
    )
    parser.add_argument(
        "--duration",
        type=positive_float("--duration"),
        metavar="SECONDS",
        help="stop after this many wall-clock seconds (default: the config's run.duration_s)",
    )
    parser.add_argument(
        "--time-scale",
        type=positive_float("--time-scale"),
        metavar="X",
        help="simulated seconds per wall second (> 0.5): of the embedded simulator, or of a"
        " time-scaled `gridloop sim` given with --api (setpoint lifetimes and energies"
        " count in site time; default: the config's simulator.time_scale, 1 with --api)",
    )
    parser.add_argument(
        "--site", metavar="FILE", help="embedded simulator only: site TOML (default site)"
    )
    parser.add_argument(
        "--schedule",
        metavar="FILE",
        help="follow this schedule file (service windows: frequency-response reserve, peak"
        " limits; reloaded on change and on SIGHUP, which then no longer stops the run;"
        " default: the config's [schedule] file)",
    )
    parser.add_argument("--summary-json", metavar="FILE", help="write the run summary as JSON")
    parser.add_argument(
        "--state",
        metavar="FILE",
        help="keep the billing state (the period's billed peak, the interval's energy, the"
        " load history) here across restarts (default: [billing] state_file, else"
        " gridloop-state.json in the current directory with --api, none on the embedded"
        " simulator)",
    )
    parser.add_argument(
        "--record", metavar="FILE", help="write one CSV row per control cycle (units in header)"
    )
    metrics_port = port("--metrics-port")
    parser.add_argument(
        "--metrics-port", type=metrics_port, metavar="N", help="serve Prometheus metrics (port)"
    )
    parser.add_argument(
        "--no-dashboard", action="store_true", help="periodic log lines instead of the dashboard"
    )
    parser.add_argument("--log-format", choices=("text", "json"), default="text")
    parser.add_argument(
        "--log-level", choices=("DEBUG", "INFO", "WARNING", "ERROR"), default="WARNING"
    )
    return parser


def _run(argv: Sequence[str]) -> int:
    from controller.runtime.process import catch_stop_signals

    # From here on SIGINT/SIGTERM/SIGHUP request the orderly stop, even during the
    # imports and the start-up below: a signal that early ends the run as it starts.
    # With --schedule, SIGHUP reloads the schedule instead (conventional daemon semantics).
    # argparse takes any unambiguous prefix ("--sc" on): so does this test.
    hup_stops = not any(
        len(opt := a.split("=", 1)[0]) >= 4 and "--schedule".startswith(opt) for a in argv
    )
    with catch_stop_signals(hup_stops) as stop:
        return _run_until_stopped(argv, stop)


def _run_until_stopped(argv: Sequence[str], stop: asyncio.Event) -> int:
    parser = _run_parser()
    args = parser.parse_args(list(argv))
    # Imported here so that `gridloop sim` and `--help` stay light.
    from actors import api_key_problem
    from controller.run import run_main
    from controller.runtime.service import RunOptions

    api_key, key_source = args.api_key or None, "--api-key"
    if api_key is None:
        api_key, key_source = os.environ.get("GRIDLOOP_API_KEY") or None, "GRIDLOOP_API_KEY"
    if api_key is not None and (problem := api_key_problem(api_key)) is not None:
        parser.exit(2, f"{parser.prog}: {key_source}: {problem}\n")
    dispatch_key, key_source = args.dispatch_key or None, "--dispatch-key"
    if dispatch_key is None:
        dispatch_key = os.environ.get("DISPATCH_API_AUTH_KEY") or None
        key_source = "DISPATCH_API_AUTH_KEY"
    if dispatch_key is not None and (problem := api_key_problem(dispatch_key)) is not None:
        parser.exit(2, f"{parser.prog}: {key_source}: {problem}\n")
    options = RunOptions(
        api_url=args.api,
        api_key=api_key,
        root_cert_path=args.root_cert,
        api_version=args.api_version,
        config_path=args.config,
        dispatch_url=args.dispatch_url,
        dispatch_key=dispatch_key,
        duration_s=args.duration,
        time_scale=args.time_scale,
        site_path=args.site,
        summary_json=args.summary_json,
        state_file=args.state,
        record_csv=args.record,
        metrics_port=args.metrics_port,
        dashboard=not args.no_dashboard and sys.stdout.isatty(),
        log_format=args.log_format,
        log_level=args.log_level,
        schedule_path=args.schedule,
    )
    return run_main(options, stop=stop)


def _delegate(module: str, argv: Sequence[str]) -> int:
    import importlib

    entry: Callable[[list[str]], int] = importlib.import_module(module).main
    return entry(list(argv))


_DELEGATED = {
    "sim": "simulator.cli",
    "replay": "controller.lab.replay.cli",
    "report": "controller.ops.report",
    "bench": "controller.lab.bench",
}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``gridloop`` console script; returns the exit status."""
    from controller.runtime.process import ensure_std_fds

    # Before anything opens a file or socket: a closed fd 0/1/2 would be reused, and
    # uvloop aborts the process when it closes such a descriptor.
    ensure_std_fds()
    args = list(sys.argv[1:] if argv is None else argv)
    # gRPC's C core prints e.g. a refused TLS handshake or fork notices as INFO lines
    # on stderr unless told otherwise; those failures reach the user as one clear line
    # already. Set before anything imports grpc (the commands import it lazily); the
    # embedded simulator child inherits it. GRPC_VERBOSITY=INFO brings them back.
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
    if not args or args[0] in ("-h", "--help", "help"):
        sys.stdout.write(_USAGE)
        return 0 if args else 2
    command, rest = args[0], args[1:]
    if command == "run":
        return _run(rest)
    if command == "bench" and rest[:1] == ["site"]:
        return _delegate("controller.lab.site_bench", rest[1:])
    if command in _DELEGATED:
        return _delegate(_DELEGATED[command], rest)
    sys.stderr.write(f"gridloop: unknown command {command!r}\n{_USAGE}")
    return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
