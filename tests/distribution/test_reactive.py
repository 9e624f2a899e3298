"""The reactive-power allocator: exact totals, the circle, priorities, the best feasible."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from distribution import (
    DistributionError,
    active_limit_w,
    allocate_reactive,
    limit_active_bounds,
)

SETTINGS = settings(max_examples=80, derandomize=True, deadline=None)


@st.composite
def fleets(draw: st.DrawFn) -> tuple[np.ndarray, ...]:
    """Random inverters: reactive bounds, apparent rating, active power, availability."""
    n = draw(st.integers(1, 8))
    floats = st.floats(0.0, 200_000.0)
    rated = np.array(draw(st.lists(floats, min_size=n, max_size=n)))
    s = np.array(draw(st.lists(st.floats(1_000.0, 250_000.0), min_size=n, max_size=n)))
    frac = np.array(draw(st.lists(st.floats(-1.2, 1.2), min_size=n, max_size=n)))
    avail = np.array(draw(st.lists(st.booleans(), min_size=n, max_size=n)), dtype=np.bool_)
    return -rated, rated, s, frac * s, avail


def _capability(lo: np.ndarray, hi: np.ndarray, s: np.ndarray, p: np.ndarray,
                avail: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Independent reference of the per-inverter range (loops, math.sqrt)."""
    up, down = np.zeros(len(s)), np.zeros(len(s))
    for i in range(len(s)):
        if not avail[i]:
            continue
        r = math.sqrt(max(s[i] ** 2 - p[i] ** 2, 0.0))
        up[i] = max(0.0, min(hi[i], r))
        down[i] = min(0.0, max(lo[i], -r))
    return down, up


@SETTINGS
@given(fleets(), st.floats(-1.5, 1.5))
def test_exact_total_proportional_and_inside_circle(fleet: tuple[np.ndarray, ...],
                                                    share: float) -> None:
    lo, hi, s, p, avail = fleet
    down, up = _capability(lo, hi, s, p, avail)
    target = share * (up.sum() if share > 0 else -down.sum())
    res = allocate_reactive(target, lo, hi, s, p, avail)
    q = res.setpoints_var
    assert np.all(q[~avail] == 0.0)
    assert np.all(q >= lo - 1e-6)
    assert np.all(q <= hi + 1e-6)
    nz = q != 0.0
    assert np.all((q * q + p * p)[nz] <= (s[nz] + 1e-6) ** 2 + 1e-3)
    feasible = min(max(target, down.sum()), up.sum())
    assert res.achieved_var == pytest.approx(feasible, rel=1e-9, abs=1e-6)
    # proportional to capability in the target's direction (closed-form reference)
    cap = up if feasible > 0 else -down
    if cap.sum() > 0:
        np.testing.assert_allclose(q, cap * feasible / cap.sum(), rtol=1e-9, atol=1e-6)
    if abs(share) <= 1.0:
        assert res.status in ("EXACT", "NOTHING_AVAILABLE")
    elif cap.sum() > 0:
        assert res.status == "SATURATED"  # the best feasible: every inverter gives all it can


def test_p_first_leaves_q_what_the_circle_allows() -> None:
    # S = 100 kVA, P = 80 kW: 60 kVAr left although the reactive rating is 90 kVAr.
    res = allocate_reactive(100_000.0, [-90e3], [90e3], [100e3], [80e3])
    assert res.setpoints_var[0] == pytest.approx(60e3)
    assert res.status == "SATURATED"
    assert res.upper_var == pytest.approx(60e3)


def test_q_first_limits_p_to_the_rest_of_the_circle() -> None:
    res = allocate_reactive(-120e3, [-90e3, -90e3], [90e3, 90e3], [100e3, 100e3])
    np.testing.assert_allclose(res.setpoints_var, [-60e3, -60e3])
    lim = active_limit_w([100e3, 100e3], res.setpoints_var)
    np.testing.assert_allclose(lim, [80e3, 80e3])
    lo, hi, el, eu = limit_active_bounds(
        np.array([-100e3, -100e3]), np.array([100e3, 100e3]),
        np.array([0.0, -90e3]), np.array([0.0, 90e3]), lim,
    )
    np.testing.assert_allclose(lo, [-80e3, 0.0])  # a band past the limit leaves only 0 W
    np.testing.assert_allclose(hi, [80e3, 0.0])
    np.testing.assert_allclose(el, [0.0, 0.0])
    np.testing.assert_allclose(eu, [0.0, 0.0])


def test_no_rating_means_only_the_reactive_bounds() -> None:
    res = allocate_reactive(50e3, [-30e3, -30e3], [30e3, 30e3], [math.inf, math.nan],
                            [1e6, 1e6])
    np.testing.assert_allclose(res.setpoints_var, [25e3, 25e3])
    assert np.all(np.isinf(active_limit_w([math.inf], [10e3])))


def test_unusable_bounds_and_unavailable_get_zero() -> None:
    res = allocate_reactive(10e3, [math.nan, -5e3, -5e3], [5e3, 5e3, 5e3], [1e4] * 3,
                            None, np.array([True, False, True]))
    np.testing.assert_allclose(res.setpoints_var, [0.0, 0.0, 5e3])
    assert res.status == "SATURATED"
    none = allocate_reactive(1e3, [-5e3], [5e3], [1e4], None, np.array([False]))
    assert none.status == "NOTHING_AVAILABLE"
    assert none.achieved_var == 0.0


@pytest.mark.parametrize(
    ("args", "field"),
    [
        ((math.nan, [0.0], [0.0], [1.0]), "target_var"),
        ((1.0, [0.0], [0.0, 1.0], [1.0]), "q_upper_var"),
        ((1.0, [0.0], [0.0], [-1.0]), "apparent_va"),
        ((1.0, [[0.0]], [0.0], [1.0]), "q_lower_var"),
    ],
)
def test_bad_input_names_the_argument(args: tuple[object, ...], field: str) -> None:
    with pytest.raises(DistributionError) as err:
        allocate_reactive(*args)  # type: ignore[arg-type]
    assert err.value.field == field
