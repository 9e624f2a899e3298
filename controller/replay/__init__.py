"""Deterministic replay and control-quality measurement (``gridloop replay``).

Offers:

* :func:`load_profile` / :class:`LoadProfile` — a load series from a CSV
  (timestamp + one numeric column, any unit), selected and scaled.
* :func:`optimal_peak` / :class:`FleetModel` / :class:`OptimumResult` — the
  perfect-foresight optimum peak import by LP (HiGHS).
* :class:`ReplayError` — the package's one error type (one-line messages).
"""

from controller.replay.errors import ReplayError
from controller.replay.loader import BUNDLED_LOAD_CSV, LoadProfile, load_profile
from controller.replay.optimum import FleetModel, OptimumResult, optimal_peak

__all__ = [
    "BUNDLED_LOAD_CSV",
    "FleetModel",
    "LoadProfile",
    "OptimumResult",
    "ReplayError",
    "load_profile",
    "optimal_peak",
]
