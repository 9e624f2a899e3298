"""Seeded fault scheduling and fault-episode accounting (no asyncio, no clock reads).

Offers:

* `FaultScheduler(config, site)`: draws the injections of every episode kind
  as independent Poisson processes in *simulated* time; `due(now_sim_s)`
  returns the `Injection` s that are due. Deterministic given
  ``config.seed``: every kind has its own RNG stream, so turning one kind on
  or off does not change the schedule of the others.
* `SetpointFaults(config)`: the per-call coin flips for delayed and rejected
  setpoint calls (their own RNG streams).
* `FaultLedger(config)`: the accounting behind ``SimulatorServer.stats()["faults"]``:
  counters per kind, the last ``max_episodes`` episodes, and per-kind
  aggregates that never forget.
* `BoundsHistory(keep_s)`: the active-power bounds each inverter advertised
  in telemetry, for the out-of-bounds race rule.
* `EPISODE_KINDS`, `CALL_KINDS`, `BAD_METRIC_MODES`, `FLAP_MODES`.

Episode kinds (``kind`` in stats):

* ``stream_end`` (instant): the component's telemetry streams end with UNAVAILABLE.
* ``stream_stall``: the component's telemetry goes silent, streams stay open.
* ``error_state``: an inverter or battery is in ERROR; the episode ends when
  it is RUNNING again (the client sent AckError, then Start).
* ``bad_metric``: the component's samples are corrupted; ``variant`` is one of
  `BAD_METRIC_MODES`: ``nan`` / ``+inf`` / ``-inf`` (value of the key metric:
  inverter AC active power, battery SoC), ``missing`` (that metric left out of
  the sample), ``missing_bounds`` (inverter active power bounds, battery DC
  power and SoC bounds left out).
* ``bounds_flap``: the component's own active power bounds shrink; ``variant``
  is ``derate:<fraction>`` (both sides scaled), ``charge_only`` or
  ``discharge_only``. Advertised and enforced bounds change together.

Per-call kinds (counted only): ``setpoint_delay``, ``setpoint_reject``.

Time bases: ``*_sim_s`` are simulated seconds since the simulation started;
``*_wall_s`` are wall seconds (monotonic) since the server started listening.
"""

from __future__ import annotations

import math
import random
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from .config import BatteryConfig, EvChargerConfig, FaultConfig, InverterConfig, SiteConfig
from .physics import Interval

__all__ = [
    "BAD_METRIC_MODES",
    "CALL_KINDS",
    "EPISODE_KINDS",
    "FLAP_MODES",
    "BoundsHistory",
    "Episode",
    "FaultLedger",
    "FaultScheduler",
    "Injection",
    "SetpointFaults",
]

EPISODE_KINDS: tuple[str, ...] = (
    "stream_end",
    "stream_stall",
    "error_state",
    "bad_metric",
    "bounds_flap",
)
"""Fault kinds that are episodes of one component (in stats ``episodes``)."""
CALL_KINDS: tuple[str, ...] = ("setpoint_delay", "setpoint_reject")
"""Fault kinds drawn per SetElectricalComponentPower call (only counted)."""
BAD_METRIC_MODES: tuple[str, ...] = ("nan", "+inf", "-inf", "missing", "missing_bounds")
"""How a ``bad_metric`` episode corrupts the samples (drawn uniformly)."""
FLAP_MODES: tuple[str, ...] = ("derate", "charge_only", "discharge_only")
"""How a ``bounds_flap`` episode shrinks the bounds (drawn uniformly)."""

_STREAM_KINDS = ("stream_end", "stream_stall")
_MAX_PER_POLL = 10_000
_WATCH_PER_INVERTER = 64


@dataclass(frozen=True)
class Injection:
    """One fault to inject now.

    Attributes:
        kind: one of `EPISODE_KINDS`.
        component_id: the faulted component.
        at_sim_s: when it was scheduled (simulated s; it is applied at the next tick).
        duration_sim_s: how long it lasts (simulated s; 0 for ``stream_end``
            and ``error_state``, which end on their own terms).
        variant: ``bad_metric`` mode or ``bounds_flap`` mode (else "").
        lower_w: ``bounds_flap``: the reduced lower bound (W, <= 0).
        upper_w: ``bounds_flap``: the reduced upper bound (W, >= 0).
    """

    kind: str
    component_id: int
    at_sim_s: float
    duration_sim_s: float = 0.0
    variant: str = ""
    lower_w: float = -math.inf
    upper_w: float = math.inf


