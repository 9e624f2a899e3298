"""The day replay with a schedule (``gridloop replay --schedule``): compressed schedules of
short windows over an hour or less of the bundled profile."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from controller.lab.replay.cli import main
from controller.lab.replay.day import DayReplayOptions, run_day, schedule_book
from controller.lab.replay.frequency import frequency_series
from controller.lab.replay.loader import BUNDLED_LOAD_CSV, load_profile
from controller.lab.replay.periods import DEFAULT_ZONE
from controller.lab.replay.reports import DayReport
from controller.runtime.billing import billing_zone
from controller.runtime.schedule_file import load_schedule
from simulator.config import SiteConfig, load_site
from simulator.frequency_synthetic import synthetic_frequency

HOUR = 1.0 / 24.0
ZONE = billing_zone(None, DEFAULT_ZONE)
NO_SEGMENT = DayReplayOptions(activation_segment_s=0.0)


@pytest.fixture(scope="module")
def site() -> SiteConfig:
    return load_site()


def _schedule_file(tmp_path: Path, windows: list[tuple[str, str, float, float]],
                   peak_limit_w: float = 250_000) -> Path:
    """A schedule of daily windows ``(start, end, reserve W, hold s)`` with one peak limit."""
    text = "".join(
        f'[[window]]\nstart = "{a}"\nend = "{b}"\nreserved_power_w = {r}\n'
        f"hold_duration_s = {h}\npeak_limit_w = {peak_limit_w}\n\n" for a, b, r, h in windows)
    path = tmp_path / "plan.toml"
    path.write_text(text)
    return path


def _run(site: SiteConfig, path: Path, days: float = HOUR) -> DayReport:
    prof = load_profile(BUNDLED_LOAD_CSV, peak_w=400_000.0, start="2018-03-01", days=days)
    schedule = load_schedule(path, ZONE)
    series = frequency_series(None, seed=1, duration_s=days * 86400.0)
    return run_day(site, prof, schedule, series, options=NO_SEGMENT)


def test_schedule_book_expands_daily_windows_over_the_span(tmp_path: Path) -> None:
    path = _schedule_file(tmp_path, [("00:00", "04:00", 100_000, 900)])
    zone = ZONE
    schedule = load_schedule(path, zone)
    t0 = 1_519_858_800.0  # 2018-03-01 00:00 Berlin
    book = schedule_book(schedule, t0, t0 + 2 * 86400.0)
    starts = sorted(w.start_s for w in book.schedule.windows)
    assert starts == [t0, t0 + 86400.0]  # the day before ends at t0: not in the span
    assert book.schedule.frequency_window(t0 + 3600.0) is not None
    assert book.schedule.frequency_window(t0 + 5 * 3600.0) is None


def test_fr_exactly_zero_outside_windows_and_the_figures(site: SiteConfig,
                                                         tmp_path: Path) -> None:
    path = _schedule_file(tmp_path, [("00:00", "00:20", 100_000, 900),
                                     ("00:20", "00:40", 0, 900),
                                     ("00:40", "01:00", 100_000, 900)])
    r = _run(site, path)
    assert r.windows_sold == 2
    assert r.contracted_s == pytest.approx(2400.0)
    assert r.fr_energy_outside_windows_wh == 0.0
    assert r.fr_availability_pct == pytest.approx(100.0)
    assert r.fr_rms_error_pct < 1.0
    assert r.fr_energy_delivered_wh > 0.0
    assert r.soc_in_band_at_window_start_pct == pytest.approx(100.0)
    for row in r.windows:
        assert row["contracted_s"] == pytest.approx(1200.0)
        assert row["fr_energy_delivered_wh"] > 0.0
    assert r.peak_import_w < r.peak_import_w_uncontrolled
    # Fewer cycles than frequency samples: deadband stretches are skipped.
    assert r.control_cycles < 3600


def test_availability_falls_when_more_is_sold_than_the_fleet_holds(site: SiteConfig,
                                                                   tmp_path: Path) -> None:
    # The default site's battery inverters add up to 350 kW: 400 kW cannot be held.
    path = _schedule_file(tmp_path, [("00:00", "00:15", 100_000, 900),
                                     ("00:15", "00:30", 400_000, 900)])
    r = _run(site, path, days=1.0 / 48.0)
    ok, oversold = r.windows
    assert ok["fr_availability_pct"] == pytest.approx(100.0)
    assert oversold["fr_availability_pct"] == pytest.approx(0.0)
    assert r.fr_availability_pct == pytest.approx(50.0, abs=1.0)


def test_soc_is_prepared_before_a_window(site: SiteConfig, tmp_path: Path) -> None:
    # 100 kW held for 3 h either way: a band of 49.4-50.6 % on the 730 kWh fleet (SoC
    # limits 8.3-91.7 %), which starts at 51.8 %; preparation must bring it in by 00:40.
    # A limit above the load leaves peak shaving free to recharge toward its 60 % target.
    path = _schedule_file(tmp_path, [("00:00", "00:40", 0, 900),
                                     ("00:40", "01:00", 100_000, 10_800)], 500_000)
    r = _run(site, path)
    (row,) = r.windows
    lo, hi = row["soc_band_pct"]
    assert hi - lo < 2.0
    before = r.soc_pct[np.searchsorted(r.time_s, 60.0)]
    assert not lo <= before <= hi  # out of band at the start of the run
    assert row["soc_in_band_at_start"] is True
    assert row["preparation_warned"] is False


def test_cli_summary_keys_with_a_recorded_frequency(tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    path = _schedule_file(tmp_path, [("00:00", "00:15", 100_000, 900)])
    t0 = 1_519_858_800  # the replay's start: 2018-03-01 00:00 Berlin
    hz = synthetic_frequency(1800.0, seed=4).hz
    csv = tmp_path / "rec.csv"
    csv.write_text("timestamp,frequency\n" + "".join(
        f"{t0 + k},{hz[k]:.6f}\n" for k in range(1800) if k not in range(100, 110)))
    out = tmp_path / "s.json"
    rc = main(["--schedule", str(path), "--days", str(1.0 / 48.0), "--frequency-csv", str(csv),
               "--summary-json", str(out), "--no-progress"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    data = json.loads(out.read_text())
    for key in ("fr_availability_pct", "fr_rms_error_pct", "soc_in_band_at_window_start_pct",
                "fr_energy_outside_windows_wh", "peak_import_w", "peak_import_w_uncontrolled",
                "intervals_above_limit", "fr_activation_time_max_s", "wall_s"):
        assert isinstance(data[key], (int, float)), key
        assert not math.isnan(data[key]), key
    assert data["frequency_source"] == str(csv)
    assert data["frequency_gaps"]["count"] == 1
    assert data["fr_energy_outside_windows_wh"] == 0.0
    (row,) = data["windows"]
    assert row["window"].startswith(f"file:{path}#1@2018-03-01")
    assert row["curve"] == "linear"
    assert 0.0 < row["fr_activation_time_s"] <= 30.0
    assert "Per sold window" in captured.out


@pytest.mark.parametrize(("text", "expected"), [
    ('[[window]]\nstart = "00:00"\nend = "04:00"\nreserved_power_w = -5\n',
     "window[1].reserved_power_w = -5"),
    ('[[window]\n', "invalid TOML"),
])
def test_bad_schedule_is_one_line_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                         text: str, expected: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    assert main(["--schedule", str(path), "--days", "0.03", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith(f"gridloop replay: --schedule: {path}")
    assert expected in err
    assert "Traceback" not in err


def test_check_exits_1_when_a_target_is_missed(tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    path = _schedule_file(tmp_path, [("00:00", "00:15", 400_000, 900)])
    rc = main(["--schedule", str(path), "--days", str(1.0 / 48.0), "--no-progress", "--check"])
    assert rc == 1
    assert "fr_availability_pct" in capsys.readouterr().err
