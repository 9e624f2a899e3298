"""gridloop replay on recorded and synthetic frequency: --frequency-csv, --fr-trace synthetic."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from controller.lab.replay.cli import main
from controller.lab.replay.frequency import frequency_series
from simulator.frequency_synthetic import synthetic_frequency

T0 = 1_723_852_800  # 2024-08-17 00:00:00 UTC


def _recording(tmp_path: Path, seconds: int = 60, gap: range = range(20, 32)) -> Path:
    """A generated recording at 1 s (the synthetic generator's values, seed 5) with the
    seconds of ``gap`` missing."""
    hz = synthetic_frequency(float(seconds), seed=5).hz
    rows = ["timestamp,frequency"] + [f"{T0 + k},{hz[k]:.6f}" for k in range(seconds)
                                      if k not in gap]
    path = tmp_path / "rec.csv"
    path.write_text("\n".join(rows) + "\n")
    return path


def test_replay_on_a_recording_reports_its_gaps(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    csv = _recording(tmp_path)
    out = tmp_path / "s.json"
    rc = main(["--no-peak", "--frequency-csv", str(csv), "--summary-json", str(out),
               "--no-progress", "--check"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    fr = json.loads(out.read_text())["frequency_response"]
    assert fr["frequency_source"] == str(csv)
    assert fr["simulated_s"] == pytest.approx(60.0)  # the whole file
    assert fr["events"] == []
    assert fr["frequency_gaps"] == {"count": 1, "seconds": 12.0, "longest_s": 12.0,
                                    "bridged": 0}
    assert fr["rms_error_pct"] <= 2.0
    assert "unknown frequency (gaps; 0 W asked)" in captured.out
    assert "1 gaps, 12 s, longest 12 s" in captured.out


def test_replay_on_the_synthetic_generator(tmp_path: Path) -> None:
    out = tmp_path / "s.json"
    rc = main(["--no-peak", "--fr-trace", "synthetic,seed=3,duration=30", "--summary-json",
               str(out), "--no-progress"])
    assert rc == 0
    fr = json.loads(out.read_text())["frequency_response"]
    assert fr["frequency_source"] == "synthetic(seed=3)"
    assert fr["simulated_s"] == pytest.approx(30.0)
    assert fr["frequency_gaps"] == {"count": 0, "seconds": 0.0, "longest_s": 0.0, "bridged": 0}
    assert fr["fr_energy_required_wh"] > 0.0


def test_frequency_series_answers_at_site_times_from_either_source(tmp_path: Path) -> None:
    csv = _recording(tmp_path, gap=range(0))
    rec = frequency_series(csv)
    syn = frequency_series(seed=5, duration_s=60.0)
    t = np.array([[0.0, 10.0], [10.5, 59.0]])
    np.testing.assert_allclose(rec.at(t), syn.at(t), atol=1e-6)  # the same values, written
    assert rec.at(t).shape == (2, 2)


@pytest.mark.parametrize(("argv", "expected"), [
    (["--fr-trace", "none"], "--frequency-csv {csv}: cannot be combined with --fr-trace none"),
    (["--fr-trace", "synthetic"],
     "--frequency-csv {csv}: cannot be combined with --fr-trace synthetic"),
])
def test_conflicting_flags_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                        argv: list[str], expected: str) -> None:
    csv = _recording(tmp_path)
    assert main(["--no-peak", "--no-progress", "--frequency-csv", str(csv), *argv]) == 2
    assert capsys.readouterr().err == f"gridloop replay: {expected.format(csv=csv)}\n"


def test_a_too_long_synthetic_trace_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--no-peak", "--no-progress", "--fr-trace", "synthetic,duration=1e9"]) == 2
    assert capsys.readouterr().err == (
        "gridloop replay: --fr-trace synthetic: duration_s must be a positive number of seconds"
        " up to 2.6784e+06, got 1000000000.0\n")


def test_an_unusable_recording_is_one_line(tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("timestamp,hz\n" + "".join(f"{T0 + 5 * k},50\n" for k in range(4)))
    assert main(["--no-peak", "--no-progress", "--frequency-csv", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err == (f"gridloop replay: --frequency-csv: {bad}:3: column 'timestamp': step 5 s"
                   f" from '{T0}' to '{T0 + 5}' (median step 5 s): need at least one sample per"
                   " second\n")


def test_frequency_response_asks_nothing_where_the_recording_is_unknown(tmp_path: Path) -> None:
    from controller.lab.replay.frequency import make_frequency_trace, run_frequency_response
    from simulator.config import load_site

    # A recording 100 mHz low (well outside the deadband), 12 s missing in the middle.
    rows = ["timestamp,hz"] + [f"{T0 + k},49.9" for k in range(40) if k not in range(20, 32)]
    csv = tmp_path / "low.csv"
    csv.write_text("\n".join(rows) + "\n")
    trace = make_frequency_trace(40.0, steps=0, ramps=0, noise_hz=0.0,
                                 series=frequency_series(csv))
    r = run_frequency_response(load_site(None), trace)
    gap = (r.time_s >= 21.0) & (r.time_s < 31.0)  # the controller sees it one cycle late
    before = (r.time_s >= 10.0) & (r.time_s < 19.0)
    assert np.isnan(r.frequency_hz[gap]).all()
    assert np.all(r.required_w[gap] == 0.0)
    assert np.all(np.abs(r.delivered_w[gap]) < 1.0)
    assert np.all(r.delivered_w[before] < -10_000.0)  # discharging on the low frequency
