"""Choosing the import limit: the peak LP, load forecasters and the auto limit.

* :func:`optimal_peak` / :class:`FleetModel` / :class:`OptimumResult` — the lowest
  peak a battery fleet can hold over a series (LP, HiGHS), with a floor and an
  end energy; the replay's perfect-foresight reference and the planner's core.
* :func:`simulate_greedy` / :func:`peak_is_feasible` / :func:`required_energy` —
  exact sequential references for one aggregate battery (forward greedy,
  feasibility, backward pre-charge energy).

Everything here is pure and synchronous: time is an argument, there is no
clock and no I/O; the live service and the replay run the same code.
Bad input raises :class:`~controller.errors.PlanningError` naming the argument.
"""

from controller.runtime.planning._lp import (
    FleetModel,
    OptimumResult,
    optimal_peak,
    peak_is_feasible,
    required_energy,
    simulate_greedy,
)

__all__ = [
    "FleetModel",
    "OptimumResult",
    "optimal_peak",
    "peak_is_feasible",
    "required_energy",
    "simulate_greedy",
]
