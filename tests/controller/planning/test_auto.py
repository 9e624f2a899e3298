"""controller.runtime.planning.AutoLimit: cold start, the billed-peak floor, a perfect forecast,
and a synthetic month in closed loop."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from controller.errors import PlanningError
from controller.runtime.planning import (
    AutoLimit,
    AutoLimitConfig,
    FleetModel,
    optimal_peak,
    simulate_greedy,
)

Q = 900.0
DAY = 96
T0 = 1_700_000_000.0 - 1_700_000_000.0 % Q
FLEET = FleetModel(charge_max_w=150e3, discharge_max_w=150e3, energy_min_wh=40e3,
                   energy_max_wh=360e3, energy_init_wh=200e3, charge_efficiency=0.95,
                   discharge_efficiency=0.95)


def weekly(n: int, seed: int = 0, noise_w: float = 0.0) -> np.ndarray:
    """Workdays 06:00-18:00 at 300 kW with a 2-h 380 kW shoulder, 80 kW otherwise; weekends
    at 80 kW."""
    k = np.arange(n)
    slot, day = k % DAY, (k // DAY) % 7
    work = (day < 5) & (slot >= 24) & (slot < 72)
    load = np.where(work, 300e3, 80e3)
    load = np.where(work & (slot >= 40) & (slot < 48), 380e3, load)
    return load + np.random.default_rng(seed).normal(0.0, noise_w, n)


def test_cold_start_without_anything_is_no_plan() -> None:
    plan = AutoLimit(AutoLimitConfig(), FLEET).plan(T0, [], [], Q, 200e3, 0.0)
    assert plan.cold
    assert plan.limit_w == math.inf


def test_cold_start_keeps_the_load_seen_so_far() -> None:
    # One interval seen (and the current one): a flat forecast, nothing to shave below it.
    auto = AutoLimit(AutoLimitConfig(), FLEET)
    plan = auto.plan(T0 + Q, [150e3], [T0], Q, 200e3, 0.0, load_now_w=170e3)
    assert not plan.cold
    assert plan.limit_w == pytest.approx(170e3, rel=0.05)


@pytest.mark.parametrize("billed", [0.0, 250e3, 390e3, math.nan, -5.0])
def test_never_below_the_billed_peak(billed: float) -> None:
    s = weekly(5 * 7 * DAY, noise_w=10e3)
    n = 4 * 7 * DAY + 30
    plan = AutoLimit(AutoLimitConfig(margin_pct=3.0), FLEET).plan(
        T0 + Q * n, s[:n], T0 + Q * np.arange(n), Q, 150e3, billed)
    floor = billed if math.isfinite(billed) and billed > 0 else 0.0
    assert plan.limit_w >= floor
    assert plan.limit_w >= plan.planned_peak_w * 1.03 - 1e-6 or plan.limit_w == floor


def test_with_a_perfect_forecast_the_limit_is_the_optimum() -> None:
    # A weekly-periodic history makes naive_week exact: the plan is the LP optimum of the
    # coming horizon from the energy given (no margin, no persistence, no end energy).
    s = weekly(6 * 7 * DAY)
    n = 4 * 7 * DAY  # Monday 00:00
    cfg = AutoLimitConfig(forecaster="naive_week", margin_pct=0.0, persist_h=0.0,
                          end_energy_pct=0.0, horizon_h=48.0)
    plan = AutoLimit(cfg, FLEET).plan(T0 + Q * n, s[:n], T0 + Q * np.arange(n), Q, 300e3, 0.0)
    np.testing.assert_allclose(plan.forecast_w, s[n:n + 2 * DAY])
    ref = optimal_peak(s[n:n + 2 * DAY], Q, dataclasses.replace(FLEET, energy_init_wh=300e3))
    assert plan.used_lp
    assert plan.limit_w == pytest.approx(ref.peak_import_w, abs=1e-2)
    # The pre-charge target holds that limit from the next boundary on.
    assert FLEET.energy_min_wh <= plan.energy_target_wh <= FLEET.energy_max_wh


def test_bad_config_names_the_field() -> None:
    with pytest.raises(PlanningError, match=r"peak_shaving\.auto_horizon_h = 0\.5"):
        AutoLimit(AutoLimitConfig(horizon_h=0.5), FLEET)
    with pytest.raises(PlanningError, match=r"peak_shaving\.auto_forecaster = 'x'"):
        AutoLimit(AutoLimitConfig(forecaster="x"), FLEET)


def closed_loop_share(load: np.ndarray, start: int, auto: AutoLimit,
                      recharge_to_wh: float = FLEET.energy_max_wh) -> float:
    """Run ``load[start:]`` as one billing period (history before it), aggregate greedy battery
    that recharges toward ``max(recharge_to_wh, the plan's target)``, as the production law
    does with its target SoC."""
    f, h = FLEET, Q / 3600.0
    e, billed, grid = f.energy_max_wh, 0.0, []
    starts = T0 + Q * np.arange(load.size)
    for k in range(start, load.size):
        plan = auto.plan(float(starts[k]), load[:k], starts[:k], Q, e, billed)
        lim, lv = max(plan.limit_w, billed), float(load[k])
        if lv > lim:
            p = -min(lv - lim, f.discharge_max_w,
                     max(e - f.energy_min_wh, 0.0) * f.discharge_efficiency / h)
            e += p / f.discharge_efficiency * h
        else:
            to = min(max(recharge_to_wh, plan.energy_target_wh), f.energy_max_wh)
            p = min(lim - lv, f.charge_max_w, max(to - e, 0.0) / f.charge_efficiency / h)
            e += p * f.charge_efficiency * h
        grid.append(lv + p)
        billed = max(billed, lv + p)
    month = load[start:]
    opt = optimal_peak(month, Q, dataclasses.replace(FLEET, energy_init_wh=f.energy_max_wh))
    return (month.max() - max(grid)) / (month.max() - opt.peak_import_w)


def test_a_synthetic_month_in_closed_loop() -> None:
    # Three weeks of history, then four weeks with 5 kW noise: the default planner gets at
    # least 90 % of the perfect-foresight peak reduction.
    load = weekly(7 * 7 * DAY, seed=4, noise_w=5e3)
    share = closed_loop_share(load, 3 * 7 * DAY, AutoLimit(AutoLimitConfig(), FLEET))
    assert share >= 0.90


def test_precharge_full_targets_the_top_of_the_window() -> None:
    s = weekly(5 * 7 * DAY, noise_w=5e3)
    n = 4 * 7 * DAY + 10  # Monday 02:30, before the plateau
    args = (T0 + Q * n, s[:n], T0 + Q * np.arange(n), Q, 150e3, 0.0)
    least = AutoLimit(AutoLimitConfig(precharge_full=False), FLEET).plan(*args)
    full = AutoLimit(AutoLimitConfig(precharge_full=True), FLEET).plan(*args)
    assert least.energy_target_wh < FLEET.energy_max_wh - 1e3
    assert full.energy_target_wh == FLEET.energy_max_wh
    assert full.limit_w == least.limit_w


def test_a_reserve_is_planned_as_absent_and_precharged_on_top() -> None:
    s = weekly(5 * 7 * DAY, noise_w=5e3)
    n = 4 * 7 * DAY + 10
    args = (T0 + Q * n, s[:n], T0 + Q * np.arange(n), Q, 300e3, 0.0)
    free = AutoLimit(AutoLimitConfig(), FLEET).plan(*args)
    kept = AutoLimit(AutoLimitConfig(reserve_pct=25.0), FLEET).plan(*args)
    reserve = 0.25 * (FLEET.energy_max_wh - FLEET.energy_min_wh)
    assert kept.limit_w > free.limit_w
    np.testing.assert_allclose(kept.energy_required_wh.min(), FLEET.energy_min_wh + reserve)


def test_robust_mode_holds_every_past_week() -> None:
    # Four past weeks whose plateaus differ: the limit is the highest of the three
    # scenarios' lowest limits, and the greedy battery holds it in each of them.
    n = 4 * 7 * DAY
    s = np.concatenate([weekly(7 * DAY, seed=w, noise_w=8e3) + 12e3 * w for w in range(4)])
    cfg = AutoLimitConfig(scenario_weeks=3, persist_h=0.0, horizon_h=24.0)
    plan = AutoLimit(cfg, FLEET).plan(T0 + Q * n, s, T0 + Q * np.arange(n), Q, 300e3, 0.0)
    start = dataclasses.replace(FLEET, energy_init_wh=300e3)
    lows = []
    for w in (1, 2, 3):
        row = s[n - w * 7 * DAY:n - w * 7 * DAY + DAY]
        lows.append(optimal_peak(row, Q, start).peak_import_w)
        out, _ = simulate_greedy(row, Q, start, plan.limit_w)
        assert out.max() <= plan.limit_w + 1e-6
    assert plan.limit_w == pytest.approx(max(lows), abs=20.0)
    assert not plan.used_lp


@pytest.mark.parametrize("signed", [False, True])
def test_persistence_lifts_and_with_signed_also_lowers(signed: bool) -> None:
    # The last hour ran 40 kW under last week's: only the signed persistence follows it down.
    n = 3 * 7 * DAY + 40  # Monday 10:00, on the plateau
    s = weekly(n)
    s[n - 4:] -= 40e3
    cfg = AutoLimitConfig(forecaster="naive_week", persist_h=2.0, persist_signed=signed)
    plan = AutoLimit(cfg, FLEET).plan(T0 + Q * n, s, T0 + Q * np.arange(n), Q, 300e3, 0.0)
    week = weekly(n + 16)[n:n + 16]
    shift = -40e3 if signed else 0.0
    np.testing.assert_allclose(plan.forecast_w[:8], week[:8] + shift)
    np.testing.assert_allclose(plan.forecast_w[8:16], week[8:16])


def test_the_default_persistence_lasts_two_hours() -> None:
    # The backtest's choice (README, auto limit planner): a load that ran 40 kW above its
    # forecast over the last hour lifts the next 2 h by as much, not the 3 h of before
    # (measured: 2 h beats 3 h over the year on all three backtest profiles).
    n = 3 * 7 * DAY + 40  # Monday 10:00, on the plateau
    s = weekly(n)
    s[n - 4:] += 40e3
    plan = AutoLimit(AutoLimitConfig(forecaster="naive_week"), FLEET).plan(
        T0 + Q * n, s, T0 + Q * np.arange(n), Q, 300e3, 0.0)
    week = weekly(n + 16)[n:n + 16]
    np.testing.assert_allclose(plan.forecast_w[:8], week[:8] + 40e3)
    np.testing.assert_allclose(plan.forecast_w[8:16], week[8:16])


@pytest.mark.parametrize("full", [True, False], ids=["default", "least_energy"])
def test_a_synthetic_month_under_the_production_recharge_target(full: bool) -> None:
    # The law recharges only toward max(target SoC, the plan's target): with a 60 % target
    # (216 kWh of this 360 kWh fleet) the plan's pre-charge decides how much energy the
    # plateaus find. With 15 kW of noise the forecast is off every day: the top of the
    # window (the default) keeps ≥ 85 % of the optimal reduction (measured 88 %), the least
    # energy that holds the forecast does not (80 %).
    load = weekly(7 * 7 * DAY, seed=4, noise_w=15e3)
    cfg = AutoLimitConfig() if full else AutoLimitConfig(precharge_full=False)
    share = closed_loop_share(load, 3 * 7 * DAY, AutoLimit(cfg, FLEET), recharge_to_wh=216e3)
    assert (share >= 0.85) == full, share


def test_day_scenarios_mode_takes_the_chosen_quantile_of_the_scenarios() -> None:
    # Three weeks of UTC workdays whose plateaus differ (0.8..1.2 of 300 kW); at Tuesday
    # 06:00 the scenarios are the last five workdays (today has no plateau seen yet, so
    # their level is theirs). q = 1 holds every one of them; q = 0 is the mildest one's.
    mon = 1_525_651_200.0  # 2018-05-07 00:00 UTC, a Monday
    k = np.arange(16 * DAY + 24)
    day, slot = k // DAY, k % DAY
    level = 0.8 + 0.4 * np.random.default_rng(5).random(day.max() + 1)
    load = np.where((day % 7 < 5) & (slot >= 28) & (slot < 64), 300e3 * level[day], 80e3)
    n = k.size
    args = (mon + Q * n, load, mon + Q * k, Q, 300e3, 0.0)
    plans = {q: AutoLimit(AutoLimitConfig(forecaster="shape_level", scenario_days=5,
                                          day_classes="workday",
                                          scenario_q=q, horizon_h=18.0), FLEET).plan(*args)
             for q in (0.0, 0.5, 1.0)}
    assert plans[0.0].limit_w < plans[0.5].limit_w < plans[1.0].limit_w
    workdays = [d for d in range(16) if d % 7 < 5][-5:]
    start = dataclasses.replace(FLEET, energy_init_wh=300e3)
    lows = []
    for d in workdays:
        row = load[d * DAY + 24:d * DAY + 24 + 72]  # 06:00 + 18 h of that day
        lows.append(optimal_peak(row, Q, start).peak_import_w)
        out, _ = simulate_greedy(row, Q, start, plans[1.0].limit_w)
        assert out.max() <= plans[1.0].limit_w + 1e-6
    assert plans[1.0].limit_w == pytest.approx(max(lows), abs=20.0)
    assert plans[0.0].limit_w == pytest.approx(min(lows), abs=20.0)


def test_the_control_cycle_plans_in_the_billing_zone(monkeypatch: pytest.MonkeyPatch) -> None:
    # shape_level's local days are the billing clock's: the cycle hands its zone to the plan.
    from zoneinfo import ZoneInfo

    from actors import SiteMeasurements
    from controller.runtime.billing import BillingClock, BillingMeter
    from controller.runtime.cycle import ControlCycle

    seen: list[object] = []

    def plan(self: AutoLimit, *args: object, **kw: object) -> object:
        seen.append(kw.get("zone"))
        raise PlanningError("recorded", source="test")

    monkeypatch.setattr(AutoLimit, "plan", plan)
    zone = ZoneInfo("Europe/Berlin")
    meter = BillingMeter(BillingClock(900, "month", zone))
    cycle = ControlCycle([], meter, AutoLimitConfig())
    m = SiteMeasurements(
        grid_power_w=100e3, grid_frequency_hz=50.0, grid_sample_time_ns=0,
        battery_power_w=0.0, pv_power_w=0.0, load_power_w=100e3,
        group_soc_pct=np.array([50.0]), group_capacity_wh=np.array([500e3]),
        group_power_w=np.array([0.0]), group_healthy=np.array([True]), soc_pct=50.0,
        soc_lower_pct=10.0, soc_upper_pct=90.0, fleet_lower_w=-200e3, fleet_upper_w=200e3)
    meter.update(T0, 100e3, 100e3)
    assert cycle._replan(m, T0, meter) is None
    assert seen == [zone]
