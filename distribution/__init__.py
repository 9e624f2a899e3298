"""Exact, vectorised, bounds-constrained power allocation (pure numpy/scipy).

Arrays in, a result object out: no I/O, no clock, no asyncio, no logging.
Powers in W with the passive sign convention (positive = charging), SoC in
percent, capacity in Wh.

Public names:

* `Fleet` — validated columnar snapshot of inverters, batteries and links;
  derives the groups (connected components) and their allowed power sets.
* `allocate` — split a requested total into one setpoint per inverter
  (weighted water-filling, exact under exclusion bands; method and
  guarantees in `distribution._allocate`).
* `AllocationResult` — setpoints, achieved total, status, bounds, exclusions.
* `AllocationStatus` — EXACT, SATURATED_UPPER/LOWER, NEAREST_REACHABLE,
  NOTHING_AVAILABLE, APPROXIMATE.
* `ExclusionReason` — why a component was left out (int8 codes per component).
* `DistributionError` — root error (a `ValueError`) for structural bad input,
  naming the field.
* `AllocationInvariantError` — an `AssertionError` raised if a result ever
  violates the original bounds (a bug, never bad input).
* `MAX_GROUP_INVERTERS` — largest supported number of inverters per group.
* `allocate_kinds` — batteries, PV curtailment and EV charger limits in a configurable
  order (`KINDS`, `DEFAULT_KIND_ORDER`): the batteries take the power manager's target,
  PV / EV only what the strategies' bounds require (`distribution._kinds`).
* `PvInverters`, `EvChargers`, `KindsResult` — its inputs and result; `pv_caps`
  (water-fill by rated power) and `ev_limits` (equal share by need, exclusion
  band respected, pauses) are its per-kind kernels.
* `group_links` — the groups (connected components) of an inverter–battery
  link array, as group indices per inverter and per battery: the one
  grouping function (`Fleet` and the actors' component graph use it).
"""

from ._allocate import AllocationResult, AllocationStatus, allocate
from ._errors import AllocationInvariantError, DistributionError
from ._fleet import ExclusionReason, Fleet
from ._groups import MAX_GROUP_INVERTERS, group_links
from ._kinds import (
    DEFAULT_KIND_ORDER,
    KINDS,
    EvChargers,
    KindsResult,
    PvInverters,
    allocate_kinds,
    ev_limits,
    pv_caps,
)

__all__ = [
    "DEFAULT_KIND_ORDER",
    "KINDS",
    "MAX_GROUP_INVERTERS",
    "AllocationInvariantError",
    "AllocationResult",
    "AllocationStatus",
    "DistributionError",
    "EvChargers",
    "ExclusionReason",
    "Fleet",
    "KindsResult",
    "PvInverters",
    "allocate",
    "allocate_kinds",
    "ev_limits",
    "group_links",
    "pv_caps",
]
