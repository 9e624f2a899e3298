"""Schedules in force (issue 17): the schedule file, the control cycle applying its windows,
preparation of the SoC band, the file source's reloads, the change log.

Cycle-level tests run :class:`ControlCycle` on a virtual clock (site time is an
argument) with a one-group fleet that follows the merged target exactly.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import logging
import os
import signal
import zoneinfo
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pytest

from actors import SiteMeasurements
from controller.cli import main as gridloop_main
from controller.errors import ConfigError
from controller.runtime.billing import BillingClock, BillingMeter
from controller.runtime.config import config_from_dict
from controller.runtime.cycle import ControlCycle
from controller.runtime.process import stop_on_signals
from controller.runtime.schedule import FrequencyWindow, ScheduleBook, Window
from controller.runtime.schedule_file import FileScheduleSource, load_schedule
from controller.runtime.service import RunOptions, _ScheduleLog, schedule_path
from controller.runtime.strategies import (
    DroopCurve,
    FrequencyResponse,
    FrequencyResponseConfig,
    PeakShaving,
    PeakShavingConfig,
    droop,
)

KW = 1_000.0
T0 = 1_780_000_200.0  # a quarter-hour boundary, UTC
UTC = zoneinfo.ZoneInfo("UTC")
BERLIN = zoneinfo.ZoneInfo("Europe/Berlin")
CAPACITY_WH = 100_000.0  # reserve 100 kW for 15 min = 25 % → band [35, 65] within 10..90


# ------------------------------------------------------------------ the file


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_a_good_file_gives_daily_and_one_off_windows_in_the_local_zone(tmp_path: Path) -> None:
    f = _write(tmp_path / "s.toml", """
