"""Hypothesis strategies: random fleets of every topology shape."""

from __future__ import annotations

from typing import Any

import numpy as np
from dist_reference import RawFleet
from hypothesis import strategies as st

SHAPES = ("one_to_one", "many_inverters_one_battery", "one_inverter_many_batteries", "mixed")


def _bounds(draw: Any, step: Any, bands: bool) -> tuple[float, float, float, float]:
    """Draw one component's ``(lower, upper, excl_lower, excl_upper)``."""
    hi = draw(step.filter(lambda x: x > 0))
    lo = -draw(step.filter(lambda x: x > 0))
    eu = min(draw(step), hi * 0.5) if bands and draw(st.booleans()) else 0.0
    el = max(-draw(step), lo * 0.5) if bands and draw(st.booleans()) else 0.0
    return lo, hi, el, eu


@st.composite
def raw_fleets(
    draw: Any,
    shape: str | None = None,
    bands: bool = True,
    faults: bool = False,
    max_groups: int = 5,
) -> RawFleet:
    """Draw a fleet: powers on a 100 W grid (scaled), SoC 0..100 %."""
    shape = shape or draw(st.sampled_from(SHAPES))
    n_groups = draw(st.integers(1, max_groups))
    sizes: list[tuple[int, int]] = []
    for _ in range(n_groups):
        if shape == "one_to_one":
            sizes.append((1, 1))
        elif shape == "many_inverters_one_battery":
            sizes.append((draw(st.integers(1, 3)), 1))
        elif shape == "one_inverter_many_batteries":
            sizes.append((1, draw(st.integers(1, 3))))
        else:
            sizes.append((draw(st.integers(1, 3)), draw(st.integers(1, 3))))
    f = RawFleet([], [], [], [], [], [], [], [], [], [], [], [], [])
    # Whole 100 W steps, times a per-fleet factor so that sums are not exact in float.
    factor = draw(st.sampled_from([1.0, 1.0]) | st.floats(1.0, 1.1))
    step = st.integers(0, 1000).map(lambda k: 100.0 * k * factor)  # 0 .. 110 kW
    inverter_columns = (f.inv_lo, f.inv_hi, f.inv_el, f.inv_eu)  # the order of `_bounds`
    battery_columns = (f.bat_lo, f.bat_hi, f.bat_el, f.bat_eu)
    for n_i, n_b in sizes:
        i0, b0 = len(f.inv_lo), len(f.soc)
        for _ in range(n_i):
            for column, value in zip(inverter_columns, _bounds(draw, step, bands), strict=True):
                column.append(value)
        for _ in range(n_b):
            for column, value in zip(battery_columns, _bounds(draw, step, bands), strict=True):
                column.append(value)
            f.soc_lo.append(10.0)
            f.soc_hi.append(90.0)
            special = st.sampled_from([5.0, 10.0, 11.0, 50.0, 89.0, 90.0, 95.0])
            f.soc.append(draw(special | st.floats(0, 100)))
            f.cap.append(draw(st.sampled_from([10e3, 50e3, 100e3, 200e3])))
        # Links: a connected bipartite pattern inside the group.
        if n_i == 1 or n_b == 1:
            for i in range(n_i):
                for b in range(n_b):
                    f.links.append((i0 + i, b0 + b))
        else:
            for i in range(n_i):
                f.links.append((i0 + i, b0 + min(i, n_b - 1)))
            for b in range(n_i, n_b):
                f.links.append((i0, b0 + b))
    if faults:
        n_inv, n_bat = len(f.inv_lo), len(f.soc)
        for i in range(n_inv):
            kind = draw(st.sampled_from(["ok"] * 6 + ["nan", "inverted", "band_out"]))
            if kind == "nan":
                f.inv_hi[i] = float("nan")
            elif kind == "inverted":
                f.inv_lo[i] = f.inv_hi[i] + 100.0
            elif kind == "band_out":
                f.inv_eu[i] = f.inv_hi[i] + 100.0
        for b in range(n_bat):
            kind = draw(st.sampled_from(["ok"] * 6 + ["nan_soc", "zero_cap", "unavail"]))
            if kind == "nan_soc":
                f.soc[b] = float("nan")
            elif kind == "zero_cap":
                f.cap[b] = 0.0
            elif kind == "unavail":
                f.bat_avail = f.bat_avail or [True] * n_bat
                f.bat_avail[b] = False
        f.inv_avail = [draw(st.booleans()) or draw(st.booleans()) for _ in range(n_inv)]
        # shuffle-free extra: one unlinked inverter
        if draw(st.booleans()):
            f.inv_lo.append(-1000.0)
            f.inv_hi.append(1000.0)
            f.inv_el.append(0.0)
            f.inv_eu.append(0.0)
            f.inv_avail.append(True)
    return f


def targets(f: RawFleet) -> Any:
    """Targets across (and beyond) the fleet range, plus small band-sized ones."""
    span = sum(abs(x) for x in f.inv_hi if x == x) + 1000.0
    return st.one_of(
        st.floats(-1.2 * span, 1.2 * span, allow_nan=False),
        st.integers(-200, 200).map(lambda k: 100.0 * k),
        st.just(0.0),
    )


def heterogeneous_fleet(rng: Any, n: int) -> RawFleet:
    """A seeded 1:1 fleet of ``n`` unlike pairs: bounds 50–250 kW, bands of 0–20 kW
    (some one-sided, some zero), capacities 50–200 kWh, SoC 10–90 % with some
    pairs at or beyond a limit, some inverters that cannot charge or discharge."""
    def bounds() -> Any:
        return rng.uniform(50e3, 250e3, n)

    def band() -> Any:
        return rng.choice([0.0, 5e3, 20e3], n) * rng.uniform(0.5, 1.0, n)

    inv_hi, inv_lo, bat_hi, bat_lo = bounds(), -bounds(), bounds(), -bounds()
    inv_hi[rng.random(n) < 0.05] = 0.0
    inv_lo[rng.random(n) < 0.05] = 0.0
    soc = rng.uniform(10.0, 90.0, n)
    at_limit = rng.random(n) < 0.05
    soc[at_limit] = rng.choice([5.0, 10.0, 90.0, 95.0], int(at_limit.sum()))
    return RawFleet(
        inv_lo=inv_lo.tolist(), inv_hi=inv_hi.tolist(),
        inv_el=np.maximum(-band(), inv_lo * 0.5).tolist(),
        inv_eu=np.minimum(band(), inv_hi * 0.5).tolist(),
        soc=soc.tolist(), soc_lo=[10.0] * n, soc_hi=[90.0] * n,
        cap=rng.uniform(50e3, 200e3, n).tolist(),
        bat_lo=bat_lo.tolist(), bat_hi=bat_hi.tolist(),
        bat_el=(-band()).tolist(), bat_eu=band().tolist(),
        links=[(i, i) for i in range(n)],
    )
