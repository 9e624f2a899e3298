"""Reactive power and grid voltage in the physics (no gRPC): Q delay, ramp and
lifetime, the apparent-power circle with P priority, the voltage model's signs,
the background voltage and scripted voltage events, and the site-file keys."""

from __future__ import annotations

import math
from typing import Any

import pytest

from simulator.config import SiteConfigError, site_from_dict
from simulator.errors import PowerOutOfRangeError
from simulator.physics import SitePhysics

INV = 3
S_VA = 50_000.0
Q_RATED = 40_000.0


def _site(grid: dict[str, Any] | None = None, **inverter: Any) -> dict[str, Any]:
    """Grid 1, meter 2, inverter 3 (±40 kW, ±40 kVAr, S = 50 kVA, Q ramp 10 kVAr/s,
    delay 0.5 s) on battery 4; constant 100 kW load at cos phi 0.95, no noise."""
    inv = {
        "id": INV,
        "category": "inverter",
        "type": "battery",
        "rated_lower_w": -40_000.0,
        "rated_upper_w": 40_000.0,
        "rated_reactive_var": Q_RATED,
        "rated_apparent_va": S_VA,
        "ramp_w_per_s": 1_000_000.0,
        "ramp_var_per_s": 10_000.0,
        "response_delay_s": 0.5,
    }
    inv.update(inverter)
    data: dict[str, Any] = {
        "microgrid": {"id": 7},
        "component": [
            {"id": 1, "category": "grid"},
            {"id": 2, "category": "meter"},
            inv,
            {
                "id": 4,
                "category": "battery",
                "capacity_wh": 400_000.0,
                "soc_pct": 50.0,
                "max_charge_w": 100_000.0,
                "max_discharge_w": 100_000.0,
            },
        ],
        "connection": [
            {"source": 1, "destination": 2},
            {"source": 2, "destination": 3},
            {"source": 3, "destination": 4},
        ],
        "load": {"base_w": 100_000.0},
    }
    if grid is not None:
        data["grid"] = grid
    return data


def _physics(grid: dict[str, Any] | None = None, **inverter: Any) -> SitePhysics:
    return SitePhysics(site_from_dict(_site(grid, **inverter)), seed=1, max_step_s=0.01)


def _q(phys: SitePhysics) -> float:
    return float(phys.inverter_reactive_var[phys.inverter_row(INV)])


def test_reactive_setpoint_delay_ramp_and_expiry_to_zero() -> None:
    """Effective after the 0.5 s delay, then 10 kVAr/s up to 20 kVAr; 0 after the lifetime."""
    phys = _physics()
    phys.check_reactive_power(INV, 20_000.0)
    phys.set_reactive_power(INV, 20_000.0, lifetime_s=10.0)
    phys.step(0.45)
    assert _q(phys) == 0.0  # still in flight
    phys.step(1.05)  # 1 s of ramp at 10 kVAr/s
    assert _q(phys) == pytest.approx(10_000.0, abs=150.0)
    phys.step(1.5)
    assert _q(phys) == pytest.approx(20_000.0)
    assert phys.grid_reactive_var == pytest.approx(phys.load_reactive_var + 20_000.0)
    phys.step(7.5)  # lapsed 10 s after the request, ramping back for 0.5 s
    assert _q(phys) == pytest.approx(15_000.0, abs=150.0)
    phys.step(1.6)
    assert _q(phys) == 0.0


def test_ramp_var_defaults_to_the_active_ramp() -> None:
    cfg = site_from_dict(_site(ramp_var_per_s=0.0))
    inverter = cfg.component(INV)
    assert inverter.ramp_var_per_s == inverter.ramp_w_per_s == 1_000_000.0  # type: ignore[union-attr]


def test_active_power_has_priority_and_clips_reactive_to_the_circle() -> None:
    """Q 40 kVAr then P 40 kW: sqrt(S² − P²) = 30 kVAr; Q clipped at once, counted once,
    back to 40 kVAr once P returns to 0; the published bounds follow P."""
    phys = _physics()
    row = phys.inverter_row(INV)
    phys.set_reactive_power(INV, Q_RATED, lifetime_s=60.0)
    phys.step(5.0)
    assert _q(phys) == pytest.approx(Q_RATED)
    assert phys.reactive_power_bounds(INV) == [(-Q_RATED, Q_RATED)]
    phys.check_active_power(INV, 40_000.0)  # P is never limited by Q
    phys.set_active_power(INV, 40_000.0, lifetime_s=60.0)
    phys.step(2.0)
    room = math.sqrt(S_VA**2 - 40_000.0**2)  # 30 kVAr
    assert phys.inverter_power_w[row] == pytest.approx(40_000.0)
    assert _q(phys) == pytest.approx(room)
    assert math.hypot(40_000.0, _q(phys)) <= S_VA + 1e-6
    assert phys.reactive_power_bounds(INV) == [(pytest.approx(-room), pytest.approx(room))]
    phys.step(2.0)
    assert int(phys.inverter_apparent_clips[row]) == 1  # one event, not one per step
    phys.set_active_power(INV, 0.0, lifetime_s=60.0)
    phys.step(3.0)
    assert _q(phys) == pytest.approx(Q_RATED)
    assert int(phys.inverter_apparent_clips[row]) == 1