[[window]]
start = "22:00"              # crosses midnight
end = "02:00"
reserved_power_w = 50_000
curve = "knee"
hold_duration_s = 1800
[[window]]
start = 2026-12-01T18:00:00+01:00
end = "2026-12-01T20:00:00"   # no offset: local (Berlin)
peak_limit_w = 200_000
[[window]]
start = 08:00:00             # TOML local time
end = "24:00"
peak_limit_w = 240_000
""")
    schedule = load_schedule(f, BERLIN)
    day = dt.datetime(2026, 12, 1, tzinfo=BERLIN).timestamp()
    windows = schedule.windows(day, day + 86_400)
    by_source = {w.source.split("#")[1]: w for w in windows}
    night = by_source["1@2026-12-01"]
    assert (night.start_s, night.end_s) == (day + 22 * 3600, day + 26 * 3600)
    assert night.frequency_response == FrequencyWindow(50_000.0, DroopCurve.knee(), 1800.0)
    assert night.peak_limit_w is None
    assert "1@2026-11-30" in by_source  # yesterday's night window overlaps today
    once = by_source["2"]
    assert (once.start_s, once.end_s) == (day + 18 * 3600, day + 20 * 3600)
    assert once.frequency_response is None
    assert once.peak_limit_w == 200_000.0
    assert (by_source["3@2026-12-01"].start_s, by_source["3@2026-12-01"].end_s) == (
        day + 8 * 3600, day + 24 * 3600)


BAD = [
    ("reserved_power_w = -5", "window[1].reserved_power_w = -5", "must be >= 0"),
    ('reserved_power_w = 1\ncurve = "cubic"', 'window[1].curve = "cubic"', "must be one of"),
    ('reserved_power_w = 1\nknee_hz = 0.1', "window[1].knee_hz = 0.1", 'only valid with curve'),
    ("reserved_power_w = 1\ndeadband_hz = 0.3",
     "window[1].deadband_hz = 0.3", "must be < full_activation_hz"),
    ("reserved_power_w = nan", "window[1].reserved_power_w = nan", "finite"),
    ('peak_limit_w = "high"', 'window[1].peak_limit_w = "high"', "must be a number"),
    ("hold_duration_s = 60\npeak_limit_w = 1",
     "window[1].hold_duration_s = 60", "only valid with reserved_power_w"),
    ("frobnicate = 1\npeak_limit_w = 1", "window[1].frobnicate = 1", "unknown key"),
    ("", "window[1] = ", "sets nothing"),
]


@pytest.mark.parametrize(("body", "field_value", "reason"), BAD)
def test_each_bad_field_is_one_line_naming_file_field_and_value(
    tmp_path: Path, body: str, field_value: str, reason: str
) -> None:
    f = _write(tmp_path / "s.toml", f'[[window]]\nstart = "00:00"\nend = "04:00"\n{body}\n')
    with pytest.raises(ConfigError) as info:
        load_schedule(f, UTC)
    line = str(info.value)
    assert "\n" not in line
    assert line.startswith(f"{f}: {field_value}"), line
    assert reason in line


BAD_TIMES = [
    ('start = "25:00"\nend = "04:00"', 'window[1].start = "25:00"', "not a time of day"),
    ('start = "24:00"\nend = "04:00"', 'window[1].start = "24:00"', "not a time of day"),
    ('start = "tomorrow"\nend = "04:00"', 'window[1].start = "tomorrow"', "ISO-8601"),
    ('start = "04:00"', "window[1].end = None", "missing"),
    ('start = "04:00"\nend = "04:00"', 'window[1].end = "04:00"', "after start"),
    ('start = "04:00"\nend = 2026-12-01T10:00:00Z', "window[1].end = ", "a time of day like"),
    ('start = 2026-12-01T10:00:00Z\nend = 2026-12-01T09:00:00Z', "window[1].end = ",
     "after start"),
    ("start = 2026-12-01\nend = 2026-12-02", "window[1].start = ", "must be a time"),
]


@pytest.mark.parametrize(("times", "field_value", "reason"), BAD_TIMES)
def test_each_bad_time_is_one_line(
    tmp_path: Path, times: str, field_value: str, reason: str
) -> None:
    f = _write(tmp_path / "s.toml", f"[[window]]\n{times}\npeak_limit_w = 1\n")
    with pytest.raises(ConfigError) as info:
        load_schedule(f, UTC)
    line = str(info.value)
    assert "\n" not in line
    assert line.startswith(f"{f}: {field_value}"), line
    assert reason in line


@pytest.mark.parametrize(("text", "expected"), [
    ("window = 3\n", "window = 3: must be an array of tables"),
    ("timezone = 'UTC'\n", 'timezone = "UTC": unknown key'),
    ("[[window]\n", "invalid TOML"),
])
def test_bad_file_level_input_is_one_line(tmp_path: Path, text: str, expected: str) -> None:
    f = _write(tmp_path / "s.toml", text)
    with pytest.raises(ConfigError) as info:
        load_schedule(f, UTC)
    assert "\n" not in str(info.value)
    assert expected in str(info.value)


def test_gridloop_run_refuses_a_bad_schedule_before_starting(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    f = _write(tmp_path / "s.toml", '[[window]]\nstart = "00:00"\nend = "01:00"\n'
               "reserved_power_w = -1\n")
    assert gridloop_main(["run", "--schedule", str(f), "--no-dashboard"]) == 2
    err = capsys.readouterr().err
    assert err == f"gridloop run: {f}: window[1].reserved_power_w = -1: must be >= 0\n"


# ------------------------------------------------------------------ the cycle


def _m(*, soc: float = 50.0, load_w: float = 100 * KW, battery_w: float = 0.0,
       freq: float = 50.0, fleet_w: float = 50 * KW) -> SiteMeasurements:
    """One group of CAPACITY_WH, SoC limits 10..90 %, ±fleet_w (none past a limit)."""
    return SiteMeasurements(
        grid_power_w=load_w + battery_w, grid_frequency_hz=freq, grid_sample_time_ns=1,
        battery_power_w=battery_w, pv_power_w=0.0, load_power_w=load_w,
        group_soc_pct=np.array([soc]), group_capacity_wh=np.array([CAPACITY_WH]),
        group_power_w=np.array([battery_w]), group_healthy=np.array([True]),
        soc_pct=soc, soc_lower_pct=10.0, soc_upper_pct=90.0,
        fleet_lower_w=-fleet_w if soc > 10.0 else 0.0,
        fleet_upper_w=fleet_w if soc < 90.0 else 0.0,
    )


PS = PeakShavingConfig(import_limit_w=250 * KW, recharge_margin_w=10 * KW, target_soc_pct=20.0,
                       recharge_power_w=5 * KW, interval_s=0.0)
FR = FrequencyResponseConfig(reserved_power_w=100 * KW, hold_duration_s=900.0)


def _cycle(book: ScheduleBook | None, ps: PeakShavingConfig = PS) -> ControlCycle:
    meter = BillingMeter(BillingClock(900, "month", UTC))
    return ControlCycle([FrequencyResponse(FR), PeakShaving(ps)], meter, None, book)


def _book(*windows: Window) -> ScheduleBook:
    book = ScheduleBook()
    book.replace("test", windows)
    return book


def _fr(cycle: ControlCycle) -> tuple[float, float, float]:
    w = cycle.wishes["frequency_response"]
    return w.preferred_w, w.lower_w, w.upper_w


def test_frequency_response_is_exactly_zero_outside_windows_and_on_from_the_first_cycle(
) -> None:
    linear = Window(T0 + 100, T0 + 200, "a", FrequencyWindow(100 * KW))
    knee = Window(T0 + 150, T0 + 300, "b", FrequencyWindow(40 * KW, DroopCurve.knee()))
    unsold = Window(T0 + 300, T0 + 400, "c", FrequencyWindow(0.0))
    cycle = _cycle(_book(linear, knee, unsold))
    expected_linear = -100 * KW * droop(49.9 - 50.0, DroopCurve.linear())
    expected_knee = -40 * KW * droop(49.9 - 50.0, DroopCurve.knee())
    # Under-frequency (droop active) and an SoC far below the band (the nudge would
    # charge): outside windows neither acts.
    for t, expected in [
        (T0, 0.0), (T0 + 99.999, 0.0),
        (T0 + 100.0, expected_linear), (T0 + 149.9, expected_linear),  # first cycle at start
        (T0 + 150.0, expected_knee), (T0 + 250.0, expected_knee),  # later start wins
        (T0 + 300.0, 0.0), (T0 + 399.0, 0.0), (T0 + 400.0, 0.0),  # reserve 0, then none
    ]:
        cycle.step(_m(freq=49.9, soc=12.0), t, site_time_s=t)
        assert _fr(cycle) == (expected, expected, expected), t
    # In the deadband inside a window, the SoC nudge of the config acts again.
    cycle.step(_m(freq=50.0, soc=12.0), T0 + 120, site_time_s=T0 + 120)
    assert _fr(cycle)[0] == FR.soc_management_power_w


def test_without_a_schedule_the_config_runs_all_the_time() -> None:
    cycle = _cycle(None)
    cycle.step(_m(freq=49.9), T0, site_time_s=T0)
    assert _fr(cycle)[0] == -100 * KW * droop(49.9 - 50.0, DroopCurve.linear())


def test_a_book_change_takes_effect_at_the_next_cycle() -> None:
    book = ScheduleBook()
    cycle = _cycle(book)
    cycle.step(_m(freq=49.9), T0, site_time_s=T0)
    assert _fr(cycle) == (0.0, 0.0, 0.0)
    book.replace("test", [Window(T0 - 10, T0 + 10, "a", FrequencyWindow(100 * KW))])
    cycle.step(_m(freq=49.9), T0 + 0.2, site_time_s=T0 + 0.2)
    assert _fr(cycle)[0] < 0
    book.replace("test", [])
    cycle.step(_m(freq=49.9), T0 + 0.4, site_time_s=T0 + 0.4)
    assert _fr(cycle) == (0.0, 0.0, 0.0)


def test_a_window_sets_the_peak_limit_but_never_below_the_billed_peak() -> None:
    no_shaving = dataclasses.replace(PS, import_limit_w=1_000 * KW)
    book = ScheduleBook()
    cycle = _cycle(book, no_shaving)
    # A first interval at 280 kW (the limit is far above): the billed peak is 280 kW.
    for k in range(901):
        cycle.step(_m(load_w=280 * KW), T0 + k, site_time_s=T0 + k)
    assert cycle.meter is not None
    assert cycle.meter.billed_peak_w == pytest.approx(280 * KW)
    book.replace("test", [Window(T0 + 901, T0 + 2000, "a", peak_limit_w=200 * KW)])
    cycle.step(_m(load_w=300 * KW), T0 + 901, site_time_s=T0 + 901)
    # Held to max(200, 280) kW: 20 kW of discharge at 300 kW of load, not 100 kW.
    assert cycle.wishes["peak_shaving"].upper_w == pytest.approx(-20 * KW, rel=0.02)
    book.replace("test", [Window(T0 + 901, T0 + 2000, "a", peak_limit_w=260 * KW)])
    cycle.step(_m(load_w=300 * KW), T0 + 902, site_time_s=T0 + 902)
    assert cycle.wishes["peak_shaving"].upper_w == pytest.approx(-20 * KW, rel=0.02)
    book.replace("test", [Window(T0 + 901, T0 + 2000, "a", peak_limit_w=290 * KW)])
    cycle.step(_m(load_w=300 * KW), T0 + 903, site_time_s=T0 + 903)
    assert cycle.wishes["peak_shaving"].upper_w == pytest.approx(-10 * KW, rel=0.05)


# ------------------------------------------------------------------ preparation


def _plant(cycle: ControlCycle, soc: float, until_s: float, *, load_w: float = 100 * KW,
           fleet_w: float = 50 * KW, dt: float = 10.0
           ) -> tuple[float, list[tuple[float, float, float, float]]]:
    """Run from T0 to ``until_s`` (exclusive); the fleet does the last target for ``dt``.

    Returns:
        The SoC at ``until_s``, and per step (t, grid W, battery W, FR wish W).
    """
    trace = []
    battery = 0.0
    t = T0
    while t < until_s:
        m = _m(soc=soc, load_w=load_w, battery_w=battery, fleet_w=fleet_w)
        battery = cycle.step(m, t, site_time_s=t)
        trace.append((t, load_w + battery, battery, _fr(cycle)[0]))
        soc += 100.0 * battery * dt / 3600.0 / CAPACITY_WH
        t += dt
    return soc, trace


def test_preparation_charges_into_the_band_before_the_window(
    caplog: pytest.LogCaptureFixture,
) -> None:
    window = Window(T0 + 7200, T0 + 9000, "w", FrequencyWindow(100 * KW))
    cycle = _cycle(_book(window))
    with caplog.at_level(logging.WARNING):
        soc, trace = _plant(cycle, 20.0, window.start_s)
    assert 35.0 <= soc <= 65.0
    # 16 % of 100 kWh at 50 kW: 1152 s; × 1.5 + 600 s = 2328 s of lead. Before that only
    # peak shaving's own 5 kW recharge (target 20 %: none at all).
    assert all(b <= 5 * KW for t, _, b, _ in trace if t < window.start_s - 2400)
    assert max(b for _, _, b, _ in trace) == pytest.approx(50 * KW)
    assert all(fr == 0.0 for *_, fr in trace)  # FR's own wish stays 0 W outside windows
    assert max(g for _, g, _, _ in trace) <= 240 * KW  # limit − margin: no new peak
    assert cycle.preparation.warned == 0
    assert not caplog.records


def test_preparation_discharges_into_the_band_before_the_window() -> None:
    window = Window(T0 + 7200, T0 + 9000, "w", FrequencyWindow(100 * KW))
    soc, trace = _plant(_cycle(_book(window)), 80.0, window.start_s)
    assert 35.0 <= soc <= 65.0
    assert min(b for _, _, b, _ in trace) == pytest.approx(-50 * KW)


def test_a_band_out_of_reach_is_one_warning_at_once_and_the_peak_is_not_raised(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # 235 kW of load under a 250 kW limit with a 10 kW margin: 5 kW of headroom, 2.5 kWh
    # in the half hour left, 2.5 % of SoC: 20 % → 22.5 %, not 35 %.
    window = Window(T0 + 1800, T0 + 3600, "file:x#2@2026-05-28", FrequencyWindow(100 * KW))
    cycle = _cycle(_book(window))
    with caplog.at_level(logging.WARNING, "gridloop.controller.schedule"):
        cycle.step(_m(soc=20.0, load_w=235 * KW), T0, site_time_s=T0)
        assert [r.getMessage() for r in caplog.records] == [
            "schedule: window file:x#2@2026-05-28 starting 2026-05-28T21:00:00Z: SoC band"
            " 35.0-65.0 % cannot be reached by its start: projected 22.5 % (now 20.0 %,"
            " 1800 s left)"
        ]
        status = cycle.preparation.status
        assert status is not None
        assert not status.reachable
        assert status.window == window
        soc, trace = _plant(cycle, 20.0, window.start_s, load_w=235 * KW)
    assert len(caplog.records) == 1
    assert cycle.preparation.warned == 1
    assert max(g for _, g, _, _ in trace) <= 240 * KW + 1e-6
    assert soc == pytest.approx(22.5, abs=0.1)


def test_a_fleet_without_power_prepares_and_warns_only_within_the_longest_lead() -> None:
    far = Window(T0 + 2 * 86_400, T0 + 3 * 86_400, "far", FrequencyWindow(100 * KW))
    cycle = _cycle(_book(far))
    cycle.step(_m(soc=20.0, fleet_w=0.0), T0, site_time_s=T0)
    assert cycle.preparation.status is None
    assert cycle.preparation.warned == 0
    t = far.start_s - 3600
    cycle.step(_m(soc=20.0, fleet_w=0.0), t, site_time_s=t)
    assert cycle.preparation.warned == 1


def test_no_preparation_while_a_window_is_in_force() -> None:
    now = Window(T0 - 100, T0 + 100, "now", FrequencyWindow(100 * KW))
    nxt = Window(T0 + 100, T0 + 200, "next", FrequencyWindow(100 * KW))
    cycle = _cycle(_book(now, nxt))
    cycle.step(_m(soc=20.0), T0, site_time_s=T0)
    assert cycle.preparation.status is None
    # Frequency response's own nudge holds the band inside the window.
    assert _fr(cycle)[0] == FR.soc_management_power_w


def test_peak_shaving_never_takes_the_soc_out_of_a_sold_windows_band() -> None:
    # Band of 100 kW for 900 s on 100 kWh within 10..90 %: 35..65 %. 300 kW of load
    # against the 250 kW limit: peak shaving wants 50 kW of discharge.
    now = Window(T0 - 100, T0 + 3600, "now", FrequencyWindow(100 * KW))
    cycle = _cycle(_book(now))
    cycle.step(_m(soc=50.0, load_w=300 * KW), T0, site_time_s=T0)
    assert cycle.wishes["peak_shaving"].preferred_w < -40 * KW  # inside the band: shaves
    for soc in (35.0, 20.0):  # at or below the band's lower edge: the reserve is not its
        cycle.step(_m(soc=soc, load_w=300 * KW), T0 + 1, site_time_s=T0 + 1)
        ps = cycle.wishes["peak_shaving"]
        assert min(ps.preferred_w, ps.lower_w, ps.upper_w) >= 0.0, soc
    # Above the upper edge it never charges (a low load would otherwise recharge).
    cycle.step(_m(soc=70.0, load_w=50 * KW), T0 + 2, site_time_s=T0 + 2)
    ps = cycle.wishes["peak_shaving"]
    assert max(ps.preferred_w, ps.lower_w, ps.upper_w) <= 0.0


def test_peak_shaving_keeps_the_next_windows_reserve_from_the_longest_lead_on() -> None:
    # At the band's lower edge (35 %), 300 kW of load against the 250 kW limit: a window
    # 4 h ahead keeps its reserve (no discharge); one 7 h ahead does not yet.
    for ahead_s, shaves in ((4 * 3600.0, False), (7 * 3600.0, True)):
        window = Window(T0 + ahead_s, T0 + ahead_s + 3600, "w", FrequencyWindow(100 * KW))
        cycle = _cycle(_book(window))
        cycle.step(_m(soc=35.0, load_w=300 * KW), T0, site_time_s=T0)
        assert (cycle.wishes["peak_shaving"].preferred_w < -40 * KW) is shaves, ahead_s
        assert cycle.preparation.status is None  # keeping, not preparing


def test_a_back_to_back_window_with_a_larger_reserve_is_prepared_inside_the_first() -> None:
    # 100 kW now (band 35..65 %), 150 kW next (band 47.5..52.5 %): at 40 % the SoC is in
    # the first band but not the next one's, which starts within the lead time.
    now = Window(T0 - 100, T0 + 600, "now", FrequencyWindow(100 * KW))
    nxt = Window(T0 + 600, T0 + 3600, "next", FrequencyWindow(150 * KW))
    cycle = _cycle(_book(now, nxt))
    cycle.step(_m(soc=40.0), T0, site_time_s=T0)
    assert cycle.wishes["peak_shaving"].preferred_w == pytest.approx(50 * KW)
    alone = _cycle(_book(now))  # without the next window: in band, peak shaving's own law
    alone.step(_m(soc=40.0), T0, site_time_s=T0)
    assert alone.wishes["peak_shaving"].preferred_w < 50 * KW


# ------------------------------------------------------------------ the file source


class _Changed(logging.Handler):
    """An event set by every delivery and every log line of the source."""

    def __init__(self) -> None:
        super().__init__()
        self.event = asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        self.event.set()

    async def until(self, pred: Callable[[], bool]) -> None:
        async with asyncio.timeout(30):
            while not pred():
                await self.event.wait()
                self.event.clear()


ONE = '[[window]]\nstart = "00:00"\nend = "04:00"\nreserved_power_w = 100_000\n'
TWO = ONE + '[[window]]\nstart = "04:00"\nend = "08:00"\npeak_limit_w = 200_000\n'


async def test_the_source_reloads_on_change_and_keeps_the_last_good_windows(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    f = _write(tmp_path / "s.toml", ONE)
    got: list[tuple[str, Sequence[Window]]] = []
    changed = _Changed()

    def deliver(name: str, windows: Sequence[Window]) -> None:
        got.append((name, windows))
        changed.event.set()

    source = FileScheduleSource(f, UTC, lambda: T0, poll_s=0.01)
    task = asyncio.create_task(source.run(deliver))
    logging.getLogger("gridloop.controller.schedule").addHandler(changed)
    try:
        await changed.until(lambda: len(got) == 1)
        assert got[0][0] == f"file:{f}"
        assert [w.source.split("@")[0] for w in got[0][1]] == [f"file:{f}#1"] * 3
        _write(f, TWO)
        await changed.until(lambda: len(got) == 2)
        assert {w.peak_limit_w for w in got[1][1]} == {None, 200_000.0}
        with caplog.at_level(logging.WARNING, "gridloop.controller.schedule"):
            _write(f, TWO.replace("200_000", "-1"))
            await changed.until(lambda: bool(caplog.records))
        assert [r.getMessage() for r in caplog.records] == [
            f"schedule file:{f}: {f}: window[2].peak_limit_w = -1: must be >= 0;"
            " keeping the last good windows"
        ]
        assert len(got) == 2
        assert source.schedule is not None
        # SIGHUP: read again even if the poll cannot tell (same size, same mtime).
        stat = f.stat()
        _write(f, TWO.replace("200_000", "15"))  # as long as the invalid "-1"
        os.utime(f, ns=(stat.st_atime_ns, stat.st_mtime_ns))
        await asyncio.sleep(0.05)
        assert len(got) == 2
        source.reload()
        await changed.until(lambda: len(got) == 3)
        assert {w.peak_limit_w for w in got[2][1]} == {None, 15.0}
    finally:
        logging.getLogger("gridloop.controller.schedule").removeHandler(changed)
        task.cancel()
        await asyncio.wait([task])
    assert task.cancelled()  # it ran until cancelled: nothing raised out of it


async def test_sighup_calls_on_hup_instead_of_stopping() -> None:
    stop, hups = asyncio.Event(), asyncio.Event()
    with stop_on_signals(asyncio.get_running_loop(), stop, hups.set):
        os.kill(os.getpid(), signal.SIGHUP)
        async with asyncio.timeout(30):
            await hups.wait()
    assert not stop.is_set()
    with stop_on_signals(asyncio.get_running_loop(), stop):
        os.kill(os.getpid(), signal.SIGHUP)
        async with asyncio.timeout(30):
            await stop.wait()


def test_every_change_is_logged_with_source_site_time_and_one_line_per_window(
    caplog: pytest.LogCaptureFixture,
) -> None:
    book = ScheduleBook()
    log = _ScheduleLog(book, lambda: T0, ["file:x"])
    a = Window(T0, T0 + 60, "file:x#1", FrequencyWindow(100 * KW))
    b = Window(T0, T0 + 60, "file:x#2", peak_limit_w=200 * KW)
    with caplog.at_level(logging.WARNING):
        log.deliver("file:x", [a])
        log.deliver("file:x", [a])  # nothing changed: no line
        log.deliver("file:x", [b])
    assert [r.getMessage() for r in caplog.records] == [
        "schedule file:x at site time 2026-05-28T20:30:00Z: added file:x#1"
        " [2026-05-28T20:30:00Z, 2026-05-28T20:31:00Z): frequency response 100000 W"
        " (config's curve, config's hold)",
        "schedule file:x at site time 2026-05-28T20:30:00Z: removed file:x#1"
        " [2026-05-28T20:30:00Z, 2026-05-28T20:31:00Z): frequency response 100000 W"
        " (config's curve, config's hold)",
        "schedule file:x at site time 2026-05-28T20:30:00Z: added file:x#2"
        " [2026-05-28T20:30:00Z, 2026-05-28T20:31:00Z): peak limit 200000 W",
    ]
    assert log.changes == 2
    assert book.schedule.windows == (b,)


def test_the_config_names_a_schedule_file_and_the_flag_wins(tmp_path: Path) -> None:
    f = _write(tmp_path / "s.toml", ONE)
    cfg = config_from_dict({"schedule": {"file": "s.toml"}}, "c.toml", tmp_path)
    assert cfg.schedule.file == f
    assert schedule_path(cfg, RunOptions()) == f
    assert schedule_path(cfg, RunOptions(schedule_path="other.toml")) == Path("other.toml")
    with pytest.raises(ConfigError) as info:
        config_from_dict({"schedule": {"file": "missing.toml"}}, "c.toml", tmp_path)
    assert str(info.value).startswith('c.toml: schedule.file = "missing.toml": no such file')
