"""``gridloop bench site``: step tests of a real site's dispatch chain, from the client side.

Offers :func:`main` (the command), :func:`analyse` (recorded run → JSON-able
result), :func:`render` (the table) and :func:`write_png` (setpoint and measured
power of each step).

``gridloop bench latency`` measures gridloop against its own simulator with
timestamps taken inside the server; this command measures any Microgrid API
server, where only the client's clock and the telemetry are available. It
connects with gridloop's own client stack (`actors.Site`: every API version
gridloop speaks, TLS with ``--root-cert``, ``--api-key`` or ``GRIDLOOP_API_KEY``),
runs the safe step sequence of :mod:`controller.lab.site_run` and reports, per
inverter and for the fleet step, command → acknowledgement, dead time, T90,
time to full power, overshoot, steady-state error, the telemetry period and
jitter, the estimated clock offset of the site's sample timestamps, and the
GB Dynamic Containment verdicts (rules and clocks: :mod:`controller.lab.site_steps`).

Exit status: 0 done; 1 the run failed (0 W was sent to every inverter it moved);
2 bad input, an unreachable server, or a refusal to start (unknown inverter,
error state, another client's setpoints without ``--force``); 130 stopped by
SIGINT/SIGTERM (0 W sent first). Every failure is one line on stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import logging
import math
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from controller.cli_args import OneLineParser, api_version, positive_float, positive_int
from controller.errors import BenchError, BenchStoppedError, GridloopError, ReportError
from controller.lab.bench import json_safe
from controller.lab.site_run import (
    Recorder,
    SiteBenchOptions,
    SiteBenchRefusedError,
    StepRecord,
    run_steps,
)
from controller.lab.site_steps import (
    StepFigures,
    analyse_step,
    clock_offset,
    grid_code,
    percentiles,
    sample_times,
    telemetry_stats,
)

__all__ = ["analyse", "main", "render", "write_png"]

PROG = "gridloop bench site"
EXIT_STOPPED = 130
"""Exit status after SIGINT/SIGTERM (0 W sent first)."""
SETPOINT_LIFETIME_S = 10
"""request_lifetime of every setpoint (s): the shortest the API accepts."""
CLOCKS = {
    "ack_ms": "client monotonic clock: call started → first response read",
    "dead_time_ms, t90_ms, t_full_ms": "command (client monotonic) → the sample's site"
    " timestamp mapped onto the client clock with the estimated offset",
    "dead_time_rx_ms": "command → the same sample's receive time (client monotonic)",
    "telemetry period_ms": "site timestamps; jitter_ms and max_gap_ms: client receive times",
}
"""Which clock each figure uses (also in the JSON)."""


def _parser() -> argparse.ArgumentParser:
    p = OneLineParser(
        prog=PROG,
        description="Step tests of a site's battery inverters (client side only): ack,"
        " dead time, T90, overshoot, steady-state error, telemetry period and jitter,"
        " GB Dynamic Containment pass/fail.",
    )
    p.add_argument("--api", metavar="URL", required=True,
                   help="Microgrid API server, grpc://HOST:PORT[?ssl=true]")
    p.add_argument("--api-key", metavar="KEY",
                   help="API key sent as metadata (or GRIDLOOP_API_KEY)")
    p.add_argument("--root-cert", metavar="FILE",
                   help="PEM root certificate to verify the server's TLS")
    p.add_argument("--api-version", type=api_version("--api-version"), metavar="VERSION",
                   help="v1, v1alpha18 or v1alpha19 (default: found at connect time)")
    p.add_argument("--inverters", type=_id_list, metavar="ID,...",
                   help="battery inverters to step (default: all)")
    p.add_argument("--step-w", type=positive_float("--step-w"), default=10_000.0, metavar="W",
                   help="step size per inverter, shrunk to bounds and SoC headroom (default 10000)")
    p.add_argument("--steps", type=_even_steps, default=4, metavar="K",
                   help="steps per inverter and for the fleet, alternating charge and"
                   " discharge (even; default 4)")
    p.add_argument("--hold", type=positive_float("--hold"), default=3.0, metavar="SECONDS",
                   help="how long each step is held (default 3)")
    p.add_argument("--json", metavar="FILE", help="write the result as JSON")
    p.add_argument("--report", metavar="FILE.png", help="plot setpoint and measured power")
    p.add_argument("--force", action="store_true",
                   help="run although an inverter carries another client's setpoint")
    return p


def _id_list(text: str) -> tuple[int, ...]:
    try:
        ids = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--inverters = {text!r}: expected comma-separated component ids"
        ) from None
    if len(set(ids)) != len(ids) or any(i < 0 for i in ids):
        raise argparse.ArgumentTypeError(f"--inverters = {text!r}: ids must be distinct and >= 0")
    return ids


def _even_steps(text: str) -> int:
    k = positive_int("--steps")(text)
    if k % 2:
        raise argparse.ArgumentTypeError(
            f"--steps = {text!r}: must be even (charge and discharge alternate, so the SoC"
            " ends where it began)"
        )
    return k


# ---------------------------------------------------------------------- analysis


def _worst(values: Sequence[float]) -> float | None:
    """The largest value; inf when a step never got there; None without steps."""
    if not values:
        return None
    return math.inf if any(not math.isfinite(v) for v in values) else max(values)


def _summary(pairs: Sequence[tuple[StepRecord, StepFigures]]) -> dict[str, Any]:
    """The figures of one inverter's steps (or of the fleet steps), as the JSON holds them."""
    figs = [f for _, f in pairs]

    def finite(values: list[float]) -> float | None:
        vals = [v for v in values if math.isfinite(v)]
        return max(vals) if vals else None

    dead = [f.dead_time_ms for f in figs]
    full = [f.t_full_ms for f in figs]
    return {
        "step_w": max((abs(r.target_w) for r, _ in pairs), default=None),
        "steps": len(pairs),
        "responded": sum(1 for v in dead if math.isfinite(v)),
        "ack_ms": percentiles([(r.ack_ns - r.command_ns) / 1e6 for r, _ in pairs
                               if r.ack_ns is not None]),
        "setpoints_failed": dict(collections.Counter(r.failure for r, _ in pairs if r.failure)),
        "dead_time_ms": percentiles(dead),
        "dead_time_rx_ms": percentiles([f.dead_time_rx_ms for f in figs]),
        "t90_ms": percentiles([f.t90_ms for f in figs]),
        "t_full_ms": percentiles(full),
        "overshoot_pct": finite([f.overshoot_pct for f in figs]),
        "steady_state_error_pct": finite([f.steady_state_error_pct for f in figs]),
        "noise_w": finite([f.noise_w for f in figs]),
        "grid_code": grid_code(_worst(dead), _worst(full)),
    }


