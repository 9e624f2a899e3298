"""controller.runtime.planning._holdable: the closed-form backward energy and the lowest
holdable limit over stacked scenarios, against the LP and the sequential references."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from controller.runtime.planning import FleetModel, optimal_peak, simulate_greedy
from controller.runtime.planning._holdable import lowest_holdable_peaks

Q = 900.0
F = FleetModel(charge_max_w=100e3, discharge_max_w=150e3, energy_min_wh=50e3,
               energy_max_wh=450e3, energy_init_wh=300e3, charge_efficiency=0.95,
               discharge_efficiency=0.9)


def _kw(end: float) -> dict[str, float]:
    return {"charge_max_w": F.charge_max_w, "discharge_max_w": F.discharge_max_w,
            "energy_min_wh": F.energy_min_wh, "energy_max_wh": F.energy_max_wh,
            "end_energy_wh": end, "charge_efficiency": F.charge_efficiency,
            "discharge_efficiency": F.discharge_efficiency}


@pytest.mark.parametrize("seed", range(12))
def test_lowest_holdable_peak_is_the_lp_optimum(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(4, 200))
    t = np.arange(n)
    g = 200e3 + 80e3 * np.sin(2 * np.pi * t / 96 + rng.uniform(0, 6)) + rng.normal(0, 30e3, n)
    e0, floor = rng.uniform(F.energy_min_wh, F.energy_max_wh), rng.uniform(0, 300e3)
    end = min(rng.uniform(F.energy_min_wh, F.energy_max_wh),
              e0 + F.charge_efficiency * F.charge_max_w * n * Q / 3600.0)
    ref = optimal_peak(g, Q, dataclasses.replace(F, energy_init_wh=e0), peak_floor_w=floor,
                       final_energy_min_wh=end)
    assert ref.success, ref.message
    got = lowest_holdable_peaks(g[None, :], Q / 3600.0, energy_wh=e0, floor_w=floor,
                                tol_w=0.01, **_kw(end))
    assert got.shape == (1,)
    assert ref.peak_import_w - 1e-3 <= got[0] <= ref.peak_import_w + 0.02


def test_scenarios_are_solved_apart_and_the_greedy_run_holds_each() -> None:
    rng = np.random.default_rng(7)
    rows = 250e3 + rng.normal(0, 60e3, (5, 96))
    peaks = lowest_holdable_peaks(rows, Q / 3600.0, energy_wh=F.energy_init_wh, floor_w=0.0,
                                  tol_w=1.0, **_kw(F.energy_min_wh))
    for row, peak in zip(rows, peaks, strict=True):
        alone = lowest_holdable_peaks(row[None, :], Q / 3600.0, energy_wh=F.energy_init_wh,
                                      floor_w=0.0, tol_w=1.0, **_kw(F.energy_min_wh))
        assert peak == pytest.approx(alone[0], abs=1.0)
        out, _ = simulate_greedy(row, Q, F, float(peak))
        assert out.max() <= peak + 1e-6
        out, _ = simulate_greedy(row, Q, F, float(peak) - 2.0)
        assert out.max() > peak - 2.0 + 1e-6


def test_a_holdable_floor_is_returned_as_is() -> None:
    rows = np.full((2, 8), 100e3)
    peaks = lowest_holdable_peaks(rows, Q / 3600.0, energy_wh=F.energy_init_wh, floor_w=120e3,
                                  tol_w=1.0, **_kw(F.energy_min_wh))
    np.testing.assert_array_equal(peaks, [120e3, 120e3])
