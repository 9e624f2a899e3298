"""Site files: the default site, bad topologies (one-line errors), CSV profiles, the CLI."""

from __future__ import annotations

import copy
import os
import signal
import subprocess
import tomllib
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from controller.runtime.embedded import start_simulator_process
from simulator.cli import main
from simulator.config import (
    BatteryConfig,
    InverterConfig,
    SiteConfigError,
    load_site,
    site_from_dict,
)

DATA = Path(__file__).resolve().parents[3] / "shared" / "data"


def _default_doc() -> dict[str, Any]:
    text = resources.files("simulator.sites").joinpath("default.toml").read_text("utf-8")
    return tomllib.loads(text)


def test_default_site_shapes() -> None:
    site = load_site()
    assert site.grid.id == 1
    batteries = {b.id for b in site.batteries}
    inverters = {i.id: i for i in site.inverters}
    links: dict[int, set[int]] = {}
    for src, dst in site.connections:
        if src in inverters and dst in batteries:
            links.setdefault(src, set()).add(dst)
    # 1:1 twice, 2:1, 1:2, a PV inverter, a load meter
    assert links[10] == {11}
    assert links[20] == {21}
    assert links[30] == {32}
    assert links[31] == {32}
    assert links[40] == {41, 42}
    assert inverters[5].inverter_type == "pv"
    assert any(m.load_share == 1.0 for m in site.meters)
    assert any(i.exclusion_w >= 2_000 for i in site.inverters)


def _write(tmp_path: Path, doc: dict[str, Any]) -> Path:
    def fmt(v: Any) -> str:
        if isinstance(v, str):
            return '"' + v + '"'
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, list):
            return "[" + ", ".join(fmt(x) for x in v) + "]"
        return repr(v)

    lines: list[str] = []

    def table(prefix: str, data: dict[str, Any]) -> None:
        scalars = {k: v for k, v in data.items() if not isinstance(v, dict | list)}
        scalars |= {
            k: v
            for k, v in data.items()
            if isinstance(v, list) and not (v and isinstance(v[0], dict))
        }
        for k, v in scalars.items():
            lines.append(f"{k} = {fmt(v)}")
        for k, v in data.items():
            if isinstance(v, dict):
                lines.append(f"[{prefix}{k}]")
                table(f"{prefix}{k}.", v)
            elif isinstance(v, list) and v and isinstance(v[0], dict):
                for item in v:
                    lines.append(f"[[{prefix}{k}]]")
                    table(f"{prefix}{k}.", item)

    table("", doc)
    path = tmp_path / "site.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def _component(doc: dict[str, Any], cid: int) -> dict[str, Any]:
    comp: dict[str, Any] = next(c for c in doc["component"] if c["id"] == cid)
    return comp


def _missing_capacity(doc: dict[str, Any]) -> None:
    del _component(doc, 11)["capacity_wh"]


def _dangling(doc: dict[str, Any]) -> None:
    doc["connection"].append({"source": 2, "destination": 77})


def _duplicate(doc: dict[str, Any]) -> None:
    doc["component"].append(copy.deepcopy(_component(doc, 21)))


def _orphan_battery(doc: dict[str, Any]) -> None:
    doc["connection"] = [c for c in doc["connection"] if c["destination"] != 21]
    doc["connection"].append({"source": 2, "destination": 21})


def _grid_to_battery(doc: dict[str, Any]) -> None:
    doc["connection"].append({"source": 1, "destination": 11})  # 11 keeps its inverter 10


def _meter_to_battery(doc: dict[str, Any]) -> None:
    doc["connection"].append({"source": 2, "destination": 11})


def _bad_value(doc: dict[str, Any]) -> None:
    _component(doc, 11)["soc_pct"] = 150.0


def _unknown_field(doc: dict[str, Any]) -> None:
    _component(doc, 10)["ratd_upper_w"] = 1.0


def _no_grid(doc: dict[str, Any]) -> None:
    doc["component"] = [c for c in doc["component"] if c["category"] != "grid"]
    doc["connection"] = [c for c in doc["connection"] if c["source"] != 1]


def _component_id_above_int64(doc: dict[str, Any]) -> None:
    _component(doc, 11)["id"] = 2**63  # read before the topology is checked


def _sensor_id_above_int64(doc: dict[str, Any]) -> None:
    doc["sensor"][0]["id"] = 2**63


def _microgrid_id_above_uint64(doc: dict[str, Any]) -> None:
    doc["microgrid"]["id"] = 2**64


def _load_profile_of_7_pib(doc: dict[str, Any]) -> None:
    doc["load"]["duration_s"] = 1e12
    doc["load"]["step_s"] = 0.001


def _load_profile_step_underflows(doc: dict[str, Any]) -> None:
    doc["load"]["step_s"] = 5e-324  # duration_s / step_s is inf


