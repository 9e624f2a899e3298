"""Peak shaving: keep the billed demand (billing-interval mean import) and export within limits.

What is shaved
--------------
A demand charge bills the highest billing-interval mean of the grid import
(15 min in most tariffs) over the period (a month). So the law keeps the
*interval mean* at or under the effective limit, not every sample::

    L_eff = max(import_limit_w, billed_peak_w)

where ``billed_peak_w`` is the highest interval mean already reached this period
(raising the bill further costs, staying at or under it is free). With ``T``
the interval's metered length, ``t`` the part measured so far and ``E`` the
grid energy so far (without what higher priorities drew, see Stacking), the
grid may import, for the rest of the interval::

    g_max = min(L_eff, (L_eff · T − E) / r),       r = max(T − t, T / 100)

so energy imported above the limit early (a load step, a late inverter) is
made up before the interval ends: the interval mean stays at or under
``L_eff`` whenever the fleet's power allows. Headroom left early in an interval
is *not* spent above ``L_eff`` (the ``min``): with the bundled default site a
banked quarter hour let the one-minute import reach 350-360 kW against 316 kW
without batteries at a 250 kW limit (recharging on top of a load peak), which
no operator wants to see and a connection may not allow; the bill is the same
either way. ``r`` is floored at 1 % of the interval (9 s of 15 min): near the
end the catch-up is spread over at least that, so the wish stays finite and
within what a fleet can follow. ``g_max`` is kept at or above
``−export_limit_w`` (catching up never breaks the export limit). Without a
billing meter (``interval_s`` nan, e.g. the replay's instantaneous mode, or an
interval the meter joined late, whose energy before is unknown)
``g_max = L_eff``: single samples are shaved, as before.

The law (no PID, no state of its own)
-------------------------------------
Let ``U = grid_power_w − battery_power_w`` be the uncontrolled power: what the
grid meter would read without batteries (+ = import). It is computed from two
*measurements*, so it does not depend on what the batteries were asked to do,
on how fast they follow, or on other strategies' contributions. Peak shaving's
contribution ``c`` to the fleet power must satisfy::

    U + c ≤ g_max                          →  c ≤ g_max − U
    U + c + H⁺ ≤ hard_import_limit_w        →  c ≤ hard − U − H⁺   (if set)
    U + c ≥ −export_limit_w + m_exp        →  c ≥ lower = −export_limit_w + m_exp − U

(``upper`` is the smaller of the first two; ``lower`` is at most ``upper``: the
import limits win over the export margin) and it prefers::

    g_rch     = min(L_eff − recharge_margin_w, ((L_eff − recharge_margin_w) · T − E) / r)
    recharge  = min(recharge_power_w, max(0, min(g_rch, hard) − U − H⁺))
                if soc_pct < target_soc_pct else 0
    preferred = clip(recharge, lower, upper)

So it discharges exactly what keeps the interval mean at the limit (``preferred =
upper < 0``), charges exactly the excess export (``preferred = lower > 0``), and
otherwise recharges toward ``target_soc_pct`` with what headroom is left below
``L_eff − recharge_margin_w`` *on the interval's mean* once higher priorities'
charging ``H⁺ = max(0, higher_priority_w)`` is counted: recharging keeps every
interval mean at or under the effective limit (the batteries never raise the
bill above it), and it never stacks on a frequency-response charge to push the
grid over the limit (shaving itself ignores ``H``, see Stacking). Because the
target is the measured excess itself rather than a tuned integral action, a
load step is answered in one cycle and the battery's lag cannot wind anything
up: the only memory is the interval's energy, which the bill has too. Without
a meter charge and discharge cannot alternate: discharge needs ``U >
import_limit_w``, charging needs ``U < import_limit_w − recharge_margin_w``.

Stacking
--------
The limits apply to the grid power *excluding higher-priority contributions*
(frequency response): those pass through to the grid unchanged, which is what
a frequency-response service requires. Peak shaving neither counteracts them
(it does not compensate a frequency-response charge, and the meter leaves their
energy out of ``E``) nor counts them twice (they are in ``battery_power_w`` and
so drop out of ``U``). Consequently the grid import can exceed the limit by the
frequency-response contribution while both act; lower the limit by the reserve
if the limit is a hard contract, or set ``hard_import_limit_w``, which does
count them. The power manager shifts the fleet room by what higher priorities
took, so peak shaving only gets what is left.

Export margin
-------------
``m_exp = export_margin_w`` aims the export side that much inside the export limit:
the control acts a response delay plus a cycle late and holds small changes back
(the deadband, per component), so a site aimed exactly at its limit spends about
half its time just past it (on a zero-export site the 15-min mean export then
drifts past the tolerance). The margin is only an aim: it is given up where the
import limits leave no room for it (``lower ≤ upper``), and catching up an
interval's import never goes below ``−export_limit_w`` itself. Its price is
``m_exp`` of import (or of curtailed PV when the batteries are full) while the
export limit binds.

Export lead (lag compensation)
------------------------------
A setpoint sent now takes effect a control interval plus the inverters' response
delay later (``λ = export_lead_s``; the API does not report the delay, so it is
configured), so a bound computed from ``U`` *now* is late by ``λ`` while ``U``
moves: on a falling ramp (a load drop, 3 kW/s) the export ends up ``|dU/dt| · λ``
past the aim for the whole ramp. The export side therefore uses the uncontrolled
power predicted for when the setpoint takes effect::

    U_pred = U + min(0, s) · λ
    lower  = min(−export_limit_w + m_exp − U_pred, upper)

with ``s = uncontrolled_slope_w_per_s``, the least-squares slope of ``U`` over
the last ``EXPORT_SLOPE_WINDOW_S`` (:func:`uncontrolled_slope_w_per_s`; the
control cycle keeps the samples, with ``now`` as an argument), clipped to the
flattest rate between two consecutive samples and 0 unless ``U`` fell between
every two: a steady ramp passes unchanged, a single step (a car leaving) or one
noisy sample is not extrapolated. The prediction only ever *tightens* the export
bound while ``U`` falls: a rising ``U``, an unknown slope (nan: fewer than three
samples in the window, the first cycles) or ``λ = 0`` leave the law as above;
the import side is not predicted. It acts only where the export limit binds
(``lower`` above the preference); its price is up to ``|s| · λ`` of import (or
curtailed PV) while ``U`` falls. Overestimating ``λ``
errs to the import side; underestimating it leaves part of the lag.

Unknown grid or battery power (nan) gives a neutral wish: preferred 0 W
within the fleet bounds. Unknown billing inputs fall back to single samples.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from actors.power_manager import Wish
from controller.runtime.strategies._inputs import ConfiguredStrategy, StrategyInputs

__all__ = [
    "EXPORT_SLOPE_WINDOW_S",
    "PeakShaving",
    "PeakShavingConfig",
    "effective_limit_w",
    "peak_shaving_wish",
    "predicted_uncontrolled_w",
    "recharge_ceiling_w",
    "target_limit_w",
    "uncontrolled_slope_w_per_s",
]


@dataclass(frozen=True, slots=True)
class PeakShavingConfig:
    """Settings of :class:`PeakShaving` (W, %, s; + = import / charging)."""

    enabled: bool = True
    """Run the strategy."""
    priority: int = 10
    """Power-manager priority (higher is served first; frequency response is 20)."""
    import_limit_w: float = 250_000.0
    """Keep the billing-interval mean of the grid import at or below this (W, ≥ 0;
    ``[peak_shaving] limit`` in the config). The default suits the bundled default
    site (base load ~180 kW − ~35 kW PV, peaks ~350 kW, 350 kW of inverters)."""
    limit_mode: Literal["fixed", "auto"] = "fixed"
    """``fixed``: ``import_limit_w`` is the target; ``auto`` (``limit = "auto"``): a
    planner chooses it from the site's history."""
    hard_import_limit_w: float | None = None
    """Instantaneous import limit of the connection (W, ≥ 0; None = none): never
    exceeded by peak shaving's own doing, frequency response's charging included."""
    export_limit_w: float = 250_000.0
    """Keep grid export at or below this (W, a positive number, ≥ 0)."""
    export_margin_w: float = 0.0
    """Aim the export this far inside ``export_limit_w`` (W, ≥ 0; see Export margin in
    the module docstring): a zero-export site sets a few hundred W, so that control lag
    and deadband land inside the limit. 0 = aim at the limit itself."""
    export_lead_s: float = 1.0
    """How long after a measurement the setpoints computed from it take effect: one
    control interval plus the PV / battery inverters' response delay (s, ≥ 0; see
    Export lead in the module docstring). The export bound follows a falling
    uncontrolled power this far ahead. 0 = no prediction."""
    target_soc_pct: float = 60.0
    """Recharge toward this fleet SoC when there is headroom (0-100 %)."""
    recharge_power_w: float = 50_000.0
    """Largest recharge contribution (W, ≥ 0)."""
    recharge_margin_w: float = 10_000.0
    """Recharging keeps import at or below ``import_limit_w − recharge_margin_w`` (W, ≥ 0)."""
    interval_s: float = 0.2
    """Cadence: run at least this often (s, ≥ 0; 0 = on every grid-meter sample)."""
    name: str = "peak_shaving"
    """Source name of the wishes."""


