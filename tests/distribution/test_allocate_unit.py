"""Unit tests: regression cases, semantics, validation and exclusion reporting."""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import pytest
from dist_reference import milp_nearest_total, power_scale, setpoint_violations
from dist_strategies import raw_fleets, targets
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import distribution
from distribution import (
    AllocationInvariantError,
    AllocationStatus,
    DistributionError,
    ExclusionReason,
    Fleet,
    allocate,
)


def pairs(
    socs: list[float],
    *,
    power_w: float = 100e3,
    band_w: float = 5e3,
    capacity_wh: float = 100e3,
    soc_limits: tuple[float, float] = (10.0, 90.0),
    **overrides: Any,
) -> dict[str, Any]:
    """Keyword arrays for n identical 1:1 inverter/battery pairs."""
    n = len(socs)
    kw: dict[str, Any] = {
        "inverter_lower_w": np.full(n, -power_w),
        "inverter_upper_w": np.full(n, power_w),
        "inverter_excl_lower_w": np.full(n, -band_w),
        "inverter_excl_upper_w": np.full(n, band_w),
        "battery_soc_pct": np.array(socs, dtype=float),
        "battery_soc_lower_pct": np.full(n, soc_limits[0]),
        "battery_soc_upper_pct": np.full(n, soc_limits[1]),
        "battery_capacity_wh": np.full(n, capacity_wh),
        "battery_lower_w": np.full(n, -power_w),
        "battery_upper_w": np.full(n, power_w),
        "battery_excl_lower_w": np.full(n, -band_w),
        "battery_excl_upper_w": np.full(n, band_w),
        "links": np.repeat(np.arange(n)[:, None], 2, axis=1),
    }
    kw.update(overrides)
    return kw


def group(
    inverter_w: list[float],
    battery_w: list[float],
    links: list[tuple[int, int]],
    *,
    socs: list[float] | None = None,
    capacity_wh: float = 100e3,
    **overrides: Any,
) -> dict[str, Any]:
    """Keyword arrays for inverters of ±``inverter_w[i]`` and batteries of ±``battery_w[j]``
    (SoC 50 % unless ``socs``, limits 10..90 %, no bands unless in ``overrides``),
    linked by ``links`` (inverter index, battery index)."""
    n = len(battery_w)
    kw: dict[str, Any] = {
        "inverter_lower_w": [-w for w in inverter_w],
        "inverter_upper_w": list(inverter_w),
        "battery_soc_pct": [50.0] * n if socs is None else socs,
        "battery_soc_lower_pct": [10.0] * n,
        "battery_soc_upper_pct": [90.0] * n,
        "battery_capacity_wh": [capacity_wh] * n,
        "battery_lower_w": [-w for w in battery_w],
        "battery_upper_w": list(battery_w),
        "links": np.array(links),
    }
    kw.update(overrides)
    return kw


def assert_in_allowed_set(kw: dict[str, Any], s: np.ndarray) -> None:
    """Every setpoint of a 1:1 fleet inside inverter and battery sets."""
    for lo, hi, el, eu in (
        ("inverter_lower_w", "inverter_upper_w", "inverter_excl_lower_w", "inverter_excl_upper_w"),
        ("battery_lower_w", "battery_upper_w", "battery_excl_lower_w", "battery_excl_upper_w"),
    ):
        assert np.all((s == 0) | ((s >= kw[lo]) & (s <= kw[hi])))
        assert not np.any((s != 0) & (s > kw[el]) & (s < kw[eu]))


# ----------------------------------------------------------------- regression (frequenz-sdk)


@pytest.mark.parametrize(
    ("socs", "target_w"),
    [
        ([60.0, 89.0, 89.0, 89.0], 25e3),  # the SDK sets 4 x 5 kW = 20 kW, reports nothing missing
        ([30.0, 88.0, 88.0, 88.0, 88.0], 30e3),
        ([40.0, 11.0, 11.0, 11.0], -25e3),  # mirror image: discharging
        ([70.0, 12.0, 12.0, 12.0, 12.0], -30e3),
    ],
)
def test_sdk_regression_total_is_exact(socs: list[float], target_w: float) -> None:
    kw = pairs(socs)
    res = allocate(Fleet(**kw), target_w)
    assert res.status is AllocationStatus.EXACT
    assert res.achieved_w == pytest.approx(target_w, rel=1e-12)
    assert res.remaining_w == pytest.approx(0.0, abs=1e-6)
    assert_in_allowed_set(kw, res.setpoints_w)


