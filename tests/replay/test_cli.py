"""gridloop replay CLI: end to end with the summary JSON, one-line errors, exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from controller.lab.replay.cli import main

FAST_FR = "duration=200,steps=1,ramps=0"


def test_end_to_end_writes_the_summary(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "summary.json"
    rc = main(["--days", "1", "--fr-trace", FAST_FR, "--summary-json", str(out),
               "--no-progress", "--check"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    data = json.loads(out.read_text())
    for key in ("peak_import_w_uncontrolled", "peak_import_w_optimal", "peak_import_w",
                "intervals_above_limit_avoidable"):
        assert isinstance(data[key], (int, float)), key
    assert data["peak_import_w_uncontrolled"] == pytest.approx(400_000.0)
    assert data["peak_import_w_optimal"] < data["peak_import_w_uncontrolled"]
    assert data["reduction_achieved_pct_of_optimal"] >= 98.0
    assert data["intervals_above_limit_avoidable"] == 0
    assert data["load"]["file"].endswith("load_metal_processing_LP_G_MV.csv")
    fr = data["frequency_response"]
    assert fr["rms_error_pct"] <= 2.0
    assert fr["activation_time_max_s"] <= 1.0
    assert data["targets_met"] is True
    assert "Peak shaving" in captured.out
    assert "Frequency response" in captured.out
    assert "reduction achieved / optimal" in captured.out


def test_fixed_limit_and_own_csv(tmp_path: Path) -> None:
    csv = tmp_path / "load.csv"
    rows = ["when,kW"] + [f"2024-05-01T{h:02d}:{m:02d}:00+02:00,{100 + (50 if h == 12 else 0)}"
                          for h in range(24) for m in (0, 15, 30, 45)]
    csv.write_text("\n".join(rows) + "\n")
    out = tmp_path / "s.json"
    rc = main(["--load-csv", str(csv), "--load-peak-w", "300000", "--limit", "250000",
               "--fr-trace", "none", "--summary-json", str(out), "--no-progress"])
    assert rc == 0
    data = json.loads(out.read_text())
    assert data["import_limit_w"] == 250_000.0
    assert data["peak_import_w_uncontrolled"] == pytest.approx(300_000.0)
    # A 1-hour 100 kW bump on a 200 kW base: the default batteries hold 250 kW easily.
    assert data["peak_import_w"] <= 250_000.0 + data["above_limit_tolerance_w"]
    assert data["intervals_above_limit"] == 0
    assert "frequency_response" not in data
    assert data["load"]["days"] == pytest.approx(1.0)


@pytest.mark.parametrize(("argv", "expected"), [
    (["--load-csv", "/nonexistent/x.csv"], "/nonexistent/x.csv: file not found"),
    (["--limit", "lots"], "--limit: expected 'auto', 'optimal' or a number of watts, got 'lots'"),
    (["--profile", "steel"], "argument --profile: invalid choice: 'steel'"),
    (["--profile", "galvanization", "--load-csv", "x.csv"],
     "--profile and --load-csv: give one of them"),
    (["--baselines", "all"], "argument --baselines: invalid choice: 'all'"),
    (["--limit", "-5"], "--limit: must be >= 0 W"),
    (["--days", "0"], "--days: must be a positive number of days, got 0.0"),
    (["--fr-trace", "speed=3"], "--fr-trace: 'speed=3' is not key=value"),
    (["--fr-trace", "steps=two"], "--fr-trace: steps='two' is not a int"),
    (["--start", "2030-01-01"], "empty selection: --start 2030-01-01T00:00:00"),
    (["--start", "1900-01-01"], "--start 1900-01-01T00:00:00 is before the first timestamp "
     "'2018-01-01 00:00:00+01:00' (the data covers '2018-01-01 00:00:00+01:00' to "
     "'2018-12-31 23:45:00+01:00')"),
    (["--bogus"], "unrecognized arguments: --bogus"),
    (["--load-peak-w", "abc"], "argument --load-peak-w: invalid float value: 'abc'"),
])
def test_bad_input_is_one_line_exit_2(
    argv: list[str], expected: str, capsys: pytest.CaptureFixture[str]
) -> None:
    rc = main([*argv, "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2
    assert err.count("\n") == 1, err
    assert err.startswith("gridloop replay: ")
    assert expected in err
    assert "Traceback" not in err


def test_malformed_csv_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("datetime,x\n2020-01-01 00:00:00,1\n2020-01-01 00:15:00,oops\n")
    rc = main(["--load-csv", str(bad), "--fr-trace", "none", "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2
    assert err == f"gridloop replay: {bad}:3: column 'x': not a number: 'oops'\n"


def test_config_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text("[peak_shaving]\nimport_limit_w = -5.0\n")
    assert main(["--config", str(cfg), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "import_limit_w" in err
    broken = tmp_path / "b.toml"
    broken.write_text("[[component]\n")
    assert main(["--config", str(broken), "--no-progress"]) == 2
    assert "invalid TOML" in capsys.readouterr().err


def test_site_config_is_accepted(tmp_path: Path) -> None:
    import simulator.sites

    site = Path(simulator.sites.__file__).parent / "default.toml"
    out = tmp_path / "s.json"
    rc = main(["--config", str(site), "--days", "0.25", "--fr-trace", "none",
               "--summary-json", str(out), "--no-progress"])
    assert rc == 0
    assert json.loads(out.read_text())["site"].endswith("default.toml")


def test_help_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    assert "--load-peak-w" in capsys.readouterr().out


def test_unwritable_summary(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["--days", "0.25", "--fr-trace", "none", "--no-progress",
               "--summary-json", str(tmp_path / "no" / "such" / "dir.json")])
    assert rc == 2
    assert "--summary-json: cannot write" in capsys.readouterr().err
