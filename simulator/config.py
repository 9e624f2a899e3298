"""Site configuration for the simulator: topology, ratings and the scenario.

Offers:

* `load_site(path=None) -> SiteConfig`: read and validate a site TOML file
  (``None`` = the default demo site shipped as ``simulator/sites/default.toml``).
* `site_from_dict(data, source) -> SiteConfig`: the same validation for an
  already-parsed mapping (tests and benchmarks build sites this way).
* `SiteConfigError`: the one error type; ``str()`` is one line
  ``<file>: <field>: <problem>``.
* The frozen dataclasses describing a site: `SiteConfig`, `GridConfig`,
  `MeterConfig`, `InverterConfig`, `BatteryConfig`, `SensorConfig`,
  `LoadConfig`, `PvConfig`, `FrequencyConfig`, `FrequencyEvent`, `LoadEvent`,
  `FaultConfig` (the ``[faults]`` table, see its docstring for every key).
* `faults_from_dict(data, source, base=None) -> FaultConfig`: validate a
  ``[faults]`` mapping (or overrides on top of ``base``, e.g. CLI flags).
* `site_input_files(path=None)`: the site file and the CSVs it names (so a
  program writing files can refuse to overwrite them).
* `MAX_PROFILE_SAMPLES`: the most samples a generated ``[load]`` profile may have.

Units and signs: powers in W, energies in Wh, SoC in %, frequency in Hz,
times in simulated seconds since the start of the simulation. Passive sign
convention: positive = power flowing into the component (battery charging,
site importing), negative = flowing out (discharging, PV producing, exporting).
"""

from __future__ import annotations

import math
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = [
    "FAULT_KEYS",
    "MAX_PROFILE_SAMPLES",
    "BatteryConfig",
    "ComponentConfig",
    "FaultConfig",
    "FrequencyConfig",
    "FrequencyEvent",
    "GridConfig",
    "InverterConfig",
    "LoadConfig",
    "LoadEvent",
    "MeterConfig",
    "PvConfig",
    "SensorConfig",
    "SiteConfig",
    "SiteConfigError",
    "faults_from_dict",
    "load_site",
    "site_from_dict",
    "site_input_files",
]

FloatArray = npt.NDArray[np.float64]


class SiteConfigError(Exception):
    """A site file is unreadable or invalid.

    ``str()`` is a single line naming the file, the field and the problem.
    """

    def __init__(self, source: str, field: str, problem: str) -> None:
        """Create the error.

        Args:
            source: the file (or other source) the bad value came from.
            field: dotted path of the offending field, e.g. ``component[3].capacity_wh``.
            problem: what is wrong, naming the bad value.
        """
        self.source = source
        self.field = field
        self.problem = problem
        super().__init__(f"{source}: {field}: {problem}")


@dataclass(frozen=True)
class GridConfig:
    """The grid connection point (root of the component graph)."""

    id: int
    name: str
    rated_fuse_current_a: int = 0


@dataclass(frozen=True)
class MeterConfig:
    """A meter. It measures everything connected below it.

    ``load_share`` is the fraction (0..1) of the site's load profile that is
    attached directly below this meter (the load meter has 1.0). The rest of the
    load hangs below the first meter (lowest id) on the grid connection point.
    """

    id: int
    name: str
    load_share: float = 0.0


@dataclass(frozen=True)
class InverterConfig:
    """A battery or PV inverter.

    Active power bounds ``[rated_lower_w, rated_upper_w]`` (passive sign:
    lower < 0 = max discharge/production, upper > 0 = max charge) with an
    optional exclusion band ``(-exclusion_w, +exclusion_w)`` around zero
    (0 W itself is always allowed). The actual AC power follows an accepted
    setpoint after ``response_delay_s`` at ``ramp_w_per_s``.
    """

    id: int
    name: str
    inverter_type: str  # "battery" | "pv"
    rated_lower_w: float
    rated_upper_w: float
    exclusion_w: float = 0.0
    rated_reactive_var: float = 0.0
    ramp_w_per_s: float = 0.0  # 0 = derived: full rated span in 0.2 s
    response_delay_s: float = 0.1


