"""Allocation across kinds: PV caps, EV limits, the kind order (`distribution._kinds`).

Property-style with seeded random inputs and hypothesis; every check is against the
original problem (bounds, exclusion bands, totals), independently of the kernels.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from distribution import (
    DEFAULT_KIND_ORDER,
    DistributionError,
    EvChargers,
    Fleet,
    PvInverters,
    allocate_kinds,
    ev_limits,
    pv_caps,
)

TOL = 1e-6


def _pv(rng: np.random.Generator, n: int) -> PvInverters:
    rated = rng.uniform(5e3, 200e3, n)
    avail = rated * rng.uniform(0.0, 1.0, n) * (rng.random(n) < 0.9)
    return PvInverters(lower_w=-avail, upper_w=np.zeros(n), rated_w=rated)


def _ev(rng: np.random.Generator, n: int) -> EvChargers:
    upper = rng.choice([0.0, 7.4e3, 11e3, 22e3], n, p=[0.15, 0.25, 0.3, 0.3])
    mn = np.where(upper > 0, rng.choice([1.4e3, 4.14e3, 6.9e3], n), 0.0)
    need = np.where(rng.random(n) < 0.6, upper, upper * rng.uniform(0.0, 1.0, n))
    return EvChargers(min_w=mn, upper_w=upper, need_w=need)


def _one_pair(soc: float = 50.0, power_w: float = 100e3) -> Fleet:
    """One 1:1 battery pair with bounds ±power_w and no band."""
    return Fleet(
        inverter_lower_w=np.array([-power_w]),
        inverter_upper_w=np.array([power_w]),
        inverter_excl_lower_w=np.zeros(1),
        inverter_excl_upper_w=np.zeros(1),
        battery_soc_pct=np.array([soc]),
        battery_soc_lower_pct=np.array([10.0]),
        battery_soc_upper_pct=np.array([90.0]),
        battery_capacity_wh=np.array([200e3]),
        battery_lower_w=np.array([-1e12]),
        battery_upper_w=np.array([1e12]),
        links=np.array([[0, 0]]),
    )


@pytest.mark.parametrize("seed", range(60))
def test_pv_caps_exact_within_bounds_and_fair_by_rating(seed: int) -> None:
    rng = np.random.default_rng(seed)
    pv = _pv(rng, int(rng.integers(1, 12)))
    span = float(-pv.lower_w.sum())
    for want in (0.0, span, float(rng.uniform(0, span)), span * 1.5, -1e3):
        sp, capped, got = pv_caps(pv, want)
        assert np.all((pv.lower_w - TOL <= sp) & (sp <= pv.upper_w + TOL))
        assert got == pytest.approx(min(max(want, 0.0), span), abs=1e-3)
        assert float((sp - pv.lower_w).sum()) == pytest.approx(got, abs=1e-3)
        assert np.array_equal(sp[~capped], pv.lower_w[~capped])  # uncapped = full production
        produce = -sp
        # Water-fill by rating: the capped ones produce the same share of their rating,
        # and no uncapped one could produce more than that share.
        if capped.any():
            share = produce[capped] / pv.rated_w[capped]
            assert np.ptp(share) <= 1e-9 * max(1.0, float(share.max()))
            free = ~capped
            assert np.all(-pv.lower_w[free] <= share[0] * pv.rated_w[free] + 1e-3)


def test_pv_caps_worked_example() -> None:
    # 150 kWp and 100 kWp producing 100 and 50 kW; curtail 60 kW: 90 kW remain at
    # 36 % of rating each (54 + 36 kW).
    pv = PvInverters(lower_w=[-100e3, -50e3], upper_w=[0.0, 0.0], rated_w=[150e3, 100e3])
    sp, capped, got = pv_caps(pv, 60e3)
    assert sp.tolist() == pytest.approx([-54e3, -36e3])
    assert capped.tolist() == [True, True]
    assert got == pytest.approx(60e3)


@pytest.mark.parametrize("seed", range(80))
def test_ev_limits_respect_band_budget_and_equal_share(seed: int) -> None:
    rng = np.random.default_rng(seed)
    ev = _ev(rng, int(rng.integers(1, 12)))
    total = float(ev.need_w.sum())
    for want in (0.0, -total, -float(rng.uniform(0, total)), -float(rng.uniform(0, 0.3)) * total):
        lim, capped, got = ev_limits(ev, want)
        draw = np.where(capped, lim, ev.need_w)
        # Never inside the exclusion band (0, min), never above the rating.
        assert not np.any((lim > TOL) & (lim < ev.min_w - TOL))
        assert np.all((lim >= -TOL) & (lim <= ev.upper_w + TOL))
        assert np.array_equal(lim[~capped], ev.upper_w[~capped])  # uncapped = the rating
        # Never above the budget; exact unless some charger had to pause.
        budget = total + max(want, -total)
        assert draw.sum() <= budget + 1e-6 * max(1.0, total)
        assert got == pytest.approx(float(draw.sum()) - total, abs=1e-6 * max(1.0, total))
        paused = capped & (lim == 0.0)
        if not paused.any():
            assert got == pytest.approx(min(0.0, max(want, -total)), abs=1e-6 * max(1.0, total))
        # Equal share: every throttled charger above its minimum draws the same.
        level = capped & ~paused & (lim > np.minimum(ev.min_w, ev.need_w) + 1e-6)
        if level.sum() > 1:
            assert np.ptp(lim[level]) <= 1e-6 * max(1.0, total)
            # ... and no unthrottled one that could be throttled (its need above its
            # minimum; below it a car can only run free or pause) needs more.
            free = ~capped & (ev.need_w > ev.min_w)
            assert np.all(ev.need_w[free] <= lim[level].max() + 1e-6 * max(1.0, total))


def test_ev_limits_pause_the_fewest_largest_minimums_first() -> None:
    # Three cars need 22, 22 and 11 kW; minimums 4.14 kW each. A budget of 10 kW
    # cannot hold three minimums (12.4 kW): one pauses (the smaller need at equal
    # minimum), the other two share 5 kW each.
    ev = EvChargers(min_w=[4140.0] * 3, upper_w=[22e3, 22e3, 11e3], need_w=[22e3, 22e3, 11e3])
    lim, capped, got = ev_limits(ev, -45e3)
    assert lim.tolist() == pytest.approx([5e3, 5e3, 0.0])
    assert capped.all()
    assert got == pytest.approx(-45e3)
    # Below one minimum every charger pauses: the total stays under the budget.
    lim, capped, got = ev_limits(ev, -53e3)
    assert lim.tolist() == [0.0, 0.0, 0.0]
    assert got == pytest.approx(-55e3)


@settings(max_examples=200, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    must_frac=st.floats(-1.5, 1.5),
    target_frac=st.floats(-1.2, 1.2),
    pv_first=st.booleans(),
    ev_first=st.booleans(),
)
def test_allocate_kinds_serves_must_in_order_within_bounds(
    seed: int, must_frac: float, target_frac: float, pv_first: bool, ev_first: bool
) -> None:
    rng = np.random.default_rng(seed)
    fleet = _one_pair(power_w=float(rng.uniform(0, 100e3)))
    pv, ev = _pv(rng, int(rng.integers(0, 5))), _ev(rng, int(rng.integers(0, 5)))
    scale = 100e3 + pv.range_w - ev.range_w
    must, target = must_frac * scale, target_frac * 100e3
    order = list(DEFAULT_KIND_ORDER)
    if pv_first:
        order.remove("pv_inverter")
        order.insert(0, "pv_inverter")
    if ev_first:
        order.remove("ev_charger")
        order.insert(0, "ev_charger")
    res = allocate_kinds(fleet, target, must, pv, ev, tuple(order))
    b = res.battery.achieved_w
    # PV only for a positive must, EV only for a negative one.
    assert res.pv_w >= 0.0
    assert res.ev_w <= 0.0
    assert res.pv_w == 0.0 or must > 0
    assert res.ev_w == 0.0 or must < 0
    assert np.all((pv.lower_w - TOL <= res.pv_setpoints_w) & (res.pv_setpoints_w <= TOL))
    draw_ok = (res.ev_setpoints_w == 0.0) | (
        (res.ev_setpoints_w >= ev.min_w - TOL) & (res.ev_setpoints_w <= ev.upper_w + TOL)
    )
    assert draw_ok.all()
    tol = 1e-6 * scale
    if must > 0:
        if order.index("pv_inverter") < order.index("battery_inverter"):
            assert res.pv_w == pytest.approx(min(must, pv.range_w), abs=tol)
            # ... and it never turns the batteries toward discharging.
            assert b >= min(target, 0.0) - tol
        else:  # batteries first: PV covers only what they did not deliver
            assert res.pv_w == pytest.approx(min(max(must - b, 0.0), pv.range_w), abs=tol)
            # ... so the must is met as far as batteries + PV can.
            assert b + res.pv_w >= min(must, b + pv.range_w) - tol
    if must < 0:
        # Never more charging than the must allows (EV limits are at most the budget).
        if order.index("ev_charger") < order.index("battery_inverter"):
            assert res.ev_w <= max(must, ev.range_w) + tol
            assert b <= max(target, 0.0) + tol  # throttling never makes them charge
        else:
            assert res.ev_w <= min(0.0, max(must - b, ev.range_w)) + tol


def test_preferences_never_curtail_or_throttle() -> None:
    # A nan must (no bound requires anything): the batteries take the target, every
    # PV inverter and charger stays uncapped even when the target exceeds the fleet.
    pv = PvInverters(lower_w=[-80e3], upper_w=[0.0], rated_w=[100e3])
    ev = EvChargers(min_w=[4140.0], upper_w=[22e3], need_w=[22e3])
    res = allocate_kinds(_one_pair(), 500e3, float("nan"), pv, ev)
    assert res.battery.achieved_w == pytest.approx(100e3)
    assert res.pv_w == 0.0
    assert res.ev_w == 0.0
    assert not res.pv_capped.any()
    assert not res.ev_capped.any()
    assert res.pv_setpoints_w.tolist() == [-80e3]
    assert res.ev_setpoints_w.tolist() == [22e3]


def test_batteries_first_then_pv_and_pv_first_order() -> None:
    pv = PvInverters(lower_w=[-80e3], upper_w=[0.0], rated_w=[100e3])
    ev = EvChargers(min_w=[], upper_w=[], need_w=[])
    full = _one_pair(soc=89.0, power_w=30e3)  # batteries can take 30 kW
    res = allocate_kinds(full, 30e3, 50e3, pv, ev)  # default: batteries first
    assert (res.battery.achieved_w, res.pv_w) == pytest.approx((30e3, 20e3))
    order = ("pv_inverter", "battery_inverter", "ev_charger")
    res = allocate_kinds(full, 30e3, 50e3, pv, ev, order)  # PV first: all 50 kW curtailed
    assert (res.battery.achieved_w, res.pv_w) == pytest.approx((0.0, 50e3))


def test_batteries_about_to_close_hand_over_to_pv_and_ev_ahead() -> None:
    # The batteries still charge 30 kW, but 20 kW of it is a battery about to reach its
    # upper SoC limit: PV covers that part already (the site imports it for a moment)
    # instead of after the bounds close (an export for PV's delay and ramp).
    pv = PvInverters(lower_w=[-80e3], upper_w=[0.0], rated_w=[100e3])
    no_ev = EvChargers(min_w=[], upper_w=[], need_w=[])
    full = _one_pair(soc=89.0, power_w=30e3)
    res = allocate_kinds(full, 30e3, 50e3, pv, no_ev, closing_w=20e3)
    assert (res.battery.achieved_w, res.pv_w) == pytest.approx((30e3, 40e3))
    # Discharging ones near the lower limit hand over to the chargers; the other side's
    # closing batteries do not count.
    no_pv = PvInverters(lower_w=[], upper_w=[], rated_w=[])
    ev = EvChargers(min_w=[0.0], upper_w=[22e3], need_w=[22e3])
    res = allocate_kinds(full, -30e3, -35e3, no_pv, ev, closing_w=-10e3)
    assert (res.battery.achieved_w, res.ev_w) == pytest.approx((-30e3, -15e3))
    assert allocate_kinds(full, -30e3, -35e3, no_pv, ev, closing_w=10e3).ev_w == (
        pytest.approx(-5e3))


def test_a_share_below_min_cap_is_left_to_the_batteries() -> None:
    # The batteries deliver 99.95 kW of a 100 kW must: 50 W is not worth a PV cap.
    pv = PvInverters(lower_w=[-80e3], upper_w=[0.0], rated_w=[100e3])
    ev = EvChargers(min_w=[], upper_w=[], need_w=[])
    fleet = _one_pair(soc=89.0, power_w=99.95e3)
    res = allocate_kinds(fleet, 100e3, 100e3, pv, ev, min_cap_w=100.0)
    assert res.pv_w == 0.0
    assert not res.pv_capped.any()
    assert allocate_kinds(fleet, 100e3, 100e3, pv, ev).pv_w == pytest.approx(50.0)


def test_ev_first_spares_the_batteries() -> None:
    pv = PvInverters(lower_w=[], upper_w=[], rated_w=[])
    ev = EvChargers(min_w=[4140.0, 4140.0], upper_w=[22e3, 22e3], need_w=[22e3, 22e3])
    order = ("ev_charger", "battery_inverter", "pv_inverter")
    res = allocate_kinds(_one_pair(), -30e3, -30e3, pv, ev, order)
    assert res.ev_w == pytest.approx(-30e3)
    assert res.battery.achieved_w == pytest.approx(0.0)
    assert res.ev_setpoints_w.tolist() == pytest.approx([7e3, 7e3])
    res = allocate_kinds(_one_pair(), -30e3, -30e3, pv, ev)  # batteries first
    assert res.ev_w == 0.0
    assert res.battery.achieved_w == pytest.approx(-30e3)


@pytest.mark.parametrize(
    ("make", "field"),
    [
        (lambda: PvInverters(lower_w=[1.0], upper_w=[0.0], rated_w=[1.0]), "pv.lower_w"),
        (lambda: PvInverters(lower_w=[0.0], upper_w=[0.0], rated_w=[0.0]), "pv.rated_w"),
        (lambda: PvInverters(lower_w=[np.nan], upper_w=[0.0], rated_w=[1.0]), "pv.lower_w"),
        (lambda: EvChargers(min_w=[0.0], upper_w=[1.0], need_w=[2.0]), "ev.need_w"),
        (lambda: EvChargers(min_w=[-1.0], upper_w=[1.0], need_w=[0.0]), "ev.min_w"),
        (lambda: EvChargers(min_w=[0.0, 0.0], upper_w=[1.0], need_w=[0.0]), "ev.upper_w"),
        (lambda: allocate_kinds(_one_pair(), 0.0, 0.0,
                                PvInverters(lower_w=[], upper_w=[], rated_w=[]),
                                EvChargers(min_w=[], upper_w=[], need_w=[]),
                                ("battery_inverter", "pv_inverter")), "order"),
        (lambda: allocate_kinds(_one_pair(), 0.0, 0.0,
                                PvInverters(lower_w=[], upper_w=[], rated_w=[]),
                                EvChargers(min_w=[], upper_w=[], need_w=[]),
                                closing_w=np.nan), "closing_w"),
    ],
)
def test_bad_input_names_the_field(make: object, field: str) -> None:
    with pytest.raises(DistributionError) as err:
        make()  # type: ignore[operator]
    assert err.value.field == field
