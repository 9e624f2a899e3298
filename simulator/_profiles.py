"""Load and PV profiles of a site: their dataclasses and how ``[load]`` / ``[pv]`` are read.

Offers `LoadEvent`, `LoadConfig`, `PvConfig`, `ScriptedEvent` (the time window
shared by scripted load and frequency events), `MAX_PROFILE_SAMPLES`, and the
readers `read_load`, `read_pv`, `read_window` and `read_trapezoid`. CSV profiles are read with the
one CSV reader, :func:`simulator.csv_series.read_csv_series`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from ._toml_kit import Table, resolve_path
from .csv_series import CsvSeriesError, parse_timestamp, read_csv_series

__all__ = [
    "MAX_PROFILE_SAMPLES",
    "LoadConfig",
    "LoadEvent",
    "PvConfig",
    "ScriptedEvent",
    "read_load",
    "read_pv",
    "read_trapezoid",
    "read_window",
]

FloatArray = npt.NDArray[np.float64]

MAX_PROFILE_SAMPLES = 10_000_000
"""Most samples a generated load profile may have (``duration_s / step_s``): 80 MB of
float64; a longer profile is a mistake in the file, not a site (it would exhaust memory)."""


@dataclass(frozen=True)
class ScriptedEvent:
    """The window of a scripted event: from ``start_s`` for ``duration_s`` (simulated s)."""

    start_s: float
    duration_s: float


@dataclass(frozen=True)
class LoadEvent(ScriptedEvent):
    """A scripted load change: ``power_w`` added on top of the base load.

    Rises linearly over ``ramp_s`` from ``start_s``, holds for ``duration_s``,
    falls back over ``ramp_s``.
    """

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


def read_window(et: Table) -> tuple[float, float]:
    """``(start_s, duration_s)`` of an ``event`` table (both >= 0)."""
    return et.float_("start_s", minimum=0.0), et.float_("duration_s", minimum=0.0)


def read_trapezoid(
    et: Table, delta_key: str, minimum: float, maximum: float
) -> tuple[float, float, float, float]:
    """``(start_s, duration_s, delta, ramp_s)`` of a scripted ``step`` / ``ramp`` event
    table (``kind``, ``ramp_s``, the window and ``delta_key`` within [minimum, maximum]);
    a step has no ramp. Checks for unknown keys."""
    kind = et.str_("kind", "step", choices=("step", "ramp"))
    ramp = et.float_("ramp_s", 0.0 if kind == "step" else None, minimum=0.0)
    if kind == "step" and ramp != 0.0:
        raise et.error("ramp_s", ramp, "a step has no ramp")
    start_s, duration_s = read_window(et)
    delta = et.float_(delta_key, minimum=minimum, maximum=maximum)
    et.check_unknown()
    return start_s, duration_s, delta, ramp


def _read_csv_profile(
    t: Table, base_dir: Path | None, columns_key: str, columns: list[str]
) -> tuple[FloatArray, float]:
    """The sum of ``columns`` per row of the table's ``csv`` and the (median) step.

    Naive timestamps are local time and blank lines are skipped (the simulator's
    reading since its first version); ``start`` rotates the profile to begin there.
    """
    csv_value = t.str_("csv")
    path = resolve_path(base_dir, csv_value)
    try:
        series = read_csv_series(str(path), columns, naive_tz=None, skip_blank_lines=True)
    except CsvSeriesError as exc:
        if exc.about == "column":
            raise t.error(columns_key, t.data[columns_key], str(exc)) from None
        raise t.error("csv", csv_value, str(exc)) from None
    if series.values.size < 2:
        raise t.error("csv", csv_value, f"{path}: fewer than two data rows")
    step_s = float(np.median(np.diff(series.t_unix)))
    if step_s <= 0:
        raise t.error("csv", csv_value, f"{path}: timestamps are not increasing")
    arr = series.values
    if t.has("start"):
        start_raw = t.str_("start")
        try:
            start = parse_timestamp(start_raw, naive_tz=None).timestamp()
        except ValueError:
            raise t.error("start", start_raw, "not an ISO timestamp") from None
        offset = int(np.searchsorted(series.t_unix, start))
        if offset >= len(arr):
            raise t.error("start", start_raw, f"after the end of {path}")
        arr = np.concatenate([arr[offset:], arr[:offset]])
    return arr, step_s


def _trapezoid(t_s: FloatArray, start: float, ramp: float, hold: float) -> FloatArray:
    """0..1 trapezoid: rise over ``ramp`` from ``start``, hold ``hold``, fall over ``ramp``."""
    if ramp <= 0:
        return ((t_s >= start) & (t_s < start + hold)).astype(np.float64)
    rise = np.clip((t_s - start) / ramp, 0.0, 1.0)
    fall = np.clip((start + ramp + hold + ramp - t_s) / ramp, 0.0, 1.0)
    return np.minimum(rise, fall)


def read_load(t: Table, base_dir: Path | None) -> LoadConfig:
    """The ``[load]`` table: a scaled CSV column, or a base load with scripted events."""
    noise_w = t.float_("noise_w", 0.0, minimum=0.0)
    noise_tau = t.float_("noise_tau_s", 10.0, positive=True)
    pf = t.float_("power_factor", 0.95, positive=True, maximum=1.0)
    if t.has("csv"):
        arr, step = _read_load_csv(t, base_dir)
    else:
        arr, step = _synthetic_load(t)
    t.check_unknown()
    return LoadConfig(arr, step, noise_w, noise_tau, pf)


def _read_load_csv(t: Table, base_dir: Path | None) -> tuple[FloatArray, float]:
    col = t.str_("column")
    arr, step = _read_csv_profile(t, base_dir, "column", [col])
    has_peak, has_annual = t.has("peak_w"), t.has("annual_mwh")
    if has_peak == has_annual:
        raise t.fail("peak_w", "give exactly one of peak_w or annual_mwh with csv")
    if np.max(arr) <= 0:
        raise t.error("column", col, "has no positive values")
    if has_peak:
        return arr * (t.float_("peak_w", positive=True) / float(np.max(arr))), step
    annual_wh = t.float_("annual_mwh", positive=True) * 1e6
    energy_wh = float(np.sum(arr)) * step / 3600.0
    years = len(arr) * step / (365.0 * 86400.0)
    return arr * (annual_wh * years / energy_wh), step


def _synthetic_load(t: Table) -> tuple[FloatArray, float]:
    base = t.float_("base_w", 0.0, minimum=0.0)
    duration = t.float_("duration_s", 86400.0, positive=True)
    step = t.float_("step_s", 1.0, positive=True)
    samples = duration / step  # may be inf (a tiny step_s)
    if not samples <= MAX_PROFILE_SAMPLES:
        raise t.error(
            "duration_s",
            duration,
            f"duration_s = {duration:g} / step_s = {step:g} is {samples:.3g} samples;"
            f" at most {MAX_PROFILE_SAMPLES:,} (raise step_s or shorten duration_s)",
        )
    events = []
    for et in t.tables("event"):
        start_s, duration_s = read_window(et)
        power_w = et.float_("power_w")
        ramp_s = et.float_("ramp_s", 0.0, minimum=0.0)
        events.append(LoadEvent(start_s, duration_s, power_w, ramp_s))
        et.check_unknown()
    grid_t = np.arange(0.0, duration, step)
    profile = np.full_like(grid_t, base)
    for ev in events:
        profile += ev.power_w * _trapezoid(grid_t, ev.start_s, ev.ramp_s, ev.duration_s)
    return np.maximum(profile, 0.0), step


def read_pv(t: Table, base_dir: Path | None) -> PvConfig:
    """The ``[pv]`` table: summed irradiance CSV columns, or a clear-sky day."""
    noise = t.float_("noise_pct", 0.0, minimum=0.0, maximum=100.0)
    if t.has("csv"):
        arr, step = _read_csv_profile(t, base_dir, "columns", t.str_list("columns"))
        t.check_unknown()
        return PvConfig(np.maximum(arr, 0.0), step, noise)
    start_hour = t.float_("start_hour", 12.0, minimum=0.0, maximum=24.0)
    peak = t.float_("peak_irradiance_wm2", 0.0, minimum=0.0)
    sunrise = t.float_("sunrise_hour", 6.0, minimum=0.0, maximum=24.0)
    sunset = t.float_("sunset_hour", 20.0, minimum=0.0, maximum=24.0)
    if sunset <= sunrise:
        raise t.error("sunset_hour", sunset, f"must be after sunrise_hour ({sunrise:g})")
    t.check_unknown()
    step = 60.0
    hours = (start_hour + np.arange(0.0, 86400.0, step) / 3600.0) % 24.0
    shape = np.sin(np.pi * np.clip((hours - sunrise) / (sunset - sunrise), 0.0, 1.0))
    return PvConfig(peak * shape, step, noise)
