"""The billing model (controller.runtime.billing): clock, meter, persisted state, config.

Time is always an argument (site unix seconds); nothing here reads a clock.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import logging
import math
import zoneinfo
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from controller.errors import ConfigError
from controller.runtime.billing import (
    BillingClock,
    BillingMeter,
    SiteKey,
    billing_zone,
    load_state,
    save_state,
)
from controller.runtime.config import config_from_dict

BERLIN = zoneinfo.ZoneInfo("Europe/Berlin")
UTC = zoneinfo.ZoneInfo("UTC")
SITE = SiteKey(7, "grpc://site.example:443")


def _t(*args: int, tz: dt.tzinfo = BERLIN) -> float:
    return dt.datetime(*args, tzinfo=tz).timestamp()  # type: ignore[misc]


def _walk(clock: BillingClock, start: float, end: float) -> list[float]:
    """Interval starts from ``start`` to ``end``, following interval_end."""
    out, t = [], start
    while t < end:
        assert clock.interval_start(t) == t
        out.append(t)
        t = clock.interval_end(t)
    return out


# ------------------------------------------------------------------ the clock


@pytest.mark.parametrize(
    ("day", "count"), [((2026, 3, 29), 92), ((2026, 10, 25), 100), ((2026, 7, 1), 96)]
)
def test_quarter_hours_on_berlin_changeover_days(day: tuple[int, int, int], count: int) -> None:
    # 23 h on the spring day, 25 h in autumn: every interval is 15 min on the wall
    # clock and starts on a quarter hour of local time.
    clock = BillingClock(900, "month", BERLIN)
    start = _t(*day)
    starts = _walk(clock, start, start + (count / 4) * 3600)
    assert len(starts) == count
    assert all(b - a == 900 for a, b in itertools.pairwise(starts))
    assert all(dt.datetime.fromtimestamp(s, BERLIN).minute % 15 == 0 for s in starts)
    assert clock.interval_start(starts[-1] + 899.5) == starts[-1]


def test_autumn_fold_has_two_distinct_intervals_at_the_same_wall_time() -> None:
    clock = BillingClock(900, "month", BERLIN)
    first = _t(2026, 10, 25, 2, 15)  # fold 0: CEST
    second = first + 3600  # the same 02:15 on the wall, CET
    assert clock.interval_start(first + 100) == first
    assert clock.interval_start(second + 100) == second
    assert clock.interval_end(first) == first + 900


def test_interval_not_dividing_the_jump_is_cut_at_the_jump() -> None:
    # 40-min intervals: 01:20 + 40 min is 02:00, which does not exist on the spring day;
    # the interval ends at the jump (01:00 UTC = 03:00 CEST), the next one is wall-aligned.
    clock = BillingClock(2400, "day", BERLIN)
    day = _t(2026, 3, 29)
    starts = _walk(clock, day, day + 23 * 3600)
    walls = [dt.datetime.fromtimestamp(s, BERLIN).strftime("%H:%M") for s in starts[:6]]
    assert walls == ["00:00", "00:40", "01:20", "03:00", "03:20", "04:00"]


def test_intervals_align_to_local_midnight_not_utc() -> None:
    kolkata = zoneinfo.ZoneInfo("Asia/Kolkata")  # UTC+5:30
    clock = BillingClock(3600, "day", kolkata)
    t = _t(2026, 1, 5, 10, 47, tz=kolkata)
    assert clock.interval_start(t) == _t(2026, 1, 5, 10, 0, tz=kolkata)
    assert clock.interval_end(t) == _t(2026, 1, 5, 11, 0, tz=kolkata)


@pytest.mark.parametrize(
    ("period", "key", "start"),
    [
        ("month", "2026-11", (2026, 11, 1)),
        ("week", "2026-W46", (2026, 11, 9)),  # Monday of ISO week 46
        ("day", "2026-11-12", (2026, 11, 12)),
    ],
)
def test_period_keys_and_starts(period: str, key: str, start: tuple[int, int, int]) -> None:
    clock = BillingClock(900, period, BERLIN)
    t = _t(2026, 11, 12, 17, 3)
    assert clock.period_key(t) == key
    assert clock.period_start(t) == _t(*start)


def test_month_rolls_over_at_local_midnight() -> None:
    clock = BillingClock(900, "month", BERLIN)
    midnight = _t(2026, 12, 1)
    assert clock.period_key(midnight - 1) == "2026-11"
    assert clock.period_key(midnight) == "2026-12"
    # ... which is 23:00 UTC the day before.
    assert dt.datetime.fromtimestamp(midnight, UTC).hour == 23


def test_zone_falls_back_from_config_to_site_to_utc() -> None:
    assert billing_zone("Europe/Berlin", "Asia/Tokyo") == BERLIN
    assert billing_zone(None, "Asia/Tokyo") == zoneinfo.ZoneInfo("Asia/Tokyo")
    assert billing_zone(None, None) == UTC
    assert billing_zone(None, "Not/AZone") == UTC


# ------------------------------------------------------------------ the meter


def _meter(period: str = "month", max_gap_s: float = 30.0) -> BillingMeter:
    return BillingMeter(BillingClock(900, period, BERLIN), max_gap_s)


@given(
    steps=st.lists(
        st.tuples(st.floats(0.1, 30.0), st.floats(-5e5, 5e5), st.floats(-5e5, 5e5)),
        min_size=1,
        max_size=40,
    )
)
@settings(max_examples=60, deadline=None)
def test_energy_is_exact_on_piecewise_constant_input(
    steps: list[tuple[float, float, float]],
) -> None:
    # Samples at irregular times (within the hold cap), each held until the next:
    # the energy is the exact sum of power × duration.
    meter = _meter()
    t = _t(2026, 5, 4, 10, 0)
    meter.update(t, 0.0, 0.0)
    grid_wh = unc_wh = 0.0
    held = (0.0, 0.0)
    for dt_s, grid, unc in steps:
        t_next = t + dt_s  # (the step as float64 unix time can represent it)
        grid_wh += held[0] * (t_next - t) / 3600
        unc_wh += held[1] * (t_next - t) / 3600
        t = t_next
        meter.update(t, grid, unc)
        held = (grid, unc)
    if t < _t(2026, 5, 4, 10, 15):
        assert meter.interval_energy_wh == pytest.approx(grid_wh, rel=1e-9, abs=1e-6)
        assert meter.interval_energy_uncontrolled_wh == pytest.approx(unc_wh, rel=1e-9, abs=1e-6)


def test_interval_closes_into_its_mean_split_at_the_boundary() -> None:
    # 100 kW from 10:00 to 10:10, 400 kW to 10:15, 100 kW after: the interval 10:00-10:15
    # closes at (10·100 + 5·400)/15 = 200 kW; the sample held across 10:15 is split.
    meter = _meter()
    t0 = _t(2026, 5, 4, 10, 0)
    for k in range(0, 600, 10):
        meter.update(t0 + k, 100e3, 50e3)
    for k in range(600, 900, 10):
        meter.update(t0 + k, 400e3, 300e3)
    meter.update(t0 + 905, 100e3, 50e3)  # held 400 kW from 890 to 905: 10 s in, 5 s out
    assert meter.billed_peak_w == pytest.approx(200e3)
    assert meter.billed_peak_w_uncontrolled == pytest.approx((600 * 50e3 + 300 * 300e3) / 900)
    assert meter.interval_start_s == t0 + 900
    assert meter.interval_energy_wh == pytest.approx(400e3 * 5 / 3600)
    starts, means = meter.history()
    assert starts.tolist() == [t0]
    assert means[0] == pytest.approx(meter.billed_peak_w_uncontrolled)


def test_billed_demand_is_never_negative() -> None:
    meter = _meter()
    t0 = _t(2026, 5, 4, 10, 0)
    for k in range(0, 1000, 10):
        meter.update(t0 + k, -50e3, -20e3)
    assert meter.billed_peak_w == 0.0
    assert meter.history()[1][0] == pytest.approx(-20e3)  # the history keeps the sign


def test_a_gap_is_held_for_max_gap_only_and_the_mean_is_of_the_covered_part() -> None:
    # 100 kW until 10:05, then nothing for 5 min (telemetry lost), then 100 kW: the last
    # sample is held 30 s, the rest of the gap is not covered and does not dilute the mean.
    meter = _meter(max_gap_s=30.0)
    t0 = _t(2026, 5, 4, 10, 0)
    for k in range(0, 301, 10):
        meter.update(t0 + k, 100e3, 100e3)
    meter.update(t0 + 600, 100e3, 100e3)
    assert meter.interval_covered_s == pytest.approx(330.0)
    for k in range(610, 920, 10):
        meter.update(t0 + k, 100e3, 100e3)
    assert meter.billed_peak_w == pytest.approx(100e3)


def test_one_spike_before_a_gap_weighs_at_most_max_gap() -> None:
    meter = _meter(max_gap_s=30.0)
    t0 = _t(2026, 5, 4, 10, 0)
    for k in range(0, 400, 10):
        meter.update(t0 + k, 100e3, 100e3)
    meter.update(t0 + 400, 10e6, 10e6)  # one absurd sample, then the stream stalls
    for k in range(800, 910, 10):
        meter.update(t0 + k, 100e3, 100e3)
    covered = 400 + 30 + 100
    expected = (100e3 * (covered - 30) + 10e6 * 30) / covered
    assert meter.billed_peak_w == pytest.approx(expected)


def test_nan_samples_are_not_integrated() -> None:
    meter = _meter()
    t0 = _t(2026, 5, 4, 10, 0)
    meter.update(t0, 100e3, 100e3)
    meter.update(t0 + 10, math.nan, math.nan)  # 100 kW held 10 s, then unknown for 10 s
    meter.update(t0 + 20, 100e3, math.nan)
    meter.update(t0 + 30, 100e3, 100e3)
    assert meter.interval_covered_s == pytest.approx(20.0)
    assert meter.interval_energy_wh == pytest.approx(100e3 * 20 / 3600)
    assert meter.interval_energy_uncontrolled_wh == pytest.approx(100e3 * 10 / 3600)
    meter.update(math.nan, 1e9, 1e9)  # no time: ignored
    assert meter.interval_energy_wh == pytest.approx(100e3 * 20 / 3600)


def test_clock_going_back_is_ignored_until_it_passes_the_last_time() -> None:
    meter = _meter()
    t0 = _t(2026, 5, 4, 10, 0)
    for k in range(0, 101, 10):
        meter.update(t0 + k, 100e3, 100e3)
    meter.update(t0 + 50, 900e3, 900e3)  # back 50 s
    meter.update(t0 + 90, 900e3, 900e3)
    assert meter.interval_energy_wh == pytest.approx(100e3 * 100 / 3600)
    meter.update(t0 + 110, 100e3, 100e3)
    assert meter.interval_energy_wh == pytest.approx(100e3 * 110 / 3600)


def test_peaks_reset_at_the_new_period() -> None:
    meter = _meter(period="day")
    t = _t(2026, 5, 4, 23, 30)
    for k in range(0, 1800, 10):
        meter.update(t + k, 300e3, 300e3)
    assert meter.period_key == "2026-05-04"
    assert meter.billed_peak_w == pytest.approx(300e3)
    for k in range(1800, 2800, 10):  # past midnight
        meter.update(t + k, 100e3, 120e3)
    assert meter.period_key == "2026-05-05"
    assert meter.period_start_s == _t(2026, 5, 5)
    assert meter.billed_peak_w == pytest.approx(100e3)
    assert meter.billed_peak_w_uncontrolled == pytest.approx(120e3)
    assert len(meter.history()[0]) == 3  # 23:30, 23:45, 00:00


def test_history_keeps_at_least_eight_weeks() -> None:
    meter = BillingMeter(BillingClock(3600, "month", UTC))
    t = _t(2026, 1, 1, tz=UTC)
    for k in range(10 * 7 * 24 + 1):
        meter.update(t + k * 3600.0, 1.0, float(k))
        meter.update(t + k * 3600.0 + 1.0, 1.0, float(k))
    starts, means = meter.history()
    assert starts[-1] - starts[0] >= 8 * 7 * 86400
    assert starts.dtype == means.dtype == float
    assert (starts[1:] > starts[:-1]).all()


# ------------------------------------------------------------------ persisted state


def _fed(t0: float) -> BillingMeter:
    meter = _meter()
    for k in range(0, 1200, 10):
        meter.update(t0 + k, 300e3 if k < 900 else 150e3, 350e3)
    return meter


def test_state_survives_save_and_restore(tmp_path: Path) -> None:
    t0 = _t(2026, 5, 4, 10, 0)
    meter = _fed(t0)
    path = tmp_path / "state.json"
    save_state(path, meter, SITE)
    again = _meter()
    assert load_state(path, again, SITE)
    assert again.state() == meter.state()
    assert again.billed_peak_w == pytest.approx(300e3)
    assert again.interval_energy_wh == pytest.approx(meter.interval_energy_wh)
    # It goes on where it was: the restored interval closes at 10:30 with what it had plus
    # what comes (the restart's gap is not covered).
    for k in range(1500, 1801, 10):
        again.update(t0 + k, 500e3, 500e3)
    assert again.billed_peak_w == pytest.approx(
        (150e3 * 290 + 500e3 * 300) / 590
    )
    assert not list(tmp_path.glob(".state.json.*"))  # no temp file left behind


def test_restored_interval_that_ended_while_down_is_closed_and_period_rolled(
    tmp_path: Path,
) -> None:
    t0 = _t(2026, 5, 31, 23, 30)
    meter = _fed(t0)  # the interval 23:45-24:00 is open with 150 kW
    path = tmp_path / "state.json"
    save_state(path, meter, SITE)
    again = _meter()
    assert load_state(path, again, SITE)
    again.update(_t(2026, 6, 2, 8, 0), 80e3, 80e3)  # back a day and a half later
    assert again.period_key == "2026-06"
    assert again.billed_peak_w == 0.0  # June's peak: nothing closed yet
    starts, means = again.history()
    assert starts[-1] == _t(2026, 5, 31, 23, 45)  # closed with what it had
    assert means[-1] == pytest.approx(350e3)


@pytest.mark.parametrize(
    ("content", "why"),
    [
        ("{not json", "Expecting"),
        ('{"format": "something else"}', "not a gridloop billing state file"),
        ('{"format": "gridloop-billing-state", "version": 99}', "version 99"),
        ("[1, 2]", "not a gridloop billing state file"),
    ],
)
def test_corrupt_state_is_one_warning_and_a_fresh_start(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, content: str, why: str
) -> None:
    path = tmp_path / "state.json"
    path.write_text(content)
    meter = _meter()
    with caplog.at_level(logging.WARNING):
        assert not load_state(path, meter, SITE)
    assert len(caplog.records) == 1
    line = caplog.records[0].getMessage()
    assert str(path) in line
    assert why in line
    assert "starting fresh" in line
    assert meter.period_key is None
    assert meter.billed_peak_w == 0.0


def test_truncated_or_bad_field_is_a_fresh_start(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "state.json"
    save_state(path, _fed(_t(2026, 5, 4, 10, 0)), SITE)
    data = json.loads(path.read_text())
    data["billed_peak_w"] = "lots"
    path.write_text(json.dumps(data))
    with caplog.at_level(logging.WARNING):
        assert not load_state(path, _meter(), SITE)
    assert "billed_peak_w" in caplog.text
    text = json.dumps(json.loads(path.read_text()) | {"billed_peak_w": 1.0})
    path.write_text(text[: len(text) // 2])  # a torn write (which save_state never leaves)
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        assert not load_state(path, _meter(), SITE)
    assert len(caplog.records) == 1


def test_state_of_another_site_or_settings_is_a_fresh_start(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "state.json"
    save_state(path, _fed(_t(2026, 5, 4, 10, 0)), SITE)
    with caplog.at_level(logging.WARNING):
        assert not load_state(path, _meter(), SiteKey(8, SITE.api_url))
        assert not load_state(path, _meter(), SiteKey(7, "grpc://other:443"))
        assert not load_state(path, BillingMeter(BillingClock(1800, "month", BERLIN)), SITE)
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 3
    assert "another site" in lines[0]
    assert "microgrid id 7" in lines[0]
    assert "interval_s" in lines[2]


def test_missing_state_file_is_a_silent_fresh_start(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        assert not load_state(tmp_path / "none.json", _meter(), SITE)
    assert not caplog.records


# ------------------------------------------------------------------ the config


def test_billing_section_defaults_and_values(tmp_path: Path) -> None:
    cfg = config_from_dict({})
    assert (cfg.billing.interval_s, cfg.billing.period, cfg.billing.timezone) == (
        900, "month", None
    )
    cfg = config_from_dict(
        {"billing": {"interval_s": 1800, "period": "week", "timezone": "Europe/Berlin",
                     "state_file": "s.json"}},
        base_dir=tmp_path,
    )
    assert cfg.billing.state_file == tmp_path / "s.json"
    assert cfg.billing.period == "week"


@pytest.mark.parametrize(
    ("section", "field", "value", "reason"),
    [
        ("billing", "interval_s", 700, "must divide a day"),
        ("billing", "interval_s", 30, "must be in [60, 3600]"),
        ("billing", "interval_s", 900.0, "must be an integer"),
        ("billing", "period", "year", "must be one of: month, week, day"),
        ("billing", "timezone", "Mars/Olympus", "not a known IANA time zone"),
        ("billing", "state_file", "no/such/dir/s.json", "no such directory"),
        ("peak_shaving", "limit", "lots", 'must be a number of watts or "auto"'),
        ("peak_shaving", "limit", -1.0, "must be >= 0"),
        ("peak_shaving", "hard_import_limit_w", -1.0, "must be >= 0"),
    ],
)
def test_bad_billing_values_name_the_field_and_value(
    section: str, field: str, value: object, reason: str
) -> None:
    with pytest.raises(ConfigError) as info:
        config_from_dict({section: {field: value}}, source="x.toml")
    line = str(info.value)
    assert f"x.toml: {section}.{field} = " in line, line
    assert reason in line, line
    assert "\n" not in line


def test_limit_takes_watts_or_auto_and_not_both_spellings() -> None:
    ps = config_from_dict({"peak_shaving": {"limit": 180_000}}).peak_shaving
    assert (ps.import_limit_w, ps.limit_mode) == (180_000.0, "fixed")
    ps = config_from_dict({"peak_shaving": {"import_limit_w": 170_000}}).peak_shaving
    assert (ps.import_limit_w, ps.limit_mode) == (170_000.0, "fixed")
    ps = config_from_dict({"peak_shaving": {"limit": "auto"}}).peak_shaving
    assert ps.limit_mode == "auto"
    assert ps.hard_import_limit_w is None
    with pytest.raises(ConfigError) as info:
        config_from_dict({"peak_shaving": {"limit": 1.0, "import_limit_w": 2.0}}, source="x.toml")
    assert "peak_shaving.limit" in str(info.value)
    assert "import_limit_w" in str(info.value)


def test_an_interval_joined_late_is_not_billed_and_the_next_one_is() -> None:
    # The run starts 880 s into a quarter hour: 2 s at 300 kW (the batteries not yet
    # acting), then 250 kW. The covered 20 s average 255 kW, but the interval's energy
    # before is unknown: it raises no billed peak (its uncontrolled mean is history).
    t0 = _t(2026, 5, 4, 10, 0)
    meter = _meter()
    for k in range(880, 900):
        meter.update(t0 + k, 300e3 if k < 882 else 250e3, 300e3)
        assert meter.interval_joined_late
    for k in range(900, 1801, 10):  # 10:15 to 10:30, seen from its start
        meter.update(t0 + k, 260e3, 300e3)
        assert not meter.interval_joined_late
    assert meter.closed == 2
    assert meter.billed_peak_w == pytest.approx(260e3)
    assert meter.billed_peak_w_uncontrolled == pytest.approx(300e3)
    starts, _ = meter.history()
    assert list(starts) == [t0, t0 + 900]


def test_joined_within_max_gap_counts_as_seen_from_the_start() -> None:
    t0 = _t(2026, 5, 4, 10, 0)
    meter = _meter()
    for k in range(25, 901, 5):  # first sample 25 s in (max_gap_s 30 s)
        meter.update(t0 + k, 270e3, 270e3)
    assert meter.billed_peak_w == pytest.approx(270e3)


def test_joined_late_survives_save_and_restore(tmp_path: Path) -> None:
    t0 = _t(2026, 5, 4, 10, 0)
    meter = _meter()
    for k in range(600, 700, 10):
        meter.update(t0 + k, 300e3, 300e3)
    path = tmp_path / "state.json"
    save_state(path, meter, SITE)
    again = _meter()
    assert load_state(path, again, SITE)
    assert again.interval_joined_late
    again.update(t0 + 900, 300e3, 300e3)
    assert again.billed_peak_w == 0.0
