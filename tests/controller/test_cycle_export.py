"""`ControlCycle.export_exceeded`: the cycle tells the planner when the grid is past the
export limit (measured), so no deadband holds back a raise then (`RoundPlanner.raise_now`).
"""

from __future__ import annotations

import numpy as np
import pytest

from actors import SiteMeasurements
from controller.runtime.cycle import ControlCycle
from controller.runtime.strategies import PeakShaving, PeakShavingConfig

KW = 1_000.0


def _m(grid_w: float, battery_w: float = 40 * KW) -> SiteMeasurements:
    return SiteMeasurements(
        grid_power_w=grid_w, grid_frequency_hz=50.0, grid_sample_time_ns=1,
        battery_power_w=battery_w, pv_power_w=-100 * KW, load_power_w=60 * KW,
        group_soc_pct=np.array([50.0]), group_capacity_wh=np.array([200 * KW]),
        group_power_w=np.array([battery_w]), group_healthy=np.array([True]),
        soc_pct=50.0, soc_lower_pct=10.0, soc_upper_pct=90.0,
        fleet_lower_w=-100 * KW, fleet_upper_w=100 * KW,
    )


def test_export_exceeded_follows_the_measured_grid_against_the_export_limit() -> None:
    cfg = PeakShavingConfig(import_limit_w=120 * KW, export_limit_w=1 * KW,
                            export_margin_w=300.0, interval_s=0.0)
    cycle = ControlCycle([PeakShaving(cfg)])
    cycle.step(_m(-1_050.0), 0.0)
    assert cycle.export_exceeded
    cycle.step(_m(-950.0), 0.2)  # inside the limit (if not inside the margin): no hurry
    assert not cycle.export_exceeded
    no_limit = ControlCycle([])  # no peak shaving: no export limit
    no_limit.step(_m(-50 * KW), 0.0)
    assert not no_limit.export_exceeded


def _ramp_u(t: float) -> float:
    """Uncontrolled power: −20 kW, falling 3 kW/s from t = 2 s to t = 10 s (a load drop)."""
    return -20 * KW - 3 * KW * min(max(t - 2.0, 0.0), 8.0)


def _longest_export_s(lead_s: float) -> tuple[float, list[float]]:
    """Closed loop on the ramp with peak shaving's ``export_lead_s = lead_s``: the fleet
    takes each target 1.0 s (5 cycles) late; returns the longest stretch with the grid
    past the zero-export limit (s) and the grid power of each cycle."""
    cfg = PeakShavingConfig(import_limit_w=120 * KW, export_limit_w=0.0, export_margin_w=300.0,
                            target_soc_pct=0.0, export_lead_s=lead_s, interval_s=0.0)
    cycle = ControlCycle([PeakShaving(cfg)])
    dt, delay = 0.2, 5
    targets = [0.0] * delay
    grid, longest, run = [], 0.0, 0.0
    for k in range(80):
        t = k * dt
        battery = targets[-delay]
        g = _ramp_u(t) + battery
        grid.append(g)
        run = run + dt if g < -100.0 else 0.0  # beyond the replay's 100-W tolerance
        longest = max(longest, run)
        targets.append(cycle.step(_m(g, battery), t))
    return longest, grid


def test_export_bound_leads_a_falling_ramp() -> None:
    # The fleet follows 1.0 s late (a 200-ms cycle plus a 0.8-s response delay). Without
    # the lead the grid sits at 0.3 kW − 3 kW/s × 1.0 s = −2.7 kW for the whole 8-s ramp.
    off, grid_off = _longest_export_s(0.0)
    assert off >= 8.0
    assert grid_off[30] == pytest.approx(-2.7 * KW, abs=1.0)  # t = 6 s, mid-ramp
    # With export_lead_s = 1.0 the bound follows U one second ahead: past the limit no
    # longer than the delay plus one cycle (the ramp's start cannot be foreseen, and its
    # slope is known after two falling samples), then at the aim (+0.3 kW) throughout.
    on, grid_on = _longest_export_s(1.0)
    assert on <= 1.0 + 0.2 + 1e-9
    assert all(g == pytest.approx(300.0, abs=1.0) for g in grid_on[18:50])  # t = 3.6-10 s


def test_export_lead_only_tightens_and_the_bound_is_the_predicted_u() -> None:
    cfg = PeakShavingConfig(import_limit_w=120 * KW, export_limit_w=0.0, export_margin_w=300.0,
                            target_soc_pct=0.0, export_lead_s=1.0, interval_s=0.0)
    falling = ControlCycle([PeakShaving(cfg)])
    for k in range(6):  # U falls 3 kW/s: −20, −20.6, …, −23 kW over 1 s
        falling.step(_m(-20 * KW - 600.0 * k, 0.0), 0.2 * k)
    # The bound is for U one second on (−26 kW), not U now (−23 kW).
    assert falling.wishes["peak_shaving"].lower_w == pytest.approx(26 * KW + 300.0)
    rising = ControlCycle([PeakShaving(cfg)])
    for k in range(6):  # U rises: the bound stays at U now (never loosened)
        rising.step(_m(-20 * KW + 600.0 * k, 0.0), 0.2 * k)
    assert rising.wishes["peak_shaving"].lower_w == pytest.approx(17 * KW + 300.0)
    step = ControlCycle([PeakShaving(cfg)])
    for k in range(6):  # one 10-kW step (a car leaving) is answered, not extrapolated
        step.step(_m(-20 * KW - (10 * KW if k >= 4 else 0.0), 0.0), 0.2 * k)
    assert step.wishes["peak_shaving"].lower_w == pytest.approx(30 * KW + 300.0)
