"""Physics unit tests (no gRPC): energy balance, SoC, ramps, delays, bounds, lifetimes."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simulator.config import load_site, site_from_dict
from simulator.errors import (
    ComponentNotFoundError,
    ComponentNotReadyError,
    InvalidRequestError,
    PowerOutOfRangeError,
)
from simulator.physics import (
    ComponentState,
    SetpointStatus,
    SitePhysics,
    intersect_intervals,
    own_power_intervals,
)


def _site(**battery: Any) -> dict[str, Any]:
    """A 1:1 site: grid 1, meter 2, inverter 3, battery 4, no noise, constant 100 kW load."""
    bat = {
        "id": 4,
        "category": "battery",
        "capacity_wh": 100_000.0,
        "soc_pct": 50.0,
        "max_charge_w": 50_000.0,
        "max_discharge_w": 50_000.0,
        "charge_efficiency": 0.9,
        "discharge_efficiency": 0.8,
    }
    bat.update(battery)
    return {
        "microgrid": {"id": 7},
        "component": [
            {"id": 1, "category": "grid"},
            {"id": 2, "category": "meter"},
            {
                "id": 3,
                "category": "inverter",
                "type": "battery",
                "rated_lower_w": -40_000.0,
                "rated_upper_w": 40_000.0,
                "exclusion_w": 1_000.0,
                "ramp_w_per_s": 10_000.0,
                "response_delay_s": 0.5,
            },
            bat,
        ],
        "connection": [
            {"source": 1, "destination": 2},
            {"source": 2, "destination": 3},
            {"source": 3, "destination": 4},
        ],
        "load": {"base_w": 100_000.0},
    }


def _physics(max_step_s: float = 0.01, **battery: Any) -> SitePhysics:
    return SitePhysics(site_from_dict(_site(**battery)), seed=1, max_step_s=max_step_s)


def test_grid_meter_energy_balance_default_site() -> None:
    """Grid = load − PV production + battery inverter power, at every step."""
    phys = SitePhysics(load_site(), seed=3)
    for cid, power in ((10, -50_000.0), (20, 30_000.0), (30, -20_000.0), (40, 60_000.0)):
        phys.check_active_power(cid, power)
        phys.set_active_power(cid, power)
    for _ in range(50):
        phys.step(0.1)
        expected = phys.load_power_w + phys.pv_power_w + phys.battery_inverter_power_w
        assert phys.grid_power_w == pytest.approx(expected, rel=1e-12)
        grid_meter = phys.meter_power_w[phys.meter_row(2)]
        assert grid_meter == pytest.approx(phys.grid_power_w, rel=1e-12)
        assert phys.meter_power_w[phys.meter_row(3)] == pytest.approx(phys.load_power_w)
        pv_meter = phys.meter_power_w[phys.meter_row(4)]
        assert pv_meter == pytest.approx(phys.pv_power_w)
    assert phys.pv_power_w < 0  # production is negative (passive sign convention)
    assert phys.battery_inverter_power_w == pytest.approx(-50_000 + 30_000 - 20_000 + 60_000)


def test_soc_integration_matches_hand_calculation() -> None:
    phys = _physics(max_step_s=0.5)
    phys.set_active_power(3, 36_000.0, lifetime_s=900)
    # delay 0.5 s, then ramp 10 kW/s to 36 kW takes 3.6 s.
    phys.step(10.0)
    soc_before = float(phys.battery_soc_pct[0])
    phys.step(600.0)  # 10 minutes at 36 kW charging, efficiency 0.9
    expected = soc_before + 36_000 * 0.9 * (600 / 3600) / 100_000 * 100
    assert float(phys.battery_soc_pct[0]) == pytest.approx(expected, rel=1e-9)
    phys.set_active_power(3, -36_000.0, lifetime_s=900)
    phys.step(10.0)
    soc_before = float(phys.battery_soc_pct[0])
    phys.step(300.0)  # discharging: energy taken from the battery is P / 0.8
    expected = soc_before - 36_000 / 0.8 * (300 / 3600) / 100_000 * 100
    assert float(phys.battery_soc_pct[0]) == pytest.approx(expected, rel=1e-9)


def test_ramp_rate_and_response_delay() -> None:
    phys = _physics()
    phys.set_active_power(3, 40_000.0)
    phys.step(0.49)
    assert phys.inverter_power_w[0] == 0.0  # still inside the response delay
    phys.step(0.01)
    phys.step(1.0)  # 1 s of ramping at 10 kW/s
    assert phys.inverter_power_w[0] == pytest.approx(10_000.0, abs=1e-6)
    prev = float(phys.inverter_power_w[0])
    for _ in range(100):
        phys.step(0.01)
        now = float(phys.inverter_power_w[0])
        assert 0 <= now - prev <= 10_000.0 * 0.01 + 1e-6
        prev = now
    phys.step(5.0)
    assert phys.inverter_power_w[0] == pytest.approx(40_000.0)


def test_default_site_reaches_full_power_within_one_second() -> None:
    phys = SitePhysics(load_site(), seed=0)
    req = phys.set_active_power(10, -100_000.0)
    phys.step(1.0)
    row = phys.inverter_row(10)
    assert phys.inverter_power_w[row] == pytest.approx(-100_000.0)
    assert phys.setpoint_status(10, req) is SetpointStatus.APPLIED


def test_soc_dependent_bounds() -> None:
    full = _physics(soc_pct=90.0)  # at the default soc_max_pct
    assert full.inverter_upper_w[0] == 0.0
    assert full.inverter_lower_w[0] == -40_000.0
    assert full.active_power_bounds(3) == [(-40_000.0, -1_000.0), (0.0, 0.0)]
    with pytest.raises(PowerOutOfRangeError):
        full.check_active_power(3, 5_000.0)
    full.check_active_power(3, 0.0)  # 0 W is always allowed
    full.check_active_power(3, -5_000.0)

    empty = _physics(soc_pct=10.0)
    assert empty.inverter_lower_w[0] == 0.0
    assert empty.inverter_upper_w[0] == 40_000.0
    with pytest.raises(PowerOutOfRangeError):
        empty.check_active_power(3, -5_000.0)

    # Charging up to the limit: the charge side closes and power goes to 0.
    near = _physics(soc_pct=89.9)
    near.set_active_power(3, 40_000.0, lifetime_s=900)
    near.step(60.0)
    assert near.battery_soc_pct[0] >= 90.0
    assert near.inverter_upper_w[0] == 0.0
    near.step(5.0)
    assert near.inverter_power_w[0] == pytest.approx(0.0, abs=1e-6)


def test_battery_limits_and_exclusion_band() -> None:
    phys = _physics(max_charge_w=20_000.0)
    assert phys.active_power_bounds(3) == [(-40_000.0, -1_000.0), (1_000.0, 20_000.0)]
    with pytest.raises(PowerOutOfRangeError):
        phys.check_active_power(3, 500.0)  # inside the exclusion band
    with pytest.raises(PowerOutOfRangeError):
        phys.check_active_power(3, 25_000.0)
    with pytest.raises(InvalidRequestError):
        phys.check_active_power(3, math.nan)
    with pytest.raises(InvalidRequestError):
        phys.check_active_power(4, 1_000.0)  # a battery, not an inverter
    with pytest.raises(ComponentNotFoundError):
        phys.check_active_power(99, 1_000.0)


def test_lifetime_expiry_returns_to_zero() -> None:
    phys = _physics()
    phys.set_active_power(3, -30_000.0, lifetime_s=10.0)
    phys.step(9.0)
    assert phys.inverter_power_w[0] == pytest.approx(-30_000.0)
    phys.step(1.5)
    assert math.isnan(phys.inverter_setpoint_w[0])
    phys.step(5.0)
    assert phys.inverter_power_w[0] == pytest.approx(0.0)


def test_newer_setpoint_overrides() -> None:
    phys = _physics()
    first = phys.set_active_power(3, 10_000.0)
    second = phys.set_active_power(3, 20_000.0)
    phys.step(5.0)
    assert phys.setpoint_status(3, first) is SetpointStatus.OVERRIDDEN
    assert phys.setpoint_status(3, second) is SetpointStatus.APPLIED


def test_augmented_bounds_intersect_and_expire() -> None:
    phys = _physics()
    phys.augment_bounds(3, "a", [(-10_000.0, 30_000.0)], lifetime_s=20.0)
    assert phys.active_power_bounds(3) == [(-10_000.0, -1_000.0), (1_000.0, 30_000.0)]
    phys.augment_bounds(3, "b", [(-5_000.0, 5_000.0)], lifetime_s=10.0)
    assert phys.active_power_bounds(3) == [(-5_000.0, -1_000.0), (1_000.0, 5_000.0)]
    with pytest.raises(PowerOutOfRangeError):
        phys.check_active_power(3, 8_000.0)
    phys.augment_bounds(3, "b", [(-8_000.0, 8_000.0)], lifetime_s=10.0)  # same token replaces
    phys.check_active_power(3, 8_000.0)
    phys.step(10.5)
    assert phys.active_power_bounds(3) == [(-10_000.0, -1_000.0), (1_000.0, 30_000.0)]
    phys.clear_bounds(3, "a")
    assert phys.active_power_bounds(3) == [(-40_000.0, -1_000.0), (1_000.0, 40_000.0)]


def test_state_machine() -> None:
    phys = _physics()
    phys.set_active_power(3, 20_000.0)
    phys.step(5.0)
    phys.standby(3)
    assert phys.state_of(3) is ComponentState.STANDBY
    phys.step(5.0)
    assert phys.inverter_power_w[0] == pytest.approx(0.0)
    phys.set_active_power(3, 20_000.0)  # a setpoint wakes a standby inverter
    assert phys.state_of(3) is ComponentState.RUNNING
    phys.stop(3)
    assert phys.state_of(3) is ComponentState.OFF
    with pytest.raises(ComponentNotReadyError):
        phys.check_active_power(3, 20_000.0)
    with pytest.raises(ComponentNotReadyError):
        phys.standby(3)
    phys.start(3)
    phys.check_active_power(3, 20_000.0)
    phys.inject_error(3)
    with pytest.raises(ComponentNotReadyError):
        phys.start(3)
    phys.ack_error(3)
    assert phys.state_of(3) is ComponentState.OFF
    phys.start(3)
    assert phys.state_of(3) is ComponentState.RUNNING
    # a battery only opens its relays at 0 W
    phys.set_active_power(3, 20_000.0)
    phys.step(5.0)
    with pytest.raises(ComponentNotReadyError):
        phys.stop(4)
    phys.set_active_power(3, 0.0)
    phys.step(5.0)
    phys.stop(4)
    assert phys.inverter_upper_w[0] == 0.0
    assert phys.inverter_lower_w[0] == 0.0
    with pytest.raises(ComponentNotReadyError):
        phys.check_active_power(3, 5_000.0)


def test_shared_topologies_split_power() -> None:
    """2 inverters : 1 battery and 1 inverter : 2 batteries in the default site."""
    phys = SitePhysics(load_site(), seed=0)
    # group C: each inverter sees half of battery C's 120 kW capability.
    assert phys.inverter_upper_w[phys.inverter_row(30)] == pytest.approx(60_000.0)
    phys.set_active_power(30, 40_000.0)
    phys.set_active_power(31, 20_000.0)
    phys.set_active_power(40, -60_000.0)
    phys.step(2.0)
    assert phys.battery_power_w[phys.battery_row(32)] == pytest.approx(60_000.0)
    # group D: two equal batteries share the 60 kW discharge.
    d1, d2 = phys.battery_row(41), phys.battery_row(42)
    assert phys.battery_power_w[d1] == pytest.approx(-30_000.0)
    assert phys.battery_power_w[d2] == pytest.approx(-30_000.0)
    assert phys.active_power_bounds(40) == [(-80_000.0, -2_000.0), (2_000.0, 80_000.0)]


def test_an_inverter_feeds_only_the_batteries_that_can_take_power() -> None:
    """1 inverter : 2 batteries, one of them stopped: the running one takes it all,
    and the inverter's bounds shrink to that battery's share."""
    phys = SitePhysics(load_site(), seed=0)
    d1, d2 = phys.battery_row(41), phys.battery_row(42)
    upper_both = phys.inverter_upper_w[phys.inverter_row(40)]
    phys.stop(41)
    phys.step(0.1)
    assert phys.battery_upper_w[d1] == 0.0
    assert phys.inverter_upper_w[phys.inverter_row(40)] < upper_both
    phys.set_active_power(40, 20_000.0)
    phys.step(2.0)
    assert phys.battery_power_w[d1] == 0.0
    assert phys.battery_power_w[d2] == pytest.approx(20_000.0)


def test_pv_curtailment_and_expiry() -> None:
    phys = SitePhysics(load_site(), seed=0)
    row = phys.inverter_row(5)
    phys.step(1.0)
    available = float(phys.pv_available_w[row])
    assert available < -20_000.0
    phys.set_active_power(5, -10_000.0, lifetime_s=10.0)
    phys.step(2.0)
    assert phys.inverter_power_w[row] == pytest.approx(-10_000.0)
    phys.step(10.0)
    assert phys.inverter_power_w[row] < -20_000.0  # limit lapsed: full production again


def test_default_scenario_has_peak_and_frequency_events() -> None:
    phys = SitePhysics(load_site(), seed=0, max_step_s=10.0)
    load, freq = [], []
    for _ in range(1800):
        phys.step(1.0)
        load.append(phys.load_power_w)
        freq.append(phys.frequency_hz)
    load_arr, freq_arr = np.array(load), np.array(freq)
    assert np.median(load_arr[:300]) < 200_000
    assert np.sum(load_arr > 320_000) >= 300  # several minutes above 320 kW
    assert np.min(freq_arr) < 49.88
    assert np.max(freq_arr) > 50.09
    assert np.sum(freq_arr < 49.9) >= 90  # the step lasts ~2 minutes


def test_seed_reproducibility_and_profile_injection() -> None:
    a, b = SitePhysics(load_site(), seed=5), SitePhysics(load_site(), seed=5)
    for p in (a, b):
        p.set_load_profile(np.array([100_000.0, 200_000.0]), step_s=900.0)
        p.step(450.0)
    assert a.load_power_w == b.load_power_w
    assert a.frequency_hz == b.frequency_hz
    quiet = SitePhysics(site_from_dict(_site()), seed=0, max_step_s=60.0)
    quiet.set_load_profile(np.array([100_000.0, 200_000.0]), step_s=900.0)
    quiet.step(450.0)
    assert quiet.load_power_w == pytest.approx(150_000.0)  # linear interpolation
    with pytest.raises(ValueError, match="values_w"):
        quiet.set_load_profile(np.array([np.nan]), step_s=900.0)


def test_interval_helpers() -> None:
    assert own_power_intervals(-10.0, 10.0, 0.0) == [(-10.0, 10.0)]
    assert own_power_intervals(-10.0, 10.0, 2.0) == [(-10.0, -2.0), (2.0, 10.0)]
    assert own_power_intervals(0.0, 0.0, 2.0) == [(0.0, 0.0)]
    assert intersect_intervals([(-10.0, -2.0), (2.0, 10.0)], [(-5.0, 5.0)]) == [
        (-5.0, -2.0),
        (2.0, 5.0),
    ]
    assert intersect_intervals([(0.0, 1.0)], [(2.0, 3.0)]) == []


_DEFAULT = load_site()


@settings(max_examples=40, deadline=None)
@given(
    commands=st.lists(
        st.tuples(
            st.sampled_from([5, 10, 20, 30, 31, 40]),
            st.floats(-1.2, 1.2),
            st.floats(0.1, 120.0),
        ),
        min_size=1,
        max_size=8,
    ),
    seed=st.integers(0, 2**16),
)
def test_invariants_under_random_commands(
    commands: list[tuple[int, float, float]], seed: int
) -> None:
    """Energy balance, SoC range and power limits hold whatever is commanded."""
    phys = SitePhysics(_DEFAULT, seed=seed, max_step_s=0.5)
    phys.battery_soc_pct[:] = np.array([88.0, 12.0, 50.0, 89.5, 10.5])
    max_c = np.array([b.max_charge_w for b in _DEFAULT.batteries])
    max_d = np.array([b.max_discharge_w for b in _DEFAULT.batteries])
    for component, fraction, dt in commands:
        row = phys.inverter_row(component)
        power = fraction * float(
            phys.inverter_rated_upper_w[row] - phys.inverter_rated_lower_w[row]
        )
        phys.set_active_power(component, power, lifetime_s=30.0)
        phys.step(dt)
        total = phys.load_power_w + phys.pv_power_w + phys.battery_inverter_power_w
        assert phys.grid_power_w == pytest.approx(total, rel=1e-9, abs=1e-6)
        assert np.all(phys.battery_soc_pct >= 0.0)
        assert np.all(phys.battery_soc_pct <= 100.0)
        assert np.all(phys.inverter_power_w <= phys.inverter_rated_upper_w + 1e-6)
        assert np.all(phys.inverter_power_w >= phys.inverter_rated_lower_w - 1e-6)
        assert np.all(phys.battery_power_w <= max_c + 1e-6)
        assert np.all(phys.battery_power_w >= -max_d - 1e-6)
        # battery DC power adds up to the battery inverters' AC power (lossless inverters)
        assert phys.battery_power_w.sum() == pytest.approx(phys.battery_inverter_power_w, abs=1e-6)
        # no charging above soc_max (allowing one ramp-down of overshoot)
        assert np.all(phys.battery_soc_pct <= phys.battery_soc_max_pct + 0.5)


def test_setpoints_faster_than_the_delay_are_pipelined() -> None:
    """Every setpoint takes effect its delay after it was sent, even if newer ones follow."""
    phys = _physics()  # response delay 0.5 s, ramp 10 kW/s
    applied = []
    for k in range(20):  # a new setpoint every 0.1 s: 1 kW, 2 kW, ...
        phys.set_active_power(3, 1_000.0 * (k + 1) + 1_000.0)
        phys.step(0.1)
        applied.append(float(phys.inverter_setpoint_w[0]))
    assert all(math.isnan(a) for a in applied[:4])  # nothing before the 0.5 s delay
    # from then on, the setpoint sent 0.5 s earlier is in effect
    assert applied[4:] == [1_000.0 * (k + 1) + 1_000.0 for k in range(16)]


@pytest.mark.parametrize(
    ("branches", "load_meter", "meters"),
    [
        # grid 1 -> meter 2 -> inverter 3 -> battery 4; grid 1 -> meter 5 (the load)
        ([(1, 2), (2, 3), (1, 5)], 5, (2, 5)),
        # the same, with no load_share anywhere: the load hangs below the first meter
        ([(1, 2), (2, 3), (1, 5)], None, (2, 5)),
        # an inverter directly on the grid connection point, the load behind meter 5
        ([(1, 3), (1, 5)], 5, (5,)),
    ],
)
def test_feeders_add_up_to_the_grid_power(
    branches: list[tuple[int, int]], load_meter: int | None, meters: tuple[int, ...]
) -> None:
    site = _site()
    site["component"].append(
        {"id": 5, "category": "meter", "load_share": 1.0 if load_meter == 5 else 0.0}
    )
    conns = [*branches, (3, 4)]
    site["connection"] = [{"source": s, "destination": d} for s, d in conns]
    site["component"] = [c for c in site["component"] if any(c["id"] in sd for sd in conns)]
    phys = SitePhysics(site_from_dict(site), seed=1, max_step_s=0.01)
    phys.set_active_power(3, -30_000.0)
    for _ in range(50):  # 0.5 s delay, 3 s of ramp
        phys.step(0.1)
    inverter = float(phys.inverter_power_w[phys.inverter_row(3)])
    assert inverter == pytest.approx(-30_000.0)
    feeders = sum(float(phys.meter_power_w[phys.meter_row(m)]) for m in meters)
    if 2 not in meters:  # the inverter's branch has no meter: its own power counts
        feeders += inverter
    assert feeders == pytest.approx(phys.grid_power_w, rel=1e-12)
    assert phys.grid_power_w == pytest.approx(phys.load_power_w + inverter, rel=1e-12)
    if load_meter == 5:
        assert phys.meter_power_w[phys.meter_row(5)] == pytest.approx(phys.load_power_w)
