"""controller.runtime.planning: the peak LP's floor and end energy, the backward pre-charge
energy."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from controller.errors import PlanningError
from controller.runtime.planning import (
    FleetModel,
    optimal_peak,
    required_energy,
    simulate_greedy,
)

Q = 900.0


def fleet(init: float = 300e3) -> FleetModel:
    return FleetModel(charge_max_w=100e3, discharge_max_w=150e3, energy_min_wh=50e3,
                      energy_max_wh=450e3, energy_init_wh=init, charge_efficiency=0.95,
                      discharge_efficiency=0.95)


def load(seed: int, n: int = 192) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    return 200e3 + 80e3 * np.sin(2 * np.pi * t / 96) + rng.normal(0, 20e3, n)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), floor=st.floats(0.0, 400e3))
def test_a_floor_is_never_undercut(seed: int, floor: float) -> None:
    g = load(seed, 96)
    free = optimal_peak(g, Q, fleet())
    res = optimal_peak(g, Q, fleet(), peak_floor_w=floor)
    assert res.success, res.message
    assert res.peak_import_w >= floor - 1e-6
    assert res.peak_import_w == pytest.approx(max(floor, free.peak_import_w), abs=1e-2)
    # The schedule holds the returned peak.
    assert np.max(g + res.battery_power_w) <= res.peak_import_w + 1e-2


def test_end_energy_is_kept_and_costs_peak() -> None:
    g = load(1)
    free = optimal_peak(g, Q, fleet())
    kept = optimal_peak(g, Q, fleet(), final_energy_min_wh=400e3)
    assert kept.success, kept.message
    assert kept.energy_wh[-1] >= 400e3 - 1e-3
    assert kept.peak_import_w >= free.peak_import_w - 1e-6
    assert free.energy_wh[-1] < 400e3  # without the condition the plan spends it


def test_an_unreachable_end_energy_is_capped_not_infeasible() -> None:
    # One sample cannot charge 400 kWh: the condition becomes "charge at full power".
    res = optimal_peak([100e3], Q, fleet(init=50e3), final_energy_min_wh=450e3)
    assert res.success, res.message
    assert res.battery_power_w[0] == pytest.approx(100e3, abs=1e-2)


def test_bad_floor_and_end_energy_name_the_argument() -> None:
    with pytest.raises(PlanningError, match="peak_floor_w: must be a finite"):
        optimal_peak([1.0], Q, fleet(), peak_floor_w=float("nan"))
    with pytest.raises(PlanningError, match="final_energy_min_wh: need 1 finite"):
        optimal_peak([1.0], Q, fleet(), final_energy_min_wh=[1.0, 2.0])


@pytest.mark.parametrize("seed", range(8))
def test_required_energy_is_the_least_start_that_holds(seed: int) -> None:
    g = load(seed, 96)
    f = fleet()
    limit = optimal_peak(g, Q, f).peak_import_w + 5e3
    req = required_energy(g, Q, f, limit, final_energy_min_wh=200e3)
    # From exactly R_0 the greedy run holds the limit and ends with the end energy ...
    run = FleetModel(f.charge_max_w, f.discharge_max_w, f.energy_min_wh, f.energy_max_wh,
                     float(min(req[0], f.energy_max_wh)), f.charge_efficiency,
                     f.discharge_efficiency)
    out, energy = simulate_greedy(g, Q, run, limit)
    assert out.max() <= limit + 1e-6
    assert energy[-1] >= 200e3 - 1e-6
    # ... and from noticeably less it does not (when R_0 is above the window's floor).
    if req[0] > f.energy_min_wh + 1e3:
        low = FleetModel(f.charge_max_w, f.discharge_max_w, f.energy_min_wh, f.energy_max_wh,
                         float(req[0]) - 1e3, f.charge_efficiency, f.discharge_efficiency)
        out, energy = simulate_greedy(g, Q, low, limit)
        assert out.max() > limit + 1e-6 or energy[-1] < 200e3 - 1e-6
