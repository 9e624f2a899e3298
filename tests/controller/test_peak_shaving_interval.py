"""Peak shaving of the billing-interval mean (controller.runtime.strategies._peak_shaving).

The plant: a constant-cadence loop (1 s of site time), the fleet follows the merged
target with a one-cycle delay and a first-order lag, the grid meter reads U + battery,
and the real :class:`BillingMeter` meters it, as :class:`ControlCycle` does.
"""

from __future__ import annotations

import dataclasses
import math
import zoneinfo
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from actors.power_manager import merge
from controller.runtime.billing import BillingClock, BillingMeter
from controller.runtime.strategies import (
    PeakShavingConfig,
    StrategyInputs,
    peak_shaving_wish,
    recharge_ceiling_w,
)

KW = 1_000.0
T0 = 1_780_000_200.0  # a quarter hour in UTC
CFG = PeakShavingConfig(
    import_limit_w=250 * KW,
    export_limit_w=250 * KW,
    target_soc_pct=60.0,
    recharge_power_w=80 * KW,
    recharge_margin_w=5 * KW,
)


def _run(
    load: Callable[[float], float],
    seconds: int,
    cfg: PeakShavingConfig = CFG,
    *,
    fleet_w: float = 400 * KW,
    soc: float = 60.0,
    lag: float = 0.5,
    metered: bool = True,
) -> BillingMeter:
    """Run the law against the plant for ``seconds``; return the meter (1 s cycles)."""
    meter = BillingMeter(BillingClock(900, "month", zoneinfo.ZoneInfo("UTC")))
    battery = target = 0.0
    for k in range(seconds + 1):
        t = T0 + k
        u = load(k)
        grid = u + battery
        meter.update(t, grid, u)
        inputs = StrategyInputs(
            grid_power_w=grid, battery_power_w=battery, soc_pct=soc,
            fleet_lower_w=-fleet_w, fleet_upper_w=fleet_w,
        )
        if metered:
            covered = meter.interval_covered_s
            inputs = dataclasses.replace(
                inputs, interval_s=covered + meter.remaining_s(t), interval_elapsed_s=covered,
                interval_energy_wh=meter.interval_energy_wh, billed_peak_w=meter.billed_peak_w,
            )
        wish = peak_shaving_wish(cfg, inputs)
        battery += lag * (target - battery)  # last cycle's target, reached with a lag
        target = merge([wish], -fleet_w, fleet_w).target_w
    return meter


def test_a_load_step_early_in_the_interval_is_made_up_before_it_ends() -> None:
    # 200 kW, then 340 kW from the interval's second second on: the fleet's delay and
    # lag let part of the step through (the grid is above 250 kW for a few cycles).
    # Interval-mean control makes that energy up before the interval ends: the mean
    # is at the limit, not above.
    def load(k: float) -> float:
        return 200 * KW if k < 1 else 340 * KW

    metered = _run(load, 900)
    assert metered.billed_peak_w <= CFG.import_limit_w * (1 + 1e-9)
    assert metered.billed_peak_w >= CFG.import_limit_w * 0.99  # no needless shaving
    # Shaving single samples (no meter) lets the transient through into the mean.
    single = _run(load, 900, metered=False)
    assert single.billed_peak_w > CFG.import_limit_w + 100.0


def test_headroom_early_in_the_interval_is_not_spent_above_the_limit() -> None:
    # 150 kW for 10 min, then 400 kW: the mean would allow 316 kW for the last 5 min,
    # but the grid is still held at the limit (no import above it by choice).
    def load(k: float) -> float:
        return 150 * KW if k < 600 else 400 * KW

    meter = _run(load, 899)
    assert meter.current_mean_w() < CFG.import_limit_w
    grid_last = meter.interval_energy_wh  # ~ (600·150 + 300·250) s·kW
    assert grid_last * 3600 / 899 == pytest.approx((600 * 150 + 299 * 250) / 899 * KW, rel=0.01)


