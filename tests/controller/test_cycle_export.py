"""`ControlCycle.export_exceeded`: the cycle tells the planner when the grid is past the
export limit (measured), so no deadband holds back a raise then (`RoundPlanner.raise_now`).
"""

from __future__ import annotations

import numpy as np

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
