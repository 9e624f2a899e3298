"""Site configuration for the simulator: topology, ratings and the scenario.

Offers:

* `load_site(path=None) -> SiteConfig`: read and validate a site TOML file
  (``None`` = the default demo site shipped as ``simulator/sites/default.toml``).
* `site_from_dict(data, source) -> SiteConfig`: the same validation for an
  already-parsed mapping (tests and benchmarks build sites this way).
* `SiteConfigError`: the one error type; ``str()`` is one line
  ``<file>: <field> = <value>: <reason>`` (the controller's config errors read the same).
* The frozen dataclasses describing a site: `SiteConfig`, `GridConfig`,
  `MeterConfig`, `InverterConfig`, `BatteryConfig`, `EvChargerConfig`, `SensorConfig`,
  `LoadConfig`, `PvConfig`, `EvConfig` and `EvSession` (the ``[ev]`` table),
  `FrequencyConfig`, `FrequencyEvent`, `LoadEvent`, `FaultConfig` (the
  ``[faults]`` table, see its docstring for every key), `GridModelConfig` and
  `VoltageEvent` (the ``[grid]`` table: impedance and background voltage).
* `faults_from_dict(data, source, base=None) -> FaultConfig`: validate a
  ``[faults]`` mapping (or overrides on top of ``base``, e.g. CLI flags).
* `site_input_files(path=None)`: the site file and the CSVs it names (so a
  program writing files can refuse to overwrite them).
* `MAX_PROFILE_SAMPLES`: the most samples a generated ``[load]`` profile may have.

The parts live in private modules, one concept each: ``_toml_kit`` (the error
and typed table reads), ``_site_schema`` (components and the topology checks),
``_profiles`` (load and PV, read with :mod:`simulator.csv_series`), ``_ev_sessions``
(EV charging sessions and the car's charge curve) and
``_scenario`` (frequency and faults), ``_grid_voltage`` (the grid's impedance and
voltage); every public name is importable from here.

Units and signs: powers in W, energies in Wh, SoC in %, frequency in Hz,
times in simulated seconds since the start of the simulation. Passive sign
convention: positive = power flowing into the component (battery charging,
site importing), negative = flowing out (discharging, PV producing, exporting).
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from ._ev_sessions import EvConfig, EvSession, read_ev
from ._grid_voltage import GridModelConfig, VoltageEvent, read_grid
from ._profiles import MAX_PROFILE_SAMPLES, LoadConfig, LoadEvent, PvConfig, read_load, read_pv
from ._scenario import (
    FAULT_KEYS,
    FaultConfig,
    FrequencyConfig,
    FrequencyEvent,
    faults_from_dict,
    read_faults,
    read_frequency,
)
from ._site_schema import (
    BatteryConfig,
    ComponentConfig,
    EvChargerConfig,
    GridConfig,
    InverterConfig,
    MeterConfig,
    SensorConfig,
    read_component,
    validate_topology,
)
from ._toml_kit import INT64_MAX, UINT64_MAX, SiteConfigError, Table, resolve_path

__all__ = [
    "FAULT_KEYS",
    "MAX_PROFILE_SAMPLES",
    "BatteryConfig",
    "ComponentConfig",
    "EvChargerConfig",
    "EvConfig",
    "EvSession",
    "FaultConfig",
    "FrequencyConfig",
    "FrequencyEvent",
    "GridConfig",
    "GridModelConfig",
    "InverterConfig",
    "LoadConfig",
    "LoadEvent",
    "MeterConfig",
    "PvConfig",
    "SensorConfig",
    "SiteConfig",
    "SiteConfigError",
    "VoltageEvent",
    "faults_from_dict",
    "load_site",
    "site_from_dict",
    "site_input_files",
]


@dataclass(frozen=True)
class SiteConfig:
    """A validated site: microgrid info, components, connections and scenario."""

    source: str
    microgrid_id: int
    name: str
    enterprise_id: int
    components: tuple[ComponentConfig, ...]
    connections: tuple[tuple[int, int], ...]  # (source id, destination id), away from grid
    sensors: tuple[SensorConfig, ...] = ()
    load: LoadConfig = field(
        default_factory=lambda: LoadConfig(profile_w=np.zeros(1), step_s=3600.0)
    )
    pv: PvConfig = field(
        default_factory=lambda: PvConfig(irradiance_wm2=np.zeros(1), step_s=3600.0)
    )
    frequency: FrequencyConfig = field(default_factory=FrequencyConfig)
    latitude: float | None = None
    longitude: float | None = None
    country_code: str = ""
    delivery_area_eic: str = ""
    """Bidding zone as an ENTSO-E EIC code (e.g. DE-LU ``10Y1001A1001A82H``)."""
    faults: FaultConfig = field(default_factory=FaultConfig)
    """Fault injection (all off by default)."""
    ev: EvConfig = field(default_factory=EvConfig)
    """EV charging sessions (the ``[ev]`` table; none by default)."""
    grid_model: GridModelConfig = field(default_factory=GridModelConfig)
    """The grid behind the connection point (the ``[grid]`` table; default: a stiff
    grid at a constant nominal voltage)."""

    def component(self, component_id: int) -> ComponentConfig:
        """Return the component with this id (KeyError if unknown)."""
        for comp in self.components:
            if comp.id == component_id:
                return comp
        raise KeyError(component_id)

    @property
    def inverters(self) -> tuple[InverterConfig, ...]:
        """All inverters, in file order."""
        return tuple(c for c in self.components if isinstance(c, InverterConfig))

    @property
    def batteries(self) -> tuple[BatteryConfig, ...]:
        """All batteries, in file order."""
        return tuple(c for c in self.components if isinstance(c, BatteryConfig))

    @property
    def ev_chargers(self) -> tuple[EvChargerConfig, ...]:
        """All EV chargers, in file order."""
        return tuple(c for c in self.components if isinstance(c, EvChargerConfig))

    @property
    def meters(self) -> tuple[MeterConfig, ...]:
        """All meters, in file order."""
        return tuple(c for c in self.components if isinstance(c, MeterConfig))

    @property
    def grid(self) -> GridConfig:
        """The grid connection point."""
        return next(c for c in self.components if isinstance(c, GridConfig))


def _read_microgrid(mg: Table) -> dict[str, Any]:
    """The ``[microgrid]`` table as `SiteConfig` keyword arguments."""
    info = {
        "microgrid_id": mg.int_("id", minimum=0, maximum=UINT64_MAX),
        "name": mg.str_("name", "gridloop simulated site"),
        "enterprise_id": mg.int_("enterprise_id", 0, minimum=0, maximum=UINT64_MAX),
        "latitude": (
            mg.float_("latitude", minimum=-90.0, maximum=90.0) if mg.has("latitude") else None
        ),
        "longitude": (
            mg.float_("longitude", minimum=-180.0, maximum=180.0) if mg.has("longitude") else None
        ),
        "country_code": mg.str_("country_code", ""),
        "delivery_area_eic": mg.str_("delivery_area_eic", ""),
    }
    mg.check_unknown()
    return info


def _read_sensors(root: Table) -> tuple[SensorConfig, ...]:
    """The ``[[sensor]]`` tables (ids unique among sensors)."""
    sensors = []
    sensor_ids: set[int] = set()
    for t in root.tables("sensor"):
        sid = t.int_("id", minimum=1, maximum=INT64_MAX)
        if sid in sensor_ids:
            raise t.error("id", sid, "duplicate sensor id")
        sensor_ids.add(sid)
        sensors.append(SensorConfig(sid, t.str_("name", f"sensor-{sid}")))
        t.check_unknown()
    return tuple(sensors)


def site_from_dict(
    data: Mapping[str, Any], source: str = "<site>", base_dir: Path | None = None
) -> SiteConfig:
    """Validate a parsed site mapping (same schema as the TOML file).

    Args:
        data: the parsed TOML document.
        source: name used in error messages (the file path).
        base_dir: directory against which relative CSV paths are resolved.

    Returns:
        The validated site.

    Raises:
        SiteConfigError: the first problem found, naming the field and its value.
    """
    root = Table(source, "", data)
    info = _read_microgrid(root.table("microgrid"))
    comp_tables = root.tables("component")
    if not comp_tables:
        raise root.fail("component", "missing required field (no [[component]] tables)")
    comps = [(t, read_component(t)) for t in comp_tables]
    conns = []
    for t in root.tables("connection"):
        conns.append((t, t.int_("source"), t.int_("destination")))
        t.check_unknown()
    validate_topology(source, comps, conns)
    sensors = _read_sensors(root)
    load = read_load(root.table("load"), base_dir)
    pv = read_pv(root.table("pv"), base_dir)
    freq = read_frequency(root.table("frequency"), base_dir)
    faults = read_faults(root.table("faults"))
    grid_model = read_grid(root.table("grid"))
    chargers = frozenset(c.id for _, c in comps if isinstance(c, EvChargerConfig))
    ev = read_ev(root.table("ev"), chargers)
    root.check_unknown()
    return SiteConfig(
        source=source,
        components=tuple(c for _, c in comps),
        connections=tuple((s, d) for _, s, d in conns),
        sensors=sensors,
        load=load,
        pv=pv,
        frequency=freq,
        faults=faults,
        ev=ev,
        grid_model=grid_model,
        **info,
    )


def load_site(path: str | os.PathLike[str] | None = None) -> SiteConfig:
    """Read and validate a site TOML file.

    Args:
        path: the site file; ``None`` loads the default demo site shipped with
            the package (``simulator/sites/default.toml``).

    Returns:
        The validated site.

    Raises:
        SiteConfigError: unreadable file, TOML syntax error or invalid content;
            the message is one line naming the file, the field, its value and the reason.
    """
    if path is None:
        ref = resources.files("simulator.sites").joinpath("default.toml")
        source = "default.toml"
        try:
            text = ref.read_text(encoding="utf-8")
        except OSError as exc:  # pragma: no cover - broken installation
            raise SiteConfigError(source, "", None, f"cannot read: {exc}") from exc
        base_dir: Path | None = Path(str(ref)).parent
    else:
        p = Path(path)
        source = str(p)
        try:
            text = p.read_text(encoding="utf-8")
        except OSError as exc:
            raise SiteConfigError(source, "", None, f"cannot read: {exc.strerror or exc}") from exc
        base_dir = p.parent
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SiteConfigError(source, "", None, f"invalid TOML: {exc}") from exc
    return site_from_dict(data, source, base_dir)


def site_input_files(path: str | os.PathLike[str] | None = None) -> tuple[Path, ...]:
    """The files a site reads: the site TOML and the CSVs its ``[load]``, ``[pv]`` and
    ``[frequency]`` tables name.

    Resolved as :func:`load_site` resolves them, so a program that writes files
    can refuse to overwrite one of them. Nothing is validated: an unreadable or
    invalid site gives what could be found (:func:`load_site` reports the problem).

    Args:
        path: the site file; ``None`` is the default demo site shipped with the package.

    Returns:
        The site file (when it is a file on disk) and the CSV paths it names.
    """
    if path is None:
        ref = resources.files("simulator.sites").joinpath("default.toml")
        site = Path(str(ref))
    else:
        site = Path(path)
    files = [site]
    try:
        data = tomllib.loads(site.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return tuple(files)
    for section in ("load", "pv", "frequency"):
        table = data.get(section)
        if isinstance(table, Mapping) and isinstance(table.get("csv"), str):
            files.append(resolve_path(site.parent, table["csv"]))
    return tuple(files)
