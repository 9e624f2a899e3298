"""controller.lab.replay.optimum: the perfect-foresight LP against hand and bisection references."""

from __future__ import annotations

import numpy as np
import pytest

from controller.lab.replay.errors import ReplayError
from controller.lab.replay.optimum import (
    FleetModel,
    optimal_peak,
    peak_is_feasible,
    simulate_greedy,
)

Q = 900.0  # 15-min samples


def fleet(**kw: float) -> FleetModel:
    base = {"charge_max_w": 1e6, "discharge_max_w": 1e6, "energy_min_wh": 0.0,
            "energy_max_wh": 1e6, "energy_init_wh": 0.0, "charge_efficiency": 1.0,
            "discharge_efficiency": 1.0}
    base.update(kw)
    return FleetModel(**base)


def test_flat_load_empty_battery_no_reduction() -> None:
    res = optimal_peak(np.full(96, 100e3), Q, fleet())
    assert res.success, res.message
    assert res.peak_import_w == pytest.approx(100e3, abs=1e-3)
    assert res.reduction_w == pytest.approx(0.0, abs=1e-3)


def test_flat_load_keep_final_energy_no_reduction() -> None:
    f = fleet(energy_init_wh=50e3, charge_efficiency=0.9, discharge_efficiency=0.9)
    res = optimal_peak(np.full(96, 100e3), Q, f, keep_final_energy=True)
    assert res.peak_import_w == pytest.approx(100e3, abs=1e-3)


def test_flat_load_spends_initial_energy_evenly() -> None:
    # 50 kWh usable, 90 % discharge efficiency, over 24 h: 50 * 0.9 / 24 = 1.875 kW lower.
    f = fleet(energy_init_wh=50e3, discharge_efficiency=0.9)
    res = optimal_peak(np.full(96, 100e3), Q, f)
    assert res.peak_import_w == pytest.approx(100e3 - 1875.0, abs=1e-2)
    assert res.energy_wh[-1] == pytest.approx(0.0, abs=1e-3)


def spike(base: float, top: float, width: int, n: int = 96, at: int = 40) -> np.ndarray:
    load = np.full(n, base)
    load[at:at + width] = top
    return load


def test_spike_longer_than_the_energy_peak_where_energy_runs_out() -> None:
    # 40 kWh usable (full at the start), 80 % discharge efficiency → 32 kWh AC over the
    # 1-hour spike of 200 kW on a 100 kW base: the peak is 200 − 32 = 168 kW.
    f = fleet(energy_min_wh=10e3, energy_max_wh=50e3, energy_init_wh=50e3,
              discharge_max_w=150e3, discharge_efficiency=0.8)
    res = optimal_peak(spike(100e3, 200e3, 4), Q, f)
    assert res.peak_import_w == pytest.approx(168e3, abs=1e-2)
    assert res.energy_wh.min() == pytest.approx(10e3, abs=1e-3)
    assert res.peak_import_w_uncontrolled == 200e3


def test_spike_limited_by_discharge_power() -> None:
    f = fleet(energy_max_wh=1e6, energy_init_wh=1e6, discharge_max_w=50e3)
    res = optimal_peak(spike(100e3, 200e3, 4), Q, f)
    assert res.peak_import_w == pytest.approx(150e3, abs=1e-2)


def test_recharge_before_the_peak_pays_both_efficiencies() -> None:
    # 1 h at 0 W, then 1 h at 100 kW, empty battery, η = 0.9 both ways:
    # charge at P for 1 h stores 0.9 P; discharging it delivers 0.81 P = 100 − P.
    load = np.array([0.0] * 4 + [100e3] * 4)
    f = fleet(charge_efficiency=0.9, discharge_efficiency=0.9)
    res = optimal_peak(load, Q, f)
    assert res.peak_import_w == pytest.approx(100e3 / 1.81, rel=1e-7)
    p = 100e3 / 1.81
    np.testing.assert_allclose(res.battery_power_w, [p] * 4 + [-(100e3 - p)] * 4, rtol=1e-6)


def test_schedule_reproduces_the_peak() -> None:
    rng = np.random.default_rng(3)
    load = rng.uniform(50e3, 300e3, 200)
    f = fleet(charge_max_w=60e3, discharge_max_w=80e3, energy_min_wh=20e3, energy_max_wh=180e3,
              energy_init_wh=100e3, charge_efficiency=0.95, discharge_efficiency=0.93)
    res = optimal_peak(load, Q, f)
    assert res.success
    assert np.max(load + res.battery_power_w) == pytest.approx(res.peak_import_w, abs=1e-3)
    assert np.all(res.battery_power_w <= 60e3 + 1e-6)
    assert np.all(res.battery_power_w >= -80e3 - 1e-6)


