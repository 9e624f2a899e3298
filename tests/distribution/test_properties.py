"""Property tests: random fleets of every topology against independent references."""

from __future__ import annotations

from typing import Any

import numpy as np
from dist_reference import (
    bisection_group_powers,
    milp_nearest_total,
    power_scale,
    setpoint_violations,
)
from dist_strategies import SHAPES, heterogeneous_fleet, raw_fleets, targets
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from distribution import AllocationStatus, Fleet, allocate

SETTINGS = settings(
    max_examples=int(__import__("os").environ.get("DIST_EXAMPLES", "60")),
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


def _check_against_milp(f: Any, target: float) -> None:
    res = allocate(Fleet(**f.kwargs()), target)
    problems = setpoint_violations(f, res.setpoints_w)
    assert not problems, problems
    assert res.achieved_w == float(res.setpoints_w.sum())
    ref = milp_nearest_total(f, target)
    # The reference is exact up to HiGHS' tolerances, which are absolute in the
    # fleet's power scale; the library must meet a reachable target to 1e-6 rel.
    scale = max(abs(target), power_scale(f))
    tol_ref = 1e-6 * scale
    tol = 1e-6 * max(1.0, abs(target))
    mine = abs(res.achieved_w - target)
    best = abs(ref - target)
    if best <= tol_ref:
        # Reachable as far as the reference can tell: met to 1e-6 relative, unless
        # the library proves it unreachable by a margin below the reference's precision.
        assert mine <= tol or (
            mine <= tol_ref
            and res.status
            in (AllocationStatus.NEAREST_REACHABLE, AllocationStatus.NOTHING_AVAILABLE)
        ), (res.achieved_w, target, ref, res.status)
        assert res.status is not AllocationStatus.APPROXIMATE
    else:
        # Unreachable: the distance must equal the reference's nearest distance.
        assert abs(mine - best) <= tol_ref, (res.achieved_w, ref, target, res.status)
        assert res.status is not AllocationStatus.EXACT


@SETTINGS
@given(data=st.data(), shape=st.sampled_from(SHAPES))
def test_bands_match_milp_reference(data: Any, shape: str) -> None:
    f = data.draw(raw_fleets(shape=shape, bands=True))
    target = data.draw(targets(f))
    _check_against_milp(f, target)


@SETTINGS
@given(data=st.data())
def test_faulty_components_excluded_and_exact(data: Any) -> None:
    f = data.draw(raw_fleets(bands=True, faults=True, max_groups=4))
    target = data.draw(targets(f))
    _check_against_milp(f, target)
    res = allocate(Fleet(**f.kwargs()), target)
    for i, code in enumerate(res.inverter_exclusion):
        if code:
            assert res.setpoints_w[i] == 0.0


@SETTINGS
@given(
    data=st.data(),
    shape=st.sampled_from(SHAPES),
    exponent=st.sampled_from([0.0, 0.5, 1.0, 2.0]),
)
def test_no_bands_matches_bisection_waterfill(data: Any, shape: str, exponent: float) -> None:
    f = data.draw(raw_fleets(shape=shape, bands=False))
    target = data.draw(targets(f))
    fleet = Fleet(**f.kwargs())
    res = allocate(fleet, target, soc_exponent=exponent)
    assert res.method in ("waterfill", "zero")
    assert not setpoint_violations(f, res.setpoints_w)
    ref = bisection_group_powers(f, target, exponent)
    scale = max(1.0, max((abs(x) for x in f.inv_lo + f.inv_hi), default=1.0))
    groups = fleet.inverter_group
    for first_inv, power in ref.items():
        mine = float(res.setpoints_w[groups == groups[first_inv]].sum())
        assert abs(mine - power) <= 1e-6 * scale, (first_inv, mine, power)


@SETTINGS
@given(data=st.data())
def test_saturation_and_direction(data: Any) -> None:
    f = data.draw(raw_fleets(bands=True))
    fleet = Fleet(**f.kwargs())
    up = allocate(fleet, fleet.upper_w + 1e6)
    assert up.status in (AllocationStatus.SATURATED_UPPER, AllocationStatus.NOTHING_AVAILABLE)
    assert np.isclose(up.achieved_w, fleet.upper_w)
    down = allocate(fleet, fleet.lower_w - 1e6)
    assert down.status in (AllocationStatus.SATURATED_LOWER, AllocationStatus.NOTHING_AVAILABLE)
    assert np.isclose(down.achieved_w, fleet.lower_w)
    assert not setpoint_violations(f, up.setpoints_w)
    assert not setpoint_violations(f, down.setpoints_w)


# --------------------------------------------------------------- the one-piece-per-side repair


def _generic(fleet: Fleet) -> Fleet:
    """The same fleet, told to take the generic band path (the (n, 3) piece table)."""
    fleet._simple = False
    return fleet


def _assert_same(fast: Any, slow: Any, scale: float) -> None:
    assert fast.method == slow.method, (fast.method, slow.method)
    assert fast.status is slow.status, (fast.status, slow.status)
    diff = float(np.abs(fast.setpoints_w - slow.setpoints_w).max(initial=0.0))
    assert diff <= 1e-12 * max(1.0, scale), (diff, fast.setpoints_w, slow.setpoints_w)


@SETTINGS
@given(data=st.data(), shape=st.sampled_from(SHAPES), faults=st.booleans())
def test_one_piece_repair_matches_the_generic_step(data: Any, shape: str, faults: bool) -> None:
    """`_repair_simple` (closed-form pieces, Newton re-solve) = the generic step 2."""
    f = data.draw(raw_fleets(shape=shape, bands=True, faults=faults, max_groups=8))
    fleet = Fleet(**f.kwargs())
    assume(fleet._simple)
    target = data.draw(targets(f))
    _assert_same(
        allocate(fleet, target), allocate(_generic(Fleet(**f.kwargs())), target), power_scale(f)
    )


def test_one_piece_repair_matches_the_generic_step_on_seeded_fleets() -> None:
    """Heterogeneous 1:1 fleets (random bounds, bands, SoC, some at a limit): same results."""
    rng = np.random.default_rng(19)
    methods: set[str] = set()
    for _ in range(300):
        f = heterogeneous_fleet(rng, int(rng.integers(1, 300)))
        fleet = Fleet(**f.kwargs())
        scale = power_scale(f)
        for target in (
            0.6 * fleet.upper_w, 0.6 * fleet.lower_w, 0.05 * fleet.upper_w,
            float(rng.uniform(fleet.lower_w, fleet.upper_w)), float(rng.uniform(-20e3, 20e3)),
            3e3,
        ):
            fast = allocate(fleet, target)
            _assert_same(fast, allocate(_generic(Fleet(**f.kwargs())), target), scale)
            assert not setpoint_violations(f, fast.setpoints_w)
            methods.add(fast.method)
    assert {"repair", "exact"} <= methods