_MIN_REST_FRACTION = 0.01
"""The catch-up is spread over at least this fraction of the interval (see the module)."""

EXPORT_SLOPE_WINDOW_S = 0.5
"""The window of uncontrolled-power samples the export lead's slope is fitted over (s):
the last three samples at the 200-ms cadence, so a ramp is known after two falling
samples. A longer window is steadier on noise but learns a ramp later, which
lengthens the export at the ramp's start beyond the lead plus one cycle."""

_WINDOW_TOLERANCE_S = 1e-6
"""Samples this close to the window's start still count (float sums of the cadence)."""

_MIN_SLOPE_SAMPLES = 3
"""Fewer samples in the window give no slope (nan)."""


def uncontrolled_slope_w_per_s(times_s: Sequence[float], values_w: Sequence[float],
                               now_s: float) -> float:
    """The slope of the uncontrolled power over the last `EXPORT_SLOPE_WINDOW_S`
    (module: Export lead).

    The least-squares slope, clipped to the flattest rate between two consecutive
    samples, and 0 unless every two consecutive samples moved the same way: a steady
    ramp passes unchanged, while a single step (a car leaving) or one noisy sample
    is not extrapolated.

    Args:
        times_s: Sample times (s, ascending, the caller's clock).
        values_w: The uncontrolled power at those times (W, + = import).
        now_s: The caller's clock now (s); samples older than the window, later than
            now or not finite are ignored.

    Returns:
        W/s (+ = rising); nan with fewer than three samples or no time spread.
    """
    pts = [(t, v) for t, v in zip(times_s, values_w, strict=True)
           if now_s - EXPORT_SLOPE_WINDOW_S - _WINDOW_TOLERANCE_S <= t <= now_s
           and math.isfinite(t) and math.isfinite(v)]
    if len(pts) < _MIN_SLOPE_SAMPLES:
        return math.nan
    n = len(pts)
    t_mean = sum(t for t, _ in pts) / n
    v_mean = sum(v for _, v in pts) / n
    stt = sum((t - t_mean) ** 2 for t, _ in pts)
    span = pts[-1][0] - pts[0][0]
    if not (stt > 0.0 and span > 0.0):
        return math.nan
    slope = sum((t - t_mean) * (v - v_mean) for t, v in pts) / stt
    rates = [(v1 - v0) / (t1 - t0) for (t0, v0), (t1, v1) in itertools.pairwise(pts)
             if t1 > t0]
    flattest = max(rates) if slope < 0 else min(rates)  # the pair closest to flat
    if not flattest * slope > 0:  # not moving the same way between every two samples
        return 0.0
    return slope if abs(slope) <= abs(flattest) else flattest