def _rng(seed: int, kind: str) -> random.Random:
    return random.Random(f"gridloop-faults:{seed}:{kind}")


class FaultScheduler:
    """Poisson fault schedules per kind, in simulated time."""

    def __init__(self, config: FaultConfig, site: SiteConfig) -> None:
        """Prepare the schedules of ``config`` for the components of ``site``."""
        self.config = config
        stream = [c.id for c in site.components]
        batt_inv = [
            c.id
            for c in site.components
            if isinstance(c, InverterConfig) and c.inverter_type == "battery"
        ]
        # EV chargers last: a site without them draws the same episodes as before.
        device = batt_inv + [c.id for c in site.batteries] + [c.id for c in site.ev_chargers]
        self._ratings: dict[int, Interval] = {}
        for c in site.components:
            if isinstance(c, InverterConfig):
                self._ratings[c.id] = (c.rated_lower_w, c.rated_upper_w)
            elif isinstance(c, EvChargerConfig):
                self._ratings[c.id] = (0.0, c.rated_power_w)
            elif isinstance(c, BatteryConfig):
                self._ratings[c.id] = (-c.max_discharge_w, c.max_charge_w)
        self.eligible: dict[str, list[int]] = {
            kind: (stream if kind in _STREAM_KINDS else device) for kind in EPISODE_KINDS
        }
        """Component ids each kind can hit."""
        self._rate_per_s: dict[str, float] = {}
        self._rng: dict[str, random.Random] = {}
        self._next: dict[str, float] = {}
        for kind in EPISODE_KINDS:
            per_h = float(getattr(config, f"{kind}_per_h"))
            n = len(self.eligible[kind])
            if per_h <= 0 or n == 0:
                continue
            rate = per_h * n / 3600.0
            rng = _rng(config.seed, kind)
            self._rate_per_s[kind] = rate
            self._rng[kind] = rng
            self._next[kind] = rng.expovariate(rate)

    def due(self, now_sim_s: float) -> list[Injection]:
        """The injections scheduled at or before ``now_sim_s``, in time order."""
        out: list[Injection] = []
        for kind, at in self._next.items():
            rng = self._rng[kind]
            n = 0
            while at <= now_sim_s and n < _MAX_PER_POLL:
                out.append(self._draw(kind, rng, at))
                at += rng.expovariate(self._rate_per_s[kind])
                n += 1
            self._next[kind] = at
        out.sort(key=lambda inj: inj.at_sim_s)
        return out

    def _draw(self, kind: str, rng: random.Random, at: float) -> Injection:
        cfg = self.config
        cid = rng.choice(self.eligible[kind])
        if kind == "stream_stall":
            return Injection(kind, cid, at, cfg.stream_stall_s)
        if kind == "bad_metric":
            return Injection(kind, cid, at, cfg.bad_metric_s, rng.choice(BAD_METRIC_MODES))
        if kind == "bounds_flap":
            mode = rng.choice(FLAP_MODES)
            lo, hi = self._ratings[cid]
            if mode == "derate":
                frac = round(rng.uniform(0.1, 0.5), 3)
                variant = f"derate:{frac:g}"
                return Injection(kind, cid, at, cfg.bounds_flap_s, variant, lo * frac, hi * frac)
            if mode == "charge_only":
                return Injection(kind, cid, at, cfg.bounds_flap_s, mode, 0.0, hi)
            return Injection(kind, cid, at, cfg.bounds_flap_s, mode, lo, 0.0)
        return Injection(kind, cid, at)


class SetpointFaults:
    """Per-call coin flips for delayed and rejected setpoint calls (seeded)."""

    def __init__(self, config: FaultConfig) -> None:
        """Use the probabilities of ``config``."""
        self.config = config
        self._delay = _rng(config.seed, "setpoint_delay")
        self._reject = _rng(config.seed, "setpoint_reject")

    def delay_s(self) -> float:
        """Wall seconds to hold this call (0 = not delayed)."""
        p = self.config.setpoint_delay_prob
        if p > 0 and self._delay.random() < p:
            return self.config.setpoint_delay_s
        return 0.0

    def reject(self) -> bool:
        """Whether to fail this (valid) call with UNAVAILABLE."""
        p = self.config.setpoint_reject_prob
        return p > 0 and self._reject.random() < p