@dataclass(frozen=True)
class BatteryConfig:
    """A battery (DC side).

    ``max_charge_w`` (> 0) and ``max_discharge_w`` (> 0, a magnitude) are the
    battery's own DC power limits; charging stops at ``soc_max_pct`` and
    discharging at ``soc_min_pct``. Stored energy changes by
    ``P * charge_efficiency`` when charging and ``P / discharge_efficiency``
    when discharging.
    """

    id: int
    name: str
    capacity_wh: float
    soc_pct: float
    soc_min_pct: float = 10.0
    soc_max_pct: float = 90.0
    max_charge_w: float = 0.0
    max_discharge_w: float = 0.0
    charge_efficiency: float = 0.95
    discharge_efficiency: float = 0.95
    nominal_voltage_v: float = 800.0
    temperature_c: float = 25.0


@dataclass(frozen=True)
class SensorConfig:
    """A weather sensor reporting irradiance (W/m²) and ambient temperature (°C)."""

    id: int
    name: str


ComponentConfig = GridConfig | MeterConfig | InverterConfig | BatteryConfig


@dataclass(frozen=True)
class LoadEvent:
    """A scripted load change: ``power_w`` added on top of the base load.

    Rises linearly over ``ramp_s`` from ``start_s``, holds for ``duration_s``,
    falls back over ``ramp_s``.
    """

    start_s: float
    duration_s: float
    power_w: float
    ramp_s: float = 0.0


@dataclass(frozen=True)
class LoadConfig:
    """The site load (positive W, consumed). Rendered to ``profile_w`` every ``step_s``.

    Either synthetic (``base_w`` plus `LoadEvent` s) or a CSV column scaled to
    a peak or an annual energy. The profile repeats after its end. ``noise_w``
    is the standard deviation of smooth seeded noise added on top.
    """

    profile_w: FloatArray
    step_s: float
    noise_w: float = 0.0
    noise_tau_s: float = 10.0
    reactive_power_factor: float = 0.95


@dataclass(frozen=True)
class PvConfig:
    """Irradiance (W/m²) profile driving all PV inverters.

    A PV inverter with rated production ``-rated_lower_w`` produces
    ``rated * irradiance / 1000`` before curtailment.
    """

    irradiance_wm2: FloatArray
    step_s: float
    noise_pct: float = 0.0


@dataclass(frozen=True)
class FrequencyEvent:
    """A scripted grid-frequency deviation ``delta_hz`` (trapezoid, ramp 0 = step)."""

    start_s: float
    duration_s: float
    delta_hz: float
    ramp_s: float = 0.0


@dataclass(frozen=True)
class FrequencyConfig:
    """Grid frequency: ``nominal_hz`` + seeded smooth noise + scripted events."""

    nominal_hz: float = 50.0
    noise_hz: float = 0.0
    noise_tau_s: float = 5.0
    events: tuple[FrequencyEvent, ...] = ()


@dataclass(frozen=True)
class FaultConfig:
    """Rate-driven fault injection (the ``[faults]`` table); every fault is off by default.

    Rates are events per eligible component per hour of *simulated* time (so a
    time-scaled soak covers hours); episode durations are *simulated* seconds.
    Setpoint delays and the grace periods are *wall* seconds (they model
    network latency and the controller's reaction time, which do not scale).

    Eligible components: stream faults (``stream_end``, ``stream_stall``) hit
    any electrical component (grid connection point, meters, inverters incl.
    PV, batteries; not sensors). All other episode kinds hit battery inverters
    and batteries only. Setpoint faults apply to every
    SetElectricalComponentPower call.
    """

    seed: int = 0
    """Seed of the fault RNG (separate from the physics noise); same seed, same schedule."""
    stream_end_per_h: float = 0.0
    """A component's open telemetry streams end with UNAVAILABLE (client must reconnect)."""
    stream_stall_per_h: float = 0.0
    """A component's telemetry goes silent (streams stay open) for ``stream_stall_s``."""
    stream_stall_s: float = 60.0
    """Duration of a stall (simulated s)."""
    setpoint_delay_prob: float = 0.0
    """Probability (0..1) that a setpoint call is held ``setpoint_delay_s`` before it is handled."""
    setpoint_delay_s: float = 0.5
    """Delay of a delayed setpoint call (wall s): validation, application and the response."""
    setpoint_reject_prob: float = 0.0
    """Probability (0..1) that a setpoint call fails with UNAVAILABLE and is not applied."""
    error_state_per_h: float = 0.0
    """An inverter or battery enters ERROR until AckError (then OFF; Start makes it RUNNING)."""
    bad_metric_per_h: float = 0.0
    """A component's samples carry NaN/±inf or miss a metric or its bounds, for ``bad_metric_s``."""
    bad_metric_s: float = 60.0
    """Duration of a bad-metric episode (simulated s)."""
    bounds_flap_per_h: float = 0.0
    """A component's active power bounds shrink (derated, charge-only or discharge-only)."""
    bounds_flap_s: float = 60.0
    """Duration of a bounds flap (simulated s); advertised and enforced bounds both change."""
    bounds_grace_s: float = 1.0
    """A setpoint outside the current bounds but inside bounds advertised this recently
    (wall s) is a bounds race, not counted as out of bounds (it is still rejected)."""
    detection_grace_s: float = 2.0
    """Setpoints in the first ``detection_grace_s`` (wall) of an episode are not counted
    in its ``setpoints_during`` (the controller needs time to notice)."""
    max_episodes: int = 1000
    """Episodes kept in the stats list (older ones only live on in the aggregates)."""

    @property
    def enabled(self) -> bool:
        """Whether any fault can happen."""
        return any(getattr(self, k) > 0 for k in _FAULT_RATES)


