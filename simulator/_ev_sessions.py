"""EV charging sessions: the ``[ev]`` table, the seeded session generator and the car's curve.

Offers `EvSession` (one car at one charger: arrival, departure, energy
requested), `EvConfig` (the ``[ev]`` table), `read_ev` (read and validate it),
`EvSessionGenerator` (the sessions of one charger, in time order) and
`car_acceptance_w` (what a car draws at its state of charge).

Model (documented in the README's simulator section):

* **Arrivals.** Per charger, a car arrives an exponentially distributed gap
  (mean ``86400 / arrivals_per_day`` s) after the previous one left, so
  sessions at one charger never overlap. Scripted ``[[ev.session]]`` tables
  (a charging rush, say) take precedence: a generated session that would
  overlap the next scripted one is dropped.
* **Energy and dwell.** Normal draws, clipped below: energy requested
  ``N(energy_mean_wh, energy_sd_wh)`` >= ``energy_min_wh``, dwell
  ``N(dwell_mean_s, dwell_sd_s)`` >= ``dwell_min_s``. Departure = arrival +
  dwell, whether or not the car got its energy.
* **Charge curve.** The car draws ``min(car_max_power_w, charger rating)`` until
  ``taper_start_pct`` of its request is delivered, then linearly less, down to
  the charger's minimum power at 100 %, and nothing once the request is met.
* **Seeding.** Each charger has its own generator seeded from ``(seed,
  charger id)``: the sessions of a charger do not depend on the other chargers
  or on anything the controller does.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from ._toml_kit import Table

__all__ = ["EvConfig", "EvSession", "EvSessionGenerator", "car_acceptance_w", "read_ev"]

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True, order=True)
class EvSession:
    """One car at one charger (times in simulated s, energy in Wh)."""

    arrive_s: float
    depart_s: float
    energy_wh: float
    charger_id: int


@dataclass(frozen=True)
class EvConfig:
    """The ``[ev]`` table: session generator parameters and scripted sessions.

    ``arrivals_per_day`` is per charger; 0 (the default) = scripted sessions only.
    """

    seed: int = 0
    arrivals_per_day: float = 0.0
    energy_mean_wh: float = 20_000.0
    energy_sd_wh: float = 8_000.0
    energy_min_wh: float = 2_000.0
    dwell_mean_s: float = 4 * 3600.0
    dwell_sd_s: float = 2 * 3600.0
    dwell_min_s: float = 1_800.0
    car_max_power_w: float = 11_000.0
    """The most a car's on-board charger takes (W); the charger's rating caps it too."""
    taper_start_pct: float = 80.0
    """Share of the request after which the car's power tapers (%)."""
    sessions: tuple[EvSession, ...] = ()
    """Scripted sessions (``[[ev.session]]``), sorted by arrival."""


def read_ev(t: Table, charger_ids: frozenset[int]) -> EvConfig:
    """The ``[ev]`` table; scripted sessions must name an EV charger and not overlap."""
    cfg = EvConfig(
        seed=t.int_("seed", 0, minimum=0),
        arrivals_per_day=t.float_("arrivals_per_day", 0.0, minimum=0.0, maximum=1_000.0),
        energy_mean_wh=t.float_("energy_mean_wh", 20_000.0, positive=True),
        energy_sd_wh=t.float_("energy_sd_wh", 8_000.0, minimum=0.0),
        energy_min_wh=t.float_("energy_min_wh", 2_000.0, positive=True),
        dwell_mean_s=t.float_("dwell_mean_s", 4 * 3600.0, positive=True),
        dwell_sd_s=t.float_("dwell_sd_s", 2 * 3600.0, minimum=0.0),
        dwell_min_s=t.float_("dwell_min_s", 1_800.0, positive=True),
        car_max_power_w=t.float_("car_max_power_w", 11_000.0, positive=True),
        taper_start_pct=t.float_("taper_start_pct", 80.0, minimum=0.0, maximum=99.0),
        sessions=_read_sessions(t, charger_ids),
    )
    t.check_unknown()
    return cfg