@given(
    levels=st.lists(st.floats(20 * KW, 300 * KW), min_size=4, max_size=16),
    lag=st.floats(0.2, 1.0),
)
@settings(max_examples=25, deadline=None)
def test_recharging_never_raises_an_interval_mean_above_the_effective_limit(
    levels: list[float], lag: float
) -> None:
    # The SoC is below target all along (recharge wanted), the load changes every 5 min
    # between 20 and 300 kW; the fleet has the power. Every interval mean stays at or
    # under the effective limit: recharging never raises the bill above it.
    def load(k: float) -> float:
        return levels[int(k // 300) % len(levels)]

    meter = BillingMeter(BillingClock(900, "month", zoneinfo.ZoneInfo("UTC")))
    battery = target = 0.0
    charged_wh = 0.0
    for k in range(len(levels) * 300 + 1):
        t = T0 + k
        u = load(k)
        before = (meter.billed_peak_w, meter.closed)
        meter.update(t, u + battery, u)
        if meter.closed != before[1]:
            starts, _ = meter.history()
            limit = max(CFG.import_limit_w, before[0])
            assert meter.billed_peak_w <= limit * (1 + 1e-9) + 1.0, (starts[-1], limit)
        covered = meter.interval_covered_s
        inputs = StrategyInputs(
            grid_power_w=u + battery, battery_power_w=battery, soc_pct=40.0,
            fleet_lower_w=-400 * KW, fleet_upper_w=400 * KW,
            interval_s=covered + meter.remaining_s(t), interval_elapsed_s=covered,
            interval_energy_wh=meter.interval_energy_wh, billed_peak_w=meter.billed_peak_w,
        )
        wish = peak_shaving_wish(CFG, inputs)
        battery += lag * (target - battery)
        charged_wh += max(0.0, battery) / 3600
        target = merge([wish], -400 * KW, 400 * KW).target_w
    if min(levels) < CFG.import_limit_w - CFG.recharge_margin_w - 1 * KW:
        assert charged_wh > 0  # it did recharge where there was room


def test_billed_peak_raises_the_effective_limit() -> None:
    # The period already billed 300 kW: 290 kW now costs nothing more, no discharge.
    inputs = StrategyInputs(
        grid_power_w=290 * KW, battery_power_w=0.0, soc_pct=60.0,
        fleet_lower_w=-400 * KW, fleet_upper_w=400 * KW, billed_peak_w=300 * KW,
    )
    wish = peak_shaving_wish(CFG, inputs)
    assert wish.preferred_w == 0.0
    assert wish.upper_w == pytest.approx(10 * KW)


def test_near_the_end_the_catch_up_is_finite_and_spread() -> None:
    # 100 Wh above the limit's energy with 0.1 s left: the catch-up is spread over at
    # least 1 % of the interval (9 s), not 0.1 s.
    e_wh = 250 * KW * 899.9 / 3600 + 100.0
    inputs = StrategyInputs(
        grid_power_w=250 * KW, battery_power_w=0.0, soc_pct=60.0,
        fleet_lower_w=-400 * KW, fleet_upper_w=400 * KW,
        interval_s=900.0, interval_elapsed_s=899.9, interval_energy_wh=e_wh, billed_peak_w=0.0,
    )
    wish = peak_shaving_wish(CFG, inputs)
    g_max = (250 * KW * 900 - e_wh * 3600) / 9.0
    assert wish.upper_w == pytest.approx(g_max - 250 * KW)
    assert all(math.isfinite(v) for v in (wish.preferred_w, wish.lower_w, wish.upper_w))
    # A hopeless deficit never asks to export beyond the export limit.
    inputs = dataclasses.replace(inputs, interval_energy_wh=e_wh * 10)
    wish = peak_shaving_wish(CFG, inputs)
    assert wish.upper_w == pytest.approx(-CFG.export_limit_w - 250 * KW)
    assert wish.lower_w <= wish.upper_w


@given(
    u=st.floats(-5e5, 5e5),
    hard=st.floats(0.0, 6e5),
    higher=st.floats(-2e5, 2e5),
    elapsed=st.floats(0.0, 900.0),
    energy=st.floats(-1e5, 1e5),
    soc=st.floats(0.0, 100.0),
    billed=st.floats(0.0, 5e5) | st.just(math.nan),
)
def test_hard_limit_is_respected_and_the_wish_is_valid(
    u: float, hard: float, higher: float, elapsed: float, energy: float, soc: float,
    billed: float,
) -> None:
    cfg = dataclasses.replace(CFG, hard_import_limit_w=hard)
    inputs = StrategyInputs(
        grid_power_w=u, battery_power_w=0.0, soc_pct=soc, higher_priority_w=higher,
        fleet_lower_w=-400 * KW, fleet_upper_w=400 * KW, interval_s=900.0,
        interval_elapsed_s=elapsed, interval_energy_wh=energy, billed_peak_w=billed,
    )
    wish = peak_shaving_wish(cfg, inputs)
    assert all(math.isfinite(v) for v in (wish.preferred_w, wish.lower_w, wish.upper_w))
    assert wish.lower_w <= wish.preferred_w <= wish.upper_w
    # Peak shaving never asks for more import than the effective limit (or the
    # interval's catch-up) allows ...
    limit = max(cfg.import_limit_w, billed) if math.isfinite(billed) else cfg.import_limit_w
    assert u + wish.preferred_w <= max(limit, -cfg.export_limit_w) + 1e-6
    # ... nor, with what higher priorities charge, above the hard limit, unless the
    # export limit leaves no choice.
    if -cfg.export_limit_w <= hard - max(0.0, higher):
        assert u + wish.preferred_w + max(0.0, higher) <= hard + 1e-6


def test_auto_recharges_only_under_what_the_load_alone_has_billed() -> None:
    auto = dataclasses.replace(CFG, limit_mode="auto", recharge_margin_w=0.0)
    base = StrategyInputs(
        grid_power_w=100 * KW, battery_power_w=0.0, soc_pct=40.0,
        fleet_lower_w=-400 * KW, fleet_upper_w=400 * KW, billed_peak_w=120 * KW,
        billed_peak_w_uncontrolled=150 * KW, planned_limit_w=300 * KW,
    )
    # A cold plan (less than a day of history): recharge up to the billed peaks only.
    assert recharge_ceiling_w(auto, base) == 150 * KW
    assert peak_shaving_wish(auto, base).preferred_w == pytest.approx(50 * KW)
    # A warm plan expects the period to reach its limit: recharging may go up to it.
    warm = dataclasses.replace(base, plan_warm=True)
    assert recharge_ceiling_w(auto, warm) == 300 * KW
    assert peak_shaving_wish(auto, warm).preferred_w == pytest.approx(CFG.recharge_power_w)
    # A fixed limit is the operator's ceiling; no plan yet in auto: nothing is shaved.
    assert recharge_ceiling_w(CFG, base) == math.inf
    cold = dataclasses.replace(base, grid_power_w=400 * KW, planned_limit_w=math.inf)
    assert peak_shaving_wish(auto, cold).preferred_w == 0.0