_FAULT_RATES = (
    "stream_end_per_h",
    "stream_stall_per_h",
    "setpoint_delay_prob",
    "setpoint_reject_prob",
    "error_state_per_h",
    "bad_metric_per_h",
    "bounds_flap_per_h",
)
_MAX_RATE_PER_H = 3600.0
_MAX_WALL_S = 60.0
FAULT_KEYS: tuple[str, ...] = tuple(FaultConfig.__dataclass_fields__)
"""Every key of the ``[faults]`` table (and of ``gridloop sim --fault KEY=VALUE``)."""


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
    def meters(self) -> tuple[MeterConfig, ...]:
        """All meters, in file order."""
        return tuple(c for c in self.components if isinstance(c, MeterConfig))

    @property
    def grid(self) -> GridConfig:
        """The grid connection point."""
        return next(c for c in self.components if isinstance(c, GridConfig))


# --------------------------------------------------------------------------- reading


class _Table:
    """Typed access to one TOML table with the dotted path used in errors."""

    def __init__(self, source: str, path: str, data: Any) -> None:
        if not isinstance(data, Mapping):
            raise SiteConfigError(source, path, f"expected a table, got {data!r}")
        self.source = source
        self.path = path
        self.data: Mapping[str, Any] = data
        self.used: set[str] = set()

    def _field(self, key: str) -> str:
        if not key.isprintable():  # e.g. a newline in a quoted TOML key: keep errors one line
            key = repr(key)
        return f"{self.path}.{key}" if self.path else key

    def error(self, key: str, problem: str) -> SiteConfigError:
        return SiteConfigError(self.source, self._field(key), problem)

    def has(self, key: str) -> bool:
        return key in self.data

    def raw(self, key: str) -> Any:
        self.used.add(key)
        if key not in self.data:
            raise self.error(key, "missing required field")
        return self.data[key]

    def int_(
        self,
        key: str,
        default: int | None = None,
        *,
        minimum: int | None = None,
        maximum: tuple[int, str] | None = None,
    ) -> int:
        """The integer at ``key``; ``maximum`` is (bound, its name), e.g. ``_INT64_MAX``."""
        if default is not None and key not in self.data:
            return default
        value = self.raw(key)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(key, f"expected an integer, got {value!r}")
        if minimum is not None and value < minimum:
            raise self.error(key, f"must be >= {minimum}, got {value!r}")
        if maximum is not None and value > maximum[0]:
            raise self.error(key, f"{value} is above the {maximum[1]} maximum ({maximum[0]})")
        return value

    def float_(
        self,
        key: str,
        default: float | None = None,
        *,
        minimum: float | None = None,
        maximum: float | None = None,
        positive: bool = False,
    ) -> float:
        if default is not None and key not in self.data:
            return default
        value = self.raw(key)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.error(key, f"expected a number, got {value!r}")
        result = float(value)
        if not math.isfinite(result):
            raise self.error(key, f"must be finite, got {value!r}")
        if positive and result <= 0:
            raise self.error(key, f"must be > 0, got {value!r}")
        if minimum is not None and result < minimum:
            raise self.error(key, f"must be >= {minimum:g}, got {value!r}")
        if maximum is not None and result > maximum:
            raise self.error(key, f"must be <= {maximum:g}, got {value!r}")
        return result

    def str_(self, key: str, default: str | None = None, *, choices: tuple[str, ...] = ()) -> str:
        if default is not None and key not in self.data:
            return default
        value = self.raw(key)
        if not isinstance(value, str):
            raise self.error(key, f"expected a string, got {value!r}")
        if choices and value not in choices:
            raise self.error(key, f"must be one of {', '.join(choices)}; got {value!r}")
        return value

    def tables(self, key: str) -> list[_Table]:
        if key not in self.data:
            self.used.add(key)
            return []
        value = self.raw(key)
        if not isinstance(value, list):
            raise self.error(key, f"expected an array of tables ([[{key}]]), got {value!r}")
        return [_Table(self.source, f"{self._field(key)}[{i}]", v) for i, v in enumerate(value)]

    def table(self, key: str) -> _Table:
        if key not in self.data:
            self.used.add(key)
            return _Table(self.source, self._field(key), {})
        return _Table(self.source, self._field(key), self.raw(key))

    def check_unknown(self) -> None:
        for key in self.data:
            if key not in self.used:
                raise self.error(key, "unknown field")


