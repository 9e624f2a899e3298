"""The measures of the PV / EV site replay, as pure functions of the true trajectory.

* :func:`window_means` — means of a piecewise-linear trajectory over fixed windows
  (1 s, 15 min), exact for any vertex times.
* :func:`runs_below` / :func:`longest_run_below` — the stretches of time a trajectory
  spends below a level, and the longest.
* :func:`load_drops` — where a load series falls by at least a given amount.
* :func:`comply_times` — after each load drop, how long the export stayed above its limit.
* :func:`curtailed_storable_wh` — curtailed PV energy that the batteries could have
  stored instead (they had charge headroom, in power and in SoC).
* :func:`ev_allowed_wh` — what each EV session could have received by its departure
  under the import limit (the fluid reference of ``ev_energy_delivered_pct``).

The trajectory is given by its vertices (``time_s`` increasing; the physics'
state at the end of each step); between vertices it is linear. Units and signs:
W, Wh, s; + = import / charging / consuming, PV production negative.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import numpy.typing as npt

from distribution._waterfill import water_fill_upper  # the allocator's own water-fill
from simulator._ev_sessions import car_acceptance_w  # the simulated car's charge curve

__all__ = [
    "EvRef",
    "comply_times",
    "curtailed_storable_wh",
    "ev_allowed_wh",
    "integral_wh",
    "load_drops",
    "longest_run_below",
    "runs_below",
    "window_means",
]

FloatArray = npt.NDArray[np.float64]


def integral_wh(time_s: FloatArray, values_w: FloatArray) -> float:
    """The energy of a piecewise-linear power trajectory (trapezoids; Wh)."""
    if time_s.size < 2:
        return 0.0
    return float(np.sum(0.5 * (values_w[1:] + values_w[:-1]) * np.diff(time_s))) / 3600.0


def window_means(time_s: FloatArray, values: FloatArray, window_s: float,
                 n_windows: int) -> FloatArray:
    """Mean of a piecewise-linear trajectory over ``[k·window_s, (k+1)·window_s)``.

    The window boundaries are inserted as vertices (by linear interpolation, exact
    for a piecewise-linear trajectory), so a step may cross boundaries. A window
    the trajectory covers only in part is averaged over the part covered (the last
    one of a run that ends mid-window); one it does not reach is nan.

    Returns:
        ``n_windows`` means.
    """
    edges = np.arange(n_windows + 1, dtype=np.float64) * window_s
    inside = edges[(edges > time_s[0]) & (edges < time_s[-1])]
    t = np.union1d(time_s, inside)
    v = np.interp(t, time_s, values)
    k = np.clip(np.floor((0.5 * (t[1:] + t[:-1])) / window_s).astype(np.int64), 0,
                n_windows - 1)
    dt = np.diff(t)
    area = np.bincount(k, weights=0.5 * (v[1:] + v[:-1]) * dt, minlength=n_windows)
    span = np.bincount(k, weights=dt, minlength=n_windows)
    with np.errstate(invalid="ignore", divide="ignore"):
        out: FloatArray = np.where(span > 0, area / np.where(span > 0, span, 1.0), np.nan)
    return out


def _crossings(time_s: FloatArray, values: FloatArray, level: float) -> FloatArray:
    """For each step, when the linear trajectory crosses ``level`` (nan: it does not)."""
    v0, v1 = values[:-1], values[1:]
    with np.errstate(invalid="ignore", divide="ignore"):
        frac = (level - v0) / (v1 - v0)
    cross = ((v0 < level) != (v1 < level)) & np.isfinite(frac)
    out: FloatArray = np.where(cross, time_s[:-1] + frac * np.diff(time_s), np.nan)
    return out


def runs_below(time_s: FloatArray, values: FloatArray, level: float) -> FloatArray:
    """The stretches of time the trajectory spends strictly below ``level``.

    Returns:
        Shape (k, 2): each stretch's start and end (s; crossings interpolated, a
        stretch open at either end of the trajectory cut there), in time order.
    """
    if time_s.size < 2:
        return np.zeros((0, 2))
    below = values < level
    cross = _crossings(time_s, values, level)
    flips = np.flatnonzero(below[1:] != below[:-1])
    times = cross[flips]
    starts = times[below[flips + 1]]
    ends = times[~below[flips + 1]]
    if below[0]:
        starts = np.concatenate([[time_s[0]], starts])
    if below[-1]:
        ends = np.concatenate([ends, [time_s[-1]]])
    out: FloatArray = np.column_stack([starts, ends]) if starts.size else np.zeros((0, 2))
    return out


def longest_run_below(time_s: FloatArray, values: FloatArray, level: float) -> float:
    """The longest stretch of time (s) the trajectory spends strictly below ``level``."""
    runs = runs_below(time_s, values, level)
    return float((runs[:, 1] - runs[:, 0]).max(initial=0.0))


def load_drops(values_w: FloatArray, step_s: float, min_drop_w: float) -> FloatArray:
    """Start times (s) of the load drops of a sampled load (linear between samples).

    A drop is a run of consecutive falling samples whose total fall is at least
    ``min_drop_w``; it starts at the last sample before the fall.
    """
    d = np.diff(values_w)
    falling = d < 0
    if not falling.any():
        return np.zeros(0)
    edges = np.diff(falling.astype(np.int8), prepend=0, append=0)
    starts = np.flatnonzero(edges == 1)
    ends = np.flatnonzero(edges == -1)
    fall = np.array([-d[a:b].sum() for a, b in zip(starts, ends, strict=True)])
    out: FloatArray = starts[fall >= min_drop_w].astype(np.float64) * step_s
    return out


def comply_times(time_s: FloatArray, grid_w: FloatArray, drops_s: FloatArray,
                 export_limit_w: float, tolerance_w: float, window_s: float,
                 hold_s: float) -> tuple[FloatArray, int]:
    """How long after each load drop the export took to comply with its limit.

    For a drop at ``t_d`` the time to comply runs from ``t_d`` to the first moment from
    which the export stays within ``export_limit_w + tolerance_w`` (``grid_w`` at or
    above ``−export_limit_w − tolerance_w``) for at least ``hold_s``: 0 when it never
    leaves it, the end of the drop's excursion otherwise (a later, unrelated excess
    after ``hold_s`` within the limit does not count). A drop whose export has not
    complied so by ``t_d + window_s`` (cut at the next drop and the trajectory's end)
    has not complied: its time is the whole window, and it is counted.

    Returns:
        The time to comply of each drop (s) and the number that did not comply.
    """
    runs = runs_below(time_s, grid_w, -export_limit_w - tolerance_w)
    out = np.zeros(drops_s.size)
    failed = 0
    t_last = float(time_s[-1])
    for k, t_d in enumerate(drops_s.tolist()):
        t_end = min(t_d + window_s, t_last)
        if k + 1 < drops_s.size:
            t_end = min(t_end, float(drops_s[k + 1]))
        c = t_d
        for s, e in runs[runs[:, 1] > t_d].tolist():
            if s >= c + hold_s:
                break
            c = max(c, e)
        if c > t_d and c >= t_end - 1e-9:
            out[k] = t_end - t_d
            failed += 1
        else:
            out[k] = c - t_d
    return out, failed


def curtailed_storable_wh(time_s: FloatArray, pv_w: FloatArray, pv_available_w: FloatArray,
                          battery_w: FloatArray, battery_upper_w: FloatArray) -> float:
    """Curtailed PV energy the batteries could have stored instead (Wh).

    At each vertex the curtailed power is ``max(0, pv_w − pv_available_w)`` (both
    negative: the production given up) and the batteries' headroom
    ``max(0, battery_upper_w − battery_w)`` — the battery inverters' summed upper
    bound, which the physics sets to 0 at the upper SoC limit, so headroom means
    power *and* energy room. The storable power is the smaller of the two,
    integrated over time: a curtailment while the batteries were full (or charging
    at their limit) counts nothing, one while they could have charged counts.
    """
    curtailed = np.maximum(pv_w - pv_available_w, 0.0)
    headroom = np.maximum(battery_upper_w - battery_w, 0.0)
    return integral_wh(time_s, np.minimum(curtailed, headroom))


class EvRef:
    """One EV session for :func:`ev_allowed_wh` (W, Wh, s)."""

    __slots__ = ("arrive_s", "depart_s", "max_w", "min_w", "request_wh")

    def __init__(self, arrive_s: float, depart_s: float, request_wh: float, max_w: float,
                 min_w: float) -> None:
        """A car at a charger: its stay, its request, what it can draw at most and at the end."""
        self.arrive_s = arrive_s
        self.depart_s = depart_s
        self.request_wh = request_wh
        self.max_w = max_w
        self.min_w = min_w


def ev_allowed_wh(sessions: Sequence[EvRef], headroom_w: Callable[[float], float],
                  end_s: float, step_s: float, taper_start_pct: float) -> FloatArray:
    """What each session could have received by its departure under the import limit (Wh).

    The *allowed* energy of a session: the energy it receives in a fluid reference
    run over ``[0, end_s)`` in steps of ``step_s`` in which, at each step, the cars
    connected and not yet served draw what their charge curve takes
    (the simulator's ``car_acceptance_w``, from the energy the reference has
    given them) but together at most ``headroom_w(t)`` at the step's midpoint —
    the import limit minus what the site draws without batteries and EVs (load −
    available PV), never below 0 — shared by equal power, water-filled (a car that
    takes less leaves the rest to the others). Batteries are not counted on (the
    EVs may not drain them), the chargers' minimum current is ignored (a fluid
    share may be below it), and PV that the site would otherwise export counts as
    headroom. So the allowed energy is at most the request and what the car could
    take in its stay, and equals the request whenever the limit did not bind.

    Returns:
        Per session (the order of ``sessions``), the allowed energy (Wh).
    """
    n = len(sessions)
    got = np.zeros(n)
    if n == 0:
        return got
    arrive = np.array([s.arrive_s for s in sessions])
    depart = np.array([s.depart_s for s in sessions])
    request = np.array([s.request_wh for s in sessions])
    max_w = np.array([s.max_w for s in sessions])
    min_w = np.array([s.min_w for s in sessions])
    steps = math.ceil(min(end_s, float(depart.max())) / step_s - 1e-9)
    for k in range(steps):
        t0 = k * step_s
        h = min(step_s, end_s - t0)
        on = (arrive < t0 + h) & (depart > t0) & (got < request)
        if not on.any():
            continue
        idx = np.flatnonzero(on)
        # The part of the step each car is there.
        share = (np.minimum(depart[idx], t0 + h) - np.maximum(arrive[idx], t0)) / h
        want = car_acceptance_w(got[idx], request[idx], max_w[idx], min_w[idx],
                                taper_start_pct) * share
        room = max(0.0, headroom_w(t0 + 0.5 * h))
        total = float(want.sum())
        p = want if total <= room else water_fill_upper(np.ones(idx.size), want, room)
        got[idx] = np.minimum(got[idx] + p * h / 3600.0, request[idx])
    return got