@pytest.mark.parametrize(
    ("mutate", "field", "value", "reason"),
    [
        (
            _component_id_above_int64,
            "component[",
            "9223372036854775808",
            "above the int64 maximum (9223372036854775807)",
        ),
        (_sensor_id_above_int64, "sensor[0].id", "9223372036854775808", "above the int64 maximum"),
        (
            _microgrid_id_above_uint64,
            "microgrid.id",
            "18446744073709551616",
            "above the uint64 maximum",
        ),
        (
            _load_profile_of_7_pib,
            "load.duration_s",
            "1000000000000.0",
            "duration_s = 1e+12 / step_s = 0.001 is 1e+15",
        ),
        (
            _load_profile_step_underflows,
            "load.duration_s",
            "86400.0",
            "duration_s = 86400 / step_s = 4.94066e-324 is inf samples; at most 10,000,000",
        ),
        (_missing_capacity, "capacity_wh", "(missing)", "missing required field"),
        (_dangling, "destination", "77", "dangling connection: no component with this id"),
        (_duplicate, "id", "21", "duplicate component id"),
        (_orphan_battery, "id", "21", "battery 21 has no inverter"),
        (
            _grid_to_battery,
            "destination",
            "11",
            "connection 1 -> 11: battery 11 must sit directly behind an inverter,"
            " not behind the grid connection point 1",
        ),
        (
            _meter_to_battery,
            "destination",
            "11",
            "connection 2 -> 11: battery 11 must sit directly behind an inverter,"
            " not behind meter 2",
        ),
        (_bad_value, "soc_pct", "150.0", "must be <= 100"),
        (_unknown_field, "ratd_upper_w", "1.0", "unknown field"),
        (
            _no_grid,
            "component",
            "['battery', 'inverter', 'meter']",
            "need exactly one component with category 'grid', got 0",
        ),
    ],
)
def test_bad_site_files_give_one_line_errors(
    tmp_path: Path, mutate: Any, field: str, value: str, reason: str
) -> None:
    doc = _default_doc()
    mutate(doc)
    path = _write(tmp_path, doc)
    with pytest.raises(SiteConfigError) as info:
        load_site(path)
    message = str(info.value)
    assert "\n" not in message
    assert field in info.value.field
    assert message.startswith(f"{path}: {info.value.field} = {value}")
    assert f": {reason}" in message


def test_written_default_site_round_trips(tmp_path: Path) -> None:
    site = load_site(_write(tmp_path, _default_doc()))
    assert [c.id for c in site.components] == [c.id for c in load_site().components]


def test_toml_syntax_error_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.toml"
    path.write_text("[microgrid\nid = 1\n")
    with pytest.raises(SiteConfigError, match=r"broken\.toml: invalid TOML: ") as info:
        load_site(path)
    assert "\n" not in str(info.value)