def test_sdk_regression_prefers_the_battery_with_headroom() -> None:
    # Water-filling gives 22.7 kW to battery 0 and 0.76 kW to each nearly full one:
    # those are inside the 5 kW band, so they go to 0 and battery 0 takes all 25 kW.
    res = allocate(Fleet(**pairs([60.0, 89.0, 89.0, 89.0])), 25e3)
    np.testing.assert_allclose(res.setpoints_w, [25e3, 0.0, 0.0, 0.0])
    assert res.method == "repair"


# ----------------------------------------------------------------- water-filling semantics


@pytest.mark.parametrize(
    ("exponent", "expected"),
    # SoC 70 % and 50 % with limits 20-80 %: headroom 10 and 30 (frequenz-sdk's docs table).
    [(0.0, [4000.0, 4000.0]), (1.0, [2000.0, 6000.0]), (2.0, [800.0, 7200.0]),
     (3.0, [8000.0 / 28.0, 8000.0 * 27.0 / 28.0])],
)
def test_soc_exponent_weights(exponent: float, expected: list[float]) -> None:
    kw = pairs([70.0, 50.0], band_w=0.0, soc_limits=(20.0, 80.0))
    res = allocate(Fleet(**kw), 8000.0, soc_exponent=exponent)
    np.testing.assert_allclose(res.setpoints_w, expected, rtol=1e-12)


def test_capacity_share_and_clipping() -> None:
    # Capacities 1:3, exponent 0; battery 1 is capped at 5 kW, the rest flows to battery 0.
    kw = pairs([50.0, 50.0], band_w=0.0)
    kw["battery_capacity_wh"] = np.array([10e3, 30e3])
    kw["battery_upper_w"] = np.array([100e3, 5e3])
    res = allocate(Fleet(**kw), 12e3, soc_exponent=0.0)
    np.testing.assert_allclose(res.setpoints_w, [7e3, 5e3])
    assert res.group_at_upper.tolist() == [False, True]


def test_zero_target_is_all_zero() -> None:
    res = allocate(Fleet(**pairs([50.0, 50.0])), 0.0)
    assert res.status is AllocationStatus.EXACT
    assert res.method == "zero"
    assert res.setpoints_w.tolist() == [0.0, 0.0]


def test_saturation_is_a_status_with_bounds() -> None:
    fleet = Fleet(**pairs([50.0, 95.0]))  # battery 1 above its upper SoC: no charging
    assert fleet.upper_w == 100e3
    assert fleet.lower_w == -200e3
    up = allocate(fleet, 1e9)
    assert up.status is AllocationStatus.SATURATED_UPPER
    assert up.setpoints_w.tolist() == [100e3, 0.0]
    assert up.fleet_upper_w == 100e3
    assert up.remaining_w == 1e9 - 100e3
    assert up.group_at_upper.all()
    down = allocate(fleet, -1e9)
    assert down.status is AllocationStatus.SATURATED_LOWER
    assert down.setpoints_w.tolist() == [-100e3, -100e3]


def test_soc_limits_block_one_direction() -> None:
    fleet = Fleet(**pairs([90.0, 90.0]))  # at the upper limit
    res = allocate(fleet, 10e3)
    assert res.status is AllocationStatus.NOTHING_AVAILABLE
    assert res.setpoints_w.tolist() == [0.0, 0.0]
    res = allocate(fleet, -10e3)
    assert res.status is AllocationStatus.EXACT
    assert res.achieved_w == pytest.approx(-10e3)
    empty = Fleet(**pairs([10.0, 5.0]))  # at / below the lower limit
    assert allocate(empty, -10e3).status is AllocationStatus.NOTHING_AVAILABLE


def test_unreachable_inside_band_reports_nearest() -> None:
    # One pair, band 5 kW: 2 kW is unreachable; nearest reachable totals are 0 and 5 kW.
    res = allocate(Fleet(**pairs([50.0])), 2e3)
    assert res.status is AllocationStatus.NEAREST_REACHABLE
    assert res.achieved_w == 0.0
    assert res.remaining_w == 2e3
    res = allocate(Fleet(**pairs([50.0])), 3e3)
    assert res.status is AllocationStatus.NEAREST_REACHABLE
    assert res.achieved_w == 5e3
    assert "unreachable" in res.message