def bisect_optimum(load: np.ndarray, f: FleetModel) -> float:
    lo, hi = float(load.min()) - f.discharge_max_w - 1.0, float(load.max())
    for _ in range(80):
        mid = 0.5 * (lo + hi)
        if peak_is_feasible(load, Q, f, mid, tol_w=1e-7):
            hi = mid
        else:
            lo = mid
    return hi


@pytest.mark.parametrize("seed", range(12))
def test_lp_matches_bisection_on_the_greedy_policy(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(4, 60))
    load = rng.uniform(-50e3, 300e3, n) * rng.uniform(0.2, 1.0)
    cap = float(rng.uniform(10e3, 400e3))
    lo_pct, hi_pct = rng.uniform(0, 0.3), rng.uniform(0.7, 1.0)
    f = FleetModel(
        charge_max_w=float(rng.uniform(5e3, 200e3)),
        discharge_max_w=float(rng.uniform(5e3, 200e3)),
        energy_min_wh=cap * lo_pct,
        energy_max_wh=cap * hi_pct,
        energy_init_wh=cap * float(rng.uniform(lo_pct, hi_pct)),
        charge_efficiency=float(rng.uniform(0.8, 1.0)),
        discharge_efficiency=float(rng.uniform(0.8, 1.0)),
    )
    res = optimal_peak(load, Q, f)
    assert res.success, res.message
    ref = bisect_optimum(load, f)
    assert res.peak_import_w == pytest.approx(ref, abs=1e-3 * max(1.0, abs(ref) * 1e-3))
    # The greedy policy holds the LP optimum (a tiny tolerance for the LP's rounding).
    out, _ = simulate_greedy(load, Q, f, res.peak_import_w + 1e-3)
    assert out.max() <= res.peak_import_w + 1e-2


def test_groups_add_up_like_one_aggregate() -> None:
    rng = np.random.default_rng(7)
    load = rng.uniform(100e3, 300e3, 96)
    half = FleetModel(50e3, 50e3, 10e3, 90e3, 50e3, 0.95, 0.95)
    whole = FleetModel(100e3, 100e3, 20e3, 180e3, 100e3, 0.95, 0.95)
    a = optimal_peak(load, Q, [half, half])
    b = optimal_peak(load, Q, whole)
    assert a.peak_import_w == pytest.approx(b.peak_import_w, abs=1e-2)
    assert a.energy_wh[0] == pytest.approx(100e3)


def test_a_weaker_group_cannot_help_more_than_it_has() -> None:
    # Two groups, only one has energy: the spike is covered by the full one alone.
    full = fleet(energy_max_wh=10e3, energy_init_wh=10e3, discharge_max_w=1e6)
    empty = fleet(energy_max_wh=10e3, energy_init_wh=0.0, charge_max_w=0.0)
    res = optimal_peak(spike(0.0, 100e3, 1, n=8, at=2), Q, [full, empty])
    # 10 kWh over 15 min = 40 kW off the 100 kW spike.
    assert res.peak_import_w == pytest.approx(60e3, abs=1e-2)


@pytest.mark.parametrize(("field", "value", "match"), [
    ("charge_efficiency", 0.0, "charge_efficiency must be in"),
    ("discharge_efficiency", 1.5, "discharge_efficiency must be in"),
    ("energy_init_wh", 2e6, "energy_init_wh 2000000.0 outside"),
    ("charge_max_w", -1.0, "charge_max_w must be finite"),
])
def test_bad_fleet_names_the_field(field: str, value: float, match: str) -> None:
    with pytest.raises(ReplayError, match=match):
        optimal_peak(np.ones(4), Q, fleet(**{field: value}))


def test_bad_series_names_the_argument() -> None:
    with pytest.raises(ReplayError, match="grid_w: non-finite value nan at index 1"):
        optimal_peak([1.0, float("nan")], Q, fleet())
    with pytest.raises(ReplayError, match="step_s"):
        optimal_peak([1.0], 0.0, fleet())
    with pytest.raises(ReplayError, match="grid_w: need a non-empty"):
        optimal_peak([], Q, fleet())
