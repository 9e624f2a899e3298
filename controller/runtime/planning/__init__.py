"""Choosing the import limit: the peak LP, load forecasters and the auto limit.

* :func:`optimal_peak` / :class:`FleetModel` / :class:`OptimumResult` — the lowest
  peak a battery fleet can hold over a series (LP, HiGHS), with a floor and an
  end energy; the replay's perfect-foresight reference and the planner's core.
* :func:`simulate_greedy` / :func:`peak_is_feasible` / :func:`required_energy` —
  exact sequential references for one aggregate battery (forward greedy,
  feasibility, backward pre-charge energy).

* :mod:`~controller.runtime.planning.forecast` — :func:`forecast`, :class:`History`,
  :data:`FORECASTERS`: the next intervals' load from the site's own history
  (the default ``shape_level``: the typical local day × today's level);
  ``day_scenarios``: past days of each day's class as scenarios; ``utc_offsets``:
  a zone's offsets, vectorised.
* :class:`AutoLimit` / :class:`AutoLimitConfig` / :class:`LimitPlan` — the
  ``limit = "auto"`` planner: forecast (or past weeks or days as scenarios),
  lowest holdable limit above the billed peak plus a margin, pre-charge target;
  re-planned at every interval boundary. Its exact, vectorised core for one
  aggregate battery and many scenarios is in ``_holdable`` (closed-form backward
  energy, bisection on the lowest holdable limit).

Everything here is pure and synchronous: time is an argument, there is no
clock and no I/O; the live service and the replay run the same code.
Bad input raises :class:`~controller.errors.PlanningError` naming the argument.
"""

from controller.runtime.planning._auto import AutoLimit, AutoLimitConfig, LimitPlan
from controller.runtime.planning._lp import (
    FleetModel,
    OptimumResult,
    optimal_peak,
    peak_is_feasible,
    required_energy,
    simulate_greedy,
)
from controller.runtime.planning.forecast import FORECASTERS, ForecastParams, History, forecast

__all__ = [
    "FORECASTERS",
    "AutoLimit",
    "AutoLimitConfig",
    "FleetModel",
    "ForecastParams",
    "History",
    "LimitPlan",
    "OptimumResult",
    "forecast",
    "optimal_peak",
    "peak_is_feasible",
    "required_energy",
    "simulate_greedy",
]
