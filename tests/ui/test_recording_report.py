"""--record CSV rows and the `gridloop report` PNG made from them."""

from __future__ import annotations

import csv
import math
import struct
import sys
from pathlib import Path

import pytest

from controller.ops.recording import CsvRecorder, RecordingError, column_slug, csv_columns
from controller.ops.report import PANEL_TITLES, ReportError, main, read_recording, render_report
from controller.runtime.records import GroupRecord

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC
    width, height = struct.unpack(">II", data[16:24])  # IHDR
    return width, height


def read_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as file:
        return list(csv.DictReader(file))


# ------------------------------------------------------------------ recording


def test_header_has_units_and_group_columns(group_names) -> None:
    columns = csv_columns(group_names)
    for name in (
        "time_s",
        "grid_power_w",
        "uncontrolled_power_w",
        "battery_power_w",
        "battery_target_w",
        "frequency_hz",
        "fr_required_w",
        "fr_delivered_w",
        "dispatch_latency_ms",
        "soc_pct_g1_inv_10_bat_11",
        "setpoint_w_g2_inv_20_bat_21",
    ):
        assert name in columns
    assert column_slug("Bat #3 (west)") == "bat_3_west"
    assert csv_columns(["a b", "a-b", ""])[-4:] == [
        "soc_pct_group3",
        "setpoint_w_group3",
        "power_w_group3",
        "healthy_group3",
    ]
    assert "soc_pct_a_b_2" in csv_columns(["a b", "a-b"])


def test_one_row_per_cycle_with_values(tmp_path, make_record, group_names) -> None:
    path = tmp_path / "run.csv"
    with CsvRecorder(path, group_names) as recorder:
        recorder.write(make_record(time_s=0.0))
        recorder.write(make_record(time_s=0.2, frequency_hz=math.nan))
        assert recorder.rows_written == 2
    rows = read_rows(path)
    assert len(rows) == 2
    first = rows[0]
    assert float(first["grid_power_w"]) == 48_200.0
    assert float(first["uncontrolled_power_w"]) == 61_000.0
    assert float(first["battery_power_w"]) == -12_800.0
    assert float(first["frequency_hz"]) == pytest.approx(49.912)
    assert float(first["fr_required_w"]) == -5_000.0
    assert float(first["fr_delivered_w"]) == -4_900.0
    assert float(first["import_limit_w"]) == 50_000.0
    assert float(first["soc_pct_g1_inv_10_bat_11"]) == pytest.approx(55.2)
    assert float(first["setpoint_w_g1_inv_10_bat_11"]) == -6_000.0
    assert first["healthy_g1_inv_10_bat_11"] == "1"
    assert first["healthy_g2_inv_20_bat_21"] == "0"
    assert float(first["dispatch_latency_ms"]) == pytest.approx(3.2)
    assert first["setpoints_sent"] == "1234"
    assert first["excluded_components"] == "20"
    assert first["export_limit_w"] == ""  # nan → empty cell
    assert rows[1]["frequency_hz"] == ""
    assert float(rows[1]["time_s"]) == pytest.approx(0.2)


def test_pv_caps_and_ev_limits_are_recorded(tmp_path, make_record, group_names) -> None:
    path = tmp_path / "run.csv"
    with CsvRecorder(path, group_names) as recorder:
        recorder.write(make_record(pv_curtailed_w=45_300.0, pv_capped=2, ev_power_w=22_000.0,
                                   ev_limited=3))
    (row,) = read_rows(path)
    assert float(row["pv_curtailed_w"]) == 45_300.0
    assert row["pv_capped"] == "2"
    assert float(row["ev_power_w"]) == 22_000.0
    assert row["ev_limited"] == "3"


def test_groups_matched_by_name(tmp_path, make_record, group_names) -> None:
    path = tmp_path / "run.csv"
    only_g2 = (GroupRecord(group_names[1], 30.0, 100.0, 90.0, True),)
    extra = (*only_g2, GroupRecord("not recorded", 1.0, 1.0, 1.0, True))
    with CsvRecorder(path, group_names) as recorder:
        recorder.write(make_record(groups=extra))
    (row,) = read_rows(path)
    assert row["soc_pct_g1_inv_10_bat_11"] == ""
    assert float(row["soc_pct_g2_inv_20_bat_21"]) == 30.0
    assert not any("not_recorded" in key for key in row)


def test_rows_are_buffered_and_flushed_by_run_time(tmp_path, make_record, group_names) -> None:
    path = tmp_path / "run.csv"
    recorder = CsvRecorder(path, group_names, flush_interval_s=10.0)
    try:
        recorder.write(make_record(time_s=0.0))  # the first row is flushed at once
        assert len(read_rows(path)) == 1
        recorder.write(make_record(time_s=5.0))  # within the interval: still buffered
        assert len(read_rows(path)) == 1
        recorder.write(make_record(time_s=10.0))  # interval passed: flushed
        assert len(read_rows(path)) == 3
        recorder.write(make_record(time_s=11.0))
    finally:
        recorder.close()
    assert len(read_rows(path)) == 4  # close flushes
    assert recorder.closed


def test_bad_path_names_the_path(tmp_path, group_names) -> None:
    path = tmp_path / "no-such-dir" / "run.csv"
    with pytest.raises(RecordingError, match=r"no-such-dir/run\.csv") as info:
        CsvRecorder(path, group_names)
    assert info.value.path == path
    assert "cannot create the recording file" in str(info.value)


