"""Property tests of the strategies' laws over random site states."""

from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st

from controller.runtime.strategies import (
    FrequencyResponse,
    FrequencyResponseConfig,
    PeakShaving,
    PeakShavingConfig,
    StrategyInputs,
)

power = st.floats(-1e6, 1e6)
soc = st.floats(0.0, 100.0) | st.just(math.nan)


@given(
    grid=power,
    battery=power,
    soc_pct=soc,
    import_limit=st.floats(0.0, 5e5),
    export_limit=st.floats(0.0, 5e5),
    margin=st.floats(0.0, 5e4),
    recharge=st.floats(0.0, 2e5),
)
def test_peak_shaving_law(
    grid: float,
    battery: float,
    soc_pct: float,
    import_limit: float,
    export_limit: float,
    margin: float,
    recharge: float,
) -> None:
    cfg = PeakShavingConfig(
        import_limit_w=import_limit,
        export_limit_w=export_limit,
        recharge_margin_w=margin,
        recharge_power_w=recharge,
        target_soc_pct=60.0,
    )
    wish = PeakShaving(cfg).step(StrategyInputs(grid, battery, soc_pct=soc_pct), now=0.0)
    u = grid - battery
    assert wish.lower_w <= wish.preferred_w <= wish.upper_w
    # Applying the preferred contribution keeps the grid (excl. others) within both limits.
    assert u + wish.preferred_w <= import_limit + 1e-6
    assert u + wish.preferred_w >= -export_limit - 1e-6
    if u > import_limit:
        assert wish.preferred_w == import_limit - u  # discharge exactly the excess
    if u > import_limit - margin and u >= -export_limit:
        assert wish.preferred_w <= 0.0  # no charging within the margin
    if wish.preferred_w > 0 and u >= -export_limit:
        # A recharge: only when below target, and never into the margin.
        assert soc_pct < 60.0
        assert wish.preferred_w <= recharge
        assert u + wish.preferred_w <= import_limit - margin + 1e-6


@given(freq=st.floats(45.0, 55.0) | st.just(math.nan), soc_pct=soc)
def test_frequency_response_law(freq: float, soc_pct: float) -> None:
    cfg = FrequencyResponseConfig(reserved_power_w=100e3, soc_management_power_w=10e3)
    inputs = StrategyInputs(0.0, 0.0, freq, soc_pct, 730e3, 10.0, 90.0, -350e3, 350e3)
    wish = FrequencyResponse(cfg).step(inputs, now=0.0)
    assert wish.lower_w == wish.preferred_w == wish.upper_w
    assert abs(wish.preferred_w) <= 100e3
    if math.isnan(freq):
        assert wish.preferred_w == 0.0
    elif abs(freq - 50.0) > 0.010 + 1e-6:
        # Outside the deadband: exactly the droop power, no SoC nudge; sign opposes Δf.
        assert wish.preferred_w * (freq - 50.0) > 0
    else:
        assert wish.preferred_w in (0.0, 10e3, -10e3)
