"""The lowest peak import a battery fleet can hold over a load series, by linear programming.

:func:`optimal_peak` answers: knowing the uncontrolled grid-import series (the
whole period in the replay, a forecast of the coming hours in the online
planner), what is the lowest peak import a battery fleet (one aggregate
battery, :class:`FleetModel`, or one model per battery group) can hold? The
replay uses it on the real series as the perfect-foresight reference; the auto
limit (:mod:`controller.runtime.planning._auto`) on a forecast, with a floor
(the period's billed peak: planning below it gains nothing) and an end energy
(the plan must not empty the battery at the horizon's end).

The LP (solved with ``scipy.optimize.linprog``, method HiGHS), over samples
``t = 0..T-1`` of length ``h = step_s / 3600`` hours::

    minimise     P  (+ 1e-7 · Σ (c_t + d_t) / T, a tie-break against needless cycling)
    subject to   L_t + c_t − d_t ≤ P                          (import at or below the peak)
                 E_{t+1} = E_t + h · (η_c · c_t − d_t / η_d)  (energy balance, E_0 given)
                 E_min ≤ E_t ≤ E_max                          (SoC window, t = 1..T)
                 0 ≤ c_t ≤ C_max,  0 ≤ d_t ≤ D_max            (AC charge / discharge power)
                 P ≥ P_floor                                  (when ``peak_floor_w`` is given)
                 E_T ≥ E_end          (``final_energy_min_wh``; E_0 with ``keep_final_energy``)

``L_t`` is the uncontrolled grid power (W, + = import: load − PV), ``c_t`` /
``d_t`` the fleet's AC charging / discharging power (W, both ≥ 0; the battery
power in the passive sign convention is ``c_t − d_t``), ``E_t`` the stored
energy (Wh), ``η_c`` / ``η_d`` the one-way charge / discharge efficiencies.
Splitting charge and discharge keeps the efficiency losses linear; with
losses, charging and discharging at once is never better, so the split is
exact. The grid power is held constant within a sample, so the optimum is
exact for piecewise-constant series and, for finer-sampled continuous ones,
exact on the samples.

The solution is re-checked against the original problem (energy window,
power limits, achieved peak) before it is returned; the outcome is data
(:class:`OptimumResult`), only bad input raises :class:`PlanningError`.

For one aggregate battery two exact sequential references complete it:
:func:`simulate_greedy` (forward: the highest stored energy any policy holding
a limit can have, so a limit is feasible iff greedy holds it) and
:func:`required_energy` (backward: the lowest stored energy at each boundary
from which a limit can still be held to the end — the pre-charge target).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt
import scipy.optimize
import scipy.sparse

from controller.errors import PlanningError
from controller.runtime.planning._holdable import required_energies

__all__ = [
    "FleetModel",
    "OptimumResult",
    "optimal_peak",
    "peak_is_feasible",
    "required_energy",
    "simulate_greedy",
]

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class FleetModel:
    """The battery fleet as one aggregate battery (AC side).

    Power limits are magnitudes in watts at the AC side of the inverters;
    energies in watt-hours of stored energy.
    """

    charge_max_w: float
    """Largest AC charging power (≥ 0)."""
    discharge_max_w: float
    """Largest AC discharging power, as a positive number (≥ 0)."""
    energy_min_wh: float
    """Lowest allowed stored energy (the lower SoC limit × capacity)."""
    energy_max_wh: float
    """Highest allowed stored energy (the upper SoC limit × capacity)."""
    energy_init_wh: float
    """Stored energy at the start of the horizon."""
    charge_efficiency: float = 1.0
    """Stored energy per AC energy charged, in (0, 1]."""
    discharge_efficiency: float = 1.0
    """AC energy delivered per stored energy taken out, in (0, 1]."""

    def validate(self) -> None:
        """Check every field; raise :class:`PlanningError` naming the bad one."""
        for name in ("charge_max_w", "discharge_max_w", "energy_min_wh", "energy_max_wh",
                     "energy_init_wh"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v >= 0):
                raise PlanningError(f"fleet model: {name} must be finite and ≥ 0, got {v}",
                                  source=name)
        for name in ("charge_efficiency", "discharge_efficiency"):
            v = getattr(self, name)
            if not (math.isfinite(v) and 0 < v <= 1):
                raise PlanningError(f"fleet model: {name} must be in (0, 1], got {v}", source=name)
        if self.energy_min_wh > self.energy_max_wh:
            raise PlanningError(f"fleet model: energy_min_wh {self.energy_min_wh} > energy_max_wh "
                              f"{self.energy_max_wh}", source="energy_min_wh")
        if not self.energy_min_wh - 1e-9 <= self.energy_init_wh <= self.energy_max_wh + 1e-9:
            raise PlanningError(f"fleet model: energy_init_wh {self.energy_init_wh} outside "
                              f"[{self.energy_min_wh}, {self.energy_max_wh}]",
                              source="energy_init_wh")


@dataclass(frozen=True, slots=True)
class OptimumResult:
    """Outcome of :func:`optimal_peak`."""

    success: bool
    """True when HiGHS found the optimum and the re-check passed."""
    message: str
    """Solver status message (or why the re-check failed)."""
    peak_import_w: float
    """The optimal peak of ``L_t + c_t − d_t``, watts."""
    peak_import_w_uncontrolled: float
    """The peak of ``L_t`` (no battery), watts."""
    battery_power_w: FloatArray
    """Optimal fleet AC power per sample, ``c_t − d_t`` (+ = charging), watts."""
    energy_wh: FloatArray
    """Fleet stored energy at the interval boundaries, starting with ``E_0``, Wh."""

    @property
    def reduction_w(self) -> float:
        """Optimal peak reduction, watts (≥ 0)."""
        return self.peak_import_w_uncontrolled - self.peak_import_w


def _check_series(grid_w: npt.ArrayLike, step_s: float) -> FloatArray:
    g = np.asarray(grid_w, dtype=np.float64)
    if g.ndim != 1 or g.size == 0:
        raise PlanningError(f"grid_w: need a non-empty 1-D series, got shape {g.shape}",
                          source="grid_w")
    if not np.all(np.isfinite(g)):
        i = int(np.flatnonzero(~np.isfinite(g))[0])
        raise PlanningError(f"grid_w: non-finite value {g[i]} at index {i}", source="grid_w")
    if not (math.isfinite(step_s) and step_s > 0):
        raise PlanningError(f"step_s: must be a positive number of seconds, got {step_s}",
                          source="step_s")
    return g


def optimal_peak(
    grid_w: npt.ArrayLike,
    step_s: float,
    fleet: FleetModel | Sequence[FleetModel],
    *,
    keep_final_energy: bool = False,
    interpolation: Literal["hold", "linear"] = "hold",
    peak_floor_w: float | None = None,
    final_energy_min_wh: float | Sequence[float] | None = None,
) -> OptimumResult:
    """Lowest achievable peak import with perfect foresight (LP, HiGHS).

    Args:
        grid_w: Uncontrolled grid power per sample, watts (+ = import).
        step_s: Sample length, seconds.
        fleet: The aggregate battery, or one model per battery group (each
            group with its own power limits, energy window and efficiencies;
            their powers add up at the grid meter).
        keep_final_energy: Require the stored energy of every group at the end
            to be at least its initial one (no "free" energy from the initial charge).
        interpolation: ``"hold"``: each sample holds for ``step_s`` (the
            module's LP). ``"linear"``: the series is the values at the points
            ``t = k · step_s`` of a piecewise-linear signal spanning ``(T − 1) ·
            step_s``; the battery power is piecewise linear on the same points
            (``c_t``, ``d_t`` at the points), the energy balance uses the
            trapezoid rule, and ``L_t + c_t − d_t ≤ P`` at the points bounds the
            import everywhere (both sides linear in between). A restriction of
            the continuous-time problem that converges as the points get denser.
        peak_floor_w: Never return a peak below this (W; the billed peak of the
            period: a lower plan gains nothing and would spend energy for it).
            The schedule then still holds the floor with the least cycling.
        final_energy_min_wh: Stored energy at the end at least this (Wh; one
            value for all groups, shared in proportion to their windows, or one
            per group), clipped to each group's window. Combined with
            ``keep_final_energy`` the higher of the two holds.

    Returns:
        The optimum (status, peak, fleet schedule, fleet energy trajectory:
        ``T + 1`` values for hold, ``T`` for linear).

    Raises:
        PlanningError: bad input (names the field).
    """
    g = _check_series(grid_w, step_s)
    if interpolation not in ("hold", "linear"):
        raise PlanningError(f"interpolation: must be 'hold' or 'linear', got {interpolation!r}",
                          source="interpolation")
    linear = interpolation == "linear"
    if linear and g.size < 2:
        raise PlanningError("grid_w: linear interpolation needs at least 2 points", source="grid_w")
    groups = [fleet] if isinstance(fleet, FleetModel) else list(fleet)
    if not groups:
        raise PlanningError("fleet: need at least one battery group", source="fleet")
    for m in groups:
        m.validate()
    if peak_floor_w is not None and not math.isfinite(peak_floor_w):
        raise PlanningError(f"peak_floor_w: must be a finite number of watts, got {peak_floor_w}",
                            source="peak_floor_w")
    finals = _final_energies(groups, final_energy_min_wh)
    lp = _PeakLp(g, step_s, groups, linear=linear, keep_final_energy=keep_final_energy,
                 finals=finals, floor_w=peak_floor_w)
    res = scipy.optimize.linprog(lp.cost, A_ub=lp.a_ub, b_ub=-g / lp.scale, A_eq=lp.a_eq,
                                 b_eq=lp.b_eq, bounds=lp.bounds, method="highs")
    peak_unc = float(g.max())
    if res.status != 0 or res.x is None:
        return OptimumResult(False, str(res.message), math.nan, peak_unc,
                             np.full(lp.nt, np.nan), np.full(lp.ne + 1, np.nan))
    return _recheck(lp, np.asarray(res.x, dtype=np.float64), str(res.message), peak_unc,
                    peak_floor_w)


def _final_energies(groups: list[FleetModel],
                    final: float | Sequence[float] | None) -> list[float | None]:
    """Per-group end energy (Wh), clipped to each window; None = no condition."""
    if final is None:
        return [None] * len(groups)
    if isinstance(final, int | float):
        if not math.isfinite(final):
            raise PlanningError(f"final_energy_min_wh: must be finite, got {final}",
                                source="final_energy_min_wh")
        width = [m.energy_max_wh - m.energy_min_wh for m in groups]
        total = sum(width)
        span = final - sum(m.energy_min_wh for m in groups)
        values = [m.energy_min_wh + (span * w / total if total > 0 else 0.0)
                  for m, w in zip(groups, width, strict=True)]
    else:
        values = [float(v) for v in final]
        if len(values) != len(groups) or not all(math.isfinite(v) for v in values):
            raise PlanningError(f"final_energy_min_wh: need {len(groups)} finite values, got "
                                f"{values}", source="final_energy_min_wh")
    return [min(max(v, m.energy_min_wh), m.energy_max_wh)
            for v, m in zip(values, groups, strict=True)]


class _PeakLp:
    """The peak-minimising LP in scaled units (a well-conditioned problem for HiGHS).

    Variables: per group k its charge ``c`` (``nt``), discharge ``d`` (``nt``) and
    energy ``e`` (``ne`` values after each interval); then the peak ``P``. Powers
    are divided by :attr:`scale` (W), energies by :attr:`escale` (Wh of one sample
    at full scale).
    """

    def __init__(self, g: FloatArray, step_s: float, groups: list[FleetModel], *,
                 linear: bool, keep_final_energy: bool, finals: list[float | None],
                 floor_w: float | None) -> None:
        self.g, self.groups, self.linear = g, groups, linear
        self.nt = g.size
        self.ne = self.nt - 1 if linear else self.nt  # energy values after each interval
        self.h = step_s / 3600.0
        self.scale = max(float(np.max(np.abs(g))), *(m.charge_max_w for m in groups),
                         *(m.discharge_max_w for m in groups), 1.0)
        self.escale = self.scale * self.h
        self.per = 2 * self.nt + self.ne
        self.n = self.per * len(groups) + 1
        self.ip = self.n - 1
        self._ub: tuple[list[npt.NDArray[np.int64]], list[npt.NDArray[np.int64]],
                        list[FloatArray]] = (
            [np.arange(self.nt)], [np.full(self.nt, self.ip)], [-np.ones(self.nt)])
        self._eq: tuple[list[npt.NDArray[np.int64]], list[npt.NDArray[np.int64]],
                        list[FloatArray]] = ([], [], [])
        self.b_eq = np.zeros(self.ne * len(groups))
        self.lo = np.zeros(self.n)
        self.hi = np.empty(self.n)
        self.cost = np.zeros(self.n)
        for k, m in enumerate(groups):
            self._add_group(k, m, keep_final_energy, finals[k])
        self.a_ub = self._matrix(self._ub, self.nt)
        self.a_eq = self._matrix(self._eq, self.ne * len(groups))
        self.lo[self.ip] = -np.inf if floor_w is None else floor_w / self.scale
        self.hi[self.ip] = np.inf
        self.cost[self.ip] = 1.0
        self.bounds = np.column_stack([self.lo, self.hi])

    def _matrix(self, parts: tuple[list[npt.NDArray[np.int64]], list[npt.NDArray[np.int64]],
                                   list[FloatArray]], rows: int) -> scipy.sparse.csr_array:
        r, c, v = parts
        return scipy.sparse.csr_array(
            (np.concatenate(v), (np.concatenate(r), np.concatenate(c))), shape=(rows, self.n))

    def _add_group(self, k: int, m: FleetModel, keep_final_energy: bool,
                   final_wh: float | None) -> None:
        nt, ne = self.nt, self.ne
        idx, eidx = np.arange(nt), np.arange(ne)
        ic, id_, ie = self.per * k, self.per * k + nt, self.per * k + 2 * nt
        ub_r, ub_c, ub_v = self._ub
        eq_r, eq_c, eq_v = self._eq
        # L_t + Σ_k (c_kt − d_kt) − P ≤ 0
        ub_r += [idx, idx]
        ub_c += [ic + idx, id_ + idx]
        ub_v += [np.ones(nt), -np.ones(nt)]
        # e_t − e_{t−1} − w·(ηc c − d / ηd) = 0  (e_{−1} = e0 moves to the right-hand side)
        row = ne * k + eidx
        ec, ed = m.charge_efficiency, 1.0 / m.discharge_efficiency
        eq_r += [row, row[1:]]
        eq_c += [ie + eidx, ie + eidx[:-1]]
        eq_v += [np.ones(ne), -np.ones(ne - 1)]
        if self.linear:  # trapezoid: half of each end point
            for off in (0, 1):
                eq_r += [row, row]
                eq_c += [ic + eidx + off, id_ + eidx + off]
                eq_v += [np.full(ne, -0.5 * ec), np.full(ne, 0.5 * ed)]
        else:
            eq_r += [row, row]
            eq_c += [ic + eidx, id_ + eidx]
            eq_v += [np.full(ne, -ec), np.full(ne, ed)]
        e0 = m.energy_init_wh / self.escale
        self.b_eq[ne * k] = e0
        self.hi[ic:ic + nt] = m.charge_max_w / self.scale
        self.hi[id_:id_ + nt] = m.discharge_max_w / self.scale
        self.lo[ie:ie + ne] = m.energy_min_wh / self.escale
        self.hi[ie:ie + ne] = m.energy_max_wh / self.escale
        if keep_final_energy:
            self.lo[ie + ne - 1] = max(self.lo[ie + ne - 1], e0)
        if final_wh is not None:  # capped at what full charging power can reach
            reach = m.energy_init_wh + m.charge_efficiency * m.charge_max_w * self.h * ne
            self.lo[ie + ne - 1] = max(self.lo[ie + ne - 1],
                                       min(final_wh, reach) / self.escale)
        self.cost[ic:ie] = 1e-7 / nt


def _recheck(lp: _PeakLp, x: FloatArray, message: str, peak_unc: float,
             floor_w: float | None) -> OptimumResult:
    """Independent re-check of an LP solution: integrate each group's schedule, measure the peak.

    With a floor the schedule may stay below it; the reported peak is then the floor."""
    nt, scale = lp.nt, lp.scale
    battery = np.zeros(nt)
    energy = np.zeros(lp.ne + 1)
    ok = True
    for k, m in enumerate(lp.groups):
        ic, id_ = lp.per * k, lp.per * k + nt
        c = np.clip(x[ic:ic + nt] * scale, 0.0, m.charge_max_w)
        d = np.clip(x[id_:id_ + nt] * scale, 0.0, m.discharge_max_w)
        flow = m.charge_efficiency * c - d / m.discharge_efficiency
        if lp.linear:
            flow = 0.5 * (flow[1:] + flow[:-1])
        e = m.energy_init_wh + np.concatenate([[0.0], np.cumsum(flow * lp.h)])
        tol_e = 1e-6 * max(m.energy_max_wh, 1.0) + 1e-7 * lp.escale * nt
        ok = ok and bool(np.all(e >= m.energy_min_wh - tol_e)
                         and np.all(e <= m.energy_max_wh + tol_e))
        battery += c - d
        energy += e
    peak = float(np.max(lp.g + battery))
    lp_peak = float(x[lp.ip]) * scale
    tol = 1e-6 * scale + 1e-3
    if floor_w is not None and peak < floor_w:
        ok = ok and lp_peak <= floor_w + tol
        peak = floor_w
    ok = ok and abs(peak - lp_peak) <= tol
    msg = message if ok else (
        f"re-check failed: peak {peak:.3f} W vs LP {lp_peak:.3f} W or energy out of window")
    return OptimumResult(ok, msg, peak, peak_unc, battery, energy)


def simulate_greedy(
    grid_w: npt.ArrayLike, step_s: float, fleet: FleetModel, limit_w: float
) -> tuple[FloatArray, FloatArray]:
    """Greedy peak shaving against ``limit_w``: the reference policy (a Python loop).

    Each sample, discharge just enough to bring the import down to the limit
    (as far as power and energy allow); below the limit, charge as much as the
    headroom, the power limit and the energy window allow. Greedy keeps the
    stored energy as high as any feasible policy at every sample, so a limit is
    feasible if and only if the greedy run holds it — which makes it an exact,
    independent feasibility test for the LP (see :func:`peak_is_feasible`).

    Returns:
        (grid power per sample after the battery, W; energy at the boundaries, Wh)
    """
    g = _check_series(grid_w, step_s)
    h = step_s / 3600.0
    e = fleet.energy_init_wh
    out = np.empty_like(g)
    energy = np.empty(g.size + 1)
    energy[0] = e
    for t, load in enumerate(g):
        if load > limit_w:
            want = min(load - limit_w, fleet.discharge_max_w)
            avail = max(e - fleet.energy_min_wh, 0.0) * fleet.discharge_efficiency / h
            p = -min(want, avail)
            e += p / fleet.discharge_efficiency * h
        else:
            room = max(fleet.energy_max_wh - e, 0.0) / fleet.charge_efficiency / h
            p = min(limit_w - load, fleet.charge_max_w, room)
            e += p * fleet.charge_efficiency * h
        out[t] = load + p
        energy[t + 1] = e
    return out, energy


def peak_is_feasible(
    grid_w: npt.ArrayLike, step_s: float, fleet: FleetModel, limit_w: float, *, tol_w: float = 1e-6
) -> bool:
    """Whether some battery schedule keeps the import at or below ``limit_w`` (greedy test)."""
    out, _ = simulate_greedy(grid_w, step_s, fleet, limit_w)
    return bool(np.max(out) <= limit_w + tol_w)


def required_energy(
    grid_w: npt.ArrayLike, step_s: float, fleet: FleetModel, limit_w: float, *,
    final_energy_min_wh: float | None = None,
) -> FloatArray:
    """The lowest stored energy at each boundary from which ``limit_w`` can still be held.

    The backward twin of :func:`simulate_greedy` (one aggregate battery)::

        R_T = max(E_min, E_end)
        R_t = R_{t+1} + h · min(L_t − limit, D_max) / η_d        if L_t > limit
        R_t = max(E_min, R_{t+1} − h · η_c · min(limit − L_t, C_max))   otherwise

    Starting a sample with at least ``R_t`` and following the greedy policy
    keeps the import at or under the limit to the end (where the discharge
    power suffices) and ends with at least ``E_end``: it is the pre-charge
    target of a plan. Values above ``E_max`` mean the limit cannot be held
    from any state (the caller clips).

    Computed in closed form (:func:`._holdable.required_energies`).

    Returns:
        ``T + 1`` energies (Wh), ``R_0`` … ``R_T``.
    """
    g = _check_series(grid_w, step_s)
    end = fleet.energy_min_wh if final_energy_min_wh is None else max(
        fleet.energy_min_wh, min(final_energy_min_wh, fleet.energy_max_wh))
    return required_energies(g, float(limit_w), step_s / 3600.0,
                             charge_max_w=fleet.charge_max_w,
                             discharge_max_w=fleet.discharge_max_w,
                             energy_min_wh=fleet.energy_min_wh, end_energy_wh=end,
                             charge_efficiency=fleet.charge_efficiency,
                             discharge_efficiency=fleet.discharge_efficiency)
