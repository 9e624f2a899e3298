"""Recorded and synthetic grid frequency: the CSV loader, the generator, the site config
and the physics serving them."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from simulator.config import SiteConfigError, site_from_dict
from simulator.csv_series import CsvSeriesError
from simulator.frequency_series import FrequencySeries, frequency_statistics, read_frequency_csv
from simulator.frequency_synthetic import MEASURED, synthetic_frequency
from simulator.physics import SitePhysics

T0 = 1_723_852_800  # 2024-08-17 00:00:00 UTC


def _write(path: Path, rows: list[str], header: str = "timestamp,frequency [Hz]") -> str:
    path.write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
    return str(path)


def _wave(k: float) -> float:
    return 50.0 + 0.02 * math.sin(k / 30.0)


# ------------------------------------------------------------------ good files


def test_iso_file_with_offset_starts_at_time_zero(tmp_path: Path) -> None:
    rows = [f"2024-08-17T02:{k // 60:02d}:{k % 60:02d}+02:00,{_wave(k):.6f}" for k in range(300)]
    s = read_frequency_csv(_write(tmp_path / "f.csv", rows))
    assert s.step_s == 1.0
    assert s.hz.size == 300
    assert s.start_unix_s == T0
    assert s.problems == ()
    assert s.gaps.count == 0
    assert s.gaps.bridged == 0
    t = np.array([0.0, 10.0, 10.5, 299.0])
    want = [_wave(0), _wave(10), (_wave(10) + _wave(11)) / 2, _wave(299)]
    np.testing.assert_allclose(s.at(t), want, atol=1e-6)
    # Cyclic after the end, as a load profile, and any array shape.
    np.testing.assert_allclose(s.at([[300.0, 310.0]]), [[_wave(0), _wave(10)]], atol=1e-6)
    # The physics' scalar path gives the same, before, inside and after the trace.
    many = np.linspace(-100.0, 700.0, 1601)
    assert [s.at_scalar(float(x)) for x in many] == pytest.approx(list(s.at(many)), abs=1e-12)


def test_unix_seconds_and_sub_second_samples(tmp_path: Path) -> None:
    rows = [f"{T0 + k / 10:.1f},{50 + k / 1e4:.4f}" for k in range(100)]
    s = read_frequency_csv(_write(tmp_path / "f.csv", rows, header="t,hz"))
    assert s.step_s == pytest.approx(0.1)
    assert s.hz.size == 100
    assert float(s.at(5.0)) == pytest.approx(50.005)


# ------------------------------------------------------------------ gaps and bad rows


def test_gaps_are_bridged_or_reported_one_line_each(tmp_path: Path) -> None:
    rows = []
    for k in range(600):
        if 100 <= k < 103:
            rows.append(f"{T0 + k},nan")  # a short gap: interpolated
        elif 200 <= k < 230:
            continue  # 30 missing seconds: unknown
        elif k == 300:
            rows.append(f"{T0 + k},0")  # a broken sensor value: missing, bridged
        elif k == 301:
            rows.append(f"{T0 + k},65")
        elif k == 400:
            rows.append(f"{T0 + k - 5},{_wave(k)}")  # back in time: ignored
        elif k == 500:
            rows.append(f"{T0 + k},")  # empty: missing, bridged
        else:
            rows.append(f"{T0 + k},{_wave(k):.6f}")
    path = _write(tmp_path / "f.csv", rows)
    s = read_frequency_csv(path)
    assert s.hz.size == 600
    assert list(s.problems) == [
        f"{path}:102: column 'frequency [Hz]': 3 missing values up to line 104 (empty or nan);"
        " treated as missing",
        f"{path}:272: column 'frequency [Hz]': value 0 Hz outside 45..55 Hz; treated as missing",
        f"{path}:273: column 'frequency [Hz]': value 65 Hz outside 45..55 Hz; treated as missing",
        f"{path}:372: column 'timestamp': timestamp '{T0 + 395}' is not after '{T0 + 399}'"
        " (line 371); row ignored",
        f"{path}:472: column 'frequency [Hz]': missing value (empty or nan); treated as missing",
    ]
    assert s.gaps.as_dict() == {"count": 1, "seconds": 30.0, "longest_s": 30.0, "bridged": 4}
    assert "1 gap(s) of unknown frequency, 30 s in total, longest 30 s" in s.summary()
    # Short gaps: linear interpolation between the neighbours.
    assert float(s.at(101.0)) == pytest.approx((_wave(99) + _wave(103)) / 2)
    assert float(s.at(300.5)) == pytest.approx(_wave(299) + 1.5 * (_wave(302) - _wave(299)) / 3)
    # The long gap is unknown, up to (not including) the samples around it.
    assert np.isnan(s.at([200.0, 215.0, 229.0, 228.5])).all()
    assert np.isfinite(s.at([199.0, 230.0])).all()


def test_a_long_gap_at_the_start_is_unknown(tmp_path: Path) -> None:
    rows = [f"{T0 + k},{'nan' if k < 20 else f'{_wave(k):.6f}'}" for k in range(60)]
    s = read_frequency_csv(_write(tmp_path / "f.csv", rows), max_bridge_s=5.0)
    assert np.isnan(s.hz[:20]).all()
    assert np.isfinite(s.hz[20:]).all()
    assert (s.gaps.count, s.gaps.seconds) == (1, 20.0)
    assert s.gaps_within(120.0).count == 2  # the run met it twice (the trace repeats)


def _bad(tmp_path: Path, rows: list[str], header: str = "timestamp,hz") -> str:
    path = _write(tmp_path / "bad.csv", rows, header=header)
    with pytest.raises(CsvSeriesError) as err:
        read_frequency_csv(path)
    line = str(err.value)
    assert "\n" not in line
    assert line.startswith(path)
    return line


def test_coarser_than_one_sample_per_second_is_rejected(tmp_path: Path) -> None:
    rows = [f"2024-08-17T00:00:{2 * k:02d}+02:00,50.01" for k in range(10)]
    assert _bad(tmp_path, rows) == (
        f"{tmp_path / 'bad.csv'}:3: column 'timestamp': step 2 s from "
        "'2024-08-17T00:00:00+02:00' to '2024-08-17T00:00:02+02:00' (median step 2 s): need at"
        " least one sample per second")


@pytest.mark.parametrize(("rows", "expected"), [
    ([f"{T0},50", "yesterday,50"], ":3: column 'timestamp': unparseable timestamp 'yesterday'"
                                   " (expected ISO 8601, e.g. 2017-01-01 00:00:00+01:00,"
                                   " or unix seconds)"),
    ([f"{T0},50", f"{T0 + 1},fifty"], ":3: column 'hz': not a number: 'fifty'"),
    ([f"{T0},50", f"{T0 + 1},inf"], ":3: column 'hz': non-finite value 'inf'"),
    ([f"{T0},0", f"{T0 + 1},0", f"{T0 + 2},50"], ": column 'hz': fewer than two valid samples"
                                                 " within 45..55 Hz: no usable frequency"),
    ([f"{T0},50"], ": column 'timestamp': fewer than two rows with increasing timestamps: no"
                   " usable frequency"),
    ([], ":2: no data rows after the header"),
])
def test_unusable_files_are_one_line(tmp_path: Path, rows: list[str], expected: str) -> None:
    assert _bad(tmp_path, rows).removeprefix(str(tmp_path / "bad.csv")) == expected


# ------------------------------------------------------------------ the generator


def test_generator_matches_the_measured_statistics() -> None:
    # A week at 1 s: the slow parts (21 h, 2.8 h) need days; vectorised, well under a second.
    s = synthetic_frequency(7 * 86400.0, seed=0)
    st = frequency_statistics(s.hz, s.step_s)
    assert st["std_mhz"] == pytest.approx(MEASURED["std_mhz"], rel=0.10)
    assert abs(st["mean_mhz"]) < 5.0  # type: ignore[arg-type]
    # The 0.1 % tails of one week vary more than the rest (28 days: see the README).
    for got, want, tol in zip(st["percentiles_mhz"], MEASURED["percentiles_mhz"],  # type: ignore[call-overload]
                              (15, 8, 8, 8, 8, 8, 15), strict=True):
        assert got == pytest.approx(want, abs=tol)
    for lag_got, lag_want, tol in zip(st["acf"], MEASURED["acf"],  # type: ignore[call-overload]
                                      (0.002, 0.02, 0.04, 0.06, 0.06, 0.06), strict=True):
        assert lag_got == pytest.approx(lag_want, abs=tol)
    # Not one OU: the autocorrelation rises again at the hour.
    assert st["acf"][5] > st["acf"][4] + 0.1  # type: ignore[index]
    assert st["dfdt_mean_mhz_s"] == pytest.approx(MEASURED["dfdt_mean_mhz_s"], rel=0.25)
    assert st["dfdt_p99_mhz_s"] == pytest.approx(MEASURED["dfdt_p99_mhz_s"], rel=0.25)
    by_minute = np.asarray(st["minute_mean_abs_mhz"])
    assert by_minute[:4].mean() > 1.5 * by_minute[8:22].mean()  # the hour-boundary swing
    assert np.corrcoef(by_minute, MEASURED["minute_mean_abs_mhz"])[0, 1] > 0.8  # type: ignore[arg-type]


def test_generator_is_seeded_and_checks_its_arguments() -> None:
    a, b = synthetic_frequency(600.0, seed=3), synthetic_frequency(600.0, seed=3)
    np.testing.assert_array_equal(a.hz, b.hz)
    assert not np.array_equal(a.hz, synthetic_frequency(600.0, seed=4).hz)
    assert a.hz.size == 600
    assert a.source == "synthetic(seed=3)"
    assert a.summary() == "synthetic(seed=3): 600 s at 1 s, repeating"
    with pytest.raises(ValueError, match="duration_s must be a positive number"):
        synthetic_frequency(0.0)
    with pytest.raises(ValueError, match=r"step_s must be in \(0, 1\] s, got 2"):
        synthetic_frequency(60.0, step_s=2.0)


# ------------------------------------------------------------------ site config and physics


def _site(frequency: dict[str, Any]) -> dict[str, Any]:
    return {
        "microgrid": {"id": 9, "name": "f"},
        "component": [
            {"id": 1, "category": "grid"},
            {"id": 2, "category": "meter"},
            {"id": 10, "category": "inverter", "type": "battery", "rated_lower_w": -1e5,
             "rated_upper_w": 1e5},
            {"id": 11, "category": "battery", "capacity_wh": 4e5, "soc_pct": 50.0,
             "max_charge_w": 1e5, "max_discharge_w": 1e5},
        ],
        "connection": [{"source": 1, "destination": 2}, {"source": 2, "destination": 10},
                       {"source": 10, "destination": 11}],
        "load": {"base_w": 1e4},
        "frequency": frequency,
    }


def test_physics_serves_the_csv_with_events_on_top_and_nan_in_gaps(tmp_path: Path) -> None:
    rows = [f"{T0 + k},{_wave(k):.6f}" for k in range(100) if not 50 <= k < 70]
    _write(tmp_path / "f.csv", rows)
    site = site_from_dict(_site({"csv": "f.csv", "event": [
        {"kind": "step", "start_s": 10.0, "duration_s": 5.0, "delta_hz": -0.2}]}),
        source=str(tmp_path / "site.toml"), base_dir=tmp_path)
    series = site.frequency.series
    assert series is not None
    assert series.gaps.count == 1
    ph = SitePhysics(site, max_step_s=0.5)
    seen = []
    for _ in range(80):
        ph.step(1.0)
        seen.append(ph.frequency_hz)
    assert seen[4] == pytest.approx(_wave(5))
    assert seen[11] == pytest.approx(_wave(12) - 0.2)
    assert math.isnan(seen[59])
    assert seen[74] == pytest.approx(_wave(75))


def test_site_synthetic_key_and_one_line_errors(tmp_path: Path) -> None:
    site = site_from_dict(_site({"synthetic": True, "seed": 2, "duration_s": 600.0}))
    series = site.frequency.series
    assert isinstance(series, FrequencySeries)
    np.testing.assert_array_equal(series.hz, synthetic_frequency(600.0, seed=2).hz)
    ph = SitePhysics(site)
    ph.step(30.0)
    assert ph.frequency_hz == pytest.approx(float(series.at(30.0)))
    assert site_from_dict(_site({})).frequency.series is None
    with pytest.raises(SiteConfigError, match=r'frequency\.synthetic = "yes": expected true or'):
        site_from_dict(_site({"synthetic": "yes"}))
    with pytest.raises(SiteConfigError, match="give csv or synthetic = true, not both"):
        site_from_dict(_site({"synthetic": True, "csv": "f.csv"}))
    bad = _write(tmp_path / "c.csv", [f"{T0 + 5 * k},50" for k in range(5)])
    with pytest.raises(SiteConfigError) as err:
        site_from_dict(_site({"csv": bad}))
    assert "\n" not in str(err.value)
    assert "frequency.csv" in str(err.value)
    assert "need at least one sample per second" in str(
        err.value)


# ------------------------------------------------------------------ gridloop sim over gRPC

_SITE_TOML = """
[microgrid]
id = 9
name = "recorded frequency"

