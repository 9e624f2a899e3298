"""The replay over billing periods: the site's time reaches the meter, history, period rows."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from controller.lab.replay import (
    BUNDLED_LOAD_CSV,
    PeakShavingReport,
    load_profile,
    run_peak_shaving,
)
from controller.lab.replay.cli import main
from controller.lab.replay.periods import billing_clock, billing_periods
from controller.runtime.billing import BillingConfig
from controller.runtime.planning import AutoLimit
from simulator.config import SiteConfig, load_site


@pytest.fixture(scope="module")
def site() -> SiteConfig:
    return load_site()


@pytest.fixture(scope="module")
def across_months(site: SiteConfig) -> PeakShavingReport:
    """Feb 27 - Mar 2, 2018 at the optimum: two billing periods (February partly)."""
    prof = load_profile(BUNDLED_LOAD_CSV, peak_w=400_000.0, start="2018-02-27", days=4)
    return run_peak_shaving(site, prof, limit_w="optimal")


def test_the_site_time_reaches_the_billing_meter(across_months: PeakShavingReport) -> None:
    r = across_months
    # At each interval's first cycle the meter's billed peak is the highest interval
    # mean of the period so far, as the physics' trajectory gives it (the meter holds the
    # samples of the control cycles, the report integrates the physics' trajectory: they
    # agree within the tolerance of "above the limit").
    feb = r.periods[0]["intervals"]
    for a, b in ((0, feb), (feb, r.intervals_total)):
        means = r.interval_mean_w[a:b]
        billed = r.interval_billed_peak_w[a + 1:b]
        np.testing.assert_allclose(billed, np.maximum.accumulate(means)[:-1], rtol=0,
                                   atol=r.above_limit_tolerance_w)
        assert r.interval_billed_peak_w[a] == 0.0  # a new period (or the replay's start)
    # The effective limit is max(limit, billed peak), as the law holds it.
    np.testing.assert_allclose(
        r.interval_limit_w[feb:],
        np.maximum(r.periods[1]["limit_w"], r.interval_billed_peak_w[feb:]))


def test_period_rows_add_up(across_months: PeakShavingReport) -> None:
    r = across_months
    assert [p["period"] for p in r.periods] == ["2018-02", "2018-03"]
    assert [p["whole"] for p in r.periods] == [False, True]
    assert [p["intervals"] for p in r.periods] == [2 * 96, 2 * 96]
    tol = r.above_limit_tolerance_w
    for p in r.periods:
        assert p["peak_import_w_optimal"] <= p["peak_import_w_uncontrolled"]
        assert p["peak_import_w"] >= p["peak_import_w_optimal"] - tol
        assert p["reduction_achieved_pct_of_optimal"] >= 98.0
        assert p["intervals_above_limit_avoidable"] == 0  # --limit optimal
        assert p["limit_w"] == p["peak_import_w_optimal"]
        assert p["equivalent_full_cycles"] > 0
    assert sum(p["intervals"] for p in r.periods) == r.intervals_total
    assert r.reduction_optimal_w == pytest.approx(sum(p["reduction_optimal_w"] for p in r.periods))
    assert r.reduction_achieved_pct_of_optimal == pytest.approx(
        100 * sum(p["reduction_achieved_w"] for p in r.periods) / r.reduction_optimal_w)
    assert r.peak_import_w_optimal == max(p["peak_import_w_optimal"] for p in r.periods)
    # The SoC carries over: March starts where February ended.
    assert r.periods[1]["soc_start_pct"] != r.periods[0]["soc_start_pct"]


def test_billing_periods_are_local_calendar_months() -> None:
    clock = billing_clock(BillingConfig())
    start = 1_519_772_400.0  # 2018-02-28 00:00 +01:00
    periods = billing_periods(clock, start, 900.0, 96 * 2)
    assert [(p.key, p.first, p.end, p.whole) for p in periods] == [
        ("2018-02", 0, 96, False), ("2018-03", 96, 192, True)]


def test_history_before_the_start_makes_the_plan_warm(site: SiteConfig) -> None:
    cold = load_profile(BUNDLED_LOAD_CSV, peak_w=400_000.0, days=1)
    warm = load_profile(BUNDLED_LOAD_CSV, peak_w=400_000.0, start="2018-02-01", days=1)
    r_cold = run_peak_shaving(site, cold, limit_w="auto")
    r_warm = run_peak_shaving(site, warm, limit_w="auto")
    assert r_cold.load["history_days"] == 0
    assert r_warm.load["history_days"] == 31
    # From the first row the planner has nothing: no plan at the first interval (inf),
    # then the highest load seen so far (as metered: within 0.1 %).
    assert r_cold.interval_planned_limit_w[0] == math.inf
    seen = np.maximum.accumulate(cold.power_w)
    assert np.all(r_cold.interval_planned_limit_w[1:] >= seen[:-1] * (1 - 1e-3))
    # With January as history it plans from the first interval, below the day's peak.
    planned = r_warm.interval_planned_limit_w
    assert np.all(np.isfinite(planned))
    assert planned[0] < warm.power_w.max()
    assert r_warm.limit_mode == "auto"


def test_a_limit_above_the_load_shaves_nothing(tmp_path: Path) -> None:
    out = tmp_path / "s.json"
    rc = main(["--days", "1", "--limit", "1e9", "--baselines", "none", "--fr-trace", "none",
               "--no-progress", "--summary-json", str(out), "--check"])
    assert rc == 0
    data = json.loads(out.read_text())
    assert data["limit_mode"] == "fixed"
    assert data["import_limit_w"] == 1e9
    assert data["peak_import_w"] >= data["peak_import_w_uncontrolled"] - 1.0
    assert data["reduction_achieved_w"] <= 1.0
    assert data["intervals_above_limit"] == 0
    assert data["baselines"] == {}
    assert [p["period"] for p in data["periods"]] == ["2018-03"]


def test_baselines_in_the_same_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "s.json"
    rc = main(["--start", "2018-03-01", "--days", "1", "--limit", "auto", "--fr-trace", "none",
               "--no-progress", "--summary-json", str(out)])
    assert rc == 0
    data = json.loads(out.read_text())
    assert data["limit_mode"] == "auto"
    b = data["baselines"]
    assert list(b) == ["previous", "optimal"]
    # February is history: the previous period's optimum is known from it.
    assert b["previous"]["periods"][0]["note"] == ""
    assert math.isfinite(b["previous"]["periods"][0]["limit_w"])
    assert b["optimal"]["periods"][0]["limit_w"] == b["optimal"]["periods"][0][
        "peak_import_w_optimal"]
    assert b["optimal"]["reduction_achieved_pct_of_optimal"] >= 98.0
    assert "Per billing period" in capsys.readouterr().out


def test_the_previous_baseline_without_history_says_so(site: SiteConfig) -> None:
    prof = load_profile(BUNDLED_LOAD_CSV, peak_w=400_000.0, days=1)
    r = run_peak_shaving(site, prof, limit_w="previous")
    assert r.periods[0]["note"] == "no previous period: batteries idle"
    assert r.periods[0]["reduction_achieved_pct_of_optimal"] is None
    assert r.peak_import_w == pytest.approx(r.peak_import_w_uncontrolled, rel=1e-3)


def test_a_failing_planner_never_stops_the_control_loop(
    site: SiteConfig, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("planner bug (test)")

    monkeypatch.setattr(AutoLimit, "plan", broken)
    prof = load_profile(BUNDLED_LOAD_CSV, peak_w=400_000.0, start="2018-02-01", days=1)
    r = run_peak_shaving(site, prof, limit_w="auto")  # would raise if the bug escaped
    assert r.intervals_total == 96
    assert "auto limit: planning failed" in caplog.text
    # No plan: nothing shaved beyond the billed peak, the billed peak never raised.
    assert r.peak_import_w <= r.peak_import_w_uncontrolled + r.above_limit_tolerance_w
