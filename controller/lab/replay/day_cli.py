"""``gridloop replay --schedule FILE``: the day replay's part of the command.

* :func:`run_day_command` — select the load, the frequency and the schedule, run
  :func:`~controller.lab.replay.day.run_day`, print the tables, write the summary,
  and say whether the targets (:data:`DAY_TARGETS`) were met.

Bad input (schedule file, frequency file, load selection) raises
:class:`~controller.lab.replay.errors.ReplayError`: one line naming the flag.
"""

from __future__ import annotations

import argparse
import math
import sys
from typing import Any

from controller.errors import ConfigError
from controller.lab.replay.cli_kit import progress_of, write_summary_json
from controller.lab.replay.day import DayReplayOptions, run_day
from controller.lab.replay.errors import ReplayError
from controller.lab.replay.frequency import frequency_series
from controller.lab.replay.loader import LoadProfile
from controller.lab.replay.periods import DEFAULT_ZONE
from controller.lab.replay.reports import DayReport
from controller.runtime.billing import billing_zone
from controller.runtime.schedule_file import ScheduleFile, load_schedule
from simulator.frequency_synthetic import MAX_DURATION_S

__all__ = ["DAY_TARGETS", "day_targets_met", "run_day_command"]

DAY_TARGETS: dict[str, float] = {
    "fr_availability_pct_min": 99.9,
    "soc_in_band_at_window_start_pct_min": 100.0,
    "fr_rms_error_pct_max": 1.0,
    "fr_energy_outside_windows_wh_max": 0.0,
    "fr_activation_time_s_max_linear": 30.0,
    "fr_activation_time_s_max_knee": 1.0,
    "wall_s_per_day_max": 60.0,
}
"""The issue's targets for a day with a schedule (FCR full activation within 30 s, DC
within 1 s: SO GL Annex V, GB DC)."""


def day_targets_met(r: DayReport) -> dict[str, bool]:
    """Each target of :data:`DAY_TARGETS`: met (a figure that is nan counts as met only
    where there was nothing to measure: no sold window, no step)."""
    t = DAY_TARGETS

    def at_least(v: float, bound: float) -> bool:
        return math.isnan(v) or v >= bound

    return {
        "fr_availability_pct": at_least(r.fr_availability_pct, t["fr_availability_pct_min"]),
        "soc_in_band_at_window_start_pct": at_least(
            r.soc_in_band_at_window_start_pct, t["soc_in_band_at_window_start_pct_min"]),
        "fr_rms_error_pct": math.isnan(r.fr_rms_error_pct)
        or r.fr_rms_error_pct <= t["fr_rms_error_pct_max"],
        "fr_energy_outside_windows_wh": r.fr_energy_outside_windows_wh
        <= t["fr_energy_outside_windows_wh_max"],
        "fr_activation_time_s": all(
            math.isnan(w["fr_activation_time_s"])
            or w["fr_activation_time_s"] <= t[f"fr_activation_time_s_max_{w['curve']}"]
            for w in r.windows),
        "wall_s_per_day": r.wall_s / (r.simulated_s / 86400.0) <= t["wall_s_per_day_max"],
    }


def _schedule(args: argparse.Namespace, billing: Any) -> ScheduleFile:
    try:
        return load_schedule(args.schedule, billing_zone(billing.timezone, DEFAULT_ZONE))
    except ConfigError as exc:
        raise ReplayError(f"--schedule: {exc}", source="--schedule") from None


def _fmt(v: float, unit: str, digits: int = 1) -> str:
    return "n/a" if not math.isfinite(v) else f"{v:,.{digits}f} {unit}"