@dataclass(eq=False)
class Episode:
    """One fault episode of one component (mutable while it runs).

    ``inverter_ids`` are the battery inverters through which the component is
    commanded (itself; for a battery every inverter connected to it; none for
    PV inverters, meters and the grid). Note that in a 1:N group (one inverter,
    several batteries) the inverter stays usable with reduced bounds while one
    battery is faulty.
    ``setpoints_during`` counts non-zero active-power setpoints *received* for
    ``inverter_ids`` while the episode ran, from ``detection_grace_s`` (wall)
    after its start; ``setpoints_accepted_during`` those of them accepted.
    ``first_nonzero_setpoint_after_wall_s``: wall seconds from the episode's
    end to the first accepted non-zero setpoint for any of ``inverter_ids``
    (None until then; it stays None if the client never asks for power there).

    Which counts mean "the client commanded a faulty component": ``stream_stall``,
    ``error_state`` and ``bad_metric``. During ``bounds_flap`` setpoints within
    the reduced bounds are legitimate, and ``stream_end`` is instant (the
    episode ends when it starts, so nothing is "during").
    """

    kind: str
    component_id: int
    variant: str
    inverter_ids: tuple[int, ...]
    start_sim_s: float
    start_wall_s: float
    end_sim_s: float | None = None
    end_wall_s: float | None = None
    setpoints_during: int = 0
    setpoints_accepted_during: int = 0
    first_nonzero_setpoint_after_wall_s: float | None = None

    def to_json(self) -> dict[str, Any]:
        """The episode as a JSON-able dict (keys as the attributes)."""
        return {
            "kind": self.kind,
            "component_id": self.component_id,
            "variant": self.variant,
            "inverter_ids": list(self.inverter_ids),
            "start_sim_s": self.start_sim_s,
            "start_wall_s": self.start_wall_s,
            "end_sim_s": self.end_sim_s,
            "end_wall_s": self.end_wall_s,
            "setpoints_during": self.setpoints_during,
            "setpoints_accepted_during": self.setpoints_accepted_during,
            "first_nonzero_setpoint_after_wall_s": self.first_nonzero_setpoint_after_wall_s,
        }


@dataclass
class _Summary:
    episodes: int = 0
    ended: int = 0
    ended_with_inverters: int = 0
    setpoints_during: int = 0
    setpoints_accepted_during: int = 0
    episodes_with_setpoints_during: int = 0
    recovered: int = 0
    first_after_sum_s: float = 0.0
    first_after_max_s: float | None = None
    duration_sum_wall_s: float = 0.0
    skipped: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "episodes": self.episodes,
            "ended": self.ended,
            "ended_with_inverters": self.ended_with_inverters,
            "skipped": self.skipped,
            "setpoints_during": self.setpoints_during,
            "setpoints_accepted_during": self.setpoints_accepted_during,
            "episodes_with_setpoints_during": self.episodes_with_setpoints_during,
            "recovered": self.recovered,
            "first_nonzero_setpoint_after_wall_s_max": self.first_after_max_s,
            "first_nonzero_setpoint_after_wall_s_mean": (
                self.first_after_sum_s / self.recovered if self.recovered else None
            ),
            "duration_wall_s_mean": (
                self.duration_sum_wall_s / self.ended if self.ended else None
            ),
        }


