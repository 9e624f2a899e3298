"""Setpoint counters of the simulator server (`SimulatorServer.stats`).

Offers `REJECTION_CODES` (the status codes counted as rejections) and
`SetpointStats`: received / accepted / rejected setpoints in total and per
component, the first accepted ones' wall times, rendered JSON-able by `to_json`.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

__all__ = ["REJECTION_CODES", "SetpointStats"]

REJECTION_CODES = ("OUT_OF_RANGE", "INVALID_ARGUMENT", "FAILED_PRECONDITION", "NOT_FOUND")
"""Status codes counted in `SimulatorServer.stats` ``setpoints_rejected``."""

_UNKNOWN = -1
"""`SetpointStats.per_component` key of every id the site does not have."""


class SetpointStats:
    """Counts of setpoint outcomes (SetElectricalComponentPower; v1: SetComponentPower*),
    in total and per component.

    Requests naming ids the site does not have share one entry, so a client
    cannot grow the table.
    """

    def __init__(self, known_ids: frozenset[int]) -> None:
        """Count per component for ``known_ids``; every other id counts as unknown."""
        self._known = known_ids
        self.received = 0
        self.accepted = 0
        self.rejected: Counter[str] = Counter()
        self.out_of_bounds = 0
        self.reactive_out_of_bounds = 0
        self.bounds_race = 0
        self.injected = 0
        self.first_accepted_unix: float | None = None
        self.first_nonzero_accepted_unix: float | None = None
        self.per_component: dict[int, dict[str, Any]] = {}

    def _comp(self, cid: int) -> dict[str, Any]:
        if cid not in self._known:  # one entry for them all: a client cannot grow the table
            cid = _UNKNOWN
        entry = self.per_component.get(cid)
        if entry is None:
            entry = {
                "received": 0,
                "accepted": 0,
                "rejected": dict.fromkeys(REJECTION_CODES, 0),
                "out_of_bounds": 0,
                "bounds_race": 0,
                "rejected_injected": 0,
                "last_setpoint_w": None,
            }
            self.per_component[cid] = entry
        return entry

    def on_received(self, cid: int) -> None:
        """A setpoint request for ``cid`` arrived."""
        self.received += 1
        self._comp(cid)["received"] += 1

    def on_accepted(self, cid: int, power: float, active: bool) -> None:
        """A setpoint was accepted (``active``: an active-power one, of ``power`` W)."""
        self.accepted += 1
        entry = self._comp(cid)
        entry["accepted"] += 1
        if active:
            entry["last_setpoint_w"] = power
            now = time.time()
            if self.first_accepted_unix is None:
                self.first_accepted_unix = now
            if power != 0.0 and self.first_nonzero_accepted_unix is None:
                self.first_nonzero_accepted_unix = now

    def on_rejected(
        self, cid: int, code: str, race: bool = False, *, reactive: bool = False
    ) -> None:
        """A setpoint was rejected with ``code`` (``race``: inside recently advertised
        bounds; ``reactive``: a reactive-power one)."""
        self.rejected[code] += 1
        if code == "OUT_OF_RANGE" and reactive:
            self.reactive_out_of_bounds += 1
        entry = self._comp(cid)
        entry["rejected"][code] = entry["rejected"].get(code, 0) + 1
        if code == "OUT_OF_RANGE":
            if race:
                self.bounds_race += 1
                entry["bounds_race"] += 1
            else:
                self.out_of_bounds += 1
                entry["out_of_bounds"] += 1

    def on_injected_reject(self, cid: int) -> None:
        """A valid setpoint was failed by the ``setpoint_reject`` fault."""
        self.injected += 1
        self._comp(cid)["rejected_injected"] += 1

    def to_json(self) -> dict[str, Any]:
        """The ``setpoints_*`` and ``per_component`` keys of `SimulatorServer.stats`."""
        return {
            "setpoints_received": self.received,
            "setpoints_accepted": self.accepted,
            "setpoints_rejected": {code: self.rejected.get(code, 0) for code in REJECTION_CODES},
            "setpoints_out_of_bounds": self.out_of_bounds,
            "setpoints_reactive_out_of_bounds": self.reactive_out_of_bounds,
            "setpoints_rejected_bounds_race": self.bounds_race,
            "setpoints_rejected_injected": self.injected,
            "per_component": {
                ("unknown" if cid == _UNKNOWN else str(cid)): {
                    **e,
                    "rejected": dict(e["rejected"]),
                }
                for cid, e in sorted(self.per_component.items())
            },
        }
