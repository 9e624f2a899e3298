"""The scenario of a site beyond its components: grid frequency and fault injection.

Offers `FrequencyEvent`, `FrequencyConfig`, `FaultConfig` (the ``[faults]``
table), `FAULT_KEYS`, the readers `read_frequency` and `read_faults`, and
`faults_from_dict` (a ``[faults]`` mapping, or overrides on top of a base).
The ``[frequency]`` table's ``csv`` is read with
:func:`simulator.frequency_series.read_frequency_csv`, ``synthetic = true`` made by
:func:`simulator.frequency_synthetic.synthetic_frequency`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ._profiles import ScriptedEvent, read_trapezoid
from ._toml_kit import Table, resolve_path
from .csv_series import CsvSeriesError
from .frequency_series import FrequencySeries, read_frequency_csv
from .frequency_synthetic import MAX_DURATION_S, synthetic_frequency

__all__ = [
    "FAULT_KEYS",
    "FaultConfig",
    "FrequencyConfig",
    "FrequencyEvent",
    "faults_from_dict",
    "read_faults",
    "read_frequency",
]


@dataclass(frozen=True)
class FrequencyEvent(ScriptedEvent):
    """A scripted grid-frequency deviation ``delta_hz`` (trapezoid, ramp 0 = step)."""

    delta_hz: float
    ramp_s: float = 0.0


@dataclass(frozen=True)
class FrequencyConfig:
    """Grid frequency: a base (``nominal_hz``, or ``series``) + seeded smooth noise +
    scripted events."""

    nominal_hz: float = 50.0
    noise_hz: float = 0.0
    noise_tau_s: float = 5.0
    events: tuple[FrequencyEvent, ...] = ()
    series: FrequencySeries | None = field(default=None, compare=False)
    """A recorded (``csv``) or synthetic (``synthetic = true``) trace replacing the
    constant nominal value from simulated time 0 (repeating after its end); nan in it
    (a long gap of a recording) is served as an unknown frequency."""


@dataclass(frozen=True)
class FaultConfig:
    """Rate-driven fault injection (the ``[faults]`` table); every fault is off by default.

    Rates are events per eligible component per hour of *simulated* time (so a
    time-scaled soak covers hours); episode durations are *simulated* seconds.
    Setpoint delays and the grace periods are *wall* seconds (they model
    network latency and the controller's reaction time, which do not scale).

    Eligible components: stream faults (``stream_end``, ``stream_stall``) hit
    any electrical component (grid connection point, meters, inverters incl.
    PV, batteries, EV chargers; not sensors). All other episode kinds hit battery
    inverters, batteries and EV chargers (not PV inverters: adding them would
    change the seeded episodes of existing sites). Setpoint faults apply to every
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


def read_frequency(t: Table, base_dir: Path | None = None) -> FrequencyConfig:
    """The ``[frequency]`` table: nominal value or a trace, noise and scripted events.

    ``csv = FILE`` (and optionally ``column``) serves a recorded trace,
    ``synthetic = true`` (``seed``, ``duration_s``) the seeded generator; both
    start at simulated time 0 and repeat after their end.
    """
    events = []
    for et in t.tables("event"):
        events.append(FrequencyEvent(*read_trapezoid(et, "delta_hz", -5.0, 5.0)))
    nominal_hz = t.float_("nominal_hz", 50.0, positive=True)
    cfg = FrequencyConfig(
        nominal_hz=nominal_hz,
        noise_hz=t.float_("noise_hz", 0.0, minimum=0.0),
        noise_tau_s=t.float_("noise_tau_s", 5.0, positive=True),
        events=tuple(events),
        series=_read_series(t, base_dir, nominal_hz),
    )
    t.check_unknown()
    return cfg


def _read_series(t: Table, base_dir: Path | None, nominal_hz: float) -> FrequencySeries | None:
    """The ``csv`` or ``synthetic`` trace of the ``[frequency]`` table, if any."""
    synthetic = t.raw("synthetic") if t.has("synthetic") else False
    if not isinstance(synthetic, bool):
        raise t.error("synthetic", synthetic, "expected true or false")
    if synthetic and t.has("csv"):
        raise t.fail("synthetic", "give csv or synthetic = true, not both")
    if t.has("csv"):
        csv_value = t.str_("csv")
        column = t.str_("column") if t.has("column") else None
        try:
            return read_frequency_csv(str(resolve_path(base_dir, csv_value)), column=column,
                                      nominal_hz=nominal_hz)
        except CsvSeriesError as exc:
            key = "column" if exc.about == "column" and column is not None else "csv"
            raise t.error(key, t.data[key], str(exc)) from None
    if synthetic:
        duration = t.float_("duration_s", 86_400.0, positive=True, maximum=MAX_DURATION_S)
        seed = t.int_("seed", 0, minimum=0)
        return synthetic_frequency(duration, seed=seed, nominal_hz=nominal_hz)
    return None


def read_faults(t: Table) -> FaultConfig:
    """The ``[faults]`` table (every key optional, every fault off by default)."""

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
    return read_faults(Table(source, "faults", merged))