[[component]]
id = 1
category = "grid"

[[component]]
id = 2
category = "meter"

[[connection]]
source = 1
destination = 2

[load]
base_w = 10000.0
"""


async def _meter_frequencies(address: str, count: int) -> list[float]:
    import asyncio

    import grpc.aio
    from frequenz.api.common.v1.metrics import metric_sample_pb2 as v1_metrics
    from frequenz.api.microgrid.v1 import microgrid_pb2 as v1_pb2
    from frequenz.api.microgrid.v1 import microgrid_pb2_grpc as v1_grpc

    out: list[float] = []
    async with grpc.aio.insecure_channel(address) as channel:
        request = v1_pb2.ReceiveComponentDataStreamRequest(component_id=2)
        request.filter.metrics.append(v1_metrics.METRIC_AC_FREQUENCY)
        call = v1_grpc.MicrogridStub(channel).ReceiveComponentDataStream(request)
        async with asyncio.timeout(30):
            async for msg in call:
                out += [s.value.simple_metric.value for s in msg.data.metric_samples
                        if s.metric == v1_metrics.METRIC_AC_FREQUENCY]
                if len(out) >= count:
                    break
        call.cancel()
    return out


@pytest.mark.integration
def test_gridloop_sim_frequency_csv_serves_the_recording(tmp_path: Path) -> None:
    import asyncio
    import signal
    import subprocess

    from controller.runtime.embedded import start_simulator_process

    site = tmp_path / "site.toml"
    site.write_text(_SITE_TOML, encoding="utf-8")
    # A recording at a level the simulator never makes up (no noise in this site), one
    # broken sample (0 Hz: bridged), an hour long: whatever the simulated time, 50.0123.
    rows = [f"{T0 + k},{'0' if k == 7 else '50.0123'}" for k in range(3600)]
    csv = _write(tmp_path / "rec.csv", rows)
    proc, address = start_simulator_process(
        ["--port", "0", "--config", str(site), "--frequency-csv", csv], stderr=subprocess.PIPE)
    try:
        values = asyncio.run(_meter_frequencies(address, 5))
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert values == pytest.approx([50.0123] * len(values), abs=1e-5)  # float32 on the wire
    assert f"gridloop sim: frequency: {csv}: 3600 s at 1 s; 0 gap(s)" in err
    assert (f"gridloop sim: warning: {csv}:9: column 'frequency [Hz]': value 0 Hz outside"
            " 45..55 Hz; treated as missing") in err


def test_gridloop_sim_frequency_csv_unusable_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from simulator.cli import main

    bad = _write(tmp_path / "coarse.csv", [f"{T0 + 10 * k},50" for k in range(5)])
    assert main(["--port", "0", "--frequency-csv", bad]) == 2
    err = capsys.readouterr().err
    assert err == (f"error: --frequency-csv {bad}: {bad}:3: column 'timestamp': step 10 s from"
                   f" '{T0}' to '{T0 + 10}' (median step 10 s): need at least one sample per"
                   " second\n")


def test_the_default_site_serves_the_generator_with_its_events_on_top() -> None:
    from simulator.config import load_site

    site = load_site(None)
    series = site.frequency.series
    assert series is not None
    assert series.source == "synthetic(seed=0)"
    assert series.duration_s == 86400.0
    assert site.frequency.noise_hz == 0.0
    assert len(site.frequency.events) == 2