def predicted_uncontrolled_w(config: PeakShavingConfig, inputs: StrategyInputs) -> float:
    """``U_pred`` of the export side: U now, or lower by the predicted fall (W, module)."""
    u = inputs.uncontrolled_power_w
    s = inputs.uncontrolled_slope_w_per_s
    if not (math.isfinite(s) and s < 0.0 and config.export_lead_s > 0.0):
        return u
    return u + s * config.export_lead_s


def _clip(value: float, lower: float, upper: float) -> float:
    return lower if value < lower else upper if value > upper else value


def _interval_rates(config: PeakShavingConfig, inputs: StrategyInputs, limit_w: float,
                    recharge_limit_w: float) -> tuple[float, float]:
    """The grid's allowed average for the rest of the interval: (g_max, g_rch), W."""
    t_len, t_done = inputs.interval_s, inputs.interval_elapsed_s
    energy_ws = inputs.interval_energy_wh * 3600.0
    if not (math.isfinite(t_len) and math.isfinite(t_done) and math.isfinite(energy_ws)
            and t_len > 0):
        return limit_w, recharge_limit_w
    rest = max(t_len - min(max(t_done, 0.0), t_len), t_len * _MIN_REST_FRACTION)
    return (
        min(limit_w, (limit_w * t_len - energy_ws) / rest),
        min(recharge_limit_w, (recharge_limit_w * t_len - energy_ws) / rest),
    )