def _read_sessions(t: Table, charger_ids: frozenset[int]) -> tuple[EvSession, ...]:
    """The ``[[ev.session]]`` tables, validated and sorted by arrival."""
    out: list[EvSession] = []
    for s in t.tables("session"):
        cid = s.int_("charger")
        if cid not in charger_ids:
            raise s.error("charger", cid, "no component with category 'ev_charger' has this id")
        arrive = s.float_("arrive_s", minimum=0.0)
        depart = s.float_("depart_s")
        if depart <= arrive:
            raise s.error("depart_s", depart, f"must be after arrive_s ({arrive:g})")
        out.append(EvSession(arrive, depart, s.float_("energy_wh", positive=True), cid))
        s.check_unknown()
    out.sort()
    last: dict[int, EvSession] = {}
    for sess in out:
        prev = last.get(sess.charger_id)
        if prev is not None and sess.arrive_s < prev.depart_s:
            raise t.error(
                "session",
                sess.arrive_s,
                f"charger {sess.charger_id}: session arriving at {sess.arrive_s:g} s overlaps"
                f" the one leaving at {prev.depart_s:g} s",
            )
        last[sess.charger_id] = sess
    return tuple(out)


class EvSessionGenerator:
    """The sessions of one charger, in time order (see the module docstring)."""

    def __init__(self, config: EvConfig, charger_id: int) -> None:
        """Sessions of ``charger_id``: its scripted ones merged with seeded random ones."""
        self.config = config
        self.charger_id = charger_id
        self._rng = np.random.default_rng([config.seed, charger_id])
        self._scripted = deque(s for s in config.sessions if s.charger_id == charger_id)
        self._end_s = 0.0

    def next(self) -> EvSession | None:
        """The next session (None = no more: no random arrivals and no scripted left)."""
        cand = self._draw() if self.config.arrivals_per_day > 0 else None
        nxt = self._scripted[0] if self._scripted else None
        if nxt is not None and (cand is None or nxt.arrive_s <= cand.depart_s):
            self._scripted.popleft()
            self._end_s = nxt.depart_s
            return nxt
        if cand is not None:
            self._end_s = cand.depart_s
        return cand

    def sessions_until(self, horizon_s: float) -> list[EvSession]:
        """Every session arriving before ``horizon_s`` (from a fresh generator's start)."""
        out: list[EvSession] = []
        while (sess := self.next()) is not None and sess.arrive_s < horizon_s:
            out.append(sess)
        return out

    def _draw(self) -> EvSession:
        cfg, rng = self.config, self._rng
        arrive = self._end_s + float(rng.exponential(86_400.0 / cfg.arrivals_per_day))
        dwell = max(cfg.dwell_min_s, float(rng.normal(cfg.dwell_mean_s, cfg.dwell_sd_s)))
        energy = max(cfg.energy_min_wh, float(rng.normal(cfg.energy_mean_wh, cfg.energy_sd_wh)))
        return EvSession(arrive, arrive + dwell, energy, self.charger_id)


def car_acceptance_w(
    delivered_wh: FloatArray,
    request_wh: FloatArray,
    max_w: FloatArray,
    min_w: FloatArray,
    taper_start_pct: float,
) -> FloatArray:
    """What each car draws when the charger does not limit it (W, >= 0).

    ``max_w`` until ``taper_start_pct`` of ``request_wh`` is delivered, then a
    straight line down to ``min_w`` at 100 %, then 0. A row with no request
    (``request_wh`` 0) draws nothing.
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        frac = np.where(request_wh > 0, delivered_wh / request_wh, 1.0)
    start = taper_start_pct / 100.0
    taper = max_w * (1.0 - frac) / (1.0 - start)
    p = np.where(frac < start, max_w, np.maximum(taper, min_w))
    return np.where(frac >= 1.0, 0.0, p)
