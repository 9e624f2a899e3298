"""Droop curves at their characteristic points and cycle-by-cycle frequency response.

Convention: ``droop`` is the activation (+1 = full discharge at under-frequency);
battery power = −reserved_power_w × droop(f − f0) (+ = charging).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from actors.power_manager import merge
from controller.runtime.strategies import (
    DroopCurve,
    FrequencyResponse,
    FrequencyResponseConfig,
    StrategyInputs,
    droop,
    soc_band_pct,
)

KW = 1_000.0
LINEAR = DroopCurve.linear()  # 10 mHz → 0, 200 mHz → 1
KNEE = DroopCurve.knee()  # 15 mHz → 0, 200 mHz → 0.05, 500 mHz → 1


@pytest.mark.parametrize(
    ("df_hz", "activation"),
    [
        (0.0, 0.0),
        (0.005, 0.0),
        (0.010, 0.0),  # deadband edge
        (-0.010, 0.0),
        (-0.105, 0.5),  # (0.105 − 0.010) / (0.200 − 0.010) = 0.5, under-frequency → discharge
        (0.105, -0.5),
        (-0.200, 1.0),  # full activation
        (0.200, -1.0),
        (-0.350, 1.0),  # beyond: saturated
        (0.800, -1.0),
        (-0.0195, 0.05),  # (0.0195 − 0.010) / 0.190 = 0.05
    ],
)
def test_linear_curve_characteristic_points(df_hz: float, activation: float) -> None:
    assert droop(df_hz, LINEAR) == pytest.approx(activation, abs=1e-12)


@pytest.mark.parametrize(
    ("df_hz", "activation"),
    [
        (0.015, 0.0),  # deadband edge
        (-0.015, 0.0),
        (-0.1075, 0.025),  # halfway from 15 to 200 mHz: 0.05 / 2
        (-0.200, 0.05),  # the knee
        (0.200, -0.05),
        (-0.350, 0.525),  # halfway from 200 to 500 mHz: 0.05 + 0.95 / 2
        (-0.500, 1.0),  # full activation
        (0.500, -1.0),
        (-0.700, 1.0),  # beyond
    ],
)
def test_knee_curve_characteristic_points(df_hz: float, activation: float) -> None:
    assert droop(df_hz, KNEE) == pytest.approx(activation, abs=1e-12)


def test_nan_deviation_stays_nan() -> None:
    assert math.isnan(droop(math.nan, LINEAR))
    out = droop(np.array([math.nan, -0.2]), LINEAR)
    assert math.isnan(out[0])
    assert out[1] == 1.0


@given(
    st.lists(st.floats(-1.0, 1.0, allow_nan=False), min_size=1, max_size=50),
    st.sampled_from([LINEAR, KNEE, DroopCurve((0.0, 0.1, 0.3, 0.4), (0.0, 0.2, 0.2, 1.0))]),
)
def test_vectorised_equals_scalar_and_is_odd_and_monotone(
    dfs: list[float], curve: DroopCurve
) -> None:
    arr = np.array(dfs)
    vec = droop(arr, curve)
    assert vec.shape == arr.shape
    for df, v in zip(dfs, vec, strict=True):
        assert v == pytest.approx(droop(df, curve), abs=1e-12)
        assert droop(-df, curve) == pytest.approx(-droop(df, curve), abs=1e-12)
        assert -1.0 <= v <= 1.0
    order = np.argsort(arr)
    assert np.all(np.diff(vec[order]) <= 1e-12)  # activation falls as frequency rises


@pytest.mark.parametrize(
    ("df_hz", "fraction", "message"),
    [
        ((0.1, 0.05), (0.0, 1.0), "strictly increasing"),
        ((0.01, 0.2), (0.1, 1.0), "must start at 0"),
        ((0.01, 0.2), (0.0, 0.9), "end at 1"),
        ((0.01,), (0.0,), "at least 2"),
        ((0.01, math.nan), (0.0, 1.0), "must be finite"),
    ],
)
def test_bad_curve_is_rejected_naming_the_field(
    df_hz: tuple[float, ...], fraction: tuple[float, ...], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        DroopCurve(df_hz, fraction)


def test_soc_band_from_capacity_power_and_duration() -> None:
    # 40 kW for 900 s = 10 kWh = 10 % of 100 kWh → [10 + 10, 90 − 10] = [20, 80].
    assert soc_band_pct(100 * KW, 40 * KW, 900.0, 10.0, 90.0) == pytest.approx((20.0, 80.0))
    # 200 kW for 900 s = 50 kWh = 50 % → band empty → midpoint of [10, 90] = 50.
    assert soc_band_pct(100 * KW, 200 * KW, 900.0, 10.0, 90.0) == (50.0, 50.0)
    assert all(math.isnan(x) for x in soc_band_pct(0.0, 40 * KW, 900.0))
    assert all(math.isnan(x) for x in soc_band_pct(math.nan, 40 * KW, 900.0))


CFG = FrequencyResponseConfig(
    reserved_power_w=40 * KW, hold_duration_s=900.0, soc_management_power_w=5 * KW
)


def _inputs(freq: float, soc: float = 50.0) -> StrategyInputs:
    # Fleet: 100 kWh, SoC limits [10, 90] → SoC band [20, 80] for 40 kW × 15 min.
    return StrategyInputs(
        grid_power_w=200 * KW,
        battery_power_w=0.0,
        grid_frequency_hz=freq,
        soc_pct=soc,
        capacity_wh=100 * KW,
        soc_lower_pct=10.0,
        soc_upper_pct=90.0,
        fleet_lower_w=-100 * KW,
        fleet_upper_w=100 * KW,
    )


def test_cycle_by_cycle_frequency_step_linear_curve() -> None:
    # P = −40 kW × droop(f − 50); SoC 50 % (inside the band [20, 80] → no nudge).
    # k  f        Δf       activation           P (KW)
    # 0  50.000    0        0                     0
    # 1  49.990  −0.010     0 (deadband edge)     0
    # 2  49.895  −0.105     0.5                 −20
    # 3  49.800  −0.200     1                   −40
    # 4  49.700  −0.300     1 (beyond)          −40
    # 5  50.105  +0.105    −0.5                 +20
    # 6  50.250  +0.250    −1                   +40
    fr = FrequencyResponse(CFG)
    rows = [
        (50.0, 0.0),
        (49.99, 0.0),
        (49.895, -20.0),
        (49.8, -40.0),
        (49.7, -40.0),
        (50.105, 20.0),
        (50.25, 40.0),
    ]
    for k, (f, p_kw) in enumerate(rows):
        wish = fr.step(_inputs(f), now=0.1 * k)
        assert wish.preferred_w == pytest.approx(p_kw * KW, abs=1e-6), k
        if p_kw == 0.0:
            assert wish.preferred_w == 0.0  # exactly 0 at the deadband edge
        # It needs exactly its droop power: the bounds are the point itself.
        assert wish.lower_w == wish.preferred_w == wish.upper_w
        assert wish.priority == 20
        assert fr.required_power_w(f) == pytest.approx(p_kw * KW, abs=1e-6)


def test_cycle_by_cycle_knee_curve() -> None:
    # P = −100 kW × knee(Δf).
    # f 49.985 → edge → 0;  49.8 → knee 0.05 → −5 kW;  49.65 → 0.525 → −52.5 kW;
    # 49.5 → 1 → −100 kW;  50.5 → −1 → +100 kW.
    fr = FrequencyResponse(FrequencyResponseConfig(curve=KNEE, reserved_power_w=100 * KW))
    for f, p_kw in [(49.985, 0.0), (49.8, -5.0), (49.65, -52.5), (49.5, -100.0), (50.5, 100.0)]:
        assert fr.step(_inputs(f), now=0.0).preferred_w == pytest.approx(p_kw * KW, abs=1e-6)


def test_soc_management_only_inside_the_deadband() -> None:
    # Band [20, 80] %. Nudge 5 kW.
    # k  f       SoC   in deadband?  P (KW)
    # 0  50.000  15    yes           +5      (below band: charge)
    # 1  50.010  15    yes (edge)    +5
    # 1b 49.990  15    yes (edge)    +5      (49.99 − 50 = −0.010000000000005 in floats)
    # 2  49.895  15    no            −20     (droop only: (0.095/0.19) × 40, no nudge)
    # 3  50.000  85    yes           −5      (above band: discharge)
    # 4  50.105  85    no            +20     (droop only)
    # 5  50.000  50    yes            0      (inside the band: nothing)
    # 6  50.000  20    yes            0      (on the band edge: nothing)
    fr = FrequencyResponse(CFG)
    rows = [
        (50.0, 15, 5.0),
        (50.01, 15, 5.0),
        (49.99, 15, 5.0),
        (49.895, 15, -20.0),
        (50.0, 85, -5.0),
        (50.105, 85, 20.0),
        (50.0, 50, 0.0),
        (50.0, 20, 0.0),
    ]
    for k, (f, soc, p_kw) in enumerate(rows):
        wish = fr.step(_inputs(f, soc), now=0.1 * k)
        assert wish.preferred_w == pytest.approx(p_kw * KW, abs=1e-6), k


def test_soc_recovers_into_the_band_then_stops() -> None:
    # 100 kWh fleet at 18 %, nudge +5 kW for 0.5 h steps: +2.5 kWh = +2.5 % per step.
    # k0 18 % → +5; k1 20.5 % → inside → 0 and stays there.
    fr = FrequencyResponse(CFG)
    soc = 18.0
    powers = []
    for k in range(4):
        p = merge([fr.step(_inputs(50.0, soc), now=1800.0 * k)], -100 * KW, 100 * KW).target_w
        powers.append(p)
        soc += p * 0.5 / (100 * KW) * 100.0
    assert powers == [5 * KW, 0.0, 0.0, 0.0]
    assert soc == pytest.approx(20.5)


def test_unknown_frequency_gives_zero() -> None:
    wish = FrequencyResponse(CFG).step(_inputs(math.nan, soc=15.0), now=0.0)
    assert (wish.preferred_w, wish.lower_w, wish.upper_w) == (0.0, 0.0, 0.0)


def test_cadence_every_sample_by_default() -> None:
    fr = FrequencyResponse()
    assert (fr.name, fr.priority, fr.interval_s) == ("frequency_response", 20, 0.0)