def _fleet(pairs: list[tuple[StepRecord, StepFigures]]) -> dict[str, Any]:
    """Fleet figures per fleet step: ack = last ack, dead time = first inverter to respond,
    T90 / full = the last inverter to get there (the fleet's sum gets there no later)."""
    by_step: dict[int, list[tuple[StepRecord, StepFigures]]] = collections.defaultdict(list)
    for r, f in pairs:
        by_step[r.index].append((r, f))
    ack, dead, t90, full = [], [], [], []
    for members in by_step.values():
        start = min(r.command_ns for r, _ in members)

        def at(r: StepRecord, ms: float, start: int = start) -> float:
            return (r.command_ns - start) / 1e6 + ms

        acks = [r.ack_ns for r, _ in members]
        ack.append(max(a for a in acks if a is not None) / 1e6 - start / 1e6
                   if all(a is not None for a in acks) else math.nan)
        dead.append(min((at(r, f.dead_time_ms) for r, f in members), key=_nan_last))
        t90.append(max(at(r, f.t90_ms) for r, f in members) if all(
            math.isfinite(f.t90_ms) for _, f in members) else math.nan)
        full.append(max(at(r, f.t_full_ms) for r, f in members) if all(
            math.isfinite(f.t_full_ms) for _, f in members) else math.nan)
    return {
        "inverters": sorted({r.inverter_id for r, _ in pairs}),
        "steps": len(by_step),
        "ack_ms": percentiles(ack),
        "dead_time_ms": percentiles(dead),
        "t90_ms": percentiles(t90),
        "t_full_ms": percentiles(full),
        "grid_code": grid_code(_worst(dead), _worst(full)),
        "per_inverter": {str(c): _summary([(r, f) for r, f in pairs if r.inverter_id == c])
                         for c in sorted({r.inverter_id for r, _ in pairs})},
    }


def _nan_last(v: float) -> float:
    return v if math.isfinite(v) else math.inf