_CATEGORIES = ("grid", "meter", "inverter", "battery")

_INT64_MAX = (2**63 - 1, "int64")
"""Component and sensor ids: the simulator keeps them in int64 arrays and keys
(sensors as negative ids), and the controller in int64 arrays."""
_UINT64_MAX = (2**64 - 1, "uint64")
"""Microgrid and enterprise ids: uint64 on the wire."""
MAX_PROFILE_SAMPLES = 10_000_000
"""Most samples a generated load profile may have (``duration_s / step_s``): 80 MB of
float64; a longer profile is a mistake in the file, not a site (it would exhaust memory)."""


def _read_component(t: _Table) -> ComponentConfig:
    cid = t.int_("id", minimum=1, maximum=_INT64_MAX)
    category = t.str_("category", choices=_CATEGORIES)
    name = t.str_("name", f"{category}-{cid}")
    comp: ComponentConfig
    if category == "grid":
        comp = GridConfig(cid, name, t.int_("rated_fuse_current_a", 0, minimum=0))
    elif category == "meter":
        comp = MeterConfig(cid, name, t.float_("load_share", 0.0, minimum=0.0, maximum=1.0))
    elif category == "inverter":
        inv_type = t.str_("type", choices=("battery", "pv"))
        lower = t.float_("rated_lower_w", maximum=0.0)
        upper = t.float_("rated_upper_w", 0.0 if inv_type == "pv" else None, minimum=0.0)
        if inv_type == "pv" and upper != 0.0:
            raise t.error("rated_upper_w", f"a PV inverter cannot consume power, got {upper!r}")
        excl = t.float_("exclusion_w", 0.0, minimum=0.0)
        if excl > 0 and ((excl >= upper and upper > 0) or excl >= -lower):
            raise t.error("exclusion_w", f"exclusion band {excl!r} W covers the rated range")
        ramp = t.float_("ramp_w_per_s", 0.0, minimum=0.0)
        if ramp == 0.0:
            ramp = max(upper - lower, 1.0) / 0.2
        comp = InverterConfig(
            id=cid,
            name=name,
            inverter_type=inv_type,
            rated_lower_w=lower,
            rated_upper_w=upper,
            exclusion_w=excl,
            rated_reactive_var=t.float_("rated_reactive_var", 0.0, minimum=0.0),
            ramp_w_per_s=ramp,
            response_delay_s=t.float_("response_delay_s", 0.1, minimum=0.0),
        )
    else:
        soc_min = t.float_("soc_min_pct", 10.0, minimum=0.0, maximum=100.0)
        soc_max = t.float_("soc_max_pct", 90.0, minimum=0.0, maximum=100.0)
        if soc_min >= soc_max:
            raise t.error("soc_max_pct", f"must be > soc_min_pct ({soc_min:g}), got {soc_max:g}")
        comp = BatteryConfig(
            id=cid,
            name=name,
            capacity_wh=t.float_("capacity_wh", positive=True),
            soc_pct=t.float_("soc_pct", minimum=0.0, maximum=100.0),
            soc_min_pct=soc_min,
            soc_max_pct=soc_max,
            max_charge_w=t.float_("max_charge_w", positive=True),
            max_discharge_w=t.float_("max_discharge_w", positive=True),
            charge_efficiency=t.float_("charge_efficiency", 0.95, positive=True, maximum=1.0),
            discharge_efficiency=t.float_(
                "discharge_efficiency", 0.95, positive=True, maximum=1.0
            ),
            nominal_voltage_v=t.float_("nominal_voltage_v", 800.0, positive=True),
            temperature_c=t.float_("temperature_c", 25.0),
        )
    t.check_unknown()
    return comp


