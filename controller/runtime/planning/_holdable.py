"""Which limits one aggregate battery can hold over several load scenarios at once (numpy).

The auto limit re-plans at every billing-interval boundary over several scenarios of the
coming hours, so it needs, fast and exactly, the two sequential answers of
:mod:`._lp` for a whole stack of series:

* :func:`required_energies` — for each scenario (row) and limit, the least stored energy
  at each boundary from which the limit can still be held to the horizon's end (the
  backward recursion of :func:`~controller.runtime.planning.required_energy`, in closed
  form);
* :func:`lowest_holdable_peaks` — for each scenario, the lowest limit the battery can
  hold from its stored energy now (by bisection on the exact feasibility test).

The maths. With ``x_t = L_t − limit`` and ``h`` the sample length in hours, one step of
the backward recursion is ``R_t = max(E_min, a_t + R_{t+1})`` with::

    a_t = h · min(x_t, D_max) / η_d          if x_t > 0   (energy the excess takes)
    a_t = − h · η_c · min(−x_t, C_max)       otherwise     (energy the headroom gives)

and ``R_T = E_end``. Unrolled, with ``S_s = Σ_{u<s} a_u``::

    R_t = max( E_min + max_{t ≤ s < T} S_s,  S_T + E_end ) − S_t

a reversed running maximum. A limit is holdable from ``E_0`` iff the discharge power
suffices (``x_t ≤ D_max``), ``R_0 ≤ E_0`` and ``R_t ≤ E_max`` at every boundary (no state
holds the rest otherwise); the greedy policy (discharge the excess, recharge with the
headroom) then holds it, which is why feasibility is monotone in the limit and
bisection finds the lowest one. Every scenario is independent: the same greedy policy
serves whichever of them comes true, so the limit that holds in all of them is the
highest of their lowest limits.

Units: W, Wh, seconds; + = import / charging. Inputs are trusted (the callers check them).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

__all__ = ["lowest_holdable_peaks", "required_energies"]

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

_CANDIDATES = 32
"""Limits tried per scenario and bisection round."""


def required_energies(loads_w: FloatArray, limits_w: FloatArray | float, h: float, *,
                      charge_max_w: float, discharge_max_w: float, energy_min_wh: float,
                      end_energy_wh: float, charge_efficiency: float,
                      discharge_efficiency: float) -> FloatArray:
    """Least stored energy at each boundary that still holds the limit (module docstring).

    Args:
        loads_w: ``(..., T)`` uncontrolled import per sample, W.
        limits_w: Limits broadcastable against ``loads_w[..., :1]``, W.
        h: Sample length, hours.
        charge_max_w: Largest charging power, W.
        discharge_max_w: Largest discharging power, W.
        energy_min_wh: Lowest allowed stored energy, Wh.
        end_energy_wh: Stored energy to end with (≥ ``energy_min_wh``), Wh.
        charge_efficiency: Stored per AC energy charged.
        discharge_efficiency: AC per stored energy discharged.

    Returns:
        ``(..., T + 1)`` energies, Wh (excess beyond the discharge power is let through,
        as :func:`~controller.runtime.planning.required_energy` does).
    """
    x = loads_w - limits_w
    a = np.where(x > 0, h * np.minimum(x, discharge_max_w) / discharge_efficiency,
                 -h * charge_efficiency * np.minimum(-x, charge_max_w))
    s = np.zeros((*a.shape[:-1], a.shape[-1] + 1))
    np.cumsum(a, axis=-1, out=s[..., 1:])
    v = s + energy_min_wh
    v[..., -1] = s[..., -1] + end_energy_wh
    best = np.flip(np.maximum.accumulate(np.flip(v, axis=-1), axis=-1), axis=-1)
    out: FloatArray = best - s
    return out


def _holds(loads_w: FloatArray, limits_w: FloatArray, h: float, energy_wh: float,
           energy_max_wh: float, kw: dict[str, float]) -> BoolArray:
    """``(S, K)``: whether each candidate limit holds each scenario from ``energy_wh``."""
    lim = limits_w[..., None]
    req = required_energies(loads_w[:, None, :], lim, h, **kw)
    tol = 1e-9 * max(energy_max_wh, 1.0)
    power_ok = np.all(loads_w[:, None, :] - lim <= kw["discharge_max_w"] + 1e-9, axis=-1)
    ok: BoolArray = (power_ok & (req[..., 0] <= energy_wh + tol)
                     & np.all(req <= energy_max_wh + tol, axis=-1))
    return ok


def lowest_holdable_peaks(loads_w: FloatArray, h: float, *, energy_wh: float,
                          floor_w: float, tol_w: float, charge_max_w: float,
                          discharge_max_w: float, energy_min_wh: float, energy_max_wh: float,
                          end_energy_wh: float, charge_efficiency: float,
                          discharge_efficiency: float) -> FloatArray:
    """Per scenario, the lowest limit ≥ ``floor_w`` holdable from ``energy_wh`` (to ``tol_w``).

    Args:
        loads_w: ``(S, T)`` scenarios of the uncontrolled import, W (finite).
        h: Sample length, hours.
        energy_wh: Stored energy now, Wh (within the window).
        floor_w: No limit below this is returned, W.
        tol_w: Resolution: each result is at most this far above the exact lowest limit, W.
        charge_max_w: Largest charging power, W.
        discharge_max_w: Largest discharging power, W.
        energy_min_wh: Lowest allowed stored energy, Wh.
        energy_max_wh: Highest allowed stored energy, Wh.
        end_energy_wh: Stored energy to end each scenario with, Wh (the caller caps it at
            what full charging power can reach from ``energy_wh``).
        charge_efficiency: Stored per AC energy charged.
        discharge_efficiency: AC per stored energy discharged.

    Returns:
        ``(S,)`` limits, W.
    """
    kw = {"charge_max_w": charge_max_w, "discharge_max_w": discharge_max_w,
          "energy_min_wh": energy_min_wh, "end_energy_wh": end_energy_wh,
          "charge_efficiency": charge_efficiency,
          "discharge_efficiency": discharge_efficiency}
    n = loads_w.shape[0]
    lo = np.full(n, floor_w)
    done = _holds(loads_w, lo[:, None], h, energy_wh, energy_max_wh, kw)[:, 0]
    # Holding max(load) + C_max lets the battery charge at full power throughout: it holds
    # whenever the end energy is reachable, which the caller guarantees.
    hi = np.maximum(loads_w.max(axis=1) + charge_max_w, lo)
    hi = np.where(done, lo, hi)
    lo = np.where(done, lo, np.maximum(lo, loads_w.max(axis=1) - discharge_max_w))
    steps = np.linspace(0.0, 1.0, _CANDIDATES + 1)[1:]
    while np.any(hi - lo > tol_w):
        cand = lo[:, None] + (hi - lo)[:, None] * steps
        ok = _holds(loads_w, cand, h, energy_wh, energy_max_wh, kw)
        ok[:, -1] = True  # hi holds by construction
        first = np.argmax(ok, axis=1)
        rows = np.arange(n)
        new_hi = cand[rows, first]
        new_lo = np.where(first > 0, cand[rows, np.maximum(first - 1, 0)], lo)
        lo, hi = new_lo, new_hi
    out: FloatArray = hi
    return out