def _tables(r: DayReport) -> None:
    from rich import box
    from rich.console import Console
    from rich.table import Table

    console = Console()
    t = Table(title=f"Day replay with a schedule: {r.load.get('start')}, "
                    f"{r.load.get('days'):g} days, frequency {r.frequency_source}")
    for name in ("metric", "value", "target"):
        t.add_column(name, justify="left" if name == "metric" else "right")
    days = r.simulated_s / 86400.0
    t.add_row("FR availability (contracted time)", _fmt(r.fr_availability_pct, "%", 2), "≥ 99.9 %")
    t.add_row("SoC in band at window start (reachable)",
              _fmt(r.soc_in_band_at_window_start_pct, "%"), "100 %")
    t.add_row("windows sold / band out of reach", f"{r.windows_sold} / "
              f"{r.windows_band_unreachable}", "")
    t.add_row("FR RMS error (% of reserve)", _fmt(r.fr_rms_error_pct, "%", 2), "≤ 1 %")
    t.add_row("FR energy delivered", _fmt(r.fr_energy_delivered_wh / 1000, "kWh", 2), "")
    t.add_row("FR energy outside windows", _fmt(r.fr_energy_outside_windows_wh, "Wh", 3), "0 Wh")
    limit = {"knee": "≤ 1 s", "linear": "≤ 30 s"}.get(r.fr_activation_curve,
                                                      "≤ 30 s FCR, 1 s DC")
    t.add_row(f"full activation after a step (scripted segment, {r.fr_activation_curve or '-'})",
              _fmt(r.fr_activation_time_max_s, "s", 2), limit)
    t.add_row("peak import without batteries", _fmt(r.peak_import_w_uncontrolled / 1000, "kW"), "")
    t.add_row("peak import achieved (interval mean)", _fmt(r.peak_import_w / 1000, "kW"), "")
    t.add_row("billed peak (meter)", _fmt(r.billed_peak_w / 1000, "kW"), "")
    t.add_row("intervals above the limit / avoidable",
              f"{r.intervals_above_limit} / {r.intervals_above_limit_avoidable} of "
              f"{r.intervals_total}", "")
    t.add_row("fleet SoC range", f"{r.soc_min_pct:.1f} – {r.soc_max_pct:.1f} %", "")
    t.add_row("control cycles / wall time", f"{r.control_cycles:,} / {r.wall_s:.1f} s "
              f"({r.wall_s / days:.1f} s per day; step segment {r.fr_activation_wall_s:.1f} s)",
              "≤ 60 s per day")
    console.print(t)
    w = Table(title="Per sold window (SoC at start: * = out of band, ! = preparation warned)",
              box=box.SIMPLE_HEAD, pad_edge=False)
    for name in ("window", "kW", "SoC %", "band %", "avail. %", "RMS %", "act. s", "FR kWh",
                 "peak kW", "above"):
        w.add_column(name, justify="left" if name == "window" else "right", no_wrap=True)
    one_day = days <= 1.0 + 1e-9
    for row in r.windows:
        band = row["soc_band_pct"]
        mark = "" if row["soc_in_band_at_start"] else (
            "*!" if row["preparation_warned"] else "*")
        day = "" if one_day else row["start"][5:11].replace("T", " ")
        w.add_row(f"{day}{row['start'][11:16]}–{row['end'][11:16]}",
                  f"{row['reserved_power_w'] / 1000:.0f}",
                  f"{row['soc_start_pct']:.1f}{mark}", f"{band[0]:.1f}–{band[1]:.1f}",
                  _fmt(row["fr_availability_pct"], "", 2), _fmt(row["fr_rms_error_pct"], "", 2),
                  _fmt(row["fr_activation_time_s"], "", 2),
                  f"{row['fr_energy_delivered_wh'] / 1000:.1f}",
                  f"{row['peak_import_w'] / 1000:.1f}", str(row["intervals_above_limit"]))
    Console(width=max(console.width, 100)).print(w)


def run_day_command(args: argparse.Namespace, site: Any, cfg: Any, load: LoadProfile) -> int:
    """The day replay of ``gridloop replay --schedule``; returns the exit status."""

    schedule = _schedule(args, cfg.billing)
    duration = load.power_w.size * load.step_s
    # The generator's longest trace repeats over a longer replay (as a recording does).
    series = frequency_series(args.frequency_csv, seed=args.seed,
                              duration_s=min(duration, MAX_DURATION_S))
    for line in series.problem_lines():
        sys.stderr.write(f"gridloop replay: warning: {line}\n")
    control = cfg.control
    options = DayReplayOptions(soc_exponent=control.soc_exponent, deadband_w=control.deadband_w,
                               stale_after_s=control.stale_after_s)
    with progress_of("day replay (simulated time)", args.no_progress) as cb:
        report = run_day(site, load, schedule, series, config=cfg.frequency_response,
                         peak_shaving=cfg.peak_shaving, billing=cfg.billing, options=options,
                         seed=args.seed, progress=cb)
    _tables(report)
    met = day_targets_met(report)
    if args.summary_json is not None:
        summary: dict[str, Any] = {"site": site.source, "schedule": str(args.schedule)}
        summary.update(report.summary())
        summary["frequency_gaps"] = series.gaps_within(duration).as_dict() \
            if args.frequency_csv is not None else {}
        summary["targets"] = DAY_TARGETS
        summary["targets_missed"] = [k for k, ok in met.items() if not ok]
        summary["targets_met"] = all(met.values())
        write_summary_json(args.summary_json, summary)
    if args.check and not all(met.values()):
        missed = ", ".join(k for k, ok in met.items() if not ok)
        sys.stderr.write(f"gridloop replay: a target was missed: {missed}\n")
        return 1
    return 0
