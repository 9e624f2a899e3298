"""``gridloop replay``: control quality against the optimum, on a virtual clock.

Usage::

    gridloop replay [--config FILE] [--profile NAME | --load-csv FILE] [--load-column NAME]
                    [--load-peak-w W] [--start DATE] [--days N]
                    [--limit auto|optimal|WATTS] [--baselines both|previous|optimal|none]
                    [--summary-json FILE] [--fr-trace SPEC|none] [--frequency-csv FILE]
                    [--seed N] [--no-peak] [--check] [--no-progress]
    gridloop replay --config FILE_WITH_REACTIVE_POWER [--hours H | --days N] [--seed N]
                    [--summary-json FILE] [--check]
    gridloop replay --schedule FILE [--days N] [--start DATE] [--profile NAME | --load-csv FILE]
                    [--frequency-csv FILE] [--config FILE] [--summary-json FILE] [--check]
    gridloop replay --config FILE [--pv-ev] [--days N] [--profile NAME | --load-csv FILE]
                    [--start DATE] [--load-peak-w W] [--seed N] [--summary-json FILE] [--check]

Runs the peak-shaving replay (:func:`~controller.lab.replay.peak.run_peak_shaving`)
over whole billing periods of a load profile -- by default March of the bundled
metal-processing year (January and February are the site's history), scaled to a
400 kW peak -- with the limit of ``--limit`` and, in parallel processes, the
baselines (a fixed limit at the previous period's optimum; each period's own
optimum), and the frequency-response replay
(:func:`~controller.lab.replay.frequency.run_frequency_response`) on a seeded trace;
prints the results as tables and optionally writes them as JSON.

Selection: ``--profile`` (``metal_processing``, ``galvanization``: a calendar year
each, bundled) or ``--load-csv``. Without ``--start`` a bundled profile replays
March (``--days`` may shorten it), a CSV its first row on; with ``--start`` the
replay runs to the end of the data unless ``--days`` cuts it. The rows before the
start are the site's history (the billing meter's, as if the site had recorded
them). Billing periods are calendar months in ``[billing] timezone`` of
``--config``, else Europe/Berlin (the bundled profiles' local time).

``--config`` takes a site TOML (``[[component]]`` tables, as in
``simulator/sites/default.toml``) or a gridloop config (its ``[simulator] site``,
``[frequency_response]``, ``[control]``, ``[billing]`` and the ``auto_*`` keys of
``[peak_shaving]`` are used; the peak-shaving replay keeps a 900 s setpoint
lifetime, as its control steps are minutes apart while the load is constant).
``--fr-trace`` is ``none`` or comma-separated ``key=value`` pairs among
``duration`` (s), ``steps``, ``ramps``, ``step_hz``, ``hold`` (s), ``noise_hz``,
``seed``, e.g. ``--fr-trace duration=1800,steps=4,ramps=1``; a leading word
``synthetic`` replaces the nominal frequency by the realistic generator
(:mod:`simulator.frequency_synthetic`; no steps, ramps or noise unless given), e.g.
``--fr-trace synthetic,seed=3,duration=86400``. ``--frequency-csv FILE`` replays a
recorded frequency (timestamp and Hz columns, >= 1 sample per second; gap rules in
:func:`simulator.frequency_series.read_frequency_csv`) from its first row for its
whole length (``--fr-trace duration=S`` shortens it); the problems found in the
file are warnings on stderr, and the unknown stretches met (frequency response
asks 0 W there) are in the table and in the summary JSON
(``frequency_response.frequency_gaps``: ``count``, ``seconds``, ``longest_s``,
``bridged``).

A ``--config`` with ``[reactive_power] enabled`` runs instead the voltage-support
replay (:mod:`controller.lab.replay.reactive`, :mod:`controller.lab.replay.reactive_cli`):
the config's site's own scenario (load, PV, ``[[grid.event]]`` voltage steps) for
``--hours`` (or ``--days``; default 30 minutes) with the config's strategies, once with
reactive control and once without; Q tracking, settling after each voltage step,
voltage in band, out-of-bounds and apparent-power counts, and the peak-shaving
figures of both runs. ``--check`` enforces
:data:`~controller.lab.replay.reactive_cli.REACTIVE_TARGETS`.

``--schedule FILE`` runs instead the day replay
(:func:`~controller.lab.replay.day.run_day`, :mod:`controller.lab.replay.day_cli`): one
combined replay of the load selection (``--days`` 1 by default) with peak shaving and
frequency response under the schedule file's windows (the ``gridloop run --schedule``
format), on the synthetic frequency (``--seed``) or ``--frequency-csv``; per sold
window and overall: availability, SoC at the window's start, FR tracking RMS, FR
energy in and outside windows, activation after a step (scripted segment) and the
peak-shaving figures. ``--check`` enforces
:data:`~controller.lab.replay.day_cli.DAY_TARGETS`.

On a site with EV chargers (or with ``--pv-ev`` on any site) it runs instead the PV / EV
site replay (:func:`~controller.lab.replay.site.run_site`,
:mod:`controller.lab.replay.site_cli`): the config's strategies and limits on the site with
its PV inverters and EV chargers for ``--days`` (7 by default) of the site's own load (or
``--profile`` / ``--load-csv``, scaled to ``--load-peak-w``, by default the site's load
peak), its irradiance and its seeded EV sessions; it reports the export and import limits'
figures, the curtailed PV the batteries could have stored and the EV energy delivered
(``--limit``, ``--baselines``, ``--fr-trace``, ``--frequency-csv`` and ``--no-peak`` do not
apply to it). ``--check`` enforces :data:`~controller.lab.replay.site_cli.SITE_TARGETS`.

Exit status: 0 when the replay ran (with ``--check``: 1 if a target of the
``--limit`` mode was missed), 2 on bad input -- one line on stderr, no traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import math
import multiprocessing
import signal
import sys
import threading
import tomllib
import zoneinfo
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from controller.cli_args import OneLineParser
from controller.lab.replay.cli_kit import progress_bar, write_summary_json
from controller.lab.replay.errors import ReplayError
from controller.lab.replay.frequency import (
    FrequencyReplayOptions,
    FrequencyTrace,
    frequency_series,
    make_frequency_trace,
    run_frequency_response,
)
from controller.lab.replay.loader import BUNDLED_PROFILES, LoadProfile, load_profile
from controller.lab.replay.peak import LimitSpec, PeakReplayOptions, run_peak_shaving
from controller.lab.replay.periods import DEFAULT_ZONE
from controller.lab.replay.reports import FrequencyResponseReport, PeakShavingReport

__all__ = ["BASELINES", "DEFAULT_LOAD_PEAK_W", "DEFAULT_PROFILE", "TARGETS", "main"]

DEFAULT_LOAD_PEAK_W = 400_000.0
"""Peak the load is scaled to when ``--load-peak-w`` is not given (W)."""
DEFAULT_PROFILE = "metal_processing"
"""The bundled profile replayed without ``--profile`` / ``--load-csv``."""
_DEFAULT_MONTH = 3
"""Without ``--start`` a bundled profile replays this month (the months before are history)."""
BASELINES: dict[str, LimitSpec] = {"previous": "previous", "optimal": "optimal"}
"""The baselines ``--baselines`` runs beside ``--limit``: a fixed limit at the previous
period's optimum (a reasonable operator's guess), each period's own optimum (an
upper bound: it knows the future)."""
TARGETS: dict[str, float] = {
    "reduction_achieved_pct_of_optimal_min": 98.0,
    "auto_reduction_pct_of_optimal_min": 90.0,
    "auto_reduction_pct_of_optimal_period_min": 80.0,
    "intervals_above_limit_avoidable_max": 0,
    "fr_rms_error_pct_max": 2.0,
    "fr_activation_time_s_max": 1.0,
}
"""The control-quality targets ``--check`` enforces: ``--limit optimal`` the 98 % share
over all periods, ``--limit auto`` the issue's 90 % over all periods and 80 % in every
period, any limit 0 avoidable intervals above it; the frequency response its two."""

_TRACE_KEYS = {"duration": float, "steps": int, "ramps": int, "step_hz": float, "hold": float,
               "noise_hz": float, "seed": int}


def _parser() -> argparse.ArgumentParser:
    description = __doc__.split("\n\n")[1] if __doc__ else ""
    p = OneLineParser(prog="gridloop replay", description=description)
    p.add_argument("--config", type=Path, help="site TOML or gridloop config TOML")
    p.add_argument("--profile", choices=sorted(BUNDLED_PROFILES),
                   help=f"bundled load profile (default {DEFAULT_PROFILE})")
    p.add_argument("--load-csv", type=Path, help="load profile CSV instead of a bundled one")
    p.add_argument("--load-column", help="value column (default: the only numeric one)")
    p.add_argument("--load-peak-w", type=float, default=None,
                   help=f"scale the selection to this peak, W (default {DEFAULT_LOAD_PEAK_W:.0f}; "
                        "the site's load peak in the PV / EV site replay)")
    p.add_argument("--start", help="first day/time to replay, e.g. 2018-03-01; the rows before "
                                   "are history (default: March of a bundled profile, the "
                                   "first row of a CSV)")
    p.add_argument("--days", type=float,
                   help="days to replay (default: to the end of the data; March of a bundled "
                        "profile without --start)")
    p.add_argument("--hours", type=float,
                   help="voltage-support replay ([reactive_power] in --config): hours of the "
                        "site's scenario to replay (default 0.5)")
    p.add_argument("--limit", default=None,
                   help="import limit: 'auto' (the production planner), 'optimal' (each "
                        "period's LP optimum, default) or watts")
    p.add_argument("--baselines", default=None, choices=("both", "previous", "optimal", "none"),
                   help="baselines run in parallel: the previous period's optimum, each "
                        "period's optimum (default both)")
    p.add_argument("--summary-json", type=Path, help="write the results as JSON to this file")
    p.add_argument("--fr-trace", default="",
                   help="frequency trace: 'none' or [synthetic,]key=value,... (duration, "
                        "steps, ramps, step_hz, hold, noise_hz, seed); default duration=900")
    p.add_argument("--frequency-csv", type=Path,
                   help="replay frequency response on this recorded frequency (timestamp, "
                        "Hz; >= 1 sample per second)")
    p.add_argument("--schedule", type=Path,
                   help="day replay: peak shaving and frequency response together with this "
                        "schedule file's windows ([[window]] TOML), --days 1 by default")
    p.add_argument("--seed", type=int, default=0, help="seed of the physics and the trace")
    p.add_argument("--no-peak", action="store_true", help="skip the peak-shaving replay")
    p.add_argument("--pv-ev", action="store_true",
                   help="the PV / EV site replay (the default on a site with EV chargers)")
    p.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def _parse_limit(text: str) -> LimitSpec:
    word = text.strip().lower()
    if word in ("auto", "optimal"):
        return word  # type: ignore[return-value]
    try:
        value = float(text)
    except ValueError:
        raise ReplayError(f"--limit: expected 'auto', 'optimal' or a number of watts, got "
                          f"{text!r}", source="--limit") from None
    if not (math.isfinite(value) and value >= 0):
        raise ReplayError(f"--limit: must be >= 0 W, got {text!r}", source="--limit")
    return value


def _parse_trace(text: str, seed: int) -> dict[str, Any] | None:
    if text.strip().lower() == "none":
        return None
    out: dict[str, Any] = {"duration": 900.0, "seed": seed, "synthetic": False}
    parts = [s.strip() for s in text.split(",") if s.strip()]
    if parts and parts[0].lower() == "synthetic":
        out["synthetic"] = True
        parts = parts[1:]
    for part in parts:
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
    out["given"] = {p.partition("=")[0].strip() for p in parts}
    return out


def _make_trace(spec: dict[str, Any] | None, csv: Path | None) -> FrequencyTrace | None:
    """The frequency-response trace of ``--fr-trace`` and ``--frequency-csv``; the file's
    problems are warnings on stderr."""
    if csv is not None and (spec is None or spec["synthetic"]):
        what = "none" if spec is None else "synthetic"
        raise ReplayError(f"--frequency-csv {csv}: cannot be combined with --fr-trace {what}",
                          source="--frequency-csv")
    if spec is None:
        return None
    series = None
    if csv is not None or spec["synthetic"]:
        series = frequency_series(csv, seed=spec["seed"], duration_s=spec["duration"])
        for line in series.problem_lines():
            sys.stderr.write(f"gridloop replay: warning: {line}\n")
        if csv is not None and "duration" not in spec["given"]:
            spec["duration"] = series.duration_s
    # Over a recorded or synthetic series nothing is added unless asked for.
    quiet = {"steps": 0, "ramps": 0, "noise_hz": 0.0} if series is not None else {}
    kwargs = {name: spec.get(key, quiet.get(key)) for key, name in (
        ("steps", "steps"), ("ramps", "ramps"), ("step_hz", "step_hz"), ("hold", "hold_s"),
        ("noise_hz", "noise_hz"))}
    return make_frequency_trace(spec["duration"], seed=spec["seed"], series=series,
                                **{k: v for k, v in kwargs.items() if v is not None})


def _load_setup(path: Path | None) -> tuple[Any, Any]:
    """(site, gridloop config) from ``--config`` (a site TOML: the default config)."""
    from controller.runtime.config import ConfigError, GridloopConfig, load_config
    from simulator.config import SiteConfigError, load_site

    if path is None:
        try:
            return load_site(None), GridloopConfig()
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
            return load_site(path), GridloopConfig()
        cfg = load_config(path)
        return load_site(cfg.simulator.site), cfg
    except (SiteConfigError, ConfigError) as exc:
        raise ReplayError(str(exc), source=str(path)) from None


def _default_month(path: Path) -> tuple[str, float]:
    """``--start`` and ``--days`` of a bundled profile replayed without ``--start``:
    :data:`_DEFAULT_MONTH` of the data's first year, whole (in absolute time: March has a
    23-hour day)."""
    with path.open(encoding="utf-8") as f:
        f.readline()
        year = int(f.readline()[:4])
    zone = zoneinfo.ZoneInfo(DEFAULT_ZONE)
    first = dt.datetime(year, _DEFAULT_MONTH, 1, tzinfo=zone)
    after = dt.datetime(year, _DEFAULT_MONTH + 1, 1, tzinfo=zone)
    return first.date().isoformat(), (after.timestamp() - first.timestamp()) / 86400.0


def _select_load(args: argparse.Namespace,
                 default_peak_w: float = DEFAULT_LOAD_PEAK_W) -> LoadProfile:
    """The load selection: ``--profile`` / ``--load-csv``, ``--start``, ``--days``,
    ``--load-peak-w`` (else ``default_peak_w``) (module)."""
    if args.load_csv is not None and args.profile is not None:
        raise ReplayError("--profile and --load-csv: give one of them", source="--profile")
    start, days = args.start, args.days
    if args.load_csv is None:
        path = BUNDLED_PROFILES[args.profile or DEFAULT_PROFILE]
        if start is None:
            start, month_days = _default_month(path)
            days = month_days if days is None else days
    else:
        path = args.load_csv
    peak_w = default_peak_w if args.load_peak_w is None else args.load_peak_w
    return load_profile(path, column=args.load_column, peak_w=peak_w, start=start, days=days)


def _fmt_w(v: float | None) -> str:
    return "n/a" if v is None or not math.isfinite(v) else f"{v / 1000:,.2f} kW"


def _fmt_pct(v: float | None) -> str:
    return "n/a" if v is None or not math.isfinite(v) else f"{v:.1f} %"


_LABELS = {"fixed": "fixed limit", "optimal": "own optimum",
           "previous": "previous optimum", "auto": "auto limit"}


def _period_table(ps: PeakShavingReport, baselines: dict[str, dict[str, Any]]) -> Any:
    """The per-period rows of the ``--limit`` run, with the baselines' achieved peaks."""
    from rich.table import Table

    t = Table(title=f"Per billing period ({ps.load.get('zone')}): {_LABELS[ps.limit_mode]}; "
                    "share = achieved / optimal peak reduction")
    for name in ("period", "no batteries", "optimum (LP)", "achieved", "share", "limit",
                 "above / avoidable", "above given / preventable", "EFC"):
        t.add_column(name, justify="left" if name == "period" else "right")
    for name in baselines:
        t.add_column(f"{_LABELS[name]} (share)", justify="right")
    rows = {name: {r["period"]: r for r in b["periods"]} for name, b in baselines.items()}
    for r in ps.periods:
        cells = [r["period"] + ("" if r["whole"] else " (part)"),
                 _fmt_w(r["peak_import_w_uncontrolled"]), _fmt_w(r["peak_import_w_optimal"]),
                 _fmt_w(r["peak_import_w"]), _fmt_pct(r["reduction_achieved_pct_of_optimal"]),
                 _fmt_w(r["limit_w"]),
                 f"{r['intervals_above_limit']} / {r['intervals_above_limit_avoidable']}",
                 f"{r['intervals_above_given_limit']} / "
                 f"{r['intervals_above_given_limit_preventable']}",
                 f"{r['equivalent_full_cycles']:.1f}"]
        for name in baselines:
            b = rows[name].get(r["period"])
            cells.append("n/a" if b is None else b["note"] or
                         f"{_fmt_w(b['peak_import_w'])} "
                         f"({_fmt_pct(b['reduction_achieved_pct_of_optimal'])})")
        t.add_row(*cells)
    total = ["all periods", "", "", "", _fmt_pct(ps.reduction_achieved_pct_of_optimal), "",
             f"{ps.intervals_above_limit} / {ps.intervals_above_limit_avoidable}",
             f"{ps.intervals_above_given_limit} / {ps.intervals_above_given_limit_preventable}",
             f"{ps.equivalent_full_cycles:.1f}"]
    total += [_fmt_pct(b["reduction_achieved_pct_of_optimal"]) for b in baselines.values()]
    t.add_row(*total)
    return t


