"""controller.runtime.planning.forecast: exact on periodic series, sane on gaps, cold start and
hostile history."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from controller.errors import PlanningError
from controller.runtime.planning.forecast import (
    FORECASTERS,
    ForecastParams,
    History,
    day_scenarios,
    forecast,
    utc_offsets,
)

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


BERLIN = ZoneInfo("Europe/Berlin")


def test_utc_offsets_match_the_zone_across_dst() -> None:
    # Every quarter hour of two weeks around each 2018 change in Berlin, and random times.
    spring = datetime(2018, 3, 18, tzinfo=UTC).timestamp() + Q * np.arange(14 * DAY)
    autumn = datetime(2018, 10, 21, tzinfo=UTC).timestamp() + Q * np.arange(14 * DAY)
    rand = np.random.default_rng(3).uniform(1.4e9, 1.9e9, 500)
    for t in (np.asarray(spring, dtype=np.float64), np.asarray(autumn, dtype=np.float64),
              np.asarray(rand, dtype=np.float64)):
        want = [datetime.fromtimestamp(x, BERLIN).utcoffset().total_seconds()  # type: ignore[union-attr]
                for x in t]
        np.testing.assert_array_equal(utc_offsets(BERLIN, t), want)
    assert np.all(utc_offsets(UTC, rand) == 0.0)


def _local_workdays(zone: ZoneInfo, first: datetime,
                    level: list[float]) -> tuple[np.ndarray, np.ndarray]:
    """Every quarter hour of ``len(level)`` local days from ``first``: 300 kW from 07:00 to
    16:00 local time on workdays, 50 kW otherwise, times the day's ``level``."""
    t0 = first.replace(tzinfo=zone).timestamp()
    t = t0 + Q * np.arange((len(level) + 1) * DAY)
    local = [datetime.fromtimestamp(x, zone) for x in t]
    keep = np.array([(loc.date() - first.date()).days < len(level) for loc in local])
    t, local = t[keep], [loc for loc, k in zip(local, keep, strict=True) if k]
    lv = np.array([level[(loc.date() - first.date()).days] for loc in local])
    work = np.array([loc.weekday() < 5 and 7 <= loc.hour < 16 for loc in local])
    return np.where(work, 300e3, 50e3) * lv, t


def test_shape_level_follows_local_time_across_dst_and_today_s_level() -> None:
    # Three weeks up to a Tuesday after the spring change (2018-03-25): the plateau starts
    # at 07:00 local time, 06:00 UTC before the change and 05:00 UTC after it. Today runs
    # 20 % above the usual level; tomorrow is usual again.
    first = datetime(2018, 3, 6)  # a Tuesday
    load, t = _local_workdays(BERLIN, first, [1.0] * 21 + [1.2, 1.0])
    now = datetime(2018, 3, 27, 10, 0, tzinfo=BERLIN).timestamp()
    n = int(np.searchsorted(t, now))
    params = ForecastParams(level_prior=0.0, shape_q=0.5)
    got = forecast("shape_level", History(load[:n], t[:n], Q, now, zone=BERLIN),
                   load.size - n, params)
    np.testing.assert_allclose(got, load[n:], rtol=1e-9)
    # The same forecaster on UTC days puts the plateau an hour off after the change.
    utc = forecast("shape_level", History(load[:n], t[:n], Q, now), load.size - n, params)
    assert not np.allclose(utc, load[n:], rtol=1e-3)


def test_shape_level_blends_today_s_level_toward_the_usual_one() -> None:
    first = datetime(2018, 5, 1)
    load, t = _local_workdays(BERLIN, first, [1.0] * 14 + [0.5])  # today: half the usual
    now = datetime(2018, 5, 15, 12, 0, tzinfo=BERLIN).timestamp()  # a Tuesday, noon
    n = int(np.searchsorted(t, now))
    h = History(load[:n], t[:n], Q, now, zone=BERLIN)
    alone = forecast("shape_level", h, 4, ForecastParams(level_prior=0.0))
    blend = forecast("shape_level", h, 4, ForecastParams(level_prior=1.0))
    usual = forecast("shape_level", h, 4, ForecastParams(level_prior=1e9))
    np.testing.assert_allclose(usual, 300e3, rtol=1e-6)
    np.testing.assert_allclose(alone, 150e3, rtol=1e-9)  # the whole day at half
    # The fit weighs by the typical load squared (kW² h): seen 00:00–12:00, the prior
    # one typical day.
    seen = 7 * 50**2 + 5 * 300**2
    day = 15 * 50**2 + 9 * 300**2
    np.testing.assert_allclose(blend, 300e3 * (0.5 * seen + day) / (seen + day), rtol=1e-9)


