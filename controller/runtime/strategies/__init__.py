"""Control strategies: pure ``step(inputs, now) -> Wish`` objects and their configs.

* :class:`StrategyInputs` — the site as strategies see it each cycle (floats, W/Wh/%/Hz).
* :class:`Strategy` — the protocol: ``name``, ``priority``, ``interval_s``, ``step``.
* :class:`PeakShaving`, :class:`PeakShavingConfig`, :func:`peak_shaving_wish` — keep
  the billing-interval mean import and the export within limits, recharge toward a
  target SoC; :func:`effective_limit_w` — the limit the interval means are held to;
  :func:`uncontrolled_slope_w_per_s` — the slope the export lead predicts with.
* :class:`FrequencyResponse`, :class:`FrequencyResponseConfig`,
  :func:`frequency_response_wish` — droop on grid frequency with SoC management.
* :class:`DroopCurve`, :func:`droop` — droop curves (linear FCR, knee DC) and the
  vectorised activation function; :func:`soc_band_pct` — the SoC band that holds the
  reserve for the configured time.

* :class:`ReactivePower`, :class:`ReactivePowerConfig`, :class:`ReactiveInputs` — the
  fleet's reactive target (fixed Q, cos φ, cos φ(P), Q(U) with its first-order filter);
  :func:`cos_phi_q_var`, :func:`q_u_characteristic_var` — its laws; :data:`Q_MODES`.

Wishes are merged by :func:`actors.power_manager.merge`.
"""

from controller.runtime.strategies._frequency_response import (
    DroopCurve,
    FrequencyResponse,
    FrequencyResponseConfig,
    droop,
    frequency_response_wish,
    soc_band_pct,
)
from controller.runtime.strategies._inputs import Strategy, StrategyInputs
from controller.runtime.strategies._peak_shaving import (
    PeakShaving,
    PeakShavingConfig,
    effective_limit_w,
    peak_shaving_wish,
    recharge_ceiling_w,
    target_limit_w,
    uncontrolled_slope_w_per_s,
)
from controller.runtime.strategies._reactive import (
    Q_MODES,
    ReactiveInputs,
    ReactivePower,
    ReactivePowerConfig,
    cos_phi_q_var,
    q_u_characteristic_var,
)

__all__ = [
    "Q_MODES",
    "DroopCurve",
    "FrequencyResponse",
    "FrequencyResponseConfig",
    "PeakShaving",
    "PeakShavingConfig",
    "ReactiveInputs",
    "ReactivePower",
    "ReactivePowerConfig",
    "Strategy",
    "StrategyInputs",
    "cos_phi_q_var",
    "droop",
    "effective_limit_w",
    "frequency_response_wish",
    "peak_shaving_wish",
    "q_u_characteristic_var",
    "recharge_ceiling_w",
    "soc_band_pct",
    "target_limit_w",
    "uncontrolled_slope_w_per_s",
]