def test_reactive_setpoint_outside_the_momentary_circle_is_rejected() -> None:
    phys = _physics()
    phys.set_active_power(INV, 40_000.0, lifetime_s=60.0)
    phys.step(1.0)
    phys.check_reactive_power(INV, -30_000.0)  # on the circle: allowed
    message = r"reactive power 35000 VAr outside the current bounds \[-30000, 30000\] VAr"
    with pytest.raises(PowerOutOfRangeError, match=message):
        phys.check_reactive_power(INV, 35_000.0)


def test_without_an_apparent_rating_only_the_reactive_rating_limits() -> None:
    data = _site()
    del data["component"][2]["rated_apparent_va"]
    phys = SitePhysics(site_from_dict(data), seed=1)
    phys.set_active_power(INV, 40_000.0)
    phys.step(1.0)
    assert phys.reactive_power_bounds(INV) == [(-Q_RATED, Q_RATED)]


def test_voltage_drops_with_imported_p_and_absorbed_q() -> None:
    """U = U_bg − (R·P + X·Q) / 3 / U_nom: import and absorption (passive +) lower U,
    export and injection raise it, each by the documented amount."""
    r, x = 0.02, 0.06
    phys = _physics({"impedance_r_ohm": r, "impedance_x_ohm": x})
    phys.step(0.1)

    def expected() -> float:
        return 230.0 - (r * phys.grid_power_w + x * phys.grid_reactive_var) / 3.0 / 230.0

    assert phys.grid_power_w > 0  # the load imports P ...
    assert phys.grid_reactive_var > 0  # ... and absorbs Q
    assert phys.grid_voltage_v == pytest.approx(expected())
    base = phys.grid_voltage_v
    assert base < 230.0
    phys.set_reactive_power(INV, Q_RATED)  # absorb 40 kVAr: U lower by X·Q/3/U
    phys.step(5.0)
    assert phys.grid_voltage_v == pytest.approx(base - x * Q_RATED / 3.0 / 230.0, abs=1e-6)
    phys.set_reactive_power(INV, -Q_RATED)  # inject: higher than without Q
    phys.step(10.0)
    assert phys.grid_voltage_v == pytest.approx(base + x * Q_RATED / 3.0 / 230.0, abs=1e-6)
    phys.set_reactive_power(INV, 0.0)
    phys.set_active_power(INV, -40_000.0)  # discharge: less import, higher U
    phys.step(10.0)
    assert phys.grid_voltage_v == pytest.approx(base + r * 40_000.0 / 3.0 / 230.0, abs=1e-6)


def test_stiff_grid_by_default() -> None:
    phys = _physics()
    phys.step(1.0)
    assert phys.grid_voltage_v == 230.0


def test_scripted_voltage_step_and_background_offset() -> None:
    phys = _physics(
        {
            "nominal_voltage_v": 240.0,
            "background_voltage": {"offset_pct": 2.0},
            "event": [{"kind": "step", "start_s": 10.0, "duration_s": 5.0, "delta_pct": 4.0}],
        }
    )
    phys.step(9.9)
    assert phys.grid_voltage_v == pytest.approx(240.0 * 1.02)
    phys.step(0.2)
    assert phys.grid_voltage_v == pytest.approx(240.0 * 1.06)
    phys.step(5.0)
    assert phys.grid_voltage_v == pytest.approx(240.0 * 1.02)


def test_background_random_walk_is_seeded_and_leaves_other_noise_alone() -> None:
    """Same seed, same voltage; the walk has its own RNG, so the load noise of a site
    is the same with and without it (existing sites' figures do not move)."""
    grid = {"background_voltage": {"noise_pct": 1.0, "noise_tau_s": 60.0}}
    noisy = _site(grid)
    noisy["load"]["noise_w"] = 5_000.0
    quiet = _site()
    quiet["load"]["noise_w"] = 5_000.0
    a, b, c = (
        SitePhysics(site_from_dict(d), seed=5, max_step_s=1.0) for d in (noisy, noisy, quiet)
    )
    volts = []
    for _ in range(30):
        for p in (a, b, c):
            p.step(10.0)
        assert a.load_power_w == c.load_power_w
        volts.append(a.grid_voltage_v)
        assert a.grid_voltage_v == b.grid_voltage_v
    assert max(volts) - min(volts) > 0.5  # it wanders (sigma 2.3 V)


@pytest.mark.parametrize(
    ("where", "key", "value", "message"),
    [
        ("inverter", "rated_apparent_va", 30_000.0, "must be >= the active power rating"),
        ("inverter", "rated_apparent_va", -1.0, "must be > 0"),
        ("grid", "impedance_x_ohm", -0.1, "must be >= 0"),
        ("grid", "impedance_z_ohm", 0.1, "unknown field"),
    ],
)
def test_bad_keys_name_the_field(where: str, key: str, value: float, message: str) -> None:
    data = _site({"impedance_r_ohm": 0.01})
    table = data["component"][2] if where == "inverter" else data["grid"]
    table[key] = value
    with pytest.raises(SiteConfigError, match=message) as err:
        site_from_dict(data, "site.toml")
    assert key in str(err.value)
    assert "\n" not in str(err.value)