def analyse(rec: Recorder, mono_to_wall_ns: int, pre_window_s: float) -> dict[str, Any]:
    """Turn a recorded run into the result (per inverter, fleet, clock, telemetry, steps).

    Args:
        rec: What the run recorded.
        mono_to_wall_ns: Client wall clock − client monotonic clock (ns), read once.
        pre_window_s: The pre-step window (s).

    Returns:
        The JSON-able result (NaN/inf already left out).
    """
    ids = sorted(rec.rx_ns)
    rx = {c: np.asarray(rec.rx_ns[c], dtype=np.int64) for c in ids}
    ts = {c: np.asarray(rec.ts_ns[c], dtype=np.int64) for c in ids}
    pw = {c: np.asarray(rec.power_w[c], dtype=np.float64) for c in ids}
    offset = clock_offset([rx[c] for c in ids], [ts[c] for c in ids], mono_to_wall_ns)
    at = {c: sample_times(rx[c], ts[c], offset, mono_to_wall_ns) for c in ids}
    pre_ns = int(pre_window_s * 1e9)
    pairs = [
        (s, analyse_step(at[s.inverter_id], rx[s.inverter_id], pw[s.inverter_id], s.command_ns,
                         s.end_ns, s.target_w, pre_ns))
        for s in rec.steps
    ]
    inverters: dict[str, Any] = {}
    for c in ids:
        mine = [(r, f) for r, f in pairs if r.inverter_id == c and r.unit == "single"]
        entry: dict[str, Any] = _summary(mine) if mine else {"steps": 0}
        entry["telemetry"] = telemetry_stats(rx[c], ts[c])
        inverters[str(c)] = entry
    fleet_pairs = [(r, f) for r, f in pairs if r.unit == "fleet"]
    t0 = min((int(a[0]) for a in rx.values() if a.size), default=0)
    return {
        "clock": {**offset.to_json(), "figures": CLOCKS},
        "inverters": inverters,
        "fleet": _fleet(fleet_pairs) if fleet_pairs else None,
        "step_log": [
            {"unit": r.unit, "step": r.index, "inverter": r.inverter_id, "target_w": r.target_w,
             "command_s": (r.command_ns - t0) / 1e9,
             "ack_ms": None if r.ack_ns is None else (r.ack_ns - r.command_ns) / 1e6,
             "failure": r.failure, "dead_time_ms": f.dead_time_ms, "t90_ms": f.t90_ms,
             "t_full_ms": f.t_full_ms, "overshoot_pct": f.overshoot_pct,
             "steady_state_error_pct": f.steady_state_error_pct, "samples": f.samples}
            for r, f in pairs
        ],
    }


# ---------------------------------------------------------------------- output


def _ms(d: dict[str, float | None] | None, key: str) -> str:
    v = None if d is None else d.get(key)
    return "—" if v is None else f"{v:.0f}"


def _pct1(v: float | None) -> str:
    return "—" if v is None else f"{v:.1f}"