def _resolve(base_dir: Path | None, value: str) -> Path:
    path = Path(value).expanduser()
    if not path.is_absolute() and base_dir is not None:
        path = base_dir / path
    return path


def _read_csv_column(
    t: _Table, base_dir: Path | None, columns: list[str]
) -> tuple[FloatArray, float]:
    """Read a CSV like ../shared/data: one header line, ISO timestamps with offset."""
    path = _resolve(base_dir, t.str_("csv"))
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise t.error("csv", f"cannot read {str(path)!r}: {exc.strerror or exc}") from exc
    if len(lines) < 3:
        raise t.error("csv", f"{str(path)!r} has fewer than two data rows")
    header = [h.strip() for h in lines[0].split(",")]
    idx = []
    for col in columns:
        if col not in header:
            raise t.error("column", f"{col!r} not in {str(path)!r} (columns: {header[1:]})")
        idx.append(header.index(col))
    times: list[float] = []
    values: list[float] = []
    for lineno, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        parts = line.split(",")
        try:
            times.append(datetime.fromisoformat(parts[0].strip()).timestamp())
            values.append(sum(float(parts[i]) for i in idx))
        except (ValueError, IndexError) as exc:
            raise t.error("csv", f"{str(path)!r} line {lineno}: cannot parse {line!r}") from exc
    time_arr = np.asarray(times)
    step_s = float(np.median(np.diff(time_arr)))
    if step_s <= 0:
        raise t.error("csv", f"{str(path)!r}: timestamps are not increasing")
    arr = np.asarray(values, dtype=np.float64)
    if t.has("start"):
        start_raw = t.str_("start")
        try:
            start = datetime.fromisoformat(start_raw).timestamp()
        except ValueError as exc:
            raise t.error("start", f"not an ISO timestamp: {start_raw!r}") from exc
        offset = int(np.searchsorted(time_arr, start))
        if offset >= len(arr):
            raise t.error("start", f"{start_raw!r} is after the end of {str(path)!r}")
        arr = np.concatenate([arr[offset:], arr[:offset]])
    if not np.all(np.isfinite(arr)):
        raise t.error("csv", f"{str(path)!r} column contains non-finite values")
    return arr, step_s


def _trapezoid(t_s: FloatArray, start: float, ramp: float, hold: float) -> FloatArray:
    """0..1 trapezoid: rise over ``ramp`` from ``start``, hold ``hold``, fall over ``ramp``."""
    if ramp <= 0:
        return ((t_s >= start) & (t_s < start + hold)).astype(np.float64)
    rise = np.clip((t_s - start) / ramp, 0.0, 1.0)
    fall = np.clip((start + ramp + hold + ramp - t_s) / ramp, 0.0, 1.0)
    return np.minimum(rise, fall)


def _read_load(t: _Table, base_dir: Path | None) -> LoadConfig:
    noise_w = t.float_("noise_w", 0.0, minimum=0.0)
    noise_tau = t.float_("noise_tau_s", 10.0, positive=True)
    pf = t.float_("power_factor", 0.95, positive=True, maximum=1.0)
    if t.has("csv"):
        col = t.str_("column")
        arr, step = _read_csv_column(t, base_dir, [col])
        has_peak, has_annual = t.has("peak_w"), t.has("annual_mwh")
        if has_peak == has_annual:
            raise t.error("peak_w", "give exactly one of peak_w or annual_mwh with csv")
        if np.max(arr) <= 0:
            raise t.error("column", f"{col!r} has no positive values")
        if has_peak:
            arr = arr * (t.float_("peak_w", positive=True) / float(np.max(arr)))
        else:
            annual_wh = t.float_("annual_mwh", positive=True) * 1e6
            energy_wh = float(np.sum(arr)) * step / 3600.0
            years = len(arr) * step / (365.0 * 86400.0)
            arr = arr * (annual_wh * years / energy_wh)
        t.check_unknown()
        return LoadConfig(arr, step, noise_w, noise_tau, pf)
    base = t.float_("base_w", 0.0, minimum=0.0)
    duration = t.float_("duration_s", 86400.0, positive=True)
    step = t.float_("step_s", 1.0, positive=True)
    samples = duration / step  # may be inf (a tiny step_s)
    if not samples <= MAX_PROFILE_SAMPLES:
        raise t.error(
            "duration_s",
            f"duration_s = {duration:g} / step_s = {step:g} is {samples:.3g} samples;"
            f" at most {MAX_PROFILE_SAMPLES:,} (raise step_s or shorten duration_s)",
        )
    events = []
    for et in t.tables("event"):
        events.append(
            LoadEvent(
                start_s=et.float_("start_s", minimum=0.0),
                duration_s=et.float_("duration_s", minimum=0.0),
                power_w=et.float_("power_w"),
                ramp_s=et.float_("ramp_s", 0.0, minimum=0.0),
            )
        )
        et.check_unknown()
    t.check_unknown()
    grid_t = np.arange(0.0, duration, step)
    profile = np.full_like(grid_t, base)
    for ev in events:
        profile += ev.power_w * _trapezoid(grid_t, ev.start_s, ev.ramp_s, ev.duration_s)
    return LoadConfig(np.maximum(profile, 0.0), step, noise_w, noise_tau, pf)