class FaultLedger:
    """Counters and episodes of injected faults (bounded memory)."""

    def __init__(self, config: FaultConfig) -> None:
        """Account for faults under ``config`` (``detection_grace_s``, ``max_episodes``)."""
        self.config = config
        self.episodes: deque[Episode] = deque(maxlen=config.max_episodes)
        """The most recent episodes (older ones only live on in the summaries)."""
        self.calls: dict[str, int] = dict.fromkeys(CALL_KINDS, 0)
        """Per-call fault counts."""
        self._summary = {kind: _Summary() for kind in EPISODE_KINDS}
        self._total = 0
        self._active = 0
        self._watch: dict[int, list[Episode]] = {}

    def open(
        self,
        kind: str,
        component_id: int,
        inverter_ids: tuple[int, ...],
        sim_s: float,
        wall_s: float,
        variant: str = "",
    ) -> Episode:
        """Record the start of an episode; returns it (pass it to `close`)."""
        ep = Episode(kind, component_id, variant, inverter_ids, sim_s, wall_s)
        self.episodes.append(ep)
        self._total += 1
        self._active += 1
        self._summary[kind].episodes += 1
        for inv in inverter_ids:
            watched = self._watch.setdefault(inv, [])
            watched.append(ep)
            if len(watched) > _WATCH_PER_INVERTER:
                del watched[0]
        return ep

    def close(self, ep: Episode, sim_s: float, wall_s: float) -> None:
        """Record the end of ``ep`` (no-op if it already ended)."""
        if ep.end_sim_s is not None:
            return
        ep.end_sim_s = sim_s
        ep.end_wall_s = wall_s
        self._active -= 1
        summary = self._summary[ep.kind]
        summary.ended += 1
        if ep.inverter_ids:
            summary.ended_with_inverters += 1
        summary.duration_sum_wall_s += wall_s - ep.start_wall_s

    def skip(self, kind: str) -> None:
        """A scheduled injection found its component already in that fault."""
        self._summary[kind].skipped += 1

    def count_call(self, kind: str) -> None:
        """A per-call fault (`CALL_KINDS`) happened."""
        self.calls[kind] += 1

    def on_setpoint_received(self, inverter_id: int, power_w: float, wall_s: float) -> None:
        """An active-power setpoint for ``inverter_id`` arrived (before validation)."""
        if power_w == 0.0:
            return
        grace = self.config.detection_grace_s
        for ep in self._watch.get(inverter_id, ()):
            if ep.end_wall_s is None and wall_s >= ep.start_wall_s + grace:
                ep.setpoints_during += 1
                summary = self._summary[ep.kind]
                summary.setpoints_during += 1
                if ep.setpoints_during == 1:
                    summary.episodes_with_setpoints_during += 1

    def on_setpoint_accepted(
        self, inverter_id: int, power_w: float, received_wall_s: float, wall_s: float
    ) -> None:
        """An active-power setpoint for ``inverter_id`` was accepted at ``wall_s``."""
        if power_w == 0.0:
            return
        watched = self._watch.get(inverter_id)
        if not watched:
            return
        grace = self.config.detection_grace_s
        keep: list[Episode] = []
        for ep in watched:
            if ep.end_wall_s is None:
                if received_wall_s >= ep.start_wall_s + grace:
                    ep.setpoints_accepted_during += 1
                    self._summary[ep.kind].setpoints_accepted_during += 1
                keep.append(ep)
            elif ep.first_nonzero_setpoint_after_wall_s is None:
                after = max(0.0, wall_s - ep.end_wall_s)
                ep.first_nonzero_setpoint_after_wall_s = after
                summary = self._summary[ep.kind]
                summary.recovered += 1
                summary.first_after_sum_s += after
                if summary.first_after_max_s is None or after > summary.first_after_max_s:
                    summary.first_after_max_s = after
        self._watch[inverter_id] = keep

    def to_json(self) -> dict[str, Any]:
        """``injected`` (per kind, incl. per-call kinds), ``active_episodes``,
        ``episodes`` (most recent last), ``episodes_dropped`` and ``summary`` per kind."""
        injected: dict[str, int] = {k: s.episodes for k, s in self._summary.items()}
        injected.update(self.calls)
        return {
            "injected": injected,
            "active_episodes": self._active,
            "episodes": [ep.to_json() for ep in self.episodes],
            "episodes_dropped": self._total - len(self.episodes),
            "summary": {k: s.to_json() for k, s in self._summary.items()},
        }


@dataclass
class _Advertised:
    bounds: list[Interval]
    last_wall_s: float


@dataclass
class BoundsHistory:
    """Active-power bounds each inverter advertised in telemetry, kept ``keep_s`` wall s."""

    keep_s: float
    _by_id: dict[int, deque[_Advertised]] = field(default_factory=dict)

    def note(self, component_id: int, bounds: list[Interval], wall_s: float) -> None:
        """``bounds`` went out in a telemetry frame of ``component_id`` at ``wall_s``."""
        hist = self._by_id.get(component_id)
        if hist is None:
            hist = self._by_id[component_id] = deque()
        if hist and hist[-1].bounds == bounds:
            hist[-1].last_wall_s = wall_s
            return
        hist.append(_Advertised(list(bounds), wall_s))
        while len(hist) > 1 and hist[0].last_wall_s < wall_s - self.keep_s:
            hist.popleft()

    def advertised_since(self, component_id: int, power_w: float, since_wall_s: float) -> bool:
        """Whether ``power_w`` lay inside bounds advertised at or after ``since_wall_s``."""
        for entry in self._by_id.get(component_id, ()):
            if entry.last_wall_s >= since_wall_s and any(
                lo - 1e-6 <= power_w <= hi + 1e-6 for lo, hi in entry.bounds
            ):
                return True
        return False
