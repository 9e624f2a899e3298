"""Cycle-by-cycle scenarios of the peak-shaving strategy (controller.runtime.strategies).

Every expected value is derived by hand in the comments from the law::

    U = grid − battery;  upper = L_imp − U;  lower = −L_exp − U
    recharge = min(P_rch, max(0, upper − margin)) if soc < target else 0
    preferred = clip(recharge, lower, upper)

The "plant" in these tests is the simplest battery model that still has
feedback: the fleet reaches the merged target after a delay or with a lag, and
the grid meter reads ``U + battery``.
"""

from __future__ import annotations

import dataclasses
import itertools
import math

import pytest

from actors.power_manager import Wish, merge
from controller.runtime.strategies import (
    PeakShaving,
    PeakShavingConfig,
    StrategyInputs,
    uncontrolled_slope_w_per_s,
)

KW = 1_000.0
CFG = PeakShavingConfig(
    import_limit_w=250 * KW,
    export_limit_w=20 * KW,
    target_soc_pct=60.0,
    recharge_power_w=50 * KW,
    recharge_margin_w=10 * KW,
)
FLEET = (-350 * KW, 350 * KW)


def _inputs(grid_w: float, battery_w: float, soc: float = 60.0, **kw: float) -> StrategyInputs:
    base: dict[str, float] = {
        "grid_frequency_hz": 50.0,
        "soc_pct": soc,
        "capacity_wh": 730 * KW,
        "soc_lower_pct": 10.0,
        "soc_upper_pct": 90.0,
        "fleet_lower_w": FLEET[0],
        "fleet_upper_w": FLEET[1],
    }
    base.update(kw)
    return StrategyInputs(grid_power_w=grid_w, battery_power_w=battery_w, **base)


def test_load_ramp_with_one_cycle_delay_converges_to_the_limit() -> None:
    # Uncontrolled load U_k ramps 200 → 350 kW; SoC at target (no recharge).
    # The fleet applies the target of cycle k at cycle k+1 (B_{k+1} = target_k).
    # k  U    B     G=U+B  U_meas  upper=250−U  preferred
    # 0  200    0   200    200      50          0      (soc at target: no recharge)
    # 1  240    0   240    240      10          0
    # 2  280    0   280    280     −30        −30
    # 3  320  −30   290    320     −70        −70
    # 4  350  −70   280    350    −100       −100
    # 5  350 −100   250    350    −100       −100    (converged: G = limit)
    # 6  350 −100   250    350    −100       −100
    ps = PeakShaving(CFG)
    loads = [200, 240, 280, 320, 350, 350, 350]
    expected_pref = [0, 0, -30, -70, -100, -100, -100]
    expected_grid = [200, 240, 280, 290, 280, 250, 250]
    battery = 0.0
    for k, (u, pref, g) in enumerate(zip(loads, expected_pref, expected_grid, strict=True)):
        grid = u * KW + battery
        assert grid == g * KW, k
        wish = ps.step(_inputs(grid, battery), now=0.2 * k)
        assert wish.preferred_w == pref * KW, k
        assert wish.upper_w == (250 - u) * KW  # never import above the limit
        assert wish.lower_w == (-20 - u) * KW  # never export above the limit
        battery = merge([wish], *FLEET).target_w


def test_ramp_with_lagging_battery_no_overshoot_no_flip_flop() -> None:
    # Same ramp, the fleet follows with a first-order lag (half the gap per cycle).
    # The wish is L − U every cycle, independent of the lag, so the grid approaches
    # the limit from above (never below it: no overshoot) and the wish never
    # turns into a charge while the load is above the limit.
    ps = PeakShaving(CFG)
    battery = 0.0
    target = 0.0
    grids = []
    prefs = []
    for k in range(60):
        u = min(200 + 10 * k, 350) * KW
        battery += 0.5 * (target - battery)
        grid = u + battery
        wish = ps.step(_inputs(grid, battery), now=0.2 * k)
        target = merge([wish], *FLEET).target_w
        grids.append(grid)
        prefs.append(wish.preferred_w)
        assert math.isclose(wish.preferred_w, min(0.0, 250 * KW - u), abs_tol=1e-6)
    # Discharge deepens monotonically while the ramp rises, then holds: no flip-flop.
    assert all(b <= a + 1e-6 for a, b in itertools.pairwise(prefs))
    assert max(prefs) <= 0.0
    # No overshoot: the grid never drops below the limit once the load exceeds it.
    assert min(grids[6:]) >= 250 * KW - 1e-6
    # Converged: the grid sits on the limit within 1 W.
    assert abs(grids[-1] - 250 * KW) < 1.0


