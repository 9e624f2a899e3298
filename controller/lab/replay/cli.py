"""``gridloop replay``: control quality against the optimum, on a virtual clock.

Usage::

    gridloop replay [--config FILE] [--load-csv FILE] [--load-column NAME]
                    [--load-peak-w W] [--start DATE] [--days N]
                    [--limit optimal|WATTS] [--summary-json FILE]
                    [--fr-trace SPEC|none] [--seed N] [--no-peak] [--check] [--no-progress]

Runs the peak-shaving replay (:func:`~controller.lab.replay.peak.run_peak_shaving`)
on a load profile — by default the bundled month of a metal-processing
business, scaled to a 400 kW peak — and the frequency-response replay
(:func:`~controller.lab.replay.frequency.run_frequency_response`) on a seeded trace,
prints the results as tables and optionally writes them as JSON.

``--config`` takes a site TOML (``[[component]]`` tables, as in
``simulator/sites/default.toml``) or a gridloop config (its ``[simulator] site``,
``[frequency_response]`` and ``[control]`` are used; the peak-shaving replay keeps
a 900 s setpoint lifetime, as its control steps are minutes apart while the load
is constant).
``--fr-trace`` is ``none`` or comma-separated ``key=value`` pairs among
``duration`` (s), ``steps``, ``ramps``, ``step_hz``, ``hold`` (s), ``noise_hz``,
``seed``, e.g. ``--fr-trace duration=1800,steps=4,ramps=1``.

Exit status: 0 when the replay ran (with ``--check``: 1 if a target was
missed), 2 on bad input — one line on stderr, no traceback.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import tomllib
from pathlib import Path
from typing import Any

from controller.cli_args import OneLineParser
from controller.lab.replay.errors import ReplayError
from controller.lab.replay.frequency import (
    FrequencyReplayOptions,
    make_frequency_trace,
    run_frequency_response,
)
from controller.lab.replay.loader import BUNDLED_LOAD_CSV, LoadProfile, load_profile
from controller.lab.replay.peak import run_peak_shaving
from controller.lab.replay.reports import FrequencyResponseReport, PeakShavingReport

__all__ = ["DEFAULT_DAYS", "DEFAULT_LOAD_PEAK_W", "TARGETS", "main"]

DEFAULT_LOAD_PEAK_W = 400_000.0
"""Peak the load is scaled to when ``--load-peak-w`` is not given (W)."""
DEFAULT_DAYS = 30.0
"""Days replayed when ``--days`` is not given (fewer if the file ends sooner)."""
TARGETS: dict[str, float] = {
    "reduction_achieved_pct_of_optimal_min": 98.0,
    "intervals_above_limit_avoidable_max": 0,
    "fr_rms_error_pct_max": 2.0,
    "fr_activation_time_s_max": 1.0,
}
"""The control-quality targets ``--check`` enforces."""

_TRACE_KEYS = {"duration": float, "steps": int, "ramps": int, "step_hz": float, "hold": float,
               "noise_hz": float, "seed": int}


def _parser() -> argparse.ArgumentParser:
    description = __doc__.split("\n\n")[1] if __doc__ else ""
    p = OneLineParser(prog="gridloop replay", description=description)
    p.add_argument("--config", type=Path, help="site TOML or gridloop config TOML")
    p.add_argument("--load-csv", type=Path, help="load profile CSV (default: the bundled month)")
    p.add_argument("--load-column", help="value column (default: the only numeric one)")
    p.add_argument("--load-peak-w", type=float, default=DEFAULT_LOAD_PEAK_W,
                   help=f"scale the selection to this peak, W (default {DEFAULT_LOAD_PEAK_W:.0f})")
    p.add_argument("--start", help="first day/time to replay, e.g. 2018-03-01 (default: first row)")
    p.add_argument("--days", type=float,
                   help=f"days to replay (default {DEFAULT_DAYS:g} or to the end of the file)")
    p.add_argument("--limit", default="optimal",
                   help="import limit: 'optimal' (the LP optimum, default) or watts")
    p.add_argument("--summary-json", type=Path, help="write the results as JSON to this file")
    p.add_argument("--fr-trace", default="",
                   help="frequency trace: 'none' or key=value,... (duration, steps, ramps, "
                        "step_hz, hold, noise_hz, seed); default duration=900")
    p.add_argument("--seed", type=int, default=0, help="seed of the physics and the trace")
    p.add_argument("--no-peak", action="store_true", help="skip the peak-shaving replay")
    p.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def _parse_limit(text: str) -> float | None:
    if text.strip().lower() == "optimal":
        return None
    try:
        value = float(text)
    except ValueError:
        raise ReplayError(f"--limit: expected 'optimal' or a number of watts, got {text!r}",
                          source="--limit") from None
    if not (math.isfinite(value) and value >= 0):
        raise ReplayError(f"--limit: must be >= 0 W, got {text!r}", source="--limit")
    return value


def _parse_trace(text: str, seed: int) -> dict[str, Any] | None:
    if text.strip().lower() == "none":
        return None
    out: dict[str, Any] = {"duration": 900.0, "seed": seed}
    for part in filter(None, (s.strip() for s in text.split(","))):
        key, sep, value = part.partition("=")
        key = key.strip()
        if not sep or key not in _TRACE_KEYS:
            raise ReplayError(f"--fr-trace: {part!r} is not key=value with a key among "
                              f"{', '.join(_TRACE_KEYS)}", source="--fr-trace")
        try:
            out[key] = _TRACE_KEYS[key](value.strip())
        except ValueError:
            raise ReplayError(f"--fr-trace: {key}={value.strip()!r} is not a "
                              f"{_TRACE_KEYS[key].__name__}", source="--fr-trace") from None
    return out


def _load_setup(path: Path | None) -> tuple[Any, Any, Any]:
    """(site, frequency-response config, ``[control]`` config) from ``--config``."""
    from controller.runtime.config import ConfigError, ControlConfig, load_config
    from controller.runtime.strategies import FrequencyResponseConfig
    from simulator.config import SiteConfigError, load_site

    if path is None:
        try:
            return load_site(None), FrequencyResponseConfig(), ControlConfig()
        except SiteConfigError as exc:
            raise ReplayError(str(exc), source="site") from None
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ReplayError(f"{path}: file not found", source=str(path)) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ReplayError(f"{path}: cannot read ({exc})", source=str(path)) from None
    except tomllib.TOMLDecodeError as exc:
        raise ReplayError(f"{path}: invalid TOML: {exc}", source=str(path)) from None
    try:
        if "component" in data:
            return load_site(path), FrequencyResponseConfig(), ControlConfig()
        cfg = load_config(path)
        return load_site(cfg.simulator.site), cfg.frequency_response, cfg.control
    except (SiteConfigError, ConfigError) as exc:
        raise ReplayError(str(exc), source=str(path)) from None


def _select_load(args: argparse.Namespace) -> LoadProfile:
    path = args.load_csv or BUNDLED_LOAD_CSV
    prof = load_profile(path, column=args.load_column, peak_w=args.load_peak_w,
                        start=args.start, days=args.days)
    if args.days is None:
        n = round(DEFAULT_DAYS * 86400.0 / prof.step_s)
        if prof.power_w.size > n:
            raw = prof.raw[:n]
            scale = args.load_peak_w / float(raw.max()) if raw.max() > 0 else prof.scale
            prof = dataclasses.replace(prof, raw=raw, power_w=raw * scale, scale=scale)
    return prof


def _fmt_w(v: float) -> str:
    return "n/a" if not math.isfinite(v) else f"{v / 1000:,.2f} kW"


def _tables(ps: PeakShavingReport | None, fr: FrequencyResponseReport | None) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    if ps is not None:
        t = Table(title="Peak shaving vs the perfect-foresight optimum (LP, HiGHS); "
                        "peaks are interval means")
        t.add_column("metric")
        t.add_column("value", justify="right")
        t.add_column("target", justify="right")
        days = ps.load.get("days", 0.0)
        t.add_row("load", f"{Path(str(ps.load.get('file'))).name} from "
                          f"{ps.load.get('start')}, {days:g} days", "")
        t.add_row("peak import, uncontrolled", _fmt_w(ps.peak_import_w_uncontrolled), "")
        t.add_row("peak import, optimal (fleet as one battery)", _fmt_w(ps.peak_import_w_optimal),
                  "")
        t.add_row("peak import, optimal (per group, information)",
                  _fmt_w(ps.peak_import_w_optimal_groups), "")
        t.add_row("import limit", _fmt_w(ps.import_limit_w), "")
        t.add_row("peak import, achieved", _fmt_w(ps.peak_import_w), "")
        t.add_row("peak import, achieved, instantaneous", _fmt_w(ps.peak_import_w_instant), "")
        t.add_row("reduction achieved / optimal",
                  f"{ps.reduction_achieved_pct_of_optimal:.2f} %", "≥ 98 %")
        t.add_row("intervals above limit (interval mean)",
                  f"{ps.intervals_above_limit} / {ps.intervals_total}", "")
        t.add_row("  of which avoidable", str(ps.intervals_above_limit_avoidable), "0")
        t.add_row("intervals with an instant above limit", str(ps.intervals_with_excursion), "")
        t.add_row("largest interval-mean excess over the limit", _fmt_w(ps.max_excess_w), "")
        t.add_row("fleet SoC range", f"{ps.soc_min_pct:.1f} – {ps.soc_max_pct:.1f} %", "")
        t.add_row("control cycles / wall time",
                  f"{ps.control_cycles:,} / {ps.wall_s:.1f} s (LP {ps.lp_wall_s:.1f} s)", "")
        console.print(t)
    if fr is not None:
        t = Table(title="Frequency response on a seeded trace")
        t.add_column("metric")
        t.add_column("value", justify="right")
        t.add_column("target", justify="right")
        t.add_row("trace", f"{fr.simulated_s:g} s, {len(fr.events)} events", "")
        t.add_row("reserved power", _fmt_w(fr.reserved_power_w), "")
        t.add_row("RMS error (outside activation windows)", f"{fr.rms_error_pct:.2f} %", "≤ 2 %")
        t.add_row("RMS error (all samples)", f"{fr.rms_error_pct_all:.2f} %", "")
        t.add_row("time to full activation (max)", f"{fr.activation_time_max_s:.2f} s", "≤ 1 s")
        t.add_row("energy required / delivered",
                  f"{fr.fr_energy_required_wh / 1000:.2f} / "
                  f"{fr.fr_energy_delivered_wh / 1000:.2f} kWh", "")
        t.add_row("SoC band for the hold duration",
                  f"{fr.soc_band_pct[0]:.1f} – {fr.soc_band_pct[1]:.1f} %", "")
        t.add_row("time with SoC in band", f"{fr.soc_in_band_pct:.1f} %", "100 %")
        t.add_row("control cycles / wall time", f"{fr.control_cycles:,} / {fr.wall_s:.1f} s", "")
        console.print(t)


def _targets_met(ps: PeakShavingReport | None, fr: FrequencyResponseReport | None) -> bool:
    ok = True
    if ps is not None:
        ok &= ps.reduction_achieved_pct_of_optimal >= TARGETS[
            "reduction_achieved_pct_of_optimal_min"]
        ok &= ps.intervals_above_limit_avoidable <= TARGETS["intervals_above_limit_avoidable_max"]
    if fr is not None:
        ok &= fr.rms_error_pct <= TARGETS["fr_rms_error_pct_max"]
        ok &= fr.activation_time_max_s <= TARGETS["fr_activation_time_s_max"]
    return bool(ok)


def _run(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    limit = _parse_limit(args.limit)
    trace_spec = _parse_trace(args.fr_trace, args.seed)
    site, fr_cfg, control = _load_setup(args.config)
    # The config's [control] settings; the peak replay keeps its long lifetime (its
    # control steps are up to minutes apart while the load is constant).
    settings = {"soc_exponent": control.soc_exponent, "deadband_w": control.deadband_w,
                "stale_after_s": control.stale_after_s}
    load = None if args.no_peak else _select_load(args)
    trace = None
    if trace_spec is not None:
        trace = make_frequency_trace(
            trace_spec["duration"], seed=trace_spec["seed"],
            **{k: v for k, v in (("steps", trace_spec.get("steps")),
                                 ("ramps", trace_spec.get("ramps")),
                                 ("step_hz", trace_spec.get("step_hz")),
                                 ("hold_s", trace_spec.get("hold")),
                                 ("noise_hz", trace_spec.get("noise_hz"))) if v is not None})

    progress = Progress(TextColumn("{task.description}"), BarColumn(),
                        TextColumn("{task.percentage:>3.0f}%"), TimeElapsedColumn(),
                        console=Console(stderr=True), transient=True,
                        disable=args.no_progress)
    ps_report: PeakShavingReport | None = None
    fr_report: FrequencyResponseReport | None = None
    with progress:
        if load is not None:
            task = progress.add_task("peak shaving (simulated time)", total=1.0)

            def ps_cb(done: float, total: float) -> None:
                progress.update(task, completed=done / total if total else 1.0)

            from controller.lab.replay.peak import PeakReplayOptions

            ps_report = run_peak_shaving(site, load, limit_w=limit, seed=args.seed,
                                         options=PeakReplayOptions(**settings),
                                         progress=ps_cb)
        if trace is not None:
            task2 = progress.add_task("frequency response (simulated time)", total=1.0)

            def fr_cb(done: float, total: float) -> None:
                progress.update(task2, completed=done / total if total else 1.0)

            fr_report = run_frequency_response(
                site, trace, config=fr_cfg,
                options=FrequencyReplayOptions(
                    **settings, setpoint_lifetime_s=control.setpoint_lifetime_s),
                progress=fr_cb)
    _tables(ps_report, fr_report)
    met = _targets_met(ps_report, fr_report)
    if args.summary_json is not None:
        summary: dict[str, Any] = {"site": site.source}
        if ps_report is not None:
            summary.update(ps_report.summary())
        if fr_report is not None:
            summary["frequency_response"] = fr_report.summary()
        summary["targets"] = TARGETS
        summary["targets_met"] = met
        try:
            args.summary_json.write_text(json.dumps(summary, indent=2, default=str) + "\n")
        except OSError as exc:
            raise ReplayError(f"--summary-json: cannot write {args.summary_json}: "
                              f"{exc.strerror or exc}", source="--summary-json") from None
    if args.check and not met:
        sys.stderr.write("gridloop replay: a control-quality target was missed\n")
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``gridloop replay``; returns the exit status (0, 1 with --check, 2)."""
    try:
        args = _parser().parse_args(sys.argv[1:] if argv is None else argv)
        return _run(args)
    except ReplayError as exc:
        sys.stderr.write(f"gridloop replay: {exc}\n")
        return 2
    except SystemExit as exc:  # --help
        return exc.code if isinstance(exc.code, int) else 0
    except KeyboardInterrupt:
        sys.stderr.write("gridloop replay: interrupted\n")
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
