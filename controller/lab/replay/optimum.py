"""The perfect-foresight optimum peak import of a battery fleet (the replay's reference).

The LP itself lives in the runtime (:mod:`controller.runtime.planning`), where
the auto limit runs it on a forecast; this module is the replay's face of it:
the same functions with the replay's error type (:class:`ReplayError`, one line
naming the field) for bad input. See :func:`controller.runtime.planning.optimal_peak`
for the LP, its maths and its re-check.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import wraps
from typing import Literal, ParamSpec, TypeVar

import numpy.typing as npt

from controller.errors import PlanningError
from controller.lab.replay.errors import ReplayError
from controller.runtime import planning
from controller.runtime.planning import FleetModel, OptimumResult

__all__ = ["FleetModel", "OptimumResult", "optimal_peak", "peak_is_feasible", "simulate_greedy"]

_P = ParamSpec("_P")
_R = TypeVar("_R")


def _as_replay_error(func: Callable[_P, _R]) -> Callable[_P, _R]:
    """The runtime function, its bad-input error re-raised as a :class:`ReplayError`."""
    @wraps(func)
    def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        try:
            return func(*args, **kwargs)
        except PlanningError as exc:
            raise ReplayError(str(exc), source=exc.source) from None
    return wrapper


@_as_replay_error
def optimal_peak(
    grid_w: npt.ArrayLike,
    step_s: float,
    fleet: FleetModel | Sequence[FleetModel],
    *,
    keep_final_energy: bool = False,
    interpolation: Literal["hold", "linear"] = "hold",
) -> OptimumResult:
    """Lowest achievable peak import with perfect foresight (LP, HiGHS).

    :func:`controller.runtime.planning.optimal_peak` without floor or end energy.

    Raises:
        ReplayError: bad input (names the field).
    """
    return planning.optimal_peak(grid_w, step_s, fleet, keep_final_energy=keep_final_energy,
                                 interpolation=interpolation)


simulate_greedy = _as_replay_error(planning.simulate_greedy)
"""Greedy peak shaving against a limit (:func:`controller.runtime.planning.simulate_greedy`)."""
peak_is_feasible = _as_replay_error(planning.peak_is_feasible)
"""Whether some schedule holds a limit (:func:`controller.runtime.planning.peak_is_feasible`)."""