def test_jitter_around_the_limit_discharges_or_idles_never_charges() -> None:
    # U jitters 252 / 248 kW with the SoC below target (recharge wanted):
    # U=252: upper = −2 → preferred −2 kW (discharge the excess).
    # U=248: upper = +2; headroom = 2 − 10 = −8 → recharge 0 → preferred 0.
    # The 10 kW margin keeps the wish from flipping between charge and discharge.
    ps = PeakShaving(CFG)
    battery = 0.0
    for k in range(20):
        u = (252 if k % 2 == 0 else 248) * KW
        wish = ps.step(_inputs(u + battery, battery, soc=40.0), now=0.2 * k)
        assert wish.preferred_w == (-2 * KW if k % 2 == 0 else 0.0)
        battery = merge([wish], *FLEET).target_w


def test_recharge_when_below_limit_and_soc_below_target() -> None:
    # SoC 40 % < 60 %: recharge = min(50, max(0, upper − 10)).
    # k  U    B    G     upper  headroom  preferred
    # 0  150    0  150   100     90        50   (capped at recharge_power_w)
    # 1  150   50  200   100     90        50   (U unchanged by the battery: steady)
    # 2  230   50  280    20     10        10   (load rises: recharge shrinks)
    # 3  230   10  240    20     10        10   (grid = 240 = limit − margin)
    # 4  245   10  255     5     −5         0   (inside the margin: idle, no charge)
    ps = PeakShaving(CFG)
    rows = [(150, 0, 50), (150, 50, 50), (230, 50, 10), (230, 10, 10), (245, 10, 0)]
    for k, (u, b, pref) in enumerate(rows):
        wish = ps.step(_inputs((u + b) * KW, b * KW, soc=40.0), now=0.2 * k)
        assert wish.preferred_w == pref * KW, k
        assert (u + pref) <= 250  # recharging never causes import above the limit


def test_no_recharge_at_or_above_target_soc_or_unknown_soc() -> None:
    ps = PeakShaving(CFG)
    for soc in (60.0, 75.0, math.nan):
        assert ps.step(_inputs(150 * KW, 0.0, soc=soc), now=0.0).preferred_w == 0.0


def test_export_limit_charges_exactly_the_excess_export() -> None:
    # PV: U = −50 kW (exporting 50), export limit 20 kW, SoC at target:
    # lower = −20 − (−50) = +30 → preferred clip(0, 30, 300) = +30 kW (charge the excess).
    # Next cycle the battery charges 30: G = −50 + 30 = −20 = −export limit; U still −50.
    # With SoC below target: headroom = 300 − 10 = 290 → recharge 50 ≥ 30 → 50.
    ps = PeakShaving(CFG)
    w0 = ps.step(_inputs(-50 * KW, 0.0), now=0.0)
    assert (w0.preferred_w, w0.lower_w, w0.upper_w) == (30 * KW, 30 * KW, 300 * KW)
    w1 = ps.step(_inputs(-20 * KW, 30 * KW), now=0.2)
    assert w1.preferred_w == 30 * KW
    w2 = ps.step(_inputs(-20 * KW, 30 * KW, soc=40.0), now=0.4)
    assert w2.preferred_w == 50 * KW


def test_soc_empty_discharge_clipped_by_fleet_then_recharges_when_load_drops() -> None:
    # The fleet is empty: SoC at its lower limit, the fleet can't discharge (lower 0).
    # k0: U=300 → PS wants −50, merged within [0, 350] → 0; grid stays at 300 (unavoidable).
    # k1: U=300 still (battery 0) → same.
    # k2: load drops, U=200 → upper 50, headroom 40 → recharge 40 (SoC 10 < 60) → granted 40.
    # k3: battery 40, G = 240, U = 200 → 40 (steady, grid at limit − margin).
    ps = PeakShaving(CFG)
    fleet = (0.0, 350 * KW)
    battery = 0.0
    rows = [(300, -50, 0, 300), (300, -50, 0, 300), (200, 40, 40, 200), (200, 40, 40, 240)]
    for k, (u, pref, granted, grid) in enumerate(rows):
        g = u * KW + battery
        assert g == grid * KW, k
        inp = _inputs(g, battery, soc=10.0, fleet_lower_w=fleet[0], fleet_upper_w=fleet[1])
        wish = ps.step(inp, now=0.2 * k)
        assert wish.preferred_w == pref * KW, k
        result = merge([wish], *fleet)
        assert result.target_w == granted * KW, k
        battery = result.target_w