def _tables(ps: PeakShavingReport | None, fr: FrequencyResponseReport | None,
            baselines: dict[str, dict[str, Any]]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    if ps is not None:
        t = Table(title=f"Peak shaving ({_LABELS[ps.limit_mode]}) vs the perfect-foresight "
                        "optimum (LP, HiGHS); peaks are interval means")
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
        t.add_row("import limit (highest target)", _fmt_w(ps.import_limit_w), "")
        t.add_row("peak import, achieved", _fmt_w(ps.peak_import_w), "")
        t.add_row("peak import, achieved, instantaneous", _fmt_w(ps.peak_import_w_instant), "")
        goal = {"optimal": "≥ 98 %", "auto": "≥ 90 %"}.get(ps.limit_mode, "")
        t.add_row("reduction achieved / optimal (Σ over periods)",
                  f"{ps.reduction_achieved_pct_of_optimal:.2f} %", goal)
        t.add_row("intervals above limit (interval mean)",
                  f"{ps.intervals_above_limit} / {ps.intervals_total}", "")
        t.add_row("  of which avoidable", str(ps.intervals_above_limit_avoidable), "0")
        t.add_row("intervals above the given limit (interval mean)",
                  f"{ps.intervals_above_given_limit} / {ps.intervals_total}", "")
        t.add_row("  of which preventable", str(ps.intervals_above_given_limit_preventable), "0")
        t.add_row("intervals with an instant above limit", str(ps.intervals_with_excursion), "")
        t.add_row("largest interval-mean excess over the limit", _fmt_w(ps.max_excess_w), "")
        t.add_row("fleet SoC range", f"{ps.soc_min_pct:.1f} – {ps.soc_max_pct:.1f} %", "")
        t.add_row("battery throughput (equivalent full cycles)",
                  f"{ps.equivalent_full_cycles:.1f}", "")
        months = ps.simulated_s / (30 * 86400.0)
        t.add_row("control cycles / wall time",
                  f"{ps.control_cycles:,} / {ps.wall_s:.1f} s (LP {ps.lp_wall_s:.1f} s; "
                  f"{ps.wall_s / months:.1f} s per 30 days)", "")
        console.print(t)
        console.print(_period_table(ps, baselines))
    if fr is not None:
        source = "a seeded trace" if fr.frequency_source == "steps" else fr.frequency_source
        t = Table(title=f"Frequency response on {source}")
        t.add_column("metric")
        t.add_column("value", justify="right")
        t.add_column("target", justify="right")
        t.add_row("trace", f"{fr.simulated_s:g} s, {len(fr.events)} events", "")
        if fr.frequency_gaps:
            g = fr.frequency_gaps
            t.add_row("unknown frequency (gaps; 0 W asked)", f"{g['count']} gaps, "
                      f"{g['seconds']:g} s, longest {g['longest_s']:g} s", "")
        t.add_row("reserved power", _fmt_w(fr.reserved_power_w), "")
        t.add_row("RMS error (outside activation windows)", f"{fr.rms_error_pct:.2f} %", "≤ 2 %")
        t.add_row("RMS error (all samples)", f"{fr.rms_error_pct_all:.2f} %", "")
        t.add_row("time to full activation (max)", f"{fr.activation_time_max_s:.2f} s"
                  if fr.activation_time_s else "n/a (no steps)", "≤ 1 s")
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
        pct = ps.reduction_achieved_pct_of_optimal
        if ps.limit_mode == "optimal":
            ok &= pct >= TARGETS["reduction_achieved_pct_of_optimal_min"]
        elif ps.limit_mode == "auto":
            ok &= pct >= TARGETS["auto_reduction_pct_of_optimal_min"]
            ok &= all(r["reduction_achieved_pct_of_optimal"] is None or
                      r["reduction_achieved_pct_of_optimal"]
                      >= TARGETS["auto_reduction_pct_of_optimal_period_min"] for r in ps.periods)
        ok &= ps.intervals_above_limit_avoidable <= TARGETS["intervals_above_limit_avoidable_max"]
    if fr is not None:
        ok &= fr.rms_error_pct <= TARGETS["fr_rms_error_pct_max"]
        if fr.activation_time_s:  # a trace without steps (e.g. a recording) has none
            ok &= fr.activation_time_max_s <= TARGETS["fr_activation_time_s_max"]
    return bool(ok)


def _baseline(site: Any, load: LoadProfile, limit: LimitSpec, seed: int,
              options: PeakReplayOptions, config: Any) -> dict[str, Any]:
    """One baseline replay (run in a worker process): its summary, without the samples."""
    report = run_peak_shaving(site, load, limit_w=limit, seed=seed, options=options,
                              billing=config.billing, auto_limit=config.auto_limit)
    return report.summary()


def _baseline_names(choice: str, limit: LimitSpec) -> list[str]:
    """The baselines to run (one that is the ``--limit`` run itself is not run twice)."""
    names = list(BASELINES) if choice == "both" else [] if choice == "none" else [choice]
    return [n for n in names if BASELINES[n] != limit]


def _run(args: argparse.Namespace) -> int:

    if args.schedule is not None:
        return _run_day(args)
    limit = _parse_limit(args.limit or "optimal")
    trace_spec = _parse_trace(args.fr_trace, args.seed)
    site, cfg = _load_setup(args.config)
    if cfg.reactive_power.enabled:
        from controller.lab.replay.reactive_cli import run_reactive_command

        return run_reactive_command(args, site, cfg)
    if args.hours is not None:
        raise ReplayError("--hours: only for a config with [reactive_power] enabled",
                          source="--hours")
    if args.pv_ev or site.ev_chargers:
        return _run_site(args, site, cfg)
    args.baselines = args.baselines or "both"
    control = cfg.control
    # The config's [control] settings; the peak replay keeps its long lifetime (its
    # control steps are up to minutes apart while the load is constant).
    settings = {"soc_exponent": control.soc_exponent, "deadband_w": control.deadband_w,
                "stale_after_s": control.stale_after_s}
    load = None if args.no_peak else _select_load(args)
    trace = _make_trace(trace_spec, args.frequency_csv)

    progress = progress_bar(args.no_progress)
    ps_report: PeakShavingReport | None = None
    fr_report: FrequencyResponseReport | None = None
    baselines: dict[str, dict[str, Any]] = {}
    names = _baseline_names(args.baselines, limit) if load is not None else []
    ps_options = PeakReplayOptions(**settings)
    # The baselines run in worker processes while this one runs --limit (spawned: the
    # progress bar's thread must not be forked).
    with _workers(len(names)) as pool:
        futures = {} if load is None else {
            n: pool.submit(_baseline, site, load, BASELINES[n], args.seed, ps_options, cfg)
            for n in names}
        with progress:
            if load is not None:
                task = progress.add_task("peak shaving (simulated time)", total=1.0)

                def ps_cb(done: float, total: float) -> None:
                    progress.update(task, completed=done / total if total else 1.0)

                ps_report = run_peak_shaving(site, load, limit_w=limit, seed=args.seed,
                                             options=ps_options, progress=ps_cb,
                                             billing=cfg.billing, auto_limit=cfg.auto_limit)
            if trace is not None:
                task2 = progress.add_task("frequency response (simulated time)", total=1.0)

                def fr_cb(done: float, total: float) -> None:
                    progress.update(task2, completed=done / total if total else 1.0)

                fr_report = run_frequency_response(
                    site, trace, config=cfg.frequency_response,
                    options=FrequencyReplayOptions(
                        **settings, setpoint_lifetime_s=control.setpoint_lifetime_s),
                    progress=fr_cb)
        baselines = {n: f.result() for n, f in futures.items()}
    if ps_report is not None and limit == "optimal" and args.baselines in ("both", "optimal"):
        baselines["optimal"] = ps_report.summary()
    baselines = {n: baselines[n] for n in BASELINES if n in baselines}
    _tables(ps_report, fr_report, baselines)
    met = _targets_met(ps_report, fr_report)
    if args.summary_json is not None:
        summary: dict[str, Any] = {"site": site.source}
        if ps_report is not None:
            summary.update(ps_report.summary())
            summary["baselines"] = {
                n: {"limit": _LABELS[n], "periods": b["periods"],
                    "reduction_achieved_pct_of_optimal": b["reduction_achieved_pct_of_optimal"],
                    "intervals_above_limit_avoidable": b["intervals_above_limit_avoidable"],
                    "wall_s": b["wall_s"]}
                for n, b in baselines.items()}
        if fr_report is not None:
            summary["frequency_response"] = fr_report.summary()
        summary["targets"] = TARGETS
        summary["targets_met"] = met
        write_summary_json(args.summary_json, summary)
    if args.check and not met:
        sys.stderr.write("gridloop replay: a control-quality target was missed\n")
        return 1
    return 0


def _run_day(args: argparse.Namespace) -> int:
    """``--schedule``: the day replay (:mod:`controller.lab.replay.day_cli`)."""
    from controller.lab.replay.day_cli import run_day_command

    site, cfg = _load_setup(args.config)
    if args.days is None:
        args.days = 1.0
    return run_day_command(args, site, cfg, _select_load(args))


_NOT_SITE = (("limit", "--limit"), ("baselines", "--baselines"), ("fr_trace", "--fr-trace"),
             ("frequency_csv", "--frequency-csv"), ("no_peak", "--no-peak"))
"""The flags of the peak-shaving and frequency-response replays (not of the site replay)."""


def _run_site(args: argparse.Namespace, site: Any, cfg: Any) -> int:
    """The PV / EV site replay (:mod:`controller.lab.replay.site_cli`)."""
    from controller.lab.replay.site_cli import run_site_command

    for attr, flag in _NOT_SITE:
        if getattr(args, attr):
            raise ReplayError(f"{flag}: not used by the PV / EV site replay (a site with EV "
                              "chargers, or --pv-ev)", source=flag)
    if args.days is None:
        args.days = 7.0
    given = args.profile is not None or args.load_csv is not None
    if args.days is not None and not (math.isfinite(args.days) and args.days > 0):
        raise ReplayError(f"--days: must be a positive number of days, got {args.days:g}",
                          source="--days")
    load = _select_load(args, float(site.load.profile_w.max())) if given else None
    return run_site_command(args, site, cfg, load)


@contextlib.contextmanager
def _workers(count: int) -> Iterator[ProcessPoolExecutor]:
    """The baselines' worker processes (spawned: the progress bar's thread must not be
    forked). Left normally: waits for them. Left by an exception (Ctrl-C, SIGTERM, an
    error in this process): they are terminated at once, never left running."""
    pool = ProcessPoolExecutor(max_workers=max(1, count),
                               mp_context=multiprocessing.get_context("spawn"))
    try:
        yield pool
    except BaseException:
        for proc in list((getattr(pool, "_processes", None) or {}).values()):
            proc.terminate()
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown(wait=True)


def _interrupt(signum: int, frame: object) -> None:
    """SIGTERM ends a replay like Ctrl-C: workers stopped, one line, status 130."""
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``gridloop replay``; returns the exit status (0, 1 with --check, 2)."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _interrupt)
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
