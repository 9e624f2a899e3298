"""controller.runtime.planning.forecast: exact on periodic series, sane on gaps, cold start and
hostile history."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from controller.errors import PlanningError
from controller.runtime.planning.forecast import FORECASTERS, History, forecast

Q = 900.0
DAY = 96
T0 = 1_700_000_000.0 - 1_700_000_000.0 % Q  # an interval boundary


def weekly(n: int) -> np.ndarray:
    """A weekly-periodic series: a daily shape times a weekday factor."""
    k = np.arange(n)
    day = 200e3 + 100e3 * np.sin(2 * np.pi * (k % DAY) / DAY)
    return day * (1.0 + 0.1 * ((k // DAY) % 7))


def history(values: np.ndarray, now_index: int | None = None) -> History:
    n = values.size if now_index is None else now_index
    starts = T0 + Q * np.arange(values.size)
    return History(values[:n], starts[:n], Q, T0 + Q * n + 10.0)


@pytest.mark.parametrize("name", ["naive_week", "week_max", "week_mean", "week_ewma"])
@pytest.mark.parametrize("horizon", [1, 96, 2 * 7 * DAY])
def test_weekly_forecasters_are_exact_on_a_weekly_series(name: str, horizon: int) -> None:
    s = weekly(8 * 7 * DAY)
    n = 5 * 7 * DAY + 37
    got = forecast(name, history(s, n), horizon)
    np.testing.assert_allclose(got, s[n:n + horizon], rtol=1e-12)


@pytest.mark.parametrize("name", ["naive_day", "day_quantile"])
def test_daily_forecasters_are_exact_on_a_daily_series(name: str) -> None:
    k = np.arange(30 * DAY)
    s = 150e3 + 50e3 * np.cos(2 * np.pi * k / DAY)
    n = 20 * DAY + 5
    np.testing.assert_allclose(forecast(name, history(s, n), 3 * DAY), s[n:n + 3 * DAY],
                               rtol=1e-12)


def test_a_gap_falls_back_to_the_latest_day_that_has_it() -> None:
    k = np.arange(21 * DAY)
    s = 150e3 + 50e3 * np.cos(2 * np.pi * k / DAY)
    n = 14 * DAY
    s_gap = s.copy()
    s_gap[n - 7 * DAY:n - 6 * DAY] = np.nan  # last week's same day missing
    got = forecast("naive_week", history(s_gap, n), DAY)
    np.testing.assert_allclose(got, s[n:n + DAY], rtol=1e-12)


def test_cold_start() -> None:
    empty = History(np.array([]), np.array([]), Q, T0)
    for name in FORECASTERS:
        assert np.all(np.isnan(forecast(name, empty, 10)))
    # Two hours of history: the seasonal forecasters have nothing; the fallback is the
    # highest value seen (conservative), the same time of day where it exists.
    vals = np.linspace(100e3, 180e3, 8)
    h = History(vals, T0 + Q * np.arange(8), Q, T0 + 8 * Q)
    got = forecast("week_max", h, DAY + 4)
    assert np.all(got[:DAY - 8] == 180e3)
    np.testing.assert_allclose(got[DAY - 8:DAY], vals)  # tomorrow at the same time


def test_bad_arguments_name_themselves() -> None:
    h = History(np.ones(3), T0 + Q * np.arange(3), Q, T0 + 3 * Q)
    with pytest.raises(PlanningError, match="forecaster: 'oracle' is not one of"):
        forecast("oracle", h, 4)
    with pytest.raises(PlanningError, match="horizon: need at least 1"):
        forecast("naive_day", h, 0)
    with pytest.raises(PlanningError, match="interval_s: must be a positive"):
        History(np.ones(3), np.zeros(3), 0.0, T0)
    with pytest.raises(PlanningError, match="history: 3 values but 2 start times"):
        History(np.ones(3), np.zeros(2), Q, T0)


values_st = hnp.arrays(np.float64, st.integers(0, 400),
                       elements=st.floats(allow_nan=True, allow_infinity=True, width=64)
                       | st.sampled_from([1.7e308, -1.7e308, 1e12, -5.0]))


@settings(max_examples=60, deadline=None)
@given(values=values_st, name=st.sampled_from(sorted(FORECASTERS)),
       horizon=st.integers(1, 300), jitter=st.floats(-1e9, 1e9))
def test_hostile_history_never_raises(values: np.ndarray, name: str, horizon: int,
                                      jitter: float) -> None:
    starts = T0 + Q * np.arange(values.size) + (jitter if values.size % 2 else 0.0)
    starts = np.where(np.arange(values.size) % 5 == 3, np.nan, starts)
    h = History(values, starts, Q, T0 + Q * values.size)
    got = forecast(name, h, horizon)
    assert got.shape == (horizon,)
    known = got[~np.isnan(got)]
    assert np.all(np.isfinite(known))
    assert np.all(known >= 0)
    # Either all known (some usable value) or all NaN (none).
    assert known.size in (0, horizon)