def test_band_sized_target_uses_opposite_groups_when_needed() -> None:
    # 3 kW with 5 kW bands everywhere is only reachable as +8 kW and -5 kW.
    kw = pairs([50.0] * 4)
    res = allocate(Fleet(**kw), 3e3)
    assert res.status is AllocationStatus.EXACT
    assert res.achieved_w == pytest.approx(3e3)
    assert_in_allowed_set(kw, res.setpoints_w)


def test_links_none_means_one_to_one() -> None:
    kw = pairs([60.0, 89.0, 89.0, 89.0])
    kw["links"] = None
    res = allocate(Fleet(**kw), 25e3)
    assert res.achieved_w == pytest.approx(25e3)


# ----------------------------------------------------------------- topologies


def test_two_inverters_one_battery_split_respects_each_band() -> None:
    kw = group(
        [10e3, 50e3],
        [60e3],
        [(0, 0), (1, 0)],
        inverter_excl_lower_w=[-2e3, -8e3],
        inverter_excl_upper_w=[2e3, 8e3],
    )
    fleet = Fleet(**kw)
    assert fleet.n_groups == 1
    assert fleet.upper_w == 60e3
    for target in (3e3, 9e3, 15e3, 59e3, -3e3, -42e3):
        res = allocate(fleet, target)
        assert res.status is AllocationStatus.EXACT, target
        assert res.achieved_w == pytest.approx(target)
        s = res.setpoints_w
        assert np.all((s == 0) | ((np.abs(s) >= [2e3, 8e3]) & (np.abs(s) <= [10e3, 50e3])))
        assert not (s.min() < 0 < s.max())
    # 1 kW is inside the smallest inverter band: nearest reachable is 0 W.
    assert allocate(fleet, 1e3).achieved_w == 0.0


def test_one_inverter_two_batteries_uses_summed_dc_bounds_and_widest_band() -> None:
    kw = group(
        [100e3],
        [20e3, 30e3],
        [(0, 0), (0, 1)],
        socs=[50.0, 60.0],
        capacity_wh=50e3,
        battery_excl_lower_w=[-1e3, -2e3],
        battery_excl_upper_w=[1e3, 2e3],
    )
    fleet = Fleet(**kw)
    assert fleet.upper_w == 50e3
    assert allocate(fleet, 80e3).setpoints_w.tolist() == [50e3]
    # Band of the pair: 2 x widest (2 kW) = 4 kW.
    res = allocate(fleet, 3e3)
    assert res.status is AllocationStatus.NEAREST_REACHABLE
    assert res.achieved_w == 4e3


def test_one_unavailable_inverter_of_a_pair_leaves_the_other() -> None:
    kw = group(
        [10e3, 10e3], [60e3], [(0, 0), (1, 0)], inverter_available=np.array([True, False])
    )
    res = allocate(Fleet(**kw), 15e3)
    assert res.status is AllocationStatus.SATURATED_UPPER
    assert res.setpoints_w.tolist() == [10e3, 0.0]
    assert res.inverter_exclusion.tolist() == [0, ExclusionReason.UNAVAILABLE]


# ----------------------------------------------------------------- exclusions (never raise)


def test_live_data_problems_exclude_with_reasons() -> None:
    kw = pairs([50.0] * 7, band_w=0.0)
    kw["inverter_upper_w"][0] = np.nan  # NOT_FINITE
    kw["inverter_lower_w"][1] = 5e3  # lower > 0: INVALID_BOUNDS
    kw["inverter_excl_lower_w"][2] = 1e3  # band not around 0: BAND_OUTSIDE_INTERVAL
    kw["inverter_excl_upper_w"][2] = 2e3
    kw["battery_soc_pct"][3] = np.nan  # battery NOT_FINITE -> inverter GROUP_UNUSABLE
    kw["battery_capacity_wh"][4] = 0.0  # INVALID_BOUNDS
    kw["inverter_available"] = np.array([True, True, True, True, True, False, True])
    res = allocate(Fleet(**kw), 50e3)
    r = ExclusionReason
    assert res.inverter_exclusion.tolist() == [
        r.NOT_FINITE, r.INVALID_BOUNDS, r.BAND_OUTSIDE_INTERVAL,
        r.GROUP_UNUSABLE, r.GROUP_UNUSABLE, r.UNAVAILABLE, r.INCLUDED,
    ]
    assert res.battery_exclusion.tolist() == [
        r.GROUP_UNUSABLE, r.GROUP_UNUSABLE, r.GROUP_UNUSABLE,
        r.NOT_FINITE, r.INVALID_BOUNDS, r.GROUP_UNUSABLE, r.INCLUDED,
    ]
    assert res.setpoints_w.tolist() == [0.0] * 6 + [50e3]
    assert res.status is AllocationStatus.EXACT
    assert res.fleet_upper_w == 100e3


