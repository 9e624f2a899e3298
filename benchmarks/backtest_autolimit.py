"""Backtest of the auto limit: forecaster + planner in a closed loop mirroring the production law.

Run (from the repository root, with ../shared/data present)::

    python benchmarks/backtest_autolimit.py                        # the defaults, both profiles
    python benchmarks/backtest_autolimit.py --grid margin_pct=0,2,4 forecaster=week_max,naive_week

``--grid FIELD=V1,V2,...`` varies any :class:`AutoLimitConfig` field (the run is the product
of all grids). For each bundled profile (a full year of 15-min means, scaled so the year's
peak is ``--peak-w``) and each configuration the year runs interval by interval, as the
service runs it (``controller/runtime/strategies/_peak_shaving.py`` on interval means):

* at each boundary :meth:`AutoLimit.plan` sees only the closed intervals before it (January
  starts cold: no history) and, as ``load_now_w``, the last closed interval's mean (at a
  boundary the current interval's projection is what the load is now);
* the interval's mean import is held at ``L_eff = max(limit, billed peak)``: the aggregate
  battery of the replay's default site discharges exactly the excess (within power and
  energy); with no plan (``inf``) it shaves nothing;
* otherwise it recharges toward ``max(target SoC, plan's target)`` at up to
  ``--recharge-power-w`` (default: the fleet's charge power) with the headroom under the
  recharge ceiling ``min(L_eff, max(limit, billed peak without batteries so far)) −
  --recharge-margin-w``, so the batteries never raise the bill above what the load alone set
  or the plan expects;
* the billed peak (the month's highest interval mean) ratchets and resets each calendar month.

The reference is each month's perfect-foresight optimum (the same LP over the month's real
series, from the closed loop's energy at the month's start). Reported: the share of the optimal
peak reduction, per month, the worst month, the worst month after January (the cold start),
the year (summed reductions: a demand charge is paid per month), and the planning time.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import math
import sys
import time
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np

from controller.lab.replay import aggregate_model, fleet_models, load_profile
from controller.runtime.planning import FleetModel, optimal_peak
from controller.runtime.planning._auto import AutoLimit, AutoLimitConfig
from simulator.config import BatteryConfig, load_site

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
PROFILES = {"galvanization": "load_galvanization_LP_G_G.csv",
            "metal_processing": "load_metal_processing_LP_G_MV.csv",
            "galvanization_shift1": "load_galvanization_LP_G_G.csv"}
"""The bundled profiles, and a third made from one of them against overfitting to their
calendar: ``galvanization_shift1`` is galvanization with every value one day later (its
work week runs Tuesday to Saturday; the first day repeats the last)."""
ZONE = ZoneInfo("Europe/Berlin")  # the bundled profiles' local time
KEEP = 8 * 7 * 96  # history handed to the planner (the meter keeps ≥ 8 weeks)


@dataclasses.dataclass(frozen=True)
class Law:
    """The production law's recharge settings (``[peak_shaving]``)."""

    capacity_wh: float
    """The fleet's capacity (SoC 100 %), Wh."""
    target_soc_pct: float = 60.0
    """``peak_shaving.target_soc_pct``."""
    recharge_power_w: float = math.inf
    """Largest recharge power, W (inf = the fleet's charge power)."""
    recharge_margin_w: float = 0.0
    """Recharging stays this far under the ceiling, W."""


def closed_loop(load: np.ndarray, starts: np.ndarray, months: np.ndarray, step_s: float,
                fleet: FleetModel, auto: AutoLimit, law: Law) -> dict[str, Any]:
    """Run the series; return per-month rows and the planning times."""
    e = fleet.energy_init_wh
    billed = billed_unc = 0.0
    grid = np.empty_like(load)
    e_start: dict[int, float] = {}
    times = np.empty(load.size)
    limits = np.empty(load.size)
    energy = np.empty(load.size + 1)
    energy[0] = e
    h = step_s / 3600.0
    e_soc = law.target_soc_pct / 100.0 * law.capacity_wh
    for k, lv in enumerate(load):
        if k == 0 or months[k] != months[k - 1]:
            billed = billed_unc = 0.0
            e_start[int(months[k])] = e
        lo = max(0, k - KEEP)
        now = float(load[k - 1]) if k else math.nan
        plan = auto.plan(float(starts[k]), load[lo:k], starts[lo:k], step_s, e, billed,
                         load_now_w=now, zone=ZONE)
        times[k] = plan.plan_s
        l_eff = max(plan.limit_w, billed)
        target = min(max(e_soc, plan.energy_target_wh), fleet.energy_max_wh)
        if not math.isfinite(plan.limit_w):  # cold: shave nothing, recharge under the bill
            l_eff, ceiling = math.inf, max(billed, billed_unc)
        else:
            ceiling = min(l_eff, max(plan.limit_w, billed_unc))
        if lv > l_eff:
            avail = max(e - fleet.energy_min_wh, 0.0) * fleet.discharge_efficiency / h
            p = -min(lv - l_eff, fleet.discharge_max_w, avail)
            e += p / fleet.discharge_efficiency * h
        else:
            room = max(target - e, 0.0) / fleet.charge_efficiency / h
            p = max(0.0, min(ceiling - law.recharge_margin_w - lv, fleet.charge_max_w,
                             law.recharge_power_w, room))
            e += p * fleet.charge_efficiency * h
        grid[k] = lv + p
        billed = max(billed, grid[k])
        billed_unc = max(billed_unc, lv)
        limits[k], energy[k + 1] = plan.limit_w, e
    rows = []
    for m in np.unique(months):
        sel = months == m
        f0 = dataclasses.replace(fleet, energy_init_wh=e_start[int(m)])
        opt = optimal_peak(load[sel], step_s, f0)
        unc = float(load[sel].max())
        got = float(grid[sel].max())
        rows.append({"month": int(m), "peak_w_uncontrolled": unc, "optimum_w": opt.peak_import_w,
                     "achieved_w": got, "optimal_reduction_w": unc - opt.peak_import_w,
                     "reduction_w": unc - got, "energy_start_wh": e_start[int(m)]})
    return {"rows": rows, "plan_s": times, "grid_w": grid, "limit_w": limits,
            "energy_wh": energy}