def test_unknown_grid_power_gives_a_neutral_wish() -> None:
    wish = PeakShaving(CFG).step(_inputs(math.nan, 0.0), now=0.0)
    assert wish == Wish("peak_shaving", 10, 0.0, FLEET[0], FLEET[1])


def test_stacked_with_frequency_response_no_fight_no_double_count() -> None:
    # FR (prio 20) discharges exactly −50 kW (under-frequency) during a peak U = 300 kW.
    # k0: B=0, G=300 → U=300 → PS −50 → merged: FR −50 + PS −50 = −100.
    # k1: B=−100, G=200 → U = 200 − (−100) = 300 → PS −50 again: FR's discharge is in the
    #     measured battery power and drops out of U — not counted twice, and PS does not
    #     shrink its own discharge to cancel FR's effect (no fight): the grid shows
    #     limit + FR = 250 − 50 = 200 kW.
    # k2: over-frequency, FR +50: merged +50 − 50 = 0 → k3: G = 300 = limit + FR's +50
    #     (FR passes through; PS does not discharge extra to cancel it).
    ps = PeakShaving(CFG)
    battery = 0.0
    rows = [(-50, -50, -100, 300), (-50, -50, -100, 200), (50, -50, 0, 200), (50, -50, 0, 300)]
    for k, (fr_w, pref, total, grid) in enumerate(rows):
        g = 300 * KW + battery
        assert g == grid * KW, k
        wish = ps.step(_inputs(g, battery), now=0.2 * k)
        assert wish.preferred_w == pref * KW, k
        fr = Wish("frequency_response", 20, fr_w * KW, fr_w * KW, fr_w * KW)
        result = merge([wish, fr], *FLEET)
        assert result.target_w == total * KW, k
        battery = result.target_w


def test_frequency_response_takes_room_first() -> None:
    # Fleet can discharge 120 kW. FR takes −100; PS wants −50 → room [−20, 450] → −20.
    ps_wish = PeakShaving(CFG).step(_inputs(300 * KW, 0.0), now=0.0)
    fr = Wish("frequency_response", 20, -100 * KW, -100 * KW, -100 * KW)
    result = merge([ps_wish, fr], -120 * KW, 350 * KW)
    assert result.granted == {"frequency_response": -100 * KW, "peak_shaving": -20 * KW}


def test_cadence_and_identity_come_from_the_config() -> None:
    ps = PeakShaving(CFG)
    assert (ps.name, ps.priority, ps.interval_s) == ("peak_shaving", 10, 0.2)


def test_recharge_leaves_room_for_a_higher_priority_charge() -> None:
    # U = 150, SoC 40 %: alone, recharge = min(50, 250 − 150 − 10) = 50.
    # FR (higher priority) charges +60 on over-frequency: H⁺ = 60 →
    #   recharge = min(50, 100 − 10 − 60) = 30 → grid = 150 + 60 + 30 = 240 = limit − margin.
    # FR discharging (H = −60) does not enlarge the recharge: H⁺ = 0 → 50.
    # At U = 300 the shaving is unaffected by H: preferred = upper = −50 either way.
    ps = PeakShaving(CFG)
    assert ps.step(_inputs(150 * KW, 0.0, soc=40.0), 0.0).preferred_w == 50 * KW
    charged = ps.step(_inputs(150 * KW, 0.0, soc=40.0, higher_priority_w=60 * KW), 0.0)
    assert charged.preferred_w == 30 * KW
    assert 150 + 60 + charged.preferred_w / KW <= 250
    discharged = ps.step(_inputs(150 * KW, 0.0, soc=40.0, higher_priority_w=-60 * KW), 0.0)
    assert discharged.preferred_w == 50 * KW
    for h in (-60 * KW, 0.0, 60 * KW):
        assert ps.step(_inputs(300 * KW, 0.0, higher_priority_w=h), 0.0).preferred_w == -50 * KW