@pytest.mark.parametrize("classes", ["workday", "weekday"])
def test_shape_level_forecasts_a_weekend_from_weekends(classes: str) -> None:
    # Friday 20:00 after three weeks: Saturday and Sunday have no plateau, Monday has.
    first = datetime(2018, 5, 7)  # a Monday
    load, t = _local_workdays(BERLIN, first, [1.0] * 22)
    now = datetime(2018, 5, 25, 20, 0, tzinfo=BERLIN).timestamp()
    n = int(np.searchsorted(t, now))
    got = forecast("shape_level", History(load[:n], t[:n], Q, now, zone=BERLIN), load.size - n,
                   ForecastParams(day_classes=classes))
    np.testing.assert_allclose(got, load[n:], rtol=1e-9)


def test_day_scenarios_are_past_days_scaled_to_today_s_level() -> None:
    # The last three workdays ran at 0.9, 1.0 and 1.1 of the usual plateau, today (Tuesday)
    # at 1.2 since midnight: each scenario's rest of today is today's, exactly (no prior);
    # tomorrow (Wednesday) is the j-th latest workday as it was.
    first = datetime(2018, 5, 7)  # a Monday; the data end on Wednesday the 23rd
    levels = [1.0] * 17
    levels[10], levels[11], levels[14], levels[15] = 1.1, 1.0, 0.9, 1.2  # Thu, Fri, Mon, today
    load, t = _local_workdays(BERLIN, first, levels)
    now = datetime(2018, 5, 22, 9, 0, tzinfo=BERLIN).timestamp()
    n = int(np.searchsorted(t, now))
    h = History(load[:n], t[:n], Q, now, zone=BERLIN)
    rows = day_scenarios(h, h_n := load.size - n, 3, ForecastParams(level_prior=0.0))
    assert rows.shape == (3, h_n)
    today = t[n:] < datetime(2018, 5, 23, tzinfo=BERLIN).timestamp()
    for j in range(3):
        np.testing.assert_allclose(rows[j, today], load[n:][today], rtol=1e-9)
    plateau = rows[:, ~today].max(axis=1)
    np.testing.assert_allclose(plateau, [300e3 * lv for lv in (0.9, 1.0, 1.1)], rtol=1e-9)


def test_a_holiday_is_no_scenario_and_today_s_level_is_capped() -> None:
    # Monday the 21st was a holiday (20 % of a workday): the three scenarios of Wednesday
    # are the three latest real workdays, none of them the holiday.
    first = datetime(2018, 5, 7)  # a Monday; the data end on Wednesday the 23rd
    levels = [1.0] * 17
    levels[14] = 0.2
    load, t = _local_workdays(BERLIN, first, levels)
    now = datetime(2018, 5, 22, 23, 0, tzinfo=BERLIN).timestamp()
    n = int(np.searchsorted(t, now))
    h = History(load[:n], t[:n], Q, now, zone=BERLIN)
    rows = day_scenarios(h, load.size - n, 3)
    np.testing.assert_allclose(rows.max(axis=1), 300e3, rtol=1e-9)
    kept = day_scenarios(h, load.size - n, 3, ForecastParams(holiday_frac=0.0))
    assert kept.max(axis=1).min() == pytest.approx(60e3)
    # A day twice the usual: its level is capped at level_cap.
    levels[15] = 2.0
    load, t = _local_workdays(BERLIN, first, levels)
    noon = datetime(2018, 5, 22, 12, 0, tzinfo=BERLIN).timestamp()
    n = int(np.searchsorted(t, noon))
    h = History(load[:n], t[:n], Q, noon, zone=BERLIN)
    got = forecast("shape_level", h, 4, ForecastParams(level_prior=0.0, level_cap=1.5))
    np.testing.assert_allclose(got, 450e3, rtol=1e-9)