def target_limit_w(config: PeakShavingConfig, planned_limit_w: float = math.nan) -> float:
    """The target import limit: ``import_limit_w``, or the planner's with ``limit = "auto"``
    (inf while it has no plan: nothing is shaved beyond the billed peak)."""
    if config.limit_mode == "auto":
        return planned_limit_w if not math.isnan(planned_limit_w) else math.inf
    return config.import_limit_w


def effective_limit_w(
    config: PeakShavingConfig, billed_peak_w: float, planned_limit_w: float = math.nan
) -> float:
    """The limit the interval means are held to: ``max(target, billed_peak_w)`` (W; the
    target alone when the billed peak is unknown; see `target_limit_w`)."""
    target = target_limit_w(config, planned_limit_w)
    if math.isfinite(billed_peak_w):
        return max(target, billed_peak_w)
    return target


def recharge_ceiling_w(config: PeakShavingConfig, inputs: StrategyInputs) -> float:
    """The highest interval mean recharging may bring the grid to (W; inf = none beyond
    the effective limit).

    With a fixed limit, the operator's limit is the ceiling (the effective limit
    already holds it). With ``limit = "auto"`` no one has said what the period's peak
    will be, so the batteries must never raise the bill: recharging stays under the
    higher of the period's billed peak with and without batteries (what the load
    alone has already set) and, when the plan rests on at least a day of the site's
    history (``plan_warm``), the planned limit (the plan expects the period to reach
    it anyway). Unknown billed peaks (no meter): no ceiling.
    """
    billed = (inputs.billed_peak_w, inputs.billed_peak_w_uncontrolled)
    if config.limit_mode != "auto" or not all(math.isfinite(b) for b in billed):
        return math.inf
    ceiling = max(billed)
    if inputs.plan_warm and math.isfinite(inputs.planned_limit_w):
        ceiling = max(ceiling, inputs.planned_limit_w)
    return ceiling


def peak_shaving_wish(config: PeakShavingConfig, inputs: StrategyInputs) -> Wish:
    """The peak-shaving law (module docstring) as a pure function.

    Args:
        config: Limits, target SoC, recharge power and margin.
        inputs: The site as measured now, with the billing interval so far.

    Returns:
        Preferred contribution and the range that keeps the grid within the limits.
    """
    u = inputs.uncontrolled_power_w
    if not math.isfinite(u):
        return Wish(config.name, config.priority, 0.0, inputs.fleet_lower_w, inputs.fleet_upper_w)
    limit = effective_limit_w(config, inputs.billed_peak_w, inputs.planned_limit_w)
    rch_limit = min(limit, recharge_ceiling_w(config, inputs)) - config.recharge_margin_w
    g_max, g_rch = _interval_rates(config, inputs, limit, rch_limit)
    g_max = max(g_max, -config.export_limit_w)
    h_plus = max(0.0, inputs.higher_priority_w) if math.isfinite(inputs.higher_priority_w) else 0.0
    hard = config.hard_import_limit_w
    upper = g_max - u
    if hard is not None:
        upper = min(upper, hard - u - h_plus)
        g_rch = min(g_rch, hard)
    if not math.isfinite(upper):  # no import limit (auto, no plan yet): the fleet's own
        fleet_up = inputs.fleet_upper_w
        upper = max(fleet_up if math.isfinite(fleet_up) else 0.0, -config.export_limit_w - u)
    u_pred = predicted_uncontrolled_w(config, inputs)
    lower = min(-config.export_limit_w + config.export_margin_w - u_pred, upper)
    recharge = 0.0
    target_soc = config.target_soc_pct
    if config.limit_mode == "auto" and math.isfinite(inputs.planned_soc_pct):
        target_soc = max(target_soc, inputs.planned_soc_pct)
    if inputs.soc_pct < target_soc and math.isfinite(g_rch):
        # Only the headroom a higher priority's charging leaves (FR charging on
        # over-frequency is already on top of U at the grid meter).
        recharge = min(config.recharge_power_w, max(0.0, g_rch - u - h_plus))
    preferred = _clip(recharge, lower, upper)
    return Wish(config.name, config.priority, preferred, lower, upper)


class PeakShaving(ConfiguredStrategy[PeakShavingConfig]):
    """Peak-shaving strategy: ``step(inputs, now) -> Wish`` (see the module docstring)."""

    config_type = PeakShavingConfig
    law = staticmethod(peak_shaving_wish)
