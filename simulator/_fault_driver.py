"""`FaultDriver`: applies the scheduled fault episodes to a running simulator server.

`simulator.faults` decides *when* (a seeded schedule) and keeps the books; this
module does the *what*: it ends due episodes, closes error episodes the client
recovered from, and starts the injections that are due (streams ended or stalled,
metrics corrupted, bounds flapped, components put in ERROR). The telemetry
publisher reads `FaultDriver.stalled` and `FaultDriver.bad_metric`; the setpoint
handler asks it for per-call delays and rejections.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .config import BatteryConfig, EvChargerConfig, FaultConfig, SiteConfig
from .faults import BoundsHistory, Episode, FaultLedger, FaultScheduler, Injection, SetpointFaults
from .physics import ComponentState, SitePhysics

__all__ = ["FaultDriver", "affected_inverters"]


def affected_inverters(site: SiteConfig) -> dict[int, tuple[int, ...]]:
    """Per component, the battery inverters (or EV chargers) a controller commands it through.

    A battery inverter or EV charger: itself; a battery: every inverter connected
    to it; PV inverters, meters and the grid connection point: none.
    """
    inverters = {c.id for c in site.inverters if c.inverter_type == "battery"}
    out: dict[int, tuple[int, ...]] = {}
    for c in site.components:
        if c.id in inverters or isinstance(c, EvChargerConfig):
            out[c.id] = (c.id,)
        elif isinstance(c, BatteryConfig):
            out[c.id] = tuple(
                sorted(s for s, d in site.connections if d == c.id and s in inverters)
            )
        else:
            out[c.id] = ()
    return out


class FaultDriver:
    """The fault episodes of one server: scheduled, running, and what they changed."""

    def __init__(
        self,
        config: FaultConfig,
        site: SiteConfig,
        physics: SitePhysics,
        *,
        break_streams: Callable[[int], None],
        wall_s: Callable[[], float],
    ) -> None:
        """Drive ``config``'s faults on ``physics``.

        Args:
            config: the fault injection configuration.
            site: the simulated site (which components may fail).
            physics: the model the faults act on.
            break_streams: ends the telemetry streams of a component (``stream_end``).
            wall_s: wall seconds since the server started listening.
        """
        self.config = config
        self.physics = physics
        self._break_streams = break_streams
        self._wall_s = wall_s
        self._scheduler = FaultScheduler(config, site)
        self.calls = SetpointFaults(config)
        """Per-call coin flips for delayed and rejected setpoints."""
        self.ledger = FaultLedger(config)
        """Every episode and counter (``stats()["faults"]``)."""
        self.advertised = BoundsHistory(
            keep_s=config.bounds_grace_s + config.setpoint_delay_s + 1.0
        )
        """Active-power bounds the inverters advertised in telemetry (the race rule)."""
        self.stalled: set[int] = set()
        """Components whose telemetry a ``stream_stall`` episode silences."""
        self.bad_metric: dict[int, str] = {}
        """Per component in a ``bad_metric`` episode, its mode (`BAD_METRIC_MODES`)."""
        self._flapping: set[int] = set()
        self._timed: list[tuple[float, Episode]] = []  # (end sim s, episode) of timed episodes
        self._errors: list[Episode] = []  # open error_state episodes
        self.inverters_of = affected_inverters(site)
        """Per component, the battery inverters a controller commands it through."""
        self.active = config.enabled
        """Whether any fault kind is configured (else the driver never runs)."""
        self.injecting = True
        """Set False to stop injecting new faults (scheduled episodes and per-call
        delays/rejections); running episodes still end as usual. True again resumes
        with the schedule from then on (no burst of missed events)."""

    def run(self) -> None:
        """End due episodes, close recovered error episodes, inject what is due."""
        now = self.physics.now_s
        wall = self._wall_s()
        if self._timed:
            self._end_due(now, wall)
        if self._errors:
            self._close_recovered(now, wall)
        due = self._scheduler.due(now)
        if self.injecting:
            for inj in due:
                self._inject(inj, wall)

    def _end_due(self, now: float, wall: float) -> None:
        """Undo and close the timed episodes whose end has come."""
        keep: list[tuple[float, Episode]] = []
        for end, ep in self._timed:
            if now >= end:
                self._undo(ep)
                self.ledger.close(ep, now, wall)
            else:
                keep.append((end, ep))
        self._timed = keep

    def _close_recovered(self, now: float, wall: float) -> None:
        """Close the error episodes whose component runs again."""
        still: list[Episode] = []
        for ep in self._errors:
            if self.physics.state_of(ep.component_id) == ComponentState.RUNNING:
                self.ledger.close(ep, now, wall)
            else:
                still.append(ep)
        self._errors = still

    def _busy(self, kind: str, cid: int) -> bool:
        """Whether ``cid`` is already in a ``kind`` episode (the injection is skipped)."""
        return (
            (kind == "stream_stall" and cid in self.stalled)
            or (kind == "bad_metric" and cid in self.bad_metric)
            or (kind == "bounds_flap" and cid in self._flapping)
            or (kind == "error_state" and self.physics.state_of(cid) == ComponentState.ERROR)
        )

    def _inject(self, inj: Injection, wall: float) -> None:
        phys = self.physics
        cid, kind = inj.component_id, inj.kind
        if self._busy(kind, cid):
            self.ledger.skip(kind)
            return
        now = phys.now_s
        ep = self.ledger.open(kind, cid, self.inverters_of.get(cid, ()), now, wall, inj.variant)
        if kind == "stream_end":
            self._break_streams(cid)
            self.ledger.close(ep, now, wall)
            return
        if kind == "error_state":
            phys.inject_error(cid)
            self._errors.append(ep)
            return
        if kind == "stream_stall":
            self.stalled.add(cid)
        elif kind == "bad_metric":
            self.bad_metric[cid] = inj.variant
        elif kind == "bounds_flap":
            phys.limit_power(cid, inj.lower_w, inj.upper_w)
            self._flapping.add(cid)
        self._timed.append((now + inj.duration_sim_s, ep))

    def _undo(self, ep: Episode) -> None:
        cid = ep.component_id
        if ep.kind == "stream_stall":
            self.stalled.discard(cid)
        elif ep.kind == "bad_metric":
            self.bad_metric.pop(cid, None)
        elif ep.kind == "bounds_flap":
            self.physics.clear_power_limit(cid)
            self._flapping.discard(cid)

    def to_json(self) -> dict[str, Any]:
        """The ``faults`` entry of `SimulatorServer.stats`."""
        out: dict[str, Any] = {
            "enabled": self.config.enabled,
            "injecting": self.injecting,
            "config": dict(vars(self.config)),
        }
        out.update(self.ledger.to_json())
        return out