def test_write_after_close_is_an_error(tmp_path, make_record, group_names) -> None:
    recorder = CsvRecorder(tmp_path / "run.csv", group_names)
    recorder.close()
    recorder.close()  # idempotent
    with pytest.raises(RecordingError, match="after close"):
        recorder.write(make_record())


def test_bad_flush_interval(tmp_path, group_names) -> None:
    with pytest.raises(RecordingError, match="flush_interval_s"):
        CsvRecorder(tmp_path / "run.csv", group_names, flush_interval_s=-1.0)


# ------------------------------------------------------------------ report


@pytest.fixture
def recording(tmp_path, run_records, group_names) -> Path:
    path = tmp_path / "run.csv"
    with CsvRecorder(path, group_names) as recorder:
        for record in run_records:
            recorder.write(record)
    return path


def test_record_then_report_makes_png_with_three_panels(tmp_path, recording) -> None:
    png = tmp_path / "report.png"
    summary = render_report(recording, png)
    assert png.stat().st_size > 10_000
    assert summary.panel_titles == PANEL_TITLES
    assert summary.rows == 300
    assert summary.groups == ("g1_inv_10_bat_11", "g2_inv_20_bat_21")
    assert png_size(png) == (summary.width_px, summary.height_px) == (810, 810)


def test_read_recording_round_trips_values(recording, run_records) -> None:
    data = read_recording(recording)
    assert data.rows == len(run_records)
    assert data.columns["grid_power_w"][100] == pytest.approx(
        run_records[100].grid_power_w, rel=1e-5
    )
    assert data.columns["soc_pct_g2_inv_20_bat_21"][-1] == pytest.approx(
        run_records[-1].groups[1].soc_pct, rel=1e-3
    )
    assert math.isnan(data.get("no_such_column")[0])


def test_report_without_limits_or_groups(tmp_path) -> None:
    path = tmp_path / "minimal.csv"
    path.write_text(
        "time_s,grid_power_w,uncontrolled_power_w,frequency_hz,fr_required_w,fr_delivered_w\n"
        "0.0,1000,1000,50.0,0,0\n"
        "0.2,1100,1100,49.99,0,0\n"
    )
    summary = render_report(path, tmp_path / "minimal.png")
    assert summary.groups == ()
    assert summary.panel_titles == PANEL_TITLES
    assert (tmp_path / "minimal.png").stat().st_size > 0


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "empty file"),
        ("time_s,grid_power_w\n0,1\n", "missing column(s) uncontrolled_power_w, frequency_hz"),
        (
            "time_s,grid_power_w,uncontrolled_power_w,frequency_hz,fr_required_w,fr_delivered_w\n",
            "header but no rows",
        ),
        (
            "time_s,grid_power_w,uncontrolled_power_w,frequency_hz,fr_required_w,fr_delivered_w\n"
            "0,1,2,fifty,0,0\n",
            "line 2, column 'frequency_hz': 'fifty' is not a number",
        ),
        (
            "time_s,grid_power_w,uncontrolled_power_w,frequency_hz,fr_required_w,fr_delivered_w\n"
            "0,1,2,50\n",
            "line 2 has 4 fields, the header has 6",
        ),
    ],
)
def test_malformed_csv_names_file_and_problem(tmp_path, content, message) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(content)
    with pytest.raises(ReportError) as info:
        render_report(path, tmp_path / "out.png")
    assert str(path) in str(info.value)
    assert message in str(info.value)
    assert not (tmp_path / "out.png").exists()


def test_missing_csv_names_it(tmp_path) -> None:
    with pytest.raises(ReportError, match=r"nope\.csv: cannot read"):
        render_report(tmp_path / "nope.csv", tmp_path / "out.png")


def test_unwritable_png_names_it(tmp_path, recording) -> None:
    with pytest.raises(ReportError, match=r"missing-dir/out\.png: cannot write"):
        render_report(recording, tmp_path / "missing-dir" / "out.png")


def test_missing_matplotlib_says_how_to_install(tmp_path, recording, monkeypatch) -> None:
    for name in list(sys.modules):
        if name == "matplotlib" or name.startswith("matplotlib."):
            monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib → ImportError
    with pytest.raises(ReportError) as info:
        render_report(recording, tmp_path / "out.png")
    assert str(info.value) == "the report needs matplotlib: pip install 'gridloop[report]'"


def test_main_writes_png(tmp_path, recording, capsys) -> None:
    png = tmp_path / "r.png"
    assert main([str(recording), "-o", str(png)]) == 0
    assert png_size(png) == (810, 810)
    assert "wrote" in capsys.readouterr().out


def test_main_default_output_next_to_csv(recording) -> None:
    assert main([str(recording)]) == 0
    assert recording.with_suffix(".png").stat().st_size > 0


@pytest.mark.parametrize(
    "argv",
    [
        ["does-not-exist.csv"],
        [],
        ["x.csv", "--dpi", "lots"],
        ["x.csv", "--dpi", "5"],
    ],
)
def test_main_errors_are_one_line_exit_2(tmp_path, monkeypatch, capsys, argv) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("gridloop report: error: ")
    assert err.count("\n") == 1
    assert "Traceback" not in err
