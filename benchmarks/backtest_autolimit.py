"""Backtest of the auto limit: forecaster + planner in a fast closed loop, per month and year.

Run (from the repository root, with ../shared/data present)::

    python benchmarks/backtest_autolimit.py                       # the defaults
    python benchmarks/backtest_autolimit.py --forecaster naive_day week_max --margin 0 4 8

For each bundled profile (a full year of 15-min means, scaled so the year's
peak is ``--peak-w``) and each forecaster × margin, the year runs interval
by interval: at each boundary :meth:`AutoLimit.plan` sees only the closed
intervals before it (the first month starts cold: no history), the
aggregate battery of the replay's default site discharges the excess over
the effective limit ``max(plan, billed peak)`` and recharges within it (as
far as power and energy allow; with no plan it holds), and the billed peak
(the month's highest interval mean) ratchets and resets each calendar month.
The reference is the perfect-foresight optimum of each month (the same LP,
from the closed loop's energy at the month's start). Reported: the share of
the optimal peak reduction achieved, per month, worst month and the year
(summed reductions: a demand charge is paid per month), and the planning time.
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

import numpy as np

from controller.lab.replay import aggregate_model, fleet_models, load_profile
from controller.runtime.planning import FleetModel, optimal_peak
from controller.runtime.planning._auto import AutoLimit, AutoLimitConfig
from simulator.config import load_site

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
PROFILES = {"galvanization": "load_galvanization_LP_G_G.csv",
            "metal_processing": "load_metal_processing_LP_G_MV.csv"}
KEEP = 8 * 7 * 96  # history handed to the planner (the meter keeps ≥ 8 weeks)
DEF = AutoLimitConfig()


def closed_loop(load: np.ndarray, starts: np.ndarray, months: np.ndarray, step_s: float,
                fleet: FleetModel, auto: AutoLimit) -> dict[str, object]:
    """Run the year; return per-month rows and the planning times."""
    e = fleet.energy_init_wh
    billed = 0.0
    grid = np.empty_like(load)
    e_start: dict[int, float] = {}
    times = []
    h = step_s / 3600.0
    for k, lv in enumerate(load):
        if k == 0 or months[k] != months[k - 1]:
            billed = 0.0
            e_start[int(months[k])] = e
        lo = max(0, k - KEEP)
        plan = auto.plan(float(starts[k]), load[lo:k], starts[lo:k], step_s, e, billed)
        times.append(plan.plan_s)
        lim = max(plan.limit_w, billed)
        if not math.isfinite(lim):
            p = 0.0
        elif lv > lim:
            avail = max(e - fleet.energy_min_wh, 0.0) * fleet.discharge_efficiency / h
            p = -min(lv - lim, fleet.discharge_max_w, avail)
            e += p / fleet.discharge_efficiency * h
        else:
            room = max(fleet.energy_max_wh - e, 0.0) / fleet.charge_efficiency / h
            p = min(lim - lv, fleet.charge_max_w, room)
            e += p * fleet.charge_efficiency * h
        grid[k] = lv + p
        billed = max(billed, grid[k])
    rows = []
    for m in np.unique(months):
        sel = months == m
        f0 = dataclasses.replace(fleet, energy_init_wh=e_start[int(m)])
        opt = optimal_peak(load[sel], step_s, f0)
        unc = float(load[sel].max())
        got = float(grid[sel].max())
        rows.append({"month": int(m), "peak_w_uncontrolled": unc, "optimum_w": opt.peak_import_w,
                     "achieved_w": got, "optimal_reduction_w": unc - opt.peak_import_w,
                     "reduction_w": unc - got})
    return {"rows": rows, "plan_s": np.asarray(times)}


def summarise(rows: list[dict[str, float]]) -> tuple[float, float, list[float]]:
    shares = [100.0 * r["reduction_w"] / r["optimal_reduction_w"] for r in rows]
    year = 100.0 * sum(r["reduction_w"] for r in rows) / sum(r["optimal_reduction_w"]
                                                              for r in rows)
    return year, min(shares), shares


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", nargs="*", default=list(PROFILES), choices=list(PROFILES))
    ap.add_argument("--forecaster", nargs="*", default=[DEF.forecaster])
    ap.add_argument("--margin", nargs="*", type=float, default=[DEF.margin_pct])
    ap.add_argument("--horizon-h", nargs="*", type=float, default=[DEF.horizon_h])
    ap.add_argument("--end-energy-pct", type=float, default=DEF.end_energy_pct)
    ap.add_argument("--weeks", type=int, default=DEF.weeks)
    ap.add_argument("--days", type=int, default=DEF.days)
    ap.add_argument("--quantile", nargs="*", type=float, default=[DEF.quantile])
    ap.add_argument("--persist-h", nargs="*", type=float, default=[DEF.persist_h])
    ap.add_argument("--months", type=int, default=12, help="only the first N months")
    ap.add_argument("--peak-w", type=float, default=400_000.0)
    ap.add_argument("--json", type=Path, help="write every result here")
    args = ap.parse_args(argv)
    if not DATA.is_dir():
        print(f"backtest: {DATA} is absent (the shared real data); nothing to do",
              file=sys.stderr)
        return 2
    fleet = aggregate_model(fleet_models(load_site()))
    out = []
    for name in args.profile:
        prof = load_profile(DATA / PROFILES[name], peak_w=args.peak_w)
        starts = prof.start_unix_s + prof.step_s * np.arange(prof.power_w.size)
        # Calendar months in the file's own offset (+01:00).
        months = np.array([int(time.strftime("%m", time.gmtime(t + 3600))) for t in starts])
        n = int(np.searchsorted(months, args.months, side="right"))
        for fc in args.forecaster:
            for hz in args.horizon_h:
                for mg, ph, q in itertools.product(args.margin, args.persist_h, args.quantile):
                    cfg = AutoLimitConfig(horizon_h=hz, margin_pct=mg, forecaster=fc,
                                          end_energy_pct=args.end_energy_pct, weeks=args.weeks,
                                          persist_h=ph, days=args.days, quantile=q)
                    t0 = time.perf_counter()
                    res = closed_loop(prof.power_w[:n], starts[:n], months[:n], prof.step_s, fleet,
                                      AutoLimit(cfg, fleet))
                    wall = time.perf_counter() - t0
                    rows = res["rows"]
                    assert isinstance(rows, list)
                    year, worst, shares = summarise(rows)
                    ps = res["plan_s"]
                    assert isinstance(ps, np.ndarray)
                    print(f"{name:17s} {fc:15s} H={hz:5.1f}h margin={mg:4.1f}% "
                          f"persist={ph:g}h q={q:g} "
                          f"year={year:6.1f}% worst_month={worst:6.1f}% "
                          f"plan mean={1e3 * ps.mean():.1f} ms p99={1e3 * np.quantile(ps, .99):.1f}"
                          f" ms wall={wall:.0f}s", flush=True)
                    print("    months: " + " ".join(f"{s:5.1f}" for s in shares), flush=True)
                    out.append({"profile": name, "config": dataclasses.asdict(cfg),
                                "year_pct": year, "worst_month_pct": worst,
                                "months_pct": shares, "rows": rows,
                                "plan_ms_mean": 1e3 * float(ps.mean()),
                                "plan_ms_p99": 1e3 * float(np.quantile(ps, 0.99))})
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
