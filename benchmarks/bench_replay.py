"""Replay benchmarks: a month of peak shaving, the optimum LP, a frequency-response trace,
a day with a schedule (FR in windows and peak shaving together).

Run: ``pytest benchmarks/bench_replay.py`` (a month per round, two rounds, for
``--limit optimal`` and ``--limit auto``; March with January and February as history).
Each peak-shaving run attaches ``wall_s_per_month`` (wall seconds per 30 simulated
days; the issue's target is ≤ 60 s).
With ``--benchmark-disable`` (CI smoke) each case runs once on a short
selection so the file stays well under 20 s. The quality numbers of each
run are attached as ``extra_info`` (visible with ``--benchmark-json``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from controller.lab.replay import (
    aggregate_model,
    fleet_models,
    make_frequency_trace,
    run_frequency_response,
    run_peak_shaving,
)
from controller.lab.replay.day import DayReplayOptions, run_day
from controller.lab.replay.frequency import frequency_series
from controller.lab.replay.loader import BUNDLED_LOAD_CSV, load_profile
from controller.lab.replay.optimum import optimal_peak
from controller.lab.replay.periods import DEFAULT_ZONE
from controller.runtime.billing import billing_zone
from controller.runtime.schedule_file import load_schedule
from simulator.config import SiteConfig, load_site


@pytest.fixture(scope="module")
def site() -> SiteConfig:
    return load_site()


def _days(benchmark: Any, full: float, smoke: float) -> float:
    return smoke if getattr(benchmark, "disabled", False) else full


@pytest.mark.parametrize("limit", ["optimal", "auto"])
def test_month_peak_shaving_replay(benchmark: Any, site: SiteConfig, limit: str) -> None:
    days = _days(benchmark, 30.0, 1.0)
    prof = load_profile(BUNDLED_LOAD_CSV, peak_w=400_000.0, start="2018-03-01", days=days)
    report = benchmark.pedantic(run_peak_shaving, args=(site, prof),
                                kwargs={"limit_w": limit}, rounds=2, iterations=1,
                                warmup_rounds=0)
    benchmark.extra_info.update({
        "days": days,
        "control_cycles": report.control_cycles,
        "wall_s_per_month": report.wall_s / (report.simulated_s / (30 * 86400.0)),
        "reduction_achieved_pct_of_optimal": report.reduction_achieved_pct_of_optimal,
        "intervals_above_limit_avoidable": report.intervals_above_limit_avoidable,
    })
    if limit == "optimal":
        assert report.reduction_achieved_pct_of_optimal >= 98.0
    assert report.intervals_above_limit_avoidable == 0


@pytest.mark.parametrize("model", ["aggregate", "groups"])
def test_month_optimum_lp(benchmark: Any, site: SiteConfig, model: str) -> None:
    prof = load_profile(BUNDLED_LOAD_CSV, peak_w=400_000.0, days=_days(benchmark, 30.0, 2.0))
    models = fleet_models(site)
    fleet = aggregate_model(models) if model == "aggregate" else models
    res = benchmark(optimal_peak, prof.power_w, prof.step_s, fleet)
    assert res.success
    assert res.peak_import_w < float(np.max(prof.power_w))


def test_frequency_response_replay(benchmark: Any, site: SiteConfig) -> None:
    duration = _days(benchmark, 900.0, 200.0)
    trace = make_frequency_trace(duration, seed=0, steps=1 if duration < 300 else 4,
                                 ramps=0 if duration < 300 else 1)
    report = benchmark.pedantic(run_frequency_response, args=(site, trace), rounds=2,
                                iterations=1, warmup_rounds=0)
    benchmark.extra_info.update({
        "simulated_s": report.simulated_s,
        "rms_error_pct": report.rms_error_pct,
        "activation_time_max_s": report.activation_time_max_s,
    })
    assert report.rms_error_pct <= 2.0
    assert report.activation_time_max_s <= 1.0


def test_day_replay_with_schedule(benchmark: Any, site: SiteConfig) -> None:
    """``gridloop replay --schedule examples/fcr_day.toml --days 1`` (synthetic frequency):
    attaches the wall time per simulated day (the issue's target is <= 60 s) and the
    figures of the day."""
    days = _days(benchmark, 1.0, 1.0 / 24.0)
    prof = load_profile(BUNDLED_LOAD_CSV, peak_w=400_000.0, start="2018-03-01", days=days)
    example = Path(__file__).resolve().parents[1] / "examples" / "fcr_day.toml"
    schedule = load_schedule(example, billing_zone(None, DEFAULT_ZONE))
    series = frequency_series(None, seed=0, duration_s=days * 86400.0)
    report = benchmark.pedantic(run_day, args=(site, prof, schedule, series),
                                kwargs={"options": DayReplayOptions(activation_segment_s=0.0)},
                                rounds=1, iterations=1, warmup_rounds=0)
    benchmark.extra_info.update({
        "days": days,
        "control_cycles": report.control_cycles,
        "wall_s_per_day": report.wall_s / days,
        "fr_availability_pct": report.fr_availability_pct,
        "fr_rms_error_pct": report.fr_rms_error_pct,
        "soc_in_band_at_window_start_pct": report.soc_in_band_at_window_start_pct,
        "fr_energy_outside_windows_wh": report.fr_energy_outside_windows_wh,
    })
    assert report.fr_energy_outside_windows_wh == 0.0
