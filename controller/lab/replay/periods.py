"""Billing periods of a replay: where they fall in the data, the history before, each one's result.

* :data:`DEFAULT_ZONE` — the zone the replay bills in when ``[billing] timezone`` is
  not set (the bundled profiles' local time).
* :func:`billing_clock` — the :class:`~controller.runtime.billing.BillingClock` of a replay.
* :class:`Period` / :func:`billing_periods` — the replayed intervals split by billing
  period (calendar months in the zone by default).
* :func:`feed_history` — the rows before the replay into the billing meter, as if the
  site had recorded them (the auto limit learns from them).
* :func:`history_period` — the previous period's rows, when the history holds all of it.
* :class:`PeriodResult` — one period's row of the report.
* :func:`share_of_optimal_pct` — achieved reduction as a share of the optimal one.

Units: W, Wh, s (unix time for the site's clock, seconds since the replay's
start for the physics); + = import / charging.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from controller.runtime.billing import BillingClock, BillingConfig, BillingMeter, billing_zone

__all__ = [
    "DEFAULT_ZONE",
    "Period",
    "PeriodResult",
    "billing_clock",
    "billing_periods",
    "feed_history",
    "history_period",
    "share_of_optimal_pct",
]

DEFAULT_ZONE = "Europe/Berlin"
"""The zone a replay bills in without ``[billing] timezone``: the local time of the
bundled profiles (their timestamps' offsets follow German summer time). A CSV of
another zone needs ``[billing] timezone`` in ``--config``."""

FloatArray = npt.NDArray[np.float64]


def billing_clock(billing: BillingConfig) -> BillingClock:
    """The replay's billing clock: ``[billing]``'s interval and period, its zone or
    :data:`DEFAULT_ZONE`."""
    return BillingClock(billing.interval_s, billing.period,
                        billing_zone(billing.timezone, DEFAULT_ZONE))


@dataclass(frozen=True, slots=True)
class Period:
    """The replayed profile intervals ``[first, end)`` of one billing period."""

    key: str
    """The period's key (``"2018-03"`` for a month)."""
    first: int
    """Index of its first replayed interval."""
    end: int
    """Index after its last replayed interval."""
    whole: bool
    """Whether the replay covers the period from its start (the first period of a replay
    that starts mid-period does not)."""


def billing_periods(clock: BillingClock, start_unix_s: float, step_s: float,
                    n: int) -> list[Period]:
    """Split ``n`` profile intervals from ``start_unix_s`` (``step_s`` apart) by billing period.

    An interval belongs to the period of its start. The first period is *whole*
    when the replay starts at the period's start.
    """
    starts = start_unix_s + step_s * np.arange(n)
    out: list[Period] = []
    first = 0
    key = clock.period_key(float(starts[0]))
    whole = abs(clock.period_start(float(starts[0])) - float(starts[0])) < 1e-6
    # Periods are at least a day long: test one interval a day, then find the edge.
    per_day = max(1, int(86_400.0 // step_s))
    i = 0
    while i < n:
        j = min(i + per_day, n - 1)
        if clock.period_key(float(starts[j])) == key and j < n - 1:
            i = j
            continue
        edge = next((k for k in range(i + 1, j + 1) if clock.period_key(float(starts[k])) != key),
                    None)
        if edge is None:  # the data ends within the period
            break
        out.append(Period(key, first, edge, whole))
        first, key, whole = edge, clock.period_key(float(starts[edge])), True
        i = edge
    out.append(Period(key, first, n, whole))
    return out


def feed_history(meter: BillingMeter, history_w: FloatArray, start_unix_s: float,
                 step_s: float) -> None:
    """Feed the rows before the replay (``history_w``, the last one ending at
    ``start_unix_s``) into ``meter`` as if the site had metered them: one sample per row,
    the load with no batteries (grid = uncontrolled). The meter's history then holds their
    interval means: the auto limit plans on them.

    The billed peaks are then reset: when the replay starts within a period, its first
    period's bill counts the replayed intervals only, so its row compares the
    uncontrolled, optimal and achieved peaks of the same intervals (the rows before were
    not shaved, and no battery can undo them).

    The meter must hold a sample for a whole row or more (``max_gap_s``), or its means
    are of the covered part only (which for a row held constant is the same).
    """
    n = history_w.size
    if n == 0:
        return
    for j in range(n):
        v = float(history_w[j])
        meter.update(start_unix_s - (n - j) * step_s, v, v)
    meter.update(start_unix_s, math.nan, math.nan)  # closes the last row's interval
    meter.billed_peak_w = meter.billed_peak_w_uncontrolled = 0.0


def history_period(clock: BillingClock, history_w: FloatArray, start_unix_s: float,
                   step_s: float) -> FloatArray | None:
    """The history's rows of the period just before the replay's first one, when the replay
    starts at a period's start and the history holds that whole previous period; else
    None."""
    if history_w.size == 0 or abs(clock.period_start(start_unix_s) - start_unix_s) > 1e-6:
        return None
    prev_start = clock.period_start(start_unix_s - step_s)
    k = round((start_unix_s - prev_start) / step_s)
    if k < 1 or k > history_w.size:
        return None
    return history_w[-k:]


def share_of_optimal_pct(reduction_achieved_w: float, reduction_optimal_w: float,
                         tolerance_w: float) -> float:
    """``100 × achieved / optimal`` reduction; with no optimal reduction, 100 if the
    achieved one is not worse than ``−tolerance_w``, else 0."""
    if reduction_optimal_w > 1e-6:
        return 100.0 * reduction_achieved_w / reduction_optimal_w
    return 100.0 if reduction_achieved_w >= -tolerance_w else 0.0


@dataclass(frozen=True, slots=True)
class PeriodResult:
    """One billing period of a peak-shaving replay (W, %, s; + = import).

    Peaks are the highest interval mean of the replayed intervals of the period
    (what the demand charge bills).
    """

    period: str
    """The period's key (``"2018-03"``)."""
    start: str
    """Its first replayed interval's start, ISO 8601 in the billing zone."""
    intervals: int
    """Intervals replayed in it."""
    whole: bool
    """Whether the replay covered it from its start."""
    peak_import_w_uncontrolled: float
    """Highest interval mean without batteries."""
    peak_import_w_optimal: float
    """Perfect-foresight optimum (LP, the fleet as one battery, from the energy the fleet
    had at the period's start)."""
    peak_import_w: float
    """Achieved billed peak (highest interval mean with batteries)."""
    reduction_optimal_w: float
    """``uncontrolled − optimal``."""
    reduction_achieved_w: float
    """``uncontrolled − achieved``."""
    reduction_achieved_pct_of_optimal: float
    """``100 × achieved / optimal`` reduction (:func:`share_of_optimal_pct`)."""
    limit_w: float
    """The target limit at the period's end (the fixed limit; ``--limit auto``: the last
    plan's, inf = no plan; nan = none, see :attr:`note`)."""
    intervals_above_limit: int
    """Intervals whose mean exceeded the effective limit in force (``max(target, billed
    peak so far)``) by more than the tolerance."""
    intervals_above_limit_avoidable: int
    """Of those, the ones where the fleet had the power and energy to prevent it."""
    intervals_above_given_limit: int
    """Intervals whose mean exceeded the *given* limit (the target: ``--limit``'s, the
    period's optimum, or the plan in force with ``--limit auto``) by more than the
    tolerance, whatever the billed peak had become."""
    intervals_above_given_limit_preventable: int
    """Of those, the ones the fleet could have prevented: its unused discharge power over
    the interval and its energy above the lower SoC limit at the interval's start were
    each at least the excess energy."""
    excess_above_given_limit_wh: float
    """Energy of those intervals' means above the given limit, summed (Wh)."""
    equivalent_full_cycles: float
    """Battery throughput: AC energy charged + discharged over twice the fleet's usable
    energy window."""
    soc_start_pct: float
    """Fleet SoC at the period's start."""
    wall_s: float
    """Wall time of the period's replay, LP included (information only)."""
    note: str = ""
    """Why a figure is missing (e.g. no previous period for that baseline)."""

    def as_dict(self) -> dict[str, Any]:
        """The row as a JSON-ready dict."""
        return {k: (v if not isinstance(v, float) or math.isfinite(v) else None)
                for k, v in asdict(self).items()}