def test_band_past_a_soc_shrunk_interval_only_empties_that_side() -> None:
    # A full battery: its inverter may not charge (upper 0) but keeps its ±5 kW band.
    kw = pairs([89.9, 50.0], band_w=5e3)
    kw["inverter_upper_w"][0] = 0.0
    res = allocate(Fleet(**kw), -60e3)
    assert res.inverter_exclusion.tolist() == [0, 0]
    assert res.achieved_w == pytest.approx(-60e3)
    assert res.setpoints_w[0] < -5e3
    charge = allocate(Fleet(**kw), 30e3)
    assert charge.setpoints_w[0] == 0.0
    assert charge.achieved_w == pytest.approx(30e3)


def test_unlinked_components_are_excluded() -> None:
    kw = pairs([50.0, 50.0], band_w=0.0)
    kw["links"] = np.array([[0, 0]])
    res = allocate(Fleet(**kw), 150e3)
    assert res.inverter_exclusion.tolist() == [0, ExclusionReason.UNLINKED]
    assert res.battery_exclusion.tolist() == [0, ExclusionReason.UNLINKED]
    assert res.setpoints_w.tolist() == [100e3, 0.0]


def test_battery_fault_excludes_whole_multi_battery_group() -> None:
    kw = group(
        [100e3, 100e3],
        [20e3] * 3,
        [(0, 0), (0, 1), (1, 2)],
        socs=[50.0, np.nan, 50.0],
        capacity_wh=50e3,
    )
    res = allocate(Fleet(**kw), 30e3)
    assert res.setpoints_w.tolist() == [0.0, 20e3]
    assert res.battery_exclusion.tolist() == [
        ExclusionReason.GROUP_UNUSABLE, ExclusionReason.NOT_FINITE, 0
    ]
    assert res.inverter_exclusion.tolist() == [ExclusionReason.GROUP_UNUSABLE, 0]


# ----------------------------------------------------------------- validation (raises)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("inverter_upper_w", np.zeros(3)),
        ("inverter_lower_w", np.zeros((2, 2))),
        ("inverter_excl_upper_w", [1.0]),
        ("battery_soc_pct", 50.0),
        ("battery_upper_w", np.zeros(5)),
        ("battery_capacity_wh", np.array([100e3, -1.0])),
        ("battery_lower_w", ["a", "b"]),
        ("links", np.array([[0, 0, 0]])),
        ("links", np.array([[0.0, 0.0], [1.0, 1.0]])),
        ("links", np.array([[0, 0], [2, 1]])),
        ("links", np.array([[0, 0], [1, -1]])),
        ("inverter_available", np.array([1, 1])),
        ("battery_available", np.array([True])),
    ],
)
def test_structural_errors_name_the_field(field: str, value: Any) -> None:
    kw = pairs([50.0, 50.0])
    kw[field] = value
    with pytest.raises(DistributionError) as info:
        Fleet(**kw)
    assert info.value.field == field
    assert field in str(info.value)
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize(
    ("target", "exponent", "field"),
    [
        (float("nan"), 1.0, "target_w"),
        (float("inf"), 1.0, "target_w"),
        ("x", 1.0, "target_w"),
        (1e3, -1.0, "soc_exponent"),
        (1e3, float("nan"), "soc_exponent"),
    ],
)
def test_allocate_errors_name_the_field(target: Any, exponent: float, field: str) -> None:
    fleet = Fleet(**pairs([50.0]))
    with pytest.raises(DistributionError) as info:
        allocate(fleet, target, soc_exponent=exponent)
    assert info.value.field == field


def test_links_none_with_unequal_counts_raises() -> None:
    kw = pairs([50.0, 50.0])
    kw["links"] = None
    kw["inverter_lower_w"] = np.full(3, -1.0)
    for k in ("inverter_upper_w", "inverter_excl_lower_w", "inverter_excl_upper_w"):
        kw[k] = np.zeros(3)
    with pytest.raises(DistributionError, match="links"):
        Fleet(**kw)


def test_too_many_inverters_in_a_group_raises() -> None:
    m = distribution.MAX_GROUP_INVERTERS + 1
    kw = group([1.0] * m, [1.0], [(i, 0) for i in range(m)], capacity_wh=1.0)
    with pytest.raises(DistributionError, match="links"):
        Fleet(**kw)