def _read_pv(t: _Table, base_dir: Path | None) -> PvConfig:
    noise = t.float_("noise_pct", 0.0, minimum=0.0, maximum=100.0)
    if t.has("csv"):
        raw_cols = t.raw("columns")
        if not isinstance(raw_cols, list) or not all(isinstance(c, str) for c in raw_cols):
            raise t.error("columns", f"expected a list of column names, got {raw_cols!r}")
        arr, step = _read_csv_column(t, base_dir, list(raw_cols))
        t.check_unknown()
        return PvConfig(np.maximum(arr, 0.0), step, noise)
    start_hour = t.float_("start_hour", 12.0, minimum=0.0, maximum=24.0)
    peak = t.float_("peak_irradiance_wm2", 0.0, minimum=0.0)
    sunrise = t.float_("sunrise_hour", 6.0, minimum=0.0, maximum=24.0)
    sunset = t.float_("sunset_hour", 20.0, minimum=0.0, maximum=24.0)
    if sunset <= sunrise:
        raise t.error("sunset_hour", f"must be after sunrise_hour ({sunrise:g}), got {sunset:g}")
    t.check_unknown()
    step = 60.0
    hours = (start_hour + np.arange(0.0, 86400.0, step) / 3600.0) % 24.0
    shape = np.sin(np.pi * np.clip((hours - sunrise) / (sunset - sunrise), 0.0, 1.0))
    return PvConfig(peak * shape, step, noise)


def _read_frequency(t: _Table) -> FrequencyConfig:
    events = []
    for et in t.tables("event"):
        kind = et.str_("kind", "step", choices=("step", "ramp"))
        ramp = et.float_("ramp_s", 0.0 if kind == "step" else None, minimum=0.0)
        if kind == "step" and ramp != 0.0:
            raise et.error("ramp_s", f"a step has no ramp, got {ramp!r}")
        events.append(
            FrequencyEvent(
                start_s=et.float_("start_s", minimum=0.0),
                duration_s=et.float_("duration_s", minimum=0.0),
                delta_hz=et.float_("delta_hz", minimum=-5.0, maximum=5.0),
                ramp_s=ramp,
            )
        )
        et.check_unknown()
    cfg = FrequencyConfig(
        nominal_hz=t.float_("nominal_hz", 50.0, positive=True),
        noise_hz=t.float_("noise_hz", 0.0, minimum=0.0),
        noise_tau_s=t.float_("noise_tau_s", 5.0, positive=True),
        events=tuple(events),
    )
    t.check_unknown()
    return cfg


def _read_faults(t: _Table) -> FaultConfig:
    def rate(key: str) -> float:
        return t.float_(key, 0.0, minimum=0.0, maximum=_MAX_RATE_PER_H)

    def prob(key: str) -> float:
        return t.float_(key, 0.0, minimum=0.0, maximum=1.0)

    def duration(key: str, default: float) -> float:
        return t.float_(key, default, positive=True)

    def wall(key: str, default: float) -> float:
        return t.float_(key, default, minimum=0.0, maximum=_MAX_WALL_S)

    d = FaultConfig()
    cfg = FaultConfig(
        seed=t.int_("seed", 0, minimum=0),
        stream_end_per_h=rate("stream_end_per_h"),
        stream_stall_per_h=rate("stream_stall_per_h"),
        stream_stall_s=duration("stream_stall_s", d.stream_stall_s),
        setpoint_delay_prob=prob("setpoint_delay_prob"),
        setpoint_delay_s=wall("setpoint_delay_s", d.setpoint_delay_s),
        setpoint_reject_prob=prob("setpoint_reject_prob"),
        error_state_per_h=rate("error_state_per_h"),
        bad_metric_per_h=rate("bad_metric_per_h"),
        bad_metric_s=duration("bad_metric_s", d.bad_metric_s),
        bounds_flap_per_h=rate("bounds_flap_per_h"),
        bounds_flap_s=duration("bounds_flap_s", d.bounds_flap_s),
        bounds_grace_s=wall("bounds_grace_s", d.bounds_grace_s),
        detection_grace_s=wall("detection_grace_s", d.detection_grace_s),
        max_episodes=t.int_("max_episodes", d.max_episodes, minimum=1),
    )
    t.check_unknown()
    return cfg