def render(result: dict[str, Any]) -> None:
    """Print the result as a table, then the clock offset, the SoC and the notes."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"step tests at {result['api']} (Microgrid API {result['api_version']}),"
                  f" {result['steps']} steps × {result['hold_s']:g} s; times in ms")
    cols = ("inverter", "step W", "ack p50", "ack max", "dead p50", "dead max", "T90 p50",
            "T90 max", "full max", "over %", "SSE %", "period", "jitter", "DC start",
            "DC full")
    for col in cols:
        table.add_column(col, justify="left" if col == "inverter" else "right", no_wrap=True)
    rows = [(k, v) for k, v in result["inverters"].items() if v.get("steps")]
    if result.get("fleet"):
        rows.append(("fleet", result["fleet"]))
    for name, e in rows:
        tel = e.get("telemetry", {})
        gc = e["grid_code"]
        table.add_row(
            name, "—" if e.get("step_w") is None else f"{e['step_w']:.0f}",
            _ms(e["ack_ms"], "p50"), _ms(e["ack_ms"], "max"), _ms(e["dead_time_ms"], "p50"),
            _ms(e["dead_time_ms"], "max"), _ms(e["t90_ms"], "p50"), _ms(e["t90_ms"], "max"),
            _ms(e["t_full_ms"], "max"),
            _pct1(e.get("overshoot_pct")),
            _pct1(e.get("steady_state_error_pct")),
            _ms(tel, "period_ms"), _ms(tel, "jitter_ms"), str(gc["start"] or "—"),
            str(gc["full"] or "—"),
        )
    console = Console(width=max(Console().width, 160))
    console.print(table)
    c = result["clock"]
    if c["offset_ms"] is not None:
        console.print(f"site clock offset: {c['offset_ms']:.1f} ms (spread p50 "
                      f"{c['spread_p50_ms'] or 0:.1f} ms, p99 {c['spread_p99_ms'] or 0:.1f} ms;"
                      f" figures on {c['figures_use']})")
    soc = result["soc"]
    console.print(f"fleet SoC {soc['start_pct']:.3f} % → {soc['end_pct']:.3f} %; {result['zero']}")
    for note in result["notes"]:
        console.print(f"note: {note}")


def write_png(rec: Recorder, path: str, title: str) -> None:
    """Plot each inverter's setpoints and measured power over the run (one panel each).

    Raises:
        ReportError: matplotlib is missing or the file cannot be written.
    """
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as err:
        raise ReportError("the report needs matplotlib: pip install 'gridloop[report]'") from err
    ids = sorted(rec.rx_ns)
    t0 = min((r[0] for r in rec.rx_ns.values() if r), default=0)
    fig = Figure(figsize=(10.0, 1.0 + 2.0 * max(len(ids), 1)), dpi=90, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(max(len(ids), 1), 1, sharex=True, squeeze=False)[:, 0]
    for ax, cid in zip(axes, ids, strict=False):
        t = (np.asarray(rec.rx_ns[cid], dtype=np.float64) - t0) / 1e9
        ax.plot(t, np.asarray(rec.power_w[cid]) / 1e3, lw=1.0, label="measured (received)")
        sp = rec.setpoints[cid]
        if sp:
            st = [(s - t0) / 1e9 for s, _ in sp] + [float(t[-1]) if t.size else 0.0]
            sv = [w / 1e3 for _, w in sp]
            ax.step(st, [*sv, sv[-1]], where="post", lw=1.0, ls="--", label="setpoint")
        ax.set_title(f"inverter {cid}", loc="left", fontsize="small")
        ax.set_ylabel("kW (+ charge)")
        ax.grid(True, color="0.9", linewidth=0.6)
        ax.legend(fontsize="x-small", loc="upper right")
    axes[-1].set_xlabel("s since the first sample")
    fig.suptitle(title, fontsize="medium")
    try:
        fig.savefig(path, format="png")
    except OSError as err:
        raise ReportError(f"--report = {path!r}: cannot write: {err.strerror or err}") from err


# ---------------------------------------------------------------------- the run


def _zero_line(rec: Recorder) -> str:
    """What the final 0 W reached, in words."""
    if not rec.moved:
        return "no inverter was moved"
    left = ""
    if rec.overridden:
        left = (f"; inverters {', '.join(map(str, rec.overridden))} left to the client that"
                " overrode ours")
    named = ", ".join(str(c) for c in rec.moved if c not in rec.overridden)
    if not named:
        return left.lstrip("; ")
    if rec.zero_failed is None:
        return f"0 W not sent to inverters {named}{left}"
    if not rec.zero_failed:
        return f"0 W confirmed by inverters {named}{left}"
    bad = ", ".join(f"{c} ({why})" for c, why in sorted(rec.zero_failed.items()))
    return f"0 W sent to inverters {named}, NOT confirmed by {bad}{left}"


async def _bench(args: argparse.Namespace, api_key: str | None, root_cert: bytes | None,
                 stop: asyncio.Event) -> dict[str, Any]:
    from actors import ApiError, GraphError, OptionsError, RuntimeOptions, Site
    from controller.runtime.process import stop_on_signals
    from controller.runtime.service import _api_error_line

    opts = SiteBenchOptions(inverters=args.inverters, step_w=args.step_w, steps=args.steps,
                            hold_s=args.hold, force=args.force)
    with stop_on_signals(asyncio.get_running_loop(), stop):
        if stop.is_set():
            raise BenchStoppedError(EXIT_STOPPED, "stopped by a signal before the start")
        try:
            site = await Site.connect(
                args.api, api_key=api_key, root_cert=root_cert, api_version=args.api_version,
                # One setpoint of ours overridden by another client ends the run.
                options=RuntimeOptions(setpoint_lifetime_s=SETPOINT_LIFETIME_S,
                                       renew_margin_s=SETPOINT_LIFETIME_S / 2,
                                       contention_overrides=1),
            )
        except ApiError as exc:
            raise BenchStoppedError(2, _api_error_line(exc)) from None
        except (GraphError, OptionsError) as exc:
            raise BenchStoppedError(2, str(exc)) from None
        # A bench reports a site's errors, it never acknowledges them: the site's
        # error recovery (AckError + Start) stays idle for the whole run.
        site.recovery.refused = True
        rec = Recorder()
        mono_to_wall = time.time_ns() - time.monotonic_ns()
        async with site:
            task = asyncio.create_task(run_steps(site, opts, rec))
            stopper = asyncio.create_task(stop.wait())
            await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
            stopper.cancel()
            if not task.done():
                task.cancel()
                await asyncio.wait({task})  # its `finally` sends the 0 W
                raise BenchStoppedError(EXIT_STOPPED, f"stopped by a signal; {_zero_line(rec)}")
            try:
                info = task.result()
            except SiteBenchRefusedError as exc:
                raise BenchStoppedError(2, f"{exc}; {_zero_line(rec)}") from None
            except Exception as exc:  # any failure ends in one line, after the 0 W
                why = str(exc) or type(exc).__name__
                raise BenchStoppedError(1, f"{why}; {_zero_line(rec)}") from None
            result: dict[str, Any] = {
                "api": str(site.client.url),
                "api_version": site.client.api.version,
                "step_w": opts.step_w, "steps": opts.steps, "hold_s": opts.hold_s,
                "setpoint_lifetime_s": SETPOINT_LIFETIME_S,
            }
    result.update(analyse(rec, mono_to_wall, opts.pre_window_s))
    start, end = info["soc_start"], info["soc_end"]
    result["soc"] = {"start_pct": start["fleet_pct"], "end_pct": end["fleet_pct"],
                     "batteries_start_pct": start["batteries_pct"],
                     "batteries_end_pct": end["batteries_pct"]}
    result["moved"] = info["moved"]
    result["zero"] = _zero_line(rec)
    result["zero_confirmed"] = not rec.zero_failed
    result["notes"] = rec.notes
    result["_recorder"] = rec
    return result


def _check_output(flag: str, path: str | None) -> str | None:
    if path is None:
        return None
    parent = Path(path).resolve().parent
    if not parent.is_dir() or not os.access(parent, os.W_OK):
        return f"{PROG}: {flag} = {path!r}: its directory does not exist or is not writable"
    return None


def main(argv: Sequence[str]) -> int:
    """``gridloop bench site ...``; returns the exit status (see the module docstring)."""
    from controller.runtime.process import catch_stop_signals

    with catch_stop_signals() as stop:
        args = _parser().parse_args(list(argv))
        from actors import api_key_problem
        from actors import run as run_on_uvloop

        api_key, source = args.api_key or None, "--api-key"
        if api_key is None:
            api_key, source = os.environ.get("GRIDLOOP_API_KEY") or None, "GRIDLOOP_API_KEY"
        if api_key is not None and (problem := api_key_problem(api_key)) is not None:
            sys.stderr.write(f"{PROG}: {source}: {problem}\n")
            return 2
        from controller.runtime.service import _read_root_cert

        try:
            root_cert = _read_root_cert(args.root_cert, "--root-cert")
        except GridloopError as exc:
            sys.stderr.write(f"{PROG}: {exc}\n")
            return 2
        for flag, path in (("--json", args.json), ("--report", args.report)):
            if (line := _check_output(flag, path)) is not None:
                sys.stderr.write(line + "\n")
                return 2
        # The table (or the one line) is the output: what the runtime would log
        # (another client, failed calls) is in it.
        logging.basicConfig(level=logging.CRITICAL)
        try:
            result = run_on_uvloop(_bench(args, api_key, root_cert, stop))
        except BenchStoppedError as end:
            sys.stderr.write(f"{PROG}: {end.line}\n")
            return end.status
        except BenchError as exc:
            sys.stderr.write(f"{PROG}: {exc}\n")
            return 1
    rec: Recorder = result.pop("_recorder")
    render(result)
    if args.json:
        Path(args.json).write_text(json.dumps(json_safe(result), indent=2) + "\n")
    if args.report:
        try:
            write_png(rec, args.report, f"gridloop bench site: {result['api']}")
        except ReportError as exc:
            sys.stderr.write(f"{PROG}: {exc}\n")
            return 1
    return 0