# ----------------------------------------------------------------- re-check and fallbacks


def test_recheck_fails_loudly_on_a_bound_violation(monkeypatch: pytest.MonkeyPatch) -> None:
    from distribution import _allocate

    def broken(w: np.ndarray, hi: np.ndarray, target: float) -> np.ndarray:
        return hi * 1.5  # outside every upper bound

    monkeypatch.setattr(_allocate, "water_fill_upper", broken)
    with pytest.raises(AllocationInvariantError, match="violates"):
        allocate(Fleet(**pairs([50.0, 50.0], band_w=0.0)), 10e3)


def test_recheck_catches_band_bound_and_soc_violations() -> None:
    from distribution import _allocate

    fleet = Fleet(**pairs([50.0, 50.0]))
    for bad in ([1e3, 0.0], [0.0, -4999.0], [200e3, 0.0]):
        s = np.array(bad)
        with pytest.raises(AllocationInvariantError):
            _allocate._recheck(fleet, s, s)
    full = Fleet(**pairs([95.0, 50.0]))
    with pytest.raises(AllocationInvariantError, match="SoC"):
        _allocate._recheck(full, np.array([10e3, 0.0]), np.array([10e3, 0.0]))


def test_recheck_catches_group_dc_violation(monkeypatch: pytest.MonkeyPatch) -> None:
    from distribution import _allocate

    kw = pairs([50.0, 50.0], band_w=0.0)
    kw["links"] = np.array([[0, 0], [1, 0]])  # two inverters on battery 0, battery 1 unlinked
    fleet = Fleet(**kw)
    monkeypatch.setattr(_allocate, "_split", lambda f, p: np.array([100e3, 100e3]))
    with pytest.raises(AllocationInvariantError, match="group"):
        allocate(fleet, 50e3)


@settings(max_examples=int(os.environ.get("DIST_EXAMPLES", "25")), derandomize=True, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(data=st.data())
def test_milp_fallback_matches_reference(data: Any) -> None:
    """Force the MILP fallback (reachable-set search disabled) and compare."""
    from distribution import _exact

    f = data.draw(raw_fleets(bands=True, max_groups=4))
    target = data.draw(targets(f).filter(lambda t: abs(t) >= 100.0))
    old = _exact.MAX_INTERVALS
    _exact.MAX_INTERVALS = 0
    try:
        res = allocate(Fleet(**f.kwargs()), target)
    finally:
        _exact.MAX_INTERVALS = old
    assert not setpoint_violations(f, res.setpoints_w)
    ref = milp_nearest_total(f, target)
    scale = max(abs(target), power_scale(f))
    assert abs(abs(res.achieved_w - target) - abs(ref - target)) <= 1e-6 * scale


@settings(max_examples=int(os.environ.get("DIST_EXAMPLES", "60")), derandomize=True,
          deadline=None)
@given(
    his=st.lists(st.floats(100.0, 1e5), min_size=1, max_size=6),
    band_frac=st.sampled_from([0.0, 0.3, 0.9, 1.0]),
    t_frac=st.floats(-1.1, 1.1),
)
def test_one_to_one_matches_brute_force(his: list[float], band_frac: float, t_frac: float) -> None:
    """Non-round bounds and bands up to the full interval (subset-sum shaped).

    Reference: every combination of (negative piece, 0, positive piece) per
    pair, each giving an interval of totals; the nearest distance over all.
    """
    import itertools

    hi = np.array(his)
    band = band_frac * hi
    kw = pairs([50.0] * len(his), band_w=0.0)
    kw.update(
        inverter_lower_w=-hi, inverter_upper_w=hi,
        inverter_excl_lower_w=-band, inverter_excl_upper_w=band,
        battery_lower_w=-hi, battery_upper_w=hi,
    )
    target = t_frac * float(hi.sum())
    res = allocate(Fleet(**kw), target)
    assert_in_allowed_set(kw, res.setpoints_w)
    pieces = [((-h, -b), (0.0, 0.0), (b, h)) for h, b in zip(hi, band, strict=True)]
    best = min(
        max(sum(p[0] for p in combo) - target, target - sum(p[1] for p in combo), 0.0)
        for combo in itertools.product(*pieces)
    )
    assert abs(abs(res.achieved_w - target) - best) <= 1e-9 * float(hi.sum())