def faults_from_dict(
    data: Mapping[str, Any], source: str = "<faults>", base: FaultConfig | None = None
) -> FaultConfig:
    """Validate a ``[faults]`` mapping; keys missing from ``data`` come from ``base``.

    Args:
        data: the keys to set (TOML types: int for ``seed`` / ``max_episodes``,
            numbers for the rest).
        source: name used in error messages.
        base: values for keys not in ``data`` (default: everything off).

    Raises:
        SiteConfigError: naming ``faults.<key>`` and the bad value.
    """
    merged: dict[str, Any] = dict(vars(base)) if base is not None else {}
    merged.update(data)
    return _read_faults(_Table(source, "faults", merged))


def _validate_topology(
    source: str,
    comps: list[tuple[_Table, ComponentConfig]],
    conns: list[tuple[_Table, int, int]],
) -> None:
    by_id: dict[int, ComponentConfig] = {}
    for t, comp in comps:
        if comp.id in by_id:
            raise t.error("id", f"duplicate component id {comp.id}")
        by_id[comp.id] = comp
    grids = [c for _, c in comps if isinstance(c, GridConfig)]
    if len(grids) != 1:
        raise SiteConfigError(
            source,
            "component",
            f"need exactly one component with category 'grid', got {len(grids)}",
        )
    seen: set[tuple[int, int]] = set()
    conn_table: dict[tuple[int, int], _Table] = {}
    parents: dict[int, list[int]] = {}
    children: dict[int, list[int]] = {}
    for t, src, dst in conns:
        for key, cid in (("source", src), ("destination", dst)):
            if cid not in by_id:
                raise t.error(key, f"dangling connection: no component with id {cid}")
        if src == dst:
            raise t.error("destination", f"connection from component {src} to itself")
        if (src, dst) in seen:
            raise t.error("destination", f"duplicate connection {src} -> {dst}")
        if isinstance(by_id[dst], GridConfig):
            raise t.error("destination", f"the grid connection point {dst} cannot have a parent")
        seen.add((src, dst))
        conn_table[(src, dst)] = t
        parents.setdefault(dst, []).append(src)
        children.setdefault(src, []).append(dst)
    # batteries first, so "battery with no inverter" is reported as such
    for t, comp in sorted(comps, key=lambda tc: not isinstance(tc[1], BatteryConfig)):
        kids = [by_id[k] for k in children.get(comp.id, [])]
        ups = [by_id[p] for p in parents.get(comp.id, [])]
        if isinstance(comp, BatteryConfig):
            if not any(isinstance(u, InverterConfig) for u in ups):
                raise t.error("id", f"battery {comp.id} has no inverter connected to it")
            for up in ups:  # a battery sits directly behind inverters, and only behind them
                if not isinstance(up, InverterConfig):
                    above = {GridConfig: "the grid connection point", MeterConfig: "meter"}
                    raise conn_table[(up.id, comp.id)].error(
                        "destination",
                        f"connection {up.id} -> {comp.id}: battery {comp.id} must sit directly"
                        f" behind an inverter, not behind {above.get(type(up), 'battery')} {up.id}",
                    )
            if kids:
                raise t.error("id", f"battery {comp.id} cannot have downstream components")
        elif isinstance(comp, InverterConfig):
            bats = [k for k in kids if isinstance(k, BatteryConfig)]
            if comp.inverter_type == "battery" and not bats:
                raise t.error("id", f"battery inverter {comp.id} has no battery connected")
            if len(kids) != len(bats):
                raise t.error("id", f"inverter {comp.id} may only have batteries downstream")
            if comp.inverter_type == "pv" and bats:
                raise t.error("type", f"PV inverter {comp.id} cannot have batteries")
            if any(isinstance(u, InverterConfig | BatteryConfig) for u in ups):
                raise t.error("id", f"inverter {comp.id} must sit below a meter or the grid")
        if not isinstance(comp, GridConfig) and not ups:
            raise t.error("id", f"component {comp.id} is not connected to anything upstream")
        if not isinstance(comp, BatteryConfig | GridConfig) and len(ups) > 1:
            parent_ids = sorted(p.id for p in ups)
            raise t.error("id", f"component {comp.id} has several parents {parent_ids}")
    # Every component must be reachable from the grid (no cycles / islands).
    root = grids[0].id
    reach = {root}
    stack = [root]
    while stack:
        for k in children.get(stack.pop(), []):
            if k not in reach:
                reach.add(k)
                stack.append(k)
    for t, comp in comps:
        if comp.id not in reach:
            raise t.error("id", f"component {comp.id} is not reachable from the grid")


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
        SiteConfigError: the first problem found, naming the field.
    """
    root = _Table(source, "", data)
    mg = root.table("microgrid")
    microgrid_id = mg.int_("id", minimum=0, maximum=_UINT64_MAX)
    name = mg.str_("name", "gridloop simulated site")
    enterprise_id = mg.int_("enterprise_id", 0, minimum=0, maximum=_UINT64_MAX)
    lat = mg.float_("latitude", minimum=-90.0, maximum=90.0) if mg.has("latitude") else None
    lon = mg.float_("longitude", minimum=-180.0, maximum=180.0) if mg.has("longitude") else None
    country = mg.str_("country_code", "")
    delivery_area = mg.str_("delivery_area_eic", "")
    mg.check_unknown()

    comp_tables = root.tables("component")
    if not comp_tables:
        raise root.error("component", "missing required field (no [[component]] tables)")
    comps = [(t, _read_component(t)) for t in comp_tables]
    conns = []
    for t in root.tables("connection"):
        conns.append((t, t.int_("source"), t.int_("destination")))
        t.check_unknown()
    _validate_topology(source, comps, conns)

    sensors = []
    comp_ids = {c.id for _, c in comps}
    sensor_ids: set[int] = set()
    for t in root.tables("sensor"):
        sid = t.int_("id", minimum=1, maximum=_INT64_MAX)
        if sid in sensor_ids:
            raise t.error("id", f"duplicate sensor id {sid}")
        sensor_ids.add(sid)
        sensors.append(SensorConfig(sid, t.str_("name", f"sensor-{sid}")))
        t.check_unknown()
    del comp_ids

    load = _read_load(root.table("load"), base_dir)
    pv = _read_pv(root.table("pv"), base_dir)
    freq = _read_frequency(root.table("frequency"))
    faults = _read_faults(root.table("faults"))
    root.check_unknown()
    return SiteConfig(
        source=source,
        microgrid_id=microgrid_id,
        name=name,
        enterprise_id=enterprise_id,
        components=tuple(c for _, c in comps),
        connections=tuple((s, d) for _, s, d in conns),
        sensors=tuple(sensors),
        load=load,
        pv=pv,
        frequency=freq,
        latitude=lat,
        longitude=lon,
        country_code=country,
        delivery_area_eic=delivery_area,
        faults=faults,
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
            the message is one line naming the file, the field and the problem.
    """
    if path is None:
        ref = resources.files("simulator.sites").joinpath("default.toml")
        source = "default.toml"
        try:
            text = ref.read_text(encoding="utf-8")
        except OSError as exc:  # pragma: no cover - broken installation
            raise SiteConfigError(source, "(file)", f"cannot read: {exc}") from exc
        base_dir: Path | None = Path(str(ref)).parent
    else:
        p = Path(path)
        source = str(p)
        try:
            text = p.read_text(encoding="utf-8")
        except OSError as exc:
            raise SiteConfigError(source, "(file)", f"cannot read: {exc.strerror or exc}") from exc
        base_dir = p.parent
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SiteConfigError(source, "(syntax)", str(exc).replace("\n", " ")) from exc
    return site_from_dict(data, source, base_dir)


def site_input_files(path: str | os.PathLike[str] | None = None) -> tuple[Path, ...]:
    """The files a site reads: the site TOML and the CSVs its ``[load]``/``[pv]`` name.

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
    for section in ("load", "pv"):
        table = data.get(section)
        if isinstance(table, Mapping) and isinstance(table.get("csv"), str):
            files.append(_resolve(site.parent, table["csv"]))
    return tuple(files)