def test_cli_bad_site_file_exit_2_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    doc = _default_doc()
    _dangling(doc)
    path = _write(tmp_path, doc)
    assert main(["--config", str(path), "--port", "0"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith(f"error: {path}: connection[15].destination = 77: dangling connection")


def test_cli_serves_until_sigterm_and_writes_stats(tmp_path: Path) -> None:
    stats = tmp_path / "stats.json"
    proc, address = start_simulator_process(
        ["--port", "0", "--stats-json", str(stats)],
        stderr=subprocess.PIPE,
        cwd=Path(__file__).resolve().parents[2],
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        host, port = address.rsplit(":", 1)
        assert host == "127.0.0.1"
        assert int(port) > 0
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    data = stats.read_text()
    assert '"setpoints_received": 0' in data
    assert '"OUT_OF_RANGE": 0' in data


@pytest.mark.skipif(not DATA.is_dir(), reason="../shared/data not present (real load profiles)")
def test_csv_load_profile_scaled_to_peak_and_annual_energy() -> None:
    doc = _default_doc()
    csv = DATA / "load_metal_processing_LP_G_MV.csv"
    doc["load"] = {"csv": str(csv), "column": "electrical load [W]", "peak_w": 350_000.0}
    site = site_from_dict(doc, "test")
    assert site.load.step_s == 900.0
    assert float(np.max(site.load.profile_w)) == pytest.approx(350_000.0)
    doc["load"] = {"csv": str(csv), "column": "electrical load [W]", "annual_mwh": 1_000.0}
    site = site_from_dict(doc, "test")
    energy_mwh = float(np.sum(site.load.profile_w)) * 0.25 / 1e6
    years = len(site.load.profile_w) * 900 / (365 * 86400)
    assert energy_mwh / years == pytest.approx(1_000.0, rel=1e-9)
    doc["load"] = {"csv": str(csv), "column": "nope", "peak_w": 1.0}
    no_column = r"^test: load\.column = \"nope\": .*: column 'nope': no such column"
    with pytest.raises(SiteConfigError, match=no_column):
        site_from_dict(doc, "test")


def test_component_dataclasses_carry_ratings() -> None:
    site = load_site()
    inv = site.component(10)
    bat = site.component(11)
    assert isinstance(inv, InverterConfig)
    assert inv.exclusion_w == 2_000.0
    assert isinstance(bat, BatteryConfig)
    assert bat.capacity_wh == 200_000.0


@pytest.mark.skipif(not DATA.is_dir(), reason="../shared/data not present (real weather data)")
def test_csv_irradiance_profile_drives_pv() -> None:
    from simulator.physics import SitePhysics

    doc = _default_doc()
    doc["pv"] = {
        "csv": str(DATA / "weather_TRY4_2015_15min.csv"),
        "columns": ["direct irradiance [W/m^2]", "diffuse irradiance [W/m^2]"],
        "start": "2015-06-21T12:00:00+02:00",
    }
    site = site_from_dict(doc, "test")
    assert site.pv.step_s == 900.0
    assert site.pv.irradiance_wm2[0] > 300.0  # midsummer noon
    phys = SitePhysics(site, seed=0)
    phys.step(1.0)
    assert phys.pv_power_w < -20_000.0  # 80 kWp producing (negative)


@pytest.mark.parametrize("value", ["0", "1001", "two"])
def test_cli_bad_telemetry_phases_exit_2_naming_the_option(
    value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--port", "0", "--telemetry-phases", value])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "argument --telemetry-phases: telemetry phases must be" in err
    assert repr(value) in err


def _csv_site(tmp_path: Path, text: str, **load: Any) -> dict[str, Any]:
    (tmp_path / "load.csv").write_text(text, encoding="utf-8")
    doc = _default_doc()
    doc["load"] = {"csv": "load.csv", "column": "load", "peak_w": 10.0, **load}
    return doc


def test_site_csv_skips_blank_lines_and_rotates_to_start(tmp_path: Path) -> None:
    text = (
        "\ufefftime,load\n2020-01-01T00:00:00,1\n\n"
        "2020-01-01T00:15:00,2\n2020-01-01T00:30:00,4\n"
    )
    doc = _csv_site(tmp_path, text, start="2020-01-01T00:15:00")
    site = site_from_dict(doc, "site.toml", base_dir=tmp_path)
    assert site.load.step_s == 900.0
    assert site.load.profile_w.tolist() == [5.0, 10.0, 2.5]


@pytest.mark.parametrize(
    ("text", "load", "expected"),
    [
        (
            "time,load\n2020-01-01T00:00:00,1\n2020-01-01T00:15:00,abc\n",
            {},
            "site.toml: load.csv = \"load.csv\": {csv}:3: column 'load': not a number: 'abc'",
        ),
        (
            "time,load\n2020-01-01T00:00:00,1\n",
            {},
            'site.toml: load.csv = "load.csv": {csv}: fewer than two data rows',
        ),
        (
            "time,load\n2020-01-01T00:00:00,1\n2020-01-01T00:15:00,2\n",
            {"start": "soon"},
            'site.toml: load.start = "soon": not an ISO timestamp',
        ),
        (
            "time,load\n2020-01-01T00:00:00,1\n2020-01-01T00:15:00,2\n",
            {"start": "2021-01-01T00:00:00"},
            'site.toml: load.start = "2021-01-01T00:00:00": after the end of {csv}',
        ),
    ],
)
def test_site_csv_errors_name_field_value_and_line(
    tmp_path: Path, text: str, load: dict[str, Any], expected: str
) -> None:
    doc = _csv_site(tmp_path, text, **load)
    with pytest.raises(SiteConfigError) as info:
        site_from_dict(doc, "site.toml", base_dir=tmp_path)
    assert str(info.value) == expected.format(csv=tmp_path / "load.csv")


def test_pv_csv_missing_column_names_the_columns_field(tmp_path: Path) -> None:
    (tmp_path / "sun.csv").write_text("time,ghi\n2020-01-01T00:00:00,1\n2020-01-01T00:15:00,2\n")
    doc = _default_doc()
    doc["pv"] = {"csv": "sun.csv", "columns": ["ghi", "dni"]}
    with pytest.raises(SiteConfigError) as info:
        site_from_dict(doc, "site.toml", base_dir=tmp_path)
    assert info.value.field == "pv.columns"
    assert str(info.value) == (
        f"site.toml: pv.columns = ['ghi', 'dni']: {tmp_path / 'sun.csv'}:1: column 'dni':"
        " no such column; the header has ['time', 'ghi']"
    )
