"""Peak shaving: keep grid import (and export) within limits using the batteries.

The law (no PID, no integrator, no state)
-----------------------------------------
Let ``U = grid_power_w − battery_power_w`` be the uncontrolled power: what the
grid meter would read without batteries (+ = import). It is computed from two
*measurements*, so it does not depend on what the batteries were asked to do,
on how fast they follow, or on other strategies' contributions. Peak shaving's
contribution ``c`` to the fleet power must satisfy::

    U + c ≤ import_limit_w          →  c ≤ upper = import_limit_w − U
    U + c ≥ −export_limit_w         →  c ≥ lower = −export_limit_w − U

and it prefers::

    recharge  = min(recharge_power_w, max(0, upper − recharge_margin_w − H⁺))
                if soc_pct < target_soc_pct else 0
    preferred = clip(recharge, lower, upper)

So it discharges exactly the excess over the import limit (``preferred =
upper < 0``), charges exactly the excess export (``preferred = lower > 0``),
and otherwise recharges toward ``target_soc_pct`` with what headroom is left
below ``import_limit_w − recharge_margin_w`` once higher priorities' charging
``H⁺ = max(0, higher_priority_w)`` is counted: recharging is optional, so it
never stacks on a frequency-response charge to push the grid over the limit
(shaving itself ignores ``H``, see Stacking). Because the target is the
measured excess itself rather than an integrated error, a load step is
answered in one cycle, the battery's lag cannot wind anything up (no
overshoot), and charge / discharge cannot alternate: discharge needs
``U > import_limit_w``, charging needs ``U < import_limit_w −
recharge_margin_w`` (with a positive margin the two are separated by a band
in which the wish is 0).

Stacking
--------
The limits apply to the grid power *excluding higher-priority contributions*
(frequency response): those pass through to the grid unchanged, which is what
a frequency-response service requires. Peak shaving neither counteracts them
(it does not compensate a frequency-response charge) nor counts them twice (they
are in ``battery_power_w`` and so drop out of ``U``). Consequently the grid
import can exceed ``import_limit_w`` by the frequency-response contribution
while both act; lower ``import_limit_w`` by the reserve if the limit is a hard
contract. The power manager shifts the fleet room by what higher priorities
took, so peak shaving only gets what is left.

Unknown grid or battery power (nan) gives a neutral wish: preferred 0 W
within the fleet bounds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from actors.power_manager import Wish
from controller.runtime.strategies._inputs import ConfiguredStrategy, StrategyInputs

__all__ = ["PeakShaving", "PeakShavingConfig", "peak_shaving_wish"]


@dataclass(frozen=True, slots=True)
class PeakShavingConfig:
    """Settings of :class:`PeakShaving` (W, %, s; + = import / charging)."""

    enabled: bool = True
    """Run the strategy."""
    priority: int = 10
    """Power-manager priority (higher is served first; frequency response is 20)."""
    import_limit_w: float = 250_000.0
    """Keep grid import at or below this (W, ≥ 0). The default suits the bundled
    default site (base load ~180 kW − ~35 kW PV, peaks ~350 kW, 350 kW of inverters)."""
    export_limit_w: float = 250_000.0
    """Keep grid export at or below this (W, a positive number, ≥ 0)."""
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


def _clip(value: float, lower: float, upper: float) -> float:
    return lower if value < lower else upper if value > upper else value


def peak_shaving_wish(config: PeakShavingConfig, inputs: StrategyInputs) -> Wish:
    """The peak-shaving law (module docstring) as a pure function.

    Args:
        config: Limits, target SoC, recharge power and margin.
        inputs: The site as measured now.

    Returns:
        Preferred contribution and the range that keeps the grid within the limits.
    """
    u = inputs.uncontrolled_power_w
    if not math.isfinite(u):
        return Wish(config.name, config.priority, 0.0, inputs.fleet_lower_w, inputs.fleet_upper_w)
    upper = config.import_limit_w - u
    lower = -config.export_limit_w - u
    recharge = 0.0
    if inputs.soc_pct < config.target_soc_pct:
        # Only the headroom a higher priority's charging leaves (FR charging on
        # over-frequency is already on top of U at the grid meter).
        room = upper - config.recharge_margin_w - max(0.0, inputs.higher_priority_w)
        recharge = min(config.recharge_power_w, max(0.0, room))
    preferred = _clip(recharge, lower, upper)
    return Wish(config.name, config.priority, preferred, lower, upper)


class PeakShaving(ConfiguredStrategy[PeakShavingConfig]):
    """Peak-shaving strategy: ``step(inputs, now) -> Wish`` (see the module docstring)."""

    config_type = PeakShavingConfig
    law = staticmethod(peak_shaving_wish)
