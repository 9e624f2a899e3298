"""Auto-limit planning time per call (:meth:`AutoLimit.plan`), the cost of re-planning at
every interval boundary (a month = 2,880 calls of 15 min).

Run: ``pytest benchmarks/bench_autolimit.py``. Two cases: a plan that needs the LP (the
billed peak is below what the forecast needs: early in a period) and one the greedy check
settles (the billed peak already holds: the usual case later); and the robust mode (three
past weeks as scenarios, the vectorised bisection instead of the LP) in both. The share
of the optimal peak reduction is measured by ``benchmarks/backtest_autolimit.py`` (the
bundled real profiles, a year in closed loop), not here.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from controller.runtime.planning import AutoLimit, AutoLimitConfig, FleetModel

Q = 900.0
DAY = 96
T0 = 1_700_000_000.0 - 1_700_000_000.0 % Q
FLEET = FleetModel(350e3, 350e3, 60.5e3, 669.5e3, 378.5e3, 0.95, 0.95)  # the default site


def _history() -> tuple[np.ndarray, np.ndarray]:
    k = np.arange(8 * 7 * DAY)
    slot, day = k % DAY, (k // DAY) % 7
    work = (day < 5) & (slot >= 28) & (slot < 68)
    load = np.where(work, 320e3, 90e3) + np.random.default_rng(0).normal(0, 15e3, k.size)
    return load, T0 + Q * k


@pytest.mark.parametrize("weeks", [0, 3], ids=["point", "robust3"])
@pytest.mark.parametrize("billed_w", [0.0, 390e3], ids=["lp", "greedy"])
def test_plan_time_per_call(benchmark: Any, billed_w: float, weeks: int) -> None:
    load, starts = _history()
    auto = AutoLimit(AutoLimitConfig(scenario_weeks=weeks), FLEET)
    now = float(starts[-1] + Q)
    plan = benchmark(auto.plan, now, load, starts, Q, 500e3, billed_w)
    benchmark.extra_info.update({"used_lp": plan.used_lp, "limit_w": plan.limit_w})
    assert plan.used_lp == (billed_w == 0.0 and weeks == 0)
    assert plan.limit_w >= billed_w