def summarise(rows: list[dict[str, float]]) -> tuple[float, float, float, list[float]]:
    """(year %, worst month %, worst month after the first %, per-month %)."""
    shares = [100.0 * r["reduction_w"] / r["optimal_reduction_w"] for r in rows]
    year = 100.0 * sum(r["reduction_w"] for r in rows) / sum(r["optimal_reduction_w"]
                                                              for r in rows)
    return year, min(shares), min(shares[1:], default=math.nan), shares


def _grid(specs: list[str]) -> list[dict[str, Any]]:
    """``FIELD=V1,V2`` → every combination as AutoLimitConfig overrides (typed as the field)."""
    fields = {f.name: f for f in dataclasses.fields(AutoLimitConfig)}
    axes: list[list[tuple[str, Any]]] = []
    for spec in specs:
        name, _, values = spec.partition("=")
        if name not in fields or not values:
            raise SystemExit(f"backtest: --grid {spec!r}: need FIELD=V1,V2 with FIELD one of "
                             f"{', '.join(fields)}")
        kind = type(getattr(AutoLimitConfig(), name))
        axes.append([(name, kind(v) if kind is not bool else v.lower() in ("1", "true"))
                     for v in values.split(",")])
    return [dict(c) for c in itertools.product(*axes)]


def main(argv: list[str] | None = None) -> int:
    """Run the backtest (module docstring)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", nargs="*", default=list(PROFILES), choices=list(PROFILES))
    ap.add_argument("--grid", nargs="*", default=[], metavar="FIELD=V1,V2")
    ap.add_argument("--months", type=int, default=12, help="only the first N months")
    ap.add_argument("--peak-w", type=float, default=400_000.0)
    ap.add_argument("--target-soc-pct", type=float, default=60.0)
    ap.add_argument("--recharge-power-w", type=float, default=math.inf)
    ap.add_argument("--recharge-margin-w", type=float, default=0.0)
    ap.add_argument("--json", type=Path, help="write every result here")
    args = ap.parse_args(argv)
    if not DATA.is_dir():
        print(f"backtest: {DATA} is absent (the shared real data); nothing to do",
              file=sys.stderr)
        return 2
    site = load_site()
    fleet = aggregate_model(fleet_models(site))
    cap = sum(c.capacity_wh for c in site.components if isinstance(c, BatteryConfig))
    law = Law(cap, args.target_soc_pct, args.recharge_power_w, args.recharge_margin_w)
    out = []
    for name in args.profile:
        prof = load_profile(DATA / PROFILES[name], peak_w=args.peak_w)
        if name.endswith("_shift1"):
            prof = dataclasses.replace(prof, power_w=np.roll(prof.power_w, 96))
        starts = prof.start_unix_s + prof.step_s * np.arange(prof.power_w.size)
        # Calendar months in the file's own offset (+01:00).
        months = np.array([int(time.strftime("%m", time.gmtime(t + 3600))) for t in starts])
        n = int(np.searchsorted(months, args.months, side="right"))
        for over in _grid(args.grid):
            cfg = dataclasses.replace(AutoLimitConfig(), **over)
            t0 = time.perf_counter()
            res = closed_loop(prof.power_w[:n], starts[:n], months[:n], prof.step_s, fleet,
                              AutoLimit(cfg, fleet), law)
            wall = time.perf_counter() - t0
            year, worst, worst2, shares = summarise(res["rows"])
            ps = res["plan_s"]
            tag = " ".join(f"{k}={v}" for k, v in over.items()) or "defaults"
            print(f"{name:16s} {tag}: year={year:5.1f}% worst={worst:5.1f}% "
                  f"worst_feb_on={worst2:5.1f}% plan mean={1e3 * ps.mean():.1f} ms "
                  f"p99={1e3 * np.quantile(ps, .99):.1f} ms max={1e3 * ps.max():.0f} ms "
                  f"wall={wall:.0f}s", flush=True)
            print("    months: " + " ".join(f"{s:5.1f}" for s in shares), flush=True)
            out.append({"profile": name, "config": dataclasses.asdict(cfg),
                        "law": dataclasses.asdict(law), "year_pct": year,
                        "worst_month_pct": worst, "worst_month_feb_on_pct": worst2,
                        "months_pct": shares, "rows": res["rows"],
                        "plan_ms_mean": 1e3 * float(ps.mean()),
                        "plan_ms_p99": 1e3 * float(np.quantile(ps, 0.99))})
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
