"""controller.lab.replay.loader: CSV load profiles, selection, scaling, one-line errors."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pytest

from controller.lab.replay.errors import ReplayError
from controller.lab.replay.loader import BUNDLED_LOAD_CSV, BUNDLED_PROFILES, load_profile

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data"
GALV = SHARED / "load_galvanization_LP_G_G.csv"
METAL = SHARED / "load_metal_processing_LP_G_MV.csv"
needs_shared = pytest.mark.skipif(
    not GALV.exists() or not METAL.exists(),
    reason=f"real load profiles not found in {SHARED} (../shared is absent on a fresh clone)",
)


def write(tmp_path: Path, text: str, name: str = "load.csv") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def rows(n: int, step_min: int = 15, start: str = "2020-01-01 00:00:00+01:00") -> list[str]:
    t0 = dt.datetime.fromisoformat(start)
    return [(t0 + dt.timedelta(minutes=step_min * k)).isoformat(sep=" ") for k in range(n)]


def test_bundled_profile_loads_and_scales_to_peak() -> None:
    prof = load_profile(BUNDLED_LOAD_CSV, peak_w=300_000.0)
    assert prof.column == "electrical load [W]"
    assert prof.step_s == 900.0
    assert prof.power_w.size == 35_040  # the calendar year 2018
    assert prof.peak_w == pytest.approx(300_000.0)
    assert prof.start == dt.datetime.fromisoformat("2018-01-01 00:00:00+01:00")
    assert prof.history_w.size == 0
    march = load_profile(BUNDLED_LOAD_CSV, peak_w=300_000.0, start="2018-03-01", days=3)
    assert march.power_w.size == 3 * 96
    # The rows before the start are the history, scaled alike, ending one step before it.
    assert march.history_w.size == (31 + 28) * 96
    year = load_profile(BUNDLED_LOAD_CSV)
    np.testing.assert_allclose(march.history_w, year.power_w[:march.history_w.size] * march.scale)
    assert set(BUNDLED_PROFILES) == {"metal_processing", "galvanization"}
    assert all(p.exists() for p in BUNDLED_PROFILES.values())
    assert np.all(prof.power_w >= 0)
    assert (BUNDLED_LOAD_CSV.parent / "README.md").read_text().count("vdi4657") == 1


def test_dst_switch_is_a_regular_step_in_absolute_time(tmp_path: Path) -> None:
    text = ("datetime,x\n2018-03-25 01:30:00+01:00,1\n2018-03-25 01:45:00+01:00,2\n"
            "2018-03-25 03:00:00+02:00,3\n2018-03-25 03:15:00+02:00,4\n")
    prof = load_profile(write(tmp_path, text))
    assert prof.step_s == 900.0
    assert prof.power_w.tolist() == [1, 2, 3, 4]


@pytest.mark.parametrize("start", ["2019-12-31 23:45", "2019-12-31T22:45:00+00:00"])
def test_start_within_one_step_before_the_data_selects_the_first_row(
    tmp_path: Path, start: str
) -> None:
    """A file stamped at the end of each interval begins one step after the day it
    covers starts (00:15 for 00:00), so such a start is not before the data."""
    text = "datetime,x\n2020-01-01 00:00:00+01:00,1\n2020-01-01 00:15:00+01:00,2\n"
    prof = load_profile(write(tmp_path, text), start=start)
    assert prof.first_line == 2
    assert prof.raw.tolist() == [1.0, 2.0]


def test_select_start_days_and_scale(tmp_path: Path) -> None:
    ts = rows(96 * 3)
    vals = np.arange(len(ts), dtype=float)
    text = "time,load kW\n" + "".join(f"{t},{v}\n" for t, v in zip(ts, vals, strict=True))
    prof = load_profile(write(tmp_path, text), start="2020-01-02", days=1, peak_w=1000.0)
    assert prof.power_w.size == 96
    assert prof.first_line == 96 + 2
    assert prof.raw[0] == 96.0
    assert prof.power_w.max() == pytest.approx(1000.0)
    assert prof.scale == pytest.approx(1000.0 / 191.0)
    # An aware start is an absolute instant: 2020-01-01 23:00 UTC = 2020-01-02 00:00+01:00.
    aware = load_profile(write(tmp_path, text), start="2020-01-01T23:00:00+00:00", days=0.5)
    assert aware.raw[0] == 96.0
    assert aware.power_w.size == 48


def test_column_by_name_among_several(tmp_path: Path) -> None:
    text = "datetime,a,b\n" + "".join(f"{t},1,{k}\n" for k, t in enumerate(rows(4)))
    prof = load_profile(write(tmp_path, text), column="b")
    assert prof.column == "b"
    assert prof.power_w.tolist() == [0, 1, 2, 3]


def test_naive_timestamps_are_utc_and_value_column_first(tmp_path: Path) -> None:
    text = "power [W],timestamp\n5,2020-01-01T00:00:00\n6,2020-01-01T00:01:00\n"
    prof = load_profile(write(tmp_path, text))
    assert prof.step_s == 60.0
    assert prof.start_unix_s == dt.datetime(2020, 1, 1, tzinfo=dt.UTC).timestamp()


BAD = [
    ("", None, {}, "load.csv: empty file"),
    ("datetime,x\n", None, {}, "load.csv:2: no data rows"),
    ("datetime,name\n2020-01-01 00:00:00,abc\n", None, {}, "no numeric value column"),
    ("datetime,a,b\n2020-01-01 00:00:00,1,2\n", None, {}, "several numeric columns ('a', 'b')"),
    ("datetime,x\n2020-01-01 00:00:00,1\n2020-13-01 00:15:00,2\n", None, {},
     "load.csv:3: column 'datetime': unparseable timestamp '2020-13-01 00:15:00'"),
    ("datetime,x\n2020-01-01 00:00:00,1\n2020-01-01 00:15:00,nan\n", None, {},
     "load.csv:3: column 'x': non-finite value 'nan'"),
    ("datetime,x\n2020-01-01 00:00:00,1\n2020-01-01 00:15:00,\n", None, {},
     "load.csv:3: column 'x': empty value"),
    ("datetime,x\n2020-01-01 00:00:00,1\n2020-01-01 00:15:00,1,2\n", None, {},
     "load.csv:3: has 3 fields, the header has 2"),
    ("datetime,x\n2020-01-01 00:00:00,1\n2020-01-01 00:15:00,2\n2020-01-01 00:45:00,3\n", None,
     {}, "load.csv:4: column 'datetime': irregular step: 1800 s"),
    ("datetime,x\n2020-01-01 00:15:00,1\n2020-01-01 00:00:00,2\n", None, {},
     "not increasing"),
    ("datetime,x\n2020-01-01 00:00:00,1\n", "y", {}, "load.csv:1: column 'y': no such column"),
    ("datetime,x\n2020-01-01 00:00:00,1\n2020-01-01 00:15:00,2\n", None,
     {"start": "2021-01-01"}, "empty selection: --start 2021-01-01T00:00:00 is after"),
    ("datetime,x\n2020-01-01 00:00:00,1\n2020-01-01 00:15:00,2\n", None,
     {"start": "1900-01-01"},
     "load.csv: column 'datetime': --start 1900-01-01T00:00:00 is before the first timestamp "
     "'2020-01-01 00:00:00' (the data covers '2020-01-01 00:00:00' to '2020-01-01 00:15:00')"),
    ("datetime,x\n2020-01-01 00:00:00+01:00,1\n2020-01-01 00:15:00+01:00,2\n", None,
     {"start": "2019-12-31T22:44:59Z"}, "--start 2019-12-31T22:44:59+00:00 is before the first"),
    ("datetime,x\n2020-01-01 00:00:00,1\n2020-01-01 00:15:00,2\n", None,
     {"start": "2021-01-01"}, "(the data covers '2020-01-01 00:00:00' to '2020-01-01 00:15:00')"),
    ("datetime,x\n2020-01-01 00:00:00,1\n2020-01-01 00:15:00,2\n", None, {"days": 1.0},
     "selection too short: --days 1 asked from '2020-01-01 00:00:00'"),
    ("datetime,x\n2020-01-01 00:00:00,0\n2020-01-01 00:15:00,-2\n", None, {"peak_w": 5.0},
     "cannot scale to --load-peak-w 5"),
    ("datetime,x\n2020-01-01 00:00:00,1\n", None, {"peak_w": -5.0}, "--load-peak-w: must be"),
    ("datetime,x\n2020-01-01 00:00:00,1\n", None, {"start": "soon"}, "--start: 'soon' is not"),
]


@pytest.mark.parametrize(("text", "column", "kwargs", "expected"), BAD)
def test_malformed_csv_is_one_line_error(
    tmp_path: Path, text: str, column: str | None, kwargs: dict[str, object], expected: str
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ReplayError) as info:
        load_profile(path, column=column, **kwargs)  # type: ignore[arg-type]
    message = str(info.value)
    assert "\n" not in message
    assert expected in message
    if not expected.startswith("--"):
        assert message.startswith(str(path))


def test_missing_file_and_directory(tmp_path: Path) -> None:
    with pytest.raises(ReplayError, match=r"nope\.csv: file not found$"):
        load_profile(tmp_path / "nope.csv")
    with pytest.raises(ReplayError, match="is a directory"):
        load_profile(tmp_path)


@needs_shared
@pytest.mark.parametrize(("path", "column"), [(GALV, "LP_G_G [W/MWh]"),
                                              (METAL, "electrical load [W]")])
def test_real_profiles_full_year(path: Path, column: str) -> None:
    prof = load_profile(path, peak_w=400_000.0)
    assert prof.column == column
    assert prof.power_w.size == 35_040
    assert prof.step_s == 900.0
    assert prof.peak_w == pytest.approx(400_000.0)
    month = load_profile(path, start="2017-06-01" if path == GALV else "2018-06-01", days=30)
    assert month.power_w.size == 30 * 96
    assert month.start.utcoffset() == dt.timedelta(hours=2)


@needs_shared
def test_weather_file_needs_a_column_choice() -> None:
    with pytest.raises(ReplayError, match="pick one with --load-column"):
        load_profile(SHARED / "weather_TRY4_2015_15min.csv")
