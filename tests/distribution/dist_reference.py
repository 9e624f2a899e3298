"""Independent reference solvers for the distribution tests.

Written without reusing any code of `distribution`: plain Python loops over
components, its own union-find for groups, its own validity rules (from the
issue text), and `scipy.optimize.milp` (HiGHS) over *per-inverter* variables
(the library works on per-group interval pieces).

Model (the same physics the library documents):
* an inverter's allowed set is {0} ∪ [lower, excl_lower] ∪ [excl_upper, upper];
* inverters of one group never oppose each other (all >= 0 or all <= 0);
* a group's total must lie in [sum battery_lower, sum battery_upper], outside
  the open band (n_b * min excl_lower, n_b * max excl_upper) except 0;
* a group with any battery at/above its upper SoC takes no charging power,
  at/below its lower SoC no discharging power;
* a component with bad live data is excluded; a group is usable only if all
  its batteries are valid and at least one inverter is valid and linked.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.optimize import Bounds, LinearConstraint, milp

_FLEET_KEYWORDS = (
    ("inverter_lower_w", "inv_lo"), ("inverter_upper_w", "inv_hi"),
    ("inverter_excl_lower_w", "inv_el"), ("inverter_excl_upper_w", "inv_eu"),
    ("battery_soc_pct", "soc"), ("battery_soc_lower_pct", "soc_lo"),
    ("battery_soc_upper_pct", "soc_hi"), ("battery_capacity_wh", "cap"),
    ("battery_lower_w", "bat_lo"), ("battery_upper_w", "bat_hi"),
    ("battery_excl_lower_w", "bat_el"), ("battery_excl_upper_w", "bat_eu"),
)
"""`Fleet` keyword -> `RawFleet` field, for the float arrays."""


@dataclass
class RawFleet:
    """Plain-list fleet description (the test's source of truth)."""

    inv_lo: list[float]
    inv_hi: list[float]
    inv_el: list[float]
    inv_eu: list[float]
    soc: list[float]
    soc_lo: list[float]
    soc_hi: list[float]
    cap: list[float]
    bat_lo: list[float]
    bat_hi: list[float]
    bat_el: list[float]
    bat_eu: list[float]
    links: list[tuple[int, int]]
    inv_avail: list[bool] = field(default_factory=list)
    bat_avail: list[bool] = field(default_factory=list)

    def kwargs(self) -> dict[str, Any]:
        """Keyword arguments for `distribution.Fleet`."""
        kw: dict[str, Any] = {
            key: np.array(getattr(self, attr), dtype=float) for key, attr in _FLEET_KEYWORDS
        }
        kw["links"] = np.array(self.links, dtype=np.int64).reshape(-1, 2)
        if self.inv_avail:
            kw["inverter_available"] = np.array(self.inv_avail, dtype=bool)
        if self.bat_avail:
            kw["battery_available"] = np.array(self.bat_avail, dtype=bool)
        return kw


def _fin(*xs: float) -> bool:
    return all(math.isfinite(x) for x in xs)


def inverter_valid(f: RawFleet, i: int) -> bool:
    """Live-data validity of inverter i (issue rules)."""
    lo, hi, el, eu = f.inv_lo[i], f.inv_hi[i], f.inv_el[i], f.inv_eu[i]
    if f.inv_avail and not f.inv_avail[i]:
        return False
    if not _fin(lo, hi, el, eu):
        return False
    return lo <= el <= 0.0 <= eu <= hi


def battery_valid(f: RawFleet, b: int) -> bool:
    """Live-data validity of battery b (issue rules)."""
    if f.bat_avail and not f.bat_avail[b]:
        return False
    vals = (f.bat_lo[b], f.bat_hi[b], f.bat_el[b], f.bat_eu[b], f.soc[b])
    if not _fin(*vals, f.soc_lo[b], f.soc_hi[b], f.cap[b]):
        return False
    if f.cap[b] <= 0.0 or f.soc_lo[b] > f.soc_hi[b]:
        return False
    return f.bat_lo[b] <= f.bat_el[b] <= 0.0 <= f.bat_eu[b] <= f.bat_hi[b]


@dataclass
class Group:
    """One connected component, as the reference sees it."""

    inverters: list[int]
    batteries: list[int]
    usable: bool
    dc_lo: float = 0.0
    dc_hi: float = 0.0
    dc_bl: float = 0.0
    dc_bu: float = 0.0
    charge_ok: bool = False
    discharge_ok: bool = False
    cap: float = 0.0
    head_up: float = 0.0
    head_down: float = 0.0


def groups_of(f: RawFleet) -> list[Group]:
    """Connected components (union-find) with their DC data."""
    n_inv, n_bat = len(f.inv_lo), len(f.soc)
    parent = list(range(n_inv + n_bat))

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for i, b in f.links:
        ra, rb = find(i), find(n_inv + b)
        if ra != rb:
            parent[ra] = rb
    comps: dict[int, tuple[list[int], list[int]]] = {}
    linked_inv = {i for i, _ in f.links}
    for i in range(n_inv):
        comps.setdefault(find(i), ([], []))[0].append(i)
    for b in range(n_bat):
        comps.setdefault(find(n_inv + b), ([], []))[1].append(b)
    out = []
    for invs, bats in comps.values():
        good_inv = [i for i in invs if i in linked_inv and inverter_valid(f, i)]
        usable = bool(bats) and bool(good_inv) and all(battery_valid(f, b) for b in bats)
        g = Group(inverters=invs, batteries=bats, usable=usable)
        if usable:
            nb = len(bats)
            g.dc_lo = sum(f.bat_lo[b] for b in bats)
            g.dc_hi = sum(f.bat_hi[b] for b in bats)
            g.dc_bl = nb * min(f.bat_el[b] for b in bats)
            g.dc_bu = nb * max(f.bat_eu[b] for b in bats)
            g.charge_ok = all(f.soc[b] < f.soc_hi[b] for b in bats)
            g.discharge_ok = all(f.soc[b] > f.soc_lo[b] for b in bats)
            g.cap = sum(f.cap[b] for b in bats)
            g.head_up = sum(f.cap[b] * max(f.soc_hi[b] - f.soc[b], 0.0) for b in bats) / g.cap
            g.head_down = sum(f.cap[b] * max(f.soc[b] - f.soc_lo[b], 0.0) for b in bats) / g.cap
        out.append(g)
    return out


def usable_inverters(f: RawFleet, g: Group) -> list[int]:
    """Inverters of a usable group that may carry power."""
    if not g.usable:
        return []
    linked = {i for i, _ in f.links}
    return [i for i in g.inverters if i in linked and inverter_valid(f, i)]


def setpoint_violations(f: RawFleet, s: np.ndarray, rtol: float = 1e-9) -> list[str]:
    """Every way the setpoints leave the allowed sets (empty list = fine)."""
    problems = []
    groups = groups_of(f)
    allowed = {i for g in groups for i in usable_inverters(f, g)}
    for i, x in enumerate(s):
        x = float(x)
        if i not in allowed:
            if x != 0.0:
                problems.append(f"excluded inverter {i} has {x}")
            continue
        if x != 0.0 and not (f.inv_lo[i] <= x <= f.inv_hi[i]):
            problems.append(f"inverter {i}: {x} outside [{f.inv_lo[i]}, {f.inv_hi[i]}]")
        if x != 0.0 and f.inv_el[i] < x < f.inv_eu[i]:
            problems.append(f"inverter {i}: {x} inside band ({f.inv_el[i]}, {f.inv_eu[i]})")
    for g in groups:
        if not g.usable:
            continue
        xs = [float(s[i]) for i in g.inverters]
        if any(x > 0 for x in xs) and any(x < 0 for x in xs):
            problems.append(f"group {g.inverters}: inverters oppose each other {xs}")
        tot = sum(xs)
        tol = rtol * max(1.0, abs(g.dc_lo) + abs(g.dc_hi))
        if tot > tol and (not g.charge_ok or tot > g.dc_hi + tol or tot < g.dc_bu - tol):
            problems.append(f"group {g.inverters}: total {tot} violates DC/SoC charge side")
        if tot < -tol and (not g.discharge_ok or tot < g.dc_lo - tol or tot > g.dc_bl + tol):
            problems.append(f"group {g.inverters}: total {tot} violates DC/SoC discharge side")
    return problems


def milp_nearest_total(f: RawFleet, target: float) -> float:
    """Nearest reachable fleet total to ``target`` (exact MILP, per-inverter variables)."""
    groups = [g for g in groups_of(f) if g.usable]
    scale = 1e3  # work in kW
    inv_ids = [i for g in groups for i in usable_inverters(f, g)]
    if not inv_ids:
        return 0.0
    col = {i: k for k, i in enumerate(inv_ids)}
    n = len(inv_ids)
    ng = len(groups)
    # variables: xp(n) xm(n) yp(n) ym(n) onp(ng) onm(ng) sm sp
    nv = 4 * n + 2 * ng + 2
    XP, XM, YP, YM, ONP, ONM, SM, SP = 0, n, 2 * n, 3 * n, 4 * n, 4 * n + ng, nv - 2, nv - 1
    rows: list[np.ndarray] = []
    lo_c: list[float] = []
    hi_c: list[float] = []

    def row(entries: dict[int, float], lo: float, hi: float) -> None:
        r = np.zeros(nv)
        for k, v in entries.items():
            r[k] += v
        rows.append(r)
        lo_c.append(lo)
        hi_c.append(hi)

    ub = np.full(nv, np.inf)
    for i in inv_ids:
        k = col[i]
        hi_, lo_ = f.inv_hi[i] / scale, -f.inv_lo[i] / scale
        eu, el = f.inv_eu[i] / scale, -f.inv_el[i] / scale
        row({XP + k: 1.0, YP + k: -hi_}, -np.inf, 0.0)
        row({XP + k: 1.0, YP + k: -eu}, 0.0, np.inf)
        row({XM + k: 1.0, YM + k: -lo_}, -np.inf, 0.0)
        row({XM + k: 1.0, YM + k: -el}, 0.0, np.inf)
        row({YP + k: 1.0, YM + k: 1.0}, -np.inf, 1.0)
    for gi, g in enumerate(groups):
        ks = [col[i] for i in usable_inverters(f, g)]
        for k in ks:
            row({YP + k: 1.0, ONP + gi: -1.0}, -np.inf, 0.0)
            row({YM + k: 1.0, ONM + gi: -1.0}, -np.inf, 0.0)
        row({ONP + gi: 1.0, ONM + gi: 1.0}, -np.inf, 1.0)
        up = g.dc_hi / scale if g.charge_ok else 0.0
        dn = -g.dc_lo / scale if g.discharge_ok else 0.0
        sum_p = {XP + k: 1.0 for k in ks}
        sum_m = {XM + k: 1.0 for k in ks}
        row({**sum_p, ONP + gi: -up}, -np.inf, 0.0)
        row({**sum_p, ONP + gi: -g.dc_bu / scale}, 0.0, np.inf)
        row({**sum_m, ONM + gi: -dn}, -np.inf, 0.0)
        row({**sum_m, ONM + gi: g.dc_bl / scale}, 0.0, np.inf)
    tot = {XP + k: 1.0 for k in range(n)}
    tot.update({XM + k: -1.0 for k in range(n)})
    tot[SM] = 1.0
    tot[SP] = -1.0
    row(tot, target / scale, target / scale)
    ub[YP : ONM + ng] = 1.0
    integrality = np.zeros(nv)
    integrality[YP : ONM + ng] = 1
    c = np.zeros(nv)
    c[SM] = c[SP] = 1.0
    res = milp(
        c,
        constraints=LinearConstraint(np.array(rows), np.array(lo_c), np.array(hi_c)),
        integrality=integrality,
        bounds=Bounds(np.zeros(nv), ub),
        options={"mip_rel_gap": 0.0, "time_limit": 20.0},
    )
    assert res.status == 0, res.message
    x = res.x
    return float((x[XP:XM].sum() - x[XM:YP].sum()) * scale)


def bisection_group_powers(f: RawFleet, target: float, exponent: float) -> dict[int, float]:
    """Weighted water-filling per group by bisection on lambda (no exclusion bands).

    Returns ``{first inverter index of the group: group power}`` for usable groups.
    """
    groups = [g for g in groups_of(f) if g.usable]
    lo, hi, w, key = [], [], [], []
    up = target > 0
    for g in groups:
        invs = usable_inverters(f, g)
        h = min(sum(f.inv_hi[i] for i in invs), g.dc_hi) if g.charge_ok else 0.0
        lw = max(sum(f.inv_lo[i] for i in invs), g.dc_lo) if g.discharge_ok else 0.0
        lo.append(lw)
        hi.append(h)
        head = g.head_up if up else g.head_down
        w.append(g.cap * head**exponent)
        key.append(min(g.inverters))
    if not groups:
        return {}
    wa = np.array(w)
    wa = np.maximum(wa, wa.max() * 1e-9) if wa.max() > 0 else np.ones_like(wa)
    la, ha = np.array(lo), np.array(hi)
    t = min(max(target, la.sum()), ha.sum())
    a, b = -1.0, 1.0
    while np.clip(wa * a, la, ha).sum() > t:
        a *= 2.0
    while np.clip(wa * b, la, ha).sum() < t:
        b *= 2.0
    for _ in range(300):
        mid = 0.5 * (a + b)
        if np.clip(wa * mid, la, ha).sum() < t:
            a = mid
        else:
            b = mid
    p = np.clip(wa * 0.5 * (a + b), la, ha)
    return dict(zip(key, p.tolist(), strict=True))


def power_scale(f: RawFleet) -> float:
    """Width of the fleet's reachable range (>= 1 W): the scale of MILP tolerances."""
    s = 0.0
    for g in groups_of(f):
        invs = usable_inverters(f, g)
        if g.charge_ok:
            s += min(sum(f.inv_hi[i] for i in invs), g.dc_hi)
        if g.discharge_ok:
            s += min(sum(-f.inv_lo[i] for i in invs), -g.dc_lo)
    return max(1.0, s)