def test_export_margin_aims_inside_the_export_limit_but_yields_to_the_import_limit() -> None:
    # Zero export with a 300-W margin: with U = −50 kW the batteries (or PV caps) must add
    # at least 50.3 kW, so lag and deadband errors land on the import side of the limit.
    cfg = dataclasses.replace(CFG, export_limit_w=0.0, export_margin_w=300.0)
    wish = PeakShaving(cfg).step(_inputs(-50 * KW, 0.0), now=0.0)
    assert wish.lower_w == pytest.approx(50 * KW + 300.0)
    assert wish.preferred_w == pytest.approx(50 * KW + 300.0)
    # Without the margin the aim is the limit itself (the default).
    assert PeakShaving(dataclasses.replace(cfg, export_margin_w=0.0)).step(
        _inputs(-50 * KW, 0.0), now=0.0).lower_w == pytest.approx(50 * KW)
    # An import limit of 100 W leaves no room for the margin: the import limit wins.
    tight = dataclasses.replace(cfg, import_limit_w=100.0, recharge_margin_w=0.0)
    wish = PeakShaving(tight).step(_inputs(-50 * KW, 0.0), now=0.0)
    assert wish.lower_w == wish.upper_w == pytest.approx(50 * KW + 100.0)


def test_export_lead_bounds_the_export_at_the_predicted_uncontrolled_power() -> None:
    # Zero export, 300-W margin, lead 1.2 s: U = −50 kW falling 3 kW/s is predicted at
    # −53.6 kW when the setpoint takes effect, so lower = 53.6 + 0.3 kW.
    cfg = dataclasses.replace(CFG, export_limit_w=0.0, export_margin_w=300.0,
                              export_lead_s=1.2)
    ps = PeakShaving(cfg)
    falling = _inputs(-50 * KW, 0.0, uncontrolled_slope_w_per_s=-3 * KW)
    assert ps.step(falling, now=0.0).lower_w == pytest.approx(53.9 * KW)
    # Only toward safety: a rising or unknown slope, or no lead, leave U as it is.
    for slope in (3 * KW, math.nan):
        wish = ps.step(_inputs(-50 * KW, 0.0, uncontrolled_slope_w_per_s=slope), now=0.0)
        assert wish.lower_w == pytest.approx(50.3 * KW)
    no_lead = PeakShaving(dataclasses.replace(cfg, export_lead_s=0.0))
    assert no_lead.step(falling, now=0.0).lower_w == pytest.approx(50.3 * KW)
    # The import side is not predicted; the import limit still wins over the lead.
    assert ps.step(falling, now=0.0).upper_w == pytest.approx(ps.step(
        _inputs(-50 * KW, 0.0), now=0.0).upper_w)


def test_uncontrolled_slope_fits_a_ramp_and_ignores_steps_noise_and_old_samples() -> None:
    t = [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]
    ramp = [-20 * KW - 3 * KW * x for x in t]
    assert uncontrolled_slope_w_per_s(t, ramp, 1.0) == pytest.approx(-3 * KW)
    # Only the last EXPORT_SLOPE_WINDOW_S (0.5 s: 0.6, 0.8, 1.0) counts.
    bent = [0.0, 0.0, 0.0, -600.0, -1200.0, -1800.0]
    assert uncontrolled_slope_w_per_s(t, bent, 1.0) == pytest.approx(-3 * KW)
    # A step (a car leaving) or one noisy sample is not a trend.
    assert uncontrolled_slope_w_per_s(t, [0.0] * 5 + [-10 * KW], 1.0) == 0.0
    assert uncontrolled_slope_w_per_s(t, [0.0, 0.0, 0.0, 0.0, -10 * KW, -10 * KW], 1.0) == 0.0
    assert uncontrolled_slope_w_per_s(t, [0.0, 0.0, 0.0, -500.0, 300.0, -800.0], 1.0) == 0.0
    # A ramp that slows is extrapolated at its slowest recent rate.
    slowing = [0.0, 0.0, 0.0, 0.0, -600.0, -800.0]  # −3 then −1 kW/s
    assert uncontrolled_slope_w_per_s(t, slowing, 1.0) == pytest.approx(-1 * KW)
    # Too few samples (or NaN ones) give no slope.
    assert math.isnan(uncontrolled_slope_w_per_s(t[:2], ramp[:2], 0.2))
    assert math.isnan(uncontrolled_slope_w_per_s(t, [*ramp[:4], math.nan, math.nan], 1.0))
