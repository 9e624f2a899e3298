"""`LatencyProbe`: opt-in timing of frequency steps and the setpoints answering them."""

from __future__ import annotations

import time
from typing import Any

__all__ = ["LatencyProbe"]


class LatencyProbe:
    """Opt-in timing of frequency steps and the setpoints that answer them (benchmarks).

    Attach one as ``SimulatorServer.latency_probe`` (None = off, the default; the
    hot paths then cost one ``is None`` check). Every time is
    ``time.monotonic_ns()`` of the simulator process, so emissions and arrivals
    share one clock. Call `mark_step` right after changing the physics (e.g.
    ``physics.nominal_hz``): the first frame of ``component_id`` (the grid
    meter) yielded to a client from a later telemetry publication
    (`SimulatorServer.publications`) is the step's emission. Every active-power
    SetElectricalComponentPower request is recorded on arrival (before
    validation) as ``(ns, component id, power W)``.
    """

    def __init__(self, component_id: int) -> None:
        """Watch the telemetry frames of ``component_id`` (the grid meter)."""
        self.component_id = component_id
        self.steps: list[dict[str, Any]] = []
        """Per step: ``label``, ``marked_ns``, ``emitted_ns`` (None until emitted)."""
        self.setpoints: list[tuple[int, int, float]] = []
        """Active-power setpoints as they arrived: (ns, component id, power W)."""
        self._pending: list[tuple[int, int]] = []  # (index into steps, publication at mark)

    def mark_step(self, label: float, publication: int) -> None:
        """Record a step made while ``publication`` was the latest telemetry publication."""
        self._pending.append((len(self.steps), publication))
        self.steps.append({"label": label, "marked_ns": time.monotonic_ns(), "emitted_ns": None})

    def on_frame(self, publication: int) -> None:
        """A frame of the watched component from ``publication`` is being yielded."""
        if self._pending:
            now = time.monotonic_ns()
            keep = []
            for index, marked in self._pending:
                if publication > marked:
                    self.steps[index]["emitted_ns"] = now
                else:
                    keep.append((index, marked))
            self._pending = keep

    def on_setpoint(self, component_id: int, power_w: float) -> None:
        """An active-power setpoint arrived."""
        self.setpoints.append((time.monotonic_ns(), component_id, power_w))

    def to_json(self) -> dict[str, Any]:
        """Everything recorded, JSON-able."""
        return {
            "clock": "time.monotonic_ns of the simulator process",
            "component_id": self.component_id,
            "steps": [dict(s) for s in self.steps],
            "setpoints": [list(s) for s in self.setpoints],
        }
