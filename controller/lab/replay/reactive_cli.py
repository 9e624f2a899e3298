"""``gridloop replay --config FILE`` with ``[reactive_power]`` enabled: the voltage-support
replay (:func:`~controller.lab.replay.reactive.run_voltage_support`) of the config's site
for ``--hours`` (or ``--days``; default 30 minutes), its table, ``--summary-json`` and
``--check`` (:data:`REACTIVE_TARGETS`)."""

from __future__ import annotations

import argparse
import math
import sys
from typing import Any

from controller.lab.replay.cli_kit import write_summary_json
from controller.lab.replay.errors import ReplayError
from controller.lab.replay.reactive import (
    ReactiveReplayOptions,
    ReactiveReport,
    run_voltage_support,
)

__all__ = ["REACTIVE_TARGETS", "reactive_duration_s", "reactive_targets_met",
           "run_reactive_command"]

REACTIVE_TARGETS: dict[str, float] = {
    "reactive_setpoints_out_of_bounds_max": 0,
    "apparent_power_violations_max": 0,
    "p_difference_pct_max": 1.0,
}
"""The issue's targets ``--check`` enforces, beside the settling target of the report
(``max(10 s, 3 τ)``); the P difference only where the apparent limit did not bind."""


def reactive_duration_s(args: argparse.Namespace) -> float:
    """The simulated time ``--hours`` / ``--days`` ask for (s; default the options').

    Raises:
        ReplayError: both given, or one is not a positive number.
    """
    hours, days = getattr(args, "hours", None), args.days
    if hours is not None and days is not None:
        raise ReplayError("--hours and --days: give one of them", source="--hours")
    for flag, value, unit in (("--hours", hours, 3600.0), ("--days", days, 86400.0)):
        if value is None:
            continue
        if not (math.isfinite(value) and value > 0):
            raise ReplayError(f"{flag}: must be a positive number, got {value!r}", source=flag)
        return float(value) * unit
    return ReactiveReplayOptions().duration_s


def reactive_targets_met(report: ReactiveReport) -> bool:
    """Whether the report meets :data:`REACTIVE_TARGETS` and its settling target."""
    ok = report.reactive_setpoints_out_of_bounds <= REACTIVE_TARGETS[
        "reactive_setpoints_out_of_bounds_max"]
    ok &= report.apparent_power_violations <= REACTIVE_TARGETS["apparent_power_violations_max"]
    if report.q_settling_s:
        worst = report.q_settling_worst_s
        ok &= math.isfinite(worst) and worst <= report.q_settling_target_s
    if not report.apparent_limit_binding:
        diffs = report.p_figures.get("difference_pct", {}).values()
        ok &= all(abs(d) <= REACTIVE_TARGETS["p_difference_pct_max"] for d in diffs)
        ok &= report.fleet_p_rms_difference_pct <= REACTIVE_TARGETS["p_difference_pct_max"]
    return bool(ok)


def _table(r: ReactiveReport) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(title=f"Voltage support ({r.config.mode}, {r.config.priority}) over "
                    f"{r.duration_s:g} s of the site's scenario; with vs without reactive control")
    t.add_column("metric")
    t.add_column("value", justify="right")
    t.add_column("target", justify="right")
    t.add_row("Q tracking RMS (% of fleet Q capability)", f"{r.q_tracking_rms_pct:.3f} %", "")
    steps = ", ".join(f"{s:.0f} s" for s in r.q_settling_s) or "n/a (no voltage step)"
    t.add_row("settling after each clean voltage step", steps, f"≤ {r.q_settling_target_s:g} s")
    noisy = ", ".join(f"{s:.0f} s" for s in r.q_settling_in_noise_s)
    if noisy:
        t.add_row("  the same steps on the drifting background", noisy, "")
    t.add_row("voltage in band (with / without)", f"{r.voltage_in_band_pct:.1f} % / "
              f"{r.voltage_in_band_pct_without_reactive:.1f} %", "")
    t.add_row("reactive setpoints sent / out of bounds",
              f"{r.reactive_setpoints_sent} / {r.reactive_setpoints_out_of_bounds}", "0")
    t.add_row("apparent-power violations", str(r.apparent_power_violations), "0")
    t.add_row("apparent limit binding", "yes" if r.apparent_limit_binding else "no", "")
    p = r.p_figures
    for key, diff in p.get("difference_pct", {}).items():
        t.add_row(f"{key} (with / without)", f"{p['with_reactive'][key]:,.1f} / "
                  f"{p['without_reactive'][key]:,.1f} ({diff:+.3f} %)", "± 1 %")
    t.add_row("fleet P, RMS of with − without (% of rating)",
              f"{r.fleet_p_rms_difference_pct:.3f} %", "≤ 1 %")
    t.add_row("wall time (all runs)", f"{r.wall_s:.1f} s", "")
    Console().print(t)


def run_reactive_command(args: argparse.Namespace, site: Any, cfg: Any) -> int:
    """Run the voltage-support replay for the parsed ``gridloop replay`` arguments.

    Returns:
        0, or 1 with ``--check`` when a target was missed.

    Raises:
        ReplayError: bad flags, or an unwritable ``--summary-json``.
    """
    options = ReactiveReplayOptions(duration_s=reactive_duration_s(args))
    report = run_voltage_support(site, cfg, seed=args.seed, options=options)
    _table(report)
    met = reactive_targets_met(report)
    if args.summary_json is not None:
        summary = {"site": site.source, **report.summary(),
                   "targets": REACTIVE_TARGETS, "targets_met": met}
        write_summary_json(args.summary_json, summary)
    if args.check and not met:
        sys.stderr.write("gridloop replay: a reactive-power target was missed\n")
        return 1
    return 0
